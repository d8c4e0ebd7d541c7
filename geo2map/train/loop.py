"""The paired (pix2pix-mode) training loop: seeded, bf16 autocast, resumable.

Each head is trained on the samples that have its target: the render head on Moscow pairs
(cross-entropy against the palette-snapped map and/or L1 against the map pixels, plus an
optional PatchGAN adversarial term), the mask head on LandCover.ai masks and (down-weighted)
on the masks derived from the OSM colours.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from geo2map.errors import Geo2MapError
from geo2map.models.card import Architecture, ClassInfo, InputSpec, ModelCard
from geo2map.models.io import save_model
from geo2map.models.registry import build_model
from geo2map.train.augment import draw_factor
from geo2map.train.checkpoint import load_checkpoint, read_meta, save_checkpoint
from geo2map.train.classes import (
    closest_old_classes,
    copy_class_channels,
    load_grown,
    mask_classes,
    start_model_path,
    with_class_count,
)
from geo2map.train.config import MaskSourceConfig, PipelineConfig
from geo2map.train.data import (
    IGNORE_LABEL,
    PARTIAL_BASE,
    LandCoverChips,
    MaskTiles,
    MoscowPairs,
    augment,
    collate,
    data_path,
    partial_label,
    rescale_batch,
    split_names,
)
from geo2map.train.evaluate import save_grid, score_chips, score_pairs
from geo2map.train.losses import class_set_nll, dice_loss, gan_loss, masked_ce, membership
from geo2map.train.palette import OSM_PALETTE, PALETTE_CLASS, PALETTE_RGB
from geo2map.train.runlog import RunLog
from geo2map.train.scene_source import load_scene_source

MOSCOW_LICENCE = (
    "Moscow pairs: screenshots of Bing aerial imagery and OpenStreetMap standard tiles "
    "(OSM data ODbL, tiles CC BY-SA 2.0), via maksimandrianov/pix2pix@102d2747 (no licence file)"
)
LANDCOVER_LICENCE = "LandCover.ai chips: CC BY-NC-SA 4.0 (via henriquejandrade/map-synth@5202b072)"


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


@dataclass
class MaskSource:
    """An extra image + mask source (``data.masks``) split into train and validation files."""

    cfg: MaskSourceConfig
    train: MaskTiles
    val: MaskTiles


def gsd_centre(gsd: tuple[float, float] | None) -> float | None:
    return None if gsd is None else math.sqrt(gsd[0] * gsd[1])


class Datasets:
    """Train/val datasets with the fixed split; names are recorded in the model card."""

    def __init__(self, cfg: PipelineConfig, classes: list[ClassInfo] | None = None) -> None:
        self.classes = classes if classes is not None else mask_classes(cfg)
        d = cfg.data
        self.moscow_train = self.moscow_val = None
        if d.moscow:
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
        self.masks: list[MaskSource] = []
        for mc in d.masks:
            root = data_path(mc.data)
            names = MaskTiles(root, mc.labels).names
            tr3, va3 = split_names(names, mc.val)
            if d.limit_train:
                tr3 = tr3[: d.limit_train]
            self.masks.append(
                MaskSource(mc, MaskTiles(root, mc.labels, tr3), MaskTiles(root, mc.labels, va3))
            )
        names = [c.name for c in self.classes]
        self.scenes = [load_scene_source(sc, cfg.model.gsd_m, names) for sc in d.scenes]
        if self.moscow_train is None and not (self.lc_train or self.masks or self.scenes):
            raise Geo2MapError("data: no training source; give moscow, landcover, masks or scenes")

    def split_record(self) -> dict[str, list[str]]:
        rec = {"moscow": self.moscow_val.names} if self.moscow_val is not None else {}
        if self.lc_val is not None:
            rec["landcover"] = self.lc_val.names
        for m in [*self.masks, *self.scenes]:
            rec[m.cfg.name] = m.val.names
        return rec

    def sources(self, cfg: PipelineConfig) -> list[tuple[Any, int, tuple[float, float] | None]]:
        """(train dataset, crops per step, pixel size range or None = native) per source."""
        d = cfg.data
        out = []
        if self.moscow_train is not None:
            out.append((self.moscow_train, d.moscow_batch, d.moscow_gsd_m))
        if self.lc_train is not None:
            out.append((self.lc_train, d.landcover_batch, d.landcover_gsd_m))
        out += [(m.train, m.cfg.batch, m.cfg.gsd_m) for m in self.masks]
        out += [(sc.train, sc.cfg.batch, None) for sc in self.scenes]  # on the model grid
        return [(ds, n * d.batch_scale, g) for ds, n, g in out if n > 0]

    def batches(self, cfg: PipelineConfig, step: int) -> list[dict[str, torch.Tensor]]:
        """The crops of every source for one step; one batch (one forward pass) when their
        sizes agree, which they do unless the legacy ``landcover_scale`` resizes a batch."""
        d = cfg.data
        rng = np.random.default_rng([cfg.seed, step])
        out = []
        for ds, n, gsd in self.sources(cfg):
            batch = draw_batch(cfg, ds, n, rng, gsd)
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


def draw_batch(
    cfg: PipelineConfig,
    ds: Any,
    n: int,
    rng: np.random.Generator,
    gsd: tuple[float, float] | None,
) -> dict[str, torch.Tensor]:
    """``n`` random augmented crops of ``ds``, each resampled to the model's GSD from a pixel
    size drawn in ``gsd`` (None: native size), collated."""
    d = cfg.data
    samples = []
    for i in rng.integers(0, len(ds), n):
        factor = 1.0
        if gsd is not None:
            factor = draw_factor(rng, gsd, cfg.model.gsd_m, d.scale_jitter)
        samples.append(augment(ds[int(i)], rng, d.crop, d.colour_jitter, factor, d.degrade))
    return collate(samples, cfg.model.mean, cfg.model.std)


class StepBatches(torch.utils.data.Dataset):
    """Step number -> that step's batches, so a DataLoader's worker processes can prepare
    the next steps while the model trains (batches depend only on seed and step)."""

    def __init__(self, data: Datasets, cfg: PipelineConfig) -> None:
        self.data, self.cfg = data, cfg

    def __len__(self) -> int:
        return self.cfg.train.steps

    def __getitem__(self, step: int) -> list[dict[str, torch.Tensor]]:
        return self.data.batches(self.cfg, step)


def step_batches(
    data: Datasets, cfg: PipelineConfig, start: int, device: torch.device
) -> Iterator[list[dict[str, torch.Tensor]]]:
    """The batches of steps ``start``.. on ``device``; with ``data.workers`` > 0 prepared
    ahead in worker processes (pinned memory on CUDA)."""
    w = cfg.data.workers
    loader = torch.utils.data.DataLoader(
        StepBatches(data, cfg),
        batch_size=None,
        sampler=range(start, cfg.train.steps),
        num_workers=w,
        pin_memory=device.type == "cuda",
        prefetch_factor=2 if w else None,
        persistent_workers=False,
    )
    for batches in loader:
        yield [{k: v.to(device, non_blocking=True) for k, v in b.items()} for b in batches]


def train_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without CUDA is refused."""
    if name == "cuda" and not torch.cuda.is_available():
        raise Geo2MapError(
            "--device cuda: no CUDA device is available here (torch.cuda.is_available() is "
            "False); use --device cpu or auto"
        )
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def start_weights(
    cfg: PipelineConfig, G: torch.nn.Module, kwargs: dict[str, Any], data: Datasets
) -> dict:
    """Load ``model.init_from`` into ``G`` (a fresh run only; new classes get new mask
    channels); returns the source card's stages so the new card can list every stage."""
    from geo2map.models.io import load_model

    path = start_model_path(cfg.model.init_from)
    src, card = load_model(path)
    # how the render is drawn (not weights), and the mask's channel count (new classes grow it)
    decoding = ("palette_decode", "gate_classes", "num_classes")
    ours = {k: v for k, v in kwargs.items() if k not in decoding}
    theirs = {k: v for k, v in card.architecture.kwargs.items() if k not in decoding}
    if card.architecture.name != cfg.model.name or ours != theirs:
        raise Geo2MapError(
            f"model.init_from {path} is {card.architecture.name} {_short(theirs)} but this "
            f"pipeline trains {cfg.model.name} {_short(ours)}: start from a model of the same "
            "architecture, or drop init_from"
        )
    if load_grown(G, src.state_dict()):
        seed_new_classes(cfg, src, G, data, len(card.classes))
    return {"init_from": str(path), "stages": card_stages(card)}


