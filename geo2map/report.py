"""A self-contained HTML report per scene: input, render and mask on one map view with
swipe and opacity controls, the class legend with area per class, and the run summary.
Images are inlined (base64 PNG) and the script is inline: it opens with no network."""

from __future__ import annotations

import base64
import html
import io
import os
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image
from rasterio.enums import Resampling

from geo2map.scene import inspect_scene
from geo2map.vectorize import mask_classes
from geo2map.writer import atomic_write_text, hidden

SIDE = 1024  # longest side of the report's pictures


def _shape(ds: rasterio.DatasetReader) -> tuple[int, int]:
    f = max(1, int(np.ceil(max(ds.width, ds.height) / SIDE)))
    return max(1, ds.height // f), max(1, ds.width // f)


def input_picture(
    scene_path: str, shape: tuple[int, int], bands: list[int] | None = None
) -> np.ndarray:
    """The input as the model saw it (same bands and per-scene scaling), (h, w, 3) uint8."""
    scene = inspect_scene(scene_path, 3, bands)
    with rasterio.open(scene_path) as ds:
        raw = ds.read(list(scene.bands), out_shape=(3, *shape), resampling=Resampling.average)
        valid = ds.dataset_mask(out_shape=shape) > 0
    rgb = (scene.scaling.apply(raw) * 255).astype(np.uint8)
    return np.where(valid[None], rgb, 255).transpose(1, 2, 0)


def class_areas(mask_path: Path) -> tuple[dict[int, float], str]:
    """Area per class from full-resolution pixel counts (read block by block)."""
    with rasterio.open(mask_path) as ds:
        counts = np.zeros(256, np.int64)
        for _, window in ds.block_windows(1):
            counts += np.bincount(ds.read(1, window=window).ravel(), minlength=256)
        t = ds.transform
        pixel_area = abs(t.a * t.e - t.b * t.d)
        unit = "m²" if ds.crs is not None and ds.crs.is_projected else "pixels"
        if unit == "pixels":
            pixel_area = 1.0
        names = mask_classes(ds).names
    return {k: counts[k] * pixel_area for k in names}, unit


def _png_data_uri(rgb: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def write_report(scene_path: str, render: Path, mask: Path, out: Path, summary: dict[str, str],
                 bands: list[int] | None = None) -> list[Path]:  # fmt: skip
    """Write ``out`` (HTML) and the three PNG pictures beside it; returns the files written."""
    with rasterio.open(render) as r, rasterio.open(mask) as m:
        shape = _shape(r)
        render_rgb = r.read(out_shape=(3, *shape), resampling=Resampling.average).transpose(1, 2, 0)
        valid = r.dataset_mask(out_shape=shape, resampling=Resampling.nearest) > 0
        classes = m.read(1, out_shape=shape, resampling=Resampling.nearest)
        cmap = m.colormap(1)
        names = mask_classes(m).names
        bounds, crs = m.bounds, m.crs
    lut = np.full((256, 3), 255, np.uint8)
    for k in names:
        lut[k] = cmap[k][:3]
    alpha = np.where(valid, 255, 0).astype(np.uint8)[..., None]  # nodata: see-through
    pictures = {
        "input": input_picture(scene_path, shape, bands),
        "render": np.concatenate([render_rgb, alpha], axis=2),
        "mask": np.concatenate([lut[classes], alpha], axis=2),
    }
    areas, unit = class_areas(mask)
    total = sum(areas.values()) or 1.0
    legend = "".join(
        f'<tr><td><span class="sw" style="background:rgb{cmap[k][:3]}"></span></td>'
        f"<td>{html.escape(names[k])}</td><td>{_area(areas[k], unit)}</td>"
        f"<td>{100 * areas[k] / total:.1f} %</td></tr>"
        for k in sorted(names)
    )
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in summary.items()
    )
    crs_text = crs.to_string() if crs else "GCPs"
    page = TEMPLATE.format(
        title=html.escape(Path(scene_path).name),
        input=_png_data_uri(pictures["input"]),
        render=_png_data_uri(pictures["render"]),
        mask=_png_data_uri(pictures["mask"]),
        aspect=f"{shape[1]} / {shape[0]}",
        legend=legend,
        summary=rows,
        extent=html.escape(
            f"{crs_text}: x {bounds.left:.2f} to {bounds.right:.2f}, y {bounds.bottom:.2f} to {bounds.top:.2f}"
        ),
    )
    written = []
    for key, rgb in pictures.items():
        png = out.with_name(f"{out.stem}_{key}.png")
        tmp = hidden(png, "png")
        Image.fromarray(rgb).save(tmp, format="PNG")
        os.replace(tmp, png)
        written.append(png)
    return [atomic_write_text(out, page), *written]


def _area(value: float, unit: str) -> str:
    if unit == "m²":
        return f"{value / 1e4:,.2f} ha" if value >= 1e4 else f"{value:,.0f} m²"
    return f"{value:,.0f} px"


TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>geo2map report: {title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 16px; color: #222; }}
#map {{ position: relative; width: min(60vw, 640px); aspect-ratio: {aspect}; border: 1px solid #999;
        background: #fff; overflow: hidden; }}
#map img {{ position: absolute; inset: 0; width: 100%; height: 100%; image-rendering: pixelated; }}
#overlay {{ clip-path: inset(0 0 0 50%); }}
.controls label {{ margin-right: 1.5em; }}
.sw {{ display: inline-block; width: 1.2em; height: 1.2em; border: 1px solid #555; vertical-align: middle; }}
table {{ border-collapse: collapse; margin-top: 8px; }} td, th {{ padding: 2px 10px; text-align: left; }}
.side {{ display: flex; gap: 32px; align-items: flex-start; }}
.panel {{ max-width: 380px; }} .panel td {{ overflow-wrap: anywhere; }}
</style></head>
<body>
<h1>geo2map: {title}</h1>
<div class="controls">
  <label>overlay <select id="layer"><option value="render">render</option>
    <option value="mask">mask</option></select></label>
  <label>swipe <input id="swipe" type="range" min="0" max="100" value="50"></label>
  <label>opacity <input id="opacity" type="range" min="0" max="100" value="100"></label>
</div>
<div class="side">
<div><div id="map"><img id="base" src="{input}" alt="input"><img id="overlay" src="{render}" alt="overlay"></div>
<p><small>{extent}.<br>Left of the swipe line: input; right: the overlay.</small></p></div>
<div class="panel"><h2>Legend</h2><table id="legend"><tr><th></th><th>class</th><th>area</th><th>share</th></tr>{legend}</table>
<h2>Run</h2><table>{summary}</table></div>
</div>
<script>
const pictures = {{render: "{render}", mask: "{mask}"}};
const overlay = document.getElementById("overlay");
document.getElementById("layer").onchange = e => {{ overlay.src = pictures[e.target.value]; }};
document.getElementById("swipe").oninput = e => {{ overlay.style.clipPath = `inset(0 0 0 ${{e.target.value}}%)`; }};
document.getElementById("opacity").oninput = e => {{ overlay.style.opacity = e.target.value / 100; }};
</script>
</body></html>
"""
