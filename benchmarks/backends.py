"""Which runtime runs the shipped model fastest on this CPU, with the same outputs?

    .venv/bin/python -m benchmarks.backends [--chips 16] [--rounds 2] [--model PATH]

The same real chips (512 px, cut from the aerial COG at the model's GSD) go through the
model's forward, one chip at a time with all cores (the bare forward of row 1), in:
torch int8 (geo2map's ``auto`` here), torch bf16, ONNX Runtime fp32 (the model exported with
``torch.onnx.export``) and ONNX Runtime int8 (static QDQ quantization calibrated on other
chips of the scene). Each is timed interleaved, best round kept, and its masks compared with
torch fp32's (share of pixels with the same class) and its renders (mean absolute difference
in grey levels). A runtime is worth a ``--backend`` only if it is faster than torch int8 with
outputs as close.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import alternate, arguments, benchmark_run, read_plan_chips
from geo2map.models.io import load_model
from geo2map.options import TranslateOptions
from geo2map.plan import plan_scene
from geo2map.translator import Translator


def read_chips(scene_path: Path, model: str, count: int, skip: int = 0) -> list[np.ndarray]:
    _, card = load_model(model)
    plan = plan_scene(scene_path, TranslateOptions(model=model), card)
    return read_plan_chips(plan, plan.chips.chips[skip : skip + count])


class RenderAndLogits(torch.nn.Module):
    """The translator's two outputs as a tuple (its dict holds more, e.g. palette logits)."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(x)
        return out["render"], out["mask_logits"]


def export_onnx(model: str, path: Path) -> None:
    net, _ = load_model(model)
    example = torch.rand(1, 3, 512, 512)
    torch.onnx.export(
        RenderAndLogits(net).eval(), (example,), str(path), dynamo=False, input_names=["x"],
        output_names=["render", "mask_logits"],
        dynamic_axes={"x": {0: "b", 2: "h", 3: "w"}},
    )  # fmt: skip


def quantize_onnx(src: Path, dst: Path, calibration: list[np.ndarray], normalize) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class Chips(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"x": normalize(c[None])} for c in calibration])

        def get_next(self) -> dict | None:
            return next(self.items, None)

    quantize_static(str(src), str(dst), Chips(), quant_format=QuantFormat.QDQ)


def onnx_forward(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = os.cpu_count() or 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        render, logits = session.run(None, {"x": np.ascontiguousarray(x, dtype=np.float32)})
        return np.clip(render, 0, 1), logits

    return forward


def torch_forward(model: str, precision: str):
    translator = Translator.load(model, "cpu", precision)

    def forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return translator.forward(x)  # normalizes itself

    return forward, translator


def main() -> None:
    parser = arguments(__doc__, repeats=None, rounds=True, model=True)
    parser.add_argument("--chips", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    with benchmark_run("backends", args) as run:
        model = str(run.model)
        scene_path = run.scene(repeats=4)
        chips = read_chips(scene_path, model, args.chips)
        calibration = read_chips(scene_path, model, 8, skip=args.chips)
        fp32, translator = torch_forward(model, "fp32")
        exported = run.folder / "model.onnx"
        t = time.perf_counter()
        export_onnx(model, exported)
        quantize_onnx(exported, run.folder / "model-int8.onnx", calibration, translator.normalize)
        print(f"export + quantize {time.perf_counter() - t:.1f} s", flush=True)
        ort_fp32, ort_int8 = onnx_forward(exported), onnx_forward(run.folder / "model-int8.onnx")
        contenders = {
            "torch int8 (geo2map auto)": torch_forward(model, "int8")[0],
            "torch bf16": torch_forward(model, "bf16")[0],
            "onnxruntime fp32": lambda x: ort_fp32(translator.normalize(x)),
            "onnxruntime int8 (QDQ)": lambda x: ort_int8(translator.normalize(x)),
        }
        reference = [fp32(c[None]) for c in chips]
        agreement = {}
        for name, forward in contenders.items():
            outs = [forward(c[None]) for c in chips]  # also the warm-up
            same = [
                (o[1].argmax(1) == r[1].argmax(1)).mean()
                for o, r in zip(outs, reference, strict=True)
            ]
            diff = [np.abs(o[0] - r[0]).mean() * 255 for o, r in zip(outs, reference, strict=True)]
            agreement[name] = {
                "mask_agreement": float(np.mean(same)),
                "render_mad": float(np.mean(diff)),
            }
        times = alternate(
            {k: (lambda f=f: [f(c[None]) for c in chips]) for k, f in contenders.items()},
            args.rounds,
        )
        best = {k: min(v) / len(chips) for k, v in times.items()}
        base = best["torch int8 (geo2map auto)"]
        for k, s in best.items():
            a = agreement[k]
            print(f"{k:<28}: {s:6.3f} s/chip, {base / s:4.2f}x torch int8, mask agreement "
                  f"{a['mask_agreement']:.4f}, render MAD {a['render_mad']:.2f}")  # fmt: skip
        run.report(
            {
                "chips": args.chips, "model": run.model_note, "seconds": times,
                "seconds_per_chip": best, "speed_over_torch_int8": {k: base / s for k, s in best.items()},
                "agreement_with_torch_fp32": agreement,
            }
        )  # fmt: skip


if __name__ == "__main__":
    main()
