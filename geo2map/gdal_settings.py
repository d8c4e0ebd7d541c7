"""GDAL settings geo2map runs under: a bounded block cache, for every read and write.

GDAL's block cache defaults to 5 % of RAM and fills with decoded source tiles and written
blocks on large scenes; 64 MB is plenty for tiles that are read or written once. The cap is
set process-wide for the whole of a job, from before its first read
(:func:`cap_gdal_cache`, called by ``execution.job_settings``, which puts the old size back
after the job), because freed cache blocks stay in the process: the decimated valid-pixel
check of a 16k scene, run before any ``rasterio.Env``, filled ~780 MB of cache that the run
then kept. :func:`gdal_env` sets the same cap inside a ``with``.
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
    # found, which is the job's cap while a job runs (a lazy translate_array computed by the
    # user's own scheduler runs without one: the user's process, the user's settings).
    return rasterio.Env(**GDAL_OPTIONS)


def cap_gdal_cache() -> None:
    """Cap GDAL's block cache for the whole process (outside any ``rasterio.Env`` too)."""
    set_gdal_config("GDAL_CACHEMAX", GDAL_CACHE_BYTES)
