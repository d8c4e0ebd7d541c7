"""Band, validity, GSD and scaling policies, decided once per scene."""

import numpy as np
import pytest
import rasterio

from geo2map.errors import Geo2MapError
from geo2map.scene import inspect_scene, model_grid_shape


def test_rgbn_uses_red_green_blue_and_drops_nir(scenes):
    scene = inspect_scene(scenes / "rgbn-5m-epsg32618.tif")
    assert scene.bands == (1, 2, 3)


def test_alpha_band_is_not_a_colour(scenes):
    scene = inspect_scene(scenes / "aerial-15cm-rgba.tif")
    assert scene.bands == (1, 2, 3)


def test_single_band_is_grey_repeated(scenes):
    scene = inspect_scene(scenes / "spacenet-atlanta-pan-uint16-epsg32616.tif")
    assert scene.bands == (1, 1, 1)


def test_explicit_bands_win_and_are_checked(scenes):
    assert inspect_scene(scenes / "rgbn-5m-epsg32618.tif", bands=[4, 1, 2]).bands == (4, 1, 2)
    with pytest.raises(Geo2MapError, match="does not fit a raster of 4 bands"):
        inspect_scene(scenes / "rgbn-5m-epsg32618.tif", bands=[5, 1, 2])


def test_gsd_is_in_metres_for_geographic_crs(scenes):
    scene = inspect_scene(scenes / "sentinel2-float64-epsg4326.tif")
    # 9e-5 degree pixels at 53.4 N: ~10 m north-south, ~6 m east-west; the mean is ~8 m.
    assert 7.5 < scene.gsd_m < 8.5


def test_gsd_of_projected_scenes(scenes):
    assert inspect_scene(scenes / "dutch-aerial-25cm-epsg28992.tif").gsd_m == pytest.approx(0.25)
    assert inspect_scene(scenes / "landsat-rgb-quad1.tif").gsd_m == pytest.approx(300.04, rel=1e-3)


def test_far_gsd_is_refused_unless_forced(scenes):
    scene = inspect_scene(scenes / "landsat-rgb-300m-epsg32618.tif")
    with pytest.raises(Geo2MapError, match=r"more than 8x apart.*--force-gsd"):
        model_grid_shape(scene, 0.6, force=False)
    assert model_grid_shape(scene, 600.0, force=False) == (359, 396)


def test_near_gsd_is_used_as_is(scenes):
    scene = inspect_scene(scenes / "aerial-0.6m-epsg3857.tif")
    assert model_grid_shape(scene, 0.6, force=False) == (scene.height, scene.width)


def test_uint16_scaling_is_per_scene_percentiles(scenes):
    path = scenes / "spacenet-atlanta-pan-uint16-epsg32616.tif"
    scene = inspect_scene(path)
    assert scene.scaling.source.startswith("per-scene")
    with rasterio.open(path) as ds:
        values = ds.read(1, masked=True).compressed()
    low, high = np.percentile(values, [2, 98])
    # From a decimated sample, so close to, not exactly, the full-resolution percentiles.
    assert abs(scene.scaling.low - low) < 0.05 * (high - low)
    assert abs(scene.scaling.high - high) < 0.05 * (high - low)
    assert scene.scaling.high > 255  # genuinely 16-bit, not divided by 255 per chip


def test_uint8_scaling_is_fixed(scenes):
    assert inspect_scene(scenes / "neon-osbs-10cm-epsg32617.tif").scaling.source == "fixed uint8"


def test_plain_image_points_to_translate_image():
    from geo2map.catalog import data_root

    png = data_root() / "masks" / "landcoverai" / "img" / "0000.png"
    with pytest.raises(Geo2MapError, match="translate-image"):
        inspect_scene(png)


def test_a_job_caps_gdal_block_cache_throughout_and_gives_the_users_settings_back(scenes):
    # GDAL's default cache is 5 % of RAM; a 16k scene's valid-pixel check, run outside any
    # rasterio.Env, used to fill ~780 MB of it, which the run then kept
    import torch
    from rasterio.env import get_gdal_config, set_gdal_config

    from geo2map.execution import job_settings
    from geo2map.gdal_settings import gdal_env

    set_gdal_config("GDAL_CACHEMAX", 512 * 2**20)
    threads = torch.get_num_threads()
    with job_settings():
        inspect_scene(scenes / "aerial-15cm-rgba.tif")
        assert get_gdal_config("GDAL_CACHEMAX") == 64 * 2**20  # bytes, not 64 bytes
        with gdal_env():
            assert get_gdal_config("GDAL_CACHEMAX") == 64 * 2**20
        # the size is process-wide in GDAL: leaving one thread's Env must not uncap another's
        assert get_gdal_config("GDAL_CACHEMAX") == 64 * 2**20
        torch.set_num_threads(1)  # as a task does
    # a notebook that ran a job keeps its own settings
    assert get_gdal_config("GDAL_CACHEMAX") == 512 * 2**20
    assert torch.get_num_threads() == threads
