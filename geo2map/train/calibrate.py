"""The int8 calibration set of an exported model: training images only, never validation."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from geo2map.errors import Geo2MapError
from geo2map.models.card import ModelCard
from geo2map.models.int8 import Int8Calibration, calibrate
from geo2map.train.data import LandCoverChips, MoscowPairs, list_pairs

PER_SOURCE = 8  # images from each source; activation ranges settle well before (docs/models.md)


def training_names(folder: Path, a: str, b: str, held_out: list[str] | None) -> list[str]:
    """The folder's pairs minus the card's validation names, in a fixed salted-hash order
    (a spread over the folder, the same whatever the file count). Not ``split_names``: that
    returns its pick in file order, and the histogram observers' scales depend on the order
    they see images in (up to 3 % on the shipped calibration)."""
    held = set(held_out or [])
    names = [s for s, _, _ in list_pairs(folder, a, b) if s not in held]
    return sorted(names, key=lambda n: hashlib.sha1(f"geo2map-int8:{n}".encode()).hexdigest())


def calibration_images(card: ModelCard, pairs_dir: Path, masks_dir: Path) -> list[np.ndarray]:
    split = card.training.get("validation_split", {})
    moscow = training_names(Path(pairs_dir), "sat", "map", split.get("moscow"))[:PER_SOURCE]
    chips = training_names(Path(masks_dir), "img", "mask", split.get("landcover"))[:PER_SOURCE]
    if not moscow or not chips:
        raise Geo2MapError(f"no training images to calibrate int8 on in {pairs_dir} / {masks_dir}")
    pairs, lc = MoscowPairs(pairs_dir, moscow, cache=False), LandCoverChips(masks_dir, chips)
    return [pairs[i].image for i in range(len(pairs))] + [lc[i].image for i in range(len(lc))]


def normalized_batches(images: list[np.ndarray], card: ModelCard) -> Iterator[torch.Tensor]:
    """(H, W, 3) uint8 images -> normalized (1, 3, H, W) float tensors (sizes may differ)."""
    mean = torch.tensor(card.input.mean).view(1, 3, 1, 1)
    std = torch.tensor(card.input.std).view(1, 3, 1, 1)
    for image in images:
        # torch.tensor copies: the images may be read-only numpy arrays
        x = torch.tensor(image).permute(2, 0, 1)[None].float() / 255
        yield (x - mean) / std


def int8_calibration(
    model: nn.Module, card: ModelCard, pairs_dir: Path, masks_dir: Path
) -> Int8Calibration:
    images = calibration_images(card, pairs_dir, masks_dir)
    described = (
        f"{PER_SOURCE} Moscow training pairs and {PER_SOURCE} LandCover.ai training chips "
        "(none of the validation split), at their native size"
    )
    return calibrate(model, normalized_batches(images, card), described)
