"""End to end on real scenes: grids preserved, nodata respected, results independent of
chunking and scheduler, tiles blend seamlessly, outputs are valid COGs."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rioxarray
from rasterio.control import GroundControlPoint
from rasterio.errors import NotGeoreferencedWarning
from rio_cogeo.cogeo import cog_validate

import geo2map
from geo2map.errors import Geo2MapError
from geo2map.mosaic import repeated_vrt

# With a 0.6 m model these are more than 8x coarser (5 m, ~8 m, 300 m): refused with the GSD message.
TOO_COARSE_FOR_0_6M = {"landsat", "naip", "rgbn", "sentinel2"}


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read()


def outputs(out: Path, name: str) -> tuple[Path, Path, Path]:
    return out / f"{name}_render.tif", out / f"{name}_mask.tif", out / f"{name}_quicklook.png"


def test_every_scene_translates_on_its_grid_or_refuses_its_gsd(scenes, models, tmp_path):
    tifs = sorted(scenes.glob("*.tif"))
    assert len(tifs) >= 17
    for tif in tifs:
        out = tmp_path / tif.stem
        try:
            geo2map.translate(tif, out, model=models(0.6), chip_size=256, overlap=32)
        except Geo2MapError as e:
            assert tif.stem.split("-")[0] in TOO_COARSE_FOR_0_6M, f"{tif.name}: {e}"
            assert "--force-gsd" in str(e)
            assert not out.exists() or not any(out.iterdir())
            continue
        assert tif.stem.split("-")[0] not in TOO_COARSE_FOR_0_6M
        render, mask, quicklook = outputs(out, tif.stem)
        with rasterio.open(tif) as src, rasterio.open(render) as r, rasterio.open(mask) as m:
            for ds in (r, m):
                assert (ds.crs, ds.transform, ds.width, ds.height) == (
                    src.crs, src.transform, src.width, src.height,
                )  # fmt: skip
            assert r.count == 3 and m.count == 1 and m.nodata == 255
            assert set(np.unique(m.read(1))) <= {0, 1, 2, 3, 4, 255}
            assert m.colormap(1)[1][:3] == (200, 80, 60)
            assert m.tags()["CLASSES"] == "other,building,vegetation,water,road"
        assert quicklook.stat().st_size > 0


@pytest.mark.parametrize(
    ("scene", "gsd"),
    [("rgbn-5m-epsg32618.tif", 5.0), ("sentinel2-float64-epsg4326.tif", 8.0),
     ("spacenet-atlanta-pan-uint16-epsg32616.tif", 0.5)],
)  # fmt: skip
def test_band_selection_dtypes_and_geographic_crs_end_to_end(scenes, models, tmp_path, scene, gsd):
    summary = geo2map.translate(
        scenes / scene, tmp_path, model=models(gsd), chip_size=128, overlap=16
    )
    render, mask, _ = outputs(tmp_path, Path(scene).stem)
    with rasterio.open(scenes / scene) as src, rasterio.open(mask) as m:
        assert (m.crs, m.transform, m.shape) == (src.crs, src.transform, src.shape)
        valid = src.dataset_mask() > 0
        assert ((m.read(1) != 255) == valid).all()
    assert summary[0].chips > 0


@pytest.mark.parametrize(
    "scene", ["neon-osbs-10cm-epsg32617.tif", "aerial-15cm-rgba.tif", "aerial-15cm-rgb-mask.tif"]
)
def test_nodata_alpha_and_internal_masks_give_nodata_out(scenes, models, tmp_path, scene):
    geo2map.translate(scenes / scene, tmp_path, model=models(0.6), chip_size=64, overlap=16)
    render, mask, _ = outputs(tmp_path, Path(scene).stem)
    with rasterio.open(scenes / scene) as src, rasterio.open(mask) as m, rasterio.open(render) as r:
        invalid_in = src.dataset_mask() == 0
        assert invalid_in.any(), "the fixture scene should have invalid pixels"
        assert ((m.read(1) == 255) == invalid_in).all()
        assert ((r.dataset_mask() == 0) == invalid_in).all()


def test_render_mask_band_only_when_there_is_nodata_and_it_covers_earlier_blocks(
    scenes, models, tmp_path
):
    # Nodata only in the last of four 512 px blocks: the blocks written before the first
    # nodata pixel must still read as valid once the render gets its mask band.
    full = scenes / "aerial-0.6m-epsg3857.tif"
    with rasterio.open(full) as src:
        profile, data = src.profile, src.read()
    profile.update(driver="GTiff", compress="deflate", photometric="rgb", tiled=True)
    valid_in = np.full(data.shape[1:], 255, np.uint8)
    valid_in[700:, 600:] = 0
    collared = tmp_path / "collared.tif"
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(collared, "w", **profile) as d:
        d.write(data)
        d.write_mask(valid_in)
    for scene in (collared, full):
        geo2map.translate(scene, tmp_path / "out", model=models(0.6), chip_size=128, overlap=32,
                          block_size=512)  # fmt: skip
    with rasterio.open(outputs(tmp_path / "out", collared.stem)[0]) as r:
        assert r.mask_flag_enums[0] == [rasterio.enums.MaskFlags.per_dataset]
        assert np.array_equal(r.dataset_mask() > 0, valid_in > 0)
    with rasterio.open(outputs(tmp_path / "out", full.stem)[0]) as r:
        assert r.mask_flag_enums[0] == [rasterio.enums.MaskFlags.all_valid]


def test_all_nodata_chips_are_skipped(scenes, models, tmp_path):
    # The Landsat collar: with small chips, whole chips fall in nodata.
    [s] = geo2map.translate(scenes / "landsat-rgb-300m-epsg32618.tif", tmp_path, model=models(300.0),
                            chip_size=64, overlap=8)  # fmt: skip
    assert s.chips_skipped > 0 and s.chips > 0
    with rasterio.open(scenes / "landsat-rgb-300m-epsg32618.tif") as src:
        invalid_in = src.dataset_mask() == 0
    mask = read(tmp_path / "landsat-rgb-300m-epsg32618_mask.tif")[0]
    assert ((mask == 255) == invalid_in).all()


def test_a_collar_that_empties_whole_strips_of_blocks_translates(scenes, models, tmp_path):
    # Rows below 300 are nodata: every chip touching the lower blocks is skipped, so those
    # blocks have no chip output at all (they crashed in the blend) and must come out nodata.
    with rasterio.open(scenes / "aerial-0.6m-epsg3857.tif") as src:
        profile, data = src.profile, src.read()
    profile.update(driver="GTiff", compress="deflate", photometric="rgb", tiled=True)
    valid_in = np.zeros(data.shape[1:], np.uint8)
    valid_in[:300] = 255
    collared = tmp_path / "collar.tif"
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(collared, "w", **profile) as d:
        d.write(data)
        d.write_mask(valid_in)
    for output_grid in ("input", "model"):
        out = tmp_path / output_grid
        [s] = geo2map.translate(collared, out, model=models(0.5), chip_size=128, overlap=32,
                                block_size=512, output_grid=output_grid)  # fmt: skip
        assert s.chips_skipped > 0
        mask = read(outputs(out, "collar")[1])[0]
        if output_grid == "input":
            assert ((mask == 255) == (valid_in == 0)).all()
        assert (mask[-256:] == 255).all() and (mask[:100] != 255).all()
        written = {p.name for p in out.iterdir()}  # no hidden parts left behind
        assert written == {p.name for p in outputs(out, "collar")} | {"collar_mask.qml"}


def test_nan_in_a_float_scene_without_nodata_is_nodata(scenes, models, tmp_path):
    with rasterio.open(scenes / "sentinel2-float64-epsg4326.tif") as src:
        profile, data = src.profile, src.read()
    assert profile["nodata"] is None
    data[:, 50:120, 100:200] = np.nan  # a cloud-masked patch, as float products write them
    data[1, 10:20, 10:20] = np.nan  # NaN in one used band only
    nan_scene = tmp_path / "nan.tif"
    with rasterio.open(nan_scene, "w", **profile) as dst:
        dst.write(data)
    for output_grid in ("input", "model"):
        out = tmp_path / output_grid
        geo2map.translate(nan_scene, out, model=models(8.0), chip_size=64, overlap=8,
                          output_grid=output_grid)  # fmt: skip
        mask, render = read(outputs(out, "nan")[1])[0], read(outputs(out, "nan")[0])
        if output_grid == "input":
            assert ((mask == 255) == np.isnan(data[:3]).any(axis=0)).all()
        assert (mask != 255).mean() > 0.5 and (mask == 255).any()
        assert set(np.unique(mask)) <= {0, 1, 2, 3, 4, 255}
        assert (render[:, mask == 255] == 0).all()


def test_a_disk_too_small_is_refused_before_and_a_full_disk_leaves_nothing(
    scenes, models, tmp_path, monkeypatch
):
    import errno
    import shutil

    import geo2map.disk_space
    import geo2map.parts

    scene = scenes / "aerial-0.6m-epsg3857.tif"  # 1024 x 1024: four 512 px blocks
    opts = dict(model=models(0.6), chip_size=128, overlap=16, block_size=512)
    out = tmp_path / "small"
    usage = shutil.disk_usage(tmp_path)
    with monkeypatch.context() as m:
        m.setattr(geo2map.disk_space.shutil, "disk_usage", lambda _: usage._replace(free=10**6))
        with pytest.raises(Geo2MapError, match="0.00 GB free, and this scene needs about 0.01 GB"):
            geo2map.translate(scene, out, **opts)
    assert list(out.iterdir()) == []

    real_save = np.save
    calls = []

    def save_until_the_disk_fills(f, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            f.write(b"half a block")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(f, *args, **kwargs)

    out = tmp_path / "full"
    monkeypatch.setattr(geo2map.parts.np, "save", save_until_the_disk_fills)
    with pytest.raises(Geo2MapError, match="the disk filled up while this scene was written"):
        geo2map.translate(scene, out, **opts)
    assert len(calls) == 3
    assert [p.name for p in out.iterdir()] == []  # no COG, part, temporary or lock


def test_planning_a_huge_vrt_does_not_scan_it(scenes, models, tmp_path):
    # 102,400^2 px in 10,000 sources: scanning it for a valid pixel took ~50 s here, and
    # time grows with the pixels (days for a 10^7-px-wide VRT).
    from geo2map.models.io import load_card
    from geo2map.options import TranslateOptions
    from geo2map.plan import plan_scene

    vrt = repeated_vrt(scenes / "aerial-0.6m-epsg3857.tif", 100, tmp_path / "huge.vrt")
    _, card = load_card(models(0.6))
    start = time.perf_counter()
    plan = plan_scene(vrt, TranslateOptions(model=models(0.6)), card)
    assert time.perf_counter() - start < 15
    assert plan.scene.height == 102_400 and len(plan.chips.chips) > 40_000


@pytest.mark.parametrize(
    "name",
    ["dutch-aerial-25cm-epsg28992.tif", "aerial-0.6m-epsg3857.tif"],
    ids=["resampled-0.25m-to-0.6m-and-back", "at-model-gsd"],
)
def test_same_arrays_for_any_chunking_and_scheduler(scenes, models, tmp_path, name):
    scene = scenes / name
    runs = {
        "threads-1024": dict(block_size=1024, scheduler="threads"),
        "threads-512": dict(block_size=512, scheduler="threads", workers=2),
        "processes-512": dict(block_size=512, scheduler="processes", workers=2),
        "sync-1024": dict(block_size=1024, scheduler="sync"),
    }
    arrays = {}
    for name, opts in runs.items():
        geo2map.translate(scene, tmp_path / name, model=models(0.6), chip_size=128, overlap=32,
                          batch_size=4, **opts)  # fmt: skip
        render, mask, _ = outputs(tmp_path / name, scene.stem)
        arrays[name] = (read(render), read(mask))
    ref = arrays.pop("threads-1024")
    for name, (render, mask) in arrays.items():
        assert np.array_equal(render, ref[0]), name
        assert np.array_equal(mask, ref[1]), name
    lazy = geo2map.translate_array(rioxarray.open_rasterio(scene, chunks=True), model=models(0.6),
                                   chip_size=128, overlap=32, batch_size=4, block_size=512)  # fmt: skip
    assert np.array_equal(lazy.render.values, ref[0])
    assert np.array_equal(lazy.mask.values, ref[1][0])


def test_chips_carried_across_groups_are_cut_down_and_blend_the_same(
    scenes, models, tmp_path, monkeypatch
):
    """A scene six blocks wide is computed in two groups per strip: a chip on a group's
    lower right corner is carried to the next group and the next strip, then cut to the rows
    the next strip needs. The result must equal the lazy array's, which carries nothing."""
    from geo2map.mosaic import repeated_vrt
    from geo2map.tiling import ChipPart

    scene = repeated_vrt(scenes / "aerial-0.6m-epsg3857.tif", 3, tmp_path / "x3.vrt")
    recuts = []
    crop = ChipPart.crop.__func__

    def spy(cls, out, rows, cols):
        part = crop(cls, out, rows, cols)
        if isinstance(out, ChipPart) and part is not out:
            recuts.append(out.data.size - part.data.size)
        return part

    monkeypatch.setattr(ChipPart, "crop", classmethod(spy))
    opts = dict(model=models(0.6), chip_size=256, overlap=32, batch_size=4, block_size=512)
    geo2map.translate(scene, tmp_path / "out", workers=1, **opts)
    assert recuts and all(smaller > 0 for smaller in recuts)
    render, mask, _ = outputs(tmp_path / "out", scene.stem)
    lazy = geo2map.translate_array(rioxarray.open_rasterio(scene, chunks=True), **opts)
    assert np.array_equal(read(render), lazy.render.values)
    assert np.array_equal(read(mask)[0], lazy.mask.values)


