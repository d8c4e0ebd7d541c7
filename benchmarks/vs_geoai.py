"""Target 3: geo2map end to end over geoai's ``predict_geotiff``, same model and tiles (>= 3x).

    .venv/bin/python -m benchmarks.vs_geoai [--repeats 4] [--rounds 2] [--bench-python PATH]

geoai (pip ``geoai-py``) is a benchmark-only dependency living in its own venv
(``.venv-bench``); it runs in a subprocess of that venv's python. Both tools get:
- the same model: an smp U-Net, resnet18 encoder, ``encoder_weights=None``, 8 output
  channels (3 render + 5 class logits), ``decoder_interpolation="bilinear"``, the same
  random weights (seed 0). geo2map loads it through its registry ("smp-unet", saved with
  ``geo2map.models.save_model`` and a card with ``gsd_m`` 0.6, the scene's GSD being
  0.597 m, so no resampling); geoai gets the plain ``smp.Unet`` with those weights;
- the same input GeoTIFF: the repeated real aerial COG materialized as one tiled JPEG
  GeoTIFF (``1024 * repeats`` px a side);
- tile 512, overlap 64, batch 8 (geoai's tile grid equals geo2map's chip grid here);
- the same input normalization ((x/255 - 0.5) / 0.5, geoai's ``preprocess_fn``).
geoai blends 8 float logits (spline weights) over the whole scene in RAM, then its
``postprocess_fn`` turns them into what geo2map writes (uint8 render RGB + argmax class)
and writes one 4-band DEFLATE GeoTIFF; geo2map writes its two COGs + quicklook.
Each run is a fresh process; only the call is timed (imports and model construction are
not), and each child reports its own peak RSS (ru_maxrss). Runs alternate; best time of each.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from benchmarks import common

BENCH_PYTHON = common.PROJECT_ROOT / ".venv-bench" / "bin" / "python"

# Runs under .venv-bench's python (geoai installed, geo2map not needed).
GEOAI_CHILD = r"""
import json, resource, sys, time
import numpy as np, torch, segmentation_models_pytorch as smp
from safetensors.torch import load_file
from geoai.inference import predict_geotiff

scene, weights, out = sys.argv[1:4]
net = smp.Unet(encoder_name="resnet18", encoder_weights=None, in_channels=3, classes=8,
               decoder_interpolation="bilinear")
state = {k.removeprefix("net."): v for k, v in load_file(weights).items()}
net.load_state_dict(state, strict=True)

def preprocess(tile):
    return ((tile.astype(np.float32) / 255.0 - 0.5) / 0.5).astype(np.float32)

def postprocess(x):  # (8, H, W) blended logits -> uint8 render RGB + class, like geo2map
    render = np.rint(255.0 / (1.0 + np.exp(-x[:3]))).astype(np.uint8)
    return np.concatenate([render, x[3:].argmax(axis=0)[None].astype(np.uint8)])

start = time.perf_counter()
predict_geotiff(net, scene, out, tile_size=512, overlap=64, batch_size=8, num_classes=8,
                output_dtype="uint8", output_nodata=255, preprocess_fn=preprocess,
                postprocess_fn=postprocess, device="cpu", compress="deflate", verbose=False)
seconds = time.perf_counter() - start
import geoai
print(json.dumps({"seconds": seconds, "torch_threads": torch.get_num_threads(),
                  "geoai": getattr(geoai, "__version__", "?"),
                  "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def make_model(folder: Path) -> Path:
    """The smp U-Net (resnet18, 3 + 5 outputs), seed-0 random weights, saved for geo2map."""
    import torch

    from geo2map.models.card import Architecture, InputSpec, ModelCard
    from geo2map.models.io import save_model
    from geo2map.models.registry import build_model

    torch.manual_seed(0)
    arch = Architecture(
        name="smp-unet", kwargs={"in_channels": 3, "num_classes": 5, "encoder": "resnet18"}
    )
    card = ModelCard(
        name="smp-unet-resnet18-bench",
        description="benchmark only: random weights",
        architecture=arch,
        input=InputSpec(gsd_m=0.6, multiple=32),
    )
    save_model(build_model(arch).eval(), card, folder / "smp")
    return folder / "smp"


def geo2map_child(scene_path: str, model: str, out: str) -> None:
    import geo2map
    from geo2map.execution import tune_malloc
    from geo2map.models.io import load_model

    tune_malloc()  # as the geo2map command does
    from geo2map.translator import pick_device, pick_precision

    start = time.perf_counter()
    geo2map.translate(
        scene_path, out, model=model, chip_size=512, overlap=64, batch_size=8, overwrite=True
    )
    common.child_result(
        seconds=time.perf_counter() - start,
        precision=str(pick_precision(pick_device("auto"), "auto", load_model(model)[1])),
    )


def main() -> None:
    parser = common.arguments(__doc__, repeats=4, rounds=True, model=False)
    parser.add_argument("--bench-python", default=str(BENCH_PYTHON))
    parser.add_argument("--child-geo2map", nargs=3, metavar=("SCENE", "MODEL", "OUT"))
    args = parser.parse_args()
    if args.child_geo2map:
        geo2map_child(*args.child_geo2map)
        return
    if not Path(args.bench_python).exists():
        sys.exit(f"{args.bench_python} missing: create .venv-bench and pip install geoai-py")
    mp = common.megapixels(args.repeats)
    with common.benchmark_run("vs_geoai", args, with_model=False) as run:
        tmp = run.folder
        model = make_model(tmp)
        tif = run.scene(geotiff=True)
        child = tmp / "geoai_child.py"
        child.write_text(GEOAI_CHILD)
        runs = {
            "geoai predict_geotiff": [
                args.bench_python, str(child), str(tif), str(model) + ".safetensors",
                str(tmp / "geoai_out.tif"),
            ],
            "geo2map translate": [
                sys.executable, "-m", "benchmarks.vs_geoai", "--child-geo2map",
                str(tif), str(model), str(tmp / "g2m"),
            ],
        }  # fmt: skip
        results: dict[str, list[dict]] = {k: [] for k in runs}
        for r in range(args.rounds):
            for k in runs if r % 2 == 0 else reversed(runs):
                results[k].append(common.run_child(runs[k]))
                res = results[k][-1]
                print(f"  round {r + 1}: {k:<22} {res['seconds']:7.1f} s, "
                      f"peak RSS {res['ru_maxrss_mb']:6.0f} MB", flush=True)  # fmt: skip
        best = {k: min(x["seconds"] for x in v) for k, v in results.items()}
        peak = common.peak_rss_by_config(results)
        ratio = best["geoai predict_geotiff"] / best["geo2map translate"]
        for k in runs:
            print(f"{k:<22}: {mp / best[k]:6.2f} MP/s ({best[k]:.1f} s), peak RSS {peak[k]:.0f} MB")
        print(f"ratio geo2map / geoai: {ratio:.2f}x  (target >= 3x)")
        run.report(
            {
                "scene_px": [1024 * args.repeats] * 2, "megapixels": mp,
                "tile": 512, "overlap": 64, "batch_size": 8,
                "model": "smp Unet resnet18, 8 outputs, encoder_weights=None, seed-0 weights",
                "runs": results,
                "megapixels_per_second": {k: mp / s for k, s in best.items()},
                "peak_rss_mb": peak,
                "ratio_geo2map_over_geoai": ratio,
                "target": ">= 3x",
            }
        )  # fmt: skip


if __name__ == "__main__":
    main()
