"""A model scored on a georeferenced scene against GIS label layers (geo2map evaluate --scene)."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import torch
from typer.testing import CliRunner

import geo2map
from geo2map.cli import app
from geo2map.errors import Geo2MapError
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
    [score], notes = evaluate_scene(scene, [LabelLayer(polygons, name)], options, complete=True)
    assert notes == []  # the polygons are in the scene's CRS
    assert (score.name, score.labelled_pixels) == (name, pixels)
    assert score.iou == score.precision == score.recall == 1.0
    # the outlines as line labels: every crossed pixel touches the class, one pixel away at most
    lines = gpd.read_file(polygons)
    lines["geometry"] = lines.boundary
    lines.to_file(tmp_path / "lines.gpkg")

    def line_recall(buffer: float) -> float:
        layer = LabelLayer(tmp_path / "lines.gpkg", name, buffer)
        return evaluate_scene(scene, [layer], options, line_buffer=buffer)[0][0].line_recall

    assert line_recall(0.5) == 1.0 > line_recall(0.1) > 0  # one pixel away; on the line
    # half the scene: only its pixels are scored
    with rasterio.open(scene) as ds:
        left, bottom, right, top = ds.bounds
    west = (left, bottom, (left + right) / 2, top)
    [half], _ = evaluate_scene(scene, [LabelLayer(polygons, name)], options, True, west)
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


FINETUNE = Path(__file__).parent.parent / "pipelines" / "finetune-atlanta.yaml"


def fine_tune(out: Path, *overrides: str) -> None:
    """Run pipelines/finetune-atlanta.yaml into ``out`` with ``--set`` overrides."""
    sets = [arg for o in (f"out_dir={out}", *overrides) for arg in ("--set", o)]
    result = CliRunner().invoke(app, ["train", str(FINETUNE), "--no-progress", *sets])
    assert result.exit_code == 0, result.output


def test_fine_tuning_on_half_a_scene_beats_the_shipped_model_on_the_other_half(scenes, tmp_path):
    """pipelines/finetune-atlanta.yaml: the shipped model, fine-tuned on the footprints of
    the west half of the Atlanta sample, finds the east half's buildings better."""
    from geo2map.models.io import DEFAULT_MODEL

    fine_tune(tmp_path / "run", "train.steps=20", "train.val_every=20")
    with rasterio.open(scenes / ATLANTA) as ds:
        left, bottom, right, top = ds.bounds
    east = ((left + right) / 2, bottom, right, top)
    footprints = [LabelLayer(scenes / "spacenet-atlanta-buildings.geojson", "building")]
    iou = {}
    for name, model in (("shipped", DEFAULT_MODEL), ("tuned", tmp_path / "run" / "best")):
        options = TranslateOptions(model=str(model))
        [score], _ = evaluate_scene(scenes / ATLANTA, footprints, options, True, east)
        iou[name] = score.iou
    assert iou["tuned"] > iou["shipped"], iou


def test_a_training_scene_with_bad_labels_or_split_is_refused_before_training(tmp_path):
    for change, message in (
        ({"labels": [{"file": "spacenet-atlanta-buildings", "class": "bridge"}]}, "no class 'bridge'"),
        ({"holdout": [0, 0, 1e7, 1e7]}, "left no training block"),
    ):  # fmt: skip
        assert_training_refused(tmp_path, change, message)


def test_labels_are_reprojected_once_and_bad_layers_are_refused(scenes, models, tmp_path):
    runner = CliRunner()
    footprints = gpd.read_file(scenes / "spacenet-atlanta-buildings.geojson")
    base = ["evaluate", "--model", models(0.5), "--scene", str(scenes / ATLANTA)]
    footprints.to_crs("EPSG:4326").to_file(tmp_path / "wgs84.gpkg")
    result = runner.invoke(app, [*base, "--labels", f"{tmp_path / 'wgs84.gpkg'}=building"])
    assert result.exit_code == 0, result.output
    assert result.stdout.count("reprojected from EPSG:4326") == 1
    footprints.iloc[:0].to_file(tmp_path / "empty.gpkg")
    lines = footprints.copy()
    lines["geometry"] = lines.boundary
    lines.to_file(tmp_path / "lines.gpkg")
    for args, message in (
        (["--labels", f"{tmp_path / 'empty.gpkg'}=building"], "has no features"),
        (["--labels", f"{tmp_path / 'lines.gpkg'}=building"], "need a buffer width"),
    ):
        result = runner.invoke(app, [*base, *args])
        assert result.exit_code == 2, result.output
        assert len(result.stderr.splitlines()) == 1 and message in result.stderr, result.stderr
    # an attribute mapped to classes: the first value the mapping lacks is named
    layer = dict(
        file="spacenet-atlanta-buildings", attribute="building", classes={"yes": "building"}
    )
    ok = LabelLayer(scenes / "spacenet-atlanta-buildings.geojson", None, 0.0, "building",
                    (("yes", "building"),))  # fmt: skip
    scores, _ = evaluate_scene(scenes / ATLANTA, [ok], TranslateOptions(model=models(0.5)))
    assert [s.name for s in scores] == ["building"]
    for change, message in (
        (
            {**layer, "classes": {"no": "building"}},
            "building value 'yes' is not in the class mapping",
        ),
        ({**layer, "attribute": "kind"}, "no attribute 'kind'"),
    ):
        assert_training_refused(tmp_path, {"labels": [change]}, message)


