"""``geo2map train | evaluate | export-model``: thin typer wrappers over geo2map.train.

``geo2map/cli.py`` calls :func:`register_commands` on its app.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register_commands(app: typer.Typer) -> None:
    @app.command("train")
    def train(
        pipeline: Annotated[
            Path, typer.Argument(help="pipeline YAML, e.g. pipelines/train-default.yaml")
        ],
        set_: Annotated[
            list[str] | None,
            typer.Option("--set", help="override a key, e.g. --set train.steps=10 (repeatable)"),
        ] = None,
        no_progress: Annotated[bool, typer.Option("--no-progress", help="no progress bar")] = False,
        device: Annotated[
            str | None,
            typer.Option(help="auto, cpu or cuda (default: the YAML's device, else auto)"),
        ] = None,
    ) -> None:
        """Train (or resume) the model a pipeline YAML describes; checkpoints resume after a kill."""
        from geo2map.train import run

        overrides = [*(set_ or []), *([f"device={device}"] if device else [])]
        best = run(pipeline, overrides, progress=not no_progress)
        typer.echo(f"best model: {best}")

    @app.command("evaluate")
    def evaluate(
        model: Annotated[
            Path, typer.Option("--model", help="model path (x, x.json or x.safetensors)")
        ],
        pairs: Annotated[
            Path | None, typer.Option("--pairs", help="folder with sat/ and map/")
        ] = None,
        masks: Annotated[
            Path | None, typer.Option("--masks", help="folder with img/ and mask/")
        ] = None,
        out: Annotated[
            Path | None, typer.Option("--out", help="folder for metrics + grid.png")
        ] = None,
        all_files: Annotated[
            bool, typer.Option("--all", help="score every file, not the card's validation split")
        ] = False,
        limit: Annotated[int | None, typer.Option("--limit", help="score only the first N")] = None,
        precision: Annotated[
            str, typer.Option(help="bf16, or int8 (needs the card's int8 calibration)")
        ] = "bf16",
        pipeline: Annotated[
            Path | None,
            typer.Option(
                help="score every validation split of this training YAML, at the model's GSD"
            ),
        ] = None,
        native: Annotated[
            bool, typer.Option("--native", help="with --pipeline: images at their own size")
        ] = False,
        scene: Annotated[
            Path | None, typer.Option(help="a georeferenced scene to score with --labels")
        ] = None,
        labels: Annotated[
            list[str] | None,
            typer.Option(help="with --scene: label layer FILE=CLASS, e.g. buildings.gpkg=building"),
        ] = None,
        complete: Annotated[
            bool, typer.Option(help="with --labels: every instance of their classes is drawn")
        ] = False,
        bounds: Annotated[
            tuple[float, float, float, float] | None,
            typer.Option(help="with --scene: score only XMIN YMIN XMAX YMAX (scene CRS)"),
        ] = None,
        buffer: Annotated[
            float, typer.Option(help="with --labels: half-width of line labels, map units")
        ] = 0.0,
    ) -> None:
        """Score a saved model: validation splits (RMSE, acc5/10, SSIM, IoUs and a picture
        grid), or a georeferenced scene against GIS label layers (IoU per class)."""
        from geo2map.train.evaluate import evaluate as run_eval
        from geo2map.train.evaluate import evaluate_pipeline, metrics_table

        if scene is not None or labels:
            from geo2map.errors import Geo2MapError
            from geo2map.labels import LabelLayer
            from geo2map.options import TranslateOptions
            from geo2map.train.evaluate_scenes import evaluate_scene, scores_table

            if scene is None or not labels:
                raise Geo2MapError("--scene and --labels go together: a scene and its labels")
            layers = [LabelLayer.parse(t, buffer) for t in labels]
            options = TranslateOptions(model=str(model), precision="auto")
            scores, notes = evaluate_scene(scene, layers, options, complete, bounds, buffer)
            for note in notes:
                typer.echo(note)
            typer.echo(scores_table(scores, complete))
            return
        if pipeline is not None:
            scores = evaluate_pipeline(model, pipeline, out, native=native)
            for k, v in scores.items():
                typer.echo(f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}")
            return

        result = run_eval(
            model, pairs, masks, out, all_files=all_files, limit=limit, precision=precision
        )
        typer.echo(metrics_table(result))
        if out is not None:
            typer.echo(f"wrote {out}/metrics.json, metrics.md, grid.png")

    @app.command("pack-data")
    def pack_data(
        pipeline: Annotated[Path, typer.Argument(help="training YAML whose sources to pack")],
        out: Annotated[Path, typer.Option("--out", help="new data root, e.g. .carry/data")],
        max_mb: Annotated[float, typer.Option(help="stop adding Moscow training pairs here")] = 32,
        quality: Annotated[int, typer.Option(help="WebP quality of the photos")] = 60,
    ) -> None:
        """Pack a training YAML's data small enough to travel to a lent GPU machine."""
        from geo2map.errors import Geo2MapError
        from geo2map.train.config import load_config
        from geo2map.train.pack import pack_training_data

        if out.exists() and any(out.iterdir()):
            raise Geo2MapError(f"{out} is not empty: remove it or choose another --out")
        report = pack_training_data(load_config(pipeline), out, quality, max_mb)
        files = ", ".join(f"{k} {v}" for k, v in report.files.items())
        typer.echo(f"wrote {out}: {report.bytes / 2**20:.1f} MiB ({files}; "
                   f"Moscow training pairs that fitted: {report.moscow_train})")  # fmt: skip

    @app.command("export-model")
    def export_model(
        src: Annotated[Path, typer.Argument(help="trained model, e.g. runs/default/best")],
        out: Annotated[
            Path, typer.Option("--out", help="destination, e.g. geo2map/models/weights/default")
        ],
        pairs: Annotated[
            Path | None, typer.Option("--pairs", help="score the card's val pairs here first")
        ] = None,
        masks: Annotated[
            Path | None, typer.Option("--masks", help="score the card's val chips here first")
        ] = None,
        half: Annotated[
            bool, typer.Option("--half/--float32", help="store weights as float16 (half size)")
        ] = False,
        palette_decode: Annotated[
            str | None,
            typer.Option(
                help="palette render: argmax, nearest-mean (colour nearest the mean) or "
                "mask-gated (most likely colour of the mask's class)"
            ),
        ] = None,
        int8: Annotated[
            bool,
            typer.Option(
                "--int8", help="calibrate int8 CPU inference on training images of --pairs/--masks"
            ),
        ] = False,
        pipeline: Annotated[
            Path | None,
            typer.Option(help="also score every validation split of this training YAML"),
        ] = None,
    ) -> None:
        """Check a trained model loads (optionally re-score it), write .safetensors + .json at --out."""
        from geo2map.train import export

        weights, card = export(
            src, out, pairs, masks, half=half, palette_decode=palette_decode, int8=int8,
            pipeline=pipeline,
        )  # fmt: skip
        typer.echo(f"wrote {weights} and {card}")
