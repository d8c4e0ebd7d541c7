"""Train on a lent GPU machine for a fixed wall-clock budget and hand the result back.

    python3 -m geo2map.train.device_run PIPELINE --minutes 8 --out $OUT [--set key=value ...]

Run by ``pipelines/gpu/train.sh`` there (after ``pipelines/gpu/prepare.sh`` here). It trains
with ``device=cuda`` (bf16 autocast, channels_last, DataLoader workers, pinned memory), stops
after ``--minutes`` (validated and checkpointed), and writes to ``--out`` what the device tool
can bring back (files of at most 16 MiB): the best weights as float16 safetensors cut into
15 MiB parts (``best.safetensors.part-00`` ...: ``cat best.safetensors.part-* >
best.safetensors`` joins them), ``best.json``, ``log.csv``, ``train.log`` and the last
validation picture.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

PART_BYTES = 15 * 2**20


def split_file(path: Path, out: Path) -> list[Path]:
    """``path`` -> ``out/<name>.part-00``, ``-01`` ...: pieces of at most PART_BYTES."""
    parts = []
    with path.open("rb") as f:
        while chunk := f.read(PART_BYTES):
            part = out / f"{path.name}.part-{len(parts):02d}"
            part.write_bytes(chunk)
            parts.append(part)
    return parts


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pipeline")
    parser.add_argument("--minutes", type=float, required=True, help="training wall-clock budget")
    parser.add_argument("--out", type=Path, required=True, help="folder the tool brings back")
    parser.add_argument("--run-dir", default="runs/device", help="training run folder there")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args(argv)

    from geo2map.models.io import load_model, save_model
    from geo2map.train import run

    overrides = [
        "device=cuda",
        f"out_dir={args.run_dir}",
        f"train.max_minutes={args.minutes}",
        *args.overrides,
    ]
    best = run(args.pipeline, overrides, progress=False)
    args.out.mkdir(parents=True, exist_ok=True)
    model, card = load_model(best)
    staged = Path(args.run_dir) / "half"
    weights, card_path = save_model(model, card, staged / "best", half=True)
    split_file(weights, args.out)
    shutil.copy(card_path, args.out / "best.json")
    run_dir = Path(args.run_dir)
    shutil.copy(run_dir / "log.csv", args.out / "log.csv")
    grids = sorted((run_dir / "samples").glob("step*.png"))
    if grids:
        shutil.copy(grids[-1], args.out / "samples.png")
    return args.out


if __name__ == "__main__":
    main(sys.argv[1:])