def test_each_task_computes_chips_for_one_group_only(scenes, models, tmp_path, monkeypatch):
    """A chip is computed by the first group of blocks that needs it, never earlier: no task
    mixes chips for two groups (batches in raster order did, and the chips for the later
    group were then held whole until it ran). Every chip is computed once."""
    from geo2map import engine, schedule
    from geo2map.models.io import load_card
    from geo2map.mosaic import repeated_vrt
    from geo2map.options import TranslateOptions
    from geo2map.plan import plan_scene
    from geo2map.tiling import blocks

    scene = repeated_vrt(scenes / "aerial-0.6m-epsg3857.tif", 3, tmp_path / "x3.vrt")
    planned, read = [], []
    group_batches, read_window = schedule.group_batches, engine.read_model_window

    def plan_spy(touching, batch_size):
        batches = group_batches(touching, batch_size)
        planned.extend(batches)
        return batches

    def read_spy(ds, grid, row, col, height, width):
        read.append((row, col))  # tasks run in this process; their modules are shared
        return read_window(ds, grid, row, col, height, width)

    monkeypatch.setattr(schedule, "group_batches", plan_spy)
    monkeypatch.setattr(engine, "read_model_window", read_spy)
    opts = dict(model=models(0.6), chip_size=256, overlap=32, batch_size=4, block_size=512)
    geo2map.translate(scene, tmp_path / "out", workers=1, **opts)

    plan = plan_scene(scene, TranslateOptions(**opts), load_card(opts["model"])[1])
    todo = [blk for strip in blocks(plan.output_height, plan.output_width, 512) for blk in strip]
    groups = schedule.block_groups(todo, group_size=4)
    assert len(groups) > len({blk.row for blk in todo})  # strips of two groups: the case
    first_group = {}
    for g, group in enumerate(groups):
        for blk in group:
            for chip in plan.chips_for(blk):
                first_group.setdefault(chip.index, g)
    assert sorted(c for batch in planned for c in batch) == sorted(first_group)
    assert all(len({first_group[c] for c in batch}) == 1 for batch in planned)
    assert all(0 < len(batch) <= 4 for batch in planned)
    chips = plan.chips.chips
    assert sorted(read) == sorted((chips[c].row, chips[c].col) for batch in planned for c in batch)


