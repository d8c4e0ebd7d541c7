"""Translating scenes into files: plan every input, compute each scene's blocks (engine.py),
write them into COGs as they arrive (and into parts, for resume), then the exports.

The main process saves every finished block and writes the GeoTIFFs, so no two processes
ever write one file; a scene's lock refuses a second run into the same folder.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rasterio.control import GroundControlPoint

from geo2map.disk_space import check_free_space, disk_full_error, is_disk_full
from geo2map.engine import BlockComputation
from geo2map.errors import Geo2MapError
from geo2map.execution import Runner, job_settings, open_runner, prepare_local_cluster
from geo2map.forkserver import PreloadModel
from geo2map.gdal_settings import gdal_env
from geo2map.models.card import ModelCard
from geo2map.models.int8_cache import checked_card
from geo2map.models.io import model_paths
from geo2map.options import TranslateOptions, merge_options
from geo2map.parts import BlockParts, fingerprint
from geo2map.plan import ScenePlan, check_job_size, job_size_text, plan_scene
from geo2map.scene_lock import scene_lock
from geo2map.tiling import blocks
from geo2map.translator import model_precision, pick_device
from geo2map.writer import OutputPaths, SceneWriter, check_writable, remove_stale_temporaries


@dataclass
class SceneSummary:
    scene: str
    outputs: list[str]
    width: int
    height: int
    chips: int  # computed
    chips_skipped: int
    seconds: float
    blocks_resumed: int = 0

    @property
    def megapixels_per_second(self) -> float:
        return self.width * self.height / 1e6 / max(self.seconds, 1e-9)

    def as_report(self, card: ModelCard, plan: ScenePlan) -> dict[str, str]:
        scene = plan.scene
        return {
            "scene": Path(self.scene).name,
            "size": f"{self.width} x {self.height} px",
            "CRS": scene.crs.to_string() if scene.crs else "GCPs",
            "pixel size": f"{scene.gsd_m:.3g} m (model {card.input.gsd_m:g} m)",
            "bands": ",".join(map(str, scene.bands)),
            "scaling": scene.scaling.source,
            "model": card.name,
            "chips computed / skipped": f"{self.chips} / {self.chips_skipped}",
            "seconds": f"{self.seconds:.1f}",
            "megapixels per second": f"{self.megapixels_per_second:.2f}",
        }


def output_profile(plan: ScenePlan) -> tuple[dict, list[GroundControlPoint] | None]:
    scene = plan.scene
    if scene.gcps and scene.crs is None:
        sy, sx = plan.grid.scale if plan.on_model_grid else (1.0, 1.0)
        gcps = [
            GroundControlPoint(
                row=g.row / sy, col=g.col / sx, x=g.x, y=g.y, z=g.z, id=g.id, info=g.info
            )
            for g in scene.gcps
        ]
        profile = {"width": plan.output_width, "height": plan.output_height}
        return profile, (gcps, scene.gcps_crs)
    transform = plan.grid.transform if plan.on_model_grid else scene.transform
    if scene.window != (0, 0):
        transform = transform @ transform.translation(scene.window[1], scene.window[0])
    profile = {
        "width": plan.output_width,
        "height": plan.output_height,
        "crs": scene.crs,
        "transform": transform,
    }
    return profile, None


def scene_paths(out_dir: str | Path, plan: ScenePlan, options: TranslateOptions) -> OutputPaths:
    return OutputPaths.for_scene(
        Path(out_dir), plan.scene.name, options.vectors, options.stac, options.report
    )


def numbers_fingerprint(plan: ScenePlan, options: TranslateOptions) -> str:
    """What decides a scene's output values: resumed blocks must have been made with the same."""
    weights, card = model_paths(options.model_source)
    return fingerprint(
        scene=Path(plan.scene.path), weights=weights, card=card, bands=plan.scene.bands,
        scaling=plan.scene.scaling, grid=(plan.grid.height, plan.grid.width), chips=plan.chips,
        output=(plan.output_height, plan.output_width, plan.on_model_grid), device=options.device,
        precision=options.precision, block_size=options.block_size,
    )  # fmt: skip


def translate_scene(
    plan: ScenePlan,
    out_dir: str | Path,
    options: TranslateOptions,
    card: ModelCard,
    runner: Runner,
    progress: Callable[..., None] | None = None,
) -> SceneSummary:
    """Compute the scene's blocks (resuming finished ones), then assemble COGs and exports,
    holding the scene's lock (a second run into the same folder is refused)."""
    start = time.perf_counter()
    plan = replace(plan, torch_threads=runner.torch_threads)
    paths = scene_paths(out_dir, plan, options)
    check_writable(paths, options.overwrite)
    with scene_lock(Path(out_dir), plan.scene.name):
        remove_stale_temporaries(paths.all())  # of killed runs: the lock was free
        return write_scene(plan, paths, out_dir, options, card, runner, progress, start)


