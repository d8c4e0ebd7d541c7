"""The paired (pix2pix-mode) training loop: seeded, bf16 autocast, resumable.

Each head is trained on the samples that have its target: the render head on Moscow pairs
(cross-entropy against the palette-snapped map and/or L1 against the map pixels, plus an
optional PatchGAN adversarial term), the mask head on LandCover.ai masks and (down-weighted)
on the masks derived from the OSM colours.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from geo2map.catalog import resolve
from geo2map.errors import Geo2MapError
from geo2map.models.card import Architecture, InputSpec, ModelCard
from geo2map.models.io import save_model
from geo2map.models.registry import build_model
from geo2map.train.checkpoint import load_checkpoint, read_meta, save_checkpoint
from geo2map.train.config import PipelineConfig
from geo2map.train.data import (
    LandCoverChips,
    MoscowPairs,
    augment,
    collate,
    rescale_batch,
    split_names,
)
from geo2map.train.evaluate import save_grid, score_chips, score_pairs
from geo2map.train.losses import dice_loss, gan_loss, masked_ce
from geo2map.train.palette import OSM_PALETTE, PALETTE_CLASS, PALETTE_RGB
from geo2map.train.runlog import RunLog

MOSCOW_LICENCE = (
    "Moscow pairs: screenshots of Bing aerial imagery and OpenStreetMap standard tiles "
    "(OSM data ODbL, tiles CC BY-SA 2.0), via maksimandrianov/pix2pix@102d2747 (no licence file)"
)
LANDCOVER_LICENCE = "LandCover.ai chips: CC BY-NC-SA 4.0 (via henriquejandrade/map-synth@5202b072)"


def data_path(ref: str) -> Path:
    """A catalog name or a folder path."""
    p = Path(ref).expanduser()
    if p.exists():
        return p
    return resolve(ref, verify=False)


def model_kwargs(cfg: PipelineConfig) -> dict[str, Any]:
    kw = dict(cfg.model.kwargs)
    if kw.get("render_mode") == "palette" and "palette" not in kw:
        kw["palette"] = PALETTE_RGB.tolist()
    if kw.pop("render_from_mask", False):  # YAML shorthand for the palette's class table
        kw["palette_class"] = PALETTE_CLASS.tolist()
    return kw


def lr_factor(cfg: PipelineConfig, step: int) -> float:
    o, total = cfg.optim, cfg.train.steps
    if step < o.warmup_steps:
        return (step + 1) / o.warmup_steps
    frac = (step - o.warmup_steps) / max(1, total - o.warmup_steps)
    if o.schedule == "cosine":
        return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))
    if o.schedule == "linear":
        return max(0.0, 1 - frac)
    return 1.0


class Datasets:
    """Train/val datasets with the fixed split; names are recorded in the model card."""

    def __init__(self, cfg: PipelineConfig) -> None:
        d = cfg.data
        self.moscow_root = data_path(d.moscow)
        allm = MoscowPairs(self.moscow_root, cache=False).names
        tr, va = split_names(allm, d.moscow_val)
        if d.limit_train:
            tr = tr[: d.limit_train]
        self.moscow_train = MoscowPairs(self.moscow_root, tr)
        self.moscow_val = MoscowPairs(self.moscow_root, va)
        self.lc_train = self.lc_val = None
        if d.landcover:
            self.lc_root = data_path(d.landcover)
            alll = LandCoverChips(self.lc_root).names
            tr2, va2 = split_names(alll, d.landcover_val)
            if d.limit_train:
                tr2 = tr2[: d.limit_train]
            self.lc_train = LandCoverChips(self.lc_root, tr2)
            self.lc_val = LandCoverChips(self.lc_root, va2)

    def split_record(self) -> dict[str, list[str]]:
        rec = {"moscow": self.moscow_val.names}
        if self.lc_val is not None:
            rec["landcover"] = self.lc_val.names
        return rec

    def batches(self, cfg: PipelineConfig, step: int) -> list[dict[str, torch.Tensor]]:
        """One batch per source (Moscow pairs, LandCover.ai chips): they may differ in size
        (LandCover.ai scale augmentation), so each gets its own forward pass."""
        d = cfg.data
        rng = np.random.default_rng([cfg.seed, step])
        out = []
        for ds, n in ((self.moscow_train, d.moscow_batch), (self.lc_train, d.landcover_batch)):
            if ds is None or n == 0:
                continue
            samples = [
                augment(ds[int(i)], rng, d.crop, d.colour_jitter)
                for i in rng.integers(0, len(ds), n)
            ]
            batch = collate(samples, cfg.model.mean, cfg.model.std)
            if ds is self.lc_train and d.landcover_scale != (1.0, 1.0):
                side = batch["image"].shape[-1]
                factor = rng.uniform(*d.landcover_scale)
                batch = rescale_batch(batch, max(64, round(side * factor / 32) * 32))
            out.append(batch)
        if len(out) > 1 and len({b["image"].shape[-2:] for b in out}) == 1:
            # one forward pass when sizes allow: batch norm then normalizes with the same
            # mixed statistics in training as its running averages give at inference
            out = [{k: torch.cat([b[k] for b in out]) for k in out[0]}]
        return out


def make_card(
    cfg: PipelineConfig,
    kwargs: dict[str, Any],
    data: Datasets,
    extra: dict[str, Any],
    multiple: int = 16,
) -> ModelCard:
    """The card of generator weights; ``multiple``: what chip sides must divide by."""
    licences = [MOSCOW_LICENCE] + ([LANDCOVER_LICENCE] if data.lc_val is not None else [])
    return ModelCard(
        name=cfg.name,
        description=cfg.description,
        architecture=Architecture(name=cfg.model.name, kwargs=kwargs),
        input=InputSpec(
            gsd_m=cfg.model.gsd_m, mean=cfg.model.mean, std=cfg.model.std, multiple=multiple
        ),
        licence="; ".join(licences) + ". Non-commercial use only where LandCover.ai is included.",
        training={
            "pipeline": cfg.model_dump(mode="json"),
            "palette": [{"name": n, "hex": h, "class": c} for n, h, c in OSM_PALETTE],
            "validation_split": data.split_record(),
            **extra,
        },
    )


def _setup_threads(cfg: PipelineConfig) -> None:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)


def train_pix2pix(cfg: PipelineConfig, progress: bool = True) -> Path:
    _setup_threads(cfg)
    weights = cfg.loss.mask_class_weights
    if weights is not None and len(weights) != 5:
        raise Geo2MapError(
            f"loss.mask_class_weights has {len(weights)} values; the mask has 5 classes"
        )
    out = Path(cfg.out_dir)
    ckdir = out / "checkpoints"
    data = Datasets(cfg)
    torch.manual_seed(cfg.seed)
    kwargs = model_kwargs(cfg)
    G = build_model(Architecture(name=cfg.model.name, kwargs=kwargs)).to(
        memory_format=torch.channels_last
    )
    modules: dict[str, torch.nn.Module] = {"G": G}
    archs: dict[str, dict[str, Any]] = {"G": {"name": cfg.model.name, "kwargs": kwargs}}
    o = cfg.optim
    optims: dict[str, torch.optim.Optimizer] = {
        "G": torch.optim.AdamW(G.parameters(), lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)
    }
    D = None
    if cfg.loss.gan > 0:
        if cfg.discriminator is None:
            raise Geo2MapError("loss.gan > 0 needs a discriminator section")
        D = build_model(Architecture(name=cfg.discriminator.name, kwargs=cfg.discriminator.kwargs))
        D = D.to(memory_format=torch.channels_last)
        modules["D"] = D
        archs["D"] = {"name": cfg.discriminator.name, "kwargs": cfg.discriminator.kwargs}
        optims["D"] = torch.optim.Adam(D.parameters(), lr=o.lr_d, betas=o.betas)

    start, best, elapsed0 = 0, -math.inf, 0.0
    meta = read_meta(ckdir)
    if meta is not None:
        meta, _ = load_checkpoint(ckdir, modules, optims, archs)
        start, best, elapsed0 = meta["step"], meta["best"], meta.get("elapsed_s", 0.0)
        print(f"resuming {out} at step {start}")
    out.mkdir(parents=True, exist_ok=True)
    log = RunLog(cfg, out, ["loss", "render_ce", "render_l1", "gan_g", "gan_d", "mask"], start,
                 elapsed0, progress, postfix=("loss",))  # fmt: skip
    L = cfg.loss
    for step in log.steps():
        G.train()
        factor = lr_factor(cfg, step)
        for g in optims["G"].param_groups:
            g["lr"] = o.lr * factor
        parts: dict[str, torch.Tensor] = {}
        gan_inputs = []
        for b in data.batches(cfg, step):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.train.bf16):
                outp = G(b["image"])
            for k, v in generator_losses(cfg, b, outp).items():
                parts[k] = parts[k] + v if k in parts else v
            if D is not None and b["has_map"].any():
                sel = b["has_map"]
                src = b["image"][sel]
                fake = outp["render"][sel].float().contiguous(memory_format=torch.channels_last)
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.train.bf16):
                    pred_fake = D(torch.cat([src, fake * 2 - 1], 1))
                parts["gan_g"] = L.gan * gan_loss(pred_fake, True, L.gan_mode)
                gan_inputs.append((src, fake, b["map_rgb"][sel] * 2 - 1))
        loss = sum(parts.values())
        optims["G"].zero_grad(set_to_none=True)
        loss.backward()
        optims["G"].step()
        for src, fake, real in gan_inputs:
            assert D is not None
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.train.bf16):
                d_real = D(torch.cat([src, real], 1).contiguous(memory_format=torch.channels_last))
                d_fake = D(
                    torch.cat([src, fake.detach() * 2 - 1], 1).contiguous(
                        memory_format=torch.channels_last
                    )
                )
            loss_d = 0.5 * (
                gan_loss(d_real, True, L.gan_mode) + gan_loss(d_fake, False, L.gan_mode)
            )
            optims["D"].zero_grad(set_to_none=True)
            loss_d.backward()
            optims["D"].step()
            parts["gan_d"] = loss_d.detach()
        log.add({"loss": loss, **parts})
        done = step + 1

        def validate(row: dict[str, Any], done: int = done) -> None:
            nonlocal best
            best = validate_and_keep_best(
                cfg, G, kwargs, data, out, done, log.elapsed(), best, row, log.fields
            )

        def checkpoint(done: int = done) -> None:
            save_checkpoint(ckdir, modules, optims, {}, {
                "step": done, "best": best, "elapsed_s": log.elapsed(),
                "architectures": archs, "config": cfg.model_dump(mode="json"),
            })  # fmt: skip

        log.end_step(done, o.lr * factor, validate, checkpoint)
    # the final weights too: "best" is chosen on validation, "last" is what the schedule ends at
    card = make_card(
        cfg,
        kwargs,
        data,
        {"step": cfg.train.steps, "elapsed_s": round(log.elapsed(), 1)},
        G.multiple,
    )
    save_model(G, card, out / "last")
    return out / "best"


def generator_losses(
    cfg: PipelineConfig, b: dict[str, torch.Tensor], outp: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Each head's loss on the samples of ``b`` that have its target (the GAN term aside)."""
    L = cfg.loss
    has_map = b["has_map"]
    parts: dict[str, torch.Tensor] = {}
    if has_map.any():
        if L.render_ce > 0:
            parts["render_ce"] = L.render_ce * masked_ce(
                outp["render_logits"][has_map], b["map_index"][has_map]
            )
        if L.render_l1 > 0:
            diff = outp["render"][has_map].float() - b["map_rgb"][has_map]
            parts["render_l1"] = L.render_l1 * diff.abs().mean()
    # mask: LandCover.ai at full weight (class-weighted CE), OSM-derived masks at moscow_mask
    mask_loss = outp["mask_logits"].sum() * 0.0
    for sel, w, cw in (
        (~has_map & b["has_mask"], 1.0, L.mask_class_weights),
        (has_map & b["has_mask"], L.moscow_mask, None),
    ):
        if sel.any() and w > 0:
            lg, tg = outp["mask_logits"][sel], b["mask"][sel]
            mask_loss = mask_loss + w * (
                L.mask_ce * masked_ce(lg, tg, cw) + L.mask_dice * dice_loss(lg, tg)
            )
    parts["mask"] = mask_loss
    return parts


