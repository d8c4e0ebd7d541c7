"""Built int8 graphs kept on disk: a process gets its int8 model in ~0.2 s instead of ~5 s.

Building the int8 graph (``int8.quantize``) needs the float model, so it imports
segmentation-models-pytorch (timm -> torchvision -> torch._dynamo, ~2 s here) and then
FX-traces and converts it (~2-3 s). Every geo2map command paid that before its first chip,
and so did the forkserver that ``--cluster local:N`` workers fork from. The built graph is
now saved once as TorchScript, the format PyTorch's eager-mode quantization was made to
ship in: it loads without the model's Python classes and gives the same outputs bit for bit
(tests/test_int8.py). ``torch.save`` cannot pickle a converted FX graph.

An entry is named by a hash of everything its graph is built from: the bytes of the weights
and of the card (which holds the calibration), torch's version and the quantized engine.
Another model, a re-exported card or another torch gets an entry of its own, so nothing is
invalidated by hand. An entry is written under a temporary name and renamed, so concurrent
jobs never read half a file. The cache only saves time: a folder that cannot be written
costs the build, nothing else. Delete the folder to empty it.

Where: ``$GEO2MAP_CACHE_DIR``, else ``$XDG_CACHE_HOME/geo2map``, else ``~/.cache/geo2map``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import warnings
from pathlib import Path

import torch

from geo2map.models.card import ModelCard
from geo2map.models.int8 import ENGINE, QuantizedTranslator, quantize, require_engine
from geo2map.models.io import load_card, load_model, model_paths

FORMAT = "torchscript-1"  # bump when what an entry holds changes
log = logging.getLogger(__name__)


def cache_dir() -> Path:
    if os.environ.get("GEO2MAP_CACHE_DIR"):
        return Path(os.environ["GEO2MAP_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "geo2map"


def entry_path(model: str | Path) -> Path:
    """Where the int8 graph of the model files at ``model`` is kept (they must exist)."""
    digest = hashlib.sha256(f"{FORMAT} {torch.__version__} {ENGINE}".encode())
    for f in model_paths(model):
        with open(f, "rb") as fh:
            digest.update(hashlib.file_digest(fh, "sha256").digest())
    return cache_dir() / "int8" / f"{digest.hexdigest()[:32]}.pt"


def _load(entry: Path) -> QuantizedTranslator | None:
    if not entry.is_file():
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch 2.14 flags torch.jit as deprecated,
            # and quantized tensors: that notice is printed once per process, and from C++
            # when torch.jit.load makes the first one, so make one here, where it is silenced
            torch.quantize_per_tensor(torch.zeros(1), 1.0, 0, torch.quint8)
            script = torch.jit.load(str(entry), map_location="cpu")
        return QuantizedTranslator(script).eval()
    except (RuntimeError, OSError, ValueError) as e:  # a damaged entry: built again below
        log.warning("rebuilding the damaged int8 cache entry %s: %s", entry, str(e)[:80])
        return None


def _save(model: QuantizedTranslator, card: ModelCard, entry: Path) -> None:
    side = max(64, card.input.multiple)
    example = torch.zeros(1, len(card.input.bands), side, side)
    tmp = entry.with_name(f".{entry.name}.{os.getpid()}.tmp")
    try:
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")  # torch 2.14 flags torch.jit as deprecated
            script = torch.jit.trace(model.graph, (example,), check_trace=False)
            entry.parent.mkdir(parents=True, exist_ok=True)
            torch.jit.save(script, str(tmp))
        os.replace(tmp, entry)
    except (OSError, RuntimeError) as e:  # torch.jit.save reports OS errors as RuntimeError
        log.info("int8 graph not cached (%s): the next process builds it again", e)
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def int8_model(path: str | Path, card: ModelCard) -> QuantizedTranslator:
    """The model's int8 graph: from the cache, else built from the float model and cached.
    ``card`` must carry an int8 calibration (``pick_precision`` refuses int8 without one)."""
    assert card.int8 is not None
    require_engine(card.int8)  # also selects it: packed weights are loaded for this engine
    entry = entry_path(path)
    model = _load(entry)
    if model is None:
        model = quantize(load_model(path)[0], card.int8)
        _save(model, card, entry)
    return model


def checked_card(path: str | Path) -> ModelCard:
    """The card of a model whose weights are known to fit it: at once if these exact files
    were built into a cached int8 graph before, else by building the float model."""
    _, card = load_card(path)
    if entry_path(path).is_file():
        return card
    return load_model(path)[1]
