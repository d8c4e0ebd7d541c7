"""The one engine every inference path runs: chips -> batches -> blended blocks.

``translate`` (COGs), ``translate_array`` (a lazy xarray Dataset) and ``translate-image``
(plain images) all compute a scene's blocks here, from the same :class:`BlockSchedule`, with
the same two tasks:

    batch task : read the chips of a batch from the model grid, run the model, pack outputs
    block task : blend the batches whose chips touch an output block, resample to the
                 output grid, apply the validity mask -> (4, h, w) uint8 (render + mask)

:class:`BlockComputation` drives them on a :class:`~geo2map.execution.Runner`, a group of
blocks at a time, carrying what later groups need; :func:`scene_array` builds the same tasks
into one lazy dask array.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import dask
import numpy as np
import rasterio
import torch
from dask.sizeof import sizeof

from geo2map.execution import Runner, threads_for_this_task
from geo2map.gdal_settings import gdal_env
from geo2map.models.snapping import snap_render
from geo2map.plan import ScenePlan
from geo2map.raster import read_model_window, read_output_valid
from geo2map.schedule import BlockSchedule, ChipBox
from geo2map.tiling import Block, ChipPart, blend_chips, blocks, first_argmax, resample_block
from geo2map.translator import cached_translator
from geo2map.writer import MASK_NODATA


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
# per task; blends are region-independent, so the result is the same.
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
    if plan.render_palette is not None:
        # on the model grid: resampling then blends an edge between its two colours only,
        # where snapping after it would draw a third colour along edges (models/snapping.py)
        values[:3] = snap_render(values[:3], plan.render_palette)
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


# --- driving the tasks ---------------------------------------------------------------------


def _only_chips(result: BatchResult, crops: dict[int, ChipBox]) -> BatchResult:
    """The parts of a batch's chips that later groups still need."""
    return BatchResult(
        {
            i: None if result.outputs[i] is None else ChipPart.crop(result.outputs[i], *box)
            for i, box in crops.items()
        }
    )


def _chip_counts(result: BatchResult) -> tuple[int, int]:
    return result.computed, len(result.outputs) - result.computed


def task(fn: Any) -> Any:
    """A dask task of ``fn`` (impure: its results are never shared between graphs)."""
    return dask.delayed(fn, pure=False)


class BlockComputation:
    """Computes a list of blocks on a runner, group by group, yielding them in raster order.

    Each batch of chips is computed once, by the first group that needs it; a batch that a
    later group needs too is carried (as data locally, as futures on dask.distributed), cut
    down to what the later groups blend, and dropped after its last use. A runner that
    computes asynchronously gets ``runner.lookahead`` groups submitted ahead of the one being
    gathered, so its workers do not wait at a group boundary while this process writes.
    """

    def __init__(self, plan: ScenePlan, runner: Runner, todo: list[Block]) -> None:
        self.plan = plan
        self.runner = runner
        # a group per runner thread and one more ready: every thread has blocks to blend
        self.schedule = BlockSchedule.build(plan, todo, group_size=max(4, 2 * runner.workers))
        self.carried: dict[int, Any] = {}  # batch -> its carried chips (data or a future)
        self.chips_computed = 0
        self.chips_skipped = 0

    def __iter__(self) -> Iterator[tuple[Block, np.ndarray]]:
        groups = self.schedule.groups
        in_flight: deque[Any] = deque()
        submitted = 0
        for g, group in enumerate(groups):
            while submitted < len(groups) and submitted <= g + self.runner.lookahead:
                in_flight.append(self.submit(submitted))
                submitted += 1
            results = self.runner.gather(in_flight.popleft())
            for computed, skipped in results[len(group) :]:
                self.chips_computed += computed
                self.chips_skipped += skipped
            yield from zip(group, results[: len(group)], strict=True)

    def submit(self, g: int) -> Any:
        """Hand group ``g``'s graph to the runner: its new batches, its block blends, the
        chip counts of its new batches, and the cut-down batches later groups need."""
        schedule, plan = self.schedule, self.plan
        fresh = sorted(schedule.batches_of_group(g) - self.carried.keys())
        new = {b: task(run_batch)(plan, schedule.batches[b]) for b in fresh}
        sources = {**{b: self.runner.source(h) for b, h in self.carried.items()}, **new}
        blends = [
            task(blend_block)(plan, blk, *[sources[b] for b in needs])
            for blk, needs in zip(schedule.groups[g], schedule.needs[g], strict=True)
        ]
        cuts = {b: crops for b in sources if (crops := schedule.cut_after(b, g, b in new))}
        to_carry = [task(_only_chips)(sources[b], crops) for b, crops in cuts.items()]
        counts = [task(_chip_counts)(new[b]) for b in fresh]
        handle, kept = self.runner.submit([*blends, *counts], to_carry, order=g)
        # a batch used for the last time by group g stays alive inside g's graph until done
        self.carried = {b: h for b, h in self.carried.items() if schedule.last_group[b] > g}
        self.carried.update(zip(cuts, kept, strict=True))
        return handle


def scene_array(plan: ScenePlan, block_size: int) -> Any:
    """The whole scene as one lazy dask array (4, H, W) uint8: RGB render + class mask, from
    the same schedule and tasks as :class:`BlockComputation` (dask keeps every batch alive
    until its last blend, so nothing is carried or cut)."""
    import dask.array as da

    strips = blocks(plan.output_height, plan.output_width, block_size)
    schedule = BlockSchedule.build(plan, [b for strip in strips for b in strip], len(strips[0]))
    batches = [task(run_batch)(plan, chips) for chips in schedule.batches]
    needs = {
        blk: bs for group, group_needs in zip(schedule.groups, schedule.needs, strict=True)
        for blk, bs in zip(group, group_needs, strict=True)
    }  # fmt: skip
    rows = [
        [
            da.from_delayed(
                task(blend_block)(plan, blk, *[batches[b] for b in needs[blk]]),
                shape=(4, blk.height, blk.width),
                dtype=np.uint8,
            )
            for blk in strip
        ]
        for strip in strips
    ]
    return da.block(rows)


def compute_scene(plan: ScenePlan, runner: Runner, block_size: int) -> np.ndarray:
    """Every block of a (small) scene, assembled in memory: (4, H, W) uint8."""
    out = np.empty((4, plan.output_height, plan.output_width), dtype=np.uint8)
    todo = [b for strip in blocks(plan.output_height, plan.output_width, block_size) for b in strip]
    for blk, data in BlockComputation(plan, runner, todo):
        out[:, blk.row : blk.row + blk.height, blk.col : blk.col + blk.width] = data
    return out
