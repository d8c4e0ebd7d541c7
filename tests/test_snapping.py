"""Models that draw flat map colours are snapped after blending: the output is drawn in the
style's palette only, and tiles agree with the whole image."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

import geo2map
from geo2map.models.io import load_card
from geo2map.models.snapping import render_palette

SCENE = "aerial-0.6m-epsg3857.tif"  # 1024 px at the models' 0.6 m: one chip holds it all


def test_the_palette_is_the_style_s_and_models_that_do_not_snap_have_none():
    _, card = load_card("stargan")
    palettes = card.architecture.kwargs["palettes"]
    for style in ("osm", "landcover"):
        assert render_palette(card, style) == tuple(tuple(r[:3]) for r in palettes[style])
    assert render_palette(load_card("default")[1]) is None


@pytest.mark.parametrize(
    "model, style",
    [("stargan", "osm"), ("stargan", "landcover"), ("unit", None), ("cyclegan", None)],
)
def test_tiles_match_the_whole_image_in_palette_colours(scenes, tmp_path, model, style):
    opts = dict(model=model, style=style, output_grid="model", scheduler="sync")
    geo2map.translate(scenes / SCENE, tmp_path / "whole", chip_size=1024, overlap=0, **opts)
    geo2map.translate(scenes / SCENE, tmp_path / "tiled", chip_size=512, overlap=64, **opts)
    renders, masks = [], []
    for kind in ("whole", "tiled"):
        with rasterio.open(next((tmp_path / kind).glob("*_render.tif"))) as ds:
            renders.append(ds.read()[:, 32:-32, 32:-32].reshape(3, -1).T)
        with rasterio.open(next((tmp_path / kind).glob("*_mask.tif"))) as ds:
            masks.append(ds.read(1)[32:-32, 32:-32].ravel())
    palette = {tuple(c) for c in render_palette(load_card(model)[1], style)}
    for render in renders:  # flat colours only: no blends of two colours along chip overlaps
        assert {tuple(c) for c in np.unique(render, axis=0)} <= palette
    other_colour = (renders[0] != renders[1]).any(axis=1).mean()
    assert other_colour <= 0.005, other_colour  # the README's rule for palette renders
    assert (masks[0] == masks[1]).mean() >= 0.995