def assert_training_refused(tmp_path: Path, change: dict, message: str) -> None:
    import yaml

    doc = yaml.safe_load(FINETUNE.read_text())
    source = {**doc["data"]["scenes"][0], **change}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**doc, "out_dir": str(tmp_path / "run"),
                                   "data": {**doc["data"], "scenes": [source]}}))  # fmt: skip
    result = CliRunner().invoke(app, ["train", str(bad), "--no-progress"])
    assert result.exit_code == 2, result.output
    assert len(result.stderr.splitlines()) == 1 and message in result.stderr, result.stderr
    assert not (tmp_path / "run" / "best.safetensors").exists()


def test_freeze_encoder_trains_the_decoder_and_heads_only(tmp_path):
    from safetensors.torch import load_file

    from geo2map.models.io import DEFAULT_MODEL

    fine_tune(tmp_path / "run", "train.steps=3", "model.freeze_encoder=true")
    before = load_file(str(DEFAULT_MODEL.with_suffix(".safetensors")))
    after = load_file(str(tmp_path / "run" / "last.safetensors"))
    changed = {k for k in before if not torch.equal(before[k].float(), after[k].float())}
    assert changed and all(not k.startswith("net.encoder.") for k in changed), sorted(changed)[:3]
    assert any(k.startswith("net.decoder.") for k in changed)


def test_a_label_raster_scores_as_the_vector_layer_it_was_burnt_from(scenes, models, tmp_path):
    from rasterio.features import rasterize

    scene = scenes / ATLANTA
    footprints = gpd.read_file(scenes / "spacenet-atlanta-buildings.geojson")
    with rasterio.open(scene) as ds:
        profile = {"driver": "GTiff", "width": ds.width, "height": ds.height, "count": 1,
                   "dtype": "uint8", "crs": ds.crs, "transform": ds.transform, "nodata": 0}  # fmt: skip
        burnt = rasterize(footprints.geometry, out_shape=(ds.height, ds.width),
                          transform=ds.transform, default_value=1, dtype="uint8")  # fmt: skip
    with rasterio.open(tmp_path / "labels.tif", "w", **profile) as dst:
        dst.write(burnt, 1)  # 1 = building (the model's class id), 0 = nodata: unlabelled
    options = TranslateOptions(model=models(0.5))
    vector = LabelLayer(scenes / "spacenet-atlanta-buildings.geojson", "building")
    [from_vector], _ = evaluate_scene(scene, [vector], options, complete=True)
    [from_raster], _ = evaluate_scene(scene, [LabelLayer(tmp_path / "labels.tif")], options, True)
    assert from_raster == from_vector
    mapped = LabelLayer(tmp_path / "labels.tif", mapping=(("1", "road"),))
    assert evaluate_scene(scene, [mapped], options, True)[0][0].name == "road"
    words = LabelLayer(tmp_path / "labels.tif", mapping=(("yes", "building"),))
    with pytest.raises(Geo2MapError, match="from integer pixel values"):
        evaluate_scene(scene, [words], options, True)
    result = CliRunner().invoke(app, [
        "evaluate", "--model", models(0.5), "--scene", str(scene),
        "--labels", str(tmp_path / "labels.tif"), "--complete",
    ])  # fmt: skip
    assert result.exit_code == 0 and "| building |" in result.stdout, result.output


def test_complete_labels_of_two_classes_make_the_rest_none_of_them(scenes, tmp_path):
    from geo2map.train.config import SceneSourceConfig
    from geo2map.train.data import IGNORE_LABEL, excluded_classes
    from geo2map.train.scene_source import load_scene_source

    lines = gpd.read_file(scenes / "spacenet-atlanta-buildings.geojson")
    lines["geometry"] = lines.boundary.translate(3, 3)  # "roads" beside each building
    lines.to_file(tmp_path / "roads.gpkg")
    cfg = SceneSourceConfig.model_validate({
        "name": "two", "scene": str(scenes / ATLANTA), "complete": True, "block": 128,
        "labels": [{"file": "spacenet-atlanta-buildings", "class": "building"},
                   {"file": str(tmp_path / "roads.gpkg"), "class": "road", "buffer": 1}],
    })  # fmt: skip
    names = ["other", "building", "vegetation", "water", "road"]
    source = load_scene_source(cfg, 0.6, names)
    masks = [source.train[i].mask for i in range(len(source.train))]
    values = set(np.unique(np.concatenate([m.ravel() for m in masks])).tolist())
    rest = values - {1, 4, IGNORE_LABEL}
    assert {1, 4} <= values and len(rest) == 1 and excluded_classes(rest.pop()) == {1, 4}
    assert source.drawn == {1, 4} and source.metric == "two_iou"
    train = {b[:2] for b in source.train.boxes}
    assert train and source.val.boxes and not train & {b[:2] for b in source.val.boxes}
