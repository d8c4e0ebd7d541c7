"""Every model yields what geo2map writes: a render and class logits.

geo2map's own translators return both (``{"render", "mask_logits"}``). A segmentation model
returns class logits only: its render is drawn in its classes' colours (flat map colours,
crisp class edges). An image-to-image model returns an RGB image only: its mask is the class
whose colour is nearest to each pixel. The card's ``output`` says which a model is.
"""

from __future__ import annotations

import torch
from torch import nn

from geo2map.models.card import ModelCard
from geo2map.models.palette_head import nearest_colour_logits


class _WithClassColours(nn.Module):
    """A network and its card's class colours (0..1), to draw what the network lacks."""

    def __init__(self, net: nn.Module, card: ModelCard) -> None:
        super().__init__()
        self.net = net
        colours = torch.tensor([c.color for c in card.classes], dtype=torch.float32) / 255.0
        self.register_buffer("colours", colours)


class ClassLogitsModel(_WithClassColours):
    """A segmentation network (B, K, H, W logits) with a render in its classes' colours."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.net(x)
        classes = logits.argmax(dim=1)
        render = self.colours[classes].permute(0, 3, 1, 2).to(logits.dtype)
        return {"render": render, "mask_logits": logits}


class RgbModel(_WithClassColours):
    """An image-to-image network (B, 3, H, W in [0, 1]) with a mask of nearest colours."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        render = self.net(x).float().clamp(0, 1)
        classes = torch.arange(len(self.colours), device=render.device)  # one colour each
        logits = nearest_colour_logits(render, self.colours, classes, len(self.colours))
        return {"render": render, "mask_logits": logits}


def with_outputs(net: nn.Module, card: ModelCard) -> nn.Module:
    """The network as geo2map calls it, for the output kind its card states."""
    if card.output == "class_logits":
        return ClassLogitsModel(net, card)
    if card.output == "rgb":
        return RgbModel(net, card)
    return net
