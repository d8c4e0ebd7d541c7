"""The OpenStreetMap Carto colours seen in the Moscow map tiles, and their land-cover classes.

Map pixels are snapped to the nearest palette colour; the palette index is the target of the
"palette" render head, and ``PALETTE_CLASS[index]`` is the derived 5-class mask
(0 other, 1 building, 2 vegetation, 3 water, 4 road). Colours are the Carto style values;
the JPEG tiles shift them by a few levels, which nearest-colour snapping absorbs.
The table is documented (with a checked picture) in docs/models.md.
"""

from __future__ import annotations

import numpy as np

# (name, Carto hex, class id). Order is the palette index; keep it stable: weights depend on it.
OSM_PALETTE: list[tuple[str, str, int]] = [
    ("land / background", "#f2efe9", 0),
    ("residential area", "#e0dfdf", 0),
    ("commercial / retail", "#f2dad9", 0),
    ("industrial", "#ebdbe8", 0),
    ("school / hospital grounds", "#ffffe5", 0),
    ("construction / brownfield", "#c7c7b4", 0),
    ("building", "#d9d0c9", 1),
    ("park", "#c8facc", 2),
    ("grass / meadow", "#cdebb0", 2),
    ("forest / wood", "#add19e", 2),
    ("water", "#aad3df", 3),
    ("minor road / street (white)", "#ffffff", 4),
    ("primary road", "#fcd6a4", 4),
    ("secondary road", "#f7fabf", 4),
]


def _rgb(hex_colour: str) -> list[int]:
    return [int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)]


PALETTE_RGB: np.ndarray = np.array([_rgb(h) for _, h, _ in OSM_PALETTE], dtype=np.uint8)
PALETTE_CLASS: np.ndarray = np.array([c for _, _, c in OSM_PALETTE], dtype=np.int64)


# Pixels farther than this (RGB Euclidean) from every palette colour are labels, icons,
# footway dashes or railway lines: they get IGNORE instead of a wrong class (dark text would
# otherwise snap to "forest"). 40 keeps JPEG noise (~10-20) and drops ~3% of pixels.
MAX_SNAP_DISTANCE = 40.0
IGNORE = 255


def snap_to_palette(
    rgb: np.ndarray, palette: np.ndarray = PALETTE_RGB, max_distance: float | None = None
) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W) int64 index of the nearest palette colour.

    With ``max_distance``, pixels farther than that from every colour get ``IGNORE``.
    """
    flat = rgb.reshape(-1, 3).astype(np.int32)
    pal = palette.astype(np.int32)
    # |a-b|^2 = |a|^2 - 2ab + |b|^2; |a|^2 is the same for every colour for the argmin.
    d = -2 * flat @ pal.T + (pal**2).sum(1)[None, :]
    index = d.argmin(1)
    if max_distance is not None:
        best = d[np.arange(len(index)), index] + (flat**2).sum(1)
        index = np.where(best > max_distance**2, IGNORE, index)
    return index.reshape(rgb.shape[:2]).astype(np.int64)


def palette_class(index: np.ndarray) -> np.ndarray:
    """Palette index -> class id, IGNORE kept."""
    lut = np.full(256, IGNORE, dtype=np.uint8)
    lut[: len(PALETTE_CLASS)] = PALETTE_CLASS
    return lut[index]


def palette_to_rgb(index: np.ndarray, palette: np.ndarray = PALETTE_RGB) -> np.ndarray:
    return palette[index]


def palette_rows() -> list[list[int]]:
    """The OSM palette as [r, g, b, class] rows: how a model that draws a map in these
    colours has its mask read back (the nearest colour's class)."""
    return [[*map(int, rgb), int(c)] for rgb, c in zip(PALETTE_RGB, PALETTE_CLASS, strict=True)]
