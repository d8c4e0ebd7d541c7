"""The Dask graph for one scene and for many: chips -> batches -> blended blocks -> files.

Graph shape for a scene:
    batch task b   : read the chips of batch b (fixed by the chip grid), run the model
    block task k   : blend the batches whose chips touch output block k, resample to the
                     output grid, apply the validity mask -> (4, h, w) uint8
Blocks are computed a group at a time (a few blocks of one strip per ``compute``) on any
runner (execution.py); the main process saves every finished block (parts.py, for resume)
and then writes the GeoTIFFs, so no two processes ever write one file. Batches shared by
two groups are computed once and carried to the next group.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import dask
import numpy as np
import rasterio
import torch
from dask.sizeof import sizeof
from pydantic import BaseModel, ConfigDict, Field, model_validator
from rasterio.control import GroundControlPoint
from rasterio.enums import MaskFlags

from geo2map.disk_space import check_free_space, disk_full_error, is_disk_full
from geo2map.errors import Geo2MapError
from geo2map.execution import (
    TorchThreads,
    available_cpus,
    open_runner,
    prepare_local_cluster,
    threads_for_this_task,
)
from geo2map.forkserver import PreloadModel
from geo2map.gdal_settings import gdal_env
from geo2map.models.card import ModelCard
from geo2map.models.int8_cache import checked_card
from geo2map.models.io import DEFAULT_MODEL, model_paths
from geo2map.parts import BlockParts, fingerprint
from geo2map.raster import ModelGrid, read_model_window, read_output_valid
from geo2map.scene import Scene, inspect_scene, model_grid_shape, open_dataset, reading
from geo2map.scene_lock import scene_lock
from geo2map.tiling import (
    AxisMap,
    Block,
    Chip,
    ChipGrid,
    ChipPart,
    blend_chips,
    blocks,
    first_argmax,
    resample_block,
)
from geo2map.translator import cached_translator, pick_device, pick_precision
from geo2map.writer import (
    MASK_NODATA,
    TILE,
    OutputPaths,
    SceneWriter,
    check_writable,
    remove_stale_temporaries,
)

# ~3 hours of a 2-core CPU (about 1 MP/s per core end to end, int8): a 100 km^2 city at
# 0.6 m is ~280 MP. Beyond it a typo (a wrong --force-gsd, a huge VRT) would start a job of
# days, so the user raises the limit on purpose (--max-megapixels).
MAX_MEGAPIXELS = 20_000
CPU_MP_PER_S_PER_CORE = 1.0
# Upper bounds of the options: past them a run needs memory out of all proportion for no
# better output (TranslateOptions._check_geometry says why for each).
MAX_CHIP_SIZE = 2048
MAX_BATCH_SIZE = 64
MAX_BLOCK_SIZE = 8192


class TranslateOptions(BaseModel):
    """Every knob of a translation run; the CLI and pipeline YAML fill one of these."""

    model_config = ConfigDict(extra="forbid")
    model: str = Field(
        default=str(DEFAULT_MODEL), description="model path (safetensors + JSON card)"
    )
    chip_size: int = Field(default=512, ge=16)
    overlap: int = Field(default=64, ge=0)
    batch_size: int = Field(default=8, ge=1)
    block_size: int = Field(
        default=1024, ge=TILE, description="output block side (multiple of 512)"
    )
    bands: list[int] | None = None
    scale: tuple[float, float] | None = None
    output_grid: Literal["input", "model"] = "input"
    force_gsd: bool = False
    device: str = "auto"
    precision: str = "auto"
    scheduler: str = Field(
        default="threads", description="threads, processes, sync or tcp://HOST:PORT"
    )
    cluster: str | None = Field(
        default=None, description="local:N starts a LocalCluster of N processes"
    )
    workers: int | None = Field(default=None, ge=1)
    overwrite: bool = False
    compress: Literal["zstd", "deflate"] = Field(
        default="zstd", description="COG codec: zstd (fast), deflate (readable everywhere)"
    )
    # GIS exports after the COGs (a .qml style sidecar is always written)
    vectors: Literal["gpkg", "parquet", "geojson"] | None = None
    simplify: float = Field(
        default=0.0, ge=0, description="vector simplification tolerance, map units"
    )
    min_area: float = Field(
        default=0.0, ge=0, description="drop polygons smaller than this, map units^2"
    )
    stac: bool = False
    report: bool = False
    max_megapixels: float = Field(
        default=MAX_MEGAPIXELS, gt=0,
        description="largest scene or job, in model-grid megapixels, run without being asked",
    )  # fmt: skip

    @model_validator(mode="after")
    def _check_geometry(self) -> TranslateOptions:
        if self.overlap >= self.chip_size:
            raise ValueError(
                f"overlap {self.overlap} must be smaller than chip size {self.chip_size}"
            )
        if self.block_size % TILE:
            raise ValueError(f"block size {self.block_size} must be a multiple of {TILE}")
        limits = (
            ("chip size", self.chip_size, MAX_CHIP_SIZE, "the forward pass of a 1024 px chip "
             "needs ~1 GB, 4x that per doubling of the side; 512-1024 is plenty"),
            ("batch size", self.batch_size, MAX_BATCH_SIZE, "batches beyond this do not run faster"),
            ("block size", self.block_size, MAX_BLOCK_SIZE, "blocks are held as float planes "
             "while they blend; 1024-2048 is plenty"),
        )  # fmt: skip
        for what, value, limit, why in limits:
            if value > limit:
                raise ValueError(f"{what} {value} is above the limit of {limit}: {why}")
        return self


@dataclass(frozen=True)
class ScenePlan:
    """Everything the tasks of one scene need; small and picklable."""

    scene: Scene
    grid: ModelGrid
    chips: ChipGrid
    output_height: int
    output_width: int
    on_model_grid: bool
    model: str
    device: str
    precision: str
    torch_threads: TorchThreads | None = None  # per model call (or per worker); from the runner

    @property
    def rows(self) -> AxisMap:
        return AxisMap(self.output_height, self.grid.height)

    @property
    def cols(self) -> AxisMap:
        return AxisMap(self.output_width, self.grid.width)

    @property
    def needs_resampling(self) -> bool:
        return (self.grid.height, self.grid.width) != (self.output_height, self.output_width)

    def model_region(self, block: Block) -> tuple[tuple[int, int], tuple[int, int]]:
        if self.on_model_grid or not self.needs_resampling:
            return (block.row, block.row + block.height), (block.col, block.col + block.width)
        rows = self.rows.model_range(block.row, block.row + block.height)
        cols = self.cols.model_range(block.col, block.col + block.width)
        return rows, cols

    def chips_for(self, block: Block) -> list[Chip]:
        return self.chips.chips_touching(*self.model_region(block))

    def batches_for(self, block: Block) -> list[int]:
        return self.chips.batches_of(self.chips_for(block))


def plan_scene(path: str | Path, options: TranslateOptions, card: ModelCard) -> ScenePlan:
    scene = inspect_scene(path, len(card.input.bands), options.bands, options.scale)
    return plan_for(scene, options, card)


def plan_for(scene: Scene, options: TranslateOptions, card: ModelCard) -> ScenePlan:
    if options.chip_size % card.input.multiple:
        nearest = max(1, round(options.chip_size / card.input.multiple)) * card.input.multiple
        raise Geo2MapError(
            f"chip size {options.chip_size} is not a multiple of {card.input.multiple}, "
            f"which model {card.name} needs; try {nearest}"
        )
    height, width = model_grid_shape(scene, card.input.gsd_m, options.force_gsd)
    check_job_size(f"{scene.path}:", height * width, options.max_megapixels)
    _check_has_valid_pixels(scene)
    on_model = options.output_grid == "model"
    return ScenePlan(
        scene=scene,
        grid=ModelGrid(scene, height, width),
        chips=ChipGrid(height, width, options.chip_size, options.overlap, options.batch_size),
        output_height=height if on_model else scene.height,
        output_width=width if on_model else scene.width,
        on_model_grid=on_model,
        model=options.model,
        device=options.device,
        precision=options.precision,
    )


def job_size_text(model_pixels: int) -> str:
    """The size of a job and its estimated time, e.g. "1,234.0 MP on the model grid, about
    10 min on 2 CPU cores"."""
    mp = model_pixels / 1e6
    seconds = mp / (CPU_MP_PER_S_PER_CORE * available_cpus())
    if seconds < 60:
        eta = "under a minute"
    elif seconds < 3600:
        eta = f"about {seconds / 60:.0f} min"
    elif seconds < 86400:
        eta = f"about {seconds / 3600:.1f} h"
    else:
        eta = f"about {seconds / 86400:.1f} days"
    return f"{mp:,.1f} MP on the model grid, {eta} on {available_cpus()} CPU cores"


