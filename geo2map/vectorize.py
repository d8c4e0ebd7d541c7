"""Mask -> polygons -> GeoPackage / GeoParquet / GeoJSON, block by block, without seams.

Each block of the mask is polygonized on its own (rasterio.features.shapes). Polygons that
touch an edge shared with another block may continue there: they are merged per class with
their neighbours (shapely union, then split into connected parts), so a region that crosses
block boundaries comes out as one polygon, as if the mask had been one block.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
import shapely
from rasterio.features import shapes
from rasterio.windows import Window
from rasterio.windows import transform as window_transform
from shapely.geometry import shape

from geo2map.errors import Geo2MapError
from geo2map.writer import hidden

FORMATS = {".gpkg": "gpkg", ".parquet": "parquet", ".geojson": "geojson", ".json": "geojson"}
FORMAT_SUFFIX = {"gpkg": ".gpkg", "parquet": ".parquet", "geojson": ".geojson"}


@dataclass(frozen=True)
class MaskClasses:
    names: dict[int, str]
    nodata: int


def mask_classes(ds: rasterio.DatasetReader) -> MaskClasses:
    """Class names from a geo2map mask's metadata; refuse masks without palette or classes."""
    tags = ds.tags()
    names = {int(k.removeprefix("CLASS_")): v for k, v in tags.items() if k.startswith("CLASS_")}
    try:
        has_palette = bool(ds.colormap(1))
    except ValueError:
        has_palette = False
    if not names or not has_palette:
        raise Geo2MapError(
            f"{ds.name}: no class palette or class names (CLASS_n tags); "
            "vectorize a mask written by `geo2map translate`"
        )
    return MaskClasses(names, int(ds.nodata) if ds.nodata is not None else 255)


def vector_format(path: Path, fmt: str | None = None) -> str:
    if fmt is not None:
        if fmt not in FORMAT_SUFFIX:
            raise Geo2MapError(
                f"vector format {fmt!r} is not one we write: use gpkg, parquet or geojson"
            )
        return fmt
    if path.suffix.lower() not in FORMATS:
        raise Geo2MapError(
            f"{path.name}: vector format {path.suffix or '(none)'!r} is not one we write; "
            "use .gpkg, .parquet or .geojson"
        )
    return FORMATS[path.suffix.lower()]


def _polygonize_block(ds, classes: MaskClasses, window: Window, inner: dict[str, bool]):
    data = ds.read(1, window=window)
    t = window_transform(window, ds.transform)
    closed, open_ = [], []
    for geom, value in shapes(data, mask=data != classes.nodata, transform=t, connectivity=4):
        poly = shape(geom)
        # Pixel-space bounds are exact: polygon edges follow pixel edges.
        x0, y1 = ~t @ (poly.bounds[0], poly.bounds[1])
        x1, y0 = ~t @ (poly.bounds[2], poly.bounds[3])
        touches = (
            (inner["left"] and round(min(x0, x1)) == 0)
            or (inner["right"] and round(max(x0, x1)) == window.width)
            or (inner["top"] and round(min(y0, y1)) == 0)
            or (inner["bottom"] and round(max(y0, y1)) == window.height)
        )
        (open_ if touches else closed).append((int(value), poly))
    return closed, open_


def polygonize(mask_path: Path, block_size: int = 2048) -> gpd.GeoDataFrame:
    """Every connected region (4-connectivity) of each class as one polygon."""
    with rasterio.open(mask_path) as ds:
        classes = mask_classes(ds)
        closed: list[tuple[int, object]] = []
        pending: dict[int, list] = {}
        for row in range(0, ds.height, block_size):
            for col in range(0, ds.width, block_size):
                window = Window(
                    col, row, min(block_size, ds.width - col), min(block_size, ds.height - row)
                )
                inner = {
                    "left": col > 0,
                    "right": col + window.width < ds.width,
                    "top": row > 0,
                    "bottom": row + window.height < ds.height,
                }
                done, open_ = _polygonize_block(ds, classes, window, inner)
                closed.extend(done)
                for value, poly in open_:
                    pending.setdefault(value, []).append(poly)
        for value, polys in pending.items():
            merged = shapely.union_all(polys)
            closed.extend((value, part) for part in shapely.get_parts(merged))
        crs = ds.crs
    values = [v for v, _ in closed]
    return gpd.GeoDataFrame(
        {
            "class_id": np.array(values, dtype=np.int32),
            "class_name": [classes.names.get(v, str(v)) for v in values],
        },
        geometry=[g for _, g in closed],
        crs=crs,
    )


def vectorize(
    mask_path: str | Path,
    out_path: str | Path,
    simplify: float = 0.0,
    min_area: float = 0.0,
    fmt: str | None = None,
    overwrite: bool = False,
    block_size: int = 2048,
) -> gpd.GeoDataFrame:
    """Polygons of a geo2map mask, simplified (map units) and filtered by area (map units^2)."""
    mask_path, out_path = Path(mask_path), Path(out_path)
    kind = vector_format(out_path, fmt)
    if out_path.exists() and not overwrite:
        raise Geo2MapError(f"{out_path} already exists; pass --overwrite to replace it")
    if not mask_path.is_file():
        raise Geo2MapError(f"{mask_path}: no such file")
    if simplify < 0 or min_area < 0:
        raise Geo2MapError("--simplify and --min-area must be >= 0 (map units)")
    frame = polygonize(mask_path, block_size)
    if simplify > 0:
        frame["geometry"] = frame.geometry.simplify(simplify, preserve_topology=True)
    frame["geometry"] = shapely.make_valid(frame.geometry.values)
    frame = frame[~frame.geometry.is_empty]
    frame["area"] = frame.geometry.area
    frame["perimeter"] = frame.geometry.length
    frame = frame[frame["area"] >= min_area].sort_values(
        ["class_id", "area"], ascending=[True, False]
    )
    frame = frame.reset_index(drop=True)
    write_vectors(frame, out_path, kind)
    return frame


def write_vectors(frame: gpd.GeoDataFrame, out_path: Path, kind: str) -> None:
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = hidden(out_path, "vectors")
    try:
        if kind == "gpkg":
            frame.to_file(tmp, driver="GPKG", layer=out_path.stem)
        elif kind == "parquet":
            frame.to_parquet(tmp)
        else:  # RFC 7946: GeoJSON is WGS 84 longitude/latitude
            frame.to_crs("EPSG:4326").to_file(tmp, driver="GeoJSON")
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
