"""A segmentation-models-pytorch U-Net with geo2map's two heads, for comparison.

Encoders are built with ``encoder_weights=None``: nothing is downloaded at run time.
"""

from __future__ import annotations

import segmentation_models_pytorch as smp
import torch
from torch import nn


class SmpUNetTranslator(nn.Module):
    def __init__(
        self, in_channels: int = 3, num_classes: int = 5, encoder: str = "resnet18"
    ) -> None:
        super().__init__()
        self.net = smp.Unet(
            encoder_name=encoder,
            encoder_weights=None,
            in_channels=in_channels,
            classes=3 + num_classes,
            decoder_interpolation="bilinear",  # resize, not nearest blocks
        )
        self.multiple = 32

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.net(x)
        return {"render": torch.sigmoid(out[:, :3]), "mask_logits": out[:, 3:]}