def card_stages(card: ModelCard) -> list[dict[str, Any]]:
    """The training stages a card records; a card from before stages were recorded: its run
    as one stage."""
    t = card.training
    if t.get("stages"):
        return list(t["stages"])
    return [{
        "name": t.get("pipeline", {}).get("name", card.name), "steps": t.get("step"),
        "elapsed_s": t.get("elapsed_s"), "hardware": t.get("hardware"),
    }]  # fmt: skip


def seed_new_classes(
    cfg: PipelineConfig, start: torch.nn.Module, G: torch.nn.Module, data: Datasets, old: int
) -> None:
    """Start each new class's channel as a copy of the old class the starting model calls
    its labelled training pixels (classes.py); a class with no such pixel keeps its random
    start."""
    new_ids = list(range(old, len(data.classes)))
    blocks = [sc.train[i] for sc in data.scenes for i in range(min(len(sc.train), 32))]
    sources = closest_old_classes(start, blocks, new_ids, old, cfg.model.mean, cfg.model.std)
    copy_class_channels(G, len(data.classes), sources)
    for k in new_ids:
        seed = data.classes[sources[k]].name if k in sources else "random (no labelled pixel)"
        print(f"new class {data.classes[k].name}: a new mask channel, starting as {seed}")


def frozen_encoder(cfg: PipelineConfig, G: torch.nn.Module) -> torch.nn.Module | None:
    """With ``model.freeze_encoder``: the generator's encoder, its weights no longer trained."""
    if not cfg.model.freeze_encoder:
        return None
    encoder = getattr(getattr(G, "net", G), "encoder", None)
    if encoder is None:
        raise Geo2MapError(
            f"model.freeze_encoder: {cfg.model.name} has no encoder to freeze (smp models do)"
        )
    for p in encoder.parameters():
        p.requires_grad_(False)
    return encoder


