"""Training data: Moscow sat->map pairs and LandCover.ai chips, a fixed validation split,
and augmentations applied identically to an image and its targets.

Randomness is drawn from ``numpy.random.default_rng([seed, step, ...])``: a batch depends only
on the seed and the step number, so a resumed run sees exactly the batches it would have seen.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from geo2map.errors import Geo2MapError
from geo2map.train.augment import degrade, flip_rotate, jitter_colours, resampled_window
from geo2map.train.config import MAX_CLASSES
from geo2map.train.palette import MAX_SNAP_DISTANCE, palette_class, snap_to_palette

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp")
IGNORE_LABEL = 255
# Partial labels: what a mask that draws some classes completely says about its other
# pixels: "any class but those" (road / not-road tiles, complete building footprints). The
# set S of excluded classes is coded as PARTIAL_BASE + sum(2**k for k in S), so label maps
# that can hold them are uint16; a model has at most MAX_CLASSES classes.
PARTIAL_BASE = 256
ROAD_CLASS = 4


def partial_label(excluded: set[int] | frozenset[int]) -> int:
    """The label of a pixel known to be none of the classes ``excluded``."""
    return PARTIAL_BASE + sum(1 << k for k in excluded)


def excluded_classes(label: int) -> set[int]:
    """The classes a partial label rules out (empty for a class label or IGNORE_LABEL)."""
    if label <= PARTIAL_BASE:
        return set()
    return {k for k in range(MAX_CLASSES) if (label - PARTIAL_BASE) >> k & 1}


NOT_ROAD = partial_label({ROAD_CLASS})


def data_path(ref: str) -> Path:
    """A training source: a path (a file or folder), or a catalog name (data_catalog.yaml)."""
    from geo2map.catalog import resolve

    p = Path(ref).expanduser()
    if p.exists():
        return p
    return resolve(ref, verify=False)


def _images(folder: Path) -> dict[str, Path]:
    """Image files by stem; anything else (e.g. a stray ``.DS_Store``) is not data and is skipped."""
    if not folder.is_dir():
        raise Geo2MapError(f"folder {folder} does not exist")
    return {p.stem: p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}


def _natural(stem: str) -> tuple[int, str]:
    return (int(stem), stem) if stem.isdigit() else (1 << 62, stem)


def list_pairs(root: str | Path, a: str, b: str) -> list[tuple[str, Path, Path]]:
    """(stem, root/a/stem.*, root/b/stem.*) for every stem, or an error naming the first
    unpaired file, or the first pair whose two images differ in size."""
    return list(_checked_pairs(Path(root).resolve(), a, b))


@functools.lru_cache(maxsize=32)
def _checked_pairs(root: Path, a: str, b: str) -> tuple[tuple[str, Path, Path], ...]:
    left, right = _images(root / a), _images(root / b)
    for stem in sorted(set(left) ^ set(right), key=_natural):
        present, other = (left[stem], b) if stem in left else (right[stem], a)
        raise Geo2MapError(f"unpaired file {present}: no image named {stem}.* in {root / other}")
    if not left:
        raise Geo2MapError(f"no images in {root / a} and {root / b}")
    pairs = tuple((s, left[s], right[s]) for s in sorted(left, key=_natural))
    for _, pa, pb in pairs:  # headers only: cheap, and a bad pair fails before training starts
        with Image.open(pa) as ia, Image.open(pb) as ib:
            if ia.size != ib.size:
                raise Geo2MapError(
                    f"image {pa} is {ia.width}x{ia.height} but {pb} is {ib.width}x{ib.height}: "
                    "an image and its target must cover the same pixels"
                )
    return pairs


def split_names(
    names: list[str], val_count: int, salt: str = "geo2map-val"
) -> tuple[list[str], list[str]]:
    """Fixed train/val split: the ``val_count`` names with the smallest salted hash are validation.

    A hash (not a seeded shuffle) keeps each file's side stable whatever the seed or file count.
    """
    ranked = sorted(names, key=lambda n: hashlib.sha1(f"{salt}:{n}".encode()).hexdigest())
    val = set(ranked[:val_count])
    return [n for n in names if n not in val], [n for n in names if n in val]


def load_rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


@dataclass
class Sample:
    """One training example as HWC/HW numpy arrays; absent targets are None."""

    image: np.ndarray  # (H, W, 3) uint8
    map_rgb: np.ndarray | None = None  # (H, W, 3) uint8
    map_index: np.ndarray | None = None  # (H, W) uint8 palette index
    mask: np.ndarray | None = None  # (H, W) uint8 class id


class MoscowPairs:
    """sat/N.jpg -> map/N.jpg, with the map snapped to the OSM palette and a derived class mask."""

    def __init__(
        self, root: str | Path, names: list[str] | None = None, cache: bool = True
    ) -> None:
        pairs = list_pairs(root, "sat", "map")
        by_name = {s: (a, b) for s, a, b in pairs}
        self.names = names if names is not None else list(by_name)
        missing = [n for n in self.names if n not in by_name]
        if missing:
            raise Geo2MapError(f"pair {missing[0]!r} is not in {root}")
        self.paths = [by_name[n] for n in self.names]
        self._cache: dict[int, Sample] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Sample:
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        sat, mp = self.paths[i]
        map_rgb = load_rgb(mp)
        # uint8 keeps the cache of all pairs ~2 MB each (int64 would be 5x that)
        # labels/icons (far from every palette colour) become IGNORE_LABEL in both targets
        index = snap_to_palette(map_rgb, max_distance=MAX_SNAP_DISTANCE).astype(np.uint8)
        s = Sample(load_rgb(sat), map_rgb, index, palette_class(index))
        if self._cache is not None:
            self._cache[i] = s
        return s


class LandCoverChips:
    """img/NNNN.png + mask/NNNN.png (class ids 0..4)."""

    def __init__(self, root: str | Path, names: list[str] | None = None) -> None:
        pairs = list_pairs(root, "img", "mask")
        by_name = {s: (a, b) for s, a, b in pairs}
        self.names = names if names is not None else list(by_name)
        self.paths = [by_name[n] for n in self.names]
        self._cache: dict[int, Sample] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Sample:
        if i not in self._cache:
            img, mask = self.paths[i]
            m = np.asarray(Image.open(mask)).astype(np.uint8)
            if m.ndim == 3:
                m = m[..., 0]
            self._cache[i] = Sample(load_rgb(img), mask=m)
        return self._cache[i]


class MaskTiles(LandCoverChips):
    """img/NAME.* + mask/NAME.png of any size, with two kinds of labels:

    - ``classes``: geo2map class ids 0..4, 255 unlabelled (the Dubai tiles);
    - ``road``: 1 road, 0 not road (the US city tiles). 0 becomes NOT_ROAD: such a pixel is
      known not to be road, nothing more, so the losses never call it "other".
    """

    def __init__(self, root: str | Path, labels: str, names: list[str] | None = None) -> None:
        if labels not in ("classes", "road"):
            raise Geo2MapError(f"mask labels {labels!r}: use 'classes' or 'road'")
        super().__init__(root, names)
        self.labels = labels

    def __getitem__(self, i: int) -> Sample:
        if i not in self._cache:
            s = super().__getitem__(i)
            if self.labels == "road":
                m = np.where(s.mask > 0, ROAD_CLASS, NOT_ROAD).astype(np.uint16)
                self._cache[i] = Sample(s.image, mask=m)
        return self._cache[i]


def augment(
    s: Sample,
    rng: np.random.Generator,
    crop: int | None,
    colour_jitter: float = 0.0,
    factor: float = 1.0,
    degrade_p: float = 0.0,
) -> Sample:
    """A random ``crop`` window seen at ``factor`` x the source's size (1: native size), one
    flip + rot90 for the image and every target, then colour jitter and degradations
    (image only). ``crop=None`` keeps the whole sample."""
    arrays = [s.image, s.map_rgb, s.map_index, s.mask]
    if crop is None:
        crop = max(s.image.shape[:2])
    arrays = resampled_window(arrays, rng, crop, factor)
    image, map_rgb, map_index, mask = flip_rotate(arrays, rng)
    image = degrade(jitter_colours(image, rng, colour_jitter), rng, degrade_p)
    return Sample(image, map_rgb, map_index, mask)


def rescale_batch(batch: dict[str, torch.Tensor], size: int) -> dict[str, torch.Tensor]:
    """Resize a collated batch to ``size`` pixels square: images antialiased bilinear,
    label maps nearest (scale augmentation: the model meets imagery at other GSDs)."""
    if batch["image"].shape[-1] == size:
        return batch
    out = dict(batch)
    for key in ("image", "map_rgb"):
        out[key] = torch.nn.functional.interpolate(
            batch[key], size=(size, size), mode="bilinear", antialias=True, align_corners=False
        ).contiguous(memory_format=torch.channels_last)
    for key in ("map_index", "mask"):
        out[key] = (
            torch.nn.functional.interpolate(batch[key][:, None].float(), size=(size, size))
            .long()
            .squeeze(1)
        )
    return out


def collate(samples: list[Sample], mean: list[float], std: list[float]) -> dict[str, torch.Tensor]:
    """Stack samples; a target missing from a sample is filled with IGNORE_LABEL / flagged off."""
    img = torch.from_numpy(np.stack([s.image for s in samples])).permute(0, 3, 1, 2).float() / 255
    m = torch.tensor(mean).view(1, 3, 1, 1)
    sd = torch.tensor(std).view(1, 3, 1, 1)
    hw = samples[0].image.shape[:2]
    ignore = np.full(hw, IGNORE_LABEL, dtype=np.uint8)
    blank = np.zeros((*hw, 3), dtype=np.uint8)
    out = {
        "image": ((img - m) / sd).contiguous(memory_format=torch.channels_last),
        "has_map": torch.tensor([s.map_rgb is not None for s in samples]),
        "has_mask": torch.tensor([s.mask is not None for s in samples]),
        "map_rgb": torch.from_numpy(
            np.stack([s.map_rgb if s.map_rgb is not None else blank for s in samples])
        )
        .permute(0, 3, 1, 2)
        .float()
        / 255,
        "map_index": torch.from_numpy(
            np.stack([s.map_index if s.map_index is not None else ignore for s in samples])
        ).long(),
        "mask": torch.from_numpy(
            np.stack([s.mask if s.mask is not None else ignore for s in samples])
        ).long(),
    }
    return out
