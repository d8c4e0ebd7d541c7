"""A segmentation-models-pytorch U-Net with geo2map's two heads, for comparison.

Encoders are built with ``encoder_weights=None``: nothing is downloaded at run time.
The render is either RGB (sigmoid) or, with ``render_mode="palette"``, logits over map
colours (see ``palette_head``, optionally rendered from the class map with
``palette_class``), exactly like the geo2map U-Net.
"""

from __future__ import annotations

import segmentation_models_pytorch as smp
import torch
from torch import nn

from geo2map.models.palette_head import (
    add_class_logits,
    check_decode,
    palette_tensor,
    render_from_logits,
)


class SmpUNetTranslator(nn.Module):
    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 5,
        encoder: str = "resnet18",
        decoder_channels: list[int] | None = None,
        render_mode: str = "rgb",
        palette: list[list[int]] | None = None,
        palette_class: list[int] | None = None,
        palette_decode: str = "argmax",
        gate_classes: list[int] | None = None,
    ) -> None:
        super().__init__()
        if render_mode not in ("rgb", "palette"):
            raise ValueError(f"unknown render_mode {render_mode!r}: use 'rgb' or 'palette'")
        self.render_mode = render_mode
        self.palette_class = palette_class
        self.palette_decode = check_decode(palette_decode)
        render_channels = 3
        if render_mode == "palette":
            self.register_buffer("palette", palette_tensor(palette), persistent=True)
            render_channels = len(palette or [])
        self.render_channels = render_channels
        # the class of each palette colour, for the "mask-gated" decode (not a weight)
        gate = torch.tensor(gate_classes if gate_classes is not None else [], dtype=torch.long)
        self.register_buffer("gate", gate, persistent=False)
        self.net = smp.Unet(
            encoder_name=encoder,
            encoder_weights=None,
            in_channels=in_channels,
            classes=render_channels + num_classes,
            decoder_channels=tuple(decoder_channels or (256, 128, 64, 32, 16)),
            decoder_interpolation="bilinear",  # resize, not nearest blocks
        )
        self.multiple = 32

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.net(x)
        logits, mask = out[:, : self.render_channels], out[:, self.render_channels :]
        if self.render_mode == "rgb":
            return {"render": torch.sigmoid(logits), "mask_logits": mask}
        logits = add_class_logits(logits, mask, self.palette_class)
        gate = self.gate if self.gate.numel() else None
        render = render_from_logits(logits, self.palette, self, self.palette_decode, mask, gate)
        return {"render": render, "mask_logits": mask, "render_logits": logits}
