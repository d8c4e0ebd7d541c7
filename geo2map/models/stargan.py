"""StarGAN (Choi et al. 2018): one generator for several target styles, and its discriminator.

The generator G(x, c) is the tiling-safe CycleGAN ResNet generator (batch norm, resize +
conv upsampling: models/cyclegan.py) whose input is the image plus one constant plane per
style, the one-hot style label ``c`` (as in the paper). Its styles here: ``photo`` (the
satellite image itself), ``osm`` (OpenStreetMap's standard style) and ``landcover`` (the
land-cover mask drawn in its class colours), so map -> photo comes from the same network.

At inference the model draws one style, chosen by name (``--style``; ``style`` below), and
its mask is read back from the render: each pixel's class is the class of the style's
nearest palette colour (a map style is a small set of flat colours, each of one class).
The discriminator is a PatchGAN trunk with two heads: real/fake per patch, and the style of
the whole image (the domain-classification head of the paper).
"""

from __future__ import annotations

import torch
from torch import nn

from geo2map.models.cyclegan import ResnetGenerator
from geo2map.models.discriminator import PatchGAN
from geo2map.models.palette_head import nearest_colour_logits

# A style's palette: [r, g, b, class] rows; the colour nearest a pixel gives its class.
Palette = list[list[int]]


class StarGanGenerator(nn.Module):
    def __init__(
        self,
        styles: list[str],
        palettes: dict[str, Palette],
        style: str | None = None,
        num_classes: int = 5,
        base: int = 64,
        n_blocks: int = 6,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        self.styles = list(styles)
        self.num_classes = num_classes
        self.net = ResnetGenerator(3 + len(styles), 3, 0, base, n_blocks, norm)
        self.multiple = self.net.multiple
        for name, rows in palettes.items():
            table = torch.tensor(rows, dtype=torch.float32)
            self.register_buffer(f"palette_{name}", table[:, :3] / 255.0, persistent=False)
            self.register_buffer(f"classes_{name}", table[:, 3].long(), persistent=False)
        self.palettes = sorted(palettes)
        self.style = style if style is not None else self.palettes[0]

    def set_style(self, name: str) -> None:
        """The style ``forward`` draws (one of ``palettes``: a style with a mask to read)."""
        if name not in self.palettes:
            raise ValueError(f"unknown style {name!r}; known: {', '.join(self.palettes)}")
        self.style = name

    def translate(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """Images in (x - 0.5) / 0.5 -> images of each row's style index, in [0, 1]."""
        onehot = nn.functional.one_hot(style, len(self.styles)).to(x.dtype)
        planes = onehot[:, :, None, None].expand(-1, -1, *x.shape[-2:])
        return self.net(torch.cat([x, planes], 1))["render"]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        index = torch.full((x.shape[0],), self.styles.index(self.style), device=x.device)
        render = self.translate(x, index)
        return {"render": render, "mask_logits": self.mask_logits(render.float())}

    def mask_logits(self, render: torch.Tensor) -> torch.Tensor:
        """Class logits of a render in the current style (its nearest palette colour's)."""
        colours = getattr(self, f"palette_{self.style}")
        classes = getattr(self, f"classes_{self.style}")
        return nearest_colour_logits(render, colours, classes, self.num_classes)


class StarGanDiscriminator(nn.Module):
    """PatchGAN real/fake logits per patch, and the image's style logits."""

    def __init__(self, styles: int, base: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        trunk = PatchGAN(3, base, n_layers, norm="none").net
        self.trunk = nn.Sequential(*list(trunk)[:-1])  # up to the last features
        width = trunk[-1].in_channels
        self.real = nn.Conv2d(width, 1, 4, 1, 1)
        self.style = nn.Conv2d(width, styles, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.trunk(x)
        return self.real(features), self.style(features).mean(dim=(2, 3))
