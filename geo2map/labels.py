"""GIS label layers on a raster's grid, and a model's mask scored against them.

A label layer is a vector file (GeoPackage, GeoJSON, GeoParquet, Shapefile: anything
geopandas reads) whose features are one class of the model: polygons are that class where
they cover a pixel's centre; lines and points become bands ``buffer`` map units wide each
side. Layers are reprojected to the raster's CRS and burnt in the order given (later layers
win). A pixel no layer covers is unlabelled, unless the labels are *complete*: then every
instance of their classes is drawn, and such a pixel is known to be none of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from affine import Affine

from geo2map.errors import Geo2MapError

UNLABELLED = 255


@dataclass(frozen=True)
class LabelLayer:
    path: Path
    class_name: str
    buffer: float = 0.0  # map units each side, for lines and points

    @classmethod
    def parse(cls, text: str, buffer: float = 0.0) -> LabelLayer:
        """``buildings.gpkg=building`` (the command line's form)."""
        path, sep, name = text.rpartition("=")
        if not sep or not path or not name:
            raise Geo2MapError(f"--labels {text!r}: write FILE=CLASS, e.g. buildings.gpkg=building")
        return cls(Path(path), name, buffer)


@dataclass
class RasterLabels:
    """Class ids per pixel (UNLABELLED where unknown) and, per class, the pixels its line
    features cross (for line recall)."""

    classes: np.ndarray
    lines: dict[int, np.ndarray]


def rasterize_layers(
    layers: list[LabelLayer], class_ids: dict[str, int], crs: object, transform: Affine,
    shape: tuple[int, int],
) -> RasterLabels:  # fmt: skip
    import geopandas as gpd
    from rasterio.features import rasterize

    out = np.full(shape, UNLABELLED, dtype=np.uint8)
    lines: dict[int, np.ndarray] = {}
    for layer in layers:
        if layer.class_name not in class_ids:
            raise Geo2MapError(
                f"--labels {layer.path}={layer.class_name}: the model has no class "
                f"{layer.class_name!r}; its classes are {', '.join(class_ids)}"
            )
        cid = class_ids[layer.class_name]
        if not layer.path.is_file():
            raise Geo2MapError(f"{layer.path}: no such label file")
        try:
            frame = gpd.read_file(layer.path)
        except Exception as e:  # pyogrio raises its own error types for unreadable files
            first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
            raise Geo2MapError(f"{layer.path}: not a vector file GDAL can read ({first})") from None
        if frame.crs is None:
            raise Geo2MapError(f"{layer.path}: has no CRS; set one (e.g. ogr2ogr -a_srs)")
        geoms = frame.to_crs(crs).geometry
        geoms = geoms[geoms.notna() & ~geoms.is_empty]
        linear = geoms.geom_type.isin(["LineString", "MultiLineString", "Point", "MultiPoint"])
        areas = list(geoms[~linear])
        if linear.any():
            if layer.buffer > 0:
                areas += list(geoms[linear].buffer(layer.buffer))
            crossed = rasterize(
                list(geoms[linear]), out_shape=shape, transform=transform, all_touched=True,
                fill=0, default_value=1, dtype="uint8",
            )  # fmt: skip
            lines[cid] = lines.get(cid, np.zeros(shape, bool)) | crossed.astype(bool)
        if areas:
            burnt = rasterize(
                areas, out_shape=shape, transform=transform, fill=0, default_value=1,
                dtype="uint8",
            )  # fmt: skip
            out[burnt.astype(bool)] = cid
        elif cid in lines and layer.buffer <= 0:
            out[lines[cid]] = cid
    if (out == UNLABELLED).all():
        names = ", ".join(str(layer.path) for layer in layers)
        raise Geo2MapError(f"no label of {names} falls inside the scene: check the files and CRS")
    return RasterLabels(out, lines)


@dataclass
class ClassScore:
    name: str
    labelled_pixels: int
    recall: float  # labelled pixels of the class that the model calls it
    precision: float | None  # complete labels only
    iou: float | None  # complete labels only
    line_recall: float | None  # line pixels within the buffer of a pixel the model calls it


def score_mask(
    predicted: np.ndarray, labels: RasterLabels, class_names: list[str], complete: bool,
    region: np.ndarray, line_buffer_px: int = 0,
) -> list[ClassScore]:  # fmt: skip
    """Scores of a predicted class mask (255 = nodata) for every class the labels hold,
    inside ``region`` (a boolean mask of the pixels to score)."""
    from skimage.morphology import binary_dilation, disk

    valid = region & (predicted != UNLABELLED)
    known = valid if complete else valid & (labels.classes != UNLABELLED)
    scores = []
    for cid in sorted(set(np.unique(labels.classes[valid]).tolist()) - {UNLABELLED}):
        truth = (labels.classes == cid) & known
        said = (predicted == cid) & known
        hit = int((truth & said).sum())
        recall = hit / max(int(truth.sum()), 1)
        precision = iou = line_recall = None
        if complete:
            precision = hit / max(int(said.sum()), 1)
            iou = hit / max(int((truth | said).sum()), 1)
        if cid in labels.lines:
            near = (
                binary_dilation(predicted == cid, disk(line_buffer_px))
                if line_buffer_px
                else predicted == cid
            )
            crossed = labels.lines[cid] & valid
            line_recall = float(near[crossed].mean()) if crossed.any() else None
        scores.append(
            ClassScore(class_names[cid], int(truth.sum()), recall, precision, iou, line_recall)
        )
    return scores