def test_tiled_matches_whole_image_inference_away_from_the_border(scenes, models, tmp_path):
    scene = scenes / "dutch-aerial-25cm-epsg28992.tif"
    opts = dict(model=models(0.25), output_grid="model")
    geo2map.translate(scene, tmp_path / "whole", chip_size=1000 + 8 - 1000 % 8, overlap=0, **opts)
    geo2map.translate(scene, tmp_path / "tiled", chip_size=256, overlap=64, **opts)
    whole = read(outputs(tmp_path / "whole", scene.stem)[0]).astype(int)
    tiled = read(outputs(tmp_path / "tiled", scene.stem)[0]).astype(int)
    inner = (slice(None), slice(32, -32), slice(32, -32))
    diff = np.abs(whole[inner] - tiled[inner])
    # Measured with this test model (README, "Seams"): overlap 64 -> mean 0.012, max 1;
    # without overlap the same scene gives mean 0.17, p99.9 17, max 45: this test sees seams.
    assert diff.mean() < 0.5
    assert np.percentile(diff, 99.9) <= 3


def test_quadrants_match_the_full_scene_away_from_their_seams(scenes, models, tmp_path):
    model = models(300.0)
    opts = dict(model=model, chip_size=128, overlap=32, force_gsd=True)
    geo2map.translate(scenes / "landsat-rgb-300m-epsg32618.tif", tmp_path / "full", **opts)
    quads = [scenes / f"landsat-rgb-quad{i}.tif" for i in range(1, 5)]
    geo2map.translate(quads, tmp_path / "quads", **opts)
    full = read(outputs(tmp_path / "full", "landsat-rgb-300m-epsg32618")[0]).astype(int)
    mosaic = np.full_like(full, -1)
    with rasterio.open(scenes / "landsat-rgb-300m-epsg32618.tif") as src:
        inv = ~src.transform
        for q in quads:
            with rasterio.open(q) as ds:
                col, row = (round(v) for v in inv @ (ds.transform.c, ds.transform.f))
                mosaic[:, row : row + ds.height, col : col + ds.width] = read(
                    outputs(tmp_path / "quads", q.stem)[0]
                )
    keep = np.ones(full.shape[1:], bool)
    keep[399 - 48 : 399 + 48, :] = False  # the seams between quadrants, +- the blend context
    keep[:, 399 - 48 : 399 + 48] = False
    diff = np.abs(full - mosaic)[:, keep]
    assert (mosaic >= 0).all()
    assert diff.mean() < 0.5 and np.percentile(diff, 99.9) <= 3


