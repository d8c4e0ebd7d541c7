"""Models trained elsewhere: TorchScript files and ONNX files, each with a geo2map card.

A TorchScript file (``.pt``, ``.ts``, ``.torchscript``) is loaded with ``torch.jit.load``;
an ONNX file (``.onnx``) runs in ONNX Runtime (CUDA when its GPU build and a GPU are there,
else the CPU). Both take the card's normalized input, (B, C, H, W) float32, and return what
the card's ``output`` says (models/outputs.py).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from geo2map.errors import Geo2MapError

TORCHSCRIPT_SUFFIXES = (".pt", ".ts", ".torchscript")
ONNX_SUFFIXES = (".onnx",)
EXTERNAL_SUFFIXES = TORCHSCRIPT_SUFFIXES + ONNX_SUFFIXES


def is_external(weights: Path) -> bool:
    return weights.suffix in EXTERNAL_SUFFIXES


def is_onnx(weights: Path) -> bool:
    return weights.suffix in ONNX_SUFFIXES


def load_external(weights: Path) -> nn.Module:
    if is_onnx(weights):
        return OnnxNetwork(weights)
    try:
        with warnings.catch_warnings():  # torch marks TorchScript deprecated; files stay
            warnings.simplefilter("ignore", FutureWarning)
            return torch.jit.load(str(weights), map_location="cpu")
    except (RuntimeError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise Geo2MapError(f"{weights}: not a TorchScript file torch can load ({first})") from None


class OnnxNetwork(nn.Module):
    """An ONNX Runtime session as a module: tensors in, tensors out (on the input's device)."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        try:
            import onnxruntime as ort
        except ImportError:  # pragma: no cover - a dependency of geo2map
            raise Geo2MapError("ONNX models need onnxruntime: pip install onnxruntime") from None
        wanted = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        providers = [p for p in wanted if p in ort.get_available_providers()]
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: its warnings are not the user's
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as e:  # onnxruntime raises its own untyped errors for bad files
            first = str(e).strip().splitlines()[0][:200]
            raise Geo2MapError(
                f"{path}: not an ONNX model ONNX Runtime can load ({first})"
            ) from None
        self.input_name = self.session.get_inputs()[0].name
        self.input_shape = self.session.get_inputs()[0].shape  # dims are ints or names
        self.output_names = [o.name for o in self.session.get_outputs()]

    def check_bands(self, path: Path, bands: int) -> None:
        """Refuse a model whose input takes another number of bands than its card feeds."""
        channels = self.input_shape[1] if len(self.input_shape) == 4 else None
        if isinstance(channels, int) and channels != bands:
            raise Geo2MapError(
                f"{path}: the ONNX model takes {channels} input bands but its card lists "
                f"{bands}; fix input.bands in the card"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        feed = {self.input_name: np.ascontiguousarray(x.detach().float().cpu().numpy())}
        outputs = [torch.from_numpy(o).to(x.device) for o in self.session.run(None, feed)]
        if set(self.output_names) == {"render", "mask_logits"}:  # a geo2map translator
            return dict(zip(self.output_names, outputs, strict=True))
        return outputs[0]
