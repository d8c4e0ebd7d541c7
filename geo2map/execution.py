"""Where the graph runs: a local Dask scheduler, or a dask.distributed cluster.

A runner takes one group of output blocks at a time (``submit``) and hands back, at once,
the batch results that later groups still need (the carry); ``gather`` returns the group's
blocks. Locally ``submit`` computes right away and the carry is data in this process. On a
cluster ``submit`` returns futures: the carry stays on the workers, and the caller may
submit ``lookahead`` further groups before gathering, so workers do not idle while the
client writes.
"""

from __future__ import annotations

import ctypes
import logging
import os
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import dask

from geo2map.errors import Geo2MapError
from geo2map.forkserver import PreloadModel, start_worker_forkserver
from geo2map.gdal_settings import cap_gdal_cache

# torch threads per model call: one number for this process, or per worker address
TorchThreads = int | Mapping[str, int]


class Runner(Protocol):
    """Where a group of blocks is computed (engine.BlockComputation drives it)."""

    workers: int  # task threads in all
    lookahead: int  # groups that may be submitted before the oldest is gathered
    torch_threads: TorchThreads  # threads per model call
    dashboard: str | None

    def submit(self, results: list, keep: list, order: int = 0) -> tuple[Any, list]:
        """Start computing ``results`` (gathered later) and ``keep`` (returned at once as
        handles that later groups pass to :meth:`source`); ``order``: earlier first."""
        ...

    def gather(self, handle: Any) -> list:
        """The results of a :meth:`submit`, waiting for them."""
        ...

    def source(self, handle: Any) -> Any:
        """A kept handle as an input of a later group's tasks."""
        ...


class LocalRunner:
    """dask's local schedulers ``processes`` or ``sync`` (``threads`` runs in-process on
    dask.distributed, see ``open_runner``)."""

    dashboard: str | None = None
    lookahead = 0  # dask.compute blocks: nothing can be in flight behind it

    def __init__(self, scheduler: str, workers: int | None) -> None:
        self.kwargs: dict[str, Any] = {"scheduler": scheduler}
        if workers:
            self.kwargs["num_workers"] = workers
        self.workers = 1 if scheduler == "sync" else workers or available_cpus()
        self.torch_threads: TorchThreads = torch_threads_per_task(self.workers)

    def submit(self, results: list, keep: list, order: int = 0) -> tuple[list, list]:
        # ``order`` needs no priority here: dask.compute runs one group at a time
        done, kept = dask.compute(results, keep, **self.kwargs)
        return done, kept

    def gather(self, handle: list) -> list:
        return handle

    def source(self, handle: Any) -> Any:
        return dask.delayed(handle, pure=False)


class DistributedRunner:
    """A dask.distributed Client: joined by address or started as a LocalCluster."""

    # groups queued behind the one being gathered and written: with one, a thread idled ~1 s at
    # some strip boundaries (8 % of the compute phase at 8k); priorities keep the queued groups
    # from starting before the current one has no runnable task
    lookahead = 2

    def __init__(self, client: Any, dashboard: bool = True) -> None:
        self.client = client
        self.dashboard = client.dashboard_link if dashboard else None
        self.workers = max(1, sum(client.nthreads().values()))
        self.torch_threads: TorchThreads = torch_threads_by_worker(client)

    def submit(self, results: list, keep: list, order: int = 0) -> tuple[list, list]:
        # earlier groups first: a queued group only takes a thread the current one leaves idle,
        # so the current group's batches finish (and are freed) before the next one's start
        futures = self.client.compute([*results, *keep], priority=-order)
        return futures[: len(results)], futures[len(results) :]

    def gather(self, handle: list) -> list:
        return self.client.gather(handle)

    def source(self, handle: Any) -> Any:
        return handle  # a future: the data stays on the worker that has it


# glibc malloc settings for geo2map's processes: env variable (a user's setting wins) ->
# (mallopt parameter, value). One arena: glibc gives threads that contend for malloc arenas
# of their own (up to 8 per core) and freed chunks stay in them, so task threads' arrays
# piled up in several heaps (16k peak 2541 MB with 8 per core, 2098 MB with 2); a thread
# arena's heaps are also unmapped whenever they empty, so their pages fault in afresh.
# Thresholds: glibc maps allocations above 32 MB (a micro-batch's float activations) afresh
# and unmaps them on free, and trims the heap top above 128 KB-64 MB. With all three, an
# 8k run page-faulted 0.42-0.48 M times instead of 1.8-2.3 M, with 3.4-4.6 s of system CPU
# instead of 7.5-10.2 s, for ~50 MB more peak RSS. dask's
# nanny would start workers with MALLOC_TRIM_THRESHOLD_=65536, which pins the mmap
# threshold at 128 KB: worse still (a local:2 run was 1.44x slower).
MALLOC_SETTINGS: dict[str, tuple[int, int]] = {
    "MALLOC_ARENA_MAX": (-8, 1),  # M_ARENA_MAX
    "MALLOC_MMAP_THRESHOLD_": (-3, 64 << 20),  # M_MMAP_THRESHOLD
    "MALLOC_TRIM_THRESHOLD_": (-1, 128 << 20),  # M_TRIM_THRESHOLD
}

