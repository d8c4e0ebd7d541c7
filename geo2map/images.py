"""Plain images (JPEG/PNG, no georeferencing): translated at the pixel size the user states
(``--gsd``), else as if at the model's GSD.

Each image becomes a temporary GeoTIFF of that pixel size and runs through the engine of
``translate`` (engine.py): resampled to the model's GSD and back with the scene rules, the
same chips, batches and blending, hence the same numbers as that GeoTIFF translated.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image, UnidentifiedImageError
from rasterio.transform import from_origin

from geo2map.engine import compute_scene
from geo2map.errors import Geo2MapError
from geo2map.execution import job_settings, open_runner
from geo2map.gdal_settings import gdal_env
from geo2map.models.card import ModelCard
from geo2map.models.int8_cache import checked_card
from geo2map.options import TranslateOptions
from geo2map.plan import plan_scene
from geo2map.scene import MAX_GSD_RATIO
from geo2map.writer import hidden


def read_image(path: Path) -> np.ndarray:
    """(3, H, W) uint8; grey images are repeated into RGB, alpha is dropped."""
    if not path.is_file():
        raise Geo2MapError(f"{path}: no such file")
    try:
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError):
        raise Geo2MapError(f"{path}: not an image PIL can read (give a JPEG or PNG)") from None
    return rgb.transpose(2, 0, 1)


def check_gsd(gsd_m: float | None, model_gsd: float) -> None:
    """Refuse a ``--gsd`` that is not a pixel size, or is more than 8x from the model's."""
    if gsd_m is None:
        return
    if gsd_m <= 0:
        raise Geo2MapError(f"--gsd {gsd_m:g}: give the pixel size in metres, e.g. --gsd 0.3")
    ratio = gsd_m / model_gsd
    if not 1 / MAX_GSD_RATIO <= ratio <= MAX_GSD_RATIO:
        raise Geo2MapError(
            f"--gsd {gsd_m:g} m is {ratio:.3g}x the model's {model_gsd:g} m (more than "
            f"{MAX_GSD_RATIO:g}x apart); use imagery near {model_gsd:g} m"
        )


def palette_image(classes: np.ndarray, card: ModelCard) -> Image.Image:
    """A paletted PNG image whose pixel values are the class indices."""
    im = Image.fromarray(classes, mode="P")
    flat = [v for c in card.classes for v in c.color]
    im.putpalette(flat + [0, 0, 0] * (256 - len(card.classes)))
    return im


def image_as_geotiff(image: np.ndarray, path: Path, gsd_m: float) -> None:
    """Write (3, H, W) uint8 pixels as a north-up GeoTIFF with ``gsd_m`` metre pixels (in a
    UTM zone: any metric CRS gives the scene path the pixel size, which is all it reads)."""
    _, h, w = image.shape
    profile = {
        "driver": "GTiff", "width": w, "height": h, "count": 3, "dtype": "uint8",
        "crs": "EPSG:32631", "transform": from_origin(500_000.0, h * gsd_m, gsd_m, gsd_m),
        "photometric": "RGB",
    }  # fmt: skip
    with gdal_env(), rasterio.open(path, "w", **profile) as ds:
        ds.write(image)


def translate_images(
    images: list[Path], out_dir: Path, options: TranslateOptions, gsd_m: float | None = None
) -> list[Path]:
    """Translate plain images into ``<stem>_render.png`` and ``<stem>_mask.png`` (paletted).

    Each image goes through the engine of ``translate`` as a GeoTIFF of the stated pixel
    size, so its numbers are those of the same pixels translated as a scene."""
    card = checked_card(options.model_source)
    model_gsd = card.input.gsd_m
    check_gsd(gsd_m, model_gsd)  # refuse a bad --gsd before reading anything
    targets = [
        (p, out_dir / f"{p.stem}_render.png", out_dir / f"{p.stem}_mask.png") for p in images
    ]
    for _, *outs in targets:
        for o in outs:
            if o.exists() and not options.overwrite:
                raise Geo2MapError(f"{o} already exists; pass --overwrite to replace it")
    pixels = [read_image(p) for p, *_ in targets]  # every input checked before any output
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with (
        job_settings(),
        tempfile.TemporaryDirectory(prefix="geo2map-image-") as tmp,
        open_runner(options.scheduler, options.workers, None) as runner,
    ):
        for (source, render_path, mask_path), image in zip(targets, pixels, strict=True):
            scene = Path(tmp) / f"{source.stem}.tif"
            image_as_geotiff(image, scene, gsd_m or model_gsd)
            plan = replace(plan_scene(scene, options, card), torch_threads=runner.torch_threads)
            result = compute_scene(plan, runner, options.block_size)
            for final, im in (
                (render_path, Image.fromarray(result[:3].transpose(1, 2, 0))),
                (mask_path, palette_image(result[3], card)),
            ):
                tmp_png = hidden(final, "png")
                im.save(tmp_png, format="PNG")
                os.replace(tmp_png, final)
                written.append(final)
    return written
