"""The comparison table and picture grid of docs/models.md: every model scored on the same
validation files (those of one training pipeline, by default pipelines/train-default.yaml:
Moscow pairs, LandCover.ai, Dubai tiles, US roads), each image seen at the model's GSD as
``translate`` runs it, beside the training budget its card records and its inference speed.

    python -m geo2map.train.compare --model default --model stargan ... --out docs/compare

Writes ``table.md`` (one row per model), ``results.json`` and ``grid.png`` (a column per
model: Moscow photo | real map | renders, then LandCover.ai photo | true mask | masks; a
model of several styles draws the OSM style on Moscow and the land-cover style on
LandCover.ai, as its validation does).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from geo2map.models.card import ModelCard
from geo2map.models.io import load_model
from geo2map.train.config import PipelineConfig, load_config
from geo2map.train.evaluate import (
    evaluate_pipeline,
    mask_picture,
    most_common_colour_baseline,
    predict,
    predict_samples,
    snapped_map_oracle,
)
from geo2map.train.loop import Datasets, card_stages, drawing, eval_factor

DEFAULT_PIPELINE = Path(__file__).resolve().parents[2] / "pipelines" / "train-default.yaml"
# (column title, results key); a key a model has no value for is drawn as "-"
COLUMNS = [
    ("RMSE", "rmse"), ("acc5", "acc5"), ("acc10", "acc10"), ("SSIM", "ssim"),
    ("OSM mIoU", "osm_miou"), ("LandCover.ai mIoU", "lc_miou"), ("Dubai mIoU", "dubai_miou"),
    ("US road IoU", "roads_us_road_iou"), ("MP/s", "mps"),
]  # fmt: skip
GRID_SAMPLES = 4
CELL = 160


@torch.no_grad()
def inference_mps(model: nn.Module, mean: list[float], std: list[float], side: int = 512,
                  batch: int = 4, repeats: int = 3) -> float:  # fmt: skip
    """Megapixels a second of the model's forward on ``batch`` chips of ``side`` px (eval,
    bf16 autocast, channels_last, as inference runs it), best of ``repeats`` after a warm-up."""
    rng = np.random.default_rng(0)
    chips = [rng.integers(0, 256, (side, side, 3), dtype=np.uint8) for _ in range(batch)]
    predict(model, chips, mean, std)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        predict(model, chips, mean, std)
        best = min(best, time.perf_counter() - t0)
    return batch * side * side / 1e6 / best


def training_budget(card: ModelCard) -> str:
    """Cumulative steps and minutes of every training stage the card records, and where
    ("-" for a card that records no training)."""
    stages = card_stages(card)
    if all(s.get("steps") is None for s in stages):
        return "-"
    steps = sum(int(s.get("steps") or 0) for s in stages)
    minutes = sum(float(s.get("elapsed_s") or 0) for s in stages) / 60
    gpu = any("no GPU" not in str(s.get("hardware") or "no GPU") for s in stages)
    return f"{steps} steps, {minutes:.0f} min {'GPU' if gpu else 'CPU'}"


def compare(
    models: dict[str, str],
    out_dir: Path,
    pipeline: Path = DEFAULT_PIPELINE,
    speed: bool = True,
) -> dict[str, dict[str, Any]]:
    """Score each model (label -> model name or path) on ``pipeline``'s validation files;
    write the table, the results and the grid to ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = load_config(pipeline)
    data = Datasets(cfg)
    samples = grid_samples(data)
    rows = reference_rows(data)
    columns = []
    for label, ref in models.items():
        scores = evaluate_pipeline(ref, pipeline, out_dir / _slug(label))
        model, card = load_model(ref)
        row = {k: v for k, v in scores.items() if isinstance(v, float)}
        row["budget"] = training_budget(card)
        if speed:
            row["mps"] = inference_mps(model, card.input.mean, card.input.std)
        rows[label] = row
        columns.append(grid_column(model, card, cfg, *samples))
    (out_dir / "results.json").write_text(json.dumps(rows, indent=1))
    (out_dir / "table.md").write_text(table(rows))
    picture_grid(*samples, columns).quantize(256).save(out_dir / "grid.png", optimize=True)
    return rows


