"""The UNIT training loop (Liu et al. 2017): unpaired photo <-> map through one latent space.

Photos and maps are Moscow crops drawn with independent random indices (never a pair). Each
step, as the authors' code does it: encode both (z = mean + unit Gaussian noise), rebuild
each image from its own code (``loss.cycle`` x L1) with a KL term on the means (``loss.kl``),
translate each to the other domain and fool that domain's PatchGAN (``loss.gan``), and
translate back from the translation's code (``loss.cycle`` x L1, ``loss.kl`` on its mean);
then one discriminator update on real images and the detached translations.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from geo2map.errors import Geo2MapError
from geo2map.models.card import Architecture
from geo2map.models.io import save_model
from geo2map.models.registry import build_model
from geo2map.train.checkpoint import load_checkpoint, read_meta, save_checkpoint
from geo2map.train.config import PipelineConfig
from geo2map.train.data import augment, collate
from geo2map.train.loop import Datasets, lr_factor, make_card, train_device, validate_and_keep_best
from geo2map.train.losses import gan_loss
from geo2map.train.palette import palette_rows
from geo2map.train.runlog import RunLog

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
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = train_device(cfg.device)
    kw = unit_kwargs(cfg)
    out = Path(cfg.out_dir)
    ckdir = out / "checkpoints"
    data = Datasets(cfg)
    torch.manual_seed(cfg.seed)
    dkw = {**(cfg.discriminator.kwargs if cfg.discriminator else {}), "in_channels": 3}
    archs = {
        "G": {"name": "unit", "kwargs": kw},
        "D_photo": {"name": "patchgan", "kwargs": dkw},
        "D_map": {"name": "patchgan", "kwargs": dkw},
    }
    modules = {
        k: build_model(Architecture(**a)).to(device=device, memory_format=torch.channels_last)
        for k, a in archs.items()
    }
    G, discriminators = modules["G"], (modules["D_photo"], modules["D_map"])
    o, L = cfg.optim, cfg.loss
    d_params = [p for D in discriminators for p in D.parameters()]
    optims: dict[str, torch.optim.Optimizer] = {
        "G": torch.optim.Adam(G.parameters(), lr=o.lr, betas=o.betas, weight_decay=o.weight_decay),
        "D": torch.optim.Adam(d_params, lr=o.lr_d, betas=o.betas, weight_decay=o.weight_decay),
    }
    start, best, elapsed0 = 0, -math.inf, 0.0
    if read_meta(ckdir) is not None:
        meta, _ = load_checkpoint(ckdir, modules, optims, archs)
        start, best, elapsed0 = meta["step"], meta["best"], meta.get("elapsed_s", 0.0)
        print(f"resuming {out} at step {start}")
    out.mkdir(parents=True, exist_ok=True)
    log = RunLog(cfg, out, ["loss_g", "gan_g", "recon", "cycle", "kl", "loss_d"], start, elapsed0,
                 progress, postfix=("loss_g", "loss_d"))  # fmt: skip
    amp = {"device_type": device.type, "dtype": torch.bfloat16, "enabled": cfg.train.bf16}
    n, crop = max(1, cfg.data.moscow_batch), cfg.data.crop
    for step in log.steps():
        for m in modules.values():
            m.train()
        factor = lr_factor(cfg, step)
        for name, base_lr in (("G", o.lr), ("D", o.lr_d)):
            for g in optims[name].param_groups:
                g["lr"] = base_lr * factor
        # independent draws: photo i and map j are (almost surely) different places
        rp, rm = (np.random.default_rng([cfg.seed, step, k]) for k in (1, 2))
        ds = data.moscow_train
        photos = [augment(ds[int(i)], rp, crop) for i in rp.integers(0, len(ds), n)]
        maps = [augment(ds[int(j)], rm, crop) for j in rm.integers(0, len(ds), n)]
        real = (
            _cl(collate(photos, cfg.model.mean, cfg.model.std)["image"].to(device)),
            _cl(collate(maps, cfg.model.mean, cfg.model.std)["map_rgb"].to(device) * 2 - 1),
        )
        size = real[0].shape[-2:]
        with torch.autocast(**amp):
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
        optims["G"].zero_grad(set_to_none=True)
        loss_g.backward()
        optims["G"].step()
        with torch.autocast(**amp):
            loss_d = 0.5 * sum(
                gan_loss(discriminators[b](real[b]), True, L.gan_mode)
                + gan_loss(discriminators[b](fakes[a].detach()), False, L.gan_mode)
                for a, b in ((PHOTO, MAP), (MAP, PHOTO))
            )
        optims["D"].zero_grad(set_to_none=True)
        loss_d.backward()
        optims["D"].step()
        log.add({"loss_g": loss_g, "loss_d": loss_d, **parts})
        done = step + 1

        def validate(row: dict[str, Any], done: int = done) -> None:
            nonlocal best
            extra = {"step": done, "elapsed_s": round(log.elapsed(), 1)}
            best = validate_and_keep_best(cfg, G, kw, data, out, done, extra, best, row,
                                          log.fields)  # fmt: skip

        def checkpoint(done: int = done) -> None:
            save_checkpoint(ckdir, modules, optims, {}, {
                "step": done, "best": best, "elapsed_s": log.elapsed(),
                "architectures": archs, "config": cfg.model_dump(mode="json"),
            })  # fmt: skip

        log.end_step(done, o.lr * factor, validate, checkpoint)
    extra = {"step": log.done, "elapsed_s": round(log.elapsed(), 1)}
    save_model(G, make_card(cfg, kw, data, extra, G.multiple), out / "last")
    return out / "best"
