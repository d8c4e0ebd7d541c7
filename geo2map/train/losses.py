"""Losses: masked CE / Dice and partial-label terms for the heads, GAN losses for the
discriminators."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from geo2map.models.palette_head import colour_distances
from geo2map.train.data import IGNORE_LABEL, PARTIAL_BASE


def _known(target: torch.Tensor) -> torch.Tensor:
    """Partial labels ("any class but those of a set", data.partial_label) made IGNORE_LABEL."""
    return torch.where(target > PARTIAL_BASE, IGNORE_LABEL, target)


def masked_ce(
    logits: torch.Tensor, target: torch.Tensor, weight: list[float] | None = None
) -> torch.Tensor:
    """Cross-entropy over pixels with a class label (IGNORE_LABEL and partial labels skipped),
    optionally class-weighted; 0 when nothing is labelled."""
    target = _known(target)
    if not (target != IGNORE_LABEL).any():
        return logits.sum() * 0.0
    w = None if weight is None else torch.tensor(weight, dtype=torch.float32, device=logits.device)
    return F.cross_entropy(logits.float(), target, weight=w, ignore_index=IGNORE_LABEL)


def dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Soft multi-class Dice over pixels with a class label (helps the rare classes' IoU)."""
    target = _known(target)
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


def class_set_nll(logits: torch.Tensor, target: torch.Tensor, member: torch.Tensor) -> torch.Tensor:
    """-log of the probability mass on the channels a pixel's label allows, averaged over the
    labelled pixels; 0 when none is labelled.

    ``member[label, k]`` says whether channel ``k`` is allowed for ``label`` (a row for every
    label value up to the largest partial label). For a one-hot row this is the cross-entropy; for NOT_ROAD on the mask
    logits it is -log(1 - p(road)); for a class on palette logits it is -log of the summed
    probability of that class's map colours, so the render learns from masks without being
    told which of a class's colours to draw.
    """
    target = target.long()
    allowed = member[target].permute(0, 3, 1, 2)  # (B, K, H, W)
    labelled = allowed.any(1)
    if not labelled.any():
        return logits.sum() * 0.0
    lg = logits.float()
    inside = torch.logsumexp(lg.masked_fill(~allowed, float("-inf")), 1)
    nll = torch.logsumexp(lg, 1) - inside
    return nll[labelled].mean()


def membership(rows: dict[int, list[bool]], channels: int) -> torch.Tensor:
    """A (labels, channels) bool table for ``class_set_nll``: the allowed channels of each
    label in ``rows``; other label values allow nothing (they are not scored)."""
    member = torch.zeros(max(256, max(rows, default=0) + 1), channels, dtype=torch.bool)
    for label, row in rows.items():
        member[label] = torch.tensor(row, dtype=torch.bool)
    return member


def gan_loss(pred: torch.Tensor, real: bool, mode: str = "lsgan") -> torch.Tensor:
    pred = pred.float()
    target = torch.ones_like(pred) if real else torch.zeros_like(pred)
    if mode == "lsgan":
        return F.mse_loss(pred, target)
    return F.binary_cross_entropy_with_logits(pred, target)


def nearest_colour_ce(
    drawn: torch.Tensor, target: torch.Tensor, colours: torch.Tensor, sharpness: float = 100.0
) -> torch.Tensor:
    """Cross-entropy of a drawing's colours read as a choice among ``colours`` (K, 3): each
    pixel's logits are minus its squared distances to them (x ``sharpness``), its label the
    colour nearest the target picture's pixel. L1 alone settles on blends between colours;
    this pushes each pixel to its own colour and away from the others."""
    logits = -sharpness * colour_distances(drawn, colours)
    return F.cross_entropy(logits, colour_distances(target, colours).argmin(dim=1))
