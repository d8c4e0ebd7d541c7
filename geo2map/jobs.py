"""Declarative runs: a pipeline YAML -> one typed job object (unknown keys are errors)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from geo2map.errors import Geo2MapError, describe_validation_error
from geo2map.options import TranslateOptions
from geo2map.yaml_input import read_yaml


class TranslateJob(BaseModel):
    """``kind: translate``: translate ``inputs`` into ``out``, resumably.

    ``inputs``: raster paths, glob patterns, data catalog names, or STAC ItemCollection /
    Item JSON files. ``mosaic``: a VRT per CRS over the renders and the masks. ``index``:
    ``scenes.gpkg`` with every scene's footprint and status.
    """

    model_config = ConfigDict(extra="forbid")
    kind: Literal["translate"]
    inputs: list[str] = Field(min_length=1)
    out: str
    data_root: str | None = None
    mosaic: bool = False
    index: bool = False
    options: TranslateOptions = Field(default_factory=TranslateOptions)


def load_job(path: str | Path) -> TranslateJob:
    p = Path(path)
    if not p.is_file():
        raise Geo2MapError(f"{path}: no such pipeline file")
    doc = read_yaml(p)
    if not isinstance(doc, dict) or "kind" not in doc:
        raise Geo2MapError(f"{path}: a pipeline file is a mapping with a 'kind' key")
    if doc["kind"] != "translate":
        raise Geo2MapError(
            f"{path}: kind {doc['kind']!r} is not a translation job; "
            "training pipelines run with `geo2map train`"
        )
    try:
        return TranslateJob.model_validate(doc)
    except ValidationError as e:
        raise Geo2MapError(describe_validation_error(e, str(path))) from None
