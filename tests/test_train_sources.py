"""Training data at the model's GSD, partial road labels, and the losses that respect them."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from geo2map.catalog import resolve
from geo2map.errors import Geo2MapError
from geo2map.train.augment import degrade, draw_factor, resampled_window
from geo2map.train.data import IGNORE_LABEL, NOT_ROAD, ROAD_CLASS, MaskTiles
from geo2map.train.losses import class_set_nll, dice_loss, masked_ce, membership
from geo2map.train.palette import PALETTE_CLASS


def _labelled_image(size: int) -> tuple[np.ndarray, np.ndarray]:
    """An image whose left half is dark and right half bright, labelled 1 and 2."""
    image = np.zeros((size, size, 3), np.uint8)
    image[:, size // 2 :] = 200
    label = np.ones((size, size), np.uint8)
    label[:, size // 2 :] = 2
    return image, label


def test_window_is_resampled_to_the_model_gsd_and_labels_stay_aligned() -> None:
    image, label = _labelled_image(128)
    rng = np.random.default_rng(0)
    # a 0.3 m source seen at 0.6 m: a 64 px crop covers 128 source pixels (the whole image)
    img, lab = resampled_window([image, label], rng, 64, 0.5)
    assert img.shape == (64, 64, 3) and lab.shape == (64, 64)
    assert set(np.unique(lab)) == {1, 2}  # nearest: no label invented between classes
    # the boundary stays where the image changes (half way), within one pixel
    assert (lab[:, :31] == 1).all() and (lab[:, 33:] == 2).all()
    assert (img[:, :31] < 30).all() and (img[:, 34:] > 170).all()


def test_a_source_smaller_than_the_window_is_padded_with_ignored_labels() -> None:
    image, label = _labelled_image(40)
    img, lab = resampled_window([image, label], np.random.default_rng(1), 64, 1.0)
    assert img.shape == (64, 64, 3)
    assert (lab[40:] == IGNORE_LABEL).all() and (lab[:, 40:] == IGNORE_LABEL).all()
    assert (lab[:40, :40] != IGNORE_LABEL).all()


def test_scale_factor_is_drawn_within_the_source_range() -> None:
    rng = np.random.default_rng(2)
    factors = [draw_factor(rng, (0.4, 0.6), 0.6, 0.0) for _ in range(200)]
    assert min(factors) >= 0.4 / 0.6 - 1e-9 and max(factors) <= 1.0 + 1e-9
    assert max(factors) - min(factors) > 0.2  # it does vary
    assert draw_factor(rng, (0.672, 0.672), 0.6, 0.0) == pytest.approx(1.12)


def test_degradations_change_the_image_and_are_reproducible() -> None:
    image = np.asarray(
        Image.open(resolve("landcoverai-chips", verify=False) / "img" / "0002.png").convert("RGB")
    )
    a = degrade(image, np.random.default_rng(3), 1.0)
    b = degrade(image, np.random.default_rng(3), 1.0)
    assert a.shape == image.shape and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert np.abs(a.astype(int) - image).mean() > 3
    assert degrade(image, np.random.default_rng(3), 0.0) is image


def test_road_only_masks_become_road_and_not_road(tmp_path: Path) -> None:
    root = resolve("roads-us", verify=False)
    ds = MaskTiles(root, "road", ["satImage_001"])
    raw = np.asarray(Image.open(root / "mask" / "satImage_001.png"))
    s = ds[0]
    assert set(np.unique(s.mask)) <= {ROAD_CLASS, NOT_ROAD}
    np.testing.assert_array_equal(s.mask == ROAD_CLASS, raw > 0)


def test_image_and_mask_of_different_sizes_are_refused_naming_the_file(tmp_path: Path) -> None:
    root = resolve("roads-us", verify=False)
    for sub in ("img", "mask"):
        (tmp_path / sub).mkdir()
    shutil.copy(root / "img" / "satImage_002.jpg", tmp_path / "img")
    Image.fromarray(np.zeros((100, 120), np.uint8)).save(tmp_path / "mask" / "satImage_002.png")
    with pytest.raises(
        Geo2MapError, match=r"satImage_002\.jpg is 400x400 but .*satImage_002\.png is 120x100"
    ):
        MaskTiles(tmp_path, "road")


def test_not_road_pixels_only_push_probability_off_road() -> None:
    torch.manual_seed(0)
    logits = torch.randn(1, 5, 4, 4)
    target = torch.full((1, 4, 4), NOT_ROAD)
    target[0, 0, 0] = ROAD_CLASS
    # class CE and Dice skip NOT_ROAD: only the one road pixel counts
    ce = masked_ce(logits, target)
    torch.testing.assert_close(
        ce, torch.nn.functional.cross_entropy(logits[..., 0, 0], target[:, 0, 0])
    )
    assert torch.isfinite(dice_loss(logits, target))
    # the partial-label term is -log(1 - p(road)) over the NOT_ROAD pixels
    table = membership({NOT_ROAD: [c != ROAD_CLASS for c in range(5)]}, 5)
    p_road = torch.softmax(logits, 1)[:, ROAD_CLASS]
    expected = -torch.log(1 - p_road)[target == NOT_ROAD].mean()
    torch.testing.assert_close(class_set_nll(logits, target, table), expected)
    # a pixel confidently "building" costs nearly nothing; confidently "road" costs a lot
    sure = torch.full((1, 5, 1, 1), -10.0)
    sure[0, 1] = 10
    assert class_set_nll(sure, torch.full((1, 1, 1), NOT_ROAD), table) < 1e-6
    sure[0, [1, ROAD_CLASS]] = sure[0, [ROAD_CLASS, 1]]
    assert class_set_nll(sure, torch.full((1, 1, 1), NOT_ROAD), table) > 10


def test_a_pixel_known_to_be_neither_building_nor_road_pushes_both_off() -> None:
    """Complete labels of several classes: the other pixels are "none of them"."""
    from geo2map.train.data import excluded_classes, partial_label
    from geo2map.train.loop import label_tables

    code = partial_label({1, ROAD_CLASS})
    assert excluded_classes(code) == {1, ROAD_CLASS} and excluded_classes(NOT_ROAD) == {ROAD_CLASS}
    assert {excluded_classes(c) == set() for c in (0, 4, IGNORE_LABEL)} == {True}
    tables = label_tables(torch.nn.Identity(), torch.device("cpu"))
    logits = torch.randn(1, 5, 3, 3)
    p = torch.softmax(logits, 1)
    expected = -torch.log(1 - p[:, 1] - p[:, ROAD_CLASS]).mean()
    torch.testing.assert_close(
        class_set_nll(logits, torch.full((1, 3, 3), code), tables.mask), expected
    )
    assert masked_ce(logits, torch.full((1, 3, 3), code)) == 0  # not a class label


def test_render_learns_the_colours_of_a_class_not_which_one() -> None:
    rows = {c: [int(k) == c for k in PALETTE_CLASS] for c in range(5)}
    table = membership(rows, len(PALETTE_CLASS))
    logits = torch.zeros(1, len(PALETTE_CLASS), 1, 1)
    vegetation = torch.full((1, 1, 1), 2)
    n_veg = int((PALETTE_CLASS == 2).sum())
    # uniform logits: the class's colours hold n_veg / K of the mass
    torch.testing.assert_close(
        class_set_nll(logits, vegetation, table),
        torch.tensor(-math.log(n_veg / len(PALETTE_CLASS))),
    )
    # any single vegetation colour satisfies it equally
    for k in np.flatnonzero(PALETTE_CLASS == 2):
        confident = torch.full_like(logits, -20.0)
        confident[0, k] = 20
        assert class_set_nll(confident, vegetation, table) < 1e-6
    # unlabelled pixels contribute nothing
    assert class_set_nll(logits, torch.full((1, 1, 1), IGNORE_LABEL), table) == 0


def test_packed_data_keeps_labels_and_the_validation_split(tmp_path: Path) -> None:
    from geo2map.train.config import load_config
    from geo2map.train.data import MoscowPairs, split_names
    from geo2map.train.pack import pack_training_data

    roads = "{name: roads, data: roads-us, labels: road, gsd_m: [0.4, 0.5], batch: 1, val: 2}"
    cfg = load_config(
        Path(__file__).resolve().parent.parent / "pipelines" / "train-default.yaml",
        ["data.landcover=null", "data.moscow_val=2", f"data.masks=[{roads}]"],
    )
    report = pack_training_data(cfg, tmp_path, max_mb=2.4)  # roads + 2 pairs: ~2.3 MiB
    assert report.files["roads-us"] == 80 and 1 <= report.moscow_train < 10
    moscow = tmp_path / "pairs" / "osm-moscow" / "train"
    packed = MoscowPairs(moscow)
    original_root = resolve("osm-moscow-pairs", verify=False)
    # the hashed split finds the same validation pairs among the packed files
    _, val = split_names(packed.names, 2)
    _, val_original = split_names(MoscowPairs(original_root, cache=False).names, 2)
    assert val == val_original
    # maps are stored snapped: loading snaps them again to exactly the same palette indices
    original = MoscowPairs(original_root, packed.names)
    for i in range(len(packed)):
        np.testing.assert_array_equal(packed[i].map_index, original[i].map_index)
    # masks are lossless
    road_root = resolve("roads-us", verify=False)
    np.testing.assert_array_equal(
        MaskTiles(tmp_path / "masks" / "roads-us", "road", ["satImage_001"])[0].mask,
        MaskTiles(road_root, "road", ["satImage_001"])[0].mask,
    )
