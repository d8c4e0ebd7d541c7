"""int8 CPU inference: calibrated once, rebuilt from the card, seamless, close to float."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

import geo2map
from geo2map.errors import Geo2MapError
from geo2map.models.int8 import calibrate
from geo2map.models.int8_cache import checked_card, entry_path
from geo2map.models.io import load_model, model_paths
from geo2map.translator import Translator, pick_device, pick_precision

SCENE = "dutch-aerial-25cm-epsg28992.tif"


def scene_image(scenes: Path) -> np.ndarray:
    """The Dutch scene's RGB scaled to [0, 1], as the pipeline feeds the model."""
    with rasterio.open(scenes / SCENE) as ds:
        return ds.read([1, 2, 3]).astype(np.float32) / 255


@pytest.fixture(scope="module")
def int8_model(scenes, models, tmp_path_factory) -> str:
    """The tiny test model with an int8 calibration from chips of a real scene."""
    src = models(0.25)
    model, card = load_model(src)
    image = scene_image(scenes)
    mean = torch.tensor(card.input.mean).view(1, 3, 1, 1)
    std = torch.tensor(card.input.std).view(1, 3, 1, 1)
    chips = [torch.from_numpy(image[None, :, r : r + 256, c : c + 256].copy())
             for r in (0, 400) for c in (0, 500)]  # fmt: skip
    card.int8 = calibrate(model, [(x - mean) / std for x in chips], "4 chips of the Dutch scene")
    out = tmp_path_factory.mktemp("int8") / "tiny-int8"
    for f, g in zip(model_paths(src), model_paths(out), strict=True):
        g.write_bytes(f.read_bytes())
    card.to_json(model_paths(out)[1])
    return str(out)


def render(folder: Path) -> np.ndarray:
    with rasterio.open(folder / f"{Path(SCENE).stem}_render.tif") as ds:
        return ds.read().astype(int)


def test_int8_tiles_are_seamless_and_agree_with_float(scenes, int8_model, tmp_path):
    opts = dict(model=int8_model, output_grid="model", overwrite=True)
    whole_chip = 1000 + 8 - 1000 % 8
    runs = {
        "int8 tiled": dict(precision="int8", chip_size=256, overlap=64),
        "int8 whole": dict(precision="int8", chip_size=whole_chip, overlap=0),
        "fp32 tiled": dict(precision="fp32", chip_size=256, overlap=64),
    }
    renders = {}
    for name, run in runs.items():
        geo2map.translate(scenes / SCENE, tmp_path / name, **opts, **run)
        renders[name] = render(tmp_path / name)
    inner = (slice(None), slice(32, -32), slice(32, -32))
    # static quantization: a pixel does not depend on the chip around it (the same bounds as
    # the float seam test in test_translate.py; without overlap, seams show as max ~45)
    seams = np.abs(renders["int8 tiled"][inner] - renders["int8 whole"][inner])
    assert seams.mean() < 0.5
    assert np.percentile(seams, 99.9) <= 3
    to_float = np.abs(renders["int8 tiled"] - renders["fp32 tiled"])
    assert to_float.mean() < 2


def test_auto_picks_int8_only_with_a_calibration_and_refuses_int8_without(
    models, int8_model, monkeypatch
):
    cpu = pick_device("cpu")
    calibrated, plain = load_model(int8_model)[1], load_model(models(0.25))[1]
    assert pick_precision(cpu, "auto", plain) != torch.qint8
    monkeypatch.setattr("geo2map.translator.cpu_has_vnni", lambda: True)
    assert pick_precision(cpu, "auto", calibrated) == torch.qint8
    monkeypatch.setattr("geo2map.translator.cpu_has_vnni", lambda: False)
    assert pick_precision(cpu, "auto", calibrated) != torch.qint8  # no int8 hardware
    assert pick_precision(cpu, "bf16", calibrated) == torch.bfloat16
    with pytest.raises(Geo2MapError, match="no int8 calibration"):
        pick_precision(cpu, "int8", plain)
    assert Translator.load(int8_model, "cpu", "int8").dtype == torch.qint8


def test_a_calibration_for_another_graph_is_refused(int8_model, tmp_path):
    model, card = load_model(int8_model)
    card.int8.qparams = {"not_a_node_scale_0": 0.1, **card.int8.qparams}
    out = tmp_path / "other"
    for f, g in zip(model_paths(int8_model), model_paths(out), strict=True):
        g.write_bytes(f.read_bytes())
    card.to_json(model_paths(out)[1])
    with pytest.raises(Geo2MapError, match="does not fit the graph"):
        Translator.load(out, "cpu", "int8")


def test_auto_falls_back_to_float_when_the_calibration_does_not_fit(
    int8_model, tmp_path, monkeypatch
):
    monkeypatch.setattr("geo2map.translator.cpu_has_vnni", lambda: True)  # as on this CPU
    _, card = load_model(int8_model)
    card.int8.qparams = {"not_a_node_scale_0": 0.1}
    out = tmp_path / "stale"
    for f, g in zip(model_paths(int8_model), model_paths(out), strict=True):
        g.write_bytes(f.read_bytes())
    card.to_json(model_paths(out)[1])
    with pytest.warns(UserWarning, match="does not fit the graph"):
        translator = Translator.load(out, "cpu", "auto")
    assert translator.dtype in (torch.bfloat16, torch.float32)


def scene_batches(scenes: Path) -> list[np.ndarray]:
    image = scene_image(scenes)
    return [
        np.stack([image[:, r : r + 256, c : c + 256] for r, c in ((0, 0), (300, 500), (700, 80))]),
        image[None, :, 100:300, 40:352],  # another batch size and a chip that is not square
    ]


def test_a_second_load_takes_the_int8_graph_from_the_cache_with_the_same_outputs(
    scenes, int8_model, tmp_path, monkeypatch
):
    monkeypatch.setenv("GEO2MAP_CACHE_DIR", str(tmp_path / "cache"))
    built = Translator.load(int8_model, "cpu", "int8")
    assert entry_path(int8_model).is_file()

    def no_float_model(*args, **kwargs):
        raise AssertionError("the float model was built although its int8 graph is cached")

    monkeypatch.setattr("geo2map.models.int8_cache.load_model", no_float_model)
    cached = Translator.load(int8_model, "cpu", "int8")
    assert checked_card(int8_model) == cached.card  # these files were built: they fit the card
    for batch in scene_batches(scenes):
        for a, b in zip(built.forward(batch), cached.forward(batch), strict=True):
            assert np.array_equal(a, b)


def test_a_damaged_or_unwritable_int8_cache_only_costs_the_build(
    scenes, int8_model, tmp_path, monkeypatch
):
    reference = Translator.load(int8_model, "cpu", "int8")  # the session's cache
    batch = scene_batches(scenes)[1]
    monkeypatch.setenv("GEO2MAP_CACHE_DIR", str(tmp_path / "cache"))
    entry = entry_path(int8_model)
    entry.parent.mkdir(parents=True)
    entry.write_bytes(b"half a file")
    repaired = Translator.load(int8_model, "cpu", "int8")
    assert np.array_equal(repaired.forward(batch)[0], reference.forward(batch)[0])
    assert entry.stat().st_size > 1000  # built again and written over the damaged entry

    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("a file where the cache folder would be")
    monkeypatch.setenv("GEO2MAP_CACHE_DIR", str(not_a_folder))
    unwritable = Translator.load(int8_model, "cpu", "int8")
    assert np.array_equal(unwritable.forward(batch)[0], reference.forward(batch)[0])
    assert not_a_folder.read_text().startswith("a file")
