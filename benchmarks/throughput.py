"""End-to-end throughput versus the bare model forward on the same chips, in one run.

    .venv/bin/python benchmarks/throughput.py [--repeats 4] [--model PATH]

The scene is a VRT repeating the real 0.6 m aerial COG (aerial-0.6m, 1024 px) N x N times,
so it sits at the model's GSD and needs no resampling. "Bare forward" times only
``Translator.predict`` on batches of the very chips the pipeline cuts (read beforehand,
untimed). End-to-end times ``geo2map.translate`` from file to finished COGs + quicklook.
Both are measured alternately, twice each, and the best of each is kept.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio

import geo2map
from geo2map.catalog import resolve
from geo2map.models.io import DEFAULT_MODEL, load_model
from geo2map.mosaic import repeated_vrt
from geo2map.pipeline import TranslateOptions, plan_scene
from geo2map.raster import read_model_window
from geo2map.translator import cached_translator


def bare_forward_seconds(plan, options: TranslateOptions) -> float:
    size = plan.chips.size
    with rasterio.open(plan.scene.path) as ds:
        chips = [
            read_model_window(ds, plan.grid, c.row, c.col, size, size)[0] for c in plan.chips.chips
        ]
    translator = cached_translator(options.model, options.device, options.precision)
    start = time.perf_counter()
    for i in range(0, len(chips), options.batch_size):
        translator.predict(np.stack(chips[i : i + options.batch_size]))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    parser.add_argument("--chip-size", type=int, default=512)
    parser.add_argument("--overlap", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        scene = repeated_vrt(resolve("aerial-0.6m"), args.repeats, Path(tmp) / "big.vrt")
        options = TranslateOptions(
            model=args.model, chip_size=args.chip_size, overlap=args.overlap,
            batch_size=args.batch_size, overwrite=True,
        )  # fmt: skip
        _, card = load_model(options.model)
        plan = plan_scene(scene, options, card)
        mp = plan.output_height * plan.output_width / 1e6
        bare, e2e = [], []
        for _ in range(2):
            bare.append(bare_forward_seconds(plan, options))
            start = time.perf_counter()
            geo2map.translate(scene, Path(tmp) / "out", options)
            e2e.append(time.perf_counter() - start)
        b, e = min(bare), min(e2e)
        print(f"scene {plan.output_width}x{plan.output_height} ({mp:.1f} MP), {len(plan.chips.chips)} chips "
              f"of {args.chip_size} px, overlap {args.overlap}, batch {args.batch_size}, model {card.name}")  # fmt: skip
        print(f"bare model forward : {mp / b:6.2f} MP/s ({b:.1f} s)")
        print(f"end to end         : {mp / e:6.2f} MP/s ({e:.1f} s)")
        print(f"ratio end-to-end / bare forward: {b / e:.2f}")


if __name__ == "__main__":
    main()
