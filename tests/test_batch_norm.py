"""Precise batch norm: a generator's eval mode normalizes as training did for its photos."""

from __future__ import annotations

import torch
from torch import nn

from geo2map.models.cyclegan import ResnetGenerator
from geo2map.train.batch_norm import recompute_batch_norm


def test_after_measuring_photos_eval_mode_draws_them_as_training_did():
    torch.manual_seed(0)
    G = ResnetGenerator(3, 3, 0, base=8, n_blocks=1)
    unused = nn.BatchNorm2d(4)  # a layer the photo path never reaches
    G.add_module("unused", unused)
    unused.running_mean.fill_(0.5)
    photos = torch.rand(4, 3, 32, 32) * 1.6 - 0.9
    maps = torch.full((4, 3, 32, 32), 0.8)  # flat pictures, as the identity term feeds G
    with torch.no_grad():
        G.train()
        for _ in range(5):
            G(photos), G(maps)  # running statistics of photos and maps alike
        trained = G(photos)["render"]
        G.eval()
        before = G(photos)["render"]
        recompute_batch_norm(G, G, [photos])
        assert not G.training
        after = G(photos)["render"]
    # (running variances are unbiased, batch norm in training divides by n: ~1e-3 apart)
    assert torch.allclose(after, trained, atol=1e-2)
    assert not torch.allclose(before, trained, atol=5e-2)
    assert torch.all(unused.running_mean == 0.5) and unused.momentum == 0.1
