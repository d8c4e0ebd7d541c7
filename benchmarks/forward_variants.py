"""Where the model-side speed comes from: seconds per chip of the bare forward by precision,
memory format, batch size and torch threads, plus the peak RSS each adds (fresh process each).

    .venv/bin/python -m benchmarks.forward_variants [--chips 16] [--model PATH]

Real chips (512 px, cut from the aerial COG) go through the model with ``inference_mode``;
each variant runs in its own subprocess (so peak RSS and torch's thread count are its
own), after one untimed warm-up batch. Variants are interleaved over two rounds; best kept.
"""

from __future__ import annotations

import sys
import time

from benchmarks.common import (
    arguments,
    benchmark_run,
    child_result,
    peak_rss_by_config,
    read_plan_chips,
    run_child,
)

# name: (precision, channels_last, batch, torch threads, concurrent streams)
VARIANTS = {
    "fp32 NCHW  b1 t2 (naive)": ("fp32", False, 1, 2, 1),
    "fp32 NHWC  b1 t2": ("fp32", True, 1, 2, 1),
    "bf16 NHWC  b1 t2": ("bf16", True, 1, 2, 1),
    "bf16 NHWC  b8 t2": ("bf16", True, 8, 2, 1),
    "bf16 NHWC  b8 t1 x2 streams (geo2map)": ("bf16", True, 8, 1, 2),
    "bf16 NHWC  b1 t1 x2 streams": ("bf16", True, 1, 1, 2),
    "bf16 NHWC  b2 t1 x2 streams": ("bf16", True, 2, 1, 2),
}


def child(scene_path: str, model: str, variant: str, n_chips: int) -> None:
    import threading

    import numpy as np
    import torch

    from geo2map.models.io import load_model
    from geo2map.options import TranslateOptions
    from geo2map.plan import plan_scene

    precision, channels_last, batch, threads, streams = VARIANTS[variant]
    torch.set_num_threads(threads)
    net, card = load_model(model)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net = net.to(memory_format=fmt).eval()
    plan = plan_scene(scene_path, TranslateOptions(model=model), card)
    chips = read_plan_chips(plan, plan.chips.chips[:n_chips])
    mean = np.asarray(card.input.mean, dtype=np.float32)[None, :, None, None]
    std = np.asarray(card.input.std, dtype=np.float32)[None, :, None, None]
    batches = [
        torch.from_numpy((np.stack(chips[i : i + batch]) - mean) / std).contiguous(
            memory_format=fmt
        )
        for i in range(0, len(chips), batch)
    ]
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32

    def forward(x):
        with (
            torch.inference_mode(),
            torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32),
        ):
            out = net(x)
        return out["render"].float().numpy(), torch.softmax(out["mask_logits"].float(), 1)

    forward(batches[0])  # warm-up (oneDNN primitive creation)

    def work(k: int) -> None:
        for x in batches[k::streams]:
            forward(x)

    start = time.perf_counter()
    workers = [threading.Thread(target=work, args=(k,)) for k in range(streams)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    seconds = time.perf_counter() - start
    child_result(seconds=seconds, seconds_per_chip=seconds / len(chips))


def main() -> None:
    parser = arguments(__doc__, repeats=None, rounds=True, model=True)
    parser.add_argument("--chips", type=int, default=16)
    parser.add_argument("--child", nargs=4)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.child[2], int(args.child[3]))
        return
    results: dict[str, list[dict]] = {k: [] for k in VARIANTS}
    with benchmark_run("forward_variants", args) as run:
        scene_path = str(run.scene(repeats=4))
        for r in range(args.rounds):
            for name in VARIANTS if r % 2 == 0 else reversed(VARIANTS):
                cmd = [sys.executable, "-m", "benchmarks.forward_variants", "--child",
                       scene_path, str(run.model), name, str(args.chips)]  # fmt: skip
                res = run_child(cmd)
                results[name].append(res)
                print(f"  round {r + 1}: {name:<40} {res['seconds_per_chip']:6.3f} s/chip, "
                      f"peak RSS {res['ru_maxrss_mb']:5.0f} MB", flush=True)  # fmt: skip
        best = {k: min(x["seconds_per_chip"] for x in v) for k, v in results.items()}
        naive = best["fp32 NCHW  b1 t2 (naive)"]
        peaks = peak_rss_by_config(results)
        for k, s in best.items():
            print(f"{k:<40}: {s:6.3f} s/chip, {naive / s:4.2f}x naive, peak RSS {peaks[k]:5.0f} MB")
        run.report(
            {
                "chips": args.chips, "model": run.model_note, "runs": results,
                "seconds_per_chip": best,
                "speed_over_naive": {k: naive / s for k, s in best.items()},
                "peak_rss_mb": peaks,
            }
        )  # fmt: skip


if __name__ == "__main__":
    main()
