"""The ``geo2map`` command: parses, calls the API, prints. No logic of its own."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from geo2map import catalog
from geo2map.console import err_console, out_console, run_guarded
from geo2map.errors import Geo2MapError
from geo2map.execution import tune_malloc
from geo2map.models.io import DEFAULT_MODEL
from geo2map.options import TranslateOptions, with_options
from geo2map.train.commands import register_commands as register_training_commands

app = typer.Typer(
    help="Georeferenced imagery -> map renders and land-cover masks (COGs).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
catalog_app = typer.Typer(help="The data catalog (data_catalog.yaml).", no_args_is_help=True)
app.add_typer(catalog_app, name="catalog")


def default_model_text() -> str:
    """What `translate --help` says about the shipped default model."""
    from geo2map.models.card import ModelCard

    card_path = DEFAULT_MODEL.with_suffix(".json")
    if not card_path.is_file():
        return "no default model is shipped in geo2map/models/weights/; pass --model"
    try:
        card = ModelCard.from_json(card_path)
    except ValueError:
        return f"{card_path} is not a valid model card"
    return f"{card.summary()}: {card.description}".rstrip(": ")


def resolve_input(name: str, data_root: str | None) -> str:
    """A path as given, or a data catalog entry name resolved under the data root."""
    if Path(name).exists() or "/" in name:
        return name
    try:
        entries = catalog.load_catalog()
    except Geo2MapError:  # no catalog beside this install: names are paths
        return name
    if name in entries:  # names may hold dots ("aerial-0.6m")
        return str(catalog.resolve(name, data_root))
    return name  # let the reader say "no such file"


# the options of translate that apply to a plain image (the rest are about rasters and jobs)
IMAGE_OPTIONS = [
    "model",
    "card",
    "chip_size",
    "overlap",
    "batch_size",
    "device",
    "precision",
    "overwrite",
]


def print_summaries(summaries: list) -> None:
    table = Table(title="geo2map translate", box=box.SIMPLE, pad_edge=False)
    for col in ("scene", "pixels", "chips", "skipped", "seconds", "MP/s"):
        table.add_column(col, justify="left" if col == "scene" else "right", no_wrap=True)
    for s in summaries:
        table.add_row(
            Path(s.scene).name,
            f"{s.width}x{s.height}",
            str(s.chips),
            str(s.chips_skipped),
            f"{s.seconds:.1f}",
            f"{s.megapixels_per_second:.2f}",
        )
    out_console.print(table)
    for s in summaries:
        for o in s.outputs:
            out_console.print(f"  wrote {o}", highlight=False)


@contextmanager
def progress_bar() -> Iterator[Callable[..., None]]:
    """A rich progress bar over pixels; yields the callback the pipeline reports to.
    Without a terminal there is no bar (rich would still end it with a blank line) and
    the messages (job size, dashboard address) go to stdout: stderr keeps errors only."""
    if not err_console.is_terminal:

        def messages_only(pixels: int, total: int | None = None, message: str | None = None):
            if message:
                out_console.print(message, highlight=False)

        yield messages_only
        return
    with Progress(
        TextColumn("[bold]translating"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    ) as bar:
        task = bar.add_task("pixels", total=None)

        def advance(pixels: int, total: int | None = None, message: str | None = None) -> None:
            if message:
                bar.console.print(message, highlight=False)
            if total is not None:
                bar.update(task, total=total)
            bar.advance(task, pixels)

        yield advance


def run_translation(inputs: list[str], out: Path, options) -> None:
    from geo2map.pipeline import plan_and_translate

    with progress_bar() as advance:
        summaries = plan_and_translate(inputs, out, options, advance)
    print_summaries(summaries)


def print_job_summary(summary: dict) -> None:
    table = Table(title="geo2map run", box=box.SIMPLE, pad_edge=False)
    for col in ("scene", "status", "pixels", "chips", "skipped", "seconds", "MP/s"):
        table.add_column(col, no_wrap=True)
    for name, s in summary["scenes"].items():
        pixels = f"{s['width']}x{s['height']}" if "width" in s else ""
        table.add_row(name, s.get("status", ""), pixels, str(s.get("chips_computed", "")),
                      str(s.get("chips_skipped", "")), str(s.get("seconds", "")),
                      str(s.get("megapixels_per_second", "")))  # fmt: skip
    out_console.print(table)
    for o in summary["outputs"]:
        out_console.print(f"  wrote {o}", highlight=False)


@app.command(
    help=f"Translate GeoTIFF/COG/VRT scenes (or catalog names) into render and mask COGs.\n\nDefault model: {default_model_text()}"
)
@with_options(list(TranslateOptions.model_fields))
def translate(
    inputs: Annotated[list[str], typer.Argument(help="raster files or data catalog names")],
    out: Annotated[Path, typer.Option("--out", "-o", help="output folder")],
    data_root: Annotated[str | None, typer.Option(help="data root for catalog names")] = None,
    **options: Any,
) -> None:
    translate_options = TranslateOptions.from_flags(options)
    tune_malloc()  # this process is geo2map's own: tuned for good, before any thread starts
    run_translation([resolve_input(i, data_root) for i in inputs], out, translate_options)


@app.command(help="Run a pipeline YAML (kind: translate): many scenes, resumable after a kill.")
def run(
    pipeline: Annotated[Path, typer.Argument(help="pipeline YAML, e.g. pipelines/large-area.yaml")],
) -> None:
    def go() -> None:
        from geo2map.jobs import load_job

        tune_malloc()  # this process is geo2map's own
        from geo2map.region import run_job

        job = load_job(pipeline)
        with progress_bar() as advance:
            summary = run_job(job, progress=advance)
        print_job_summary(summary)
        if summary["failed"]:
            raise Geo2MapError(
                f"{summary['failed']} scene(s) failed: see {Path(job.out) / 'run-summary.json'}"
            )

    run_guarded(go)


@app.command(
    "translate-image",
    help="Translate plain images (JPEG/PNG, no georeferencing) at the pixel size --gsd states "
    "(default: the model's GSD), with the engine and numbers of `translate`.",
)
@with_options(IMAGE_OPTIONS)
def translate_image(
    images: Annotated[list[Path], typer.Argument(help="image files")],
    out: Annotated[Path, typer.Option("--out", "-o", help="output folder")],
    gsd: Annotated[
        float | None,
        typer.Option(help="pixel size of the images in metres (default: the model's GSD)"),
    ] = None,
    **options: Any,
) -> None:
    from geo2map.images import translate_images

    for written in translate_images(images, out, TranslateOptions.from_flags(options), gsd):
        out_console.print(f"  wrote {written}", highlight=False)


@app.command(help="Polygons from a geo2map mask: one per connected region of a class, no seams.")
def vectorize(
    mask: Annotated[Path, typer.Argument(help="a mask GeoTIFF written by geo2map translate")],
    out: Annotated[Path, typer.Option("--out", "-o", help="output .gpkg, .parquet or .geojson")],
    simplify: Annotated[float, typer.Option(help="simplification tolerance (map units)")] = 0.0,
    min_area: Annotated[
        float, typer.Option(help="drop polygons smaller than this (map units²)")
    ] = 0.0,
    overwrite: Annotated[bool, typer.Option(help="replace an existing output")] = False,
) -> None:
    def go() -> None:
        from geo2map.vectorize import vectorize as run_vectorize

        frame = run_vectorize(mask, out, simplify=simplify, min_area=min_area, overwrite=overwrite)
        out_console.print(f"wrote {out}: {len(frame)} polygons", highlight=False)

    run_guarded(go)


@catalog_app.command("list", help="Entries of data_catalog.yaml and whether each is present.")
def catalog_list(data_root: Annotated[str | None, typer.Option(help="data root")] = None) -> None:
    def go() -> None:
        root = catalog.data_root(data_root)
        table = Table(title=f"data catalog (data root: {root})")
        table.add_column("name", no_wrap=True)  # names are what users type: never cut them
        for col in ("kind", "present", "crs", "pixel size (CRS units)", "licence"):
            table.add_column(col, overflow="fold")
        for e in catalog.load_catalog().values():
            present = "[green]yes[/green]" if catalog.is_present(e, data_root) else "[red]no[/red]"
            px = (
                f"{e.pixel_size:g} m"
                if e.pixel_size and "4326" not in (e.crs or "")
                else (f"{e.pixel_size:g}" if e.pixel_size else "")
            )
            table.add_row(e.name, e.kind, present, e.crs or "", px, e.licence)
        out_console.print(table)

    run_guarded(go)


@catalog_app.command(
    "path", help="Local path of an entry (verified by sha256; downloaded if missing)."
)
def catalog_path(
    name: Annotated[str, typer.Argument(help="catalog entry, e.g. dutch-aerial-25cm")],
    data_root: Annotated[str | None, typer.Option(help="data root")] = None,
) -> None:
    run_guarded(lambda: print(catalog.resolve(name, data_root)))


register_training_commands(app)  # train, evaluate, export-model


def _guarded(callback: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(callback)  # typer reads the signature through __wrapped__
    def run_command(*args, **kwargs) -> None:
        run_guarded(lambda: callback(*args, **kwargs))

    return run_command


# Every command, including those other modules register: user errors are one line, exit 2.
for _command in app.registered_commands:
    _command.callback = _guarded(_command.callback)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
