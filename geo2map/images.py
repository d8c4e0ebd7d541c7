"""Plain images (JPEG/PNG, no georeferencing): translated at the pixel size the user states
(``--gsd``), else as if at the model's GSD.

An image whose stated pixel size is more than 10 % away from the model's is resampled to the
model's GSD (antialiased bilinear), translated, and its render (bilinear) and mask (nearest)
resampled back to the image's own size, as ``translate`` does for a GeoTIFF.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from geo2map.errors import Geo2MapError
from geo2map.tiling import ChipGrid, blend_chips, first_argmax
from geo2map.translator import Translator
from geo2map.writer import hidden


def read_image(path: Path) -> np.ndarray:
    """(3, H, W) float32 in [0, 1]; grey images are repeated into RGB, alpha is dropped."""
    if not path.is_file():
        raise Geo2MapError(f"{path}: no such file")
    try:
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError):
        raise Geo2MapError(f"{path}: not an image PIL can read (give a JPEG or PNG)") from None
    return rgb.transpose(2, 0, 1)


def translate_pixels(
    image: np.ndarray, translator: Translator, chip_size: int, overlap: int, batch_size: int = 8
) -> tuple[np.ndarray, np.ndarray]:
    """(3, H, W) in [0, 1] -> render (H, W, 3) uint8 and class indices (H, W) uint8."""
    _, h, w = image.shape
    grid = ChipGrid(h, w, chip_size, overlap, batch_size)
    pad = ((0, 0), (0, max(0, chip_size - h)), (0, max(0, chip_size - w)))
    padded = np.pad(image, pad, mode="reflect" if min(h, w) > 1 else "edge")
    outputs: dict[int, np.ndarray | None] = {}
    for b in range(grid.n_batches):
        chips = grid.batch(b)
        inputs = [padded[:, c.row : c.row + chip_size, c.col : c.col + chip_size] for c in chips]
        outputs.update(zip([c.index for c in chips], translator.predict_chips(inputs), strict=True))
    values, _ = blend_chips(grid, outputs, (0, h), (0, w))
    render = np.rint(values[:3]).astype(np.uint8).transpose(1, 2, 0)
    return render, first_argmax(values[3:])


def model_grid_size(h: int, w: int, gsd_m: float | None, model_gsd: float) -> tuple[int, int]:
    """(height, width) of the image at the model's GSD, with the scene rules: within 10 % it
    is used as it is; more than 8x apart is refused."""
    from geo2map.scene import GSD_SNAP, MAX_GSD_RATIO

    if gsd_m is None:
        return h, w
    if gsd_m <= 0:
        raise Geo2MapError(f"--gsd {gsd_m:g}: give the pixel size in metres, e.g. --gsd 0.3")
    ratio = gsd_m / model_gsd
    if not 1 / MAX_GSD_RATIO <= ratio <= MAX_GSD_RATIO:
        raise Geo2MapError(
            f"--gsd {gsd_m:g} m is {ratio:.3g}x the model's {model_gsd:g} m (more than "
            f"{MAX_GSD_RATIO:g}x apart); use imagery near {model_gsd:g} m"
        )
    if abs(ratio - 1) <= GSD_SNAP:
        return h, w
    return max(1, round(h * ratio)), max(1, round(w * ratio))


def resize_bands(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """(C, H, W) float32 -> (C, h, w), antialiased bilinear per band (PIL)."""
    if image.shape[1:] == hw:
        return image
    size = (hw[1], hw[0])
    return np.stack([np.asarray(Image.fromarray(b).resize(size, Image.BILINEAR)) for b in image])


def palette_image(classes: np.ndarray, translator: Translator) -> Image.Image:
    """A paletted PNG image whose pixel values are the class indices."""
    im = Image.fromarray(classes, mode="P")
    flat = [v for c in translator.card.classes for v in c.color]
    im.putpalette(flat + [0, 0, 0] * (256 - len(translator.card.classes)))
    return im


def translate_images(
    images: list[Path],
    out_dir: Path,
    model: str,
    chip_size: int = 512,
    overlap: int = 64,
    device: str = "auto",
    precision: str = "auto",
    overwrite: bool = False,
    gsd_m: float | None = None,
) -> list[Path]:
    translator = Translator.load(model, device, precision)
    model_gsd = translator.card.input.gsd_m
    model_grid_size(1, 1, gsd_m, model_gsd)  # refuse a bad --gsd before reading anything
    multiple = translator.card.input.multiple
    if chip_size % multiple or overlap >= chip_size:
        raise Geo2MapError(
            f"chip size {chip_size} / overlap {overlap}: the chip must be a multiple of {multiple} "
            "and larger than the overlap"
        )
    targets = [
        (p, out_dir / f"{p.stem}_render.png", out_dir / f"{p.stem}_mask.png") for p in images
    ]
    for _, *outs in targets:
        for o in outs:
            if o.exists() and not overwrite:
                raise Geo2MapError(f"{o} already exists; pass --overwrite to replace it")
    pixels = [read_image(p) for p, *_ in targets]  # every input checked before any output
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for (_, render_path, mask_path), image in zip(targets, pixels, strict=True):
        h, w = image.shape[1:]
        grid = model_grid_size(h, w, gsd_m, model_gsd)
        render, classes = translate_pixels(
            resize_bands(image, grid), translator, chip_size, overlap
        )
        if grid != (h, w):
            render = np.asarray(Image.fromarray(render).resize((w, h), Image.BILINEAR))
            classes = np.asarray(Image.fromarray(classes).resize((w, h), Image.NEAREST))
        for final, im in (
            (render_path, Image.fromarray(render)),
            (mask_path, palette_image(classes, translator)),
        ):
            tmp = hidden(final, "png")
            im.save(tmp, format="PNG")
            os.replace(tmp, final)
            written.append(final)
    return written
