"""Model + card + device/precision policy -> ``predict(batch)``.

Precision policy (``auto``): int8 on CPUs with VNNI when the model card carries an int8
calibration (models/int8.py), else bf16 autocast on CUDA and on CPUs with native bf16
(AVX-512 BF16 / AMX), else fp32; channels_last memory format; ``torch.inference_mode``.
"""

from __future__ import annotations

import functools
import threading
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from geo2map.errors import Geo2MapError
from geo2map.models.card import ModelCard
from geo2map.models.external import is_external, is_onnx
from geo2map.models.int8 import engine_available
from geo2map.models.int8_cache import int8_model
from geo2map.models.io import DEFAULT_MODEL, ModelSource, load_card, load_model
from geo2map.models.snapping import without_snap
from geo2map.tiling import pack_chip_output

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "int8", "bf16", "fp32")
CPU_MICRO_BATCH = 1  # chips per forward on CPUs (micro_batch)


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
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags Linux reports (empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    return frozenset(
        word for line in text.splitlines() if line.startswith("flags") for word in line.split()
    )


def cpu_has_bf16() -> bool:
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def cpu_has_vnni() -> bool:
    """int8 dot products in hardware (AVX-512 VNNI, AVX-VNNI or AMX): where int8 pays."""
    return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & cpu_flags())


