"""GIS exports read back with the tools users use: geopandas/pyogrio, pystac, GDAL's CLI,
and the report in headless Chromium."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import geopandas as gpd
import numpy as np
import pystac
import pytest
import rasterio
from affine import Affine
from PIL import Image
from typer.testing import CliRunner

import geo2map
from geo2map.catalog import data_root
from geo2map.cli import app
from geo2map.errors import Geo2MapError
from geo2map.models.card import DEFAULT_CLASSES
from geo2map.vectorize import vectorize

runner = CliRunner()


@pytest.fixture(scope="module")
def real_mask(tmp_path_factory) -> Path:
    """A 768 x 1024 mask made of real LandCover.ai label chips (3 x 4), written as geo2map
    writes masks (palette, class names, nodata 255), on an EPSG:2180 grid at 0.25 m."""
    folder = data_root() / "masks" / "landcoverai" / "mask"
    chips = [np.asarray(Image.open(f)) for f in sorted(folder.glob("*.png"))[:12]]
    mosaic = np.block([[chips[r * 4 + c] for c in range(4)] for r in range(3)]).astype(np.uint8)
    mosaic[:20, :30] = 255  # a nodata corner
    path = tmp_path_factory.mktemp("mask") / "poland_mask.tif"
    profile = dict(driver="GTiff", width=1024, height=768, count=1, dtype="uint8", nodata=255,
                   crs="EPSG:2180", transform=Affine(0.25, 0, 500000, 0, -0.25, 300000),
                   tiled=True, blockxsize=256, blockysize=256)  # fmt: skip
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(mosaic, 1)
        ds.write_colormap(1, {c["id"]: (*c["color"], 255) for c in DEFAULT_CLASSES})
        ds.update_tags(**{f"CLASS_{c['id']}": c["name"] for c in DEFAULT_CLASSES})
    return path


def canonical(frame: gpd.GeoDataFrame) -> list[tuple[int, float, object]]:
    frame = frame.assign(a=frame.geometry.area.round(6))
    frame = frame.assign(
        cx=frame.geometry.centroid.x.round(6), cy=frame.geometry.centroid.y.round(6)
    )
    frame = frame.sort_values(["class_id", "a", "cx", "cy"])
    return list(zip(frame.class_id, frame.a, frame.geometry, strict=True))


def test_regions_across_blocks_are_single_polygons(real_mask, tmp_path):
    one = vectorize(real_mask, tmp_path / "one.gpkg", block_size=4096)
    many = vectorize(real_mask, tmp_path / "many.gpkg", block_size=100)  # blocks cut every region
    assert len(one) > 20 and one.class_id.nunique() >= 4
    assert len(many) == len(one)
    for (c1, a1, g1), (c2, a2, g2) in zip(canonical(one), canonical(many), strict=True):
        assert (c1, a1) == (c2, a2)
        # Same polygon as the one-block run: no edge left along an internal block boundary.
        assert g1.symmetric_difference(g2).area < 1e-6
    assert many.geometry.is_valid.all()


def test_polygons_carry_class_area_perimeter_and_respect_options(real_mask, tmp_path):
    raw = vectorize(real_mask, tmp_path / "raw.gpkg")
    with rasterio.open(real_mask) as ds:
        data = ds.read(1)
    for k in range(5):  # areas add up to the pixel counts of each class
        assert raw[raw.class_id == k].area.sum() == pytest.approx((data == k).sum() * 0.0625)
    assert set(raw.class_name) <= {c["name"] for c in DEFAULT_CLASSES}
    np.testing.assert_allclose(raw.perimeter, raw.geometry.length)
    small = vectorize(real_mask, tmp_path / "big-only.gpkg", min_area=4.0, simplify=0.5)
    assert (small.area >= 4.0).all() and len(small) < len(raw)
    vertices = lambda f: sum(len(g.exterior.coords) for g in f.geometry)  # noqa: E731
    assert vertices(small) < vertices(raw)
    assert small.geometry.is_valid.all()


def test_formats_read_back_with_user_tools(real_mask, tmp_path):
    gpkg = tmp_path / "f.gpkg"
    vectorize(real_mask, gpkg, min_area=1)
    assert gpd.read_file(gpkg).crs.to_epsg() == 2180
    info = subprocess.run(
        ["ogrinfo", "-so", "-al", str(gpkg)], capture_output=True, text=True, check=True
    )
    assert "class_name" in info.stdout and "Feature Count" in info.stdout
    parquet = tmp_path / "f.parquet"
    vectorize(real_mask, parquet, min_area=1)
    assert len(gpd.read_parquet(parquet)) == len(gpd.read_file(gpkg))
    geojson = tmp_path / "f.geojson"
    vectorize(real_mask, geojson, min_area=1)
    doc = json.loads(geojson.read_text())
    lon, lat = doc["features"][0]["geometry"]["coordinates"][0][0][:2]
    assert -180 <= lon <= 180 and -90 <= lat <= 90  # RFC 7946: WGS 84


def test_vectorize_refuses_bad_input(scenes, real_mask, tmp_path):
    with pytest.raises(Geo2MapError, match="no class palette"):
        vectorize(scenes / "dutch-aerial-25cm-epsg28992.tif", tmp_path / "x.gpkg")
    with pytest.raises(Geo2MapError, match="not one we write"):
        vectorize(real_mask, tmp_path / "x.shp")
    existing = tmp_path / "exists.gpkg"
    existing.write_text("mine")
    result = runner.invoke(app, ["vectorize", str(real_mask), "--out", str(existing)])
    assert result.exit_code == 2 and "--overwrite" in result.stderr
    assert existing.read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exists.gpkg"]  # nothing half-written


@pytest.fixture(scope="module")
def translated(scenes, models, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("exports")
    result = runner.invoke(app, ["translate", str(scenes / "neon-osbs-10cm-epsg32617.tif"), "--out", str(out),
                                 "--model", models(0.6), "--chip-size", "64", "--overlap", "16",
                                 "--vectors", "gpkg", "--stac", "--report"])  # fmt: skip
    assert result.exit_code == 0, result.output
    return out


def test_translate_writes_stac_item_with_projection_and_classes(translated, scenes):
    item = pystac.Item.from_file(str(translated / "neon-osbs-10cm-epsg32617.stac.json"))
    assert {"render", "mask", "vectors", "report", "thumbnail", "style"} <= set(item.assets)
    for asset in item.assets.values():
        assert (translated / asset.href).is_file()
    with rasterio.open(scenes / "neon-osbs-10cm-epsg32617.tif") as src:
        assert item.properties["proj:code"] == "EPSG:32617"
        assert item.properties["proj:shape"] == [src.height, src.width]
        assert item.properties["proj:transform"] == pytest.approx(list(src.transform)[:6])
    classes = item.assets["mask"].extra_fields["classification:classes"]
    assert [c["name"] for c in classes] == [c["name"] for c in DEFAULT_CLASSES]
    lon0, lat0, lon1, lat1 = item.bbox
    assert -83 < lon0 < lon1 < -81 and 29 < lat0 < lat1 < 30  # Florida, NEON OSBS


def test_qml_and_cog_open_in_gdal(translated):
    qml = (translated / "neon-osbs-10cm-epsg32617_mask.qml").read_text()
    assert qml.count("<paletteEntry") == 5 and 'label="building"' in qml
    info = subprocess.run(["gdalinfo", str(translated / "neon-osbs-10cm-epsg32617_mask.tif")],
                          capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert "Color Table" in info


def test_stac_collection_for_a_job(scenes, models, tmp_path):
    quads = [scenes / f"rgbn-5m-subset-{k}-nodata.tif" for k in ("a", "b")]
    geo2map.translate(quads, tmp_path, model=models(5.0), chip_size=64, overlap=8, stac=True)
    collection = pystac.Collection.from_file(str(tmp_path / "collection.json"))
    items = list(collection.get_items())
    assert sorted(i.id for i in items) == sorted(q.stem for q in quads)


def test_report_is_self_contained_and_draws_map_and_legend(translated, tmp_path):
    report = translated / "neon-osbs-10cm-epsg32617_report.html"
    text = report.read_text()
    assert "http://" not in text.replace("http://mrcc", "") and "https://" not in text
    for key in ("input", "render", "mask"):
        assert (translated / f"neon-osbs-10cm-epsg32617_report_{key}.png").is_file()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Debian's chromium is needed for this test: .ci/run installs it"
    shot = tmp_path / "shot.png"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1100,800",
                    f"--screenshot={shot}", report.as_uri()],
                   check=True, capture_output=True, timeout=120)  # fmt: skip
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    map_area = pixels[120:600, 20:600]
    assert map_area.std() > 10, "the map area is blank"
    # Every class colour of the legend is drawn as a swatch somewhere on the page.
    for c in DEFAULT_CLASSES:
        hit = (np.abs(pixels - np.array(c["color"])).sum(axis=2) < 6).sum()
        assert hit > 50, f"legend swatch for {c['name']} not drawn"
