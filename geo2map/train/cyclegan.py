"""The unpaired (CycleGAN-mode) training loop.

Two generators (sat->map ``G``, map->sat ``F``), two PatchGAN discriminators (``D_map``,
``D_sat``), LSGAN + cycle + identity losses, image pools of past fakes. The Moscow sat images
and maps are drawn with independent random indices (and independent crops), so no step ever
sees an aligned pair; the val pairs are used only to score ``G`` exactly like pix2pix mode.
If LandCover.ai is configured, ``G``'s mask head is trained on it (it has no unpaired analogue).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from geo2map.train.batch_norm import photo_batches, recompute_batch_norm
from geo2map.train.config import PipelineConfig
from geo2map.train.data import augment, collate
from geo2map.train.gan_run import GanRun
from geo2map.train.loop import model_kwargs
from geo2map.train.losses import dice_loss, gan_loss, masked_ce
from geo2map.train.palette import PALETTE_RGB


class ImagePool:
    """Shrivastava et al.'s history of fakes: half the time D sees an older fake instead."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.images: list[torch.Tensor] = []

    def query(self, batch: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        if self.size == 0:
            return batch
        out = []
        for img in batch.detach():
            if len(self.images) < self.size:
                self.images.append(img.clone())
                out.append(img)
            elif rng.random() < 0.5:
                j = int(rng.integers(0, self.size))
                out.append(self.images[j].clone())
                self.images[j] = img.clone()
            else:
                out.append(img)
        return torch.stack(out)

    def state(self) -> torch.Tensor | None:
        return torch.stack(self.images) if self.images else None

    def load(self, t: torch.Tensor | None) -> None:
        self.images = list(t.unbind(0)) if t is not None else []


def _cl(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last)


def train_cyclegan(cfg: PipelineConfig, progress: bool = True) -> Path:
    kw_g = model_kwargs(cfg)
    if kw_g.pop("snap", False):  # YAML shorthand: draw in the OSM palette at inference
        kw_g["snap_palette"] = PALETTE_RGB.tolist()
    rev = cfg.reverse_model or cfg.model
    kw_f = {**rev.kwargs, "num_classes": 0} if rev.name == "cyclegan-resnet" else dict(rev.kwargs)
    dkw = dict(cfg.discriminator.kwargs) if cfg.discriminator else {}
    dkw["in_channels"] = 3  # unconditional: CycleGAN's D sees one image
    dname = cfg.discriminator.name if cfg.discriminator else "patchgan"
    archs = {
        "G": {"name": cfg.model.name, "kwargs": kw_g},
        "F": {"name": rev.name, "kwargs": kw_f},
        "D_map": {"name": dname, "kwargs": dkw},
        "D_sat": {"name": dname, "kwargs": dkw},
    }
    o, L = cfg.optim, cfg.loss
    run = GanRun(cfg, archs, {"G": (["G", "F"], o.lr), "D": (["D_map", "D_sat"], o.lr_d)},
                 ["loss_g", "gan_g", "cycle", "identity", "mask", "loss_d"], progress)  # fmt: skip
    G, Fm, D_map, D_sat = (run.modules[k] for k in ("G", "F", "D_map", "D_sat"))
    device, data = run.device, run.data
    pools = {"map": ImagePool(cfg.train.pool_size), "sat": ImagePool(cfg.train.pool_size)}
    extra = run.resume()
    pools["map"].load(extra.get("pool_map"))
    pools["sat"].load(extra.get("pool_sat"))
    mean = torch.tensor(cfg.model.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(cfg.model.std, device=device).view(1, 3, 1, 1)

    def sat_to_unit(x: torch.Tensor) -> torch.Tensor:  # normalized input -> [0, 1]
        return x * std + mean

    def unit_to_sat(x: torch.Tensor) -> torch.Tensor:
        return (x - mean) / std

    photos = [_cl(x.to(device)) for x in photo_batches(cfg, data)]

    def measure_photo_statistics() -> None:  # G also sees maps in training (identity term)
        with torch.autocast(**run.amp):
            recompute_batch_norm(G, G, photos)

    run.before_save = measure_photo_statistics

    def pool_tensors() -> dict[str, torch.Tensor]:
        return {f"pool_{k}": p.state() for k, p in pools.items() if p.state() is not None}

    n = max(1, cfg.data.moscow_batch)
    for step in run.log.steps():
        factor = run.schedule(step)
        # independent draws: sat i and map j are (almost surely) different places
        rs, rm, rp = (np.random.default_rng([cfg.seed, step, k]) for k in (1, 2, 3))
        ds = data.moscow_train
        sats = [augment(ds[int(i)], rs, cfg.data.crop) for i in rs.integers(0, len(ds), n)]
        maps = [augment(ds[int(j)], rm, cfg.data.crop) for j in rm.integers(0, len(ds), n)]
        real_sat = _cl(collate(sats, cfg.model.mean, cfg.model.std)["image"].to(device))
        real_map = _cl(collate(maps, cfg.model.mean, cfg.model.std)["map_rgb"].to(device))
        with torch.autocast(**run.amp):
            fake_map = G(real_sat)["render"].float()
            rec_sat = unit_to_sat(Fm(_cl(unit_to_sat(fake_map)))["render"].float())
            fake_sat_unit = Fm(_cl(unit_to_sat(real_map)))["render"].float()
            rec_map = G(_cl(unit_to_sat(fake_sat_unit)))["render"].float()
            parts: dict[str, torch.Tensor] = {
                "gan_g": gan_loss(D_map(_cl(fake_map * 2 - 1)), True, L.gan_mode)
                + gan_loss(D_sat(_cl(fake_sat_unit * 2 - 1)), True, L.gan_mode),
            }
            parts["cycle"] = L.cycle * (
                (rec_sat - real_sat).abs().mean() / 2  # normalized space is 2x [0,1] for std 0.5
                + (rec_map - real_map).abs().mean()
            )
            if L.identity > 0:
                idt_map = G(_cl(unit_to_sat(real_map)))["render"].float()
                idt_sat = Fm(real_sat)["render"].float()
                parts["identity"] = (
                    L.identity
                    * L.cycle
                    * (
                        (idt_map - real_map).abs().mean()
                        + (idt_sat - sat_to_unit(real_sat)).abs().mean()
                    )
                )
            if data.lc_train is not None and cfg.data.landcover_batch > 0:
                rl = np.random.default_rng([cfg.seed, step, 4])
                chips = [augment(data.lc_train[int(i)], rl, cfg.data.crop)
                         for i in rl.integers(0, len(data.lc_train), cfg.data.landcover_batch)]  # fmt: skip
                cb = {
                    k: v.to(device)
                    for k, v in collate(chips, cfg.model.mean, cfg.model.std).items()
                }
                lg = G(cb["image"])["mask_logits"]
                parts["mask"] = L.mask_ce * masked_ce(lg, cb["mask"]) + L.mask_dice * dice_loss(
                    lg, cb["mask"]
                )
        loss_g = sum(parts.values())
        run.update("G", loss_g)
        fm = pools["map"].query(fake_map.detach(), rp)
        fs = pools["sat"].query(fake_sat_unit.detach(), rp)
        with torch.autocast(**run.amp):
            loss_d = 0.5 * (
                gan_loss(D_map(_cl(real_map * 2 - 1)), True, L.gan_mode)
                + gan_loss(D_map(_cl(fm * 2 - 1)), False, L.gan_mode)
                + gan_loss(D_sat(_cl(sat_to_unit(real_sat) * 2 - 1)), True, L.gan_mode)
                + gan_loss(D_sat(_cl(fs * 2 - 1)), False, L.gan_mode)
            )
        run.update("D", loss_d)
        run.end_step(step, factor, {"loss_g": loss_g, "loss_d": loss_d, **parts}, pool_tensors)
    return run.finish()