@pytest.mark.parametrize("compress", [None, "deflate"])
def test_outputs_are_valid_cogs_with_palette_and_overviews(scenes, models, tmp_path, compress):
    scene = scenes / "aerial-0.6m-epsg3857.tif"
    codec = {"compress": compress} if compress else {}  # None: the default, ZSTD
    geo2map.translate(scene, tmp_path, model=models(0.6), chip_size=256, overlap=32, **codec)
    render, mask, _ = outputs(tmp_path, scene.stem)
    for path in (render, mask):
        valid, errors, _ = cog_validate(str(path))
        assert valid, errors
        with rasterio.open(path) as ds:
            assert ds.overviews(1), f"{path.name} has no overviews"
            assert ds.profile["compress"] == (compress or "zstd") and ds.profile["tiled"]
    gdalinfo = shutil.which("gdalinfo")
    assert gdalinfo, "gdalinfo (Debian gdal-bin) is needed: .ci/run installs it"
    info = subprocess.run([gdalinfo, str(mask)], capture_output=True, text=True, check=True).stdout
    assert "Color Table" in info and "Overviews" in info and "LAYOUT=COG" in info
    assert "CLASS_1=building" in info


def test_gcp_georeferenced_raster_keeps_its_gcps(scenes, models, tmp_path):
    with rasterio.open(scenes / "dutch-aerial-25cm-epsg28992.tif") as src:
        data = src.read(window=((0, 300), (0, 400)))
        t, crs = src.transform, src.crs
    corners = [(0, 0), (0, 400), (300, 0), (300, 400)]
    gcps = [
        GroundControlPoint(row=r, col=c, x=(t @ (c, r))[0], y=(t @ (c, r))[1]) for r, c in corners
    ]
    path = tmp_path / "gcp-scene.tif"
    with rasterio.open(
        path, "w", driver="GTiff", width=400, height=300, count=3, dtype="uint8"
    ) as dst:
        dst.write(data)
        dst.gcps = (gcps, crs)
    with warnings.catch_warnings():  # a successful run prints no rasterio warning
        warnings.simplefilter("error", NotGeoreferencedWarning)
        geo2map.translate(path, tmp_path / "out", model=models(0.6), chip_size=128, overlap=16)
    for out in outputs(tmp_path / "out", "gcp-scene")[:2]:
        with rasterio.open(out) as ds:
            got, got_crs = ds.gcps
            assert got_crs == crs and ds.shape == (300, 400)
            assert [(g.row, g.col, g.x, g.y) for g in got] == [
                (g.row, g.col, g.x, g.y) for g in gcps
            ]


