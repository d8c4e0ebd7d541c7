"""The typed training configuration: one object per run, from the pipeline YAML + CLI overrides.

Every section forbids unknown keys, so a typo fails loudly with one line naming the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from geo2map.errors import Geo2MapError
from geo2map.yaml_input import parse_yaml, read_yaml

# partial labels ("none of these classes") are coded as bit sets in uint16 label maps
MAX_CLASSES = 15


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MaskSourceConfig(_Strict):
    """A folder (or catalog name) of img/ + mask/ files of any size, e.g. the Dubai tiles."""

    name: str = Field(description="short name, used in logs and the card's validation split")
    data: str = Field(description="catalog name or folder with img/ and mask/")
    labels: Literal["classes", "road"] = Field(
        default="classes", description="classes: ids 0..4 (255 unlabelled); road: 1 road, 0 not"
    )
    gsd_m: tuple[float, float] = Field(description="pixel size range of the source, metres")
    batch: int = Field(default=2, ge=0, description="crops per step")
    val: int = Field(default=8, ge=1, description="files held out for validation")


class LabelLayerConfig(_Strict):
    """A vector layer whose features are one class, or whose attribute maps to classes."""

    file: str = Field(
        description="vector file (GeoPackage, GeoJSON ...) or label raster (GeoTIFF of class "
        "values), or a catalog name"
    )
    class_: str | None = Field(
        default=None, alias="class", description="the model class its features are"
    )
    attribute: str | None = Field(default=None, description="or: the attribute holding the class")
    classes: dict[str, str | None] | None = Field(
        default=None,
        description="attribute (or raster) value -> model class name (null: unlabelled)",
    )
    buffer: float = Field(default=0.0, ge=0, description="lines and points: half-width, map units")

    @model_validator(mode="after")
    def _one_way(self) -> LabelLayerConfig:
        if self.class_ is not None and self.attribute is not None:
            raise ValueError("give class, or attribute with classes (value -> class), not both")
        if self.attribute is not None and not self.classes:
            raise ValueError("attribute needs classes: attribute value -> model class name")
        return self


class SceneSourceConfig(_Strict):
    """A georeferenced scene (or catalog name) with GIS label layers: chips on the model grid."""

    name: str = Field(description="short name, used in logs and the card's validation split")
    scene: str = Field(description="GeoTIFF/COG/VRT path or catalog name")
    labels: list[LabelLayerConfig] = Field(min_length=1)
    complete: bool = Field(
        default=False,
        description="every instance of the labelled class is drawn: other pixels are known "
        "not to be it (else they are unlabelled and not trained on)",
    )
    holdout: tuple[float, float, float, float] | None = Field(
        default=None, description="validation area XMIN YMIN XMAX YMAX in the scene's CRS"
    )
    holdout_fraction: float = Field(
        default=0.25, gt=0, lt=1, description="without holdout: share of blocks held out"
    )
    block: int = Field(default=256, ge=32, description="block side (model-grid px) of the split")
    batch: int = Field(default=4, ge=0, description="crops per step")


class DataConfig(_Strict):
    # A catalog name (data_catalog.yaml) or a folder path; moscow and landcover may be null.
    moscow: str | None = "osm-moscow-pairs"
    landcover: str | None = "landcoverai-chips"
    moscow_val: int = Field(default=100, ge=1, description="pairs held out for validation")
    landcover_val: int = Field(default=100, ge=1, description="chips held out for validation")
    crop: int = Field(default=256, ge=16)
    moscow_batch: int = Field(default=6, ge=0)
    landcover_batch: int = Field(default=4, ge=0)
    colour_jitter: float = Field(
        default=0.0, ge=0, lt=1, description="brightness/contrast/saturation/gain jitter strength"
    )
    landcover_scale: tuple[float, float] = Field(
        default=(1.0, 1.0), description="LandCover.ai batches resized by a factor in this range"
    )
    limit_train: int | None = Field(default=None, ge=1, description="use only the first N (tests)")
    # Ground sample distance of the sources: crops are resampled to model.gsd_m, as inference
    # resamples scenes. null = use the source at its native size.
    moscow_gsd_m: tuple[float, float] | None = Field(
        default=None, description="pixel size range of the Moscow pairs (0.672 m at zoom 17)"
    )
    landcover_gsd_m: tuple[float, float] | None = Field(
        default=None, description="pixel size range of the LandCover.ai chips"
    )
    scale_jitter: float = Field(
        default=0.0, ge=0, lt=1, description="extra log-uniform scale change, +-this fraction"
    )
    degrade: float = Field(
        default=0.0, ge=0, le=1, description="probability of each of gamma/haze/blur/noise/JPEG"
    )
    masks: list[MaskSourceConfig] = Field(
        default_factory=list, description="more image + mask sources (Dubai, US roads)"
    )
    scenes: list[SceneSourceConfig] = Field(
        default_factory=list, description="georeferenced scenes with GIS label layers"
    )
    batch_scale: int = Field(
        default=1, ge=1, description="multiplies every source's crops per step (a GPU takes 4x)"
    )
    workers: int = Field(
        default=0, ge=0, description="DataLoader worker processes preparing batches ahead"
    )


class ClassConfig(_Strict):
    name: str = Field(min_length=1)
    color: tuple[int, int, int] = Field(description="RGB of the class in masks and renders")


class ModelConfig(_Strict):
    name: str = "unet"
    kwargs: dict[str, Any] = Field(default_factory=dict)
    classes: list[ClassConfig] | None = Field(
        default=None,
        description="the mask's classes in id order; with init_from, the starting model's "
        "classes first, then new ones (each gets a new head channel). Default: the starting "
        "model's classes (other, building, vegetation, water, road)",
    )

    @model_validator(mode="after")
    def _classes_are_a_list(self) -> ModelConfig:
        if self.classes is not None:
            names = [c.name for c in self.classes]
            twice = next((n for n in names if names.count(n) > 1), None)
            if twice is not None:
                raise ValueError(f"class {twice!r} is listed twice; class names must be unique")
            if not 2 <= len(names) <= MAX_CLASSES:
                raise ValueError(f"{len(names)} classes: a mask has 2 to {MAX_CLASSES} classes")
        return self

    gsd_m: float = Field(default=0.6, gt=0)
    init_from: str | None = Field(
        default=None,
        description="start from these weights ('default' = the shipped model, or a model path)",
    )
    mean: list[float] = Field(default_factory=lambda: [0.5, 0.5, 0.5])
    std: list[float] = Field(default_factory=lambda: [0.5, 0.5, 0.5])
    freeze_encoder: bool = Field(
        default=False,
        description="train the decoder and heads only (few labels: keep what the encoder knows)",
    )


class DiscriminatorConfig(_Strict):
    name: str = "patchgan"
    kwargs: dict[str, Any] = Field(default_factory=dict)


class LossConfig(_Strict):
    render_ce: float = Field(default=0.0, ge=0, description="CE against the palette-snapped map")
    render_l1: float = Field(default=0.0, ge=0, description="L1 against the real map pixels")
    render_class_weights: list[float] | None = Field(
        default=None,
        description="render cross-entropy weight per mask class, given to each palette colour "
        "of that class (thin streets and buildings up against the large areas)",
    )
    gan: float = Field(default=0.0, ge=0, description="adversarial weight (needs a discriminator)")
    gan_mode: Literal["lsgan", "vanilla"] = "lsgan"
    mask_ce: float = Field(default=1.0, ge=0)
    mask_dice: float = Field(default=0.0, ge=0)
    mask_class_weights: list[float] | None = Field(
        default=None, description="cross-entropy weight per class (rare roads/buildings up)"
    )
    moscow_mask: float = Field(
        default=0.2, ge=0, description="weight of OSM-derived masks vs LandCover.ai"
    )
    render_from_masks: float = Field(
        default=0.0,
        ge=0,
        description="render CE on mask-only samples: the palette colours of the pixel's class",
    )
    cycle: float = Field(default=10.0, ge=0)
    identity: float = Field(default=0.5, ge=0)
    kl: float = Field(default=0.01, ge=0, description="UNIT: weight of the latent KL terms")
    style_class: float = Field(
        default=1.0, ge=0, description="StarGAN: weight of the style-classification terms"
    )
    paired: float = Field(
        default=0.0, ge=0, description="StarGAN: L1 to the paired target where a pair exists"
    )
    paired_ce: float = Field(
        default=0.0,
        ge=0,
        description="StarGAN: cross-entropy of the paired drawing's colours among its style's "
        "palette (each pixel's target: the nearest palette colour of the paired picture)",
    )


class OptimConfig(_Strict):
    lr: float = Field(default=2e-3, gt=0)
    lr_d: float = Field(default=2e-4, gt=0)
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = Field(default=1e-4, ge=0)
    warmup_steps: int = Field(default=50, ge=0)
    schedule: Literal["cosine", "constant", "linear"] = "cosine"


class TrainLoopConfig(_Strict):
    steps: int = Field(default=1000, ge=1)
    checkpoint_every: int = Field(default=100, ge=1)
    val_every: int = Field(default=200, ge=1)
    val_moscow: int = Field(default=16, ge=1, description="val pairs scored at each validation")
    val_landcover: int = Field(default=50, ge=1)
    grid_samples: int = Field(default=4, ge=1)
    log_every: int = Field(default=10, ge=1)
    pool_size: int = Field(default=50, ge=0, description="CycleGAN image pool")
    max_minutes: float | None = Field(
        default=None,
        gt=0,
        description="stop after this wall-clock time of this run (validated, checkpointed, "
        "'last' saved); the schedule still follows train.steps",
    )
    bf16: bool = True


class PipelineConfig(_Strict):
    name: str
    mode: Literal["pix2pix", "cyclegan", "stargan", "unit"] = "pix2pix"
    description: str = ""
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="auto: CUDA when available, else CPU"
    )
    compile: bool = Field(default=False, description="torch.compile the generator")
    threads: int | None = Field(
        default=None, ge=1, description="torch threads; null = torch default"
    )
    out_dir: str = "runs/default"
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    reverse_model: ModelConfig | None = None  # CycleGAN map -> sat generator
    discriminator: DiscriminatorConfig | None = None
    loss: LossConfig = Field(default_factory=LossConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    train: TrainLoopConfig = Field(default_factory=TrainLoopConfig)


def _set(doc: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = doc
    for k in keys[:-1]:
        if not isinstance(node.get(k), dict):
            node[k] = {}
        node = node[k]
    node[keys[-1]] = value


def parse_overrides(overrides: list[str] | None) -> dict[str, Any]:
    """``["train.steps=10", "data.landcover=null"]`` -> nested dict; values parsed as YAML."""
    doc: dict[str, Any] = {}
    for item in overrides or []:
        if "=" not in item:
            raise Geo2MapError(f"override {item!r} must look like section.key=value")
        key, raw = item.split("=", 1)
        _set(doc, key.strip(), parse_yaml(raw, f"--set {item}"))
    return doc


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def validate_config(doc: Any, source: str = "config") -> PipelineConfig:
    if not isinstance(doc, dict):
        raise Geo2MapError(f"{source}: a pipeline YAML must be a mapping of keys")
    try:
        return PipelineConfig.model_validate(doc)
    except ValidationError as e:
        err = e.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            raise Geo2MapError(f"{source}: unknown key {key!r}") from None
        raise Geo2MapError(
            f"{source}: key {key!r}: {err['msg']} (got {err.get('input')!r})"
        ) from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> PipelineConfig:
    path = Path(path)
    if not path.is_file():
        raise Geo2MapError(f"pipeline file {path} not found")
    doc = read_yaml(path) or {}
    if isinstance(doc, dict):
        doc = _merge(doc, parse_overrides(overrides))
    return validate_config(doc, str(path))
