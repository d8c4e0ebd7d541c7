"""``translate_array``: lazy translation of a rioxarray DataArray into an xarray Dataset."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import xarray as xr

from geo2map.engine import scene_array
from geo2map.errors import Geo2MapError
from geo2map.models.int8_cache import checked_card
from geo2map.options import TranslateOptions, merge_options
from geo2map.pipeline import output_profile
from geo2map.plan import plan_for
from geo2map.scene import inspect_scene
from geo2map.writer import MASK_NODATA


def _window_in_file(da: xr.DataArray, path: str) -> tuple[int, int]:
    """Row/col offset of the DataArray inside its source file (it may be a slice of it)."""
    from geo2map.scene import open_dataset

    with open_dataset(path) as ds:
        file_t = ds.transform
    t = da.rio.transform()
    if not np.allclose([t.a, t.e], [file_t.a, file_t.e]):
        raise Geo2MapError("the DataArray was resampled after opening: translate the file instead")
    col, row = ~file_t @ (t.c, t.f)
    if not (np.isclose(col, round(col)) and np.isclose(row, round(row))):
        raise Geo2MapError(
            "the DataArray is not aligned with its file's pixels: translate the file instead"
        )
    return round(row), round(col)


def translate_array(
    da: xr.DataArray, options: TranslateOptions | None = None, **kwargs: Any
) -> xr.Dataset:
    """Lazily translate a DataArray opened with ``rioxarray.open_rasterio`` (possibly sliced
    in x/y or band). Returns a Dataset with ``render`` (band, y, x) and ``mask`` (y, x),
    dask-backed on the same grid and CRS (or on the model grid with output_grid="model")."""
    options = merge_options(options, kwargs)
    path = da.encoding.get("source")
    if not path:
        raise Geo2MapError(
            "translate_array needs a DataArray opened from a raster file "
            "(rioxarray.open_rasterio); write in-memory arrays with da.rio.to_raster(path) first"
        )
    card = checked_card(options.model_source)
    bands = options.bands
    if bands is None and "band" in da.coords and da.sizes.get("band") is not None:
        chosen = [int(b) for b in np.atleast_1d(da["band"].values)]
        bands = chosen if len(chosen) in (1, len(card.input.bands)) else None
    scene = inspect_scene(path, len(card.input.bands), bands, options.scale)
    scene = replace(
        scene,
        width=da.rio.width,
        height=da.rio.height,
        transform=da.rio.transform(),
        window=_window_in_file(da, path),
    )
    plan = plan_for(scene, options, card)
    data = scene_array(plan, options.block_size)
    profile, _ = output_profile(plan)
    transform = profile.get("transform")
    ys = transform.f + transform.e * (np.arange(plan.output_height) + 0.5)
    xs = transform.c + transform.a * (np.arange(plan.output_width) + 0.5)
    coords = {"y": ys, "x": xs}
    result = xr.Dataset(
        {
            "render": (("band", "y", "x"), data[:3]),
            "mask": (("y", "x"), data[3]),
        },
        coords={**coords, "band": [1, 2, 3]},
    )
    result["mask"].attrs.update(
        _FillValue=MASK_NODATA,
        classes=",".join(card.class_names),
        flag_values=list(range(len(card.classes))),
        flag_meanings=" ".join(card.class_names),
    )
    result = result.rio.write_crs(scene.crs).rio.write_transform(transform)
    return result.rio.set_spatial_dims(x_dim="x", y_dim="y")