def _short(kwargs: dict[str, Any]) -> str:
    kw = {k: v for k, v in kwargs.items() if k not in ("palette", "palette_class")}
    return str(kw)


def source_licence(ref: str) -> str | None:
    """The catalog's licence line of a data source given by catalog name (None for a path)."""
    from geo2map.catalog import load_catalog

    entry = load_catalog().get(ref)
    return None if entry is None or not entry.licence else f"{ref}: {entry.licence}"


def make_card(
    cfg: PipelineConfig,
    kwargs: dict[str, Any],
    data: Datasets,
    extra: dict[str, Any],
    multiple: int = 16,
) -> ModelCard:
    """The card of generator weights; ``multiple``: what chip sides must divide by."""
    licences = [MOSCOW_LICENCE] if data.moscow_val is not None else []
    licences += [LANDCOVER_LICENCE] if data.lc_val is not None else []
    licences += [lic for m in data.masks if (lic := source_licence(m.cfg.data))]
    licences += [lic for sc in data.scenes if (lic := source_licence(sc.cfg.scene))]
    return ModelCard(
        name=cfg.name,
        description=cfg.description,
        architecture=Architecture(name=cfg.model.name, kwargs=kwargs),
        input=InputSpec(
            gsd_m=cfg.model.gsd_m, mean=cfg.model.mean, std=cfg.model.std, multiple=multiple
        ),
        classes=data.classes,
        licence="; ".join(licences) + ". Non-commercial use only where LandCover.ai is included.",
        training={
            "pipeline": cfg.model_dump(mode="json"),
            "palette": [{"name": n, "hex": h, "class": c} for n, h, c in OSM_PALETTE],
            "validation_split": data.split_record(),
            **extra,
        },
    )


