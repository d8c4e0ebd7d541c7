"""Training augmentations: a crop resampled to the model's ground sample distance, flips and
rot90 applied alike to an image and its targets, and photometric changes (image only) that
imitate other sensors, seasons and processing chains.

Inference resamples every scene to the card's GSD, so training crops are resampled the same
way: a source of pixel size ``g`` metres is scaled by ``g / model_gsd`` (antialiased bilinear
for the image, nearest for label maps). Sources whose pixel size is not published get a range
and each crop draws its size from it (log-uniform), which is also scale augmentation.
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image, ImageFilter

from geo2map.train.palette import IGNORE


def resampled_window(
    arrays: list[np.ndarray | None],
    rng: np.random.Generator,
    crop: int,
    factor: float,
) -> list[np.ndarray | None]:
    """A random ``crop`` x ``crop`` window of the arrays as seen at ``factor`` x their size.

    The first array is the image (H, W, 3) uint8, resized antialiased bilinear; the others are
    label maps, resized nearest. Where the source is smaller than the window, the image is
    padded by reflection and the labels with IGNORE (no loss is computed there).
    """
    h, w = arrays[0].shape[:2]
    side = max(1, round(crop / factor))  # the window's side in source pixels
    y = int(rng.integers(0, h - side + 1)) if h > side else 0
    x = int(rng.integers(0, w - side + 1)) if w > side else 0
    out: list[np.ndarray | None] = []
    for i, a in enumerate(arrays):
        if a is None:
            out.append(None)
            continue
        win = a[y : y + side, x : x + side]
        th, tw = (min(crop, round(s * factor)) for s in win.shape[:2])
        if (th, tw) != win.shape[:2]:
            resample = Image.BILINEAR if i == 0 else Image.NEAREST
            win = np.asarray(Image.fromarray(win).resize((tw, th), resample))
        if (th, tw) != (crop, crop):
            pad = ((0, crop - th), (0, crop - tw)) + (((0, 0),) if win.ndim == 3 else ())
            if i == 0:
                win = np.pad(win, pad, mode="symmetric")
            else:
                win = np.pad(win, pad, constant_values=IGNORE)
        out.append(win)
    return out


def draw_factor(
    rng: np.random.Generator, gsd_range: tuple[float, float], model_gsd: float, jitter: float
) -> float:
    """Scale factor source -> model grid: a pixel size drawn log-uniformly from ``gsd_range``,
    times a log-uniform scale jitter in [1 / (1 + jitter), 1 + jitter]."""
    lo, hi = gsd_range
    g = math.exp(rng.uniform(math.log(lo), math.log(hi))) if hi > lo else lo
    if jitter > 0:
        g *= math.exp(rng.uniform(-math.log1p(jitter), math.log1p(jitter)))
    return g / model_gsd


def flip_rotate(arrays: list[np.ndarray | None], rng: np.random.Generator) -> list:
    """One random flip + rot90 for all arrays (maps have no preferred orientation)."""
    k = int(rng.integers(0, 4))
    flip = bool(rng.integers(0, 2))
    out = []
    for a in arrays:
        if a is not None:
            a = a[:, ::-1] if flip else a
            a = np.ascontiguousarray(np.rot90(a, k, axes=(0, 1)))
        out.append(a)
    return out


def jitter_colours(image: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Random brightness, contrast, saturation and per-band gain (white balance).

    Aerial imagery from another sensor, season or processing chain differs mostly in these:
    without jitter the model learns the colours of its training sources and reads an unseen
    scene's tones as the wrong class.
    """
    if strength <= 0:
        return image
    j = strength
    x = image.astype(np.float32) / 255
    x = x * rng.uniform(1 - j, 1 + j) * rng.uniform(1 - j / 3, 1 + j / 3, size=3)
    mean = x.mean()
    x = (x - mean) * rng.uniform(1 - j, 1 + j) + mean
    grey = x.mean(axis=2, keepdims=True)
    x = grey + (x - grey) * rng.uniform(1 - j, 1 + j)
    return (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)


def degrade(image: np.ndarray, rng: np.random.Generator, p: float) -> np.ndarray:
    """Each with probability ``p``: gamma, haze, blur, sensor noise, JPEG compression.

    These are what differs between our training sources (clean orthophotos, Bing screenshots,
    JPEG satellite tiles) and a user's scene; the order follows the imaging chain (atmosphere,
    optics, sensor, encoder).
    """
    if p <= 0:
        return image
    x = image.astype(np.float32) / 255
    if rng.random() < p:  # gamma (exposure curve)
        x = x ** math.exp(rng.uniform(-0.35, 0.35))
    if rng.random() < p:  # haze: a veil of bright, slightly blue light
        veil = np.array([0.8, 0.83, 0.88], np.float32) * rng.uniform(0.85, 1.1)
        a = rng.uniform(0.05, 0.35)
        x = x * (1 - a) + veil * a
    img = Image.fromarray((np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8))
    if rng.random() < p:  # optics / resampling blur
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.3)))
    out = np.asarray(img)
    if rng.random() < p:  # sensor noise
        noise = rng.normal(0, rng.uniform(2, 8), out.shape)
        out = np.clip(out + noise, 0, 255).astype(np.uint8)
    if rng.random() < p:  # lossy encoding
        buf = io.BytesIO()
        Image.fromarray(out).save(buf, format="JPEG", quality=int(rng.integers(30, 90)))
        out = np.asarray(Image.open(buf).convert("RGB"))
    return np.ascontiguousarray(out)
