"""Score a model on validation pairs / chips: metrics table + picture grid.

The model runs as in inference (eval mode, bf16 autocast, channels_last) on the whole
512x512 image at its native GSD; the render and the real map are then resized to 256x256
for the GcGAN-protocol metrics (see metrics.py).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from geo2map.errors import Geo2MapError
from geo2map.models.card import DEFAULT_CLASSES
from geo2map.train.data import (
    PARTIAL_BASE,
    LandCoverChips,
    MoscowPairs,
    excluded_classes,
    list_pairs,
)
from geo2map.train.metrics import (
    confusion,
    iou_from_confusion,
    mean_metrics,
    render_metrics,
    to_eval_size,
)
from geo2map.train.palette import PALETTE_RGB

CLASS_NAMES = [c["name"] for c in DEFAULT_CLASSES]
CLASS_COLOURS = np.array([c["color"] for c in DEFAULT_CLASSES], np.uint8)


def mask_picture(mask: np.ndarray, colours: np.ndarray = CLASS_COLOURS) -> np.ndarray:
    """A label map drawn in its class colours: ignored pixels black, partial labels grey."""
    out = np.zeros((*mask.shape, 3), np.uint8)
    known = mask < len(colours)
    out[known] = colours[mask[known]]
    out[mask > PARTIAL_BASE] = 120
    return out


@torch.no_grad()
def predict(
    model: nn.Module,
    images: list[np.ndarray],
    mean: list[float],
    std: list[float],
    bf16: bool = True,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """uint8 (H, W, 3) images of one size -> (render uint8 (H, W, 3), class mask (H, W)) each,
    on the model's device, as inference runs it (eval mode, bf16 autocast, channels_last)."""
    model.eval()
    # an int8 graph has no float parameters: it runs on the CPU
    device = next(model.parameters(), torch.empty(0)).device
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    x = x.to(device).contiguous(memory_format=torch.channels_last)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        out = model(x)
    render = (out["render"].float().clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1)
    mask = out["mask_logits"].float().argmax(1)
    return list(render.cpu().numpy()), list(mask.cpu().numpy())


def _resize(a: np.ndarray, hw: tuple[int, int], nearest: bool = False) -> np.ndarray:
    if a.shape[:2] == hw:
        return a
    mode = Image.NEAREST if nearest else Image.BILINEAR
    return np.asarray(Image.fromarray(a).resize((hw[1], hw[0]), mode))


def predict_at_gsd(
    model: nn.Module,
    image: np.ndarray,
    factor: float,
    mean: list[float],
    std: list[float],
    tile: int = 512,
    multiple: int = 32,
) -> tuple[np.ndarray, np.ndarray]:
    """One image of any size, as the pipeline sees it: resized by ``factor`` to the model's
    GSD, run in ``tile``-pixel tiles (padded by reflection to the model's multiple), and the
    render and mask resized back to the image's own grid (nearest for the mask)."""
    h, w = image.shape[:2]
    hw = (max(1, round(h * factor)), max(1, round(w * factor)))
    x = _resize(image, hw)
    render = np.zeros((*hw, 3), np.uint8)
    mask = np.zeros(hw, np.int64)
    for y0 in range(0, hw[0], tile):
        for x0 in range(0, hw[1], tile):
            win = x[y0 : y0 + tile, x0 : x0 + tile]
            th, tw = win.shape[:2]
            ph, pw = -th % multiple, -tw % multiple
            if ph or pw:
                win = np.pad(win, ((0, ph), (0, pw), (0, 0)), mode="symmetric")
            r, m = predict(model, [win], mean, std)
            render[y0 : y0 + th, x0 : x0 + tw] = r[0][:th, :tw]
            mask[y0 : y0 + th, x0 : x0 + tw] = m[0][:th, :tw]
    return _resize(render, (h, w)), _resize(mask.astype(np.uint8), (h, w), nearest=True)


def score_pairs(
    model: nn.Module,
    ds: MoscowPairs,
    mean: list[float],
    std: list[float],
    limit: int | None = None,
    batch: int = 2,
    keep: int = 0,
    factor: float = 1.0,
) -> tuple[dict[str, float], list[tuple[np.ndarray, ...]]]:
    """GcGAN render metrics and OSM-derived mask IoUs; ``factor`` != 1 runs each image at the
    model's GSD (``predict_at_gsd``), 1 at its native size."""
    rows, kept = [], []
    cm = np.zeros((5, 5), np.int64)
    n = len(ds) if limit is None else min(limit, len(ds))
    for i in range(0, n, batch):
        samples = [ds[j] for j in range(i, min(n, i + batch))]
        renders, masks = predict_samples(model, samples, mean, std, factor)
        for s, r, m in zip(samples, renders, masks, strict=True):
            rows.append(render_metrics(to_eval_size(s.map_rgb), to_eval_size(r)))
            cm += confusion(s.mask, m, 5)
            if len(kept) < keep:
                kept.append((s.image, s.map_rgb, r, mask_picture(m)))  # sat | map | render | mask
    out = mean_metrics(rows)
    out.update({f"osm_{k}": v for k, v in iou_from_confusion(cm, CLASS_NAMES).items()})
    return out, kept


