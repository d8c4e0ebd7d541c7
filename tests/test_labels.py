"""A model scored on a georeferenced scene against GIS label layers (geo2map evaluate --scene)."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
from typer.testing import CliRunner

import geo2map
from geo2map.cli import app
from geo2map.labels import LabelLayer
from geo2map.options import TranslateOptions
from geo2map.train.evaluate_scenes import evaluate_scene

ATLANTA = "spacenet-atlanta-pan-uint16-epsg32616.tif"  # 900 x 900 px at 0.5 m, 43 footprints


def own_polygons(scene: Path, model: str, out: Path) -> tuple[str, Path, int]:
    """The model's own mask of the scene as polygons of its most common class."""
    [summary] = geo2map.translate(scene, out, model=model, chip_size=128, overlap=16)
    mask_path = next(p for p in map(Path, summary.outputs) if p.name.endswith("_mask.tif"))
    with rasterio.open(mask_path) as ds:
        mask = ds.read(1)
    classes, counts = np.unique(mask[mask != 255], return_counts=True)
    cid = int(classes[counts.argmax()])
    polygons = out / "own.gpkg"
    result = CliRunner().invoke(app, ["vectorize", str(mask_path), "--out", str(polygons)])
    assert result.exit_code == 0, result.output
    frame = gpd.read_file(polygons)
    frame[frame.class_id == cid].to_file(out / "class.gpkg")
    return (
        frame[frame.class_id == cid].class_name.iloc[0],
        out / "class.gpkg",
        int((mask == cid).sum()),
    )


def test_a_models_own_polygons_score_iou_one_and_lines_within_a_buffer_are_found(
    scenes, models, tmp_path
):
    scene = scenes / ATLANTA
    model = models(0.5)
    name, polygons, pixels = own_polygons(scene, model, tmp_path / "own")
    options = TranslateOptions(model=model, chip_size=128, overlap=16)
    [score] = evaluate_scene(scene, [LabelLayer(polygons, name)], options, complete=True)
    assert (score.name, score.labelled_pixels) == (name, pixels)
    assert score.iou == score.precision == score.recall == 1.0
    # the outlines as line labels: every crossed pixel touches the class, one pixel away at most
    lines = gpd.read_file(polygons)
    lines["geometry"] = lines.boundary
    lines.to_file(tmp_path / "lines.gpkg")
    near = evaluate_scene(scene, [LabelLayer(tmp_path / "lines.gpkg", name)], options,
                          line_buffer=0.5)[0]  # fmt: skip
    exact = evaluate_scene(scene, [LabelLayer(tmp_path / "lines.gpkg", name)], options)[0]
    assert near.line_recall == 1.0 > exact.line_recall > 0
    # half the scene: only its pixels are scored
    with rasterio.open(scene) as ds:
        left, bottom, right, top = ds.bounds
    west = (left, bottom, (left + right) / 2, top)
    [half] = evaluate_scene(scene, [LabelLayer(polygons, name)], options, True, west)
    assert 0 < half.labelled_pixels < pixels and half.iou == 1.0


def test_evaluate_scores_the_atlanta_footprints_and_refuses_bad_labels(scenes, models, tmp_path):
    runner = CliRunner()
    scene = str(scenes / ATLANTA)
    footprints = str(scenes / "spacenet-atlanta-buildings.geojson")
    base = ["evaluate", "--model", models(0.5), "--scene", scene]
    result = runner.invoke(app, [*base, "--labels", f"{footprints}=building", "--complete"])
    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if line.startswith("| building"))
    assert len(row.split("|")) == 8  # class, pixels, IoU, precision, recall, line recall
    far = gpd.read_file(footprints)
    far["geometry"] = far.translate(10_000, 0)  # 10 km east of the scene
    far.to_file(tmp_path / "far.gpkg")
    for args, message in (
        (["--labels", f"{footprints}=bridge"], "its classes are other, building"),
        (["--labels", footprints], "write FILE=CLASS"),
        (["--labels", f"{tmp_path / 'far.gpkg'}=building"], "falls inside the scene"),
        (["--labels", f"{tmp_path / 'none.gpkg'}=building"], "no such label file"),
    ):
        result = runner.invoke(app, [*base, *args])
        assert result.exit_code == 2, result.output
        assert len(result.stderr.splitlines()) == 1 and message in result.stderr, result.stderr
    result = runner.invoke(app, ["evaluate", "--model", models(0.5), "--scene", scene])
    assert result.exit_code == 2 and "go together" in result.stderr


def test_fine_tuning_on_half_a_scene_beats_the_shipped_model_on_the_other_half(scenes, tmp_path):
    """pipelines/finetune-atlanta.yaml: the shipped model, fine-tuned on the footprints of
    the west half of the Atlanta sample, finds the east half's buildings better."""
    from geo2map.models.io import DEFAULT_MODEL

    shipped = Path(__file__).parent.parent / "pipelines" / "finetune-atlanta.yaml"
    result = CliRunner().invoke(app, [
        "train", str(shipped), "--no-progress", "--set", f"out_dir={tmp_path / 'run'}",
        "--set", "train.steps=20", "--set", "train.val_every=20",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    with rasterio.open(scenes / ATLANTA) as ds:
        left, bottom, right, top = ds.bounds
    east = ((left + right) / 2, bottom, right, top)
    footprints = [LabelLayer(scenes / "spacenet-atlanta-buildings.geojson", "building")]
    iou = {
        name: evaluate_scene(
            scenes / ATLANTA,
            footprints,
            TranslateOptions(model=str(model)),
            complete=True,
            bounds=east,
        )[0].iou  # fmt: skip
        for name, model in (("shipped", DEFAULT_MODEL), ("tuned", tmp_path / "run" / "best"))
    }
    assert iou["tuned"] > iou["shipped"], iou


def test_a_training_scene_with_bad_labels_or_split_is_refused_before_training(tmp_path):
    import yaml

    shipped = Path(__file__).parent.parent / "pipelines" / "finetune-atlanta.yaml"
    doc = yaml.safe_load(shipped.read_text())
    source = doc["data"]["scenes"][0]
    cases = (
        ({"labels": [{"file": "spacenet-atlanta-buildings", "class": "bridge"}]}, "no class 'bridge'"),
        ({"holdout": [0, 0, 1e7, 1e7]}, "left no training block"),
        ({"labels": [{"file": "spacenet-atlanta-buildings", "class": "building"},
                     {"file": "spacenet-atlanta-buildings", "class": "road", "buffer": 2}]},
         "several classes"),
    )  # fmt: skip
    for change, message in cases:
        bad = tmp_path / "bad.yaml"
        bad.write_text(yaml.safe_dump({**doc, "out_dir": str(tmp_path / "run"),
                                       "data": {**doc["data"], "scenes": [{**source, **change}]}}))  # fmt: skip
        result = CliRunner().invoke(app, ["train", str(bad), "--no-progress"])
        assert result.exit_code == 2, result.output
        assert len(result.stderr.splitlines()) == 1 and message in result.stderr, result.stderr
        assert not (tmp_path / "run" / "best.safetensors").exists()
