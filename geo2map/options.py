"""The options of a translation, declared once.

:class:`TranslateOptions` is the schema: the Python API takes it (or its fields as keyword
arguments), a pipeline YAML's ``options:`` mapping is validated against it, the ``translate``
and ``translate-image`` commands build their flags from it (:func:`cli_parameters`), and the
README's options table is printed from it (``python -m geo2map.options``; a test keeps the
README's copy current).
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from geo2map.errors import Geo2MapError
from geo2map.models.io import DEFAULT_MODEL, ModelRef, ModelSource

# ~3 hours of a 2-core CPU (about 1 MP/s per core end to end, int8): a 100 km^2 city at
# 0.6 m is ~280 MP. Beyond it a typo (a wrong --force-gsd, a huge VRT) would start a job of
# days, so the user raises the limit on purpose (--max-megapixels).
MAX_MEGAPIXELS = 20_000
# Upper bounds of the options: past them a run needs memory out of all proportion for no
# better output (TranslateOptions._check_geometry says why for each).
MAX_CHIP_SIZE = 2048
MAX_BATCH_SIZE = 64
MAX_BLOCK_SIZE = 8192
BLOCK_MULTIPLE = 512  # the COG tile side (writer.TILE): blocks are whole tiles


class TranslateOptions(BaseModel):
    """Every knob of a translation run. The description of each field is its help text."""

    model_config = ConfigDict(extra="forbid")
    model: str = Field(
        default=str(DEFAULT_MODEL),
        description="model: a shipped model by name (default), or a .safetensors, "
        "TorchScript (.pt) or ONNX (.onnx) file",
    )
    card: str | None = Field(
        default=None,
        description="the model's card, where it is not beside the model file (<model>.json)",
    )
    style: str | None = Field(
        default=None,
        description="the style a model of several styles draws (StarGAN: osm or landcover)",
    )
    chip_size: int = Field(default=512, ge=16, description="chip side in model-grid pixels")
    overlap: int = Field(default=64, ge=0, description="overlap of neighbouring chips, pixels")
    batch_size: int = Field(
        default=8, ge=1,
        description="chips per task (one forward on a GPU; one chip at a time on a CPU)",
    )  # fmt: skip
    block_size: int = Field(
        default=1024, ge=BLOCK_MULTIPLE,
        description="output block side (the Dask chunk), a multiple of 512",
    )  # fmt: skip
    bands: list[int] | None = Field(
        default=None,
        description="input bands for R,G,B, e.g. 1,2,3 (default: by colour interpretation)",
    )
    scale: tuple[float, float] | None = Field(
        default=None,
        description="fixed input range MIN MAX mapped to [0, 1] (default: per dtype and scene)",
    )
    output_grid: Literal["input", "model"] = Field(
        default="input",
        description="input: the scene's own grid; model: resampled to the model's GSD",
    )
    force_gsd: bool = Field(
        default=False,
        description="translate even if the pixel size is more than 8x from the model's",
    )
    max_megapixels: float = Field(
        default=MAX_MEGAPIXELS, gt=0,
        description="largest scene or job (model-grid megapixels) run without being asked",
    )  # fmt: skip
    device: Literal["auto", "cpu", "cuda", "mps"] = Field(
        default="auto", description="where the model runs"
    )
    precision: Literal["auto", "int8", "bf16", "fp32"] = Field(
        default="auto", description="auto: int8 or bf16 where the hardware makes them fast"
    )
    scheduler: str = Field(
        default="threads", description="threads, processes, sync, or a Dask address tcp://HOST:PORT"
    )
    cluster: str | None = Field(
        default=None, description="local:N starts a dask.distributed LocalCluster of N processes"
    )
    workers: int | None = Field(
        default=None, ge=1, description="Dask workers (default: one per core)"
    )
    overwrite: bool = Field(default=False, description="replace existing outputs")
    compress: Literal["zstd", "deflate"] = Field(
        default="zstd", description="COG codec: zstd (fast) or deflate (readable everywhere)"
    )
    vectors: Literal["gpkg", "parquet", "geojson"] | None = Field(
        default=None, description="also write the mask's polygons in this format"
    )
    simplify: float = Field(
        default=0.0, ge=0, description="vector simplification tolerance, map units"
    )
    min_area: float = Field(
        default=0.0, ge=0, description="drop polygons smaller than this, map units squared"
    )
    stac: bool = Field(
        default=False, description="also write a STAC Item per scene (+ a Collection for a job)"
    )
    report: bool = Field(default=False, description="also write an HTML report per scene")

    @property
    def model_source(self) -> ModelSource:
        """The model file, with its card where ``card`` names one and its style."""
        if self.card is None and self.style is None:
            return self.model
        return ModelRef(self.model, self.card, self.style)

    @field_validator("bands", mode="before")
    @classmethod
    def _bands_from_text(cls, value: Any) -> Any:
        """``"1,2,3"`` (the command line's form) -> [1, 2, 3]."""
        if isinstance(value, str):
            try:
                return [int(b) for b in value.split(",")] if value else None
            except ValueError:
                raise ValueError(f"{value!r}: give band numbers like 1,2,3") from None
        return value

    @model_validator(mode="after")
    def _check_geometry(self) -> TranslateOptions:
        if self.overlap >= self.chip_size:
            raise ValueError(
                f"overlap {self.overlap} must be smaller than chip size {self.chip_size}"
            )
        if self.block_size % BLOCK_MULTIPLE:
            raise ValueError(f"block size {self.block_size} must be a multiple of {BLOCK_MULTIPLE}")
        limits = (
            ("chip size", self.chip_size, MAX_CHIP_SIZE, "the forward pass of a 1024 px chip "
             "needs ~1 GB, 4x that per doubling of the side; 512-1024 is plenty"),
            ("batch size", self.batch_size, MAX_BATCH_SIZE, "batches beyond this do not run faster"),
            ("block size", self.block_size, MAX_BLOCK_SIZE, "blocks are held as float planes "
             "while they blend; 1024-2048 is plenty"),
        )  # fmt: skip
        for what, value, limit, why in limits:
            if value > limit:
                raise ValueError(f"{what} {value} is above the limit of {limit}: {why}")
        return self

    @classmethod
    def from_flags(cls, values: dict[str, Any]) -> TranslateOptions:
        """Options from command-line values; a bad one is a one-line error naming its flag."""
        try:
            return cls(**values)
        except ValidationError as e:
            err = e.errors()[0]
            message = err["msg"].removeprefix("Value error, ")
            if err["loc"]:  # one field: name its flag and the value given
                flag = "--" + str(err["loc"][0]).replace("_", "-")
                message = f"{flag} {values.get(err['loc'][0])!r}: {message}"
            raise Geo2MapError(message) from None


def merge_options(options: TranslateOptions | None, overrides: dict[str, Any]) -> TranslateOptions:
    """The API's two ways of giving options, one at a time: both would leave one ignored."""
    if options is not None and overrides:
        raise TypeError(
            f"pass options either as TranslateOptions or as keywords, not both "
            f"(got options and {', '.join(sorted(overrides))})"
        )
    return options or TranslateOptions(**overrides)


# --- the command line and the README table, from the schema ------------------------------


def _cli_type(annotation: Any) -> Any:
    """The type typer parses a field as: choices and lists as text (the model checks them)."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _cli_type(inner[0]) | None
    if typing.get_origin(annotation) is Literal or typing.get_origin(annotation) is list:
        return str
    return annotation


def _choices(annotation: Any) -> list[str]:
    for arg in [annotation, *typing.get_args(annotation)]:
        if typing.get_origin(arg) is Literal:
            return [str(a) for a in typing.get_args(arg)]
    return []


def help_text(name: str) -> str:
    field = TranslateOptions.model_fields[name]
    choices = _choices(field.annotation)
    named = all(c in (field.description or "") for c in choices)
    extra = f" (one of: {', '.join(choices)})" if choices and not named else ""
    return (field.description or "") + extra


def cli_parameters(names: Sequence[str]) -> list[inspect.Parameter]:
    """typer parameters (``--chip-size`` ...) for these fields, with their defaults and help."""
    import typer

    params = []
    for name in names:
        field = TranslateOptions.model_fields[name]
        annotation = Annotated[_cli_type(field.annotation), typer.Option(help=help_text(name))]
        params.append(
            inspect.Parameter(
                name, inspect.Parameter.KEYWORD_ONLY, default=field.default, annotation=annotation
            )
        )
    return params


def with_options(names: Sequence[str]) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Add the options ``names`` to a command's signature: typer then offers them as flags,
    and the command receives them as keyword arguments."""

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        own = inspect.signature(command, eval_str=True)
        kept = [p for p in own.parameters.values() if p.kind is not p.VAR_KEYWORD]
        params = kept + cli_parameters(names)
        command.__signature__ = own.replace(parameters=params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command

    return decorate


def _default_text(name: str) -> str:
    default = TranslateOptions.model_fields[name].default
    if name == "model":
        return "the shipped model"
    if default is None:
        return "none"
    if isinstance(default, bool):
        return "on" if default else "off"
    return f"{default:g}" if isinstance(default, float) else str(default)


def options_table() -> str:
    """The README's options table (Markdown): flag, YAML key, default, meaning."""
    rows = [
        "| flag | YAML key (`options:`) | default | what it does |",
        "|---|---|---|---|",
    ]
    for name in TranslateOptions.model_fields:
        flag = "--" + name.replace("_", "-")
        meaning = help_text(name).replace("|", "\\|")
        rows.append(f"| `{flag}` | `{name}` | {_default_text(name)} | {meaning} |")
    return "\n".join(rows)


def commands_table() -> str:
    """Every other command's arguments and flags (Markdown), read from the command line."""
    import typer

    from geo2map.cli import app

    rows = ["| command | argument or flag | default | what it is |", "|---|---|---|---|"]

    def add(group: Any, prefix: str) -> None:
        for name, command in group.commands.items():
            if hasattr(command, "commands"):
                add(command, f"{prefix}{name} ")
                continue
            own = [
                p for p in command.params if name != "translate" or p.name in ("out", "data_root")
            ]
            if name == "translate-image":
                own = [p for p in own if p.name not in TranslateOptions.model_fields]
            for p in own:
                flag = "/".join(p.opts) if p.param_type_name == "option" else p.name.upper()
                default = "" if p.default is None or p.required else str(p.default)
                if isinstance(p.default, bool):
                    default = "on" if p.default else "off"
                help_ = (getattr(p, "help", None) or "").replace("|", "\\|")
                rows.append(f"| `{prefix}{name}` | `{flag}` | {default} | {help_} |")

    add(typer.main.get_command(app), "")
    return "\n".join(rows)


if __name__ == "__main__":
    print(options_table())
    print()
    print(commands_table())