def validate_and_keep_best(
    cfg: PipelineConfig,
    G: torch.nn.Module,
    kwargs: dict[str, Any],
    data: Datasets,
    out: Path,
    done: int,
    elapsed_s: float,
    best: float,
    row: dict[str, Any],
    fields: list[str],
) -> float:
    """Validate at step ``done``, add the metrics to the log ``row``, export the generator as
    ``out/best`` when its score beats ``best``; returns the best score so far."""
    val = validate(cfg, G, data, out / "samples" / f"step{done:06d}.png")
    row.update({f"val_{k}": f"{v:.4f}" for k, v in val.items() if f"val_{k}" in fields})
    if val["score"] > best:
        best = val["score"]
        extra = {"step": done, "elapsed_s": round(elapsed_s, 1)}
        card = make_card(cfg, kwargs, data, extra, G.multiple)
        card.metrics = {"validation": val}
        save_model(G, card, out / "best")
    tqdm.write(f"step {done}: " + ", ".join(f"{k} {v:.4f}" for k, v in val.items()))
    return best


def validate(
    cfg: PipelineConfig, G: torch.nn.Module, data: Datasets, grid: Path
) -> dict[str, float]:
    t = cfg.train
    m, rows = score_pairs(
        G, data.moscow_val, cfg.model.mean, cfg.model.std, limit=t.val_moscow, keep=t.grid_samples
    )
    val = {k: m[k] for k in ("rmse", "acc5", "acc10", "ssim")}
    val["osm_miou"] = m["osm_miou"]
    if data.lc_val is not None:
        m2, rows2 = score_chips(
            G,
            data.lc_val,
            cfg.model.mean,
            cfg.model.std,
            limit=t.val_landcover,
            keep=t.grid_samples,
        )
        val["lc_miou"] = m2["miou"]
        rows += rows2
    save_grid(rows, grid, cell=160)
    # one number to pick "best": render accuracy and mask quality, equally weighted
    val["score"] = val["acc10"] - val["rmse"] / 100 + val.get("lc_miou", val["osm_miou"])
    return val
