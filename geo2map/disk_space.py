"""Disk space a scene's outputs need: checked before a run, and a full disk during one
reported in one line."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

from geo2map.errors import Geo2MapError

# Bytes a scene needs per output pixel while it is written: the finished blocks kept for a
# resume (.npy, 4 bytes: RGB + class) until the COGs exist, plus the compressed temporaries
# and COGs (render + mask ~0.25 byte a pixel for the shipped model on aerial-0.6m; 1 byte
# each allowed for busier outputs).
BYTES_PER_PIXEL = 6


def gigabytes(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


def needed_bytes(pixels: int) -> int:
    return BYTES_PER_PIXEL * pixels


def check_free_space(folder: Path, pixels: int) -> None:
    """Refuse a scene whose outputs will not fit on the disk holding ``folder``."""
    free = shutil.disk_usage(folder).free
    need = needed_bytes(pixels)
    if free < need:
        raise Geo2MapError(
            f"{folder}: {gigabytes(free)} free, and this scene needs about {gigabytes(need)} "
            f"while it is written ({BYTES_PER_PIXEL} bytes a pixel); free space or choose "
            "another --out"
        )


def is_disk_full(e: BaseException) -> bool:
    """An OSError with ENOSPC (or EDQUOT), or a GDAL write error saying so, anywhere in the
    exception's chain."""
    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(seen).lower()
        if "no space left" in text or "disk quota" in text or "free disk space" in text:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def disk_full_error(folder: Path, pixels: int) -> Geo2MapError:
    return Geo2MapError(
        f"{folder}: the disk filled up while this scene was written (it needs about "
        f"{gigabytes(needed_bytes(pixels))}); nothing of it was kept: free space or choose "
        "another --out"
    )
