"""UNIT: photo <-> map through one latent space, trained unpaired, run like any model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import yaml
from typer.testing import CliRunner

import geo2map
from geo2map.cli import app

UNIT = Path(__file__).parent.parent / "pipelines" / "train-unit.yaml"
STARGAN = Path(__file__).parent.parent / "pipelines" / "train-stargan.yaml"
CYCLEGAN = Path(__file__).parent.parent / "pipelines" / "train-cyclegan.yaml"
TINY = ["train.steps=2", "train.val_every=2", "train.val_moscow=2", "train.val_landcover=2",
        "data.crop=64", "data.moscow_batch=1"]  # fmt: skip
SCENE = "dutch-aerial-25cm-epsg28992.tif"


def train_tiny(pipeline: Path, out: Path, *more: str) -> CliRunner:
    sets = [arg for o in (f"out_dir={out}", *TINY, *more) for arg in ("--set", o)]
    return CliRunner().invoke(app, ["train", str(pipeline), "--no-progress", *sets])


def test_unit_translates_a_scene_and_reads_its_mask_from_the_map_colours(tmp_path):
    result = train_tiny(UNIT, tmp_path / "run", "model.kwargs.base=8", "model.kwargs.n_res=2")
    assert result.exit_code == 0, result.output
    from geo2map.models.io import load_model
    from geo2map.train.palette import PALETTE_CLASS, PALETTE_RGB

    net, card = load_model(tmp_path / "run" / "best")
    assert card.architecture.name == "unit"
    with torch.no_grad():
        out = net(torch.rand(1, 3, 64, 64) * 2 - 1)
    colours = torch.tensor(PALETTE_RGB, dtype=torch.float32) / 255
    nearest = ((out["render"][:, None] - colours[None, :, :, None, None]) ** 2).sum(2).argmin(1)
    assert torch.equal(out["mask_logits"].argmax(1), torch.from_numpy(PALETTE_CLASS)[nearest])
    # the map is drawn in the palette's flat colours (each pixel its nearest one)
    assert torch.equal(out["render"], colours[nearest].permute(0, 3, 1, 2))


def test_unit_tiles_match_its_whole_image_output(scenes, tmp_path):
    """Batch norm in eval mode and resize + conv upsampling: a chip does not depend on its
    neighbours, so tiles with overlap give the whole-image render (the README's seam rule)."""
    assert (
        train_tiny(UNIT, tmp_path / "unit", "model.kwargs.base=8", "model.kwargs.n_res=2").exit_code
        == 0
    )
    opts = dict(model=str(tmp_path / "unit" / "best"), output_grid="model")
    geo2map.translate(scenes / SCENE, tmp_path / "whole", chip_size=1008, overlap=0, **opts)
    geo2map.translate(scenes / SCENE, tmp_path / "tiled", chip_size=256, overlap=64, **opts)
    renders = []
    for kind in ("whole", "tiled"):
        with rasterio.open(next((tmp_path / kind).glob("*_render.tif"))) as ds:
            renders.append(ds.read().astype(int)[:, 32:-32, 32:-32])
    diff = np.abs(renders[0] - renders[1])
    assert diff.mean() < 0.5 and np.percentile(diff, 99.9) <= 3, diff.mean()


def test_unit_without_map_data_is_refused_before_training(tmp_path):
    doc = yaml.safe_load(UNIT.read_text())
    doc["data"]["moscow"] = None
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(doc))
    result = train_tiny(bad, tmp_path / "run")
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == "error: mode unit learns photo <-> map from data.moscow; set it"
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "name, pipeline, more",
    [
        ("stargan", STARGAN, ["model.kwargs.base=8", "model.kwargs.n_blocks=1",
                              "discriminator.kwargs.base=8", "data.landcover_batch=1"]),
        ("cyclegan", CYCLEGAN, ["model.kwargs.base=8", "model.kwargs.n_blocks=1",
                                "reverse_model.kwargs.base=8", "reverse_model.kwargs.n_blocks=1",
                                "discriminator.kwargs.base=8", "train.pool_size=2",
                                "data.landcover_batch=1"]),
    ],
)  # fmt: skip
def test_a_chip_draws_what_the_whole_image_draws_at_its_pixels(name, pipeline, more, tmp_path):
    """No per-chip statistics (batch norm in eval mode, with statistics measured after
    training: StarGAN's per style, CycleGAN's on photos): away from a chip's border its
    render and mask are the whole image's, bit for bit, palette snapping included. (The
    pipeline's seam numbers also depend on how strongly a network answers the padding at
    chip edges: a 2-step network, whose measured statistics scale its weak first layer up
    30x, is no guide; docs/models.md gives the trained models'.)"""
    assert train_tiny(pipeline, tmp_path / "run", *more).exit_code == 0
    from geo2map.models.io import ModelRef, load_model

    for style in ("osm", "landcover") if name == "stargan" else (None,):
        net, _ = load_model(ModelRef(str(tmp_path / "run" / "best"), style=style))
        torch.manual_seed(0)
        scene = torch.rand(1, 3, 512, 512) * 2 - 1
        with torch.no_grad():
            whole = net(scene)
            for row, col in ((0, 0), (128, 256), (256, 192)):
                chip = net(scene[..., row : row + 256, col : col + 256])
                inner = (..., slice(64, 192), slice(64, 192))
                at = (..., slice(row + 64, row + 192), slice(col + 64, col + 192))
                assert torch.equal(chip["render"][inner], whole["render"][at]), (style, row)
                assert torch.equal(
                    chip["mask_logits"][inner].argmax(1), whole["mask_logits"][at].argmax(1)
                )
