"""The model card: everything needed to use a set of weights correctly, stored as JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from geo2map.models.int8 import Int8Calibration

# The five land-cover classes every geo2map mask uses (DESIGN.md).
DEFAULT_CLASSES: list[dict[str, Any]] = [
    {"id": 0, "name": "other", "color": [230, 230, 230]},
    {"id": 1, "name": "building", "color": [200, 80, 60]},
    {"id": 2, "name": "vegetation", "color": [80, 170, 70]},
    {"id": 3, "name": "water", "color": [60, 120, 220]},
    {"id": 4, "name": "road", "color": [250, 210, 80]},
]


class ClassInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: int
    name: str
    color: tuple[int, int, int]


class Architecture(BaseModel):
    """A registry name plus the keyword arguments of its builder."""

    model_config = ConfigDict(extra="forbid")
    name: str
    kwargs: dict[str, Any] = Field(default_factory=dict)


class InputSpec(BaseModel):
    """What the network expects: bands, ground sample distance and normalization."""

    model_config = ConfigDict(extra="forbid")
    bands: list[str] = Field(default_factory=lambda: ["red", "green", "blue"])
    gsd_m: float = Field(gt=0, description="ground sample distance the model was trained at")
    # Inputs are first scaled to [0, 1] by the scene's scaling policy, then (x - mean) / std.
    mean: list[float] = Field(default_factory=lambda: [0.5, 0.5, 0.5])
    std: list[float] = Field(default_factory=lambda: [0.5, 0.5, 0.5])
    # Chip sides must be a multiple of this (the network downsamples by this factor).
    multiple: int = Field(default=16, ge=1)


class ModelCard(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    architecture: Architecture
    input: InputSpec
    # what the network returns: geo2map's render + mask logits ("translator"), the class
    # logits of a segmentation model (its render is drawn in the class colours), or an RGB
    # image in [0, 1] (its mask is the class of the nearest colour): models/outputs.py
    output: Literal["translator", "class_logits", "rgb"] = "translator"
    classes: list[ClassInfo] = Field(
        default_factory=lambda: [ClassInfo(**c) for c in DEFAULT_CLASSES]
    )
    licence: str = "unspecified"
    training: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    int8: Int8Calibration | None = None  # activation ranges for int8 CPU inference

    @field_validator("classes")
    @classmethod
    def _ids_are_dense(cls, classes: list[ClassInfo]) -> list[ClassInfo]:
        if [c.id for c in classes] != list(range(len(classes))):
            raise ValueError("class ids must be 0..N-1 in order")
        return classes

    @property
    def palette(self) -> dict[int, tuple[int, int, int]]:
        return {c.id: c.color for c in self.classes}

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.classes]

    def summary(self) -> str:
        return (
            f"{self.name} ({self.architecture.name}, bands {'/'.join(self.input.bands)}, "
            f"GSD {self.input.gsd_m:g} m)"
        )

    @classmethod
    def from_json(cls, path: Path) -> ModelCard:
        return cls.model_validate(json.loads(Path(path).read_text()))

    def to_json(self, path: Path) -> None:
        Path(path).write_text(self.model_dump_json(indent=2) + "\n")
