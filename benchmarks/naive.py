"""Target 2: end-to-end throughput over a naive inference loop, same model, same chips (>= 3x).

    .venv/bin/python -m benchmarks.naive [--repeats 3] [--rounds 2] [--model PATH]

The naive loop is the way most tools do it: for each chip of the very chip grid geo2map
cuts (512 px, overlap 64), a rasterio window read, /255 and the card's normalization, one
chip per forward pass (batch 1), fp32, contiguous (NCHW) memory, ``torch.no_grad``, all
cores to torch; each result (render RGB and argmax class mask) is written back by window
into two tiled DEFLATE GeoTIFFs (later chips simply overwrite the overlap: no blending, no
COG, no overviews, no validity mask, so it does *less* work than geo2map outside the
model). geo2map runs ``geo2map.translate`` with its defaults (file to finished COGs +
quicklook). The two are interleaved ``--rounds`` times; the best of each is kept.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.windows import Window

from benchmarks.common import alternate, arguments, benchmark_run, end_to_end
from geo2map.models.io import load_model
from geo2map.options import TranslateOptions
from geo2map.plan import plan_scene
from geo2map.translator import pick_device, pick_precision


def naive_loop(scene_path: Path, model_path: str, chips, size: int, out: Path) -> None:
    torch.set_num_threads(os.cpu_count() or 1)  # geo2map's runs set it process-wide
    model, card = load_model(model_path)
    model.eval()
    mean = np.asarray(card.input.mean, dtype=np.float32)[:, None, None]
    std = np.asarray(card.input.std, dtype=np.float32)[:, None, None]
    out.mkdir(parents=True, exist_ok=True)
    with rasterio.open(scene_path) as src:
        profile = {
            "driver": "GTiff", "width": src.width, "height": src.height, "crs": src.crs,
            "transform": src.transform, "dtype": "uint8", "tiled": True,
            "blockxsize": 512, "blockysize": 512, "compress": "deflate",
        }  # fmt: skip
        with (
            rasterio.open(out / "render.tif", "w", count=3, **profile) as render_dst,
            rasterio.open(out / "mask.tif", "w", count=1, **profile) as mask_dst,
        ):
            for chip in chips:
                h, w = min(size, src.height - chip.row), min(size, src.width - chip.col)
                window = Window(chip.col, chip.row, w, h)
                x = src.read([1, 2, 3], window=window).astype(np.float32) / 255.0
                x = torch.from_numpy((x - mean) / std)[None].contiguous()
                with torch.no_grad():
                    y = model(x)
                render = (y["render"][0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
                mask = torch.softmax(y["mask_logits"][0], dim=0).argmax(0).to(torch.uint8)
                render_dst.write(render, window=window)
                mask_dst.write(mask.numpy(), 1, window=window)


def main() -> None:
    parser = arguments(__doc__, repeats=3, rounds=True, model=True)
    args = parser.parse_args()
    with benchmark_run("naive", args) as run:
        scene_path, tmp = run.scene(), run.folder
        options = TranslateOptions(model=str(run.model), overwrite=True)
        _, card = load_model(options.model)
        plan = plan_scene(scene_path, options, card)
        assert not plan.needs_resampling  # the naive loop reads the file's own pixels
        mp = plan.output_height * plan.output_width / 1e6
        chips = plan.chips.chips
        print(f"{len(chips)} chips of {options.chip_size} px, model {card.name}", flush=True)
        times = alternate(
            {
                "naive loop": lambda: naive_loop(
                    scene_path, str(run.model), chips, options.chip_size, tmp / "naive"
                ),
                "geo2map end to end": lambda: end_to_end(scene_path, tmp / "out", options),
            },
            args.rounds,
        )
        best = {k: min(v) for k, v in times.items()}
        ratio = best["naive loop"] / best["geo2map end to end"]
        for k, s in best.items():
            print(f"{k:<20}: {mp / s:6.2f} MP/s ({s:.1f} s)")
        print(f"ratio geo2map / naive loop: {ratio:.2f}x  (target >= 3x)")
        run.report(
            {
                "scene_px": [plan.output_width, plan.output_height], "megapixels": mp,
                "chips": len(chips), "chip_size": options.chip_size, "overlap": options.overlap,
                "geo2map_batch_size": options.batch_size,
                "geo2map_precision": str(pick_precision(pick_device("auto"), "auto", card)),
                "model": f"{card.name} ({run.model_note})",
                "seconds": times,
                "megapixels_per_second": {k: mp / s for k, s in best.items()},
                "ratio_geo2map_over_naive": ratio,
                "target": ">= 3x",
            }
        )  # fmt: skip


if __name__ == "__main__":
    main()
