"""Model + card + device/precision policy -> ``predict(batch)``.

Precision policy: bf16 autocast on CUDA and on CPUs with native bf16 (AVX-512 BF16 / AMX),
fp32 elsewhere; channels_last memory format; ``torch.inference_mode``.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from geo2map.errors import Geo2MapError
from geo2map.models.card import ModelCard
from geo2map.models.io import DEFAULT_MODEL, load_model

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "bf16", "fp32")
CPU_MICRO_BATCH = 2


def pick_device(device: str = "auto") -> torch.device:
    if device not in DEVICES:
        raise Geo2MapError(f"--device {device!r}: choose one of {', '.join(DEVICES)}")
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise Geo2MapError("--device cuda: no CUDA GPU is visible; use --device auto or cpu")
    if device == "mps" and not torch.backends.mps.is_available():
        raise Geo2MapError(
            "--device mps: Apple MPS is not available here; use --device auto or cpu"
        )
    return torch.device(device)


@functools.cache
def cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags for f in (" avx512_bf16", " amx_bf16"))


def pick_precision(device: torch.device, precision: str = "auto") -> torch.dtype:
    if precision not in PRECISIONS:
        raise Geo2MapError(f"--precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return torch.float32
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda" or (device.type == "cpu" and cpu_has_bf16()):
        return torch.bfloat16
    return torch.float32


@dataclass
class Translator:
    model: torch.nn.Module
    card: ModelCard
    device: torch.device
    dtype: torch.dtype

    @classmethod
    def load(
        cls, path: str | Path = DEFAULT_MODEL, device: str = "auto", precision: str = "auto"
    ) -> Translator:
        model, card = load_model(path)
        dev = pick_device(device)
        model = model.to(dev).eval()
        if dev.type != "mps":
            model = model.to(memory_format=torch.channels_last)
        return cls(model, card, dev, pick_precision(dev, precision))

    @property
    def num_classes(self) -> int:
        return len(self.card.classes)

    def normalize(self, batch: np.ndarray) -> np.ndarray:
        mean = np.asarray(self.card.input.mean, dtype=np.float32)[None, :, None, None]
        std = np.asarray(self.card.input.std, dtype=np.float32)[None, :, None, None]
        return (batch - mean) / std

    @property
    def micro_batch(self) -> int:
        """Chips per forward call. On CPUs a batch goes 2 chips at a time: the same speed, and
        activations of 2 chips instead of 8 in memory (docs/benchmarks.md, memory)."""
        return CPU_MICRO_BATCH if self.device.type == "cpu" else 1 << 30

    def predict(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Like :meth:`forward`, a micro-batch at a time."""
        step = self.micro_batch
        parts = [self.forward(batch[i : i + step]) for i in range(0, len(batch), step)]
        return np.concatenate([r for r, _ in parts]), np.concatenate([p for _, p in parts])

    def forward(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, C, H, W) inputs scaled to [0, 1] -> render (B, 3, H, W) in [0, 1], class probabilities (B, K, H, W)."""
        x = torch.from_numpy(self.normalize(batch)).to(self.device)
        if self.device.type != "mps":
            x = x.contiguous(memory_format=torch.channels_last)
        autocast = self.dtype != torch.float32
        with (
            torch.inference_mode(),
            torch.autocast(self.device.type, dtype=self.dtype, enabled=autocast),
        ):
            out = self.model(x)
        render = out["render"].float().clamp(0, 1)
        probs = torch.softmax(out["mask_logits"].float(), dim=1)
        return render.cpu().numpy(), probs.cpu().numpy()


_load_lock = threading.Lock()


@functools.lru_cache(maxsize=4)
def _cached(path: str, device: str, precision: str) -> Translator:
    return Translator.load(path, device, precision)


def cached_translator(path: str, device: str, precision: str) -> Translator:
    """One model per process and settings: Dask tasks call this instead of loading per task.
    The lock makes concurrent first calls (two task threads) load it once, not twice."""
    with _load_lock:
        return _cached(path, device, precision)


cached_translator.cache_clear = _cached.cache_clear  # type: ignore[attr-defined]
