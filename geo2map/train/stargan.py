"""The StarGAN training loop (Choi et al. 2018): one generator, several styles.

Each step draws real images of every style: satellite photos (Moscow and LandCover.ai images),
OSM maps (Moscow) and land-cover pictures (LandCover.ai masks drawn in the class colours),
each from its own random indices, so no step sees an aligned pair unless ``loss.paired`` asks
for one. Every image is translated to a random other style; the losses are the paper's:
adversarial (LSGAN here, where the paper uses WGAN-GP: the same loss family as the other
modes, one discriminator update per generator update), style classification of real images
(for D) and of fakes (for G), and reconstruction back to the original style (``loss.cycle``).
``loss.paired`` > 0 adds an L1 term where a pair exists (a Moscow photo -> its map, a
LandCover.ai photo -> its mask picture).

Validation scores the OSM style on the Moscow pairs and the land-cover style, read back as
classes, on the LandCover.ai chips, as the other modes are scored.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from geo2map.errors import Geo2MapError
from geo2map.models.card import DEFAULT_CLASSES, Architecture
from geo2map.models.io import save_model
from geo2map.models.registry import build_model
from geo2map.train.augment import draw_factor
from geo2map.train.checkpoint import load_checkpoint, read_meta, save_checkpoint
from geo2map.train.config import PipelineConfig
from geo2map.train.data import IGNORE_LABEL, augment, collate
from geo2map.train.loop import Datasets, lr_factor, make_card, train_device, validate_and_keep_best
from geo2map.train.losses import gan_loss
from geo2map.train.palette import palette_rows
from geo2map.train.runlog import RunLog

STYLES = ("photo", "osm", "landcover")
SOURCE = {"osm": "data.moscow (the Moscow maps)", "landcover": "data.landcover (its masks)"}
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
    for style, source in SOURCE.items():
        key = "moscow" if style == "osm" else "landcover"
        if style in styles and not getattr(cfg.data, key):
            raise Geo2MapError(
                f"model.kwargs.styles names {style}, which learns from {source}; "
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

    def _draw(self, ds: Any, n: int, rng: np.random.Generator, gsd: Any) -> dict:
        d = self.cfg.data
        samples = []
        for i in rng.integers(0, len(ds), n):
            factor = 1.0
            if gsd is not None:
                factor = draw_factor(rng, gsd, self.cfg.model.gsd_m, d.scale_jitter)
            samples.append(augment(ds[int(i)], rng, d.crop, d.colour_jitter, factor, d.degrade))
        return collate(samples, self.cfg.model.mean, self.cfg.model.std)

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
            photos = self._draw(self.data.moscow_train, d.moscow_batch,
                                np.random.default_rng([seed, step, 1]), d.moscow_gsd_m)  # fmt: skip
            start = sum(len(x) for x in images)
            add(photos["image"], "photo")
            pairs["osm"] = (torch.arange(start, start + d.moscow_batch), photos["map_rgb"])
            maps = self._draw(self.data.moscow_train, d.moscow_batch,
                              np.random.default_rng([seed, step, 2]), d.moscow_gsd_m)  # fmt: skip
            add(maps["map_rgb"] * 2 - 1, "osm")
        if self.data.lc_train is not None:
            photos = self._draw(self.data.lc_train, d.landcover_batch,
                                np.random.default_rng([seed, step, 3]), d.landcover_gsd_m)  # fmt: skip
            start = sum(len(x) for x in images)
            add(photos["image"], "photo")
            pairs["landcover"] = (
                torch.arange(start, start + d.landcover_batch),
                mask_picture(photos["mask"]),
            )
            masks = self._draw(self.data.lc_train, d.landcover_batch,
                               np.random.default_rng([seed, step, 4]), d.landcover_gsd_m)  # fmt: skip
            add(mask_picture(masks["mask"]) * 2 - 1, "landcover")
        pairs = {k: v for k, v in pairs.items() if k in index}
        x = torch.cat(images).contiguous(memory_format=torch.channels_last)
        return x, torch.cat(labels), pairs


def train_stargan(cfg: PipelineConfig, progress: bool = True) -> Path:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = train_device(cfg.device)
    kw_g = stargan_kwargs(cfg)
    out = Path(cfg.out_dir)
    ckdir = out / "checkpoints"
    data = Datasets(cfg)
    torch.manual_seed(cfg.seed)
    styles = kw_g["styles"]
    dkw = {"styles": len(styles), **(cfg.discriminator.kwargs if cfg.discriminator else {})}
    archs = {"G": {"name": "stargan", "kwargs": kw_g}, "D": {"name": "stargan-d", "kwargs": dkw}}
    modules = {
        k: build_model(Architecture(**a)).to(device=device, memory_format=torch.channels_last)
        for k, a in archs.items()
    }
    G, D = modules["G"], modules["D"]
    o, L = cfg.optim, cfg.loss
    optims: dict[str, torch.optim.Optimizer] = {
        "G": torch.optim.Adam(G.parameters(), lr=o.lr, betas=o.betas),
        "D": torch.optim.Adam(D.parameters(), lr=o.lr_d, betas=o.betas),
    }
    start, best, elapsed0 = 0, -math.inf, 0.0
    if read_meta(ckdir) is not None:
        meta, _ = load_checkpoint(ckdir, modules, optims, archs)
        start, best, elapsed0 = meta["step"], meta["best"], meta.get("elapsed_s", 0.0)
        print(f"resuming {out} at step {start}")
    out.mkdir(parents=True, exist_ok=True)
    log = RunLog(cfg, out, ["loss_g", "gan_g", "style_g", "cycle", "paired", "loss_d", "style_d"],
                 start, elapsed0, progress, postfix=("loss_g", "loss_d"))  # fmt: skip
    amp = {"device_type": device.type, "dtype": torch.bfloat16, "enabled": cfg.train.bf16}
    batches = StyleBatches(cfg, data, styles)
    for step in log.steps():
        G.train()
        D.train()
        factor = lr_factor(cfg, step)
        for name, base_lr in (("G", o.lr), ("D", o.lr_d)):
            for g in optims[name].param_groups:
                g["lr"] = base_lr * factor
        x, org, pairs = batches.step(step)
        x, org = x.to(device), org.to(device)
        rng = np.random.default_rng([cfg.seed, step, 5])
        # a random other style for every image
        shift = torch.from_numpy(rng.integers(1, len(styles), len(org))).to(device)
        trg = (org + shift) % len(styles)

        with torch.autocast(**amp):
            fake = G.translate(x, trg).float() * 2 - 1
            real_src, real_cls = D(x)
            fake_src, _ = D(fake.detach().contiguous(memory_format=torch.channels_last))
            style_d = F.cross_entropy(real_cls.float(), org)
            loss_d = (
                gan_loss(real_src, True, L.gan_mode)
                + gan_loss(fake_src, False, L.gan_mode)
                + L.style_class * style_d
            )
        optims["D"].zero_grad(set_to_none=True)
        loss_d.backward()
        optims["D"].step()

        with torch.autocast(**amp):
            fake_cl = fake.contiguous(memory_format=torch.channels_last)
            src, cls = D(fake_cl)
            parts: dict[str, torch.Tensor] = {
                "gan_g": gan_loss(src, True, L.gan_mode),
                "style_g": L.style_class * F.cross_entropy(cls.float(), trg),
            }
            back = G.translate(fake_cl, org).float() * 2 - 1
            parts["cycle"] = L.cycle * (back - x.float()).abs().mean() / 2
            if L.paired > 0 and pairs:
                paired = []
                for style, (rows, target) in pairs.items():
                    rows = rows.to(device)
                    target_style = torch.full_like(rows, styles.index(style))
                    drawn = G.translate(x[rows], target_style).float()
                    paired.append((drawn - target.to(device)).abs().mean())
                parts["paired"] = L.paired * sum(paired) / len(paired)
        loss_g = sum(parts.values())
        optims["G"].zero_grad(set_to_none=True)
        loss_g.backward()
        optims["G"].step()
        log.add({"loss_g": loss_g, "loss_d": loss_d, "style_d": style_d, **parts})
        done = step + 1

        def validate(row: dict[str, Any], done: int = done) -> None:
            nonlocal best
            extra = {"step": done, "elapsed_s": round(log.elapsed(), 1)}
            best = validate_and_keep_best(cfg, G, kw_g, data, out, done, extra, best, row,
                                          log.fields)  # fmt: skip

        def checkpoint(done: int = done) -> None:
            save_checkpoint(ckdir, modules, optims, {}, {
                "step": done, "best": best, "elapsed_s": log.elapsed(),
                "architectures": archs, "config": cfg.model_dump(mode="json"),
            })  # fmt: skip

        log.end_step(done, o.lr * factor, validate, checkpoint)
    extra = {"step": log.done, "elapsed_s": round(log.elapsed(), 1)}
    save_model(G, make_card(cfg, kw_g, data, extra, G.multiple), out / "last")
    return out / "best"
