"""Many scenes -> one region: a resumable job with a manifest, mosaics, an index and a summary.

``<out>/geo2map-job.json`` records every scene's status (running, done, failed) with the
fingerprint of what decides its numbers. Re-running the same job skips scenes that are done
and resumes unfinished ones from their finished blocks (see parts.py), so a job killed at
any moment ends with the same outputs as an uninterrupted one.
"""

from __future__ import annotations

import glob
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import geopandas as gpd
import pystac
import rasterio
from rasterio.warp import transform_geom
from shapely.geometry import box, shape

from geo2map import catalog
from geo2map.errors import Geo2MapError
from geo2map.execution import job_settings, open_runner, prepare_local_cluster
from geo2map.gdal_settings import gdal_env
from geo2map.jobs import TranslateJob
from geo2map.mosaic import build_vrt
from geo2map.pipeline import (
    ScenePlan,
    SceneSummary,
    numbers_fingerprint,
    plan_all,
    scene_paths,
    translate_scene,
    worker_model,
)
from geo2map.stac import write_collection
from geo2map.writer import atomic_write_text, check_writable, hidden

MANIFEST = "geo2map-job.json"


def expand_inputs(inputs: list[str], data_root: str | None, base: Path = Path()) -> list[str]:
    """Paths, globs, catalog names and STAC JSON files -> raster paths, in the order given."""
    names = catalog.load_catalog()
    paths: list[str] = []
    for item in inputs:
        if any(ch in item for ch in "*?["):
            matched = sorted(glob.glob(str(base / item)))
            if not matched:
                raise Geo2MapError(f"input pattern {item!r} matched no file")
            paths.extend(matched)
        elif item in names and not (base / item).exists():
            paths.append(str(catalog.resolve(item, data_root)))
        elif item.endswith(".json"):
            paths.extend(stac_rasters(base / item))
        else:
            paths.append(str(base / item))
    return paths


def stac_rasters(path: Path) -> list[str]:
    """The raster asset of each Item of a STAC ItemCollection (or a single Item) JSON."""
    if not path.is_file():
        raise Geo2MapError(f"{path}: no such STAC file")
    doc = json.loads(path.read_text())
    features = doc.get("features", [doc] if doc.get("type") == "Feature" else None)
    if features is None:
        raise Geo2MapError(f"{path}: not a STAC Item or ItemCollection")
    rasters = []
    for feature in features:
        item = pystac.Item.from_dict(feature)
        asset = next(
            (a for k, a in item.assets.items() if k in ("visual", "image", "data")),
            next((a for a in item.assets.values() if "tiff" in (a.media_type or "")), None),
        )
        if asset is None:
            raise Geo2MapError(
                f"{path}: item {item.id} has no GeoTIFF asset (visual, image or data)"
            )
        href = asset.href
        rasters.append(href if "://" in href or os.path.isabs(href) else str(path.parent / href))
    return rasters


class Manifest:
    def __init__(self, out: Path) -> None:
        self.path = out / MANIFEST
        self.scenes: dict[str, dict] = {}
        if self.path.is_file():
            try:
                self.scenes = json.loads(self.path.read_text()).get("scenes", {})
            except ValueError:
                self.scenes = {}

    def status(self, name: str, key: str) -> str | None:
        entry = self.scenes.get(name)
        return entry["status"] if entry and entry.get("fingerprint") == key else None

    def set(self, name: str, **fields: object) -> None:
        self.scenes[name] = {**self.scenes.get(name, {}), **fields}
        atomic_write_text(self.path, json.dumps({"scenes": self.scenes}, indent=2, default=str))