def test_existing_outputs_need_overwrite(scenes, models, tmp_path):
    scene = scenes / "neon-osbs-10cm-epsg32617.tif"
    geo2map.translate(scene, tmp_path, model=models(0.6), chip_size=64, overlap=16)
    before = outputs(tmp_path, scene.stem)[1].read_bytes()
    with pytest.raises(Geo2MapError, match="already exists.*--overwrite"):
        geo2map.translate(scene, tmp_path, model=models(0.6), chip_size=64, overlap=16)
    assert outputs(tmp_path, scene.stem)[1].read_bytes() == before
    geo2map.translate(scene, tmp_path, model=models(0.6), chip_size=64, overlap=8, overwrite=True)


def test_a_failure_midway_leaves_no_output_and_the_rerun_resumes(
    scenes, models, tmp_path, monkeypatch
):
    import geo2map.engine as engine

    scene = scenes / "aerial-0.6m-epsg3857.tif"
    opts = dict(model=models(0.6), chip_size=128, overlap=16, block_size=512, scheduler="sync")
    calls = {"n": 0}
    real = engine.blend_block

    def flaky(*args):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("disk on fire")
        return real(*args)

    monkeypatch.setattr(engine, "blend_block", flaky)
    with pytest.raises(RuntimeError, match="disk on fire"):
        geo2map.translate(scene, tmp_path / "out", **opts)
    # Nothing under a final name; only the hidden folder of finished blocks, for resuming.
    assert [p.name for p in (tmp_path / "out").iterdir()] == [f".{scene.stem}.parts"]
    monkeypatch.setattr(engine, "blend_block", real)
    [resumed] = geo2map.translate(scene, tmp_path / "out", **opts)
    assert resumed.blocks_resumed == 2
    assert [p.name for p in (tmp_path / "out").iterdir() if p.name.startswith(".")] == []
    geo2map.translate(scene, tmp_path / "fresh", **opts)
    for made, ref in zip(
        outputs(tmp_path / "out", scene.stem)[:2],
        outputs(tmp_path / "fresh", scene.stem)[:2],
        strict=True,
    ):
        assert np.array_equal(read(made), read(ref))


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc malloc settings")
def test_malloc_settings_leave_a_users_setting_alone():
    """A MALLOC_* variable the process started with stands; one that dask's nanny put into
    os.environ later (it does, when it starts workers) does not count as the user's."""
    from geo2map.execution import MALLOC_SETTINGS

    code = (
        "import os; from geo2map.execution import tune_malloc; "
        "os.environ['MALLOC_TRIM_THRESHOLD_'] = '65536'; print(','.join(tune_malloc()))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    run = subprocess.run([sys.executable, "-c", code], env={**env, "MALLOC_ARENA_MAX": "4"},
                         capture_output=True, text=True, check=True)  # fmt: skip
    assert sorted(run.stdout.strip().split(",")) == sorted(
        set(MALLOC_SETTINGS) - {"MALLOC_ARENA_MAX"}
    )


