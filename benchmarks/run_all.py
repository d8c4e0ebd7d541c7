"""Run every benchmark in turn (each its own process), keep logs + JSON, print the table.

    .venv/bin/python -m benchmarks.run_all [--out bench-results] [--only throughput naive ...]
    .venv/bin/python -m benchmarks.run_all --out bench-results --table-only

About 55 minutes on this 2-core machine (the 16k x 16k memory run alone ~16).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import PROJECT_ROOT

BENCHMARKS = ["throughput", "naive", "vs_geoai", "cluster", "threads", "profile", "memory"]
EXTRA = {"profile": ["--cprofile", "{out}/profile.prof"]}


# per benchmark: the row it fills in docs/benchmarks.md, its goal, and its result as text
ROWS = {
    "throughput": ("1. end to end / bare forward", ">= 0.85",
                   lambda r: f"{r['ratio_end_to_end_over_bare']:.2f}"),
    "naive": ("2. end to end / naive loop", ">= 3x",
              lambda r: f"{r['ratio_geo2map_over_naive']:.2f}x"),
    "vs_geoai": ("3. end to end / geoai predict_geotiff", ">= 3x",
                 lambda r: f"{r['ratio_geo2map_over_geoai']:.2f}x"),
    "memory": ("4. peak RSS at 16k^2 (GB); ratio to 4k^2", "<= 2.5; <= 1.2",
               lambda r: f"{r['peak_largest_gb']:.2f}; {r['ratio_largest_over_smallest']:.2f}"),
    "cluster": ("5. cluster local:2 overhead", "<= 15 %", lambda r: f"{100 * r['overhead']:+.1f} %"),
}  # fmt: skip


def table(out: Path) -> str:
    lines = ["| target | goal | measured |", "|---|---|---|"]
    for name, (row, goal, measured) in ROWS.items():
        if (result := out / f"{name}.json").exists():
            lines.append(f"| {row} | {goal} | {measured(json.loads(result.read_text()))} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench-results")
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--table-only", action="store_true")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if not args.table_only:
        for name in args.only or BENCHMARKS:
            extra = [a.format(out=out) for a in EXTRA.get(name, [])]
            cmd = [sys.executable, "-m", f"benchmarks.{name}", "--json", str(out / f"{name}.json"),
                   *extra]  # fmt: skip
            start = time.perf_counter()
            with open(out / f"{name}.log", "w") as log:
                rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT)
            took = time.perf_counter() - start
            print(f"{name:<12} exit {rc.returncode}  {took / 60:5.1f} min", flush=True)
    print(table(out))


if __name__ == "__main__":
    main()
