"""StarGAN (Choi et al. 2018): one generator for several target styles, and its discriminator.

The generator G(x, c) is the tiling-safe CycleGAN ResNet generator (batch norm, resize +
conv upsampling: models/cyclegan.py) whose input is the image plus one constant plane per
style, the one-hot style label ``c`` (as in the paper). With ``style_norm`` (the default) every
batch norm also takes its scale and shift from the target style (conditional batch norm, as
in later StarGAN/AdaIN work): the one-hot planes alone become a constant offset after the
first convolution, which the batch norm that follows mostly removes, and the styles came out
alike. Its styles here: ``photo`` (the
satellite image itself), ``osm`` (OpenStreetMap's standard style) and ``landcover`` (the
land-cover mask drawn in its class colours), so map -> photo comes from the same network.

At inference the model draws one style, chosen by name (``--style``; ``style`` below), and
its mask is read back from the render: each pixel's class is the class of the style's
nearest palette colour (a map style is a small set of flat colours, each of one class).
With ``snap`` (the default) the render is drawn in those flat colours too, each pixel its
nearest palette colour, as the default model's palette head draws: the network's own colours
are blends near the palette, and snapping them makes a map that reads as one (and scores
better: docs/models.md). Training never snaps.
The discriminator is a PatchGAN trunk with two heads: real/fake per patch, and the style of
the whole image (the domain-classification head of the paper).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from geo2map.models.cyclegan import ResnetGenerator
from geo2map.models.discriminator import PatchGAN
from geo2map.models.palette_head import read_map

# A style's palette: [r, g, b, class] rows; the colour nearest a pixel gives its class.
Palette = list[list[int]]


class StyleBatchNorm(nn.Module):
    """Batch norm whose scale and shift are chosen per image by its target style (set in
    ``style`` before each forward), with statistics of its own per style at inference.

    One set of running statistics does not fit: a training batch mixes photos, maps and
    mask pictures, so its running mean is of no single input, and the land-cover style drawn
    with it was all water where the same weights in train mode drew the mask. Each style's
    statistics are measured after training instead (:func:`calibrate_style_statistics`, as
    precise batch norm does), on batches of what that style is drawn from at inference.
    They are fixed numbers in eval mode, so tiles and whole images still agree."""

    def __init__(self, channels: int, styles: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.scale = nn.Embedding(styles, channels)
        self.shift = nn.Embedding(styles, channels)
        nn.init.ones_(self.scale.weight)
        nn.init.zeros_(self.shift.weight)
        self.register_buffer("style_mean", torch.zeros(styles, channels))
        self.register_buffer("style_var", torch.ones(styles, channels))
        self.eps = eps
        self.style: torch.Tensor | None = None
        self.collected: list[tuple[torch.Tensor, torch.Tensor]] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.style is None:
            raise RuntimeError("StyleBatchNorm needs its style set before forward")
        if self.collected is not None:  # calibration: normalize by the batch, and record it
            mean, var = x.float().mean((0, 2, 3)), x.float().var((0, 2, 3), unbiased=False)
            self.collected.append((mean, var))
            y = self._normalize(x, mean[None], var[None])
        elif self.training:  # batch statistics only: running ones would mix the styles
            y = F.batch_norm(x, None, None, training=True, eps=self.eps)
        else:
            y = self._normalize(x, self.style_mean[self.style], self.style_var[self.style])
        scale = self.scale(self.style)[:, :, None, None].to(y.dtype)
        shift = self.shift(self.style)[:, :, None, None].to(y.dtype)
        return y * scale + shift

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args, **kwargs) -> None:
        # weights saved before the unused running statistics were dropped still load
        for legacy in ("running_mean", "running_var", "num_batches_tracked"):
            state_dict.pop(f"{prefix}norm.{legacy}", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _normalize(self, x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
        """x normalized by (rows or 1, C) statistics."""
        inv = torch.rsqrt(var + self.eps)
        return (x - mean[:, :, None, None].to(x.dtype)) * inv[:, :, None, None].to(x.dtype)


@torch.no_grad()
def calibrate_style_statistics(G: StarGanGenerator, inputs: dict[str, list[torch.Tensor]]) -> None:
    """Set each style's batch-norm statistics to the mean of the batch statistics of
    ``inputs[style]`` (batches of images in [-1, 1], drawn in that style)."""
    was_training = G.training
    G.train()
    for style, batches in inputs.items():
        index = G.styles.index(style)
        for cbn in G.style_norms:
            cbn.collected = []
        for x in batches:
            G.translate(x, torch.full((len(x),), index, device=x.device))
        for cbn in G.style_norms:
            assert cbn.collected is not None
            cbn.style_mean[index] = torch.stack([m for m, _ in cbn.collected]).mean(0)
            cbn.style_var[index] = torch.stack([v for _, v in cbn.collected]).mean(0)
    for cbn in G.style_norms:
        cbn.collected = None
    G.train(was_training)


def condition_norms(net: nn.Module, styles: int) -> list[StyleBatchNorm]:
    """Replace every BatchNorm2d inside ``net`` by a StyleBatchNorm; returns them."""
    swapped = []
    for parent in list(net.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.BatchNorm2d):
                cbn = StyleBatchNorm(child.num_features, styles)
                setattr(parent, name, cbn)
                swapped.append(cbn)
    return swapped


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
        style_norm: bool = True,
        snap: bool = True,
    ) -> None:
        super().__init__()
        self.styles = list(styles)
        self.num_classes = num_classes
        self.net = ResnetGenerator(3 + len(styles), 3, 0, base, n_blocks, norm)
        self.style_norms = condition_norms(self.net, len(styles)) if style_norm else []
        self.snap = snap
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

    def snap_palette(self) -> torch.Tensor | None:
        """The colours the render is snapped to (the style's palette), None without snap."""
        return getattr(self, f"palette_{self.style}") if self.snap else None

    def translate(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """Images in (x - 0.5) / 0.5 -> images of each row's style index (or of one index for
        every row), in [0, 1]."""
        # Shared state: threads that share a model (Dask tasks) may overwrite it while another
        # forward runs. Harmless at inference: ``forward`` passes one row for the whole batch,
        # the model's style, so every thread writes the same value whatever its batch size.
        for cbn in self.style_norms:
            cbn.style = style
        onehot = nn.functional.one_hot(style, len(self.styles)).to(x.dtype)
        planes = onehot[:, :, None, None].expand(len(x), -1, *x.shape[-2:])
        return self.net(torch.cat([x, planes], 1))["render"]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        index = torch.full((1,), self.styles.index(self.style), device=x.device)
        # the mask: each pixel's class is that of the style's nearest palette colour
        colours = getattr(self, f"palette_{self.style}")
        classes = getattr(self, f"classes_{self.style}")
        render, logits = read_map(self.translate(x, index).float(), colours, classes,
                                  self.num_classes, self.snap)  # fmt: skip
        return {"render": render, "mask_logits": logits}


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
