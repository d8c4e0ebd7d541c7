"""UNIT (Liu et al. 2017): two domains, satellite photo and OSM map, that share one latent space.

Two encoders whose last residual block is shared, and two generators whose first residual
block is shared: a photo and a map of the same place are meant to meet at the same code z.
The encoder gives the mean of a Gaussian of fixed unit variance (the VAE of the authors'
code); training adds the noise, inference uses the mean. Blocks as the CycleGAN generator
here (batch norm, bilinear resize + conv upsampling: tiling-safe, no checkerboards).

``forward`` translates photo -> map, and reads the mask back from the map: each pixel's class
is that of the nearest OSM palette colour. With ``snap`` (the default) the map is drawn in
those flat colours too, as StarGAN's is (models/stargan.py); training never snaps.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from geo2map.models.cyclegan import ResBlock, norm_layer
from geo2map.models.palette_head import read_map

DOMAINS = ("photo", "map")


class _Encoder(nn.Module):
    def __init__(self, base: int, n_res: int, norm: str) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.ReflectionPad2d(3), nn.Conv2d(3, base, 7), norm_layer(base, norm), nn.ReLU(True),
            nn.Conv2d(base, base * 2, 3, 2, 1), norm_layer(base * 2, norm), nn.ReLU(True),
            nn.Conv2d(base * 2, base * 4, 3, 2, 1), norm_layer(base * 4, norm), nn.ReLU(True),
            *[ResBlock(base * 4, norm) for _ in range(n_res)],
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class _Decoder(nn.Module):
    def __init__(self, base: int, n_res: int, norm: str) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*[ResBlock(base * 4, norm) for _ in range(n_res)])
        self.up1 = nn.Sequential(
            nn.Conv2d(base * 4, base * 2, 3, 1, 1), norm_layer(base * 2, norm), nn.ReLU(True)
        )
        self.up2 = nn.Sequential(
            nn.Conv2d(base * 2, base, 3, 1, 1), norm_layer(base, norm), nn.ReLU(True)
        )
        self.head = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(base, 3, 7))

    def forward(self, z: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        y = self.blocks(z)
        y = self.up1(F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=False))
        y = self.up2(F.interpolate(y, size=size, mode="bilinear", align_corners=False))
        return (torch.tanh(self.head(y)) + 1) / 2  # [0, 1]


class UnitTranslator(nn.Module):
    def __init__(
        self,
        palette: list[list[int]],
        num_classes: int = 5,
        base: int = 32,
        n_res: int = 4,
        norm: str = "batch",
        snap: bool = True,
    ) -> None:
        """``palette``: the map style's [r, g, b, class] rows (the mask read-back);
        ``n_res`` residual blocks per encoder and per generator, one of each shared."""
        super().__init__()
        self.encoders = nn.ModuleList(_Encoder(base, n_res - 1, norm) for _ in DOMAINS)
        self.shared_encoder = ResBlock(base * 4, norm)
        self.shared_decoder = ResBlock(base * 4, norm)
        self.decoders = nn.ModuleList(_Decoder(base, n_res - 1, norm) for _ in DOMAINS)
        table = torch.tensor(palette, dtype=torch.float32)
        self.register_buffer("colours", table[:, :3] / 255.0, persistent=False)
        self.register_buffer("classes", table[:, 3].long(), persistent=False)
        self.num_classes = num_classes
        self.snap = snap
        self.multiple = 4

    def snap_palette(self) -> torch.Tensor | None:
        """The colours the map is snapped to, None without snap."""
        return self.colours if self.snap else None

    def encode(self, x: torch.Tensor, domain: int) -> torch.Tensor:
        """Images in [-1, 1] of ``domain`` (0 photo, 1 map) -> the latent mean."""
        return self.shared_encoder(self.encoders[domain](x))

    def decode(self, z: torch.Tensor, domain: int, size: tuple[int, int]) -> torch.Tensor:
        """A latent code -> an image of ``domain`` in [0, 1]."""
        return self.decoders[domain](self.shared_decoder(z), size)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        render = self.decode(self.encode(x, 0), 1, x.shape[-2:]).float()
        render, logits = read_map(render, self.colours, self.classes, self.num_classes, self.snap)
        return {"render": render, "mask_logits": logits}
