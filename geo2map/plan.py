"""A scene's plan: its model grid, chip grid and output grid, checked before any work.

Three grids meet here (tiling.py has their arithmetic): the *model grid* (the scene
resampled to the model's GSD; chips are cut from it), the *output grid* (the input's own
grid by default) and the output *blocks* (units of work and of writing).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import MaskFlags

from geo2map.errors import Geo2MapError
from geo2map.execution import TorchThreads, available_cpus
from geo2map.models.card import ModelCard
from geo2map.models.io import ModelSource
from geo2map.models.snapping import Palette, render_palette
from geo2map.options import TranslateOptions
from geo2map.raster import ModelGrid
from geo2map.scene import Scene, inspect_scene, model_grid_shape, open_dataset, reading
from geo2map.tiling import AxisMap, Block, Chip, ChipGrid

CPU_MP_PER_S_PER_CORE = 1.0  # measured end to end with int8 on 2 cores: the time estimate


@dataclass(frozen=True)
class ScenePlan:
    """Everything the tasks of one scene need; small and picklable."""

    scene: Scene
    grid: ModelGrid
    chips: ChipGrid
    output_height: int
    output_width: int
    on_model_grid: bool
    model: ModelSource
    device: str
    precision: str
    torch_threads: TorchThreads | None = None  # per model call (or per worker); from the runner
    render_palette: Palette | None = None  # snap the blended render to these colours

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
        model=options.model_source,
        device=options.device,
        precision=options.precision,
        render_palette=render_palette(card, options.style),
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