def reference_rows(data: Datasets) -> dict[str, dict[str, Any]]:
    """The two renders that need no model, on the same Moscow pairs: one flat colour (the
    most common of the training maps), and the real map snapped to the palette."""
    if data.moscow_val is None:
        return {}
    trivial = most_common_colour_baseline(data.moscow_val, data.moscow_train)
    return {
        "most common map colour (trivial)": {**trivial, "budget": "-"},
        "true map snapped to the palette (upper bound)": {
            **snapped_map_oracle(data.moscow_val),
            "budget": "-",
        },
    }


def table(rows: dict[str, dict[str, Any]]) -> str:
    head = ["model", "training", *(title for title, _ in COLUMNS)]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for label, r in rows.items():
        cells = [f"{r[k]:.3f}" if isinstance(r.get(k), float) else "-" for _, k in COLUMNS]
        lines.append(f"| {label} | {r.get('budget', '-')} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def grid_samples(data: Datasets) -> tuple[list[Any], list[Any]]:
    """The first Moscow pairs and LandCover.ai chips of the validation split, for the grid."""
    n = min(GRID_SAMPLES, len(data.moscow_val), len(data.lc_val))
    return [data.moscow_val[i] for i in range(n)], [data.lc_val[i] for i in range(n)]


def grid_column(
    model: nn.Module, card: ModelCard, cfg: PipelineConfig, moscow: list[Any], chips: list[Any]
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A model's renders of the Moscow photos and mask pictures of the chips, every image at
    the model's GSD (a model of several styles draws the land-cover style for the masks)."""
    d, mean, std, gsd = cfg.data, card.input.mean, card.input.std, card.input.gsd_m
    renders, _ = predict_samples(model, moscow, mean, std, eval_factor(d.moscow_gsd_m, gsd))
    with drawing(model, "landcover"):
        _, masks = predict_samples(model, chips, mean, std, eval_factor(d.landcover_gsd_m, gsd))
    return renders, [mask_picture(m) for m in masks]


def picture_grid(
    moscow: list[Any], chips: list[Any], columns: list[tuple[list[np.ndarray], list[np.ndarray]]]
) -> Image.Image:
    """Moscow rows (photo | map | each model's render), then LandCover.ai rows (photo | true
    mask | each model's mask)."""
    n = len(moscow)
    grid = Image.new("RGB", ((2 + len(columns)) * CELL, 2 * n * CELL), "white")

    def put(img: np.ndarray, row: int, col: int) -> None:
        tile = Image.fromarray(np.asarray(img, np.uint8)).resize((CELL, CELL), Image.BILINEAR)
        grid.paste(tile, (col * CELL, row * CELL))

    for k in range(n):
        lc_row = n + k
        put(moscow[k].image, k, 0)
        put(moscow[k].map_rgb, k, 1)
        put(chips[k].image, lc_row, 0)
        put(mask_picture(chips[k].mask), lc_row, 1)
        for j, (renders, masks) in enumerate(columns):
            put(renders[k], k, 2 + j)
            put(masks[k], lc_row, 2 + j)
    return grid


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in label.lower()).strip("-")[:60]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", required=True,
                    help="LABEL=MODEL (a shipped name or a path); repeat for each row")  # fmt: skip
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--pipeline", type=Path, default=DEFAULT_PIPELINE)
    ap.add_argument("--no-speed", action="store_true", help="skip the MP/s measurement")
    args = ap.parse_args()
    models = dict(m.split("=", 1) if "=" in m else (m, m) for m in args.model)
    rows = compare(models, args.out, args.pipeline, speed=not args.no_speed)
    print(table(rows))


if __name__ == "__main__":
    main()
