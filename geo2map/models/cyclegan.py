"""The CycleGAN ResNet generator, adapted for tiled inference.

Johnson et al. / CycleGAN layout (c7s1-64, two stride-2 downs, N residual blocks, two ups,
c7s1-3) with two DESIGN.md changes: batch norm instead of instance norm (per-chip statistics
make neighbouring chips disagree), and bilinear resize + conv instead of transposed conv
(no checkerboards). Optional mask head so the sat->map generator fits geo2map's interface.
With ``snap_palette`` (the map style's colours) eval mode draws each pixel in its nearest
palette colour, as StarGAN's and UNIT's maps are drawn; training sees the network's colours.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from geo2map.models.palette_head import nearest_colours


def norm_layer(c: int, kind: str) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(c)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}: use 'batch' or 'none'")


class ResBlock(nn.Module):
    def __init__(self, c: int, norm: str) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), norm_layer(c, norm), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), norm_layer(c, norm),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        num_classes: int = 5,
        base: int = 64,
        n_blocks: int = 6,
        norm: str = "batch",
        snap_palette: list[list[int]] | None = None,
    ) -> None:
        super().__init__()
        colours = None
        if snap_palette is not None:
            colours = torch.tensor(snap_palette, dtype=torch.float32)[:, :3] / 255.0
        self.snap_colours: torch.Tensor | None
        self.register_buffer("snap_colours", colours, persistent=False)
        self.snap = snap_palette is not None
        self.stem = nn.Sequential(
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_channels, base, 7),
            norm_layer(base, norm),
            nn.ReLU(True),
        )
        self.down = nn.Sequential(
            nn.Conv2d(base, base * 2, 3, 2, 1), norm_layer(base * 2, norm), nn.ReLU(True),
            nn.Conv2d(base * 2, base * 4, 3, 2, 1), norm_layer(base * 4, norm), nn.ReLU(True),
        )  # fmt: skip
        self.blocks = nn.Sequential(*[ResBlock(base * 4, norm) for _ in range(n_blocks)])
        self.up1 = nn.Sequential(
            nn.Conv2d(base * 4, base * 2, 3, 1, 1), norm_layer(base * 2, norm), nn.ReLU(True)
        )
        self.up2 = nn.Sequential(
            nn.Conv2d(base * 2, base, 3, 1, 1), norm_layer(base, norm), nn.ReLU(True)
        )
        self.render_head = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(base, out_channels, 7))
        self.mask_head = nn.Conv2d(base, num_classes, 1) if num_classes > 0 else None
        self.multiple = 4

    def snap_palette(self) -> torch.Tensor | None:
        """The colours eval mode snaps the render to, None without snap."""
        return self.snap_colours if self.snap else None

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        size = x.shape[-2:]
        y = self.blocks(self.down(self.stem(x)))
        y = self.up1(F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=False))
        y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
        y = self.up2(y)
        # tanh in [-1, 1] as in CycleGAN, reported as [0, 1]
        out = {"render": (torch.tanh(self.render_head(y)) + 1) / 2}
        palette = self.snap_palette()
        if palette is not None and not self.training:
            out["render"] = nearest_colours(out["render"].float(), palette)
        if self.mask_head is not None:
            out["mask_logits"] = self.mask_head(y)
        return out
