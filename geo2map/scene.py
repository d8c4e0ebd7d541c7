"""What a scene is before any pixel is translated: grid, bands, validity, GSD and scaling.

Everything here is decided once per scene (never per chip) and is plain picklable data,
so Dask tasks carry a ``Scene`` and reopen the file by path.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import rasterio
from affine import Affine
from pyproj import Geod
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.transform import from_gcps
from rasterio.windows import Window

from geo2map.errors import Geo2MapError

T = TypeVar("T")
MAX_GSD_RATIO = 8.0
# Within this relative difference the scene is used at its own resolution: resampling a few
# percent only blurs.
GSD_SNAP = 0.1
# The sample read for per-scene statistics (16-bit and float scenes) is at most this wide.
STATS_SAMPLE = 1024


@dataclass(frozen=True)
class Scaling:
    """Maps raw values to [0, 1]: (x - low) / (high - low), clipped. One per scene."""

    low: float
    high: float
    source: str  # "fixed uint8", "per-scene 2-98% percentiles", "user"

    def apply(self, x: np.ndarray) -> np.ndarray:
        return np.clip((x.astype(np.float32) - self.low) / (self.high - self.low), 0.0, 1.0)


@dataclass(frozen=True)
class Scene:
    path: str
    width: int
    height: int
    crs: CRS | None
    transform: Affine
    gcps: tuple = ()
    gcps_crs: CRS | None = None
    bands: tuple[int, ...] = (1, 2, 3)
    dtype: str = "uint8"
    gsd_m: float = 1.0
    scaling: Scaling = field(default_factory=lambda: Scaling(0.0, 255.0, "fixed uint8"))
    # Offset of this scene inside the file (a DataArray may be a window of a file).
    window: tuple[int, int] = (0, 0)

    @property
    def name(self) -> str:
        return Path(self.path).stem

    @property
    def pixels(self) -> int:
        return self.width * self.height

    def file_window(self, col: float, row: float, width: float, height: float) -> Window:
        return Window(col + self.window[1], row + self.window[0], width, height)


def open_dataset(path: str | Path) -> rasterio.DatasetReader:
    p = Path(path)
    if not p.exists() and "://" not in str(path) and not str(path).startswith("/vsi"):
        raise Geo2MapError(f"{path}: no such file; check the path (or `geo2map catalog list`)")
    try:
        with warnings.catch_warnings():
            # no geotransform: ground_sample_distance refuses it in one line
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path)
    except RasterioIOError:
        raise Geo2MapError(
            f"{path}: not a raster GDAL can read; give a GeoTIFF, COG or VRT"
        ) from None


def reading(ds: rasterio.DatasetReader, what: str, read: Callable[[], T]) -> T:
    """``read()``, with a failed read of ``what`` (a truncated or damaged file, a VRT whose
    source is missing) turned into one line naming the file, the part read and GDAL's reason."""
    try:
        return read()
    except RasterioIOError as e:
        reason = str(e.__cause__ or e).splitlines()[0].rstrip(".")
    # raised outside the handler, so GDAL's exceptions are not its context: Dask could not
    # pickle them back from a worker and would send a bare Exception(repr) instead
    raise Geo2MapError(
        f"{ds.name}: cannot read {what}: {reason}; the file may be truncated or damaged, "
        "or a source of the VRT missing"
    )


def window_text(window: Window) -> str:
    """File rows and cols a window covers, for error messages."""
    (r0, r1), (c0, c1) = window.toranges()
    return f"rows {int(r0)}-{int(np.ceil(r1))}, cols {int(c0)}-{int(np.ceil(c1))}"


def select_bands(
    ds: rasterio.DatasetReader, wanted: int, bands: list[int] | None
) -> tuple[int, ...]:
    """The 1-based bands that feed the model, by user choice, colour interpretation or order.

    Policy (documented in the README): explicit ``bands`` win; else red/green/blue by colour
    interpretation; else the first three non-alpha bands (RGBN -> RGB); a single band is
    grey and is repeated into all model inputs.
    """
    if bands:
        bad = [b for b in bands if not 1 <= b <= ds.count]
        if bad or len(bands) not in (1, wanted):
            raise Geo2MapError(
                f"{ds.name}: --bands {','.join(map(str, bands))} does not fit a raster of "
                f"{ds.count} bands; give {wanted} band numbers between 1 and {ds.count}"
            )
        return tuple(bands) * (wanted if len(bands) == 1 else 1)
    interp = list(ds.colorinterp)
    usable = [i + 1 for i, ci in enumerate(interp) if ci != ColorInterp.alpha]
    rgb = [ColorInterp.red, ColorInterp.green, ColorInterp.blue]
    if wanted == 3 and all(ci in interp for ci in rgb):
        return tuple(interp.index(ci) + 1 for ci in rgb)
    if len(usable) == 1:
        return (usable[0],) * wanted
    if len(usable) >= wanted:
        return tuple(usable[:wanted])
    raise Geo2MapError(
        f"{ds.name}: {len(usable)} usable bands, but the model needs {wanted} "
        f"(or 1 grey band); choose bands with --bands"
    )


