"""Where the wall time of one translation goes, task by task and thread by thread.

    .venv/bin/python -m benchmarks.timeline [--repeats 4] [--model PATH] [--rounds 2]

Translates the repeated real aerial scene with default options ``--rounds`` times in this
process and reports the last round (the first warms caches). Batch tasks, blend tasks,
block writes and the COG step are wrapped (in this process only) to record when each ran
and on which thread. Prints per thread how busy it was between the first task and the
last, and the phases of the main thread: before the first task, compute, after the last
task (COG copies, quicklook, exports). Tasks run on dask.distributed in-process, which may
pickle the wrappers, so each records into a module attribute, not a closure.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from pathlib import Path

import rasterio.shutil

import geo2map
import geo2map.engine
import geo2map.writer
from benchmarks.common import arguments, benchmark_run
from geo2map.translator import cached_translator

WRAPPED = [
    (geo2map.engine, "run_batch", "batch task"),
    (geo2map.engine, "blend_block", "blend task"),
    (geo2map.writer.SceneWriter, "write", "write block"),
    (geo2map.writer.SceneWriter, "finish", "COG step + quicklook"),
    (rasterio.shutil, "copy", "  COG copy"),
]


def record(owner, name: str, label: str) -> None:
    original = getattr(owner, name)

    def timed(*args, **kwargs):
        start = time.time()
        try:
            return original(*args, **kwargs)
        finally:
            events = geo2map.__dict__.setdefault("_timeline", [])
            events.append((threading.current_thread().name, label, start, time.time()))

    setattr(owner, name, timed)


def main() -> None:
    parser = arguments(__doc__, repeats=4, rounds=True)
    parser.add_argument(
        "--events", default=None, help="also write every (thread, stage, start, end)"
    )
    args = parser.parse_args()
    for owner, name, label in WRAPPED:
        record(owner, name, label)
    with benchmark_run("timeline", args) as run:
        path = run.scene()
        for _ in range(args.rounds):
            geo2map._timeline = []
            cached_translator.cache_clear()
            t0 = time.time()
            geo2map.translate(path, run.folder / "out", model=str(run.model), overwrite=True)
            wall = time.time() - t0
        events = [(th, label, s - t0, e - t0) for th, label, s, e in geo2map._timeline]
        if args.events:
            Path(args.events).write_text(json.dumps(events))
        tasks = [ev for ev in events if ev[1] in ("batch task", "blend task")]
        first, last = min(s for *_, s, _ in tasks), max(e for *_, e in tasks)
        busy: dict[str, float] = defaultdict(float)
        stages: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
        for th, label, s, e in events:
            stages[label][0] += 1
            stages[label][1] += e - s
            if label in ("batch task", "blend task"):
                busy[th] += e - s
        print(f"scene {1024 * args.repeats}^2, wall {wall:.2f} s")
        print(
            f"before the first task {first:.2f} s, tasks {last - first:.2f} s, after {wall - last:.2f} s"
        )
        for th, b in sorted(busy.items()):
            print(f"  task thread {th}: busy {b:.2f} s = {100 * b / (last - first):.0f} %")
        for label, (n, total) in stages.items():
            print(f"  {label:<22} n={n:<4} {total:7.2f} s")
        run.report(
            {
                "scene_px": 1024 * args.repeats, "wall_s": wall, "before_first_task_s": first,
                "tasks_s": last - first, "after_last_task_s": wall - last,
                "thread_busy_s": dict(busy), "stages": {k: v for k, v in stages.items()},
            }
        )  # fmt: skip


if __name__ == "__main__":
    main()
