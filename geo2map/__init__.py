"""geo2map: georeferenced imagery -> map renders and land-cover masks as COGs.

``geo2map.translate`` (files -> COGs), ``geo2map.translate_array`` (a rioxarray DataArray ->
a lazy Dataset) and ``geo2map.TranslateOptions`` are imported on first use, so that
``import geo2map`` stays light (no torch, no dask) for the command line's help.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from geo2map.options import TranslateOptions
    from geo2map.pipeline import translate
    from geo2map.xarray_api import translate_array

__version__ = "0.1.0"
__all__ = ["TranslateOptions", "translate", "translate_array"]

_HOMES = {
    "translate": "geo2map.pipeline",
    "translate_array": "geo2map.xarray_api",
    "TranslateOptions": "geo2map.options",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'geo2map' has no attribute {name!r}")