def campaign_record(
    campaign: dict[str, Any], cfg: PipelineConfig, done: int, elapsed_s: float, device: str
) -> dict[str, Any]:
    """Card fields of a model at step ``done`` of this run: this stage appended to the stages
    it started from, and the campaign's cumulative steps and seconds."""
    from geo2map.train.evaluate import hardware

    stage = {"name": cfg.name, "steps": done, "elapsed_s": round(elapsed_s, 1),
             "hardware": hardware(device)}  # fmt: skip
    stages = [*campaign.get("stages", []), stage]
    return {
        "step": done,
        "elapsed_s": round(elapsed_s, 1),
        **({"init_from": campaign["init_from"]} if "init_from" in campaign else {}),
        "stages": stages,
        "cumulative_steps": sum(int(st.get("steps") or 0) for st in stages),
        "cumulative_elapsed_s": round(sum(float(st.get("elapsed_s") or 0) for st in stages), 1),
    }


def _setup_threads(cfg: PipelineConfig) -> None:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)


def train_pix2pix(cfg: PipelineConfig, progress: bool = True) -> Path:
    _setup_threads(cfg)
    device = train_device(cfg.device)
    classes = mask_classes(cfg)
    for key in ("mask_class_weights", "render_class_weights"):
        weights = getattr(cfg.loss, key)
        if weights is not None and len(weights) != len(classes):
            raise Geo2MapError(
                f"loss.{key} has {len(weights)} values; the mask has {len(classes)} classes"
            )
    out = Path(cfg.out_dir)
    ckdir = out / "checkpoints"
    data = Datasets(cfg, classes)
    torch.manual_seed(cfg.seed)
    kwargs = with_class_count(model_kwargs(cfg), classes)
    G = build_model(Architecture(name=cfg.model.name, kwargs=kwargs))
    modules: dict[str, torch.nn.Module] = {"G": G}
    archs: dict[str, dict[str, Any]] = {"G": {"name": cfg.model.name, "kwargs": kwargs}}
    D = None
    if cfg.loss.gan > 0:
        if cfg.discriminator is None:
            raise Geo2MapError("loss.gan > 0 needs a discriminator section")
        D = build_model(Architecture(name=cfg.discriminator.name, kwargs=cfg.discriminator.kwargs))
        modules["D"] = D
        archs["D"] = {"name": cfg.discriminator.name, "kwargs": cfg.discriminator.kwargs}
    meta = read_meta(ckdir)
    campaign: dict[str, Any] = {}
    if meta is not None:
        campaign = meta.get("campaign", {})
    elif cfg.model.init_from:
        campaign = start_weights(cfg, G, kwargs, data)
    for m in modules.values():
        m.to(device=device, memory_format=torch.channels_last)
    encoder = frozen_encoder(cfg, G)
    o = cfg.optim
    optims: dict[str, torch.optim.Optimizer] = {
        "G": torch.optim.AdamW(G.parameters(), lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)
    }
    if D is not None:
        optims["D"] = torch.optim.Adam(D.parameters(), lr=o.lr_d, betas=o.betas)

    start, best, elapsed0 = 0, -math.inf, 0.0
    if meta is not None:
        meta, _ = load_checkpoint(ckdir, modules, optims, archs)
        start, best, elapsed0 = meta["step"], meta["best"], meta.get("elapsed_s", 0.0)
        print(f"resuming {out} at step {start}")
    forward = torch.compile(G) if cfg.compile else G
    out.mkdir(parents=True, exist_ok=True)
    val_fields = [f"val_{k}" for k in validation_keys(data)]
    log = RunLog(cfg, out, ["loss", "render_ce", "render_l1", "render_set", "gan_g", "gan_d",
                            "mask", "not_road"], start, elapsed0, progress, postfix=("loss",),
                 val_fields=val_fields)  # fmt: skip
    L = cfg.loss
    amp = {"device_type": device.type, "dtype": torch.bfloat16, "enabled": cfg.train.bf16}
    tables = label_tables(G, device, len(classes))
    # the time budget may end the steps before the loader runs out
    for step, batches in zip(log.steps(), step_batches(data, cfg, start, device), strict=False):
        G.train()
        if encoder is not None:
            encoder.eval()  # its batch-norm statistics stay those it was trained with
        factor = lr_factor(cfg, step)
        for g in optims["G"].param_groups:
            g["lr"] = o.lr * factor
        parts: dict[str, torch.Tensor] = {}
        gan_inputs = []
        for b in batches:
            with torch.autocast(**amp):
                outp = forward(b["image"])
            for k, v in generator_losses(cfg, b, outp, tables).items():
                parts[k] = parts[k] + v if k in parts else v
            if D is not None and b["has_map"].any():
                sel = b["has_map"]
                src = b["image"][sel]
                fake = outp["render"][sel].float().contiguous(memory_format=torch.channels_last)
                with torch.autocast(**amp):
                    pred_fake = D(torch.cat([src, fake * 2 - 1], 1))
                parts["gan_g"] = L.gan * gan_loss(pred_fake, True, L.gan_mode)
                gan_inputs.append((src, fake, b["map_rgb"][sel] * 2 - 1))
        loss = sum(parts.values())
        optims["G"].zero_grad(set_to_none=True)
        loss.backward()
        optims["G"].step()
        for src, fake, real in gan_inputs:
            assert D is not None
            with torch.autocast(**amp):
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
            extra = campaign_record(campaign, cfg, done, log.elapsed(), device.type)
            best = validate_and_keep_best(
                cfg, G, kwargs, data, out, done, extra, best, row, log.fields
            )

        def checkpoint(done: int = done) -> None:
            save_checkpoint(ckdir, modules, optims, {}, {
                "step": done, "best": best, "elapsed_s": log.elapsed(),
                "architectures": archs, "config": cfg.model_dump(mode="json"),
                "campaign": campaign,
            })  # fmt: skip

        log.end_step(done, o.lr * factor, validate, checkpoint)
    # the final weights too: "best" is chosen on validation, "last" is what the schedule ends at
    extra = campaign_record(campaign, cfg, log.done, log.elapsed(), device.type)
    card = make_card(cfg, kwargs, data, extra, G.multiple)
    save_model(G, card, out / "last")
    return out / "best"