@job_settings()
def run_job(
    job: TranslateJob, base: Path = Path(), progress: Callable[..., None] | None = None
) -> dict:
    """Translate every scene of the job (skipping finished ones), then mosaic, index, summary."""
    options = job.options
    out = Path(job.out)
    preload = worker_model(options)
    prepare_local_cluster(options.cluster, preload)  # starts while we plan
    card, plans = plan_all(expand_inputs(job.inputs, job.data_root, base), options)
    out.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(out)
    todo: list[tuple[ScenePlan, str, bool]] = []
    for plan in plans:
        key = (
            numbers_fingerprint(plan, options)
            + f"|{options.vectors}|{options.stac}|{options.report}"
        )
        status = manifest.status(plan.scene.name, key)
        paths = scene_paths(out, plan, options)
        if status == "done" and all(p.exists() for p in paths.all()):
            continue
        mine = status in ("running", "failed", "done")  # outputs this job started itself
        check_writable(paths, options.overwrite or mine)
        todo.append((plan, key, mine))
    if progress:
        progress(0, total=sum(p.output_height * p.output_width for p, _, _ in todo))
    with (
        gdal_env(),
        open_runner(options.scheduler, options.workers, options.cluster, preload) as runner,
    ):
        if progress and runner.dashboard:
            progress(0, message=f"Dask dashboard: {runner.dashboard}")
        for plan, key, mine in todo:
            name = plan.scene.name
            manifest.set(
                name, input=plan.scene.path, fingerprint=key, status="running", started=time.time()
            )
            scene_options = options.model_copy(update={"overwrite": options.overwrite or mine})
            try:
                summary = translate_scene(plan, out, scene_options, card, runner, progress)
            except Geo2MapError as e:
                manifest.set(name, status="failed", error=str(e))
                continue
            manifest.set(name, status="done", error=None, **_summary_fields(summary))
    return finish_job(job, plans, manifest, out)


def _summary_fields(s: SceneSummary) -> dict:
    return {
        "outputs": s.outputs,
        "width": s.width,
        "height": s.height,
        "seconds": round(s.seconds, 3),
        "megapixels_per_second": round(s.megapixels_per_second, 3),
        "chips_computed": s.chips,
        "chips_skipped": s.chips_skipped,
        "blocks_resumed": s.blocks_resumed,
    }


def finish_job(job: TranslateJob, plans: list[ScenePlan], manifest: Manifest, out: Path) -> dict:
    options = job.options
    done = [p for p in plans if manifest.scenes.get(p.scene.name, {}).get("status") == "done"]
    written: list[str] = []
    if job.mosaic and done:
        written += write_mosaics(done, out, options)
    if job.index:
        written.append(str(write_index(plans, manifest, out)))
    if options.stac and done:
        stacs = [scene_paths(out, p, options).stac for p in done]
        written.append(str(write_collection(stacs, out / "collection.json")))
    scenes = {p.scene.name: manifest.scenes.get(p.scene.name, {}) for p in plans}
    summary = {
        "scenes": scenes,
        "done": sum(s.get("status") == "done" for s in scenes.values()),
        "failed": sum(s.get("status") == "failed" for s in scenes.values()),
        "outputs": written,
    }
    atomic_write_text(out / "run-summary.json", json.dumps(summary, indent=2, default=str))
    return summary


def write_mosaics(done: list[ScenePlan], out: Path, options) -> list[str]:
    """One VRT per CRS for renders and for masks (scenes in different CRSs are not reprojected)."""
    groups: dict[str, list[ScenePlan]] = {}
    for plan in done:
        crs = plan.scene.crs or plan.scene.gcps_crs
        groups.setdefault(crs.to_string() if crs else "none", []).append(plan)
    written = []
    for crs_name, group in groups.items():
        suffix = "" if len(groups) == 1 else "_" + crs_name.replace(":", "").lower()[:20]
        for kind in ("render", "mask"):
            sources = [getattr(scene_paths(out, p, options), kind) for p in group]
            written.append(str(build_vrt(sources, out / f"mosaic_{kind}{suffix}.vrt")))
    return written


def write_index(plans: list[ScenePlan], manifest: Manifest, out: Path) -> Path:
    """scenes.gpkg: each scene's footprint (EPSG:4326) with its status and numbers."""
    rows, geoms = [], []
    for plan in plans:
        entry = manifest.scenes.get(plan.scene.name, {})
        with rasterio.open(plan.scene.path) as ds:
            crs, bounds = ds.crs, ds.bounds
        geom = (
            shape(transform_geom(crs, "EPSG:4326", box(*bounds).__geo_interface__)) if crs else None
        )
        geoms.append(geom)
        rows.append({
            "scene": plan.scene.name,
            "input": plan.scene.path,
            "crs": crs.to_string() if crs else "",
            "status": entry.get("status", "pending"),
            "seconds": entry.get("seconds"),
            "megapixels_per_second": entry.get("megapixels_per_second"),
            "chips_skipped": entry.get("chips_skipped"),
            "error": entry.get("error") or "",
        })  # fmt: skip
    frame = gpd.GeoDataFrame(rows, geometry=geoms, crs="EPSG:4326")
    path = out / "scenes.gpkg"
    tmp = hidden(path, "index")
    frame.to_file(tmp, driver="GPKG", layer="scenes")
    os.replace(tmp, path)
    return path
