"""One picture of what models make of real scenes: a row per scene, input | render | mask per
model, each scene translated by ``geo2map.translate`` exactly as a user runs it.

    python -m geo2map.train.showcase --out docs/showcase.png [--model A --model B] [SCENE ...]

Scenes are catalog names (default: the shared scenes between 0.1 and 1 m, the README demo
first); models are model paths (default: the shipped model).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image

from geo2map.catalog import resolve
from geo2map.models.io import DEFAULT_MODEL

SCENES = [
    "dutch-aerial-25cm",
    "aerial-0.6m",
    "neon-osbs-10cm",
    "aerial-15cm-rgb-mask",
    "spacenet-atlanta-pan",
]
CELL = 300


def _rgb(path: Path, stretch: bool = True) -> np.ndarray:
    """The first three bands (or the one band, repeated) as uint8; an input is stretched from
    its 2nd to 98th percentile for display, a render is shown as written."""
    with rasterio.open(path) as ds:
        bands = [1, 2, 3] if ds.count >= 3 else [1, 1, 1]
        a = ds.read(bands).astype(np.float64)
    if not stretch:
        return a.astype(np.uint8).transpose(1, 2, 0)
    lo, hi = np.percentile(a, 2), np.percentile(a, 98)
    return (np.clip((a - lo) / max(hi - lo, 1e-9), 0, 1) * 255).astype(np.uint8).transpose(1, 2, 0)


def _mask_rgb(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        m = ds.read(1)
        cmap = ds.colormap(1)
    lut = np.zeros((256, 3), np.uint8)
    for k, c in cmap.items():
        lut[k] = c[:3]
    return lut[m]


def _cell(a: np.ndarray) -> Image.Image:
    im = Image.fromarray(a)
    scale = CELL / max(im.size)
    return im.resize((round(im.width * scale), round(im.height * scale)), Image.NEAREST)


def showcase(scenes: list[str], models: list[str], out: Path) -> Path:
    from geo2map import translate

    rows: list[list[Image.Image]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in scenes:
            src = resolve(name, verify=False)
            row = [_cell(_rgb(src))]
            for i, model in enumerate(models):
                summary = translate(src, Path(tmp) / f"m{i}", model=model, overwrite=True)[0]
                outputs = [Path(o) for o in summary.outputs]
                render = next(o for o in outputs if o.name.endswith("_render.tif"))
                mask = next(o for o in outputs if o.name.endswith("_mask.tif"))
                row += [_cell(_rgb(render, stretch=False)), _cell(_mask_rgb(mask))]
            rows.append(row)
    width = max(sum(c.width for c in r) for r in rows)
    canvas = Image.new("RGB", (width, sum(max(c.height for c in r) for r in rows)), "white")
    y = 0
    for r in rows:
        x = 0
        for c in r:
            canvas.paste(c, (x, y))
            x += c.width
        y += max(c.height for c in r)
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out, optimize=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenes", nargs="*", default=SCENES)
    parser.add_argument("--model", action="append", default=None)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    print(showcase(args.scenes, args.model or [str(DEFAULT_MODEL)], args.out))


if __name__ == "__main__":
    main()
