"""Pack a training pipeline's data into a small data root that can travel to a GPU machine.

A lent GPU machine sees only the working tree (64 MiB in all, the shipped weights included),
not the data beside it. This writes the sources the YAML names under the same relative paths
as the catalog, so pointing ``GEO2MAP_DATA_ROOT`` at the folder makes the catalog names
resolve there:

- photos as lossy WebP (``quality``); masks as lossless WebP (exact class ids);
- Moscow maps snapped to the palette and stored lossless, labels and icons black: loading
  snaps them again to exactly the same palette indices (black is far from every palette
  colour, so it is ignored as before); only the L1 target sees flat colours instead of
  the JPEG's;
- every validation file (so the hashed split is the same there), then every training file of
  the smaller sources, then Moscow training pairs in hash order until ``max_mb`` is reached.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from geo2map.catalog import data_root, load_catalog
from geo2map.errors import Geo2MapError
from geo2map.train.config import PipelineConfig
from geo2map.train.data import list_pairs, load_rgb, split_names
from geo2map.train.palette import IGNORE, MAX_SNAP_DISTANCE, PALETTE_RGB, snap_to_palette


@dataclass
class PackReport:
    bytes: int = 0
    files: dict[str, int] = field(default_factory=dict)  # pairs / images packed per source
    moscow_train: int = 0  # Moscow training pairs that fitted


def _snapped_map(path: Path) -> Image.Image:
    index = snap_to_palette(load_rgb(path), max_distance=MAX_SNAP_DISTANCE)
    rgb = np.zeros((*index.shape, 3), np.uint8)  # ignored pixels: black
    keep = index != IGNORE
    rgb[keep] = PALETTE_RGB[index[keep]]
    return Image.fromarray(rgb)


def _write(image: Image.Image, dst: Path, lossless: bool, quality: int) -> int:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if lossless:
        image.save(dst, format="WEBP", lossless=True, method=6)
    else:
        image.convert("RGB").save(dst, format="WEBP", quality=quality, method=6)
    return dst.stat().st_size


def pack_training_data(
    cfg: PipelineConfig, out: Path, quality: int = 60, max_mb: float = 34.0
) -> PackReport:
    """Write the packed data root at ``out``. Sources must be catalog names."""
    catalog = load_catalog()
    root = data_root()
    d = cfg.data
    # (catalog name, (photo folder, label folder), validation count)
    sources = [(d.moscow, ("sat", "map"), d.moscow_val)]
    sources += [(d.landcover, ("img", "mask"), d.landcover_val)] if d.landcover else []
    sources += [(m.data, ("img", "mask"), m.val) for m in d.masks]
    report = PackReport()
    moscow_rest: list[tuple[Path, Path, Path]] = []
    for ref, (a, b), val_count in sources:
        if ref not in catalog:
            raise Geo2MapError(f"data source {ref!r} is not a catalog name: only those are packed")
        rel = Path(catalog[ref].path)
        pairs = {s: (pa, pb) for s, pa, pb in list_pairs(root / rel, a, b)}
        train, val = split_names(list(pairs), val_count)
        if ref == d.moscow:  # the large one: validation now, training pairs while they fit
            keep = val
            moscow_rest = [(out / rel, *pairs[s]) for s in sorted(train, key=_hash)]
        else:
            keep = val + train
        for stem in keep:
            report.bytes += _pack_pair(out / rel, *pairs[stem], quality, ref == d.moscow)
        report.files[ref] = len(keep)
    for dst_root, sat, mp in moscow_rest:
        if report.bytes > max_mb * 2**20:
            break
        report.bytes += _pack_pair(dst_root, sat, mp, quality, True)
        report.moscow_train += 1
    report.files[d.moscow] += report.moscow_train
    return report


def _hash(name: str) -> str:
    import hashlib

    return hashlib.sha1(f"geo2map-pack:{name}".encode()).hexdigest()


def _pack_pair(dst_root: Path, photo: Path, label: Path, quality: int, is_map: bool) -> int:
    a, b = photo.parent.name, label.parent.name
    n = _write(Image.open(photo), dst_root / a / f"{photo.stem}.webp", False, quality)
    target = _snapped_map(label) if is_map else Image.open(label)
    return n + _write(target, dst_root / b / f"{label.stem}.webp", True, quality)
