"""Shared helpers of the benchmark scripts: scenes, a frozen model copy, machine notes.

Every benchmark measures a *ratio inside one run* (the machine is shared and noisy), on a
large real scene: a VRT repeating the real 1024 x 1024 0.6 m aerial COG (``aerial-0.6m``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import rasterio
import rasterio.shutil

from geo2map.catalog import PROJECT_ROOT, resolve
from geo2map.execution import tune_malloc
from geo2map.models.io import DEFAULT_MODEL, model_paths
from geo2map.mosaic import repeated_vrt

TRAINED_CHECKPOINT = PROJECT_ROOT / "runs" / "default" / "best"


def arguments(
    doc: str, repeats: int | None = None, rounds: bool = False, model: bool = True
) -> argparse.ArgumentParser:
    """The options every benchmark script shares (scene size, rounds, model, --json)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    if repeats is not None:
        parser.add_argument(
            "--repeats", type=int, default=repeats, help="scene side = 1024 * repeats"
        )
    if rounds:
        parser.add_argument("--rounds", type=int, default=2)
    if model:
        parser.add_argument(
            "--model", default=None, help="default: shipped model, else runs/default/best"
        )
    parser.add_argument("--json", default=None, help="also write the result here")
    return parser


def default_model() -> tuple[Path, str]:
    """The shipped default model if present, else the training run's best checkpoint."""
    if model_paths(DEFAULT_MODEL)[1].is_file():
        return DEFAULT_MODEL, "shipped default model (geo2map/models/weights/default)"
    return TRAINED_CHECKPOINT, "trained checkpoint runs/default/best (no shipped default yet)"


def frozen_model(src: str | Path, folder: Path) -> Path:
    """Copy a model (weights + card) into ``folder``: a training run may rewrite the original
    while we measure, and every run of a benchmark must use the same weights."""
    weights, card = model_paths(src)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(weights, folder / "model.safetensors")
    shutil.copyfile(card, folder / "model.json")
    return folder / "model"


def scene(repeats: int, folder: Path, geotiff: bool = False) -> Path:
    """The real aerial COG repeated ``repeats`` x ``repeats`` times (``1024 * repeats`` px a
    side): a VRT, or with ``geotiff`` a tiled DEFLATE GeoTIFF of its pixels (for tools that
    want a plain file; not JPEG/YCbCr like the source, because geoai copies the input's
    profile to its output and GDAL refuses PHOTOMETRIC=YCBCR without JPEG compression)."""
    vrt = repeated_vrt(resolve("aerial-0.6m"), repeats, folder / f"aerial-x{repeats}.vrt")
    if not geotiff:
        return vrt
    tif = folder / f"aerial-x{repeats}.tif"
    rasterio.shutil.copy(
        vrt, tif, driver="GTiff", TILED="YES", BLOCKXSIZE=512, BLOCKYSIZE=512,
        COMPRESS="DEFLATE", BIGTIFF="IF_SAFER",
    )  # fmt: skip
    return tif


def megapixels(repeats: int) -> float:
    return (1024 * repeats) ** 2 / 1e6


@dataclass
class BenchmarkRun:
    """One run of a benchmark script: its arguments, the machine notes at its start, and a
    temporary folder holding a frozen copy of the model and the scenes."""

    name: str
    args: argparse.Namespace
    folder: Path
    model: Path | None  # None for a benchmark that builds its own
    model_note: str
    machine_start: dict

    def scene(self, repeats: int | None = None, geotiff: bool = False) -> Path:
        """The benchmark scene (``--repeats`` unless given), announced with its size."""
        n = repeats or self.args.repeats
        print(f"scene {1024 * n} px square ({megapixels(n):.1f} MP), model {self.model_note}",
              flush=True)  # fmt: skip
        return scene(n, self.folder, geotiff)

    def report(self, result: dict) -> None:
        report(self.name, {**result, "machine_start": self.machine_start}, self.args.json)


@contextlib.contextmanager
def benchmark_run(
    name: str, args: argparse.Namespace, with_model: bool = True
) -> Iterator[BenchmarkRun]:
    """Set up a benchmark's parent process as the ``geo2map`` command sets up its own (malloc
    tuned, so the numbers are what users get), note the machine, freeze the model."""
    tune_malloc()
    start = machine()
    source, note = (args.model, "--model") if getattr(args, "model", None) else default_model()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = frozen_model(source, folder / "model") if with_model else None
        yield BenchmarkRun(name, args, folder, model, note if with_model else "", start)


def end_to_end(scene_path: Path, out: Path, options: object) -> None:
    """``geo2map.translate``, file to COGs, loading the model afresh as a new run does (and
    so setting its own torch thread count)."""
    import geo2map
    from geo2map.translator import cached_translator

    cached_translator.cache_clear()
    geo2map.translate(scene_path, out, options)


def read_plan_chips(plan: object, chips: list | None = None) -> list:
    """The model-grid inputs of ``chips`` of a scene's plan (default: all of them), read as
    the batch tasks read them: the bare forward's inputs."""
    from geo2map.raster import read_model_window

    size = plan.chips.size
    with rasterio.open(plan.scene.path) as ds:
        return [
            read_model_window(ds, plan.grid, c.row, c.col, size, size)[0]
            for c in (plan.chips.chips if chips is None else chips)
        ]


def peak_rss_by_config(results: dict[str, list[dict]]) -> dict[str, float]:
    """The highest peak RSS each configuration's child processes reported."""
    return {k: max(x["ru_maxrss_mb"] for x in v) for k, v in results.items()}


