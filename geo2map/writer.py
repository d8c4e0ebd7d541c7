"""Block-by-block GeoTIFF writing, COG conversion and quicklooks, all atomic.

Blocks go into hidden, tiled, compressed GTiffs; when every block is in, GDAL's COG driver
copies them (with overviews) to hidden COGs, which are then renamed to their final names.
A failed run leaves no file under a final name. (GDAL's COG driver cannot be written
window by window, hence the two steps.)
"""

from __future__ import annotations

import glob
import os
import re
import warnings
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from PIL import Image
from rasterio.enums import ColorInterp, Resampling
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window

from geo2map.errors import Geo2MapError
from geo2map.gdal_settings import gdal_env
from geo2map.models.card import ModelCard

MASK_NODATA = 255
TILE = 512
# The block GTiffs are temporary: ZSTD level 1 keeps them small at a third of DEFLATE's
# cost.
GTIFF_OPTIONS = {
    "tiled": True,
    "blockxsize": TILE,
    "blockysize": TILE,
    "compress": "zstd",
    "zstd_level": 1,
    "bigtiff": "if_safer",
}
# No horizontal-differencing predictor: renders are flat palette colours and masks class ids,
# where differences only add nonzero values at every edge: without it, the 8k benchmark's
# render COG is 17 % and its mask 14 % smaller, and the two copies take ~0.6 s less CPU.
COG_OPTIONS = {
    "BLOCKSIZE": str(TILE),
    "PREDICTOR": "NO",
    "BIGTIFF": "IF_SAFER",
    "NUM_THREADS": "ALL_CPUS",
}
# The COGs' codec (``--compress``). ZSTD level 1 by default: at 8k it writes both COGs with
# ~2.5x less CPU than DEFLATE's level 6 (the COG step was the largest part of the pipeline
# beside the model), for files ~15 % larger; GDAL >= 2.3, and so QGIS, reads it. DEFLATE
# for readers built without ZSTD.
COG_COMPRESSION = {
    "zstd": {"COMPRESS": "ZSTD", "LEVEL": "1"},
    "deflate": {"COMPRESS": "DEFLATE"},
}
# The COG driver first writes the overviews to a temporary ZSTD file at its default level 9;
# level 1 there is the same pixels for less CPU (with ZSTD COGs, also the overviews' level).
COG_CONFIG = {"ZSTD_LEVEL_OVERVIEW": "1"}
QUICKLOOK_SIDE = 512


@dataclass(frozen=True)
class OutputPaths:
    """Every file a scene's run may write, decided before the run so all can be checked."""

    render: Path
    mask: Path
    quicklook: Path
    qml: Path
    vectors: Path | None = None
    stac: Path | None = None
    report: Path | None = None

    @classmethod
    def for_scene(
        cls,
        out_dir: Path,
        name: str,
        vectors: str | None = None,
        stac: bool = False,
        report: bool = False,
    ) -> OutputPaths:
        suffix = {"gpkg": ".gpkg", "parquet": ".parquet", "geojson": ".geojson"}
        return cls(
            render=out_dir / f"{name}_render.tif",
            mask=out_dir / f"{name}_mask.tif",
            quicklook=out_dir / f"{name}_quicklook.png",
            qml=out_dir / f"{name}_mask.qml",
            vectors=out_dir / f"{name}_features{suffix[vectors]}" if vectors else None,
            stac=out_dir / f"{name}.stac.json" if stac else None,
            report=out_dir / f"{name}_report.html" if report else None,
        )

    @property
    def report_pictures(self) -> list[Path]:
        if self.report is None:
            return []
        return [
            self.report.with_name(f"{self.report.stem}_{k}.png")
            for k in ("input", "render", "mask")
        ]

    def all(self) -> list[Path]:
        optional = [p for p in (self.vectors, self.stac, self.report) if p is not None]
        return [self.render, self.mask, self.quicklook, self.qml, *optional, *self.report_pictures]


def hidden(path: Path, tag: str) -> Path:
    """A temporary name beside ``path``: hidden, tagged with our PID, same suffix (drivers care)."""
    return path.with_name(f".{path.stem}.{tag}-{os.getpid()}{path.suffix}")


def remove_stale_temporaries(outputs: Iterable[Path]) -> list[Path]:
    """Delete the temporaries (:func:`hidden` names) of these output files that other
    processes left. Call it holding the scene's lock (``scene_lock``): then every such file
    belongs to a run that died."""
    removed = []
    mine = os.getpid()
    for out in outputs:
        pattern = re.compile(rf"\.{re.escape(out.stem)}\.[a-z]+-(\d+){re.escape(out.suffix)}")
        for p in out.parent.glob(glob.escape(f".{out.stem}.") + "*"):
            m = pattern.fullmatch(p.name)
            if m and int(m.group(1)) != mine and p.is_file():
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed


