"""GIS label layers on a raster's grid, and a model's mask scored against them.

A label layer is a raster of class values (GeoTIFF ...; the model's class ids, or values
mapped to classes; resampled nearest), or a vector file (GeoPackage, GeoJSON, GeoParquet,
Shapefile: anything geopandas reads) whose features are one class of the model, or whose
attribute maps to classes: polygons are their class where they cover a pixel's centre; lines and points become
bands ``buffer`` map units wide each side, and mark every pixel they cross. Layers are
reprojected to the raster's CRS (said once) and burnt in the order given (later layers win).
A pixel no layer covers is unlabelled, unless the labels are *complete*: then every instance
of their classes is drawn, and such a pixel is known to be none of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from affine import Affine

from geo2map.errors import Geo2MapError

UNLABELLED = 255
RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".img", ".jp2")


@dataclass(frozen=True)
class LabelLayer:
    """A vector file whose features are ``class_name``, or whose ``attribute`` maps to a
    class through ``mapping`` (value -> class name)."""

    path: Path
    class_name: str | None = None
    buffer: float = 0.0  # map units each side, for lines and points
    attribute: str | None = None
    mapping: tuple[tuple[str, str], ...] = ()

    @property
    def class_names(self) -> list[str]:
        """The classes its features (or pixels) are; for a label raster without a mapping,
        those its values hold, known only once read (empty here)."""
        return [self.class_name] if self.class_name else sorted({c for _, c in self.mapping if c})

    @classmethod
    def parse(cls, text: str, buffer: float = 0.0) -> LabelLayer:
        """``buildings.gpkg=building`` (the command line's form)."""
        path, sep, name = text.rpartition("=")
        if not sep and Path(text).suffix.lower() in RASTER_SUFFIXES:
            return cls(Path(text), None, buffer)  # a raster of the model's class ids
        if not sep or not path or not name:
            raise Geo2MapError(
                f"--labels {text!r}: write FILE=CLASS, e.g. buildings.gpkg=building "
                "(a label raster of the model's class ids: just FILE)"
            )
        return cls(Path(path), name, buffer)


@dataclass
class RasterLabels:
    """Class ids per pixel (UNLABELLED where unknown), per class the pixels its line features
    cross (for line recall), and what was done on the way (reprojections)."""

    classes: np.ndarray
    lines: dict[int, np.ndarray]
    notes: list[str]


def read_layer(layer: LabelLayer, crs: object) -> tuple[object, list[str]]:
    """The layer's features in ``crs`` (and a note when they were reprojected)."""
    import geopandas as gpd

    try:
        frame = gpd.read_file(layer.path)
    except Exception as e:  # pyogrio raises its own error types for unreadable files
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise Geo2MapError(f"{layer.path}: not a vector file GDAL can read ({first})") from None
    frame = frame[frame.geometry.notna() & ~frame.geometry.is_empty]
    if frame.empty:
        raise Geo2MapError(f"{layer.path}: the layer has no features")
    if frame.crs is None:
        raise Geo2MapError(f"{layer.path}: has no CRS; set one (e.g. ogr2ogr -a_srs)")
    notes = []
    if not frame.crs.equals(crs):
        notes.append(reprojection_note(layer, frame.crs.to_string(), crs))
        frame = frame.to_crs(crs)
    return frame, notes


def reprojection_note(layer: LabelLayer, source_crs: object, crs: object) -> str:
    return f"labels {layer.path.name} reprojected from {source_crs} to {crs}"


def check_class_names(layer: LabelLayer, class_ids: dict[str, int]) -> None:
    """Refuse a layer that names a class the model does not have."""
    for name in layer.class_names:
        if name not in class_ids:
            raise Geo2MapError(
                f"labels {layer.path}: the model has no class {name!r}; its classes are "
                f"{', '.join(class_ids)}"
            )


def feature_classes(layer: LabelLayer, frame: object, class_ids: dict[str, int]) -> np.ndarray:
    """The class id of every feature of the layer."""
    if layer.class_name:
        return np.full(len(frame), class_ids[layer.class_name])
    if layer.attribute is None:
        raise Geo2MapError(
            f"labels {layer.path}: give its class, or an attribute with a class mapping"
        )
    if layer.attribute not in frame.columns:
        raise Geo2MapError(
            f"labels {layer.path}: no attribute {layer.attribute!r}; it has "
            f"{', '.join(c for c in frame.columns if c != 'geometry')}"
        )
    mapping = dict(layer.mapping)
    values = frame[layer.attribute].astype(str)
    unknown = values[~values.isin(list(mapping))]
    if len(unknown):
        raise Geo2MapError(
            f"labels {layer.path}: {layer.attribute} value {unknown.iloc[0]!r} is not in the "
            f"class mapping ({', '.join(mapping)}); map it or drop those features"
        )
    return np.array([class_ids[mapping[v]] for v in values])


def is_raster_layer(layer: LabelLayer) -> bool:
    return layer.path.suffix.lower() in RASTER_SUFFIXES


def raster_classes(
    layer: LabelLayer, class_ids: dict[str, int], crs: object, transform: Affine,
    shape: tuple[int, int],
) -> tuple[np.ndarray, list[str]]:  # fmt: skip
    """A label raster's classes on the grid (nearest resampling; UNLABELLED where it has
    nodata, a value mapped to nothing, or no pixel). Its values are the model's class ids,
    or go through ``layer.mapping`` (value -> class name, "" for unlabelled)."""
    import rasterio
    from rasterio.warp import Resampling, reproject

    values = np.full(shape, UNLABELLED, dtype=np.uint8)
    with rasterio.open(layer.path) as src:
        if src.crs is None:
            raise Geo2MapError(f"{layer.path}: has no CRS; set one (gdal_edit.py -a_srs)")
        if src.dtypes[0] not in ("uint8", "int8", "uint16", "int16"):
            raise Geo2MapError(f"{layer.path}: label rasters hold class values as integers")
        notes = [] if src.crs == crs else [reprojection_note(layer, src.crs, crs)]
        reproject(
            rasterio.band(src, 1), values, src_nodata=src.nodata, dst_transform=transform,
            dst_crs=crs, dst_nodata=UNLABELLED, resampling=Resampling.nearest,
        )  # fmt: skip
    if layer.mapping:
        table = np.full(256, UNLABELLED, dtype=np.uint8)
        try:
            mapped = {int(v): name for v, name in layer.mapping}
        except ValueError:
            raise Geo2MapError(
                f"labels {layer.path}: a label raster's mapping goes from integer pixel values "
                f"to classes, not from {', '.join(repr(v) for v, _ in layer.mapping)}"
            ) from None
        for v, name in mapped.items():
            table[v] = class_ids[name] if name else UNLABELLED
        present = set(np.unique(values).tolist()) - {UNLABELLED}
        unknown = sorted(present - set(mapped))
        if unknown:
            raise Geo2MapError(
                f"labels {layer.path}: value {unknown[0]} is not in the class mapping "
                f"({', '.join(map(str, mapped))}); map it (to a class, or '' for unlabelled)"
            )
        return table[values], notes
    bad = sorted(set(np.unique(values).tolist()) - set(class_ids.values()) - {UNLABELLED})
    if bad:
        raise Geo2MapError(
            f"labels {layer.path}: value {bad[0]} is not a class id of the model "
            f"(0-{len(class_ids) - 1}); give a mapping from its values to classes"
        )
    return values, notes


def rasterize_layers(
    layers: list[LabelLayer], class_ids: dict[str, int], crs: object, transform: Affine,
    shape: tuple[int, int],
) -> RasterLabels:  # fmt: skip
    from rasterio.features import rasterize

    out = np.full(shape, UNLABELLED, dtype=np.uint8)
    lines: dict[int, np.ndarray] = {}
    notes: list[str] = []
    for layer in layers:
        if not layer.path.is_file():
            raise Geo2MapError(f"{layer.path}: no such label file")
        check_class_names(layer, class_ids)
        if is_raster_layer(layer):
            burnt, said = raster_classes(layer, class_ids, crs, transform, shape)
            notes += said
            out[burnt != UNLABELLED] = burnt[burnt != UNLABELLED]
            continue
        frame, said = read_layer(layer, crs)
        notes += said
        ids = feature_classes(layer, frame, class_ids)
        geoms = frame.geometry
        linear = geoms.geom_type.isin(["LineString", "MultiLineString", "Point", "MultiPoint"])
        if linear.any() and layer.buffer <= 0:
            raise Geo2MapError(
                f"labels {layer.path}: lines and points need a buffer width (map units each "
                "side): give buffer (YAML) or --buffer"
            )
        for cid in np.unique(ids).tolist():
            mine = ids == cid
            areas = [*geoms[mine & ~linear], *geoms[mine & linear].buffer(layer.buffer)]
            burnt = rasterize(
                areas, out_shape=shape, transform=transform, fill=0, default_value=1,
                dtype="uint8",
            )  # fmt: skip
            out[burnt.astype(bool)] = cid
            if (mine & linear).any():
                crossed = rasterize(
                    list(geoms[mine & linear]), out_shape=shape, transform=transform,
                    all_touched=True, fill=0, default_value=1, dtype="uint8",
                )  # fmt: skip
                lines[cid] = lines.get(cid, np.zeros(shape, bool)) | crossed.astype(bool)
                out[crossed.astype(bool)] = cid  # a line narrower than a pixel still marks it
    if (out == UNLABELLED).all():
        names = ", ".join(str(layer.path) for layer in layers)
        raise Geo2MapError(f"no label of {names} falls inside the scene: check the files and CRS")
    return RasterLabels(out, lines, notes)


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
    from skimage.morphology import dilation, disk

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
                dilation(predicted == cid, disk(line_buffer_px))
                if line_buffer_px
                else predicted == cid
            )
            crossed = labels.lines[cid] & valid
            line_recall = float(near[crossed].mean()) if crossed.any() else None
        scores.append(
            ClassScore(class_names[cid], int(truth.sum()), recall, precision, iou, line_recall)
        )
    return scores
