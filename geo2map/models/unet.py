"""The geo2map U-Net translator: one encoder-decoder, two heads (map render + class logits).

Choices that matter for tiled inference (DESIGN.md lessons):
- batch norm (eval mode at inference) or no norm: never instance norm, whose per-chip
  statistics make neighbouring chips disagree in colour;
- upsampling by bilinear resize + 3x3 conv, not transposed convolution (no checkerboards).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from geo2map.models.palette_head import (
    add_class_logits,
    check_decode,
    palette_tensor,
    render_from_logits,
)


def _norm(channels: int, kind: str) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}: use 'batch' or 'none'")


class ConvBlock(nn.Sequential):
    def __init__(self, cin: int, cout: int, norm: str) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=norm == "none"),
            _norm(cout, norm),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=norm == "none"),
            _norm(cout, norm),
            nn.ReLU(inplace=True),
        )


class Up(nn.Module):
    """Resize x2 then conv, concatenate the skip, then a conv block."""

    def __init__(self, cin: int, cskip: int, cout: int, norm: str) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(cin, cout, 3, padding=1)
        self.block = ConvBlock(cout + cskip, cout, norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.block(torch.cat([self.reduce(x), skip], dim=1))


class UNetTranslator(nn.Module):
    """U-Net generator with a render head (RGB in [0, 1]) and a mask head (class logits).

    ``render_mode``:
    - ``"rgb"``: the render head predicts colours directly (sigmoid);
    - ``"palette"``: the render head predicts logits over ``palette`` colours; in training the
      render is their softmax-weighted mix (differentiable), in eval mode the most likely
      colour: crisp flat map colours instead of L1 grey blur. With ``palette_class`` (the
      class of each colour) the mask logits are added to their colours' logits: the map is
      rendered from the predicted class map, refined by the render head.
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 5,
        base: int = 32,
        depth: int = 4,
        norm: str = "batch",
        render_mode: str = "rgb",
        palette: list[list[int]] | None = None,
        palette_class: list[int] | None = None,
        palette_decode: str = "argmax",
    ) -> None:
        super().__init__()
        widths = [base * 2**i for i in range(depth + 1)]
        self.stem = ConvBlock(in_channels, widths[0], norm)
        self.downs = nn.ModuleList(ConvBlock(widths[i], widths[i + 1], norm) for i in range(depth))
        self.ups = nn.ModuleList(
            Up(widths[i + 1], widths[i], widths[i], norm) for i in reversed(range(depth))
        )
        self.render_mode = render_mode
        self.palette_class = palette_class
        self.palette_decode = check_decode(palette_decode)
        if render_mode == "rgb":
            self.render_head = nn.Conv2d(widths[0], 3, 1)
        elif render_mode == "palette":
            self.register_buffer("palette", palette_tensor(palette), persistent=True)
            self.render_head = nn.Conv2d(widths[0], len(palette), 1)
        else:
            raise ValueError(f"unknown render_mode {render_mode!r}: use 'rgb' or 'palette'")
        self.mask_head = nn.Conv2d(widths[0], num_classes, 1)
        self.multiple = 2**depth

    def features(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.stem(x)]
        for down in self.downs:
            skips.append(down(F.max_pool2d(skips[-1], 2)))
        y = skips.pop()
        for up in self.ups:
            y = up(y, skips.pop())
        return y

    def render_logits(self, feats: torch.Tensor) -> torch.Tensor:
        return self.render_head(feats)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.features(x)
        out = self.render_head(feats)
        mask = self.mask_head(feats)
        if self.render_mode == "rgb":
            render = torch.sigmoid(out)
        else:
            out = add_class_logits(out, mask, self.palette_class)
            render = render_from_logits(out, self.palette, self, self.palette_decode)
        return {"render": render, "mask_logits": mask, "render_logits": out}
