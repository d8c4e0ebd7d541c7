"""Save and load weights as safetensors + a JSON model card: no pickle anywhere."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from geo2map.errors import Geo2MapError, describe_validation_error
from geo2map.models.card import ModelCard
from geo2map.models.external import OnnxNetwork, is_external, load_external
from geo2map.models.outputs import with_outputs
from geo2map.models.registry import build_model

WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_MODEL = WEIGHTS_DIR / "default"


@dataclass(frozen=True)
class ModelRef:
    """A model file whose card is not beside it (``--card``), or drawn in one of its styles
    (``--style``, StarGAN)."""

    model: str
    card: str | None = None
    style: str | None = None

    def __str__(self) -> str:
        return self.model


ModelSource = str | Path | ModelRef


def shipped_models() -> list[str]:
    """The models that ship with geo2map, by name (``--model default``)."""
    return sorted(p.stem for p in WEIGHTS_DIR.glob("*.safetensors"))


def model_paths(path: ModelSource, by_name: bool = True) -> tuple[Path, Path]:
    """The model file and its card. ``x``, ``x.json`` or ``x.safetensors`` (or a folder
    holding ``model.*``): geo2map's safetensors + card; ``x.pt`` / ``x.onnx``: a TorchScript
    or ONNX file with ``x.json`` beside it; a :class:`ModelRef`: the two files it names;
    ``default`` (a shipped model's name, ``by_name``): its files in geo2map/models/weights."""
    if isinstance(path, ModelRef):
        weights, card = model_paths(path.model)
        return weights, Path(path.card) if path.card else card
    p = Path(path)
    if by_name and str(path) in shipped_models() and not p.exists():
        p = WEIGHTS_DIR / str(path)
    if p.is_dir():
        p = p / "model"
    if is_external(p):
        return p, p.with_suffix(".json")
    if p.suffix in (".json", ".safetensors"):
        p = p.with_suffix("")
    return p.with_suffix(".safetensors"), p.with_suffix(".json")


def save_model(
    model: nn.Module, card: ModelCard, path: str | Path, half: bool = False
) -> tuple[Path, Path]:
    """Write ``path.safetensors`` + ``path.json``. ``half`` stores floating tensors as float16
    (half the file; loading casts back to the model's float32 parameters)."""
    weights, card_path = model_paths(path, by_name=False)  # a path, never a shipped name
    weights.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    save_file(state, str(weights), metadata={"card": card.name})
    card.to_json(card_path)
    return weights, card_path


def load_card(path: ModelSource = DEFAULT_MODEL) -> tuple[Path, ModelCard]:
    """The weights file and the parsed card; refuse a missing file or an invalid card."""
    weights, card_path = model_paths(path)
    if not weights.is_file():
        raise Geo2MapError(
            f"model file {weights} is missing: give a .safetensors file with its .json card, "
            "a TorchScript (.pt) or ONNX (.onnx) file with its card, or a shipped model by "
            f"name ({', '.join(shipped_models())})"
        )
    if not card_path.is_file():
        raise Geo2MapError(
            f"model card {card_path} is missing: every model needs its card (bands, GSD, "
            "normalization, classes; docs/models.md has an example per kind); pass --card"
        )
    try:
        card = ModelCard.from_json(card_path)
    except ValidationError as e:
        raise Geo2MapError(
            describe_validation_error(e, f"model card {card_path} is not valid")
        ) from None
    except (ValueError, OSError) as e:
        first = str(e).splitlines()[0]
        raise Geo2MapError(f"model card {card_path} is not valid: {first}") from None
    if isinstance(path, ModelRef) and path.style is not None:
        check_style(card, path.style, weights)
    return weights, card


def check_style(card: ModelCard, style: str, weights: Path) -> None:
    """Refuse a style the model does not draw (or any style, for a model of one style)."""
    styles = sorted(card.architecture.kwargs.get("palettes") or {})
    if not styles:
        raise Geo2MapError(
            f"--style {style}: model {weights} draws one style only (StarGAN models have "
            "several); drop --style"
        )
    if style not in styles:
        raise Geo2MapError(
            f"--style {style}: model {weights} knows the styles {', '.join(styles)}; pick one"
        )


def load_model(path: ModelSource = DEFAULT_MODEL) -> tuple[nn.Module, ModelCard]:
    """The network as geo2map calls it (models/outputs.py) and its card: a TorchScript or
    ONNX file as it is, else the card's architecture with its safetensors weights."""
    weights, card = load_card(path)
    if is_external(weights):
        net = load_external(weights)
        if isinstance(net, OnnxNetwork):
            net.check_bands(weights, len(card.input.bands))
        return with_outputs(net, card).eval(), card
    net = load_weights(weights, card)
    if isinstance(path, ModelRef) and path.style is not None:
        net.set_style(path.style)
    return with_outputs(net, card).eval(), card


def load_weights(weights: Path, card: ModelCard) -> nn.Module:
    """Build the card's architecture and load its weights; refuse anything inconsistent."""
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as e:
        raise Geo2MapError(
            f"model weights {weights} are not a valid safetensors file: {e}"
        ) from None
    try:
        model = build_model(card.architecture)
    except (ValueError, TypeError) as e:  # an unknown architecture, encoder or keyword
        raise Geo2MapError(f"model card of {weights}: {e}") from None
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # a tensor of another shape
        detail = next((ln.strip() for ln in str(e).splitlines() if "size mismatch" in ln), "")
        raise Geo2MapError(
            f"weights {weights} do not fit architecture {card.architecture.name!r} "
            f"of its card: {detail[:160]}"
        ) from None
    if missing or unexpected:
        raise Geo2MapError(
            f"weights {weights} do not fit architecture {card.architecture.name!r} "
            f"({len(missing)} missing, {len(unexpected)} unexpected tensors)"
        )
    return model
