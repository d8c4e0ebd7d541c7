"""The shipped default model: loads from the repository, is small, and its card says what a
user needs (GSD, bands, classes, palette, licence, validation split and metrics)."""

from __future__ import annotations

import numpy as np
import torch

from geo2map.models.io import DEFAULT_MODEL, load_model, model_paths


def test_shipped_default_model_loads_and_is_documented():
    weights, card_path = model_paths(DEFAULT_MODEL)
    # issue 3: at most 25 MB, read as MiB (what ls -h shows): the float16 file is 23.9 MiB
    assert weights.stat().st_size <= 25 * 2**20
    model, card = load_model()
    assert card.input.gsd_m > 0 and card.input.bands == ["red", "green", "blue"]
    assert [c.name for c in card.classes] == ["other", "building", "vegetation", "water", "road"]
    assert "CC BY-NC-SA" in card.licence
    assert len(card.training["validation_split"]["moscow"]) == 100
    assert len(card.training["validation_split"]["landcover"]) == 100
    assert {"rmse", "acc10"} <= set(card.metrics["validation_split"]["pairs"])
    assert "miou" in card.metrics["validation_split"]["masks"]
    assert card.training["hardware"]

    side = card.input.multiple * 2
    with torch.inference_mode():
        out = model(torch.rand(1, 3, side, side))
    assert out["mask_logits"].shape == (1, len(card.classes), side, side)
    palette = np.array(card.architecture.kwargs["palette"])
    colours = (out["render"][0].permute(1, 2, 0).reshape(-1, 3) * 255).round().int().numpy()
    assert {tuple(c) for c in colours} <= {tuple(c) for c in palette}  # flat map colours
