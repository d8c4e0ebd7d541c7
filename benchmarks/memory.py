"""Target 4: peak resident memory translating 16k x 16k px: <= 2.5 GB and <= 1.2x the peak at 4k.

    .venv/bin/python -m benchmarks.memory [--sizes 4 16] [--model PATH]

Each size (``1024 * N`` px a side, the real aerial COG repeated N x N times in a VRT) is
translated by ``geo2map.translate`` with default options in a fresh subprocess, which
reports its own peak RSS (``ru_maxrss``); the parent also samples the child's RSS every
50 ms with psutil, as a cross-check. A third child only imports geo2map + torch and loads
the model: the floor every run pays. The ratio is peak(largest) / peak(smallest).
The 16k run translates 268 MP: on 2 free cores it takes several minutes (see the docs).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from benchmarks.common import arguments, benchmark_run, child_result, megapixels, run_child, scene


def micro_batched(n: int) -> None:
    """Experiment, this process only: CPU forwards take ``n`` chips at a time
    (``translator.CPU_MICRO_BATCH``; the chip grid and its batches are unchanged)."""
    from geo2map import translator

    translator.CPU_MICRO_BATCH = n


def child(repeats: int, model: str, folder: str, micro_batch: int = 0) -> None:
    import geo2map
    from geo2map.execution import tune_malloc
    from geo2map.models.io import load_model

    tune_malloc()  # as the geo2map command does
    if micro_batch:
        micro_batched(micro_batch)

    if repeats == 0:  # the floor: imports + model
        load_model(model)
        child_result(seconds=0.0, megapixels=0.0)
        return
    path = scene(repeats, Path(folder))
    start = time.perf_counter()
    geo2map.translate(path, Path(folder) / "out", model=model, overwrite=True)
    child_result(seconds=time.perf_counter() - start, megapixels=megapixels(repeats))


def main() -> None:
    parser = arguments(__doc__, repeats=None, rounds=False, model=True)
    parser.add_argument("--sizes", type=int, nargs="+", default=[4, 16], help="repeats N")
    parser.add_argument(
        "--micro-batch", type=int, default=0, help="experiment: forward N chips at a time"
    )
    parser.add_argument(
        "--env", nargs="*", default=[], help="experiment: KEY=VALUE for the children"
    )
    parser.add_argument("--child", nargs=3, metavar=("REPEATS", "MODEL", "FOLDER"))
    args = parser.parse_args()
    if args.child:
        child(int(args.child[0]), args.child[1], args.child[2], args.micro_batch)
        return
    results = {}
    with benchmark_run("memory", args) as run:
        for n in [0, *sorted(args.sizes)]:
            folder = run.folder / f"x{n}"
            folder.mkdir()
            cmd = [sys.executable, "-m", "benchmarks.memory", "--child", str(n), str(run.model),
                   str(folder), "--micro-batch", str(args.micro_batch)]  # fmt: skip
            res = run_child(cmd, env=dict(kv.split("=", 1) for kv in args.env))
            label = "imports + model" if n == 0 else f"{1024 * n} px square"
            results[label] = res
            rate = f", {res['megapixels'] / res['seconds']:.2f} MP/s" if n else ""
            print(f"{label:<18}: peak RSS {res['ru_maxrss_mb']:7.0f} MB (sampled "
                  f"{res['sampled_peak_rss_mb']:.0f} MB at {res['sampled_peak_at_s']:.0f} s of "
                  f"{res['child_wall_s']:.0f} s), translate {res['seconds']:.0f} s{rate}",
                  flush=True)  # fmt: skip
        sizes = [k for k in results if k != "imports + model"]
        small, large = results[sizes[0]]["ru_maxrss_mb"], results[sizes[-1]]["ru_maxrss_mb"]
        print(f"peak {sizes[-1]}: {large / 1024:.2f} GB (target <= 2.5 GB); "
              f"ratio to {sizes[0]}: {large / small:.2f} (target <= 1.2)")  # fmt: skip
        run.report(
            {
                "model": run.model_note,
                "micro_batch_experiment": args.micro_batch or None,
                "env_experiment": args.env or None,
                "runs": results,
                "peak_largest_gb": large / 1024,
                "ratio_largest_over_smallest": large / small,
                "target": "<= 2.5 GB and <= 1.2x",
            }
        )


if __name__ == "__main__":
    main()
