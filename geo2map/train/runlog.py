"""What both training loops do after each step: running loss means, the CSV log, the
progress bar, and the validation / checkpoint cadence of the pipeline's ``train`` section."""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from geo2map.train.config import PipelineConfig

VAL_FIELDS = ["val_rmse", "val_acc5", "val_acc10", "val_ssim", "val_osm_miou", "val_lc_miou",
              "val_score"]  # fmt: skip


class RunLog:
    """``log.csv`` (``step, time_s, lr``, the loss columns, the validation columns) and a
    tqdm bar with time left; a resumed run appends to the log and keeps its elapsed time."""

    def __init__(
        self,
        cfg: PipelineConfig,
        out: Path,
        losses: list[str],
        start: int,
        elapsed_s: float,
        progress: bool,
        postfix: tuple[str, ...],
        val_fields: list[str] | None = None,
    ) -> None:
        self.cfg = cfg
        self.path = out / "log.csv"
        self.fields = ["step", "time_s", "lr", *losses, *(val_fields or VAL_FIELDS)]
        if start == 0 or not self.path.exists():
            with self.path.open("w", newline="") as f:
                csv.writer(f).writerow(self.fields)
        self.t0 = time.time() - elapsed_s
        self.start = start
        self.progress = progress
        self.postfix = postfix
        self.acc: dict[str, list[float]] = {}
        self.run_t0 = time.time()
        self.stopped_early = False
        self.done = start  # steps done so far
        self.bar: Any = None

    def steps(self) -> Iterator[int]:
        t = self.cfg.train
        self.bar = tqdm(range(self.start, t.steps), initial=self.start, total=t.steps,
                        disable=not self.progress, desc=self.cfg.name, unit="step")  # fmt: skip
        for step in self.bar:
            yield step
            if self.stopped_early:
                self.bar.close()
                return

    def out_of_time(self) -> bool:
        """True once this run (not the resumed total) has used ``train.max_minutes``."""
        m = self.cfg.train.max_minutes
        return m is not None and time.time() - self.run_t0 >= m * 60

    def elapsed(self) -> float:
        return time.time() - self.t0

    def add(self, values: dict[str, torch.Tensor | float]) -> None:
        for k, v in values.items():
            self.acc.setdefault(k, []).append(float(v.detach() if torch.is_tensor(v) else v))

    def end_step(
        self,
        done: int,
        lr: float,
        validate: Callable[[dict[str, Any]], None],
        checkpoint: Callable[[], None],
    ) -> None:
        """Every ``log_every`` steps a log row of loss means; every ``val_every`` steps
        ``validate(row)`` (adds the metrics to the row); every ``checkpoint_every`` steps
        ``checkpoint()``. The last step (of ``train.steps``, or the first step after
        ``train.max_minutes``) does all three."""
        t = self.cfg.train
        self.done = done
        last = done == t.steps
        if not last and self.out_of_time():  # the time budget ends the run like a last step
            last = self.stopped_early = True
        row: dict[str, Any] = {}
        if done % t.log_every == 0 or last:
            row = {k: f"{np.mean(v):.4f}" for k, v in self.acc.items()}
            self.acc = {}
            if self.bar is not None:
                self.bar.set_postfix({k: row[k] for k in self.postfix if k in row})
        if done % t.val_every == 0 or last:
            validate(row)
        if row:
            row.update(step=done, time_s=f"{self.elapsed():.1f}", lr=f"{lr:.2e}")
            with self.path.open("a", newline="") as f:
                csv.DictWriter(f, self.fields, extrasaction="ignore").writerow(row)
        if done % t.checkpoint_every == 0 or last:
            checkpoint()
