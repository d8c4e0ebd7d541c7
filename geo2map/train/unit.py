"""The UNIT training loop (Liu et al. 2017): unpaired photo <-> map through one latent space.

Photos and maps are Moscow crops drawn with independent random indices (never a pair). Each
step, as the authors' code does it: encode both (z = mean + unit Gaussian noise), rebuild
each image from its own code (``loss.cycle`` x L1) with a KL term on the means (``loss.kl``),
translate each to the other domain and fool that domain's PatchGAN (``loss.gan``), and
translate back from the translation's code (``loss.cycle`` x L1, ``loss.kl`` on its mean);
then one discriminator update on real images and the detached translations.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from geo2map.errors import Geo2MapError
from geo2map.train.config import PipelineConfig
from geo2map.train.data import augment, collate
from geo2map.train.gan_run import GanRun
from geo2map.train.losses import gan_loss
from geo2map.train.palette import palette_rows

PHOTO, MAP = 0, 1


def unit_kwargs(cfg: PipelineConfig) -> dict[str, Any]:
    if cfg.model.name != "unit":
        raise Geo2MapError(f"mode unit trains model.name unit, not {cfg.model.name!r}")
    if not cfg.data.moscow:
        raise Geo2MapError("mode unit learns photo <-> map from data.moscow; set it")
    return {"palette": palette_rows(), **cfg.model.kwargs}


def _cl(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last)


def kl(mean: torch.Tensor) -> torch.Tensor:
    """KL of N(mean, 1) from N(0, 1), up to a constant: the authors' fixed-variance VAE."""
    return (mean.float() ** 2).mean()


def train_unit(cfg: PipelineConfig, progress: bool = True) -> Path:
    kw = unit_kwargs(cfg)  # before the data load: a missing source fails fast
    dkw = {**(cfg.discriminator.kwargs if cfg.discriminator else {}), "in_channels": 3}
    archs = {
        "G": {"name": "unit", "kwargs": kw},
        "D_photo": {"name": "patchgan", "kwargs": dkw},
        "D_map": {"name": "patchgan", "kwargs": dkw},
    }
    o, L = cfg.optim, cfg.loss
    run = GanRun(cfg, archs, {"G": (["G"], o.lr), "D": (["D_photo", "D_map"], o.lr_d)},
                 ["loss_g", "gan_g", "recon", "cycle", "kl", "loss_d"], progress,
                 weight_decay=o.weight_decay)  # fmt: skip
    run.resume()
    G, device = run.G, run.device
    discriminators = (run.modules["D_photo"], run.modules["D_map"])
    n, crop = max(1, cfg.data.moscow_batch), cfg.data.crop
    for step in run.log.steps():
        factor = run.schedule(step)
        # independent draws: photo i and map j are (almost surely) different places
        rp, rm = (np.random.default_rng([cfg.seed, step, k]) for k in (1, 2))
        ds = run.data.moscow_train
        photos = [augment(ds[int(i)], rp, crop) for i in rp.integers(0, len(ds), n)]
        maps = [augment(ds[int(j)], rm, crop) for j in rm.integers(0, len(ds), n)]
        real = (
            _cl(collate(photos, cfg.model.mean, cfg.model.std)["image"].to(device)),
            _cl(collate(maps, cfg.model.mean, cfg.model.std)["map_rgb"].to(device) * 2 - 1),
        )
        size = real[0].shape[-2:]
        with torch.autocast(**run.amp):
            parts: dict[str, torch.Tensor] = {"gan_g": 0, "recon": 0, "cycle": 0, "kl": 0}
            fakes = []
            for a, b in ((PHOTO, MAP), (MAP, PHOTO)):
                mean = G.encode(real[a], a)
                z = mean + torch.randn_like(mean)
                own = G.decode(z, a, size).float() * 2 - 1
                fake = _cl(G.decode(z, b, size).float() * 2 - 1)
                fakes.append(fake)
                back_mean = G.encode(fake, b)
                back = G.decode(back_mean + torch.randn_like(back_mean), a, size).float() * 2 - 1
                parts["recon"] += L.cycle * (own - real[a]).abs().mean() / 2
                parts["cycle"] += L.cycle * (back - real[a]).abs().mean() / 2
                parts["kl"] += L.kl * (kl(mean) + kl(back_mean))
                parts["gan_g"] += L.gan * gan_loss(discriminators[b](fake), True, L.gan_mode)
        loss_g = sum(parts.values())
        run.update("G", loss_g)
        with torch.autocast(**run.amp):
            loss_d = 0.5 * sum(
                gan_loss(discriminators[b](real[b]), True, L.gan_mode)
                + gan_loss(discriminators[b](fakes[a].detach()), False, L.gan_mode)
                for a, b in ((PHOTO, MAP), (MAP, PHOTO))
            )
        run.update("D", loss_d)
        run.end_step(step, factor, {"loss_g": loss_g, "loss_d": loss_d, **parts})
    return run.finish()
