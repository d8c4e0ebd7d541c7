"""The process that `--cluster local:N` forks its workers from, with their stack preloaded.

dask spawns each worker as a fresh interpreter, which then imported torch and
segmentation-models-pytorch and rebuilt the int8 model before its first batch: ~7 s of
CPU per worker. A multiprocessing forkserver does that once (worker_preload.py) and forks
every worker from it, ready. It starts before the job plans its scenes, so its imports
overlap the planning, and it lives as long as this process, like any forkserver: a later
job with the same model starts its workers at once.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from dataclasses import asdict, dataclass

PRELOAD_MODULE = "geo2map.worker_preload"
PRELOAD_MODEL_ENV = "GEO2MAP_PRELOAD_MODEL"  # a PreloadModel as JSON, for the forkserver


@dataclass(frozen=True)
class PreloadModel:
    """A model the forkserver builds and runs once, for its workers to inherit."""

    path: str
    device: str
    precision: str
    chip_size: int
    version: str = ""  # fingerprint of the weights file: a rewritten file is another model


# what the running forkserver preloaded (as started by this module); None: not started
_started_with: str | None = None


def start_worker_forkserver(env: dict[str, str], model: PreloadModel | None) -> bool:
    """Start (or keep) the forkserver, under ``env`` (glibc reads MALLOC_* at start and the
    forked workers inherit its settings), preloaded with the worker stack and ``model``.
    Pass a model only for the CPU: a CUDA context does not survive a fork. Returns False
    where there is no forkserver (Windows): dask then spawns its workers."""
    global _started_with
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return False
    from multiprocessing import forkserver

    key = json.dumps([env, asdict(model) if model else None], sort_keys=True)
    if _started_with == key:
        forkserver.ensure_running()  # restarts it only if it died
        return True
    if _started_with is not None:  # another model or setting: a fresh server
        stop_worker_forkserver()
    multiprocessing.get_context("forkserver").set_forkserver_preload([PRELOAD_MODULE])
    env = {**env, PRELOAD_MODEL_ENV: json.dumps(asdict(model)) if model else ""}
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        forkserver.ensure_running()  # returns at once; the server imports in the background
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    _started_with = key
    return True


def stop_worker_forkserver() -> None:
    """Stop the forkserver (multiprocessing starts a new one when something needs it)."""
    global _started_with
    from multiprocessing import forkserver

    # no public API for this; ``_stop`` is there since Python 3.8 (its own tests use it)
    stop = getattr(forkserver._forkserver, "_stop", None)
    if stop is not None:
        stop()
    _started_with = None
