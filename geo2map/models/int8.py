"""Static int8 inference on x86 CPUs (PyTorch's ``x86`` quantized engine: fbgemm + oneDNN).

On a CPU with AVX-512 VNNI an int8 forward of the default model is ~1.8x its bf16 forward
with the same validation scores (docs/models.md). Activation ranges are
calibrated once, on training images, when a model is exported (``geo2map export-model
--int8``) and stored in the card as the scales and zero points of the quantized graph. The
graph is built from the float weights (FX trace + convert, a few seconds; weights are
quantized per channel from the float weights, which needs no data) and the stored
activation scales are put back; int8_cache.py keeps the built graph on disk, so this runs
once per model, not once per process.

Static, not dynamic, quantization: every chip is quantized with the same scales, so a
pixel's output does not depend on the chip around it and tiles stay seamless.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from geo2map.errors import Geo2MapError

ENGINE = "x86"
OUTPUTS = ("render", "mask_logits")


class Int8Calibration(BaseModel):
    """What a card stores to rebuild its model's int8 graph."""

    model_config = ConfigDict(extra="forbid")
    engine: str = ENGINE
    torch: str  # the version that traced the graph the names below belong to
    images: str  # what the activation ranges were calibrated on
    qparams: dict[str, float | int]  # activation scale / zero point per graph node


class _TupleOutputs(nn.Module):
    """The model with tuple outputs: FX quantization traces tensors, not dicts of them."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(x)
        return tuple(out[k] for k in OUTPUTS)


class QuantizedTranslator(nn.Module):
    """The int8 graph behind the float model's interface: a dict of float outputs."""

    def __init__(self, graph: nn.Module) -> None:
        super().__init__()
        self.graph = graph

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.autocast(x.device.type, enabled=False):  # the float tail stays float32
            return dict(zip(OUTPUTS, self.graph(x.float()), strict=True))


def engine_available(engine: str = ENGINE) -> bool:
    return engine in torch.backends.quantized.supported_engines


def require_engine(calibration: Int8Calibration) -> None:
    if not engine_available(calibration.engine):
        raise Geo2MapError(
            f"int8 needs PyTorch's {calibration.engine!r} quantized engine, which this build "
            "lacks; use --precision bf16 or fp32"
        )
    torch.backends.quantized.engine = calibration.engine


def _prepared(model: nn.Module) -> nn.Module:
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import prepare_fx

    torch.backends.quantized.engine = ENGINE
    float_model = _TupleOutputs(copy.deepcopy(model).float().eval()).eval()
    example = (torch.zeros(1, 3, 64, 64),)
    return prepare_fx(float_model, get_default_qconfig_mapping(ENGINE), example_inputs=example)


def _converted(prepared: nn.Module) -> nn.Module:
    from torch.ao.quantization.quantize_fx import convert_fx

    return convert_fx(prepared)


def activation_qparams(graph: nn.Module) -> dict[str, float | int]:
    """The scalar scales and zero points of a converted graph (weights excluded)."""
    return {
        k: v.item()
        for k, v in graph.state_dict().items()
        if isinstance(v, torch.Tensor)
        and not v.is_quantized
        and v.ndim == 0
        and ("scale" in k or "zero_point" in k)
    }


def calibrate(model: nn.Module, batches: Iterable[torch.Tensor], images: str) -> Int8Calibration:
    """Observe activation ranges on ``batches`` (normalized NCHW float) and keep the result."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's deprecation notices, as in quantize()
        prepared = _prepared(model)
        with torch.inference_mode():
            for batch in batches:
                prepared(batch.float())
        graph = _converted(prepared)
    return Int8Calibration(
        torch=torch.__version__.split("+")[0], images=images, qparams=activation_qparams(graph)
    )


def quantize(model: nn.Module, calibration: Int8Calibration) -> QuantizedTranslator:
    """The int8 model for ``model``'s weights and the card's calibration."""
    require_engine(calibration)
    with warnings.catch_warnings():
        # The observers saw no data (their ranges are replaced by the card's just below), and
        # torch 2.14 flags its quantized tensor API as deprecated: neither is the user's concern.
        warnings.simplefilter("ignore")
        graph = _converted(_prepared(model))
        state = graph.state_dict()
        if set(activation_qparams(graph)) != set(calibration.qparams):
            raise Geo2MapError(
                f"the card's int8 calibration (made with torch {calibration.torch}) does not fit "
                f"the graph torch {torch.__version__} traces; re-export with `geo2map "
                "export-model --int8`, or use --precision bf16"
            )
        for name, value in calibration.qparams.items():
            state[name] = torch.tensor(value, dtype=state[name].dtype)
        graph.load_state_dict(state)
    return QuantizedTranslator(graph).eval()
