"""StarGAN: one generator, a style chosen by name (--style), trained by its own mode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
import torch
import yaml
from typer.testing import CliRunner

from geo2map.cli import app

STARGAN = Path(__file__).parent.parent / "pipelines" / "train-stargan.yaml"
SCENE = "aerial-0.6m-epsg3857.tif"
TINY = [
    "model.kwargs.base=8", "model.kwargs.n_blocks=1", "discriminator.kwargs.base=8",
    "data.crop=64", "data.moscow_batch=1", "data.landcover_batch=1", "train.steps=2",
    "train.val_every=2", "train.val_moscow=2", "train.val_landcover=2", "loss.paired=1.0",
    "loss.paired_ce=1.0",
]  # fmt: skip


def train_tiny(out: Path, pipeline: Path = STARGAN) -> CliRunner:
    sets = [arg for o in (f"out_dir={out}", *TINY) for arg in ("--set", o)]
    return CliRunner().invoke(app, ["train", str(pipeline), "--no-progress", *sets])


def test_a_stargan_draws_the_style_asked_for_and_reads_its_mask_back(scenes, tmp_path):
    result = train_tiny(tmp_path / "run")
    assert result.exit_code == 0, result.output
    model = tmp_path / "run" / "best"
    renders = {}
    for style in ("osm", "landcover"):
        out = tmp_path / style
        args = ["translate", str(scenes / SCENE), "--out", str(out), "--model", str(model)]
        result = CliRunner().invoke(app, [*args, "--style", style])
        assert result.exit_code == 0, result.output
        with rasterio.open(next(out.glob("*_render.tif"))) as ds:
            renders[style] = ds.read()
    assert not np.array_equal(renders["osm"], renders["landcover"])  # the style input counts
    # the mask is the class of the style's nearest palette colour
    from geo2map.models.io import ModelRef, load_model

    net, _ = load_model(ModelRef(str(model), style="landcover"))
    with torch.no_grad():
        out = net(torch.rand(1, 3, 64, 64) * 2 - 1)
    colours = torch.tensor([[230, 230, 230], [200, 80, 60], [80, 170, 70], [60, 120, 220],
                            [250, 210, 80]], dtype=torch.float32) / 255  # fmt: skip
    distance = ((out["render"][:, None] - colours[None, :, :, None, None]) ** 2).sum(2)
    assert torch.equal(out["mask_logits"].argmax(1), distance.argmin(1))


def test_a_style_the_model_does_not_draw_is_refused(scenes, tmp_path):
    assert train_tiny(tmp_path / "run").exit_code == 0
    base = ["translate", str(scenes / SCENE), "--out", str(tmp_path / "out")]
    for args, message in (
        (["--style", "osm"], "draws one style only"),  # the shipped model
        (["--model", str(tmp_path / "run" / "best"), "--style", "watercolour"],
         "knows the styles landcover, osm"),
    ):  # fmt: skip
        result = CliRunner().invoke(app, [*base, *args])
        assert result.exit_code == 2, result.output
        assert len(result.stderr.splitlines()) == 1 and message in result.stderr, result.stderr
        assert not (tmp_path / "out").exists()


def test_a_stargan_style_without_its_data_set_is_refused_before_training(tmp_path):
    doc = yaml.safe_load(STARGAN.read_text())
    doc["data"]["landcover"] = None
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(doc))
    result = train_tiny(tmp_path / "run", bad)
    assert result.exit_code == 2, result.output
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert "names landcover, which learns from data.landcover" in result.stderr
    assert not (tmp_path / "run").exists()


def test_a_stargan_of_fewer_styles_trains_with_every_source_configured(tmp_path):
    """styles [photo, osm] with LandCover.ai configured: its photos still serve as photos."""
    sets = [arg for o in (f"out_dir={tmp_path / 'two'}", *TINY,
                          "model.kwargs={styles: [photo, osm], base: 8, n_blocks: 1}")
            for arg in ("--set", o)]  # fmt: skip
    result = CliRunner().invoke(app, ["train", str(STARGAN), "--no-progress", *sets])
    assert result.exit_code == 0, result.output
    from geo2map.models.io import load_card

    _, card = load_card(tmp_path / "two" / "best")
    assert sorted(card.architecture.kwargs["palettes"]) == ["osm"]


def test_a_stargan_stage_starts_from_the_last_stage_weights(tmp_path):
    """A GAN campaign spans sessions: the next stage starts G from the shipped weights,
    and its card lists every stage."""
    assert train_tiny(tmp_path / "one").exit_code == 0
    from geo2map.models.io import load_model

    first, _ = load_model(tmp_path / "one" / "last")
    sets = [arg for o in (f"out_dir={tmp_path / 'two'}", *TINY, "train.steps=1",
                          "optim.lr=1e-12", f"model.init_from={tmp_path / 'one' / 'last'}")
            for arg in ("--set", o)]  # fmt: skip
    result = CliRunner().invoke(app, ["train", str(STARGAN), "--no-progress", *sets])
    assert result.exit_code == 0, result.output
    second, card = load_model(tmp_path / "two" / "last")
    # a vanishing lr: the weights are still the first stage's (a fresh G would differ)
    for (name, a), b in zip(first.named_parameters(), second.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), name
    assert [s["steps"] for s in card.training["stages"]] == [2, 1]
    assert card.training["cumulative_steps"] == 3

    bigger = [arg for o in (f"out_dir={tmp_path / 'three'}", *TINY, "model.kwargs.base=16",
                            f"model.init_from={tmp_path / 'one' / 'last'}")
              for arg in ("--set", o)]  # fmt: skip
    result = CliRunner().invoke(app, ["train", str(STARGAN), "--no-progress", *bigger])
    assert result.exit_code == 2, result.output
    assert "start from a model of the same architecture" in result.stderr


def test_a_stargan_draws_at_inference_what_it_drew_in_training():
    """Each style normalizes with statistics measured on what it is drawn from (a training
    batch mixes photos, maps and mask pictures, whose running mean fits no single one):
    eval mode on a calibration batch reproduces train mode on that batch."""
    from geo2map.models.stargan import StarGanGenerator, calibrate_style_statistics
    from geo2map.train.stargan import style_palettes

    torch.manual_seed(0)
    G = StarGanGenerator(["photo", "osm", "landcover"], style_palettes(), base=8, n_blocks=1)
    for cbn in G.style_norms:  # styles that differ, as a trained model's do
        torch.nn.init.normal_(cbn.scale.weight, 1.0, 0.3)
        torch.nn.init.normal_(cbn.shift.weight, 0.0, 0.3)
    photos = torch.rand(4, 3, 32, 32) * 1.6 - 0.9
    mixed = torch.cat([photos, torch.full((4, 3, 32, 32), 0.8)])  # photos with flat pictures
    landcover = torch.full((4,), 2)
    with torch.no_grad():
        G.train()
        G.translate(mixed, torch.full((8,), 1))  # running statistics of a mixed batch
        trained = G.translate(photos, landcover)
        G.eval()
        uncalibrated = G.translate(photos, landcover)
        calibrate_style_statistics(G, {"landcover": [photos]})
        assert not G.training
        drawn = G.translate(photos, landcover)
        osm = G.translate(photos, torch.full((4,), 1))
    assert torch.allclose(drawn, trained, atol=1e-4)
    assert not torch.allclose(uncalibrated, trained, atol=1e-2)
    assert not torch.allclose(osm, drawn, atol=1e-2)  # another style: its own scale and shift


def test_the_paired_colour_loss_pulls_a_blend_to_its_own_palette_colour():
    from geo2map.train.losses import nearest_colour_ce

    colours = torch.tensor([[0.9, 0.9, 0.9], [0.8, 0.3, 0.2], [0.3, 0.6, 0.3]])
    target = colours[torch.tensor([[0, 1], [2, 1]])].permute(2, 0, 1)[None]  # (1, 3, 2, 2)
    blend = ((target + colours[0][:, None, None]) / 2).requires_grad_()
    assert nearest_colour_ce(target, target, colours) < nearest_colour_ce(blend, target, colours)
    nearest_colour_ce(blend, target, colours).backward()
    step = -blend.grad  # gradient descent moves each pixel toward its target colour
    assert ((step * (target - blend.detach())).sum(dim=1) > 0)[0, 1, 1]