@dataclass
class LabelTables:
    """``class_set_nll`` tables: what partial labels allow on the mask logits, and which palette
    colours each label allows on the render logits (None without a palette head)."""

    mask: torch.Tensor
    render: torch.Tensor | None


def label_tables(G: torch.nn.Module, device: torch.device, n_classes: int = 5) -> LabelTables:
    """Rows for every partial label: the classes (and their palette colours) it allows. A
    class no palette colour belongs to (a new class) teaches the render nothing."""
    every = range(n_classes)
    partial = {
        partial_label(set(s)): set(s) for n in range(1, n_classes) for s in combinations(every, n)
    }
    rows = {code: [c not in s for c in every] for code, s in partial.items()}
    mask = membership(rows, n_classes).to(device)
    render = None
    if getattr(G, "render_mode", "rgb") == "palette":
        rows = {c: [int(k) == c for k in PALETTE_CLASS] for c in every}
        for code, s in partial.items():
            rows[code] = [int(p) not in s for p in PALETTE_CLASS]
        render = membership(rows, len(PALETTE_CLASS)).to(device)
    return LabelTables(mask, render)


def palette_weights(class_weights: list[float] | None) -> list[float] | None:
    """Per-palette-colour CE weights from per-class ones (each colour takes its class's)."""
    if class_weights is None:
        return None
    return [class_weights[int(c)] for c in PALETTE_CLASS]


