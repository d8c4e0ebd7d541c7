"""Fast unit tests of geo2map.train: config errors, pairing, metrics, augmentation, models."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from geo2map.catalog import resolve
from geo2map.errors import Geo2MapError
from geo2map.train.config import load_config
from geo2map.train.data import MoscowPairs, Sample, augment, list_pairs, split_names
from geo2map.train.metrics import confusion, iou_from_confusion, render_metrics
from geo2map.train.palette import PALETTE_CLASS, PALETTE_RGB, snap_to_palette

ROOT = Path(__file__).resolve().parent.parent
PIPELINES = sorted((ROOT / "pipelines").glob("train-*.yaml"))


@pytest.fixture(scope="module")
def moscow() -> Path:
    return resolve("osm-moscow-pairs", verify=False)


# --- configuration --------------------------------------------------------------------------


@pytest.mark.parametrize("path", PIPELINES, ids=lambda p: p.name)
def test_shipped_pipelines_validate(path: Path) -> None:
    assert load_config(path).name


def test_unknown_key_is_named(tmp_path: Path) -> None:
    p = tmp_path / "x.yaml"
    p.write_text("name: x\ntrain:\n  stepz: 3\n")
    with pytest.raises(Geo2MapError, match=r"unknown key 'train.stepz'"):
        load_config(p)


def test_wrong_type_is_named(tmp_path: Path) -> None:
    p = tmp_path / "x.yaml"
    p.write_text("name: x\noptim:\n  lr: fast\n")
    with pytest.raises(Geo2MapError, match=r"key 'optim.lr'") as e:
        load_config(p)
    assert "\n" not in str(e.value)


def test_overrides_are_typed_and_checked() -> None:
    cfg = load_config(PIPELINES[0], ["train.steps=7", "data.landcover=null"])
    assert cfg.train.steps == 7 and cfg.data.landcover is None
    with pytest.raises(Geo2MapError, match="unknown key 'train.nope'"):
        load_config(PIPELINES[0], ["train.nope=1"])


# --- data -----------------------------------------------------------------------------------


def test_mismatched_pairs_names_first_unpaired_file(tmp_path: Path, moscow: Path) -> None:
    for side in ("sat", "map"):
        (tmp_path / side).mkdir()
        for n in ("0", "1"):
            shutil.copy(moscow / side / f"{n}.jpg", tmp_path / side / f"{n}.jpg")
    shutil.copy(moscow / "sat" / "10.jpg", tmp_path / "sat" / "10.jpg")
    shutil.copy(moscow / "sat" / "2.jpg", tmp_path / "sat" / "2.jpg")
    (tmp_path / "map" / ".DS_Store").write_bytes(b"junk")  # not an image: ignored
    with pytest.raises(Geo2MapError, match=r"unpaired file .*sat/2\.jpg"):
        list_pairs(tmp_path, "sat", "map")


def test_real_pairs_folder_pairs_up(moscow: Path) -> None:
    pairs = list_pairs(moscow, "sat", "map")  # the real folder holds a stray S_Store file
    assert len(pairs) == 1364


def test_validation_split_is_fixed_and_disjoint() -> None:
    names = [str(i) for i in range(500)]
    tr, va = split_names(names, 50)
    tr2, va2 = split_names(names[::-1], 50)
    assert len(va) == 50 and not set(tr) & set(va) and set(va) == set(va2)
    # adding files does not move existing validation files into training
    _, va3 = split_names(names + ["new"], 51)
    assert set(va) <= set(va3)


def test_augmentation_keeps_image_and_targets_aligned() -> None:
    rng = np.random.default_rng(0)
    h = w = 64
    yy, xx = np.mgrid[:h, :w]
    img = np.stack([yy, xx, (yy * 7 + xx * 3) % 256], -1).astype(np.uint8)
    s = Sample(img, map_rgb=img.copy(), map_index=img[..., 0].copy(), mask=img[..., 1].copy())
    for _ in range(20):
        a = augment(s, rng, crop=32)
        assert a.image.shape == (32, 32, 3)
        np.testing.assert_array_equal(a.image, a.map_rgb)
        np.testing.assert_array_equal(a.image[..., 0], a.map_index)
        np.testing.assert_array_equal(a.image[..., 1], a.mask)


def test_palette_snapping_and_classes(moscow: Path) -> None:
    pal = PALETTE_RGB.astype(int)
    noisy = np.clip(pal[None, :, :] + np.array([3, -4, 2]), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(snap_to_palette(noisy)[0], np.arange(len(pal)))
    sample = MoscowPairs(moscow, ["0"], cache=False)[0]
    # map 0 is a park with buildings: both classes must appear in the derived mask
    assert {1, 2} <= set(np.unique(sample.mask).tolist())
    known = sample.map_index != 255
    np.testing.assert_array_equal(sample.mask[known], PALETTE_CLASS[sample.map_index[known]])
    # labels and icons are ignored, not forced onto a class; they are a few % of the map
    assert 0.001 < (~known).mean() < 0.1
    assert (sample.mask[~known] == 255).all()


# --- metrics (answers known by construction) ------------------------------------------------


def test_render_metrics_known_answers() -> None:
    real = np.full((256, 256, 3), 100.0)
    assert render_metrics(real, real) == pytest.approx(
        {"rmse": 0.0, "acc5": 1.0, "acc10": 1.0, "ssim": 1.0}
    )
    fake = real + 3.0  # every channel off by 3: sum of squares / pixels = 3 * 9
    m = render_metrics(real, fake)
    assert m["rmse"] == pytest.approx(np.sqrt(27.0))
    assert m["acc5"] == 1.0 and m["acc10"] == 1.0
    fake = real.copy()
    fake[:128, :, 1] += 7  # half the pixels off by 7 in one channel
    fake[:64, :, 2] -= 20  # a quarter off by 20
    m = render_metrics(real, fake)
    assert m["acc5"] == pytest.approx(0.5)
    assert m["acc10"] == pytest.approx(0.75)
    assert m["rmse"] == pytest.approx(np.sqrt((128 * 256 * 49 + 64 * 256 * 400) / 256**2))


def test_iou_known_answer() -> None:
    target = np.array([0, 0, 1, 1, 2, 255])
    pred = np.array([0, 1, 1, 1, 0, 2])
    cm = confusion(target, pred, 3)
    out = iou_from_confusion(cm, ["a", "b", "c"])
    # a: tp 1, union 3; b: tp 2, union 3; c: tp 0, union 1 (the ignored pixel does not count)
    assert out["iou_a"] == pytest.approx(1 / 3)
    assert out["iou_b"] == pytest.approx(2 / 3)
    assert out["iou_c"] == 0.0
    assert out["miou"] == pytest.approx(1 / 3)


# --- models ---------------------------------------------------------------------------------


def test_patchgan_is_70x70_and_generators_keep_shape() -> None:
    from geo2map.models.card import Architecture
    from geo2map.models.discriminator import receptive_field
    from geo2map.models.registry import build_model

    assert receptive_field(3) == 70
    d = build_model(Architecture(name="patchgan", kwargs={"in_channels": 3, "base": 8}))
    assert d(torch.zeros(1, 3, 256, 256)).shape == (1, 1, 30, 30)
    g = build_model(Architecture(name="cyclegan-resnet", kwargs={"base": 8, "n_blocks": 1}))
    out = g.eval()(torch.zeros(1, 3, 52, 60))
    assert out["render"].shape == (1, 3, 52, 60) and out["mask_logits"].shape == (1, 5, 52, 60)
    assert not any(isinstance(m, torch.nn.InstanceNorm2d) for m in g.modules())


def test_colour_jitter_changes_the_image_only() -> None:
    h = w = 48
    yy, xx = np.mgrid[:h, :w]
    img = np.stack([yy * 4, xx * 4, (yy + xx) * 2], -1).astype(np.uint8)
    s = Sample(img, map_rgb=img.copy(), map_index=img[..., 0].copy(), mask=img[..., 1].copy())
    plain = augment(s, np.random.default_rng(3), crop=32)
    jittered = augment(s, np.random.default_rng(3), crop=32, colour_jitter=0.3)
    # same geometry for every target; only the image's tones move
    np.testing.assert_array_equal(plain.map_index, jittered.map_index)
    np.testing.assert_array_equal(plain.mask, jittered.mask)
    np.testing.assert_array_equal(plain.map_rgb, jittered.map_rgb)
    assert jittered.image.dtype == np.uint8 and jittered.image.shape == plain.image.shape
    assert np.abs(jittered.image.astype(int) - plain.image.astype(int)).mean() > 2


def test_rescaled_batch_keeps_label_values() -> None:
    from geo2map.train.data import collate, rescale_batch

    rng = np.random.default_rng(0)
    mask = rng.integers(0, 5, (64, 64)).astype(np.uint8)
    mask[:8] = 255  # ignored pixels stay ignored, never averaged into a class
    s = Sample(rng.integers(0, 255, (64, 64, 3)).astype(np.uint8), mask=mask)
    b = rescale_batch(collate([s, s], [0.5] * 3, [0.5] * 3), 32)
    assert b["image"].shape == (2, 3, 32, 32) and b["mask"].shape == (2, 32, 32)
    assert set(torch.unique(b["mask"]).tolist()) <= {0, 1, 2, 3, 4, 255}
    assert (b["mask"][:, :4] == 255).all()


def test_smp_unet_palette_head_renders_palette_colours() -> None:
    from geo2map.models.smp_unet import SmpUNetTranslator

    torch.manual_seed(0)
    m = SmpUNetTranslator(
        encoder="resnet18",
        decoder_channels=[32, 16, 16, 8, 8],
        render_mode="palette",
        palette=PALETTE_RGB.tolist(),
    ).eval()
    with torch.no_grad():
        out = m(torch.rand(1, 3, 64, 64))
    assert out["render_logits"].shape == (1, len(PALETTE_RGB), 64, 64)
    assert out["mask_logits"].shape == (1, 5, 64, 64)
    colours = (out["render"][0].permute(1, 2, 0).reshape(-1, 3) * 255).round().int()
    assert {tuple(c) for c in colours.tolist()} <= {tuple(c) for c in PALETTE_RGB.tolist()}


def test_render_from_mask_follows_the_predicted_class() -> None:
    from geo2map.models.unet import UNetTranslator

    m = UNetTranslator(
        base=4,
        depth=2,
        render_mode="palette",
        palette=PALETTE_RGB.tolist(),
        palette_class=PALETTE_CLASS.tolist(),
    ).eval()
    with torch.no_grad():
        m.render_head.weight.zero_()
        m.render_head.bias.zero_()
        m.mask_head.weight.zero_()
        m.mask_head.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 20.0, 0.0]))  # "water" everywhere
        out = m(torch.rand(1, 3, 32, 32))
    water = PALETTE_RGB[list(PALETTE_CLASS).index(3)]
    render = (out["render"][0].permute(1, 2, 0) * 255).round().int().numpy()
    assert (render == water).all()
    assert (out["mask_logits"].argmax(1) == 3).all()


def test_nearest_mean_decode_draws_the_palette_colour_nearest_the_expected_colour() -> None:
    from geo2map.models.palette_head import render_from_logits

    palette = torch.tensor(PALETTE_RGB, dtype=torch.float32) / 255
    white, building = 11, 6
    logits = torch.full((1, len(PALETTE_RGB), 1, 2), -20.0)
    logits[0, white, 0, :] = 0.0
    logits[0, building, 0, 0] = 0.0  # pixel 0: 50/50 white street or building
    logits[0, building, 0, 1] = -1.0  # pixel 1: mostly white street
    module = torch.nn.Identity().eval()
    argmax = render_from_logits(logits, palette, module, "argmax")
    nearest = render_from_logits(logits, palette, module, "nearest-mean")
    probs = torch.softmax(logits, 1)[0, :, 0].T.numpy()  # (2 pixels, K)
    expected = probs @ PALETTE_RGB.astype(float)
    for px in range(2):
        d = ((PALETTE_RGB.astype(float) - expected[px]) ** 2).sum(1)
        colour = (nearest[0, :, 0, px] * 255).round().int().tolist()
        assert colour == PALETTE_RGB[d.argmin()].tolist()
    # the hesitant pixel gets a colour between the two, not white (argmax's tie-break)
    assert (nearest[0, :, 0, 0] * 255).round().int().tolist() not in (
        PALETTE_RGB[white].tolist(),
        PALETTE_RGB[building].tolist(),
    )
    assert (argmax[0, :, 0, 1] * 255).round().int().tolist() == PALETTE_RGB[white].tolist()


def test_render_class_weights_weigh_each_palette_colour_by_its_class() -> None:
    from geo2map.train.loop import palette_weights
    from geo2map.train.losses import masked_ce

    weights = palette_weights([1.0, 2.0, 1.0, 1.0, 3.0])
    assert weights == [[1.0, 2.0, 1.0, 1.0, 3.0][c] for c in PALETTE_CLASS]
    # a street pixel (palette colour of class road) now counts 3x a land pixel
    road = int(np.flatnonzero(PALETTE_CLASS == 4)[0])
    logits = torch.zeros(1, len(PALETTE_CLASS), 1, 2)
    target = torch.tensor([[[0, road]]])
    logits[0, road, 0, 0] = 5.0  # wrong at the land pixel, unsure at the street pixel
    loss = masked_ce(logits, target, weights)
    per_pixel = torch.nn.functional.cross_entropy(logits, target, reduction="none")[0, 0]
    assert torch.isclose(loss, (per_pixel[0] + 3 * per_pixel[1]) / 4)
