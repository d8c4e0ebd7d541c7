"""Losses: masked CE / Dice for the heads, GAN losses for the discriminators."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from geo2map.train.data import IGNORE_LABEL


def masked_ce(
    logits: torch.Tensor, target: torch.Tensor, weight: list[float] | None = None
) -> torch.Tensor:
    """Cross-entropy ignoring IGNORE_LABEL pixels, optionally class-weighted; 0 when nothing
    is labelled."""
    if not (target != IGNORE_LABEL).any():
        return logits.sum() * 0.0
    w = None if weight is None else torch.tensor(weight, dtype=torch.float32)
    return F.cross_entropy(logits.float(), target, weight=w, ignore_index=IGNORE_LABEL)


def dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Soft multi-class Dice over labelled pixels (helps the rare classes' IoU)."""
    valid = (target != IGNORE_LABEL).unsqueeze(1)
    if not valid.any():
        return logits.sum() * 0.0
    probs = torch.softmax(logits.float(), 1) * valid
    onehot = F.one_hot(target.clamp(max=logits.shape[1] - 1), logits.shape[1]).permute(0, 3, 1, 2)
    onehot = onehot * valid
    inter = (probs * onehot).sum((0, 2, 3))
    denom = probs.sum((0, 2, 3)) + onehot.sum((0, 2, 3))
    present = onehot.sum((0, 2, 3)) > 0
    dice = (2 * inter + eps) / (denom + eps)
    return 1 - dice[present].mean() if present.any() else logits.sum() * 0.0


def gan_loss(pred: torch.Tensor, real: bool, mode: str = "lsgan") -> torch.Tensor:
    pred = pred.float()
    target = torch.ones_like(pred) if real else torch.zeros_like(pred)
    if mode == "lsgan":
        return F.mse_loss(pred, target)
    return F.binary_cross_entropy_with_logits(pred, target)
