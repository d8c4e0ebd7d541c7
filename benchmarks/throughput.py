"""Target 1: end-to-end throughput over the bare model forward on the same chips (>= 0.85).

    .venv/bin/python -m benchmarks.throughput [--repeats 4] [--rounds 2] [--model PATH]

The scene is a VRT repeating the real 0.6 m aerial COG (aerial-0.6m, 1024 px) N x N times,
so it sits at the model's GSD and needs no resampling. "Bare forward" times only
``Translator.predict`` (normalize, forward, softmax, back to numpy) on batches of the very
chips the pipeline cuts (read beforehand, untimed), in the two ways two cores can run it:
one stream of batches with 2 torch threads, and two concurrent streams with 1 torch thread
each (what the threaded scheduler does); the faster is the reference. End-to-end times
``geo2map.translate`` from file to finished COGs + quicklook. Bare and end-to-end runs are
interleaved, ``--rounds`` times each, and the best of each is kept.
"""

from __future__ import annotations

import os
import threading

import numpy as np
import torch

from benchmarks.common import (
    alternate,
    arguments,
    benchmark_run,
    end_to_end,
    paired_ratios,
    read_plan_chips,
)
from geo2map.models.io import load_model
from geo2map.options import TranslateOptions
from geo2map.plan import plan_scene
from geo2map.translator import cached_translator, pick_device, pick_precision


def bare_forward(chips, options: TranslateOptions, streams: int) -> None:
    """Translator.predict over all batches: ``streams`` threads, cores // streams torch
    threads each (set explicitly: torch's thread count is global to the process)."""
    cached_translator.cache_clear()
    threads = max(1, (os.cpu_count() or 1) // streams)
    translator = cached_translator(options.model, options.device, options.precision)
    torch.set_num_threads(threads)
    batches = [
        np.stack(chips[i : i + options.batch_size])
        for i in range(0, len(chips), options.batch_size)
    ]

    def work(k: int) -> None:
        for b in batches[k::streams]:
            translator.predict(b)

    workers = [threading.Thread(target=work, args=(k,)) for k in range(streams)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def main() -> None:
    parser = arguments(__doc__, repeats=4, rounds=True, model=True)
    parser.add_argument("--chip-size", type=int, default=512)
    parser.add_argument("--overlap", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    with benchmark_run("throughput", args) as run:  # malloc tuned as the command does, so
        # the bare forward runs under the same allocator: the ratio compares the pipeline
        scene_path, tmp = run.scene(), run.folder
        options = TranslateOptions(
            model=str(run.model), chip_size=args.chip_size, overlap=args.overlap,
            batch_size=args.batch_size, overwrite=True,
        )  # fmt: skip
        _, card = load_model(options.model)
        plan = plan_scene(scene_path, options, card)
        mp = plan.output_height * plan.output_width / 1e6
        chips = read_plan_chips(plan)
        print(f"{len(chips)} chips of {args.chip_size} px, overlap {args.overlap}, "
              f"batch {args.batch_size}, model {card.name}", flush=True)  # fmt: skip
        times = alternate(
            {
                "bare forward 1x2 threads": lambda: bare_forward(chips, options, 1),
                "bare forward 2x1 threads": lambda: bare_forward(chips, options, 2),
                "end to end (translate)": lambda: end_to_end(scene_path, tmp / "out", options),
            },
            args.rounds,
        )
        best = {k: min(v) for k, v in times.items()}
        bare = min(best["bare forward 1x2 threads"], best["bare forward 2x1 threads"])
        e2e = best["end to end (translate)"]
        for k, s in best.items():
            print(f"{k:<28}: {mp / s:6.2f} MP/s ({s:.1f} s)")
        bares = ["bare forward 1x2 threads", "bare forward 2x1 threads"]
        paired = paired_ratios(times, bares, "end to end (translate)")
        print(f"ratio end-to-end / best bare forward: {bare / e2e:.2f}  (target >= 0.85); "
              f"per round {', '.join(f'{r:.2f}' for r in paired)}, median {np.median(paired):.2f}")  # fmt: skip
        run.report(
            {
                "scene_px": [plan.output_width, plan.output_height],
                "megapixels": mp,
                "chips": len(chips),
                "chip_size": args.chip_size, "overlap": args.overlap, "batch_size": args.batch_size,
                "model": f"{card.name} ({run.model_note})",
                "precision": str(pick_precision(pick_device("auto"), "auto", card)),
                "seconds": times,
                "megapixels_per_second": {k: mp / s for k, s in best.items()},
                "ratio_end_to_end_over_bare": bare / e2e,
                "ratio_per_round": paired, "ratio_per_round_median": float(np.median(paired)),
                "target": ">= 0.85",
            }
        )  # fmt: skip


if __name__ == "__main__":
    main()
