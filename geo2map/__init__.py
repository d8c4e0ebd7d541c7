"""geo2map: georeferenced imagery -> map renders and land-cover masks as COGs."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["translate", "translate_array"]


def translate(*args: Any, **kwargs: Any) -> Any:
    """Translate a GeoTIFF into render and mask COGs: see :func:`geo2map.pipeline.translate`."""
    from geo2map.pipeline import translate as _translate

    return _translate(*args, **kwargs)


def translate_array(*args: Any, **kwargs: Any) -> Any:
    """Lazy translation of a rioxarray DataArray: see :func:`geo2map.xarray_api.translate_array`."""
    from geo2map.xarray_api import translate_array as _translate_array

    return _translate_array(*args, **kwargs)