def pick_precision(
    device: torch.device, precision: str = "auto", card: ModelCard | None = None
) -> torch.dtype:
    """auto: int8 on CPUs with VNNI when the card carries an int8 calibration, else bf16 on
    CUDA and on CPUs with native bf16, else fp32."""
    if precision not in PRECISIONS:
        raise Geo2MapError(f"--precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if precision == "int8":
        if device.type != "cpu":
            raise Geo2MapError(f"--precision int8 runs on the CPU only; use bf16 on {device.type}")
        if card is not None and card.int8 is None:
            raise Geo2MapError(
                f"model {card.name} has no int8 calibration; add one with "
                "`geo2map export-model --int8`, or use --precision bf16"
            )
        return torch.qint8
    if precision == "fp32":
        return torch.float32
    if precision == "bf16":
        return torch.bfloat16
    if (
        device.type == "cpu"
        and card is not None
        and card.int8 is not None
        and cpu_has_vnni()
        and engine_available(card.int8.engine)
    ):
        return torch.qint8
    if device.type == "cuda" or (device.type == "cpu" and cpu_has_bf16()):
        return torch.bfloat16
    return torch.float32


def external_precision(weights: Path, precision: str) -> torch.dtype:
    """TorchScript and ONNX files run as they were saved (fp32) unless asked for bf16, which
    only TorchScript can do (autocast); int8 needs a geo2map model with a calibration."""
    if precision not in PRECISIONS:
        raise Geo2MapError(f"--precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if precision == "int8" or (precision == "bf16" and is_onnx(weights)):
        raise Geo2MapError(
            f"--precision {precision} does not apply to {weights.name}: it runs as saved "
            "(use --precision auto or fp32)"
        )
    return torch.bfloat16 if precision == "bf16" else torch.float32


def model_precision(
    weights: Path, device: torch.device, precision: str, card: ModelCard
) -> torch.dtype:
    """The precision a model file runs at: :func:`pick_precision` for geo2map's own models,
    :func:`external_precision` for TorchScript and ONNX files."""
    if is_external(weights):
        return external_precision(weights, precision)
    return pick_precision(device, precision, card)


@dataclass
class Translator:
    model: torch.nn.Module
    card: ModelCard
    device: torch.device
    dtype: torch.dtype
    chips_per_forward: int | None = None  # None: the device's (micro_batch)

    @classmethod
    def load(
        cls, path: ModelSource = DEFAULT_MODEL, device: str = "auto", precision: str = "auto"
    ) -> Translator:
        weights, card = load_card(path)
        dev = pick_device(device)
        dtype = model_precision(weights, dev, precision, card)
        model = None
        if dtype == torch.qint8:
            try:
                model = int8_model(path, card)  # from the disk cache when built before
            except Geo2MapError as e:
                if precision != "auto":
                    raise
                dtype = pick_precision(dev, "auto")  # as if the card had no calibration
                warnings.warn(f"{e}; running {dtype} instead", stacklevel=2)
        if model is None:
            # chips unsnapped: the engine snaps after blending (models/snapping.py)
            model = without_snap(load_model(path)[0])
        model = model.to(dev).eval()
        if dev.type != "mps":
            model = model.to(memory_format=torch.channels_last)
        return cls(model, card, dev, dtype)

    @property
    def num_classes(self) -> int:
        return len(self.card.classes)

    def normalize(self, batch: np.ndarray) -> np.ndarray:
        mean = np.asarray(self.card.input.mean, dtype=np.float32)[None, :, None, None]
        std = np.asarray(self.card.input.std, dtype=np.float32)[None, :, None, None]
        return (batch - mean) / std

    @property
    def micro_batch(self) -> int:
        """Chips per forward call. On CPUs each chip goes alone: as fast as 2 at a time and
        half their activations in memory. On a GPU a task's chips are one forward."""
        if self.chips_per_forward:
            return self.chips_per_forward
        return CPU_MICRO_BATCH if self.device.type == "cpu" else 1 << 30

    def predict(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Like :meth:`forward`, a micro-batch at a time."""
        parts = list(self.micro_batches(batch))
        return np.concatenate([r for r, _ in parts]), np.concatenate([p for _, p in parts])

    def micro_batches(
        self, chips: Sequence[np.ndarray] | np.ndarray, pad_to: int = 0
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """:meth:`forward` over ``micro_batch`` chips at a time (a batch array is sliced, not
        copied; a list of chips is stacked a micro-batch at a time), each padded with blank
        chips to ``pad_to`` chips; the outputs are those of the real chips only."""
        step = self.micro_batch
        for i in range(0, len(chips), step):
            part = chips[i : i + step]
            batch = part if isinstance(part, np.ndarray) else np.stack(part)
            if len(batch) < pad_to:
                blank = np.zeros((pad_to - len(batch), *batch.shape[1:]), batch.dtype)
                batch = np.concatenate([batch, blank])
            render, probs = self.forward(batch)
            yield render[: len(part)], probs[: len(part)]

    def predict_chips(
        self, chips: Sequence[np.ndarray], batch_size: int | None = None
    ) -> list[np.ndarray]:
        """(C, H, W) inputs in [0, 1] -> one packed (3 + K, H, W) uint8 array per chip
        (:func:`pack_chip_output`), a micro-batch at a time: only one micro-batch's float
        inputs and outputs are ever alive (a whole batch of them was ~130 MB per task), and
        each chip is its own array, so keeping some chips frees the others.

        A chip's output must not depend on the chips that share its task: tasks gather the
        chips each group of blocks needs first (schedule.group_batches), which depends on the
        block size. On CPUs every chip is forwarded alone. On a GPU a task's chips are one
        forward, padded to ``batch_size`` chips, so that every forward has one shape and cuDNN
        picks the same kernels for every batch."""
        pad_to = batch_size if batch_size and self.micro_batch > 1 else 0
        return [
            pack_chip_output(r, p)
            for render, probs in self.micro_batches(chips, pad_to)
            for r, p in zip(render, probs, strict=True)
        ]

    def forward(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, C, H, W) inputs scaled to [0, 1] -> render (B, 3, H, W) in [0, 1], class probabilities (B, K, H, W)."""
        x = torch.from_numpy(self.normalize(batch)).to(self.device)
        if self.device.type != "mps":
            x = x.contiguous(memory_format=torch.channels_last)
        autocast = self.dtype in (torch.bfloat16, torch.float16)  # int8: its own graph
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
def _cached(path: ModelSource, device: str, precision: str) -> Translator:
    return Translator.load(path, device, precision)


def cached_translator(path: ModelSource, device: str, precision: str) -> Translator:
    """One model per process and settings: Dask tasks call this instead of loading per task.
    The lock makes concurrent first calls (two task threads) load it once, not twice."""
    with _load_lock:
        return _cached(path, device, precision)


cached_translator.cache_clear = _cached.cache_clear  # type: ignore[attr-defined]
