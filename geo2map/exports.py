"""What follows the COGs for GIS users: QGIS style, vectors, STAC Item, HTML report."""

from __future__ import annotations

import pystac

from geo2map.qgis import write_mask_qml
from geo2map.report import write_report
from geo2map.stac import scene_item, write_item
from geo2map.vectorize import vectorize
from geo2map.writer import OutputPaths

VECTOR_MEDIA = {
    ".gpkg": "application/geopackage+sqlite3",
    ".parquet": "application/vnd.apache.parquet",
    ".geojson": "application/geo+json",
}


def export_scene(
    scene_path: str,
    paths: OutputPaths,
    summary: dict[str, str],
    simplify: float = 0.0,
    min_area: float = 0.0,
    bands: list[int] | None = None,
) -> None:
    """Write the optional exports ``paths`` names; the COGs must already be in place."""
    write_mask_qml(paths.mask, paths.qml)
    if paths.vectors is not None:
        vectorize(paths.mask, paths.vectors, simplify=simplify, min_area=min_area, overwrite=True)
    if paths.report is not None:
        write_report(scene_path, paths.render, paths.mask, paths.report, summary, bands)
    if paths.stac is not None:
        extra = {"thumbnail": (paths.quicklook, pystac.MediaType.PNG, "thumbnail"),
                 "style": (paths.qml, "text/xml", "style")}  # fmt: skip
        if paths.vectors is not None:
            extra["vectors"] = (paths.vectors, VECTOR_MEDIA[paths.vectors.suffix], "data")
        if paths.report is not None:
            extra["report"] = (paths.report, pystac.MediaType.HTML, "overview")
        name = paths.stac.name.removesuffix(".stac.json")
        write_item(scene_item(name, paths.render, paths.mask, extra), paths.stac)
