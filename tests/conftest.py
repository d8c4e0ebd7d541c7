"""Shared fixtures: real scenes from the data root and small deterministic models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from geo2map.catalog import data_root
from geo2map.models import ModelCard, build_model, save_model
from geo2map.models.card import Architecture, InputSpec


@pytest.fixture(scope="session", autouse=True)
def int8_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built int8 graphs go to a cache of the test run's own (subprocesses inherit it), never
    to the user's ~/.cache, so every run starts from an empty cache."""
    folder = tmp_path_factory.mktemp("geo2map-cache")
    os.environ["GEO2MAP_CACHE_DIR"] = str(folder)
    return folder


@pytest.fixture(scope="session")
def scenes() -> Path:
    root = data_root() / "scenes"
    assert root.is_dir(), f"the data pack is missing at {root}: see data_catalog.yaml"
    return root


def make_model(folder: Path, gsd_m: float, name: str = "tiny-test", seed: int = 0) -> str:
    """A small U-Net with seeded random weights (BN in eval mode): deterministic per chip."""
    torch.manual_seed(seed)
    arch = Architecture(name="unet", kwargs={"base": 8, "depth": 3})
    model = build_model(arch).eval()
    # Non-trivial BN statistics so the test model is not an identity-ish network.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    with torch.no_grad():  # strong heads: outputs that vary with the input, so tests can see seams
        model.render_head.weight.mul_(40)
        model.mask_head.weight.mul_(40)
    card = ModelCard(name=name, architecture=arch, input=InputSpec(gsd_m=gsd_m, multiple=8))
    save_model(model, card, folder / name)
    return str(folder / name)


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("models")
    cache: dict[float, str] = {}

    def get(gsd_m: float = 0.6) -> str:
        if gsd_m not in cache:
            cache[gsd_m] = make_model(folder, gsd_m, name=f"tiny-{gsd_m:g}m")
        return cache[gsd_m]

    return get