def generator_losses(
    cfg: PipelineConfig,
    b: dict[str, torch.Tensor],
    outp: dict[str, torch.Tensor],
    tables: LabelTables | None = None,
) -> dict[str, torch.Tensor]:
    """Each head's loss on the samples of ``b`` that have its target (the GAN term aside)."""
    L = cfg.loss
    has_map = b["has_map"]
    parts: dict[str, torch.Tensor] = {}
    if has_map.any():
        if L.render_ce > 0:
            parts["render_ce"] = L.render_ce * masked_ce(
                outp["render_logits"][has_map],
                b["map_index"][has_map],
                palette_weights(L.render_class_weights),
            )
        if L.render_l1 > 0:
            # map pixels far from every palette colour (labels, icons) are not scored
            labelled = (b["map_index"][has_map] != IGNORE_LABEL).unsqueeze(1)
            diff = (outp["render"][has_map].float() - b["map_rgb"][has_map]).abs()
            parts["render_l1"] = (
                L.render_l1 * (diff * labelled).sum() / (3 * labelled.sum()).clamp(min=1)
            )
    # mask: image+mask sources at full weight (class-weighted CE), OSM-derived masks at
    # moscow_mask; partial labels ("any class but k") only push probability off class k
    mask_only = ~has_map & b["has_mask"]
    mask_loss = outp["mask_logits"].sum() * 0.0
    for sel, w, cw in (
        (mask_only, 1.0, L.mask_class_weights),
        (has_map & b["has_mask"], L.moscow_mask, None),
    ):
        if sel.any() and w > 0:
            lg, tg = outp["mask_logits"][sel], b["mask"][sel]
            mask_loss = mask_loss + w * (
                L.mask_ce * masked_ce(lg, tg, cw) + L.mask_dice * dice_loss(lg, tg)
            )
    parts["mask"] = mask_loss
    if tables is not None and mask_only.any():
        tg = b["mask"][mask_only]
        if ((tg > PARTIAL_BASE) & (tg != IGNORE_LABEL)).any():  # partial labels
            parts["not_road"] = L.mask_ce * class_set_nll(
                outp["mask_logits"][mask_only], tg, tables.mask
            )
        if L.render_from_masks > 0 and tables.render is not None:
            parts["render_set"] = L.render_from_masks * class_set_nll(
                outp["render_logits"][mask_only], tg, tables.render
            )
    return parts


def validate_and_keep_best(
    cfg: PipelineConfig,
    G: torch.nn.Module,
    kwargs: dict[str, Any],
    data: Datasets,
    out: Path,
    done: int,
    extra: dict[str, Any],
    best: float,
    row: dict[str, Any],
    fields: list[str],
) -> float:
    """Validate at step ``done``, add the metrics to the log ``row``, export the generator as
    ``out/best`` (card fields ``extra``) when its score beats ``best``; returns the best
    score so far."""
    val = validate(cfg, G, data, out / "samples" / f"step{done:06d}.png")
    row.update({f"val_{k}": f"{v:.4f}" for k, v in val.items() if f"val_{k}" in fields})
    if val["score"] > best:
        best = val["score"]
        card = make_card(cfg, kwargs, data, extra, G.multiple)
        card.metrics = {"validation": val}
        save_model(G, card, out / "best")
    tqdm.write(f"step {done}: " + ", ".join(f"{k} {v:.4f}" for k, v in val.items()))
    return best