def busy_processes(min_cpu: float = 20.0, interval: float = 1.0) -> list[str]:
    """Other processes using CPU right now (training jobs, installs, tests): the contention
    to note beside a result. Sampled over ``interval`` seconds."""
    import psutil

    me = {os.getpid(), *(c.pid for c in psutil.Process().children(recursive=True))}
    procs = [p for p in psutil.process_iter(["pid", "cmdline"]) if p.pid not in me]
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.cpu_percent(None)
    time.sleep(interval)
    busy = []
    for p in procs:
        try:
            pcpu = p.cpu_percent(None)
        except psutil.Error:
            continue
        if pcpu >= min_cpu:
            args = " ".join(p.info["cmdline"] or [])
            busy.append(f"pid {p.pid} {pcpu:.0f}% cpu: {' '.join(args.split())[:110]}")
    return busy


def training_running() -> bool:
    pid_file = PROJECT_ROOT / "runs" / "default.pid"
    try:
        pid = int(pid_file.read_text().split()[0])
        os.kill(pid, 0)
        return True
    except (OSError, ValueError, IndexError):
        return False


def cpu_clock() -> dict[str, float]:
    """Seconds of CPU time since boot, all cores: total and stolen by the hypervisor (a VM's
    host running other guests; time our threads were runnable but not run)."""
    import psutil

    t = psutil.cpu_times()._asdict()
    # Linux counts guest time inside user and nice already: leave it out of the total
    total = sum(v for k, v in t.items() if k not in ("guest", "guest_nice"))
    return {"total_s": total, "steal_s": t.get("steal", 0.0)}


def steal_share(start: dict, end: dict) -> float | None:
    """Share of the CPU time between two :func:`machine` notes that the host stole."""
    a, b = start.get("cpu_clock"), end.get("cpu_clock")
    if not a or not b or b["total_s"] <= a["total_s"]:
        return None
    return (b["steal_s"] - a["steal_s"]) / (b["total_s"] - a["total_s"])


def machine() -> dict:
    import torch

    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
         if ln.startswith("model name")),
        platform.processor(),
    )  # fmt: skip
    mem_kb = next(
        int(ln.split()[1]) for ln in Path("/proc/meminfo").read_text().splitlines()
        if ln.startswith("MemTotal")
    )  # fmt: skip
    return {
        "date_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gb": round(mem_kb / 1024**2, 1),
        "torch": torch.__version__,
        "loadavg_1m": os.getloadavg()[0],
        "training_running": training_running(),
        "busy_processes": busy_processes(),
        "cpu_clock": cpu_clock(),
    }


def report(name: str, result: dict, out: str | None) -> None:
    """Print a benchmark's result (and machine notes) as JSON, and save it if asked."""
    result = {"benchmark": name, **result, "machine_end": machine()}
    stolen = steal_share(result.get("machine_start", {}), result["machine_end"])
    if stolen is not None:
        # ratios are interleaved and hold; absolute MP/s of a run with steal are pessimistic
        result["host_steal_share"] = round(stolen, 4)
        print(f"host stole {stolen:.1%} of the CPU time during this run", flush=True)
    text = json.dumps(result, indent=2, default=str)
    print(text)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n")


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def alternate(
    runs: dict[str, Callable[[], object]],
    rounds: int,
    before_each: Callable[[], object] | None = None,
) -> dict[str, list[float]]:
    """Time each callable ``rounds`` times, interleaved (a, b, a, b ...), so that a change
    in background load hits every contender alike; ``before_each`` runs untimed before
    every run. Returns seconds per run."""
    times: dict[str, list[float]] = {k: [] for k in runs}
    for r in range(rounds):
        order = list(runs) if r % 2 == 0 else list(reversed(runs))
        for k in order:
            if before_each is not None:
                before_each()
            times[k].append(timed(runs[k]))
            print(f"  round {r + 1}: {k:<28} {times[k][-1]:8.2f} s", flush=True)
    return times


def paired_ratios(times: dict[str, list[float]], num: list[str], den: str) -> list[float]:
    """Per round: the best of the ``num`` contenders over ``den``, all timed in that round.
    The host's speed drifts over minutes here; runs of one round are seconds apart, so their
    ratio moves less than best-of-all over best-of-all, which pairs two lucky spells."""
    return [min(times[k][r] for k in num) / times[den][r] for r in range(len(times[den]))]


def run_child(cmd: list[str], env: dict | None = None) -> dict:
    """Run a measuring child process and return the JSON dict it prints last, plus the peak
    resident memory of its whole process tree sampled every 50 ms (``sampled_peak_rss_mb``).
    The child itself reports its own ``ru_maxrss`` (exact peak, fresh process)."""
    import psutil

    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **(env or {})}, cwd=PROJECT_ROOT,
    )  # fmt: skip
    peak, peak_at, start = 0, 0.0, time.perf_counter()
    trace: list[tuple[float, float]] = []  # (s, MB) once a second: how memory grows
    try:
        root = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                rss = sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
                now = time.perf_counter() - start
                if rss > peak:
                    peak, peak_at = rss, now
                if not trace or now - trace[-1][0] >= 1.0:
                    trace.append((round(now, 1), round(rss / 2**20)))
            except psutil.Error:
                pass
            time.sleep(0.05)
    except psutil.Error:
        pass
    stdout, stderr = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{stderr[-3000:]}")
    result = json.loads(stdout.strip().splitlines()[-1])
    result["sampled_peak_rss_mb"] = peak / 2**20
    result["sampled_peak_at_s"] = peak_at  # since the child started (imports included)
    result["child_wall_s"] = time.perf_counter() - start
    result["rss_trace_s_mb"] = trace
    return result


def child_result(**values) -> None:
    """The last line a measuring child prints: its values plus its own peak RSS."""
    import resource

    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({**values, "ru_maxrss_mb": peak_kb / 1024}), flush=True)
