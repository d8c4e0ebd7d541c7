"""Models trained elsewhere run through geo2map's tiling, blending and COG writing: a
segmentation-models-pytorch architecture named by a card, and its TorchScript and ONNX
exports, each with a card."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from typer.testing import CliRunner

import geo2map
from geo2map.cli import app
from geo2map.models.card import Architecture, InputSpec, ModelCard
from geo2map.models.io import save_model
from geo2map.models.registry import build_model

SCENE = "dutch-aerial-25cm-epsg28992.tif"  # 1000 x 1000 px at 0.25 m: the card's GSD


@pytest.fixture(scope="module")
def deeplab(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A DeepLabV3+ (ResNet-18, seeded random weights) saved three ways: safetensors + card,
    TorchScript + card beside it, ONNX + card elsewhere."""
    folder = tmp_path_factory.mktemp("deeplab")
    torch.manual_seed(0)
    card = ModelCard(
        name="deeplab-test",
        architecture=Architecture(
            name="smp", kwargs={"arch": "DeepLabV3Plus", "encoder": "resnet18", "classes": 5}
        ),
        input=InputSpec(gsd_m=0.25, multiple=16),
        output="class_logits",
    )
    net = build_model(card.architecture).eval()
    save_model(net, card, folder / "smp" / "deeplab")
    example = torch.rand(1, 3, 256, 256)
    (folder / "ts").mkdir()
    torch.jit.trace(net, example).save(str(folder / "ts" / "deeplab.pt"))
    card.to_json(folder / "ts" / "deeplab.json")
    (folder / "onnx").mkdir()
    torch.onnx.export(
        net, (example,), str(folder / "onnx" / "net.onnx"), dynamo=False,
        input_names=["x"], output_names=["logits"],
        dynamic_axes={"x": {0: "b", 2: "h", 3: "w"}, "logits": {0: "b", 2: "h", 3: "w"}},
    )  # fmt: skip
    card.to_json(folder / "deeplab-card.json")
    return {
        "smp": folder / "smp" / "deeplab",
        "torchscript": folder / "ts" / "deeplab.pt",
        "onnx": folder / "onnx" / "net.onnx",
        "onnx_card": folder / "deeplab-card.json",
    }


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read()


def test_an_smp_model_and_its_torchscript_and_onnx_exports_translate_alike(
    scenes, deeplab, tmp_path
):
    scene = scenes / SCENE
    opts = dict(chip_size=256, overlap=64, precision="fp32")
    runs = {
        "smp": dict(model=str(deeplab["smp"])),
        "torchscript": dict(model=str(deeplab["torchscript"])),
        "onnx": dict(model=str(deeplab["onnx"]), card=str(deeplab["onnx_card"])),
    }
    masks, renders = {}, {}
    for kind, model in runs.items():
        geo2map.translate(scene, tmp_path / kind, **model, **opts)
        masks[kind] = read(tmp_path / kind / f"{scene.stem}_mask.tif")[0]
        renders[kind] = read(tmp_path / kind / f"{scene.stem}_render.tif")
    assert len(np.unique(masks["smp"])) >= 2  # the comparison means something
    assert np.array_equal(masks["torchscript"], masks["smp"])
    assert (masks["onnx"] == masks["smp"]).mean() >= 0.999  # ONNX Runtime's own kernels
    # a mask-only model's render is drawn in its classes' colours (blended only where
    # overlapping chips disagree)
    colours = np.array([c.color for c in ModelCard.from_json(deeplab["onnx_card"]).classes])
    drawn = colours[masks["smp"]].transpose(2, 0, 1)
    assert (renders["smp"] == drawn).all(axis=0).mean() >= 0.99


def test_tiled_onnx_output_matches_its_whole_image_output(scenes, deeplab, tmp_path):
    scene = scenes / SCENE
    model = dict(model=str(deeplab["onnx"]), card=str(deeplab["onnx_card"]))
    geo2map.translate(scene, tmp_path / "whole", chip_size=1008, overlap=0, **model)
    geo2map.translate(scene, tmp_path / "tiled", chip_size=256, overlap=64, **model)
    whole = read(tmp_path / "whole" / f"{scene.stem}_mask.tif")[0][32:-32, 32:-32]
    tiled = read(tmp_path / "tiled" / f"{scene.stem}_mask.tif")[0][32:-32, 32:-32]
    assert (whole == tiled).mean() >= 0.999  # measured 0.99999


def test_an_external_model_without_its_card_or_with_int8_is_refused(scenes, deeplab, tmp_path):
    runner = CliRunner()
    bare = tmp_path / "bare.onnx"
    shutil.copyfile(deeplab["onnx"], bare)
    for args, message in (
        (["--model", str(bare)], "bare.json is missing"),
        (["--model", str(deeplab["torchscript"]), "--precision", "int8"], "does not apply"),
        (["--model", str(deeplab["onnx"]), "--card", str(deeplab["onnx_card"]),
          "--precision", "bf16"], "does not apply"),
    ):  # fmt: skip
        result = runner.invoke(
            app, ["translate", str(scenes / SCENE), "--out", str(tmp_path / "o"), *args]
        )
        assert result.exit_code == 2, result.output
        assert len(result.stderr.splitlines()) == 1 and message in result.stderr, result.stderr
        assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())


def test_a_card_that_does_not_fit_its_model_is_refused(scenes, deeplab, tmp_path):
    runner = CliRunner()
    card = ModelCard.from_json(deeplab["onnx_card"])
    one_band = card.model_copy(update={"input": card.input.model_copy(update={"bands": ["pan"]})})
    one_band.to_json(tmp_path / "one-band.json")
    unknown = card.model_copy(
        update={"architecture": Architecture(name="smp", kwargs={"arch": "DeepLabV9"})}
    )
    (tmp_path / "smp").mkdir()
    shutil.copyfile(deeplab["smp"].with_suffix(".safetensors"), tmp_path / "smp" / "m.safetensors")
    unknown.to_json(tmp_path / "smp" / "m.json")
    for args, message in (
        (["--model", str(deeplab["onnx"]), "--card", str(tmp_path / "one-band.json")],
         "takes 3 input bands but its card lists 1"),
        (["--model", str(tmp_path / "smp" / "m")], "Wrong architecture type `DeepLabV9`"),
    ):  # fmt: skip
        out = tmp_path / "o"
        result = runner.invoke(app, ["translate", str(scenes / SCENE), "--out", str(out), *args])
        assert result.exit_code == 2, result.output
        assert len(result.stderr.splitlines()) == 1 and message in result.stderr, result.stderr
        assert not out.exists() or not list(out.iterdir())
