"""Training: datasets, losses, metrics, the pix2pix and CycleGAN loops, evaluate, export.

Plain functions for the CLI (geo2map/train/commands.py) and for notebooks:
``run(config_path, overrides)``, ``evaluate.evaluate(model_path, pairs_dir)``, ``export(src, out)``.
"""

from __future__ import annotations

import os
from pathlib import Path

from geo2map.train.config import PipelineConfig, load_config


def run(config_path: str | Path, overrides: list[str] | None = None, progress: bool = True) -> Path:
    """Train (or resume) the run a pipeline YAML describes; returns the path of the best model."""
    cfg = load_config(config_path, overrides)
    return run_config(cfg, progress)


def run_config(cfg: PipelineConfig, progress: bool = True) -> Path:
    if cfg.mode == "unit":
        from geo2map.train.unit import train_unit

        return train_unit(cfg, progress)
    if cfg.mode == "stargan":
        from geo2map.train.stargan import train_stargan

        return train_stargan(cfg, progress)
    if cfg.mode == "cyclegan":
        from geo2map.train.cyclegan import train_cyclegan

        return train_cyclegan(cfg, progress)
    from geo2map.train.loop import train_pix2pix

    return train_pix2pix(cfg, progress)


def export(
    src: str | Path,
    out: str | Path,
    pairs_dir: str | Path | None = None,
    masks_dir: str | Path | None = None,
    half: bool = False,
    palette_decode: str | None = None,
    int8: bool = False,
    pipeline: str | Path | None = None,
) -> tuple[Path, Path]:
    """Copy a trained model (``runs/x/best``) to ``out`` (.safetensors + .json) after loading it.

    ``half`` stores the weights as float16 (the shipped default: half the download, and
    inference runs in bf16 autocast anyway). ``palette_decode`` sets how a palette render
    head picks its colour at inference (``argmax`` or ``nearest-mean``), recorded in the card.

    With ``pairs_dir`` / ``masks_dir`` the model is first scored on the validation split its
    card records, and the card's ``metrics`` are replaced by those full-split numbers.
    ``int8`` calibrates int8 CPU inference on training images of both folders (the card then
    carries the activation ranges) and scores the int8 model too. ``pipeline`` (a training
    YAML) also scores every validation split it names at the model's GSD
    (``metrics.validation_all_sources``).
    """
    from geo2map.errors import Geo2MapError
    from geo2map.models.io import load_model, model_paths, save_model
    from geo2map.models.palette_head import check_decode
    from geo2map.train.evaluate import evaluate, hardware

    model, card = load_model(src)
    # cards written before make_card knew the architecture's factor said 16 for any model
    card.input.multiple = getattr(model, "multiple", card.input.multiple)
    if palette_decode is not None:
        if card.architecture.kwargs.get("render_mode") != "palette":
            raise Geo2MapError(f"{src} has no palette render head: --palette-decode does not apply")
        try:
            model.palette_decode = check_decode(palette_decode)  # a decoding rule, not a weight
        except ValueError as e:
            raise Geo2MapError(f"--palette-decode: {e}") from None
        card.architecture.kwargs["palette_decode"] = palette_decode
        if palette_decode == "mask-gated" and hasattr(model, "gate"):
            import torch

            from geo2map.train.palette import PALETTE_CLASS

            card.architecture.kwargs["gate_classes"] = PALETTE_CLASS.tolist()
            model.gate = torch.tensor(PALETTE_CLASS.tolist())
    if int8 and (pairs_dir is None or masks_dir is None):
        raise Geo2MapError("--int8 calibrates on training images: give --pairs and --masks")
    # write under hidden names, score exactly those files (float16 weights included), rename
    weights, card_path = model_paths(out)
    tmp = weights.parent / f".{weights.stem}.partial"
    tmp_weights, tmp_card = save_model(model, card, tmp, half=half)
    try:
        if int8:
            from geo2map.train.calibrate import int8_calibration

            # calibrate the weights as written (float16 included), as inference will load them
            card.int8 = int8_calibration(load_model(tmp)[0], card, pairs_dir, masks_dir)
            card.to_json(tmp_card)
        if pairs_dir is not None or masks_dir is not None:
            result = evaluate(tmp, pairs_dir, masks_dir)
            card.metrics = {
                "validation_split": {k: v for k, v in result.items() if k != "model"},
                "protocol": "GcGAN: renders and maps resized to 256x256; RMSE, acc5/acc10, "
                "SSIM; mask IoU over the LandCover.ai held-out chips (masks) and OSM-derived "
                "masks (pairs)",
                "during_training": card.metrics.get("validation", card.metrics),
            }
            if int8:
                scores = evaluate(tmp, pairs_dir, masks_dir, precision="int8")
                card.metrics["validation_split_int8"] = {
                    k: v for k, v in scores.items() if k != "model"
                }
            card.training.setdefault("hardware", hardware())
            card.to_json(tmp_card)
        if pipeline is not None:
            from geo2map.train.evaluate import evaluate_pipeline

            scores = evaluate_pipeline(tmp, pipeline)
            card.metrics["validation_all_sources"] = {
                k: v for k, v in scores.items() if k != "model"
            }
            card.to_json(tmp_card)
        os.replace(tmp_weights, weights)
        os.replace(tmp_card, card_path)
    finally:
        tmp_weights.unlink(missing_ok=True)
        tmp_card.unlink(missing_ok=True)
    return weights, card_path


__all__ = ["PipelineConfig", "export", "load_config", "run", "run_config"]
