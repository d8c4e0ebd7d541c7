"""Batch-norm statistics of the path a model runs at inference (precise batch norm).

An adversarial generator's running statistics average every batch it saw in training, and
some of those are not what it draws from at inference: CycleGAN's G also translates maps
(the identity term), StarGAN's batches mix photos, maps and mask pictures. In eval mode such
a mean fits no single input. Re-measuring the statistics on training photos through the
inference path, as precise batch norm does (Wu & Johnson 2021), makes eval mode normalize as
training did for those inputs: CycleGAN's G at step 250, RMSE 69.3 -> 57.9 and LandCover.ai
mIoU 0.34 -> 0.43 on 16 / 50 validation images. (StarGAN keeps statistics per style:
models/stargan.py. UNIT's decoders learn from noisy codes, z + N(0, 1), and run on the
noise-free mean: re-measured on the mean, its step-250 RMSE went 56.6 -> 60.3, so it keeps
its running statistics.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import nn

from geo2map.train.config import PipelineConfig
from geo2map.train.loop import Datasets, draw_batch


@torch.no_grad()
def recompute_batch_norm(
    model: nn.Module, forward: Callable[[torch.Tensor], object], batches: Iterable[torch.Tensor]
) -> None:
    """Set the running statistics of every batch norm of ``model`` that ``forward`` reaches
    to the equal-weight mean of its statistics over ``batches``; the others keep theirs."""
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d) and m.track_running_stats]
    saved = [(m.momentum, m.running_mean.clone(), m.running_var.clone(),
              m.num_batches_tracked.clone()) for m in norms]  # fmt: skip
    was_training = model.training
    model.train()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    for x in batches:
        forward(x)
    for m, (momentum, mean, var, count) in zip(norms, saved, strict=True):
        m.momentum = momentum
        if int(m.num_batches_tracked) == 0:  # not on the path: as it was
            m.running_mean.copy_(mean)
            m.running_var.copy_(var)
            m.num_batches_tracked.copy_(count)
    model.train(was_training)


def photo_batches(cfg: PipelineConfig, data: Datasets, batches: int = 8) -> list[torch.Tensor]:
    """Fixed draws of training photos, a source per batch at its training batch size (as the
    generator's photo forwards see them): Moscow photos, and LandCover.ai photos where the
    run trains on them."""
    d, out = cfg.data, []
    for i in range(batches):
        rng = np.random.default_rng([cfg.seed, 10**6 + i])
        if data.moscow_train is not None:
            out.append(draw_batch(cfg, data.moscow_train, d.moscow_batch, rng, d.moscow_gsd_m))
        if data.lc_train is not None and d.landcover_batch > 0:
            out.append(draw_batch(cfg, data.lc_train, d.landcover_batch, rng, d.landcover_gsd_m))
    return [b["image"] for b in out]
