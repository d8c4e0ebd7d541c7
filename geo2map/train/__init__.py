"""Training: datasets, losses, metrics, the pix2pix and CycleGAN loops, evaluate, export.

Plain functions for the CLI (geo2map/train/commands.py) and for notebooks:
``run(config_path, overrides)``, ``evaluate.evaluate(model_path, pairs_dir)``, ``export(src, out)``.
"""

from __future__ import annotations

from pathlib import Path

from geo2map.train.config import PipelineConfig, load_config


def run(config_path: str | Path, overrides: list[str] | None = None, progress: bool = True) -> Path:
    """Train (or resume) the run a pipeline YAML describes; returns the path of the best model."""
    cfg = load_config(config_path, overrides)
    return run_config(cfg, progress)


def run_config(cfg: PipelineConfig, progress: bool = True) -> Path:
    if cfg.mode == "cyclegan":
        from geo2map.train.cyclegan import train_cyclegan

        return train_cyclegan(cfg, progress)
    from geo2map.train.loop import train_pix2pix

    return train_pix2pix(cfg, progress)


def export(src: str | Path, out: str | Path) -> tuple[Path, Path]:
    """Copy a trained model (``runs/x/best``) to ``out`` (.safetensors + .json) after loading it."""
    from geo2map.models.io import load_model, save_model

    model, card = load_model(src)
    return save_model(model, card, out)


__all__ = ["PipelineConfig", "export", "load_config", "run", "run_config"]
