"""Palette snapping after blending, for models that draw their render in flat map colours.

StarGAN, UNIT and CycleGAN redraw each pixel of their render in the nearest colour of their
map style (``snap``). Snapped chips blended in their overlaps mix two flat colours wherever
the chips disagree near a tie. So the engine asks the model for unsnapped chips, blends them
on the model grid and snaps the result there: the model grid is drawn in the palette's
colours only, tiles agree with the whole image as closely as the unsnapped renders do, and
the mask (read from the same unsnapped colours) is unchanged. Resampling to a finer input
grid comes after the snap, so an edge is a blend of its two colours (as map tiles
antialias): snapping such a blend would draw a third colour along the edge in 59 of the 91
pairs of OSM colours.
"""

from __future__ import annotations

import functools
import json

import numpy as np
import torch
from torch import nn

from geo2map.models.card import Architecture, ModelCard
from geo2map.models.palette_head import nearest_colours
from geo2map.models.registry import build_model, may_draw_flat_colours

Palette = tuple[tuple[int, int, int], ...]


def model_palette(model: nn.Module) -> torch.Tensor | None:
    """The colours (K, 3) in [0, 1] a model snaps its render to, or None when it does not."""
    palette = getattr(model, "snap_palette", None)
    return palette() if callable(palette) else None


def render_palette(card: ModelCard, style: str | None = None) -> Palette | None:
    """The colours (0..255) the engine snaps a model's blended render to, or None."""
    if card.output != "translator" or not may_draw_flat_colours(card.architecture.name):
        return None
    return _palette(json.dumps(card.architecture.model_dump(), sort_keys=True), style)


@functools.lru_cache(maxsize=16)
def _palette(architecture: str, style: str | None) -> Palette | None:
    try:
        net = build_model(Architecture(**json.loads(architecture)))
    except (ValueError, TypeError):  # not buildable here (the loader says why)
        return None
    if style is not None and hasattr(net, "set_style"):
        net.set_style(style)
    colours = model_palette(net)
    if colours is None:
        return None
    return tuple(tuple(int(v) for v in row) for row in torch.round(colours * 255).tolist())


def without_snap(model: nn.Module) -> nn.Module:
    """The model drawing unsnapped renders (the engine snaps after blending)."""
    if model_palette(model) is not None:
        model.snap = False
    return model


def snap_render(values: np.ndarray, palette: Palette) -> np.ndarray:
    """A blended render (3, h, w) in 0..255 redrawn in ``palette``, each pixel its nearest
    colour (the models' own snap, :func:`palette_head.nearest_colours`)."""
    colours = torch.tensor(palette, dtype=torch.float32) / 255.0
    render = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))[None] / 255.0
    return (nearest_colours(render, colours)[0] * 255.0).numpy()
