"""GDAL settings geo2map runs under: a bounded block cache, for every read and write.

GDAL's block cache defaults to 5 % of RAM and fills with decoded source tiles and written
blocks on large scenes; 64 MB is plenty for tiles that are read or written once. The cap is
set process-wide when a scene is first opened (:func:`cap_gdal_cache`), because freed cache
blocks stay in the process: the decimated valid-pixel check of a 16k scene, run before any
``rasterio.Env``, filled ~780 MB of cache that the run then kept (docs/benchmarks.md,
session 6). :func:`gdal_env` sets it too, and the same cap inside a ``with``.
"""

from __future__ import annotations

import rasterio
from rasterio.env import set_gdal_config

# In BYTES: rasterio hands an int straight to GDALSetCacheMax64 (64 would mean 64 bytes,
# i.e. no cache at all, unlike the GDAL_CACHEMAX environment variable, which reads as MB).
GDAL_CACHE_BYTES = 64 * 2**20
GDAL_OPTIONS = {"GDAL_CACHEMAX": GDAL_CACHE_BYTES}


def gdal_env() -> rasterio.Env:
    # The cache size is process-wide in GDAL: a thread leaving its Env restores the size it
    # found, so without the process-wide cap a worker thread's exit would uncap the cache
    # under another thread still reading.
    cap_gdal_cache()
    return rasterio.Env(**GDAL_OPTIONS)


def cap_gdal_cache() -> None:
    """Cap GDAL's block cache for the whole process (outside any ``rasterio.Env`` too)."""
    set_gdal_config("GDAL_CACHEMAX", GDAL_CACHE_BYTES)