# the same settings for the worker processes of `--cluster local:N` (glibc reads them at
# start); pipelines/dask/geo2map-workers.yaml carries them for `dask worker`
NANNY_ENVIRON = {
    f"distributed.nanny.pre-spawn-environ.{name}": value
    for name, (_, value) in MALLOC_SETTINGS.items()
}


# dask's statistical profiler (for the dashboard's profile page) samples every task thread's
# stack every 10 ms, under the GIL: 4.5-6 CPU-s per 8k scene on a local:2 cluster here,
# beside ~50 of work. Off on the schedulers geo2map starts;
# a cluster joined by address keeps its own settings.
QUIET_WORKERS = {"distributed.worker.profile.enabled": False}


@contextmanager
def quiet_logger(name: str) -> Iterator[None]:
    """Silence a logger for the job: an in-process worker logs a failed task ("Compute
    Failed", with its traceback) that this process then raises and reports itself."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


@contextmanager
def job_settings() -> Iterator[None]:
    """geo2map's process-wide settings for the length of one job, put back afterwards:
    GDAL's block-cache cap (gdal_settings.py) and torch's thread count (tasks set it per
    model call, execution.threads_for_this_task). A notebook that calls ``translate`` keeps
    its own settings; the CLI also tunes malloc (:func:`tune_malloc`), for good."""
    import torch
    from rasterio.env import get_gdal_config, set_gdal_config

    threads = torch.get_num_threads()
    cache = get_gdal_config("GDAL_CACHEMAX")
    cap_gdal_cache()
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        if cache is not None:
            set_gdal_config("GDAL_CACHEMAX", cache)


def tune_malloc() -> list[str]:
    """Apply :data:`MALLOC_SETTINGS` to this process, except those whose environment
    variable the process started with. Returns the names applied (none off glibc)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return []
    users = startup_environment()
    return [
        name
        for name, (param, value) in MALLOC_SETTINGS.items()
        if name not in users and mallopt(param, value) == 1
    ]


def startup_environment() -> set[str]:
    """Names in this process's environment as it started, which is what glibc read. Not
    os.environ: dask's nanny adds its workers' settings to it when it starts them."""
    try:
        raw = Path("/proc/self/environ").read_bytes()
    except OSError:  # not Linux
        return set(os.environ)
    return {item.split(b"=", 1)[0].decode(errors="replace") for item in raw.split(b"\0") if item}


def available_cpus() -> int:
    """Cores this process may run on (its CPU affinity, e.g. a container's cpuset)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def torch_threads_per_task(workers: int) -> int:
    """Threads each model call may use so that concurrent tasks do not oversubscribe cores."""
    return max(1, available_cpus() // max(1, workers))


def share_host_cores(
    workers: Mapping[str, Mapping[str, Any]], cpus: Mapping[str, int]
) -> dict[str, int]:
    """Torch threads per task for each worker: its host's cores shared by every task thread
    of every worker on that host (``workers``: address -> scheduler info with ``host`` and
    ``nthreads``; ``cpus``: address -> cores the worker process may use)."""
    threads_on_host = Counter()
    for w in workers.values():
        threads_on_host[w["host"]] += w["nthreads"]
    return {
        address: max(1, cpus[address] // threads_on_host[w["host"]])
        for address, w in workers.items()
        if address in cpus
    }


def torch_threads_by_worker(client: Any) -> dict[str, int]:
    """Asked of the workers, not computed from this machine: a laptop driving a cluster of
    big machines must not give each task the laptop's share of cores."""
    # a worker that fails to answer is left out: it falls back to its own share when it runs
    cpus = client.run(available_cpus, on_error="ignore")
    return share_host_cores(client.scheduler_info()["workers"], cpus)