def test_chips_are_packed_a_micro_batch_at_a_time_into_arrays_of_their_own(models):
    from geo2map.tiling import pack_chip_output
    from geo2map.translator import Translator

    translator = Translator.load(models(0.6))
    rng = np.random.default_rng(0)
    chips = [rng.random((3, 64, 64), dtype=np.float32) for _ in range(5)]  # odd: a last short one
    packed = translator.predict_chips(chips)
    render, probs = translator.predict(np.stack(chips))
    assert len(packed) == 5
    for i, chip in enumerate(packed):
        assert np.array_equal(chip, pack_chip_output(render[i], probs[i]))
    # a chip carried to a later block must not keep the rest of its batch alive
    assert not any(np.shares_memory(a, b) for a in packed for b in packed if a is not b)


def test_a_chips_output_does_not_depend_on_the_chips_batched_with_it(models):
    """Tasks batch the chips each group of blocks needs first, so which chips share a task
    depends on the block size; the outputs must not. On a GPU a task's chips are one
    forward, padded with blank chips to the batch size (one shape, one set of kernels):
    run here with the GPU's batching on the CPU. A model whose layers mix the batch
    (batch norm in training mode) shows that the comparison can fail."""
    import copy
    from dataclasses import replace

    from geo2map.translator import Translator

    translator = Translator.load(models(0.6), "cpu", "fp32")
    rng = np.random.default_rng(1)
    a, b, c = (rng.random((3, 64, 64), dtype=np.float32) for _ in range(3))
    assert np.array_equal(translator.predict_chips([c, a, b])[1], translator.predict_chips([a])[0])

    gpu_batching = replace(translator, chips_per_forward=8)
    sizes: list[int] = []
    gpu_batching.model.register_forward_pre_hook(lambda _m, args: sizes.append(len(args[0])))
    alone = gpu_batching.predict_chips([a], batch_size=4)[0]
    with_mates = gpu_batching.predict_chips([c, a, b], batch_size=4)
    assert sizes == [4, 4]  # both padded to the batch size
    assert len(with_mates) == 3  # the outputs of the real chips only
    assert np.array_equal(with_mates[1], alone)

    mixing = replace(gpu_batching, model=copy.deepcopy(gpu_batching.model).train())
    assert not np.array_equal(
        mixing.predict_chips([c, a, b], batch_size=4)[1], mixing.predict_chips([a], batch_size=4)[0]
    )
