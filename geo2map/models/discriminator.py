"""The PatchGAN discriminator of pix2pix / CycleGAN (70x70 receptive field with 3 layers).

Each output logit judges one 70x70 patch of its input as real or fake. Batch norm (not
instance norm) to match the generators; the discriminator never runs at inference anyway.
"""

from __future__ import annotations

import torch
from torch import nn


class PatchGAN(nn.Module):
    def __init__(
        self, in_channels: int = 6, base: int = 64, n_layers: int = 3, norm: str = "batch"
    ) -> None:
        super().__init__()

        def norm_layer(c: int) -> nn.Module:
            return nn.BatchNorm2d(c) if norm == "batch" else nn.Identity()

        layers: list[nn.Module] = [nn.Conv2d(in_channels, base, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        ch = base
        for i in range(1, n_layers + 1):
            nxt = base * min(2**i, 8)
            stride = 2 if i < n_layers else 1
            layers += [
                nn.Conv2d(ch, nxt, 4, stride, 1, bias=norm != "batch"),
                norm_layer(nxt),
                nn.LeakyReLU(0.2, True),
            ]
            ch = nxt
        layers.append(nn.Conv2d(ch, 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def receptive_field(n_layers: int = 3) -> int:
    """Receptive field of one output logit (70 for n_layers=3), computed backwards."""
    rf = 4  # final conv, stride 1
    strides = [2] * n_layers + [1]  # conv_1..conv_n, the last of them stride 1
    kernels = [4] * (n_layers + 1)
    for k, s in zip(reversed(kernels), reversed(strides), strict=True):
        rf = (rf - 1) * s + k
    return rf
