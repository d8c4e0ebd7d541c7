"""``geo2map evaluate --scene S --labels FILE=CLASS``: a model scored on a labelled scene.

The scene is translated as ``geo2map translate`` would (same engine, its own grid) and its
mask compared, pixel by pixel, with the label layers burnt on that grid (labels.py).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import from_bounds

from geo2map.engine import compute_scene
from geo2map.errors import Geo2MapError
from geo2map.execution import job_settings, open_runner
from geo2map.labels import ClassScore, LabelLayer, rasterize_layers, score_mask
from geo2map.models.int8_cache import checked_card
from geo2map.options import TranslateOptions
from geo2map.plan import plan_scene


def region_mask(ds: rasterio.DatasetReader, bounds: tuple[float, ...] | None) -> np.ndarray:
    """The pixels inside ``bounds`` (xmin, ymin, xmax, ymax in the scene's CRS), or all."""
    region = np.zeros((ds.height, ds.width), dtype=bool)
    if bounds is None:
        region[:] = True
        return region
    window = from_bounds(*bounds, transform=ds.transform).round_offsets().round_lengths()
    r0, c0 = max(0, window.row_off), max(0, window.col_off)
    r1, c1 = (
        min(ds.height, window.row_off + window.height),
        min(ds.width, window.col_off + window.width),
    )
    if r1 <= r0 or c1 <= c0:
        raise Geo2MapError(f"--bounds {' '.join(f'{b:g}' for b in bounds)} is outside the scene")
    region[r0:r1, c0:c1] = True
    return region


def evaluate_scene(
    scene: str | Path, layers: list[LabelLayer], options: TranslateOptions,
    complete: bool = False, bounds: tuple[float, ...] | None = None, line_buffer: float = 0.0,
) -> tuple[list[ClassScore], list[str]]:  # fmt: skip
    """Per labelled class: recall (and, for complete labels, precision and IoU; for line
    layers, the share of line pixels within ``line_buffer`` map units of the class); and the
    notes of what was done to the labels (reprojections)."""
    card = checked_card(options.model_source)
    with rasterio.open(scene) as ds:
        crs, transform, shape = ds.crs, ds.transform, (ds.height, ds.width)
        region = region_mask(ds, bounds)
    if crs is None:
        raise Geo2MapError(f"{scene}: labels need a scene with a CRS")
    class_ids = {c.name: c.id for c in card.classes}
    labels = rasterize_layers(layers, class_ids, crs, transform, shape)
    with job_settings(), open_runner(options.scheduler, options.workers, None) as runner:
        plan = replace(plan_scene(scene, options, card), torch_threads=runner.torch_threads)
        predicted = compute_scene(plan, runner, options.block_size)[3]
    buffer_px = round(line_buffer / abs(transform.a)) if line_buffer else 0
    scores = score_mask(predicted, labels, card.class_names, complete, region, buffer_px)
    return scores, labels.notes


def scores_table(scores: list[ClassScore], complete: bool) -> str:
    def pct(v: float | None) -> str:
        return "-" if v is None else f"{v:.3f}"

    rows = [
        "| class | labelled px | IoU | precision | recall | line recall |",
        "|---|---|---|---|---|---|",
    ]
    rows += [
        f"| {s.name} | {s.labelled_pixels} | {pct(s.iou)} | {pct(s.precision)} | "
        f"{pct(s.recall)} | {pct(s.line_recall)} |"
        for s in scores
    ]
    if not complete:
        rows.append("(labels not --complete: IoU and precision need every instance drawn)")
    return "\n".join(rows)
