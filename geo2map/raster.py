"""Windowed reads of a scene on the model grid and on the output grid.

Reads go through GDAL with floating-point windows and ``out_shape``: GDAL resamples on
the fly, and a pixel's value depends only on where it is on the grid, not on which
window asked for it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import rasterio
from rasterio.enums import Resampling

from geo2map.scene import Scene, reading, window_text


@dataclass(frozen=True)
class ModelGrid:
    """The scene resampled to the model's GSD: ``height`` x ``width`` model pixels."""

    scene: Scene
    height: int
    width: int

    @property
    def scale(self) -> tuple[float, float]:
        """Scene pixels per model pixel (rows, cols)."""
        return self.scene.height / self.height, self.scene.width / self.width

    @property
    def resampling(self) -> Resampling:
        sy, sx = self.scale
        if sy == sx == 1:
            return Resampling.nearest
        return Resampling.average if min(sy, sx) > 1 else Resampling.bilinear

    @property
    def transform(self):
        from affine import Affine

        sy, sx = self.scale
        return self.scene.transform @ Affine.scale(sx, sy)


def read_model_window(
    ds: rasterio.DatasetReader, grid: ModelGrid, row: int, col: int, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Scaled bands (C, h, w) in [0, 1] and the valid mask (h, w) of a model-grid window.

    The window may reach past the grid (scenes smaller than a chip): the part outside is
    filled by edge reflection and marked invalid.
    """
    scene = grid.scene
    rows = min(height, grid.height - row)
    cols = min(width, grid.width - col)
    sy, sx = grid.scale
    window = scene.file_window(col * sx, row * sy, cols * sx, rows * sy)
    shape = (rows, cols)
    raw = reading(ds, window_text(window), lambda: ds.read(
        list(scene.bands), window=window, out_shape=(len(scene.bands), *shape),
        resampling=grid.resampling,
    ))  # fmt: skip
    valid = valid_pixels(ds, scene, window, shape)
    data = scene.scaling.apply(raw)
    data[:, ~valid] = 0.5  # neutral grey where there is no data: the model's mean input
    data[~np.isfinite(data)] = 0.5  # a NaN averaged into a valid pixel by the resampling
    if (rows, cols) != (height, width):
        pad = ((0, 0), (0, height - rows), (0, width - cols))
        data = np.pad(data, pad, mode="reflect" if min(rows, cols) > 1 else "edge")
        valid = np.pad(valid, pad[1:], mode="constant", constant_values=False)
    return data, valid


def read_output_valid(
    ds: rasterio.DatasetReader,
    scene: Scene,
    grid: ModelGrid | None,
    row: int,
    col: int,
    height: int,
    width: int,
) -> np.ndarray:
    """Valid mask of an output window: the input's own mask on its grid (exact), or on the model grid."""
    if grid is None:
        return valid_pixels(ds, scene, scene.file_window(col, row, width, height), (height, width))
    sy, sx = grid.scale
    window = scene.file_window(col * sx, row * sy, width * sx, height * sy)
    return valid_pixels(ds, scene, window, (height, width))


def valid_pixels(
    ds: rasterio.DatasetReader, scene: Scene, window, shape: tuple[int, int]
) -> np.ndarray:
    """The file's mask (nodata, alpha, internal mask) over a window at ``shape`` (nearest);
    in a float scene also where any used band is NaN or infinite: NaN is never data, even
    without a nodata tag."""
    what = window_text(window)
    valid = reading(ds, what, lambda: ds.dataset_mask(
        window=window, out_shape=shape, resampling=Resampling.nearest
    )) > 0  # fmt: skip
    if np.issubdtype(np.dtype(scene.dtype), np.floating):
        bands = reading(ds, what, lambda: ds.read(
            list(scene.bands), window=window, out_shape=(len(scene.bands), *shape),
            resampling=Resampling.nearest,
        ))  # fmt: skip
        valid &= np.isfinite(bands).all(axis=0)
    return valid
