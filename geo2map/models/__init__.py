"""Generators, the model registry, the model card and weight I/O."""

from geo2map.models.card import ModelCard
from geo2map.models.io import DEFAULT_MODEL, load_model, save_model
from geo2map.models.registry import available, build_model, register

__all__ = [
    "DEFAULT_MODEL",
    "ModelCard",
    "available",
    "build_model",
    "load_model",
    "register",
    "save_model",
]