def write_scene(
    plan: ScenePlan,
    paths: OutputPaths,
    out_dir: str | Path,
    options: TranslateOptions,
    card: ModelCard,
    runner: Runner,
    progress: Callable[..., None] | None,
    start: float,
) -> SceneSummary:
    parts = BlockParts(Path(out_dir), plan.scene.name, numbers_fingerprint(plan, options))
    all_blocks = [
        b
        for strip in blocks(plan.output_height, plan.output_width, options.block_size)
        for b in strip
    ]
    resumed = [b for b in all_blocks if parts.done(b)]
    finished = set(resumed)
    todo = [b for b in all_blocks if b not in finished]
    pixels = plan.output_height * plan.output_width
    try:
        check_free_space(Path(out_dir), sum(b.height * b.width for b in todo))
    except Geo2MapError:
        parts.remove_if_empty()
        raise
    if progress:
        progress(sum(b.height * b.width for b in resumed))
    profile, gcps = output_profile(plan)
    # blocks go into the GTiffs as they arrive (the main thread is free while tasks run),
    # and into parts, so a killed run resumes; blocks resumed from parts go in first
    writer = SceneWriter(paths, profile, card, gcps, options.compress)
    try:
        for block in resumed:
            writer.write(block.row, block.col, parts.load(block))
        computation = BlockComputation(plan, runner, todo)
        for block, data in computation:
            parts.save(block, data)
            writer.write(block.row, block.col, data)
            if progress:
                progress(block.height * block.width)
    except BaseException as e:
        writer.cleanup()
        _refuse_if_disk_full(e, parts, Path(out_dir), pixels)
        parts.remove_if_empty()  # finished blocks stay for the next run to resume
        raise
    try:
        writer.finish()
        summary = SceneSummary(
            scene=plan.scene.path,
            outputs=[str(p) for p in paths.all()],
            width=plan.output_width,
            height=plan.output_height,
            chips=computation.chips_computed,
            chips_skipped=computation.chips_skipped,
            seconds=time.perf_counter() - start,
            blocks_resumed=len(resumed),
        )
        from geo2map.exports import export_scene  # geopandas: not needed on the workers

        export_scene(plan.scene.path, paths, summary.as_report(card, plan), options.simplify,
                     options.min_area, options.bands)  # fmt: skip
    except BaseException as e:
        writer.cleanup()
        for p in paths.all():  # checked absent (or --overwrite) before the run
            p.unlink(missing_ok=True)
        _refuse_if_disk_full(e, parts, Path(out_dir), pixels)
        raise
    parts.remove()
    return summary


def _refuse_if_disk_full(e: BaseException, parts: BlockParts, out_dir: Path, pixels: int) -> None:
    """A full disk is not a kill: the user must change something before a rerun, so the
    finished blocks give their space back and the error is one line."""
    if is_disk_full(e):
        parts.remove()
        raise disk_full_error(out_dir, pixels) from None


def worker_model(options: TranslateOptions) -> PreloadModel | None:
    """The model `--cluster local:N` workers may inherit ready-built: a CPU one, never CUDA,
    with its card beside it (None for every other runner and model)."""
    if (
        not (options.cluster or "").startswith("local:")
        or pick_device(options.device).type != "cpu"
        or options.card is not None
    ):
        return None
    version = fingerprint(weights=model_paths(options.model)[0])  # size and mtime, as for parts
    return PreloadModel(
        options.model, options.device, options.precision, options.chip_size, version
    )


def plan_all(
    inputs: Sequence[str | Path], options: TranslateOptions
) -> tuple[ModelCard, list[ScenePlan]]:
    """The model card and a plan per input; any bad input or option stops here, before work."""
    if not inputs:
        raise Geo2MapError("no input scenes given")
    card = checked_card(options.model_source)
    weights, _ = model_paths(options.model_source)
    model_precision(weights, pick_device(options.device), options.precision, card)
    plans = [plan_scene(p, options, card) for p in inputs]
    names = [p.scene.name for p in plans]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise Geo2MapError(
            f"two inputs are named {dupes[0]!r}; their outputs would collide: rename one"
        )
    return card, plans


@job_settings()
def plan_and_translate(
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    options: TranslateOptions,
    progress: Callable[..., None] | None = None,
) -> list[SceneSummary]:
    """Check every input and output first (nothing is written if any is bad), then translate."""
    preload = worker_model(options)
    prepare_local_cluster(options.cluster, preload)  # starts while we plan
    card, plans = plan_all(inputs, options)
    model_pixels = sum(p.grid.height * p.grid.width for p in plans)
    check_job_size("this job is", model_pixels, options.max_megapixels)
    for plan in plans:
        check_writable(scene_paths(out_dir, plan, options), options.overwrite)
    collection = Path(out_dir) / "collection.json"
    if options.stac and len(plans) > 1 and collection.exists() and not options.overwrite:
        raise Geo2MapError(f"{collection} already exists; pass --overwrite to replace it")
    if progress:
        progress(0, sum(p.output_height * p.output_width for p in plans),
                 message=f"{len(plans)} scene(s): {job_size_text(model_pixels)}")  # fmt: skip
    with (
        gdal_env(),
        open_runner(options.scheduler, options.workers, options.cluster, preload) as runner,
    ):
        if progress and runner.dashboard:
            progress(0, message=f"Dask dashboard: {runner.dashboard}")
        summaries = [translate_scene(p, out_dir, options, card, runner, progress) for p in plans]
    if options.stac and len(plans) > 1:
        from geo2map.stac import write_collection

        write_collection([scene_paths(out_dir, p, options).stac for p in plans], collection)
        summaries[-1].outputs.append(str(collection))
    return summaries


def translate(
    inputs: str | Path | Sequence[str | Path],
    out_dir: str | Path,
    options: TranslateOptions | None = None,
    **kwargs: Any,
) -> list[SceneSummary]:
    """Translate GeoTIFFs into ``<name>_render.tif``, ``<name>_mask.tif`` (COGs) and
    ``<name>_quicklook.png`` in ``out_dir``. Options come as a :class:`TranslateOptions` or
    as its fields in keywords (``chip_size=256``), not both."""
    options = merge_options(options, kwargs)
    paths = [inputs] if isinstance(inputs, str | Path) else list(inputs)
    return plan_and_translate(paths, out_dir, options)
