"""One run at a time writes a scene's outputs: a lock file beside them."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from geo2map.errors import Geo2MapError


@contextmanager
def scene_lock(out_dir: Path, name: str) -> Iterator[None]:
    """Hold ``<out_dir>/.<name>.lock`` (an exclusive ``flock``) while a scene is written.

    A second run for the same scene and folder is refused in one line instead of racing
    the first over its block files. The kernel drops the lock when a process dies, so a
    killed run never leaves a stale lock; the file is removed when the run ends.
    """
    path = Path(out_dir) / f".{name}.lock"
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise Geo2MapError(
                f"another geo2map run (pid {holder}) is writing the outputs of {name} in "
                f"{out_dir}; wait for it to finish or choose another --out"
            ) from None
        # The holder before us may have removed the file after we opened it: lock the file
        # that is at the path now, or two runs could each hold a lock of their own.
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)
