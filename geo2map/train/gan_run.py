"""What the adversarial modes (CycleGAN, StarGAN, UNIT) share around their losses: the
networks built from their architectures, Adam optimizers, resume after a kill, the lr
schedule, validation of the generator ``G``, checkpoints, and the last weights with a card."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from geo2map.models.card import Architecture
from geo2map.models.io import save_model
from geo2map.models.registry import build_model
from geo2map.train.checkpoint import load_checkpoint, read_meta, save_checkpoint
from geo2map.train.config import PipelineConfig
from geo2map.train.loop import (
    Datasets,
    campaign_record,
    lr_factor,
    make_card,
    start_weights,
    train_device,
    validate_and_keep_best,
)
from geo2map.train.runlog import RunLog


class GanRun:
    """One run: ``archs`` (module name -> {"name", "kwargs"}, ``G`` the generator that is
    validated and saved) trained by ``optimized`` (optimizer name -> the modules it updates
    and its base learning rate)."""

    def __init__(
        self,
        cfg: PipelineConfig,
        archs: dict[str, dict[str, Any]],
        optimized: dict[str, tuple[list[str], float]],
        fields: list[str],
        progress: bool,
        weight_decay: float = 0.0,
    ) -> None:
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.cfg, self.archs = cfg, archs
        self.device = train_device(cfg.device)
        self.out = Path(cfg.out_dir)
        self.ckdir = self.out / "checkpoints"
        self.data = Datasets(cfg)
        torch.manual_seed(cfg.seed)
        self.modules = {
            name: build_model(Architecture(**arch)).to(
                device=self.device, memory_format=torch.channels_last
            )
            for name, arch in archs.items()
        }
        self.base_lr = {name: lr for name, (_, lr) in optimized.items()}
        betas = cfg.optim.betas
        self.optims: dict[str, torch.optim.Optimizer] = {
            name: torch.optim.Adam(
                [p for m in names for p in self.modules[m].parameters()],
                lr=lr,
                betas=betas,
                weight_decay=weight_decay,
            )  # fmt: skip
            for name, (names, lr) in optimized.items()
        }
        self.fields, self.progress = fields, progress
        self.best = -math.inf
        # called before G is validated or saved (StarGAN measures its styles' statistics)
        self.before_save: Callable[[], None] = lambda: None
        self.amp = {"device_type": self.device.type, "dtype": torch.bfloat16,
                    "enabled": cfg.train.bf16}  # fmt: skip

    @property
    def G(self) -> torch.nn.Module:
        return self.modules["G"]

    def resume(self) -> dict[str, Any]:
        """Load the last checkpoint, if any, and start the log: the checkpoint's extra
        tensors (e.g. image pools), or {} for a fresh run. A fresh run with
        ``model.init_from`` starts ``G`` from those weights (a campaign's next stage; the
        discriminators start afresh and catch up within tens of steps)."""
        start, elapsed0, extra = 0, 0.0, {}
        self.campaign: dict[str, Any] = {}
        if read_meta(self.ckdir) is not None:
            meta, extra = load_checkpoint(self.ckdir, self.modules, self.optims, self.archs)
            start, self.best, elapsed0 = meta["step"], meta["best"], meta.get("elapsed_s", 0.0)
            self.campaign = meta.get("campaign", {})
            print(f"resuming {self.out} at step {start}")
        elif self.cfg.model.init_from:
            self.campaign = start_weights(self.cfg, self.G, self.archs["G"]["kwargs"], self.data)
        self.out.mkdir(parents=True, exist_ok=True)
        self.log = RunLog(self.cfg, self.out, self.fields, start, elapsed0, self.progress,
                          postfix=(self.fields[0], "loss_d"))  # fmt: skip
        return extra

    def schedule(self, step: int) -> float:
        """Train mode, and every optimizer's lr at ``step``; returns the schedule's factor."""
        for m in self.modules.values():
            m.train()
        factor = lr_factor(self.cfg, step)
        for name, opt in self.optims.items():
            for g in opt.param_groups:
                g["lr"] = self.base_lr[name] * factor
        return factor

    def update(self, optimizer: str, loss: torch.Tensor) -> None:
        opt = self.optims[optimizer]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def end_step(
        self,
        step: int,
        factor: float,
        values: dict[str, Any],
        extra: Callable[[], dict[str, torch.Tensor]] = dict,
    ) -> None:
        """Log the step's values; validate and checkpoint (with ``extra()``) when due."""
        self.log.add(values)
        done = step + 1

        def validate(row: dict[str, Any]) -> None:
            self.before_save()
            record = self.record(done)
            self.best = validate_and_keep_best(
                self.cfg, self.G, self.archs["G"]["kwargs"], self.data, self.out, done, record,
                self.best, row, self.log.fields,
            )  # fmt: skip

        def checkpoint() -> None:
            save_checkpoint(self.ckdir, self.modules, self.optims, extra(), {
                "step": done, "best": self.best, "elapsed_s": self.log.elapsed(),
                "architectures": self.archs, "config": self.cfg.model_dump(mode="json"),
                "campaign": self.campaign,
            })  # fmt: skip

        self.log.end_step(done, self.cfg.optim.lr * factor, validate, checkpoint)

    def record(self, done: int) -> dict[str, Any]:
        """Card fields at step ``done``: this stage after the stages it started from."""
        return campaign_record(self.campaign, self.cfg, done, self.log.elapsed(), self.device.type)

    def finish(self) -> Path:
        """Save the last weights with their card; the best ones were saved on validation."""
        self.before_save()
        record = self.record(self.log.done)
        card = make_card(self.cfg, self.archs["G"]["kwargs"], self.data, record, self.G.multiple)
        save_model(self.G, card, self.out / "last")
        return self.out / "best"
