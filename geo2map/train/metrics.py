"""Evaluation metrics.

Render metrics follow the GcGAN protocol (Fu et al. 2019, on the pix2pix maps set):
images compared at 256x256 in 0..255;
- acc(delta): fraction of pixels whose max over R, G, B of |real - fake| is below delta;
- RMSE per image: sqrt(sum over pixels and channels of diff^2 / 256^2), averaged over images
  (the sum is over channels but the divisor counts pixels only, as in GcGAN's code);
- SSIM: mean structural similarity over channels (skimage, data_range 255).
Mask metrics: per-class IoU from a confusion matrix accumulated over the whole set, and mIoU.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from skimage.metrics import structural_similarity

EVAL_SIZE = 256


def to_eval_size(rgb: np.ndarray, size: int = EVAL_SIZE) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3) float64; bicubic like the pix2pix data loader."""
    if rgb.shape[:2] != (size, size):
        rgb = np.asarray(Image.fromarray(rgb).resize((size, size), Image.BICUBIC))
    return rgb.astype(np.float64)


def render_metrics(real: np.ndarray, fake: np.ndarray) -> dict[str, float]:
    """Metrics of one image pair given as (H, W, 3) arrays in 0..255 of equal shape."""
    real = np.asarray(real, dtype=np.float64)
    fake = np.asarray(fake, dtype=np.float64)
    diff = real - fake
    h, w = diff.shape[:2]
    err = np.abs(diff).max(axis=-1)
    return {
        "rmse": float(np.sqrt((diff**2).sum() / (h * w))),
        "acc5": float((err < 5).mean()),
        "acc10": float((err < 10).mean()),
        "ssim": float(structural_similarity(real, fake, channel_axis=-1, data_range=255.0)),
    }


def mean_metrics(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]} if rows else {}


def confusion(
    target: np.ndarray, pred: np.ndarray, num_classes: int, ignore: int = 255
) -> np.ndarray:
    keep = target != ignore
    t = target[keep].astype(np.int64)
    p = pred[keep].astype(np.int64)
    return np.bincount(t * num_classes + p, minlength=num_classes**2).reshape(
        num_classes, num_classes
    )


def iou_from_confusion(cm: np.ndarray, names: list[str] | None = None) -> dict[str, float]:
    """Per-class IoU (NaN for a class absent from both target and prediction) and their mean."""
    tp = np.diag(cm).astype(np.float64)
    union = cm.sum(0) + cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
    names = names or [str(i) for i in range(len(tp))]
    out = {f"iou_{n}": float(v) for n, v in zip(names, iou, strict=True)}
    out["miou"] = float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")
    return out
