"""The command line: happy paths print a summary; bad input gets one line, exit 2, no files."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
from PIL import Image
from typer.testing import CliRunner

from geo2map.catalog import data_root
from geo2map.cli import app
from geo2map.mosaic import repeated_vrt

runner = CliRunner()
DUTCH = "dutch-aerial-25cm-epsg28992.tif"


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def assert_clean_failure(result, message: str, out: Path | None = None) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr  # one line: not even a blank one before it
    assert message in lines[0], lines[0]
    if out is not None and out.exists():
        assert list(out.iterdir()) == [], "a failed run left files behind"


def test_translate_prints_a_summary_and_writes_cogs(scenes, models, tmp_path):
    result = run("translate", scenes / DUTCH, "--out", tmp_path, "--model", models(0.6),
                 "--chip-size", "128", "--overlap", "16")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "MP/s" in result.stdout and "skipped" in result.stdout
    assert "dutch-aerial-25cm-epsg28992.tif" in result.stdout  # scene names are never cut
    assert (tmp_path / "dutch-aerial-25cm-epsg28992_render.tif").is_file()


def test_catalog_names_are_inputs(models, tmp_path):
    result = run("translate", "neon-osbs-10cm", "--out", tmp_path, "--model", models(0.6),
                 "--chip-size", "64", "--overlap", "8")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (tmp_path / "neon-osbs-10cm-epsg32617_mask.tif").is_file()
    result = run("translate", "aerial-0.6m", "--out", tmp_path, "--model", models(0.6),
                 "--chip-size", "256", "--overlap", "16")  # fmt: skip
    assert result.exit_code == 0, result.output  # a name with a dot is still a name
    assert (tmp_path / "aerial-0.6m-epsg3857_mask.tif").is_file()


def test_help_names_the_default_model():
    result = run("translate", "--help")
    assert result.exit_code == 0
    assert "Default model:" in result.stdout


@pytest.fixture()
def bad_inputs(tmp_path: Path, scenes: Path) -> dict[str, Path]:
    made = {}
    made["text"] = tmp_path / "notes.tif"
    made["text"].write_text("not a raster")
    made["png"] = data_root() / "masks" / "landcoverai" / "img" / "0000.png"
    # A container with two variables opens in GDAL as a dataset of zero bands.
    made["no-bands"] = tmp_path / "container.nc"
    grids = {v: (("y", "x"), np.zeros((4, 4), np.uint8)) for v in ("a", "b")}
    xr.Dataset(grids).to_netcdf(made["no-bands"], engine="scipy")
    with rasterio.open(scenes / DUTCH) as src:
        profile = {**src.profile, "count": 2}
        data = src.read([1, 2])
        two = tmp_path / "two-bands.tif"
        with rasterio.open(two, "w", **{**profile, "photometric": "MINISBLACK"}) as dst:
            dst.write(data)
            dst.colorinterp = [
                rasterio.enums.ColorInterp.gray,
                rasterio.enums.ColorInterp.undefined,
            ]
        made["two-bands"] = two
        empty = tmp_path / "all-nodata.tif"
        with rasterio.open(empty, "w", **{**src.profile, "nodata": 7}) as dst:
            dst.write(np.full((3, src.height, src.width), 7, np.uint8))
        made["all-nodata"] = empty
    # A colour-mapped raster: band values are indices into a 64-colour table.
    with rasterio.open(scenes / DUTCH) as src:
        rgb = Image.fromarray(src.read().transpose(1, 2, 0))
        profile = {**src.profile, "count": 1, "photometric": "palette", "compress": "deflate"}
    indexed = rgb.quantize(64)
    made["palette"] = tmp_path / "palette.tif"
    with rasterio.open(made["palette"], "w", **profile) as dst:
        dst.write(np.asarray(indexed)[None])
        table = np.asarray(indexed.getpalette()[: 64 * 3]).reshape(64, 3)
        dst.write_colormap(1, {i: (*map(int, c), 255) for i, c in enumerate(table)})
    # A CRS but no geotransform: nothing places the pixels on the ground.
    with rasterio.open(scenes / DUTCH) as src:
        profile = {k: v for k, v in src.profile.items() if k != "transform"}
        made["crs-no-transform"] = tmp_path / "crs-only.tif"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            with rasterio.open(made["crs-no-transform"], "w", **profile) as dst:
                dst.write(src.read())
    # A download cut short: the header and the first tiles are there, the rest is not.
    made["truncated"] = tmp_path / "truncated.tif"
    made["truncated"].write_bytes((scenes / DUTCH).read_bytes()[:70_000])
    # A VRT whose source file was moved away after it was built.
    source = tmp_path / "moved.tif"
    shutil.copy(scenes / "aerial-0.6m-epsg3857.tif", source)
    made["vrt-missing-source"] = repeated_vrt(source, 1, tmp_path / "mosaic.vrt")
    source.unlink()
    return made


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "no such file"),
        ("text", "not a raster GDAL can read"),
        ("png", "translate-image"),
        ("no-bands", "no bands"),
        ("two-bands", "--bands"),
        ("all-nodata", "every pixel is nodata"),
        ("palette", "gdal_translate -expand rgb palette.tif palette-rgb.tif"),
        ("crs-no-transform", "a CRS but no geotransform"),
        ("truncated", "truncated.tif: cannot read rows"),
        ("vrt-missing-source", "moved.tif: No such file or directory"),
    ],
)
def test_bad_scenes(bad_inputs, models, tmp_path, case, message):
    scene = bad_inputs.get(case, tmp_path / "missing.tif")
    out = tmp_path / "out"
    assert_clean_failure(
        run("translate", scene, "--out", out, "--model", models(0.6)), message, out
    )


def test_a_bad_scene_among_good_ones_stops_before_any_output(scenes, models, tmp_path):
    out = tmp_path / "out"
    result = run(
        "translate", scenes / DUTCH, tmp_path / "missing.tif", "--out", out, "--model", models(0.6)
    )
    assert_clean_failure(result, "no such file", out)


def test_unwritable_output_folder(scenes, models, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = run("translate", scenes / DUTCH, "--out", blocker / "out", "--model", models(0.6))
    assert_clean_failure(result, "cannot create output folder")


def test_existing_outputs_are_not_overwritten(scenes, models, tmp_path):
    args = (
        "translate",
        scenes / DUTCH,
        "--out",
        tmp_path,
        "--model",
        models(0.6),
        "--chip-size",
        "128",
    )
    assert run(*args).exit_code == 0
    mask = tmp_path / "dutch-aerial-25cm-epsg28992_mask.tif"
    before = mask.read_bytes()
    assert_clean_failure(run(*args), "--overwrite")
    assert mask.read_bytes() == before
    assert run(*args, "--overwrite").exit_code == 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (("--chip-size", "64", "--overlap", "64"), "overlap 64 must be smaller than chip size 64"),
        (("--chip-size", "100"), "not a multiple of 8"),
        (("--block-size", "700"), "multiple of 512"),
        (("--device", "tpu"), "--device 'tpu'"),
        (("--compress", "lzw"), "--compress 'lzw': Input should be 'zstd' or 'deflate'"),
        (("--scheduler", "tcp://127.0.0.1:notaport"), "is not a Dask scheduler address"),
        (("--chip-size", "100000"), "chip size 100000 is above the limit of 2048"),
        (("--batch-size", "1000"), "batch size 1000 is above the limit of 64"),
        (("--block-size", "102400"), "block size 102400 is above the limit of 8192"),
    ],
)
def test_nonsense_options(scenes, models, tmp_path, options, message):
    out = tmp_path / "out"
    result = run("translate", scenes / DUTCH, "--out", out, "--model", models(0.6), *options)
    assert_clean_failure(result, message, out)


def test_job_size_is_shown_first_and_absurd_jobs_need_a_raised_limit(scenes, models, tmp_path):
    out = tmp_path / "out"
    # A 300 m scene forced onto a 0.6 m model: ~142,000 MP, most of a day here.
    coarse = scenes / "landsat-rgb-300m-epsg32618.tif"
    result = run("translate", coarse, "--out", out, "--model", models(0.6), "--force-gsd")
    assert_clean_failure(result, "MP on the model grid", out)
    assert "pass --max-megapixels 142023 to run it" in result.stderr
    # Each scene under the limit, the job above it.
    two = [scenes / DUTCH, scenes / "aerial-0.6m-epsg3857.tif"]
    result = run("translate", *two, "--out", out, "--model", models(0.6), "--max-megapixels", "1.1")
    assert_clean_failure(result, "this job is 1.2 MP on the model grid", out)
    result = run("translate", scenes / DUTCH, "--out", out, "--model", models(0.6))
    assert result.exit_code == 0, result.output
    assert "1 scene(s): 0.2 MP on the model grid, under a minute on" in result.stdout


def test_invalid_model_files(scenes, models, tmp_path):
    good = Path(models(0.6))
    broken = tmp_path / "broken"
    shutil.copy(good.with_suffix(".json"), broken.with_suffix(".json"))
    broken.with_suffix(".safetensors").write_bytes(b"\x00garbage")
    out = tmp_path / "out"
    assert_clean_failure(run("translate", scenes / DUTCH, "--out", out, "--model", broken),
                         "not a valid safetensors file", out)  # fmt: skip
    nocard = tmp_path / "nocard"
    shutil.copy(good.with_suffix(".safetensors"), nocard.with_suffix(".safetensors"))
    assert_clean_failure(
        run("translate", scenes / DUTCH, "--out", out, "--model", nocard), "is missing", out
    )
    badcard = tmp_path / "badcard"
    shutil.copy(good.with_suffix(".safetensors"), badcard.with_suffix(".safetensors"))
    card = json.loads(good.with_suffix(".json").read_text())
    card["architecture"]["kwargs"]["base"] = 16  # weights no longer fit
    badcard.with_suffix(".json").write_text(json.dumps(card))
    assert_clean_failure(
        run("translate", scenes / DUTCH, "--out", out, "--model", badcard), "do not fit", out
    )
    card = json.loads(good.with_suffix(".json").read_text())
    card["colour_scheme"] = "carto"  # a key the card format does not have
    badcard.with_suffix(".json").write_text(json.dumps(card))
    assert_clean_failure(run("translate", scenes / DUTCH, "--out", out, "--model", badcard),
                         "unknown key 'colour_scheme'", out)  # fmt: skip


def test_run_pipeline_yaml(models, tmp_path):
    shipped = Path(__file__).parent.parent / "pipelines" / "translate-scene.yaml"
    assert shipped.is_file()
    text = shipped.read_text()
    job = tmp_path / "job.yaml"
    out = tmp_path / "out"
    job.write_text(
        text.replace("out: out/translate-scene", f"out: {out}") + f"\n  model: {models(0.6)}\n"
    )
    result = run("run", job)
    assert result.exit_code == 0, result.output
    assert any(out.glob("*_render.tif"))
    job.write_text(text + "  chip_sise: 256\n")
    assert_clean_failure(run("run", job), "unknown key 'options.chip_sise'")


def test_translate_image_writes_render_and_class_png(models, tmp_path):
    src = data_root() / "masks" / "landcoverai" / "img" / "0001.png"
    result = run(
        "translate-image", src, "--out", tmp_path, "--model", models(0.6), "--chip-size", "128"
    )
    assert result.exit_code == 0, result.output
    render = Image.open(tmp_path / "0001_render.png")
    mask = Image.open(tmp_path / "0001_mask.png")
    assert render.mode == "RGB" and render.size == (256, 256)
    assert mask.mode == "P" and set(np.unique(np.asarray(mask))) <= {0, 1, 2, 3, 4}
    assert_clean_failure(run("translate-image", tmp_path / "nope.jpg", "--out", tmp_path / "o",
                             "--model", models(0.6)), "no such file")  # fmt: skip


def test_catalog_list_and_checks(tmp_path, monkeypatch):
    result = run("catalog", "list")
    assert result.exit_code == 0 and "dutch-aerial-25cm" in result.stdout
    # A file that does not match its sha256 is refused.
    fake_root = tmp_path / "data"
    (fake_root / "scenes").mkdir(parents=True)
    (fake_root / "scenes" / "neon-osbs-10cm-epsg32617.tif").write_bytes(b"tampered")
    assert_clean_failure(
        run("catalog", "path", "neon-osbs-10cm", "--data-root", fake_root), "sha256"
    )
    # A missing file with no network: says where to put it.
    monkeypatch.setenv("GEO2MAP_DATA_ROOT", str(fake_root))
    assert_clean_failure(run("catalog", "path", "aerial-0.6m"), "put it at")


def test_every_command_reports_user_errors_in_one_line(tmp_path):
    assert_clean_failure(run("train", tmp_path / "missing.yaml"), "not found")
    bad = tmp_path / "train.yaml"
    shipped = Path(__file__).parent.parent / "pipelines" / "train-default.yaml"
    bad.write_text(shipped.read_text() + "\nlearning_rat: 0.1\n")
    assert_clean_failure(run("train", bad), "learning_rat")
    assert_clean_failure(run("train", shipped, "--set", "train.steps=["), "not valid YAML")
    deep = tmp_path / "deep.yaml"  # 20,000 nested lists: the YAML parser recurses per level
    deep.write_text("kind: translate\nout: out\ninputs: " + "[" * 20000 + "]" * 20000 + "\n")
    for command in ("run", "train"):
        assert_clean_failure(run(command, deep), "nested too deeply")


def test_translate_image_translate_and_translate_array_give_the_same_numbers(models, tmp_path):
    """One engine: a plain image at a stated GSD, the same pixels as a GeoTIFF of that pixel
    size, and that GeoTIFF as a lazy DataArray give identical renders and masks."""
    import rioxarray

    import geo2map
    from geo2map.images import image_as_geotiff, read_image

    src = data_root() / "masks" / "landcoverai" / "img" / "0001.png"
    opts = ["--model", models(0.6), "--chip-size", "64", "--overlap", "16"]
    result = run("translate-image", src, "--out", tmp_path, *opts, "--gsd", "0.3")
    assert result.exit_code == 0, result.output
    render = np.asarray(Image.open(tmp_path / "0001_render.png"))
    mask = np.asarray(Image.open(tmp_path / "0001_mask.png"))
    assert mask.shape == (256, 256)  # back on the image's own grid

    scene = tmp_path / "scene" / "0001.tif"
    scene.parent.mkdir()
    image_as_geotiff(read_image(src), scene, 0.3)
    kwargs = dict(model=models(0.6), chip_size=64, overlap=16, block_size=512)
    [summary] = geo2map.translate(scene, tmp_path / "cog", **kwargs)
    assert summary.chips == 9  # the model saw it at 0.6 m: 128 x 128 pixels, 3 x 3 chips
    with rasterio.open(tmp_path / "cog" / "0001_render.tif") as ds:
        assert np.array_equal(ds.read(), render.transpose(2, 0, 1))
    with rasterio.open(tmp_path / "cog" / "0001_mask.tif") as ds:
        assert np.array_equal(ds.read(1), mask)
    lazy = geo2map.translate_array(rioxarray.open_rasterio(scene, chunks=True), **kwargs)
    assert np.array_equal(lazy.render.values, render.transpose(2, 0, 1))
    assert np.array_equal(lazy.mask.values, mask)
    assert_clean_failure(run("translate-image", src, "--out", tmp_path / "o", "--model", models(0.6),
                             "--gsd", "10"), "more than 8x apart")  # fmt: skip


def test_every_option_is_declared_once_for_api_yaml_cli_and_readme(tmp_path):
    """TranslateOptions is the one schema: each field is a `translate` flag with its default,
    the README's options table is printed from it, and the API takes options one way."""
    import typer

    import geo2map
    from geo2map.options import TranslateOptions, commands_table, options_table

    command = typer.main.get_command(app).commands["translate"]
    flags = {p.name: p for p in command.params}
    for name, field in TranslateOptions.model_fields.items():
        assert name in flags, f"--{name.replace('_', '-')} is not a flag"
        if name != "bands":  # typed as text on the command line ("1,2,3")
            assert flags[name].default == field.default, name
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    for table in (options_table(), commands_table()):
        assert table in readme, "README's options tables are stale: python -m geo2map.options"
    with pytest.raises(TypeError, match="not both"):
        geo2map.translate("scene.tif", tmp_path, TranslateOptions(), chip_size=256)


def test_a_shipped_model_is_chosen_by_name_and_an_unknown_name_lists_them(scenes, tmp_path):
    from geo2map.models.io import DEFAULT_MODEL, model_paths

    assert model_paths("default") == model_paths(DEFAULT_MODEL)
    out = tmp_path / "out"
    result = run("translate", scenes / DUTCH, "--out", out, "--model", "cyclegan-nonesuch")
    assert_clean_failure(
        result, "or a shipped model by name (cyclegan, default, stargan, unit)", out
    )
