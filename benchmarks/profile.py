"""Target 6: where the time of a translation goes (read, resample, model, blend, write, COG).

    .venv/bin/python -m benchmarks.profile [--repeats 3] [--model PATH] [--model-gsd 0.5]
                                           [--cprofile out.prof]

Part 1, stage timers under the default threaded scheduler: geo2map's stage functions are
wrapped (in this process only, nothing in geo2map is changed) to add up the seconds each
spends, summed over threads (two dask threads run batch and block tasks concurrently, so
task stages add up to about 2x the compute wall time), next to the wall time of each
phase: plan, compute blocks (dask), write blocks to GTiff, COG copies, quicklook, exports.
``--model-gsd`` rewrites the frozen model card's GSD (e.g. 0.5 m for the 0.6 m scene), so
GDAL resamples on read and ``resample_block`` maps results back to the input grid: the
resampling stages then show up (at the native GSD there is no resampling at all).

Part 2 (``--cprofile``): cProfile of the same translation on the ``sync`` scheduler (one
thread; torch gets both cores), top functions by own time, and the .prof file.
"""

from __future__ import annotations

import cProfile
import functools
import io
import json
import os
import pstats
import threading
import time
from collections import defaultdict
from pathlib import Path

import rasterio.shutil

import geo2map
import geo2map.engine
import geo2map.exports
import geo2map.parts
import geo2map.pipeline
import geo2map.translator
import geo2map.writer
from benchmarks.common import arguments, benchmark_run

STATS: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
MARKS: dict[str, float] = {}
_lock = threading.Lock()

# (owner, attribute, stage label); the order is the order of the printed table
STAGES = [
    (geo2map.pipeline, "plan_scene", "plan (inspect scene, chip grid)"),
    (geo2map.engine, "run_batch", "batch task (total)"),
    (geo2map.engine, "read_model_window", "  read chips (GDAL decode, resample, scale)"),
    (geo2map.translator.Translator, "predict", "  model predict (total)"),
    (geo2map.translator.Translator, "normalize", "    normalize input"),
    (geo2map.engine, "blend_block", "block task (total)"),
    (geo2map.engine, "blend_chips", "  blend chips"),
    (geo2map.engine, "resample_block", "  resample to output grid"),
    (geo2map.engine, "read_output_valid", "  read validity mask"),
    (geo2map.parts.BlockParts, "save", "save finished block (.npy part)"),
    (geo2map.parts.BlockParts, "load", "load block part"),
    (geo2map.writer.SceneWriter, "write", "write block to GTiff (DEFLATE)"),
    (rasterio.shutil, "copy", "COG copy with overviews"),
    (geo2map.writer, "write_quicklook", "quicklook PNG"),
    (geo2map.exports, "export_scene", "exports (qml)"),
]


def _timed(label: str, fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            dt = time.perf_counter() - start
            with _lock:
                STATS[label][0] += dt
                STATS[label][1] += 1

    return wrapper


def _mark(name: str, fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        MARKS.setdefault(name, time.perf_counter())
        return fn(*args, **kwargs)

    return wrapper


def instrument() -> None:
    for owner, attr, label in STAGES:
        setattr(owner, attr, _timed(label, getattr(owner, attr)))
    # phase boundaries: blocks computed -> writer opened -> finish (COGs)
    w = geo2map.writer.SceneWriter
    w.__init__ = _mark("writer opened", w.__init__)
    w.finish = _mark("finish started", w.finish)


def stage_profile(scene_path: Path, out: Path, model: str) -> dict:
    STATS.clear()
    MARKS.clear()
    geo2map.translator.cached_translator.cache_clear()
    start = time.perf_counter()
    summary = geo2map.translate(scene_path, out, model=model, overwrite=True)[0]
    total = time.perf_counter() - start
    plan_s = STATS["plan (inspect scene, chip grid)"][0]
    compute_start = start + plan_s  # plan runs before the runner opens
    phases = {
        "plan scene": plan_s,
        "compute blocks (dask, 2 threads)": MARKS["writer opened"] - compute_start,
        "write blocks to GTiff": MARKS["finish started"] - MARKS["writer opened"],
        "COGs + quicklook + exports": start + total - MARKS["finish started"],
    }
    busy = STATS["batch task (total)"][0] + STATS["block task (total)"][0]
    workers = os.cpu_count() or 1  # the threaded scheduler's default
    return {
        "total_seconds": total,
        "compute_utilization": busy / (workers * phases["compute blocks (dask, 2 threads)"]),
        "megapixels": summary.width * summary.height / 1e6,
        "chips": summary.chips,
        "phases_wall_seconds": phases,
        "stages_thread_seconds": {k: v[0] for k, v in STATS.items()},
        "stages_calls": {k: v[1] for k, v in STATS.items()},
    }


def print_stages(result: dict) -> None:
    total = result["total_seconds"]
    print(f"\nwall {total:.1f} s for {result['megapixels']:.1f} MP ({result['chips']} chips)")
    for k, v in result["phases_wall_seconds"].items():
        print(f"  phase {k:<36} {v:7.1f} s  {100 * v / total:5.1f} % of wall")
    print(f"  dask threads busy in task code during the compute phase: "
          f"{100 * result['compute_utilization']:.0f} %")  # fmt: skip
    print("stage (seconds summed over threads)         seconds  calls")
    for _, _, label in STAGES:
        if label in result["stages_thread_seconds"]:
            s, n = result["stages_thread_seconds"][label], result["stages_calls"][label]
            print(f"  {label:<42} {s:7.1f}  {n:5d}")


def cprofile_run(scene_path: Path, out: Path, model: str, prof_out: str) -> str:
    geo2map.translator.cached_translator.cache_clear()
    prof = cProfile.Profile()
    prof.enable()
    geo2map.translate(scene_path, out, model=model, overwrite=True, scheduler="sync")
    prof.disable()
    prof.dump_stats(prof_out)
    text = io.StringIO()
    pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(25)
    return text.getvalue()


def main() -> None:
    parser = arguments(__doc__, repeats=3, rounds=False, model=True)
    parser.add_argument("--model-gsd", type=float, default=None, help="rewrite the card's GSD")
    parser.add_argument("--cprofile", default=None, help="also run cProfile (sync), save here")
    args = parser.parse_args()
    with benchmark_run("profile", args) as run:
        model, tmp, model_note = run.model, run.folder, run.model_note
        if args.model_gsd:
            card_path = model.with_suffix(".json")
            card = json.loads(card_path.read_text())
            card["input"]["gsd_m"] = args.model_gsd
            card_path.write_text(json.dumps(card))
            model_note += f", card GSD rewritten to {args.model_gsd} m"
        scene_path = run.scene()
        instrument()
        result = stage_profile(scene_path, tmp / "out", str(model))
        print_stages(result)
        if args.cprofile:
            top = cprofile_run(scene_path, tmp / "out_sync", str(model), args.cprofile)
            print("\ncProfile, sync scheduler, top 25 by own time:\n" + top)
            result["cprofile_top"] = top
        run.report({"scene_px": [1024 * args.repeats] * 2, "model": model_note, **result})


if __name__ == "__main__":
    main()
