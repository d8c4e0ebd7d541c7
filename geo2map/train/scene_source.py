"""Training data from GIS files: a georeferenced scene and its label layers, as chips.

The scene is read on the model grid exactly as ``translate`` reads it (bands, scaling,
resampling to the card's GSD: scene.py, raster.py), and the label layers are burnt on that
grid (labels.py). Pixels no layer covers are unlabelled (not trained on) unless the labels
are complete: then they are "any class but those drawn", a partial label the losses treat
like the road / not-road tiles.

The grid is cut into blocks; a block whose centre lies in ``holdout`` (or, without one, a
salted-hash share of the blocks) is validation, so train and validation chips never overlap
and each side sees whole areas (a spatial split, not neighbouring chips of one place in both).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import rasterio

from geo2map.errors import Geo2MapError
from geo2map.labels import UNLABELLED, LabelLayer, rasterize_layers
from geo2map.raster import ModelGrid, read_model_window
from geo2map.scene import inspect_scene, model_grid_shape
from geo2map.train.config import LabelLayerConfig, SceneSourceConfig
from geo2map.train.data import IGNORE_LABEL, Sample, data_path, partial_label

Box = tuple[int, int, int, int]  # row, col, height, width on the model grid


class SceneBlocks:
    """Blocks of a labelled scene on the model grid, each a :class:`Sample`."""

    def __init__(self, image: np.ndarray, mask: np.ndarray, boxes: list[Box]) -> None:
        self.image, self.mask, self.boxes = image, mask, boxes
        self.names = [f"r{r}c{c}" for r, c, _, _ in boxes]

    def __len__(self) -> int:
        return len(self.boxes)

    def __getitem__(self, i: int) -> Sample:
        r, c, h, w = self.boxes[i]
        return Sample(self.image[r : r + h, c : c + w], mask=self.mask[r : r + h, c : c + w])


@dataclass
class SceneSource:
    cfg: SceneSourceConfig
    train: SceneBlocks
    val: SceneBlocks
    drawn: set[int] | None  # classes drawn completely: scored each against the rest

    @property
    def metric(self) -> str:
        return f"{self.cfg.name}_iou" if self.drawn is not None else f"{self.cfg.name}_miou"


def load_scene_source(
    cfg: SceneSourceConfig, model_gsd: float, class_names: list[str]
) -> SceneSource:
    path = data_path(cfg.scene)
    scene = inspect_scene(path, 3, None, None)
    if scene.crs is None:
        raise Geo2MapError(
            f"{path}: a labelled scene needs a CRS (GCP-only scenes are not supported)"
        )
    height, width = model_grid_shape(scene, model_gsd, force=False)
    grid = ModelGrid(scene, height, width)
    with rasterio.open(path) as ds:
        data, valid = read_model_window(ds, grid, 0, 0, height, width)
    image = np.rint(np.clip(data, 0, 1) * 255).astype(np.uint8).transpose(1, 2, 0)
    layers = [
        LabelLayer(
            data_path(layer.file), layer.class_, layer.buffer, layer.attribute, mapping(layer)
        )
        for layer in cfg.labels
    ]
    class_ids = {name: i for i, name in enumerate(class_names)}
    labels = rasterize_layers(layers, class_ids, scene.crs, grid.transform, (height, width))
    for note in labels.notes:
        print(f"data.scenes {cfg.name}: {note}", flush=True)
    mask = labels.classes.astype(np.uint16)  # room for partial labels (data.PARTIAL_BASE)
    # the classes the layers declare, and those a label raster's values hold
    labelled = {class_ids[n] for layer in layers for n in layer.class_names}
    labelled |= set(np.unique(mask).tolist()) - {UNLABELLED}
    drawn = None
    if cfg.complete and labelled != set(range(len(class_names))):
        drawn = labelled
        mask[mask == UNLABELLED] = partial_label(labelled)
    mask[~valid] = IGNORE_LABEL
    train, val = split_blocks(cfg, grid, height, width)
    if not train or not val:
        raise Geo2MapError(
            f"data.scenes {cfg.name}: the split left no {'training' if not train else 'validation'} "
            f"block of {cfg.block} px: move data.scenes.holdout or make block smaller"
        )
    return SceneSource(cfg, SceneBlocks(image, mask, train), SceneBlocks(image, mask, val), drawn)


def mapping(layer: LabelLayerConfig) -> tuple[tuple[str, str], ...]:
    """The YAML's value -> class mapping as LabelLayer takes it ("" for unlabelled)."""
    return tuple((value, name or "") for value, name in (layer.classes or {}).items())


def split_blocks(
    cfg: SceneSourceConfig, grid: ModelGrid, height: int, width: int
) -> tuple[list[Box], list[Box]]:
    """Blocks of ``cfg.block`` px: validation where the centre is inside ``holdout`` (map
    coordinates), else by a salted hash of the block's position."""
    train, val = [], []
    for r in range(0, height, cfg.block):
        for c in range(0, width, cfg.block):
            box = (r, c, min(cfg.block, height - r), min(cfg.block, width - c))
            if cfg.holdout is not None:
                x, y = grid.transform @ (c + box[3] / 2, r + box[2] / 2)
                xmin, ymin, xmax, ymax = cfg.holdout
                held = xmin <= x <= xmax and ymin <= y <= ymax
            else:
                digest = hashlib.sha1(f"geo2map-val:{cfg.name}:{r}:{c}".encode()).digest()
                held = digest[0] / 256 < cfg.holdout_fraction
            (val if held else train).append(box)
    return train, val
