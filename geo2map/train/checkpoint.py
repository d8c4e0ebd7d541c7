"""Resumable checkpoints without pickle: tensors in safetensors, everything else in JSON.

A checkpoint is ``<dir>/last.safetensors`` + ``<dir>/last.json``. Modules are stored as
``<name>/<param>``, optimizer state as ``optim:<name>/<index>/<key>``. Both files are written
under temporary names and renamed, the JSON last: a kill mid-write leaves the old checkpoint.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from geo2map.errors import Geo2MapError


def _optim_tensors(name: str, opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"optim:{name}/{idx}/{k}"] = v.detach().contiguous().cpu()
            else:
                scalars.setdefault(str(idx), {})[k] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def save_checkpoint(
    folder: Path,
    modules: dict[str, torch.nn.Module],
    optims: dict[str, torch.optim.Optimizer],
    extra_tensors: dict[str, torch.Tensor],
    meta: dict[str, Any],
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    for name, m in modules.items():
        for k, v in m.state_dict().items():
            tensors[f"{name}/{k}"] = v.detach().contiguous().cpu()
    optim_meta = {}
    for name, opt in optims.items():
        t, m = _optim_tensors(name, opt)
        tensors.update(t)
        optim_meta[name] = m
    for k, v in extra_tensors.items():
        tensors[f"extra/{k}"] = v.detach().contiguous().cpu()
    weights, card = folder / "last.safetensors", folder / "last.json"
    save_file(tensors, str(weights) + ".partial")
    os.replace(str(weights) + ".partial", weights)
    card_tmp = card.with_suffix(".json.partial")
    card_tmp.write_text(json.dumps({**meta, "optim": optim_meta}, indent=1))
    os.replace(card_tmp, card)
    return weights


def read_meta(folder: Path) -> dict[str, Any] | None:
    f = folder / "last.json"
    return json.loads(f.read_text()) if f.is_file() else None


def load_checkpoint(
    folder: Path,
    modules: dict[str, torch.nn.Module],
    optims: dict[str, torch.optim.Optimizer],
    architectures: dict[str, dict[str, Any]],
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Restore modules/optimizers in place; refuse a checkpoint of another architecture."""
    meta = read_meta(folder)
    if meta is None:
        raise Geo2MapError(f"no checkpoint in {folder}")
    saved = meta.get("architectures", {})
    for name, arch in architectures.items():
        if saved.get(name) != arch:
            raise Geo2MapError(
                f"checkpoint {folder / 'last.json'} holds {name} architecture "
                f"{_describe(saved.get(name))}, but the config asks for {_describe(arch)}: "
                f"refusing to resume (use another out_dir)"
            )
    tensors = load_file(str(folder / "last.safetensors"))
    for name, m in modules.items():
        prefix = f"{name}/"
        m.load_state_dict({k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)})
    for name, opt in optims.items():
        om = meta["optim"][name]
        state: dict[int, dict[str, Any]] = {}
        prefix = f"optim:{name}/"
        for k, v in tensors.items():
            if k.startswith(prefix):
                idx, key = k[len(prefix) :].split("/", 1)
                state.setdefault(int(idx), {})[key] = v
        for idx, sc in om["scalars"].items():
            state.setdefault(int(idx), {}).update(sc)
        opt.load_state_dict({"state": state, "param_groups": om["param_groups"]})
    extra = {k[len("extra/") :]: v for k, v in tensors.items() if k.startswith("extra/")}
    return meta, extra


def _describe(arch: dict[str, Any] | None) -> str:
    if not arch:
        return "(none)"
    return f"{arch.get('name')!r} {json.dumps(arch.get('kwargs', {}), sort_keys=True)}"