def predict_samples(
    model: nn.Module, samples: list[Any], mean: list[float], std: list[float], factor: float
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Renders and class masks of the samples' images, seen at ``factor`` x their size."""
    same_size = len({s.image.shape for s in samples}) == 1
    if factor == 1.0 and same_size and all(d % 32 == 0 for d in samples[0].image.shape[:2]):
        return predict(model, [s.image for s in samples], mean, std)
    outs = [predict_at_gsd(model, s.image, factor, mean, std) for s in samples]
    return [o[0] for o in outs], [o[1] for o in outs]


def score_chips(
    model: nn.Module,
    ds: LandCoverChips,
    mean: list[float],
    std: list[float],
    limit: int | None = None,
    batch: int = 8,
    keep: int = 0,
    factor: float = 1.0,
    classes: list[str] = CLASS_NAMES,
    colours: np.ndarray = CLASS_COLOURS,
) -> tuple[dict[str, float], list[tuple[np.ndarray, ...]]]:
    """Per-class IoU and mIoU over the chips (labels 255 ignored) for a model whose mask has
    ``classes`` (drawn in ``colours`` in the kept pictures). For partial labels ("any class
    but those of a set S": road / not-road tiles, complete footprints) only the classes of S
    against everything else mean something: ``iou_class`` is their mean IoU (for one class,
    its IoU; also ``iou_<name>``)."""
    n_classes = len(classes)
    cm = np.zeros((n_classes, n_classes), np.int64)
    kept = []
    drawn: set[int] = set()  # the classes S partial labels said were drawn completely
    n = len(ds) if limit is None else min(limit, len(ds))
    for i in range(0, n, batch):
        samples = [ds[j] for j in range(i, min(n, i + batch))]
        renders, masks = predict_samples(model, samples, mean, std, factor)
        for s, r, m in zip(samples, renders, masks, strict=True):
            target = s.mask
            codes = np.unique(target[(target > PARTIAL_BASE) & (target != 255)])
            if codes.size:  # some classes drawn completely: score them against the rest
                drawn |= excluded_classes(int(codes[0]))
                rest = min(set(range(n_classes)) - drawn)  # any other class stands for "none of S"
                known = np.isin(target, list(drawn))
                target = np.where(target == 255, 255, np.where(known, target, rest))
                m = np.where(np.isin(m, list(drawn)), m, rest)
            cm += confusion(target, m, n_classes)
            if len(kept) < keep:
                kept.append((s.image, mask_picture(s.mask, colours), r, mask_picture(m, colours)))
    scores = iou_from_confusion(cm, classes)
    if drawn:
        scores["iou_class"] = float(np.mean([scores[f"iou_{classes[k]}"] for k in drawn]))
    return scores, kept


def most_common_colour_baseline(
    ds: MoscowPairs, train: MoscowPairs | None = None
) -> dict[str, float]:
    """Predict one flat colour everywhere: the most frequent (quantised) map colour of ``train``."""
    counts: dict[tuple[int, int, int], int] = {}
    src = train if train is not None else ds
    for i in range(0, len(src), max(1, len(src) // 200)):
        q = (src[i].map_rgb[::4, ::4].reshape(-1, 3) // 4 * 4 + 2).astype(np.int64)
        keys, n = np.unique(q, axis=0, return_counts=True)
        for k, c in zip(map(tuple, keys.tolist()), n.tolist(), strict=True):
            counts[k] = counts.get(k, 0) + c
    colour = np.array(max(counts, key=counts.get), np.float64)
    rows = []
    for i in range(len(ds)):
        real = to_eval_size(ds[i].map_rgb)
        rows.append(render_metrics(real, np.broadcast_to(colour, real.shape)))
    out = mean_metrics(rows)
    out["colour"] = [int(c) for c in colour]
    return out


def snapped_map_oracle(ds: MoscowPairs) -> dict[str, float]:
    """Upper bound of a palette render: the true map snapped to the palette."""
    from geo2map.train.palette import snap_to_palette

    rows = []
    for i in range(len(ds)):
        real = ds[i].map_rgb
        rows.append(
            render_metrics(to_eval_size(real), to_eval_size(PALETTE_RGB[snap_to_palette(real)]))
        )
    return mean_metrics(rows)


def save_grid(rows: list[tuple[np.ndarray, ...]], path: Path, cell: int = 192) -> Path:
    """One row per sample: the images of the tuple side by side, each resized to ``cell``."""
    if not rows:
        return path
    cols = len(rows[0])
    canvas = Image.new("RGB", (cols * cell, len(rows) * cell), (255, 255, 255))
    for r, row in enumerate(rows):
        for c, img in enumerate(row):
            tile = Image.fromarray(np.asarray(img, np.uint8)).resize((cell, cell), Image.BILINEAR)
            canvas.paste(tile, (c * cell, r * cell))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial.png")
    canvas.save(tmp, optimize=True)
    tmp.replace(path)
    return path


def _val_names(card_training: dict[str, Any], key: str) -> list[str] | None:
    split = card_training.get("validation_split", {})
    return split.get(key)


def evaluate(
    model_path: str | Path,
    pairs_dir: str | Path | None = None,
    masks_dir: str | Path | None = None,
    out_dir: str | Path | None = None,
    all_files: bool = False,
    limit: int | None = None,
    precision: str = "bf16",
) -> dict[str, Any]:
    """Metrics of a saved model on the validation pairs (and chips) recorded in its card.

    With ``all_files`` (or a card without a recorded split) every pair in the folder is used.
    Writes ``metrics.json``, ``metrics.md`` and ``grid.png`` to ``out_dir`` when given.
    """
    from geo2map.models.io import load_model

    if pairs_dir is None and masks_dir is None:
        raise Geo2MapError("evaluate needs --pairs and/or --masks")
    model, card = load_model(model_path)
    if precision == "int8":  # as `--precision int8` runs it (bf16 autocast does not reach it)
        from geo2map.models.int8 import quantize
        from geo2map.translator import pick_device, pick_precision

        pick_precision(pick_device("cpu"), "int8", card)  # refuses a card without calibration
        model = quantize(model, card.int8)
    elif precision != "bf16":
        raise Geo2MapError(f"evaluate precision {precision!r}: use bf16 or int8")
    mean, std = card.input.mean, card.input.std
    result: dict[str, Any] = {"model": str(model_path), "precision": precision}
    grids: list[tuple[np.ndarray, ...]] = []
    if pairs_dir is not None:
        names = None if all_files else _val_names(card.training, "moscow")
        if names is not None:
            stems = {s for s, _, _ in list_pairs(pairs_dir, "sat", "map")}
            if not set(names) <= stems:
                names = None  # another folder: score all of it
        ds = MoscowPairs(pairs_dir, names, cache=False)
        m, grids = score_pairs(model, ds, mean, std, limit=limit, keep=6)
        result["pairs"] = {"count": min(len(ds), limit or len(ds)), **m}
    if masks_dir is not None:
        names = None if all_files else _val_names(card.training, "landcover")
        ds2 = LandCoverChips(masks_dir, names)
        m2, _ = score_chips(model, ds2, mean, std, limit=limit)
        result["masks"] = {"count": min(len(ds2), limit or len(ds2)), **m2}
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(result, indent=2))
        (out / "metrics.md").write_text(metrics_table(result))
        if grids:
            save_grid(grids, out / "grid.png")
    return result


def evaluate_pipeline(
    model_path: str | Path,
    pipeline: str | Path,
    out_dir: str | Path | None = None,
    native: bool = False,
) -> dict[str, float]:
    """Score a saved model on every validation split of a training pipeline (Moscow pairs,
    LandCover.ai, the ``data.masks`` sources), all files, at the model's GSD (``native``: at
    the files' own size). The splits are salted hashes of file names, so any model is scored
    on the same files; writes ``metrics.json`` and ``grid.png`` to ``out_dir``."""
    from geo2map.models.io import load_model
    from geo2map.train.config import load_config
    from geo2map.train.loop import Datasets, validate

    cfg = load_config(pipeline)
    model, card = load_model(model_path)
    d = cfg.data
    cfg = cfg.model_copy(
        update={
            "model": cfg.model.model_copy(
                update={"gsd_m": card.input.gsd_m, "mean": card.input.mean, "std": card.input.std}
            ),
            "train": cfg.train.model_copy(
                update={
                    "val_moscow": d.moscow_val,
                    "val_landcover": d.landcover_val,
                    "grid_samples": 4,
                }  # fmt: skip
            ),
        }
    )
    out = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp())
    val = validate(cfg, model, Datasets(cfg), out / "grid.png", native=native)
    result = {"model": str(model_path), "protocol": "native" if native else "model-gsd", **val}
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(result, indent=2))
    return result


def hardware(device: str = "cpu") -> str:
    """CPU model and thread count (and the GPU when training ran on CUDA), for the card."""
    import os
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name() if device == "cuda" else "no GPU"
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads, {gpu}"


def metrics_table(result: dict[str, Any]) -> str:
    lines = ["| set | n | metric | value |", "|---|---|---|---|"]
    for key in ("pairs", "masks"):
        if key in result:
            n = result[key]["count"]
            for k, v in result[key].items():
                if k != "count":
                    lines.append(f"| {key} | {n} | {k} | {v:.4f} |")
    return "\n".join(lines) + "\n"
