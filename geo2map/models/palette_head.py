"""The palette render head shared by the U-Nets: logits over a fixed set of map colours.

In training the render is the softmax-weighted mix of the colours (differentiable); in eval
mode it is the most likely colour per pixel (crisp flat map colours instead of L1 grey blur).
"""

from __future__ import annotations

import torch
from torch import nn


def palette_tensor(palette: list[list[int]] | None) -> torch.Tensor:
    if not palette:
        raise ValueError("render_mode 'palette' needs a palette of RGB colours")
    return torch.tensor(palette, dtype=torch.float32) / 255.0


def add_class_logits(
    palette_logits: torch.Tensor, mask_logits: torch.Tensor, palette_class: list[int] | None
) -> torch.Tensor:
    """Render from the predicted class map, refined: each palette colour's logit plus the
    logit of its land-cover class (``palette_class[k]``). The mask head, which also learns
    from LandCover.ai, then decides building / vegetation / water / road for the render, and
    the render head only chooses among the colours of a class (residential or commercial...)."""
    if palette_class is None:
        return palette_logits
    index = torch.tensor(palette_class, device=mask_logits.device)
    return palette_logits + mask_logits.index_select(1, index).to(palette_logits.dtype)


DECODES = ("argmax", "nearest-mean", "mask-gated")


def check_decode(decode: str) -> str:
    if decode not in DECODES:
        raise ValueError(f"unknown palette decode {decode!r}: use one of {', '.join(DECODES)}")
    return decode


def render_from_logits(
    logits: torch.Tensor,
    palette: torch.Tensor,
    module: nn.Module,
    decode: str = "argmax",
    mask_logits: torch.Tensor | None = None,
    gate: torch.Tensor | None = None,
) -> torch.Tensor:
    """(B, K, H, W) palette logits -> (B, 3, H, W) render in [0, 1].

    Training: the softmax-weighted mix (differentiable). Inference, always one palette
    colour per pixel: ``argmax`` takes the most likely colour; ``nearest-mean`` the palette
    colour nearest the expected colour, i.e. the flat colour with the least expected squared
    error: where the model hesitates between a white street and a beige building it draws
    the light grey between them rather than betting on one. ``mask-gated`` draws, among the
    colours of the pixel's most likely land-cover class (``gate[k]`` is colour k's class), the
    most likely one: the render then agrees with the mask everywhere (a building in the mask
    is a building colour in the render), and the palette head only chooses within a class
    (residential or commercial, park or forest, street or primary road).
    """
    if module.training:
        weights = torch.softmax(logits.float(), dim=1)
        return torch.einsum("bkhw,kc->bchw", weights, palette)
    if check_decode(decode) == "argmax":
        index = logits.argmax(dim=1)
    elif decode == "mask-gated":
        if mask_logits is None or gate is None:
            raise ValueError("the 'mask-gated' decode needs the palette colours' classes")
        allowed = gate.view(1, -1, 1, 1) == mask_logits.argmax(dim=1, keepdim=True)
        index = logits.float().masked_fill(~allowed, float("-inf")).argmax(dim=1)
    else:  # nearest-mean
        mean = torch.einsum("bkhw,kc->bhwc", torch.softmax(logits.float(), dim=1), palette)
        index = torch.cdist(mean.reshape(-1, 3), palette).argmin(dim=1).reshape(mean.shape[:3])
    return palette[index].permute(0, 3, 1, 2)


def colour_distances(render: torch.Tensor, colours: torch.Tensor) -> torch.Tensor:
    """Squared distance of each pixel of ``render`` (B, 3, H, W) to each of ``colours``
    (K, 3): (B, K, H, W)."""
    return ((render[:, None] - colours[None, :, :, None, None]) ** 2).sum(dim=2)


def nearest_colour_logits(
    render: torch.Tensor, colours: torch.Tensor, classes: torch.Tensor, num_classes: int
) -> torch.Tensor:
    """Class logits of a map drawn in flat colours (``colours`` (K, 3) in [0, 1], each of
    class ``classes[k]``): minus the squared distance to the class's nearest colour, so the
    nearest colour's class wins; a class without a colour gets -1e4."""
    return _class_logits(colour_distances(render, colours), classes, num_classes)


def read_map(
    render: torch.Tensor,
    colours: torch.Tensor,
    classes: torch.Tensor,
    num_classes: int,
    snap: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(render, class logits) of a map drawn in ``colours``: the logits as
    :func:`nearest_colour_logits`, and with ``snap`` the render redrawn in the palette, each
    pixel its nearest colour (per pixel, so tiles agree). One distance computation for both."""
    distance = colour_distances(render, colours)
    logits = _class_logits(distance, classes, num_classes)
    return (_nearest(distance, colours, render.dtype) if snap else render), logits


def nearest_colours(render: torch.Tensor, colours: torch.Tensor) -> torch.Tensor:
    """``render`` (B, 3, H, W) in [0, 1] redrawn in ``colours`` (K, 3), each pixel its
    nearest colour."""
    return _nearest(colour_distances(render, colours), colours, render.dtype)


def _nearest(distance: torch.Tensor, colours: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return colours[distance.argmin(dim=1)].permute(0, 3, 1, 2).to(dtype)


def _class_logits(distance: torch.Tensor, classes: torch.Tensor, num_classes: int) -> torch.Tensor:
    logits = torch.full(
        (distance.shape[0], num_classes, *distance.shape[-2:]), -1e4, device=distance.device
    )
    for k in range(num_classes):
        of_class = distance[:, classes == k]
        if of_class.shape[1]:
            logits[:, k] = -of_class.min(dim=1).values * 1e3
    return logits