def check_job_size(what: str, model_pixels: int, limit_mp: float) -> None:
    """Refuse a scene or job above ``--max-megapixels`` before anything is planned for it."""
    if model_pixels / 1e6 > limit_mp:
        raise Geo2MapError(
            f"{what} {job_size_text(model_pixels)}: above --max-megapixels {limit_mp:g}; "
            f"pass --max-megapixels {int(np.ceil(model_pixels / 1e6))} to run it"
        )


# Above this many pixels the scene is not scanned whole for a valid pixel: a decimated
# read of a huge VRT visits every source (~4 s per 1,000 sources here).
FULL_SCAN_PIXELS = 256 * 2**20


def _check_has_valid_pixels(scene: Scene) -> None:
    """Refuse a scene in which no pixel is valid, without reading all of a huge one."""
    with open_dataset(scene.path) as ds:
        if all(MaskFlags.all_valid in flags for flags in ds.mask_flag_enums):
            return  # no nodata, alpha or mask: every pixel is valid
        if ds.width * ds.height > FULL_SCAN_PIXELS:
            return  # not worth hours of reading: chips without a valid pixel are skipped
        f = max(1, int(np.ceil(max(ds.width, ds.height) / 1024)))
        shape = (max(1, ds.height // f), max(1, ds.width // f))
        mask = reading(ds, "an overview of its valid pixels", lambda: ds.dataset_mask(
            out_shape=shape, resampling=rasterio.enums.Resampling.average
        ))  # fmt: skip
        if not mask.any():
            raise Geo2MapError(
                f"{scene.path}: every pixel is nodata or masked; nothing to translate"
            )


# --- tasks -------------------------------------------------------------------------------


@dataclass
class BatchResult:
    """Outputs of one batch: per chip index, (3 + K, size, size) uint8 (:func:`pack_chip_output`),
    a :class:`ChipPart` of it when carried to later blocks, or None if skipped."""

    outputs: dict[int, np.ndarray | ChipPart | None] = field(default_factory=dict)

    @property
    def computed(self) -> int:
        return sum(v is not None for v in self.outputs.values())

    @property
    def nbytes(self) -> int:
        return sum(ChipPart.of(v).data.nbytes for v in self.outputs.values() if v is not None)


# dask sizes what it does not know with sys.getsizeof: ~50 bytes for a batch's 16 MB. The
# scheduler places a blend by where the bytes of its inputs are, and work stealing moves a
# task when moving its inputs looks cheap: both need the true size.
sizeof.register(BatchResult)(lambda result: result.nbytes)


def run_batch(plan: ScenePlan, batch: Sequence[int]) -> BatchResult:
    """Read, forward and pack the chips with these indices (a task's batch)."""
    chips = [plan.chips.chips[i] for i in batch]
    size = plan.chips.size
    inputs, kept = [], []
    with gdal_env(), rasterio.open(plan.scene.path) as ds:
        for chip in chips:
            data, valid = read_model_window(ds, plan.grid, chip.row, chip.col, size, size)
            if valid.any():  # all-invalid chips are skipped, not computed
                inputs.append(data)
                kept.append(chip.index)
    result = BatchResult({chip.index: None for chip in chips})
    if inputs:
        translator = cached_translator(plan.model, plan.device, plan.precision)
        threads = threads_for_this_task(plan.torch_threads)
        if threads:  # torch's count is process-wide: set it for this run, every batch
            torch.set_num_threads(threads)
        outputs = translator.predict_chips(inputs, plan.chips.batch_size)
        result.outputs.update(zip(kept, outputs, strict=True))
    return result


# Output rows blended at a time: the float accumulators (C x 128 x block width, 4 MB for a
# 1024 px block) stay in cache and are reused, where a whole block's (32 MB) was a fresh mmap
# per task; blends are region-independent, so the result is the same (docs/benchmarks.md).
BLEND_STRIPE = 128


def blend_block(plan: ScenePlan, block: Block, *batches: BatchResult) -> np.ndarray:
    """Blend the chips touching the block, resample to the output grid: (4, h, w) uint8."""
    outputs = {k: v for b in batches for k, v in b.outputs.items()}
    out = np.empty((4, block.height, block.width), dtype=np.uint8)
    if all(v is None for v in outputs.values()):
        # every chip under the block was skipped (a collar): no pixel of it is valid
        out[:3], out[3] = 0, MASK_NODATA
        return out
    grid = plan.grid if plan.on_model_grid else None
    with gdal_env(), rasterio.open(plan.scene.path) as ds:
        valid = read_output_valid(
            ds, plan.scene, grid, block.row, block.col, block.height, block.width
        )
    for top in range(0, block.height, BLEND_STRIPE):
        stripe = Block(
            block.row + top, block.col, min(BLEND_STRIPE, block.height - top), block.width
        )
        values, covered = blend_region(plan, stripe, outputs)
        ok = valid[top : top + stripe.height] & covered
        out[:3, top : top + stripe.height] = np.where(ok, np.rint(values[:3]), 0)
        out[3, top : top + stripe.height] = np.where(ok, first_argmax(values[3:]), MASK_NODATA)
    return out


def blend_region(
    plan: ScenePlan, region: Block, outputs: dict[int, np.ndarray | ChipPart | None]
) -> tuple[np.ndarray, np.ndarray]:
    """Blended values (C, h, w) and coverage (h, w) of an output-grid region."""
    rows, cols = plan.model_region(region)
    values, covered = blend_chips(plan.chips, outputs, rows, cols)
    if plan.needs_resampling:
        # Resample values and coverage together, so uncovered model pixels carry no weight.
        stacked = np.concatenate([values * covered, covered[None].astype(np.float32)])
        stacked = resample_block(
            stacked,
            plan.rows.taps(region.row, region.row + region.height),
            plan.cols.taps(region.col, region.col + region.width),
            (rows[0], cols[0]),
        )
        cover = stacked[-1]
        values, covered = stacked[:-1] / np.maximum(cover, 1e-12), cover > 0
    return values, covered


# --- driving the graph ---------------------------------------------------------------------


def scene_array(plan: ScenePlan, block_size: int):
    """The whole scene as one lazy dask array (4, H, W) uint8: RGB render + class mask."""
    import dask.array as da

    task_batch = dask.delayed(run_batch, pure=False)
    task_blend = dask.delayed(blend_block, pure=False)
    batches = {
        b: task_batch(plan, [c.index for c in plan.chips.batch(b)])
        for b in range(plan.chips.n_batches)
    }
    rows = []
    for strip in blocks(plan.output_height, plan.output_width, block_size):
        row = []
        for blk in strip:
            task = task_blend(plan, blk, *[batches[b] for b in plan.batches_for(blk)])
            row.append(da.from_delayed(task, shape=(4, blk.height, blk.width), dtype=np.uint8))
        rows.append(row)
    return da.block(rows)


def block_groups(blocks_todo: list[Block], plan: ScenePlan, group_size: int) -> list[list[Block]]:
    """Blocks in raster order, cut into groups of at most ``group_size`` within a strip."""
    groups: list[list[Block]] = []
    for blk in blocks_todo:
        if groups and len(groups[-1]) < group_size and groups[-1][-1].row == blk.row:
            groups[-1].append(blk)
        else:
            groups.append([blk])
    return groups


def iter_blocks(
    plan: ScenePlan, runner, todo: list[Block], stats: dict | None = None
) -> Iterator[tuple[Block, np.ndarray]]:
    """Compute the ``todo`` blocks group by group, yielding them in raster order.

    Each batch of chips is computed once: a batch that a later group needs too is carried
    (as data locally, as futures on dask.distributed) and dropped after its last use. A
    runner that computes asynchronously (dask.distributed, in-process or a cluster) gets
    ``runner.lookahead`` groups submitted ahead of the one being gathered, so its workers
    need not wait at a group boundary while this process writes. Memory holds the groups
    in flight plus the carried batches along their lower and right edges.
    """
    groups = block_groups(todo, plan, group_size=max(4, 2 * runner.workers))
    touching = [[plan.chips_for(b) for b in group] for group in groups]  # one scan per block
    batches = group_batches(touching, plan.chips.batch_size)
    batch_of = {chip: b for b, chips in enumerate(batches) for chip in chips}
    needs = [[sorted({batch_of[c.index] for c in chips}) for chips in group] for group in touching]
    last_use = {b: g for g, group_needs in enumerate(needs) for bs in group_needs for b in bs}
    uses = chip_uses(plan, groups, touching)
    chip_last_use = {index: max(g for g, _ in boxes) for index, boxes in uses.items()}
    carry: dict[int, object] = {}  # batch -> its carried chips (data or a future)
    task_batch = dask.delayed(run_batch, pure=False)
    task_blend = dask.delayed(blend_block, pure=False)
    task_count = dask.delayed(_chip_counts, pure=False)
    task_subset = dask.delayed(_only_chips, pure=False)

    def still_needed(b: int, g: int) -> dict[int, ChipBox]:
        """What the groups after ``g`` need of batch ``b``'s chips."""
        return {c: needed_after(uses[c], g) for c in batches[b] if chip_last_use[c] > g}

    def submit(g: int) -> object:
        nonlocal carry
        fresh = sorted({b for bs in needs[g] for b in bs} - carry.keys())
        lazy = {b: task_batch(plan, batches[b]) for b in fresh}
        sources = {**{b: runner.source(h) for b, h in carry.items()}, **lazy}
        block_tasks = [
            task_blend(plan, blk, *[sources[b] for b in bs])
            for blk, bs in zip(groups[g], needs[g], strict=True)
        ]
        # Carry only the chips a later group touches, cropped to the part it touches, and cut
        # them again as groups pass: a chip on a group's lower right corner keeps only the
        # rows below the strip once the next group is done. Memory then holds a partial chip
        # row across the scene (docs/benchmarks.md, sessions 13 and 14).
        # A carried batch holds what was still needed after group g - 1 (it was cut then, or
        # needed the same since), so it is cut again only when that changes.
        cuts = {}
        for b in sources:
            crops = still_needed(b, g) if last_use[b] > g else {}
            if crops and (b in lazy or crops != still_needed(b, g - 1)):
                cuts[b] = crops
        carried = [task_subset(sources[b], crops) for b, crops in cuts.items()]
        counts = [task_count(lazy[b]) for b in fresh]
        handle, kept = runner.submit([*block_tasks, *counts], carried, order=g)
        # a batch used for the last time by group g stays alive inside g's graph until done
        carry = {b: h for b, h in carry.items() if last_use[b] > g}
        carry.update(zip(cuts, kept, strict=True))
        return handle

    in_flight: deque[object] = deque()
    submitted = 0
    for g, group in enumerate(groups):
        while submitted < len(groups) and submitted <= g + runner.lookahead:
            in_flight.append(submit(submitted))
            submitted += 1
        results = runner.gather(in_flight.popleft())
        if stats is not None:
            counted = results[len(group) :]
            stats["chips_computed"] = stats.get("chips_computed", 0) + sum(c for c, _ in counted)
            stats["chips_skipped"] = stats.get("chips_skipped", 0) + sum(k for _, k in counted)
        yield from zip(group, results[: len(group)], strict=True)


ChipBox = tuple[tuple[int, int], tuple[int, int]]  # chip-local rows, cols


def group_batches(touching: list[list[list[Chip]]], batch_size: int) -> list[tuple[int, ...]]:
    """Chip indices per task batch: each group's chips not needed before, in grid order, cut
    into batches of ``batch_size``. No batch holds a chip for a later group, so no chip is
    computed early and carried whole to the group that needs it (docs/benchmarks.md,
    session 14). Batches depend on the groups, hence on the block size; a chip's output does
    not (Translator.predict_chips)."""
    batches: list[tuple[int, ...]] = []
    seen: set[int] = set()
    for group in touching:
        new = sorted({c.index for chips in group for c in chips} - seen)
        seen.update(new)
        batches += [tuple(new[i : i + batch_size]) for i in range(0, len(new), batch_size)]
    return batches


def chip_uses(
    plan: ScenePlan, groups: list[list[Block]], touching: list[list[list[Chip]]]
) -> dict[int, list[tuple[int, ChipBox]]]:
    """Per chip index: (group, chip-local box) for every block of every group it touches."""
    size = plan.chips.size
    uses: dict[int, list[tuple[int, ChipBox]]] = {}
    for g, (group, group_chips) in enumerate(zip(groups, touching, strict=True)):
        for blk, chips in zip(group, group_chips, strict=True):
            (r0, r1), (c0, c1) = plan.model_region(blk)
            for ch in chips:
                box = (
                    (max(r0, ch.row) - ch.row, min(r1, ch.row + size) - ch.row),
                    (max(c0, ch.col) - ch.col, min(c1, ch.col + size) - ch.col),
                )
                uses.setdefault(ch.index, []).append((g, box))
    return uses


def needed_after(uses: list[tuple[int, ChipBox]], g: int) -> ChipBox:
    """The bounding box of what groups after ``g`` need of a chip."""
    boxes = [box for group, box in uses if group > g]
    return (
        (min(b[0][0] for b in boxes), max(b[0][1] for b in boxes)),
        (min(b[1][0] for b in boxes), max(b[1][1] for b in boxes)),
    )


def _only_chips(result: BatchResult, crops: dict[int, ChipBox]) -> BatchResult:
    return BatchResult(
        {
            i: None if result.outputs[i] is None else ChipPart.crop(result.outputs[i], *box)
            for i, box in crops.items()
        }
    )


def _chip_counts(result: BatchResult) -> tuple[int, int]:
    return result.computed, len(result.outputs) - result.computed


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
    weights, card = model_paths(options.model)
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
    runner,
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
    runner,
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
    stats: dict = {}
    profile, gcps = output_profile(plan)
    # blocks go into the GTiffs as they arrive (the main thread is free while tasks run),
    # and into parts, so a killed run resumes; blocks resumed from parts go in first
    writer = SceneWriter(paths, profile, card, gcps, options.compress)
    try:
        for block in resumed:
            writer.write(block.row, block.col, parts.load(block))
        for block, data in iter_blocks(plan, runner, todo, stats):
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
            chips=stats.get("chips_computed", 0),
            chips_skipped=stats.get("chips_skipped", 0),
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
    """The model `--cluster local:N` workers may inherit ready-built: a CPU one, never CUDA
    (None for every other runner)."""
    if (
        not (options.cluster or "").startswith("local:")
        or pick_device(options.device).type != "cpu"
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
    card = checked_card(options.model)
    pick_precision(pick_device(options.device), options.precision, card)
    plans = [plan_scene(p, options, card) for p in inputs]
    names = [p.scene.name for p in plans]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise Geo2MapError(
            f"two inputs are named {dupes[0]!r}; their outputs would collide: rename one"
        )
    return card, plans


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
    **kwargs,
) -> list[SceneSummary]:
    """Translate GeoTIFFs into ``<name>_render.tif``, ``<name>_mask.tif`` (COGs) and
    ``<name>_quicklook.png`` in ``out_dir``. Keyword arguments are :class:`TranslateOptions`."""
    options = options or TranslateOptions(**kwargs)
    paths = [inputs] if isinstance(inputs, str | Path) else list(inputs)
    return plan_and_translate(paths, out_dir, options)
