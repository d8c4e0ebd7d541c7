"""Seconds per training step of the default pipeline on this machine, by setting.

    .venv/bin/python -m benchmarks.train_step [--steps 6] [--rounds 2] [--compile]

One process, the default YAML's batches (12 crops of 256 px from four sources), the shipped
model. Settings are interleaved round by round and the best round of each is kept:
- ``eager, 2 threads``: what `geo2map train` runs on this CPU (bf16 autocast, channels_last);
- ``eager, 1 thread``;
- ``compiled, 2 threads`` (with ``--compile``): ``torch.compile`` of the generator; its
  compile time is reported apart;
- ``data only``: preparing one step's batches (crop, resample, augment, collate), which a
  DataLoader worker (``data.workers``) takes off the critical path.
Stop other work first (a training run: ``kill -STOP``): this measures ratios, on quiet cores.
"""

from __future__ import annotations

import time

import torch

from benchmarks.common import arguments, machine, report
from geo2map.catalog import PROJECT_ROOT
from geo2map.models.card import Architecture
from geo2map.models.registry import build_model
from geo2map.train.config import load_config
from geo2map.train.loop import Datasets, generator_losses, label_tables, model_kwargs


def main() -> None:
    parser = arguments(__doc__, rounds=True, model=False)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()
    cfg = load_config(PROJECT_ROOT / "pipelines" / "train-default.yaml")
    data = Datasets(cfg)
    for ds, _, _ in data.sources(cfg):  # decode every file once: a long run's steady state
        for i in range(len(ds)):
            ds[i]
    G = build_model(Architecture(name=cfg.model.name, kwargs=model_kwargs(cfg)))
    G = G.to(memory_format=torch.channels_last).train()
    opt = torch.optim.AdamW(G.parameters(), lr=1e-5)
    tables = label_tables(G, torch.device("cpu"))
    batches = [data.batches(cfg, s) for s in range(args.steps)]

    def step(forward: torch.nn.Module, b: dict[str, torch.Tensor]) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = forward(b["image"])
        loss = sum(generator_losses(cfg, b, out, tables).values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def timed(forward: torch.nn.Module, threads: int) -> float:
        torch.set_num_threads(threads)
        step(forward, batches[0][0])  # warm-up
        t = time.perf_counter()
        for bs in batches:
            step(forward, bs[0])
        return (time.perf_counter() - t) / len(batches)

    def data_only() -> float:
        torch.set_num_threads(1)
        t = time.perf_counter()
        for s in range(args.steps):
            data.batches(cfg, 1000 + s)
        return (time.perf_counter() - t) / args.steps

    settings = {"eager, 2 threads": lambda: timed(G, 2), "eager, 1 thread": lambda: timed(G, 1)}
    result: dict[str, object] = {"machine_start": machine(), "steps": args.steps}
    if args.compile:
        torch.set_num_threads(2)
        t = time.perf_counter()
        compiled = torch.compile(G)
        step(compiled, batches[0][0])
        result["compile_s"] = round(time.perf_counter() - t, 1)
        settings["compiled, 2 threads"] = lambda: timed(compiled, 2)
    settings["data only"] = data_only
    best: dict[str, float] = {}
    for r in range(args.rounds):
        names = list(settings) if r % 2 == 0 else list(reversed(settings))
        for name in names:
            s = settings[name]()
            best[name] = min(best.get(name, s), s)
            print(f"round {r}: {name}: {s:.3f} s/step", flush=True)
    result["best_s_per_step"] = {k: round(v, 3) for k, v in best.items()}
    base = best["eager, 2 threads"]
    result["ratio_to_eager_2_threads"] = {k: round(v / base, 3) for k, v in best.items()}
    report("train_step", result, args.json)


if __name__ == "__main__":
    main()
