"""STAC Items (pystac) for translated scenes: assets, projection and classification."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pystac
import rasterio
from pystac.extensions.classification import Classification, ClassificationExtension
from pystac.extensions.projection import ProjectionExtension
from rasterio.warp import transform_bounds, transform_geom
from shapely.geometry import box, mapping

from geo2map.vectorize import mask_classes
from geo2map.writer import atomic_write_text

MEDIA_COG = pystac.MediaType.COG


def scene_item(
    name: str,
    render: Path,
    mask: Path,
    extra_assets: dict[str, tuple[Path, str, str]] | None = None,
) -> pystac.Item:
    """An Item for one scene. ``extra_assets``: key -> (path, media type, role)."""
    with rasterio.open(mask) as ds:
        crs, transform, shape, bounds = ds.crs, ds.transform, ds.shape, ds.bounds
        classes = mask_classes(ds)
        cmap = ds.colormap(1)
        model = ds.tags().get("MODEL", "")
    footprint = mapping(box(*bounds))
    if crs is not None:
        geometry = transform_geom(crs, "EPSG:4326", footprint)
        bbox = list(transform_bounds(crs, "EPSG:4326", *bounds, densify_pts=21))
    else:  # GCP-only outputs: no affine footprint to give
        geometry, bbox = None, None
    item = pystac.Item(
        id=name,
        geometry=geometry,
        bbox=bbox,
        datetime=dt.datetime.now(dt.UTC),
        properties={"geo2map:model": model},
    )
    item.add_asset("render", pystac.Asset(href=render.name, media_type=MEDIA_COG, roles=["data", "visual"],
                                          title="map-style render (RGB)"))  # fmt: skip
    item.add_asset("mask", pystac.Asset(href=mask.name, media_type=MEDIA_COG, roles=["data"],
                                        title="land-cover mask"))  # fmt: skip
    for key, (path, media, role) in (extra_assets or {}).items():
        item.add_asset(key, pystac.Asset(href=path.name, media_type=media, roles=[role]))
    proj = ProjectionExtension.ext(item, add_if_missing=True)
    if crs is not None:
        epsg = crs.to_epsg()
        if epsg:
            proj.epsg = epsg
        else:
            proj.wkt2 = crs.to_wkt(version="WKT2_2019")
        proj.transform = list(transform)[:6]
        proj.bbox = list(bounds)
        proj.geometry = footprint
    proj.shape = list(shape)
    ClassificationExtension.ext(item.assets["mask"], add_if_missing=True).classes = [
        Classification.create(
            value=k, name=v, description=v, color_hint="{:02X}{:02X}{:02X}".format(*cmap[k][:3])
        )
        for k, v in sorted(classes.names.items())
    ]
    return item


def write_item(item: pystac.Item, path: Path) -> Path:
    return atomic_write_text(path, json.dumps(item.to_dict(include_self_link=False), indent=2))


def write_collection(item_paths: list[Path], out: Path) -> Path:
    """A STAC Collection over a job's Items, with relative links; extent from the Items."""
    items = [pystac.Item.from_file(str(p)) for p in item_paths]
    boxes = [i.bbox for i in items if i.bbox]
    bbox = (
        [
            min(b[0] for b in boxes),
            min(b[1] for b in boxes),
            max(b[2] for b in boxes),
            max(b[3] for b in boxes),
        ]
        if boxes
        else [-180.0, -90.0, 180.0, 90.0]
    )
    times = [i.datetime for i in items if i.datetime]
    collection = pystac.Collection(
        id=f"geo2map-{out.parent.name or 'job'}",
        description="Map renders and land-cover masks translated by geo2map",
        extent=pystac.Extent(
            pystac.SpatialExtent([bbox]),
            pystac.TemporalExtent([[min(times, default=None), max(times, default=None)]]),
        ),
        license="other",
    )
    doc = collection.to_dict(include_self_link=False)
    doc["links"] = [link for link in doc["links"] if link["rel"] not in ("root", "self")] + [
        {"rel": "item", "href": f"./{p.name}", "type": "application/geo+json"} for p in item_paths
    ]
    return atomic_write_text(out, json.dumps(doc, indent=2))