def ground_sample_distance(ds: rasterio.DatasetReader) -> tuple[float, CRS | None, Affine]:
    """Pixel size in metres, also for geographic CRSs and GCP-only rasters."""
    crs, transform = ds.crs, ds.transform
    gcps, gcps_crs = ds.gcps
    if crs is None and gcps:
        crs, transform = gcps_crs, from_gcps(gcps)
    if crs is None:
        raise Geo2MapError(
            f"{ds.name}: no georeferencing (no CRS, no GCPs); for plain images use "
            "`geo2map translate-image`, which assumes the model's GSD"
        )
    if not gcps and transform == Affine.identity():
        raise Geo2MapError(
            f"{ds.name}: a CRS but no geotransform (nothing places the pixels on the "
            "ground); repair it, e.g. gdal_edit.py -a_ullr, or use `geo2map translate-image`"
        )
    if crs.is_geographic:
        geod = Geod(ellps="WGS84")
        lon, lat = transform @ (ds.width / 2, ds.height / 2)
        lon_e, lat_e = transform @ (ds.width / 2 + 1, ds.height / 2)
        lon_s, lat_s = transform @ (ds.width / 2, ds.height / 2 + 1)
        gx = geod.inv(lon, lat, lon_e, lat_e)[2]
        gy = geod.inv(lon, lat, lon_s, lat_s)[2]
    else:
        unit = crs.linear_units_factor[1]
        gx = float(np.hypot(transform.a, transform.d)) * unit
        gy = float(np.hypot(transform.b, transform.e)) * unit
    return float((gx + gy) / 2), crs, transform


def scene_scaling(
    ds: rasterio.DatasetReader, bands: tuple[int, ...], user: tuple[float, float] | None
) -> Scaling:
    if user is not None:
        low, high = user
        if not high > low:
            raise Geo2MapError(f"--scale {low} {high}: the maximum must be above the minimum")
        return Scaling(low, high, "user")
    if ds.dtypes[bands[0] - 1] == "uint8":
        return Scaling(0.0, 255.0, "fixed uint8")
    # 16-bit and float: one stretch per scene from a decimated read, so chips agree.
    f = max(1, int(np.ceil(max(ds.width, ds.height) / STATS_SAMPLE)))
    shape = (len(set(bands)), max(1, ds.height // f), max(1, ds.width // f))
    data = reading(ds, "an overview of the scene (for its value range)", lambda: ds.read(
        sorted(set(bands)), out_shape=shape, resampling=Resampling.nearest, masked=True
    ))  # fmt: skip
    values = data.compressed() if np.ma.isMaskedArray(data) else data.ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise Geo2MapError(f"{ds.name}: every pixel is nodata or masked; nothing to translate")
    low, high = np.percentile(values, [2, 98])
    if not high > low:
        high = low + 1.0
    return Scaling(float(low), float(high), "per-scene 2-98% percentiles")


def inspect_scene(
    path: str | Path,
    wanted_bands: int = 3,
    bands: list[int] | None = None,
    scale: tuple[float, float] | None = None,
) -> Scene:
    with open_dataset(path) as ds:
        if ds.count == 0:
            hint = (
                f"; it holds subdatasets, translate one of them, e.g. {ds.subdatasets[0]}"
                if ds.subdatasets
                else ""
            )
            raise Geo2MapError(f"{path}: the raster has no bands{hint}")
        gsd, _, _ = ground_sample_distance(ds)
        chosen = select_bands(ds, wanted_bands, bands)
        if any(ds.colorinterp[b - 1] == ColorInterp.palette for b in chosen):
            # Indices into a colour table are not brightness: averaging or scaling them
            # would feed the model noise.
            raise Geo2MapError(
                f"{path}: a palette (colour-mapped) raster; expand it to RGB first, e.g. "
                f"gdal_translate -expand rgb {Path(path).name} {Path(path).stem}-rgb.tif"
            )
        gcps, gcps_crs = ds.gcps
        return Scene(
            path=str(path),
            width=ds.width,
            height=ds.height,
            crs=ds.crs,
            transform=ds.transform,
            gcps=tuple(gcps),
            gcps_crs=gcps_crs,
            bands=chosen,
            dtype=ds.dtypes[chosen[0] - 1],
            gsd_m=gsd,
            scaling=scene_scaling(ds, chosen, scale),
        )


def model_grid_shape(scene: Scene, model_gsd: float, force: bool) -> tuple[int, int]:
    """Height and width of the scene resampled to the model's GSD (checked ratio)."""
    ratio = scene.gsd_m / model_gsd
    if not force and not 1 / MAX_GSD_RATIO <= ratio <= MAX_GSD_RATIO:
        raise Geo2MapError(
            f"{scene.path}: pixel size {scene.gsd_m:.3g} m is {ratio:.3g}x the model's "
            f"{model_gsd:g} m (more than {MAX_GSD_RATIO:g}x apart); use imagery near "
            f"{model_gsd:g} m or pass --force-gsd"
        )
    if abs(ratio - 1) <= GSD_SNAP:
        return scene.height, scene.width
    return max(1, round(scene.height * ratio)), max(1, round(scene.width * ratio))