def threads_for_this_task(setting: TorchThreads | None) -> int | None:
    """The torch thread count for a model call running here. A worker missing from the
    mapping (it joined after the job started) shares its own cores among its own threads."""
    if not isinstance(setting, Mapping):
        return setting
    from distributed import get_worker

    try:
        worker = get_worker()
    except ValueError:  # not on a dask worker
        return None
    return setting.get(worker.address) or torch_threads_per_task(worker.state.nthreads)


def local_worker_environment() -> dict[str, str]:
    """The environment dask's nanny sets for `--cluster local:N` workers before it starts
    them (:data:`NANNY_ENVIRON` over dask's defaults); a variable this process has wins."""
    # dask.distributed adds its defaults (OMP_NUM_THREADS=1 ...) to dask.config when it is
    # first imported. Read before that, the environment lacked them, and the forkserver
    # started before planning was stopped and started again by open_runner: ~3 s more.
    import distributed  # noqa: F401

    with dask.config.set(NANNY_ENVIRON):
        # read inside: leaving the ``with`` puts dask's defaults back into this very dict
        pre_spawn = dask.config.get("distributed.nanny.pre-spawn-environ")
        return {k: os.environ.get(k, str(v)) for k, v in pre_spawn.items() if v is not None}


def local_cluster_size(cluster: str) -> int:
    """N of `--cluster local:N`."""
    kind, _, n = cluster.partition(":")
    if kind != "local" or not n.isdigit() or int(n) < 1:
        raise Geo2MapError(f"--cluster {cluster!r}: use local:N, e.g. local:2")
    return int(n)


def prepare_local_cluster(cluster: str | None, preload_model: PreloadModel | None) -> None:
    """For `--cluster local:N`: check N, and start what its workers fork from now, so that
    it imports while this process plans (forkserver.py). No cluster: nothing to do."""
    if cluster is not None:
        local_cluster_size(cluster)
        start_worker_forkserver(local_worker_environment(), preload_model)


@contextmanager
def open_runner(
    scheduler: str,
    workers: int | None,
    cluster: str | None,
    preload_model: PreloadModel | None = None,
) -> Iterator[Any]:
    """``threads`` (default): a dask.distributed scheduler inside this process, so blocks
    stream through futures without a barrier at each group (dask's local threaded
    scheduler computes one group at a time and leaves a core idle at its end);
    ``processes`` / ``sync``: dask's local schedulers; ``cluster`` / an address:
    dask.distributed across processes or machines. ``preload_model`` (CPU only) is built
    once for all the workers of a ``local:N`` cluster."""
    if cluster is None and "://" not in scheduler:
        if scheduler not in ("threads", "processes", "sync"):
            raise Geo2MapError(
                f"--scheduler {scheduler!r}: use threads, processes, sync or a cluster address tcp://HOST:PORT"
            )
        if scheduler != "threads":
            yield LocalRunner(scheduler, workers)
            return
    from dask.distributed import Client, LocalCluster

    if cluster is None and scheduler == "threads":
        # in-process: no pickling, no extra processes, ~0.05 s to start; no memory limit
        # (the distributed default would spill or pause the worker at a share of RAM)
        with (
            dask.config.set(QUIET_WORKERS),
            quiet_logger("distributed.worker"),
            Client(
                processes=False,
                n_workers=1,
                threads_per_worker=workers or available_cpus(),
                dashboard_address=None,
                # the scheduler's health/metrics HTTP server still starts: on a free port,
                # not 8787, which warned whenever a notebook's cluster held it
                scheduler_kwargs={"dashboard_address": ":0"},
                memory_limit=0,
            ) as client,
        ):
            yield DistributedRunner(client, dashboard=False)
        return
    if cluster is not None:
        n = local_cluster_size(cluster)
        config: dict[str, Any] = {**NANNY_ENVIRON, **QUIET_WORKERS}
        if start_worker_forkserver(local_worker_environment(), preload_model):
            config["distributed.worker.multiprocessing-method"] = "forkserver"
        with (
            dask.config.set(config),
            LocalCluster(
                n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0"
            ) as lc,
            Client(lc) as client,
        ):
            yield DistributedRunner(client)
        return
    try:
        client = Client(scheduler, timeout="20s")
    except OSError as e:
        raise Geo2MapError(f"cannot reach the Dask scheduler at {scheduler}: {e}") from None
    except (ValueError, TypeError) as e:  # dask's parse of the address: e.g. a port not a number
        raise Geo2MapError(
            f"--scheduler {scheduler!r} is not a Dask scheduler address ({e}); "
            "write it as tcp://HOST:PORT"
        ) from None
    with client:
        yield DistributedRunner(client)
