"""The comparison table: every model on the same validation files, with its budget and speed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from geo2map.train.compare import CELL, DEFAULT_PIPELINE, GRID_SAMPLES, compare
from geo2map.train.evaluate import evaluate_pipeline
from tests.test_stargan import train_tiny


def small_pipeline(tmp_path: Path) -> Path:
    """The default pipeline's Moscow pairs and LandCover.ai chips, a few validation files
    each, and US roads (a quick test)."""
    doc = yaml.safe_load(DEFAULT_PIPELINE.read_text())
    doc["data"]["moscow_val"] = doc["data"]["landcover_val"] = GRID_SAMPLES
    doc["data"]["masks"] = [
        {**m, "val": 2} for m in doc["data"]["masks"] if m["name"] == "roads_us"
    ]
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_every_model_is_scored_on_the_same_files_beside_its_budget_and_speed(models, tmp_path):
    assert train_tiny(tmp_path / "stargan").exit_code == 0
    stargan = str(tmp_path / "stargan" / "best")
    pipeline = small_pipeline(tmp_path)
    rows = compare({"U-Net": models(), "StarGAN": stargan}, tmp_path / "cmp", pipeline)

    # the same scores as evaluating the model alone on that pipeline's validation files
    alone = evaluate_pipeline(stargan, pipeline)
    for key in ("rmse", "acc10", "osm_miou", "lc_miou", "roads_us_road_iou"):
        assert rows["StarGAN"][key] == alone[key], key
    assert "dubai_miou" not in rows["StarGAN"]  # not in this pipeline: "-" in the table
    # the budget comes from each card: the tiny run's two steps; a card without training: "-"
    assert rows["StarGAN"]["budget"].startswith("2 steps") and "CPU" in rows["StarGAN"]["budget"]
    assert rows["U-Net"]["budget"] == "-"
    assert rows["U-Net"]["mps"] > 0 and rows["StarGAN"]["mps"] > 0
    # the one-colour render and the snapped real map: scored, never a model's budget or speed
    trivial, oracle = rows["most common map colour (trivial)"], rows[
        "true map snapped to the palette (upper bound)"]  # fmt: skip
    assert oracle["rmse"] < trivial["rmse"] and oracle["acc10"] > trivial["acc10"]
    table = (tmp_path / "cmp" / "table.md").read_text().splitlines()
    assert len(table) == 6 and table[4].startswith("| U-Net | - |")
    assert table[5].split(" | ")[8] == "-"  # the Dubai column
    assert table[2].split(" | ")[-1] == "- |"  # no MP/s for a render without a model

    # a column per model after photo and truth; Moscow rows then LandCover.ai rows
    grid = np.asarray(Image.open(tmp_path / "cmp" / "grid.png").convert("RGB"))
    assert grid.shape == (2 * GRID_SAMPLES * CELL, 4 * CELL, 3)
    stargan_renders = grid[: GRID_SAMPLES * CELL, 3 * CELL :]
    unet_renders = grid[: GRID_SAMPLES * CELL, 2 * CELL : 3 * CELL]
    assert not np.array_equal(stargan_renders, unet_renders)