def validation_keys(data: Datasets) -> list[str]:
    """The metric names ``validate`` returns for these datasets (the log's columns)."""
    keys = ["rmse", "acc5", "acc10", "ssim", "osm_miou"] if data.moscow_val is not None else []
    keys += ["lc_miou"] if data.lc_val is not None else []
    keys += [mask_metric_name(m.cfg) for m in data.masks]
    keys += [sc.metric for sc in data.scenes]
    return [*keys, "score"]


def mask_metric_name(mc: MaskSourceConfig) -> str:
    return f"{mc.name}_road_iou" if mc.labels == "road" else f"{mc.name}_miou"


def eval_factor(gsd: tuple[float, float] | None, model_gsd: float) -> float:
    """Validation images are seen at the model's GSD from the centre of the source's range
    (native size when the source has no range, or ``model_gsd`` is inf)."""
    centre = gsd_centre(gsd)
    return 1.0 if centre is None or math.isinf(model_gsd) else centre / model_gsd


@contextmanager
def drawing(G: torch.nn.Module, style: str) -> Iterator[None]:
    """A model of several styles (StarGAN) draws ``style`` inside the block, if it has it."""
    before = getattr(G, "style", None)
    if before is None or style not in getattr(G, "palettes", ()):
        yield
        return
    G.set_style(style)
    try:
        yield
    finally:
        G.set_style(before)


def validate(
    cfg: PipelineConfig, G: torch.nn.Module, data: Datasets, grid: Path, native: bool = False
) -> dict[str, float]:
    """Scores on the validation files of every source, images resampled to the model's GSD
    (``native``: at their own size, the protocol of the cards before sources had a GSD)."""
    t, d = cfg.train, cfg.data
    gsd = math.inf if native else cfg.model.gsd_m
    mean, std = cfg.model.mean, cfg.model.std
    val: dict[str, float] = {}
    rows: list = []
    if data.moscow_val is not None:
        m, rows = score_pairs(G, data.moscow_val, mean, std, limit=t.val_moscow,
                              keep=t.grid_samples, factor=eval_factor(d.moscow_gsd_m, gsd))  # fmt: skip
        val = {k: m[k] for k in ("rmse", "acc5", "acc10", "ssim")}
        val["osm_miou"] = m["osm_miou"]
    masks: list[float] = []
    if data.lc_val is not None:
        with drawing(G, "landcover"):
            m2, rows2 = score_chips(G, data.lc_val, mean, std, limit=t.val_landcover,
                                    keep=t.grid_samples, factor=eval_factor(d.landcover_gsd_m, gsd))  # fmt: skip
        val["lc_miou"] = m2["miou"]
        masks.append(m2["miou"])
        rows += rows2
    for src in data.masks:
        m3, rows3 = score_chips(G, src.val, mean, std, keep=1, batch=1,
                                factor=eval_factor(src.cfg.gsd_m, gsd))  # fmt: skip
        key = mask_metric_name(src.cfg)
        val[key] = m3["iou_road"] if src.cfg.labels == "road" else m3["miou"]
        masks.append(val[key])
        rows += rows3
    for sc in data.scenes:
        m4, rows4 = score_chips(G, sc.val, mean, std, keep=1, batch=1,
                                classes=[c.name for c in data.classes],
                                colours=np.array([c.color for c in data.classes], np.uint8))  # fmt: skip
        val[sc.metric] = m4["miou"] if sc.drawn is None else m4["iou_class"]
        masks.append(val[sc.metric])
        rows += rows4
    save_grid(rows, grid, cell=160)
    # one number to pick "best": render accuracy and mask quality (mean over the mask
    # sources), equally weighted; without map pairs, mask quality alone
    mask_score = float(np.mean(masks)) if masks else val["osm_miou"]
    render_score = val["acc10"] - val["rmse"] / 100 if "rmse" in val else 0.0
    val["score"] = render_score + mask_score
    return val
