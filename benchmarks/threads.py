"""The threads question: on the default threaded scheduler, 2 dask threads x 1 torch thread
(geo2map's runner default) or 1 dask thread x 2 torch threads, and which batch size?

    .venv/bin/python -m benchmarks.threads [--repeats 4] [--rounds 2] [--model PATH]

Each configuration translates the same scene (file to COGs) in a fresh subprocess that
reports the time of the ``geo2map.translate`` call and its own peak RSS; configurations
are interleaved round by round (order reversed every other round) and the best time of
each is kept. "dask 1 x torch 2" is ``workers=1`` (geo2map then gives each task all
cores); "dask 2 x torch 2" (oversubscribed) patches ``engine.threads_for_this_task``.
"""

from __future__ import annotations

import sys
import time

from benchmarks.common import (
    arguments,
    benchmark_run,
    child_result,
    megapixels,
    peak_rss_by_config,
    run_child,
)

CONFIGS = {  # name: (dask workers or 0 for default, torch threads per task or 0, batch)
    "dask 2 x torch 1, batch 8 (default)": (0, 0, 8),
    "dask 1 x torch 2, batch 8": (1, 0, 8),
    "dask 2 x torch 2, batch 8": (0, 2, 8),
    "dask 2 x torch 1, batch 1": (0, 0, 1),
    "dask 2 x torch 1, batch 2": (0, 0, 2),
    "dask 2 x torch 1, batch 4": (0, 0, 4),
    "dask 2 x torch 1, batch 16": (0, 0, 16),
    "dask 1 x torch 2, batch 1": (1, 0, 1),
}


def child(scene_path: str, model: str, out: str, workers: int, threads: int, batch: int) -> None:
    import geo2map
    import geo2map.engine
    from geo2map.execution import tune_malloc

    tune_malloc()  # as the geo2map command does
    if threads:  # every task of this run uses ``threads`` torch threads, whatever the runner says
        geo2map.engine.threads_for_this_task = lambda _setting: threads
    start = time.perf_counter()
    geo2map.translate(
        scene_path, out, model=model, overwrite=True, batch_size=batch, workers=workers or None
    )
    child_result(seconds=time.perf_counter() - start)


def main() -> None:
    parser = arguments(__doc__, repeats=4, rounds=True, model=True)
    parser.add_argument("--only", nargs="*", help="configuration names (substrings) to run")
    parser.add_argument("--child", nargs=6)
    args = parser.parse_args()
    if args.child:
        a = args.child
        child(a[0], a[1], a[2], int(a[3]), int(a[4]), int(a[5]))
        return
    configs = {k: v for k, v in CONFIGS.items() if not args.only or any(s in k for s in args.only)}
    results: dict[str, list[dict]] = {k: [] for k in configs}
    mp = megapixels(args.repeats)
    with benchmark_run("threads", args) as run:
        scene_path = run.scene()
        for r in range(args.rounds):
            for name in configs if r % 2 == 0 else reversed(configs):
                w, t, b = configs[name]
                cmd = [sys.executable, "-m", "benchmarks.threads", "--child", str(scene_path),
                       str(run.model), str(run.folder / "out"), str(w), str(t), str(b)]  # fmt: skip
                res = run_child(cmd)
                results[name].append(res)
                print(f"  round {r + 1}: {name:<36} {res['seconds']:7.1f} s, "
                      f"peak RSS {res['ru_maxrss_mb']:5.0f} MB", flush=True)  # fmt: skip
        best = {k: min(x["seconds"] for x in v) for k, v in results.items()}
        ref = best.get("dask 2 x torch 1, batch 8 (default)")
        peaks = peak_rss_by_config(results)
        for k, s in best.items():
            rel = f", {ref / s:.2f}x the default" if ref else ""
            print(f"{k:<36}: {mp / s:5.2f} MP/s ({s:.1f} s){rel}, peak RSS {peaks[k]:.0f} MB")
        run.report(
            {
                "scene_px": [1024 * args.repeats] * 2, "megapixels": mp, "model": run.model_note,
                "runs": results,
                "megapixels_per_second": {k: mp / s for k, s in best.items()},
                "speed_relative_to_default": {k: ref / s for k, s in best.items()} if ref else None,
                "peak_rss_mb": peaks,
            }
        )  # fmt: skip


if __name__ == "__main__":
    main()
