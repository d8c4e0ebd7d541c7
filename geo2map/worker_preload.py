"""Imported once by the forkserver that ``--cluster local:N`` forks its workers from
(forkserver.py): everything a worker needs before its first batch, done once for all.

Never imported by geo2map itself: importing this module is the preload.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os

import numpy as np


def preload(model_json: str) -> None:
    import distributed.worker  # noqa: F401  (what the worker process runs)

    import geo2map.pipeline  # noqa: F401  (torch, rasterio, dask: what every task imports)

    if not model_json:
        return
    import torch

    from geo2map.translator import cached_translator

    model = json.loads(model_json)
    # one torch thread: no OpenMP pool in a process that forks (it would not survive the
    # fork); each worker sets its own thread count per batch
    torch.set_num_threads(1)
    translator = cached_translator(model["path"], model["device"], model["precision"])
    # one chip through the model, so the workers inherit its one-time set-up too: two forked
    # workers' first 8-chip batches then took 1.6 s instead of 2.1 s (against ~1.0 s later)
    size = model["chip_size"]
    translator.predict_chips([np.zeros((len(translator.card.input.bands), size, size), "f4")])
    # Hand the freed heap back to the OS. Otherwise each worker's first batch reuses it
    # page by page as copy-on-write copies of this process's pages: 0.7-0.9 s of system
    # time in each of two workers, against 0.1-0.2 s.
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL(None).malloc_trim(0)


try:
    from geo2map.forkserver import PRELOAD_MODEL_ENV

    preload(os.environ.get(PRELOAD_MODEL_ENV, ""))
except Exception as e:  # a worker that inherits nothing loads what it needs itself
    logging.getLogger(__name__).warning("geo2map worker preload failed: %s", e)
