"""Fine-tuning with new classes: new mask channels, the old ones kept, the card's class list."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import yaml
from typer.testing import CliRunner

from geo2map.cli import app
from geo2map.labels import LabelLayer
from geo2map.models.card import DEFAULT_CLASSES, Architecture
from geo2map.options import TranslateOptions
from geo2map.train.evaluate_scenes import evaluate_scene

FINETUNE = Path(__file__).parent.parent / "pipelines" / "finetune-atlanta.yaml"
ATLANTA = "spacenet-atlanta-pan-uint16-epsg32616.tif"
FOOTPRINT = {"name": "footprint", "color": [240, 140, 200]}


def new_class_pipeline(tmp_path: Path, classes: list[dict] | None = None, **model: object) -> Path:
    """pipelines/finetune-atlanta.yaml with the footprints as a new class "footprint"."""
    doc = yaml.safe_load(FINETUNE.read_text())
    [scene] = doc["data"]["scenes"]
    scene["labels"] = [{"file": "spacenet-atlanta-buildings", "class": "footprint"}]
    default = [{"name": c["name"], "color": list(c["color"])} for c in DEFAULT_CLASSES]
    doc["model"]["classes"] = classes if classes is not None else [*default, FOOTPRINT]
    doc["model"].update(model)
    doc["out_dir"] = str(tmp_path / "run")
    path = tmp_path / "new-class.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_a_new_class_starts_as_the_closest_old_class_and_the_old_ones_are_kept(tmp_path):
    from geo2map.models.io import DEFAULT_MODEL, load_model
    from geo2map.models.registry import build_model
    from geo2map.train.classes import with_class_count
    from geo2map.train.config import load_config
    from geo2map.train.loop import Datasets, model_kwargs, start_weights

    cfg = load_config(new_class_pipeline(tmp_path))
    data = Datasets(cfg)
    assert [c.name for c in data.classes][-1] == "footprint" and len(data.classes) == 6
    kwargs = with_class_count(model_kwargs(cfg), data.classes)
    grown = build_model(Architecture(name=cfg.model.name, kwargs=kwargs)).eval()
    start_weights(cfg, grown, kwargs, data)
    shipped, _ = load_model(DEFAULT_MODEL)
    block = data.scenes[0].train[0].image[:128, :128]
    x = (torch.from_numpy(block).permute(2, 0, 1)[None].float() / 255 - 0.5) / 0.5
    with torch.no_grad():
        old, new = shipped(x)["mask_logits"], grown(x)["mask_logits"]
    assert new.shape[1] == 6
    assert torch.equal(new[:, :5], old)  # the old classes' channels, unchanged
    # the footprints look like buildings to the shipped model: the new channel starts as that
    assert torch.equal(new[:, 5], old[:, 1])


def test_fine_tuning_a_new_class_finds_it_on_the_held_out_half(scenes, tmp_path):
    """The Atlanta footprints as a new class, trained on the west half: the new class finds
    the east half's footprints better than the shipped model's "building" does, and the
    translated mask names and colours it."""
    from geo2map.models.io import DEFAULT_MODEL, load_card

    pipeline = new_class_pipeline(tmp_path)
    run = ["train", str(pipeline), "--no-progress", "--set", "train.steps=20"]
    result = CliRunner().invoke(app, [*run, "--set", "train.val_every=20"])
    assert result.exit_code == 0, result.output
    assert "new class footprint: a new mask channel, starting as building" in result.output
    model = tmp_path / "run" / "best"
    _, card = load_card(model)
    assert card.class_names[-1] == "footprint" and card.classes[-1].color == (240, 140, 200)
    with rasterio.open(scenes / ATLANTA) as ds:
        left, bottom, right, top = ds.bounds
    east = ((left + right) / 2, bottom, right, top)
    footprints = scenes / "spacenet-atlanta-buildings.geojson"
    iou = {}
    for name, path, cls in (("shipped", DEFAULT_MODEL, "building"), ("new", model, "footprint")):
        options = TranslateOptions(model=str(path))
        [score], _ = evaluate_scene(scenes / ATLANTA, [LabelLayer(footprints, cls)], options,
                                    True, east)  # fmt: skip
        iou[name] = score.iou
    assert iou["new"] > iou["shipped"], iou
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["translate", str(scenes / ATLANTA), "--out", str(out),
                                      "--model", str(model)])  # fmt: skip
    assert result.exit_code == 0, result.output
    with rasterio.open(next(out.glob("*_mask.tif"))) as ds:
        assert ds.tags()["CLASS_5"] == "footprint" and ds.colormap(1)[5][:3] == (240, 140, 200)
        assert (ds.read(1) == 5).any()


@pytest.mark.parametrize(
    ("classes", "message"),
    [
        ([FOOTPRINT, *DEFAULT_CLASSES], "must begin with the classes of model.init_from default"),
        ([*DEFAULT_CLASSES, FOOTPRINT, FOOTPRINT], "class 'footprint' is listed twice"),
        ([{"name": f"c{i}", "color": [i, i, i]} for i in range(16)], "2 to 15 classes"),
    ],
)
def test_a_class_list_that_renumbers_or_repeats_classes_is_refused(tmp_path, classes, message):
    classes = [{"name": c["name"], "color": list(c["color"])} for c in classes]
    result = CliRunner().invoke(app, ["train", str(new_class_pipeline(tmp_path, classes)),
                                      "--no-progress"])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert len(result.stderr.splitlines()) == 1 and message in result.stderr, result.stderr
    assert not (tmp_path / "run").exists()


def test_partial_labels_of_fifteen_classes_keep_their_sets():
    from geo2map.train.data import excluded_classes, partial_label

    for excluded in ({14}, {0, 5, 14}, set(range(15)) - {3}):
        code = partial_label(excluded)
        assert code > 255 and excluded_classes(code) == excluded
    assert np.uint16(partial_label(set(range(15)))) == partial_label(set(range(15)))
