"""The StarGAN training loop (Choi et al. 2018): one generator, several styles.

Each step draws real images of every style: satellite photos (Moscow and LandCover.ai images),
OSM maps (Moscow) and land-cover pictures (LandCover.ai masks drawn in the class colours),
each from its own random indices, so no step sees an aligned pair unless ``loss.paired`` asks
for one. Every image is translated to a random other style; the losses are the paper's:
adversarial (LSGAN here, where the paper uses WGAN-GP: the same loss family as the other
modes, one discriminator update per generator update), style classification of real images
(for D) and of fakes (for G), and reconstruction back to the original style (``loss.cycle``).
``loss.paired`` > 0 adds an L1 term where a pair exists (a Moscow photo -> its map, a
LandCover.ai photo -> its mask picture); ``loss.paired_ce`` > 0 a cross-entropy of the
drawing's colours among the style's palette colours (losses.nearest_colour_ce).

Validation scores the OSM style on the Moscow pairs and the land-cover style, read back as
classes, on the LandCover.ai chips, as the other modes are scored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from geo2map.errors import Geo2MapError
from geo2map.models.card import DEFAULT_CLASSES
from geo2map.models.stargan import calibrate_style_statistics
from geo2map.train.config import PipelineConfig
from geo2map.train.data import IGNORE_LABEL
from geo2map.train.gan_run import GanRun
from geo2map.train.loop import Datasets, draw_batch
from geo2map.train.losses import gan_loss, nearest_colour_ce
from geo2map.train.palette import palette_rows

STYLES = ("photo", "osm", "landcover")
# the data key each map style learns from, and what of it
SOURCE = {"osm": ("moscow", "the Moscow maps"), "landcover": ("landcover", "its masks")}
CLASS_COLOURS = torch.tensor([c["color"] for c in DEFAULT_CLASSES], dtype=torch.float32) / 255


def style_palettes() -> dict[str, list[list[int]]]:
    """The colours each map style is drawn in, with their classes (the mask read-back)."""
    cover = [[*c["color"], c["id"]] for c in DEFAULT_CLASSES]
    return {"osm": palette_rows(), "landcover": cover}


def stargan_kwargs(cfg: PipelineConfig) -> dict[str, Any]:
    """The generator's keywords: the YAML's, with the styles and their palettes."""
    if cfg.model.name != "stargan":
        raise Geo2MapError(f"mode stargan trains model.name stargan, not {cfg.model.name!r}")
    kw = dict(cfg.model.kwargs)
    styles = list(kw.setdefault("styles", list(STYLES)))
    unknown = [s for s in styles if s not in STYLES]
    if unknown or "photo" not in styles:
        raise Geo2MapError(
            f"model.kwargs.styles {styles}: StarGAN here knows {', '.join(STYLES)} and needs "
            "photo (the input domain)"
        )
    for style, (key, what) in SOURCE.items():
        if style in styles and not getattr(cfg.data, key):
            raise Geo2MapError(
                f"model.kwargs.styles names {style}, which learns from data.{key} ({what}); "
                f"set data.{key} or drop the style"
            )
    kw["palettes"] = {k: v for k, v in style_palettes().items() if k in styles}
    kw.setdefault("style", "osm" if "osm" in styles else "landcover")
    return kw


def mask_picture(mask: torch.Tensor) -> torch.Tensor:
    """(B, H, W) class ids -> (B, 3, H, W) in [0, 1] in the class colours; unlabelled pixels
    take the colour of class 0 (the discriminator must not learn a colour no fake uses)."""
    ids = torch.where(mask == IGNORE_LABEL, 0, mask).clamp(max=len(CLASS_COLOURS) - 1)
    return CLASS_COLOURS.to(mask.device)[ids].permute(0, 3, 1, 2)


class StyleBatches:
    """Real images of each style for one step (normalized like the generator's input),
    with their pairs where ``paired`` is on."""

    def __init__(self, cfg: PipelineConfig, data: Datasets, styles: list[str]) -> None:
        self.cfg, self.data, self.styles = cfg, data, styles

    def step(self, step: int) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        """(images in [-1, 1], their style index, paired targets: {"osm"/"landcover":
        (row indices, target pictures in [0, 1])})."""
        d, seed = self.cfg.data, self.cfg.seed
        images, labels, pairs = [], [], {}
        index = {s: i for i, s in enumerate(self.styles)}

        def add(x: torch.Tensor, style: str) -> None:
            images.append(x)
            labels.append(torch.full((x.shape[0],), index[style]))

        if self.data.moscow_train is not None:
            photos = draw_batch(self.cfg, self.data.moscow_train, d.moscow_batch,
                                np.random.default_rng([seed, step, 1]), d.moscow_gsd_m)  # fmt: skip
            start = sum(len(x) for x in images)
            add(photos["image"], "photo")
            if "osm" in index:
                pairs["osm"] = (torch.arange(start, start + d.moscow_batch), photos["map_rgb"])
                maps = draw_batch(self.cfg, self.data.moscow_train, d.moscow_batch,
                                  np.random.default_rng([seed, step, 2]), d.moscow_gsd_m)  # fmt: skip
                add(maps["map_rgb"] * 2 - 1, "osm")
        if self.data.lc_train is not None:
            photos = draw_batch(self.cfg, self.data.lc_train, d.landcover_batch,
                                np.random.default_rng([seed, step, 3]), d.landcover_gsd_m)  # fmt: skip
            start = sum(len(x) for x in images)
            add(photos["image"], "photo")
            if "landcover" in index:
                pairs["landcover"] = (
                    torch.arange(start, start + d.landcover_batch),
                    mask_picture(photos["mask"]),
                )
                masks = draw_batch(self.cfg, self.data.lc_train, d.landcover_batch,
                                   np.random.default_rng([seed, step, 4]), d.landcover_gsd_m)  # fmt: skip
                add(mask_picture(masks["mask"]) * 2 - 1, "landcover")
        x = torch.cat(images).contiguous(memory_format=torch.channels_last)
        return x, torch.cat(labels), pairs


def calibration_inputs(
    cfg: PipelineConfig, data: Datasets, styles: list[str], batches: int = 8
) -> dict[str, list[torch.Tensor]]:
    """Batches of what each style learns to draw from in training's paired batches, for its
    batch-norm statistics: Moscow photos for ``osm``, LandCover.ai photos for ``landcover``,
    Moscow maps (else mask pictures) for ``photo``. Fixed draws, so every calibration of a
    run sees the same images."""
    d, inputs = cfg.data, {s: [] for s in styles}
    for i in range(batches):
        rng = [np.random.default_rng([cfg.seed, 10**6 + i, k]) for k in range(2)]
        if data.moscow_train is not None:
            b = draw_batch(cfg, data.moscow_train, d.moscow_batch, rng[0], d.moscow_gsd_m)
            inputs["photo"].append(b["map_rgb"] * 2 - 1)
            if "osm" in inputs:
                inputs["osm"].append(b["image"])
        if data.lc_train is not None:
            b = draw_batch(cfg, data.lc_train, d.landcover_batch, rng[1], d.landcover_gsd_m)
            if "landcover" in inputs:
                inputs["landcover"].append(b["image"])
            if data.moscow_train is None:
                inputs["photo"].append(mask_picture(b["mask"]) * 2 - 1)
    return {s: batch for s, batch in inputs.items() if batch}


def train_stargan(cfg: PipelineConfig, progress: bool = True) -> Path:
    kw_g = stargan_kwargs(cfg)  # before the data load: a missing source fails fast
    styles = kw_g["styles"]
    dkw = {"styles": len(styles), **(cfg.discriminator.kwargs if cfg.discriminator else {})}
    archs = {"G": {"name": "stargan", "kwargs": kw_g}, "D": {"name": "stargan-d", "kwargs": dkw}}
    o, L = cfg.optim, cfg.loss
    run = GanRun(cfg, archs, {"G": (["G"], o.lr), "D": (["D"], o.lr_d)},
                 ["loss_g", "gan_g", "style_g", "cycle", "paired", "loss_d", "style_d"],
                 progress)  # fmt: skip
    run.resume()
    G, D, device = run.modules["G"], run.modules["D"], run.device
    batches = StyleBatches(cfg, run.data, styles)
    calibration = {
        s: [x.to(device).contiguous(memory_format=torch.channels_last) for x in xs]
        for s, xs in calibration_inputs(cfg, run.data, styles).items()
    }

    def calibrate() -> None:
        with torch.autocast(**run.amp):
            calibrate_style_statistics(G, calibration)

    run.before_save = calibrate
    for step in run.log.steps():
        factor = run.schedule(step)
        x, org, pairs = batches.step(step)
        x, org = x.to(device), org.to(device)
        rng = np.random.default_rng([cfg.seed, step, 5])
        # a random other style for every image
        shift = torch.from_numpy(rng.integers(1, len(styles), len(org))).to(device)
        trg = (org + shift) % len(styles)

        with torch.autocast(**run.amp):
            fake = G.translate(x, trg).float() * 2 - 1
            real_src, real_cls = D(x)
            fake_src, _ = D(fake.detach().contiguous(memory_format=torch.channels_last))
            style_d = F.cross_entropy(real_cls.float(), org)
            loss_d = (
                gan_loss(real_src, True, L.gan_mode)
                + gan_loss(fake_src, False, L.gan_mode)
                + L.style_class * style_d
            )
        run.update("D", loss_d)

        with torch.autocast(**run.amp):
            fake_cl = fake.contiguous(memory_format=torch.channels_last)
            src, cls = D(fake_cl)
            parts: dict[str, torch.Tensor] = {
                "gan_g": gan_loss(src, True, L.gan_mode),
                "style_g": L.style_class * F.cross_entropy(cls.float(), trg),
            }
            back = G.translate(fake_cl, org).float() * 2 - 1
            parts["cycle"] = L.cycle * (back - x.float()).abs().mean() / 2
            if (L.paired > 0 or L.paired_ce > 0) and pairs:
                paired = []  # the log's "paired" holds both terms
                for style, (rows, target) in pairs.items():
                    rows, target = rows.to(device), target.to(device)
                    target_style = torch.full_like(rows, styles.index(style))
                    drawn = G.translate(x[rows], target_style).float()
                    paired.append(L.paired * (drawn - target).abs().mean())
                    if L.paired_ce > 0:
                        colours = getattr(G, f"palette_{style}")
                        paired.append(L.paired_ce * nearest_colour_ce(drawn, target, colours))
                parts["paired"] = sum(paired) / len(pairs)
        loss_g = sum(parts.values())
        run.update("G", loss_g)
        run.end_step(
            step, factor, {"loss_g": loss_g, "loss_d": loss_d, "style_d": style_d, **parts}
        )
    return run.finish()