def atomic_write_text(path: Path, text: str) -> Path:
    """Write ``text`` to a hidden temporary beside ``path``, then rename it into place."""
    tmp = hidden(path, "tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def check_writable(paths: OutputPaths, overwrite: bool) -> None:
    existing = [p for p in paths.all() if p.exists()]
    if existing and not overwrite:
        raise Geo2MapError(f"{existing[0]} already exists; pass --overwrite to replace it")
    folder = paths.render.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise Geo2MapError(f"cannot create output folder {folder}: {e.strerror}") from None
    if not os.access(folder, os.W_OK):
        raise Geo2MapError(f"output folder {folder} is not writable; choose another --out")


class SceneWriter:
    """Receives finished output blocks and turns them into the scene's COGs and quicklook."""

    def __init__(
        self,
        paths: OutputPaths,
        profile: dict,
        card: ModelCard,
        gcps: tuple | None,
        compress: str,  # a key of COG_COMPRESSION; TranslateOptions holds the default
    ) -> None:
        self.paths = paths
        self.card = card
        self.compress = compress
        self.tmp_render = hidden(paths.render, "blocks")
        self.tmp_mask = hidden(paths.mask, "blocks")
        base = {**profile, **GTIFF_OPTIONS, "driver": "GTiff", "dtype": "uint8"}
        with warnings.catch_warnings():
            # a GCP-georeferenced scene's outputs get their GCPs just below, not a transform
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            self.render = rasterio.open(
                self.tmp_render, "w", **{**base, "count": 3, "nodata": None}
            )
            self.mask = rasterio.open(
                self.tmp_mask, "w", **{**base, "count": 1, "nodata": MASK_NODATA}
            )
        self.render.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue]
        # A render without nodata gets no mask band (GDAL then reports every pixel valid):
        # a masked AVERAGE made the 8k COG step ~0.8 s slower, and writing the band raised
        # the 16k peak by ~100 MB.
        # Windows written while every pixel so far was valid; None once the mask exists.
        self.all_valid_windows: list[Window] | None = []
        self.mask.write_colormap(1, self._colormap())
        self.mask.update_tags(**self._class_tags())
        self.mask.set_band_description(1, "land cover class")
        if gcps:
            for ds in (self.render, self.mask):
                ds.gcps = gcps

    def _colormap(self) -> dict[int, tuple[int, int, int, int]]:
        cmap = {i: (0, 0, 0, 0) for i in range(256)}
        for c in self.card.classes:
            cmap[c.id] = (*c.color, 255)
        return cmap

    def _class_tags(self) -> dict[str, str]:
        tags = {f"CLASS_{c.id}": c.name for c in self.card.classes}
        tags["CLASSES"] = ",".join(self.card.class_names)
        tags["MODEL"] = self.card.name
        return tags

    def write(self, row: int, col: int, block: np.ndarray) -> None:
        """``block``: (4, h, w) uint8, RGB render then class mask (255 = nodata)."""
        window = Window(col, row, block.shape[2], block.shape[1])
        valid = block[3] != MASK_NODATA
        self.render.write(block[:3], window=window)
        self.mask.write(block[3], 1, window=window)
        if self.all_valid_windows is not None and valid.all():
            self.all_valid_windows.append(window)
            return
        if self.all_valid_windows is not None:
            # The first nodata pixel: the render gets its mask band now, and the blocks
            # written before (unwritten mask tiles read as nodata) are marked valid.
            for w in self.all_valid_windows:
                self.render.write_mask(np.full((w.height, w.width), 255, np.uint8), window=w)
            self.all_valid_windows = None
        # uint8 scalars: a uint8 mask directly, not an 8 MB int64 temporary per block
        self.render.write_mask(np.where(valid, np.uint8(255), np.uint8(0)), window=window)

    def finish(self) -> None:
        self.render.close()
        self.mask.close()
        render_cog, mask_cog = hidden(self.paths.render, "cog"), hidden(self.paths.mask, "cog")
        staged = [(render_cog, self.paths.render), (mask_cog, self.paths.mask)]
        copies = [
            (self.tmp_render, render_cog, "AVERAGE", self.compress),
            (self.tmp_mask, mask_cog, "NEAREST", self.compress),
        ]
        # Both COGs at once: GDAL decodes, resamples overviews and writes each file on one
        # thread (only compression is multi-threaded), so one copy leaves a core idle.
        with ThreadPoolExecutor(len(copies)) as pool:
            list(pool.map(lambda c: cog_copy(*c), copies))
        tmp_png = hidden(self.paths.quicklook, "png")
        write_quicklook(render_cog, mask_cog, tmp_png)
        for tmp, final in [*staged, (tmp_png, self.paths.quicklook)]:
            os.replace(tmp, final)
        self.cleanup()

    def cleanup(self) -> None:
        for ds in (self.render, self.mask):
            if not ds.closed:
                ds.close()
        for p in self.paths.render.parent.glob(f".*-{os.getpid()}.*"):
            p.unlink(missing_ok=True)


def cog_copy(src: Path, dst: Path, overview_resampling: str, compress: str) -> None:
    # rasterio's GDAL settings are per thread: set them in this one too
    with gdal_env(), rasterio.Env(**COG_CONFIG):
        rasterio.shutil.copy(
            src,
            dst,
            driver="COG",
            OVERVIEW_RESAMPLING=overview_resampling,
            **COG_OPTIONS,
            **COG_COMPRESSION[compress],
        )


def write_quicklook(render_path: Path, mask_path: Path, out: Path) -> None:
    """A small PNG: render on the left, coloured mask on the right (nodata white)."""
    with rasterio.open(render_path) as r, rasterio.open(mask_path) as m:
        f = max(1, int(np.ceil(max(r.width, r.height) / QUICKLOOK_SIDE)))
        shape = (max(1, r.height // f), max(1, r.width // f))
        rgb = r.read(out_shape=(3, *shape), resampling=Resampling.average)
        valid = r.dataset_mask(out_shape=shape) > 0
        classes = m.read(1, out_shape=shape, resampling=Resampling.nearest)
        cmap = m.colormap(1)
    lut = np.full((256, 3), 255, dtype=np.uint8)
    for k, colour in cmap.items():
        if k != MASK_NODATA and colour[3] > 0:
            lut[k] = colour[:3]
    left = np.where(valid[None], rgb, 255).transpose(1, 2, 0)
    right = lut[classes]
    gap = np.full((shape[0], 4, 3), 255, dtype=np.uint8)
    Image.fromarray(np.concatenate([left, gap, right], axis=1)).save(out, format="PNG")
