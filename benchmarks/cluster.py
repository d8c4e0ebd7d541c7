"""Target 5: ``--cluster local:2`` versus the local threaded scheduler, same scene (<= 15 %).

    .venv/bin/python -m benchmarks.cluster [--repeats 4] [--rounds 2] [--model PATH] [--cli]

Times ``geo2map.translate(scene, out, cluster="local:2")`` (a dask.distributed LocalCluster
of 2 single-thread worker processes; start-up and shut-down included, as a user sees it)
against the default threaded scheduler (2 threads, 1 torch thread each), interleaved.
Also times starting + stopping the LocalCluster alone, so the per-run fixed cost can be
told apart from the per-pixel cost. Overhead = best(cluster) / best(threads) - 1.

With ``--cli``, each run is instead the ``geo2map translate`` command in a fresh process, as a
user runs it: both contenders then also pay the process's imports and planning, which the
local:N forkserver's own imports overlap.

The forkserver that local:N workers fork from (geo2map/forkserver.py) outlives a job in its
process, as any forkserver does; it is stopped (untimed) before every run here, so that
each cluster run starts it afresh and pays its imports, as a `geo2map translate` process
does.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import geo2map
from benchmarks.common import (
    alternate,
    arguments,
    benchmark_run,
    megapixels,
    paired_ratios,
    timed,
)
from geo2map.execution import open_runner
from geo2map.forkserver import stop_worker_forkserver
from geo2map.translator import cached_translator


def threads_run(scene_path: Path, out: Path, model: str) -> None:
    cached_translator.cache_clear()  # so the run sets its own torch thread count
    geo2map.translate(scene_path, out, model=model, overwrite=True)


def cluster_run(scene_path: Path, out: Path, model: str) -> None:
    geo2map.translate(scene_path, out, model=model, overwrite=True, cluster="local:2")


def cli_run(scene_path: Path, out: Path, model: str, *extra: str) -> None:
    command = [str(Path(sys.executable).parent / "geo2map"), "translate", str(scene_path),
               "--out", str(out), "--model", model, "--overwrite", *extra]  # fmt: skip
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def cluster_start_stop() -> None:
    with open_runner("threads", None, "local:2"):
        pass


def main() -> None:
    parser = arguments(__doc__, repeats=4, rounds=True, model=True)
    parser.add_argument("--cli", action="store_true", help="time the command, a process a run")
    args = parser.parse_args()
    mp = megapixels(args.repeats)
    with benchmark_run("cluster", args) as run:
        scene_path, tmp, model = run.scene(), run.folder, str(run.model)
        stop_worker_forkserver()
        startup = timed(cluster_start_stop)
        print(f"  LocalCluster(2) start + stop alone: {startup:.1f} s", flush=True)
        if args.cli:
            runs = {
                "threads (default)": lambda: cli_run(scene_path, tmp / "a", model),
                "cluster local:2": lambda: cli_run(scene_path, tmp / "b", model, "--cluster", "local:2"),
            }  # fmt: skip
        else:
            runs = {
                "threads (default)": lambda: threads_run(scene_path, tmp / "a", model),
                "cluster local:2": lambda: cluster_run(scene_path, tmp / "b", model),
            }
        times = alternate(runs, args.rounds, before_each=stop_worker_forkserver)
        best = {k: min(v) for k, v in times.items()}
        overhead = best["cluster local:2"] / best["threads (default)"] - 1
        per_round = [r - 1 for r in paired_ratios(times, ["cluster local:2"], "threads (default)")]
        for k, s in best.items():
            print(f"{k:<18}: {mp / s:6.2f} MP/s ({s:.1f} s)")
        print("overhead per round: " + ", ".join(f"{r * 100:+.1f} %" for r in per_round))
        print(f"cluster overhead: {overhead * 100:+.1f} %  (target <= 15 %); "
              f"cluster start + stop alone {startup:.1f} s")  # fmt: skip
        run.report(
            {
                "scene_px": [1024 * args.repeats] * 2, "megapixels": mp, "model": run.model_note,
                "mode": "cli" if args.cli else "api",
                "seconds": times, "cluster_start_stop_seconds": startup,
                "megapixels_per_second": {k: mp / s for k, s in best.items()},
                "overhead": overhead, "overhead_per_round": per_round, "target": "<= 0.15",
            }
        )  # fmt: skip


if __name__ == "__main__":
    main()
