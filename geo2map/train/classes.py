"""The classes a trained mask has, and a starting model's weights grown to new classes.

A fine-tune may add classes (``model.classes``): the starting model's classes keep their ids,
head channels and meaning (so its training sources and the palette still label them right),
and each new class gets a new output channel of the mask head. That channel starts as a copy
of the old class the starting model most often calls the new class's labelled pixels (a new
"solar panel" starts as "building"; the weight imprinting of few-shot learning, in its
simplest form): from a random channel a short fine-tune learns little, from the copy it only
has to learn what tells the two apart.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from geo2map.errors import Geo2MapError
from geo2map.models.card import DEFAULT_CLASSES, ClassInfo
from geo2map.train.config import PipelineConfig

DEFAULT_CLASS_COUNT = len(DEFAULT_CLASSES)


def start_model_path(ref: str) -> Path:
    """``model.init_from``: a shipped model's name ('default', 'stargan', ...) or a path."""
    from geo2map.models.io import WEIGHTS_DIR, shipped_models

    path = Path(ref)
    return WEIGHTS_DIR / ref if ref in shipped_models() and not path.exists() else path


def mask_classes(cfg: PipelineConfig) -> list[ClassInfo]:
    """The YAML's classes, else the starting model's, else the default five; refuse a list
    that renumbers classes the starting model or the built-in sources already label."""
    from geo2map.models.io import load_card

    base = [ClassInfo(**c) for c in DEFAULT_CLASSES]
    origin = "the built-in sources (moscow, landcover, masks)"
    if cfg.model.init_from:
        _, card = load_card(start_model_path(cfg.model.init_from))
        base, origin = card.classes, f"model.init_from {cfg.model.init_from}"
    if cfg.model.classes is None:
        return base
    classes = [ClassInfo(id=i, name=c.name, color=c.color) for i, c in enumerate(cfg.model.classes)]
    d = cfg.data
    fixed = bool(cfg.model.init_from or d.moscow or d.landcover or d.masks)
    names, base_names = [c.name for c in classes], [c.name for c in base]
    if fixed and names[: len(base_names)] != base_names:
        raise Geo2MapError(
            f"model.classes must begin with the classes of {origin} in their order "
            f"({', '.join(base_names)}); add new classes after them"
        )
    return classes


def with_class_count(kwargs: dict, classes: list[ClassInfo]) -> dict:
    """Builder keywords with the mask's channel count (left out at the default five, so the
    shipped cards' architectures compare equal)."""
    if len(classes) == DEFAULT_CLASS_COUNT:
        return kwargs
    return {**kwargs, "num_classes": len(classes)}


def load_grown(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """Load ``state`` into ``model`` whose mask head may have more output channels: the
    tensors that grew along their first dimension (output channels; the mask's come last)
    keep the starting values in their first rows and their fresh initialisation after.
    Returns the names of the grown tensors."""
    own = model.state_dict()
    merged, grown = {}, []
    for key, value in state.items():
        target = own.get(key)
        if target is not None and target.shape != value.shape:
            if target.shape[1:] != value.shape[1:] or target.shape[0] < value.shape[0]:
                raise Geo2MapError(
                    f"weights {key} of shape {tuple(value.shape)} do not fit "
                    f"{tuple(target.shape)}: only new mask classes may change the model"
                )
            value = torch.cat([value.to(target.dtype), target[value.shape[0] :]])
            grown.append(key)
        merged[key] = value
    model.load_state_dict(merged)
    return grown


def output_layer(model: torch.nn.Module) -> torch.nn.Module | None:
    """The layer that draws the mask logits (smp's segmentation head, geo2map's mask head)."""
    inner = getattr(model, "net", model)
    for name in ("segmentation_head", "mask_head"):
        if isinstance(layer := getattr(inner, name, None), torch.nn.Module):
            return layer
    return None


def closest_old_classes(
    model: torch.nn.Module,
    samples: list,
    new_ids: list[int],
    old_count: int,
    mean: list[float],
    std: list[float],
) -> dict[int, int]:
    """For each new class with labelled pixels in ``samples``: the class the starting
    ``model`` (``old_count`` classes) calls most of them."""
    from geo2map.train.evaluate import predict_samples

    counts = {k: np.zeros(old_count, np.int64) for k in new_ids}
    for sample in samples:
        _, [predicted] = predict_samples(model, [sample], mean, std, 1.0)
        for k in new_ids:
            counts[k] += np.bincount(predicted[sample.mask == k], minlength=old_count)
    return {k: int(c.argmax()) for k, c in counts.items() if c.sum() > 0}


def copy_class_channels(model: torch.nn.Module, n_classes: int, sources: dict[int, int]) -> None:
    """Make each new class's output channel (``sources``: new id -> old id) a copy of the old
    class's: weights and bias (the mask's channels are the layer's last ``n_classes``)."""
    layer = output_layer(model)
    if layer is None:
        return
    params = dict(layer.named_parameters())
    weight = next(p for n, p in params.items() if n.endswith("weight"))
    bias = next((p for n, p in params.items() if n.endswith("bias")), None)
    first = weight.shape[0] - n_classes
    with torch.no_grad():
        for new, old in sources.items():
            weight[first + new] = weight[first + old]
            if bias is not None:
                bias[first + new] = bias[first + old]
