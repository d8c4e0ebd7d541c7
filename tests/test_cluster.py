"""A real Dask cluster on 127.0.0.1 (scheduler + 2 worker processes), kills, and resume."""

from __future__ import annotations

import os
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml
from dask.distributed import Client

import geo2map
from geo2map.execution import DistributedRunner, share_host_cores, threads_for_this_task
from geo2map.mosaic import repeated_vrt

BIN = Path(sys.executable).parent
OPTS = dict(chip_size=128, overlap=32, batch_size=4, block_size=512)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.1)
    raise TimeoutError(f"waited {timeout} s for {what}")


@contextmanager
def dask_cluster(*workers: tuple[str, list[str], dict[str, str] | None]):
    """`dask scheduler` and one single-threaded `dask worker` per (name, extra arguments,
    environment) on 127.0.0.1; yields (address, worker processes) once all have joined, and
    always tears them down."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs = [subprocess.Popen([BIN / "dask", "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--dashboard-address", ":0"], **quiet)]  # fmt: skip
    try:
        for name, args, env in workers:
            procs.append(subprocess.Popen([BIN / "dask", "worker", address, "--nthreads", "1", *args,
                                           "--name", name], env=env, **quiet))  # fmt: skip
        with Client(address, timeout="30s") as client:
            client.wait_for_workers(len(workers), timeout=60)
        yield address, procs[1:]
    finally:
        for p in reversed(procs):
            p.kill()
        for p in procs:
            p.wait(timeout=30)


@pytest.fixture()
def cluster():
    """Two workers without a nanny, so a killed worker stays dead."""
    with dask_cluster(*[(f"w{i}", ["--no-nanny"], None) for i in range(2)]) as running:
        yield running


def arrays(out: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    with (
        rasterio.open(out / f"{name}_render.tif") as r,
        rasterio.open(out / f"{name}_mask.tif") as m,
    ):
        return r.read(), m.read()


def assert_same(a: Path, b: Path, name: str) -> None:
    for x, y in zip(arrays(a, name), arrays(b, name), strict=True):
        assert np.array_equal(x, y)


def test_cluster_run_equals_local_run(cluster, scenes, models, tmp_path):
    address, _ = cluster
    scene = scenes / "dutch-aerial-25cm-epsg28992.tif"
    geo2map.translate(scene, tmp_path / "local", model=models(0.6), **OPTS)
    geo2map.translate(scene, tmp_path / "cluster", model=models(0.6), scheduler=address, **OPTS)
    assert_same(tmp_path / "local", tmp_path / "cluster", scene.stem)


def test_each_worker_gives_model_calls_its_hosts_share_of_cores(cluster):
    """Asked of the workers, not of the client: here two single-thread workers share the
    cores of this one host."""
    address, _ = cluster
    with Client(address, timeout="20s") as client:
        runner = DistributedRunner(client, dashboard=False)
        workers = list(client.scheduler_info()["workers"])
        got = {
            w: client.submit(
                threads_for_this_task, runner.torch_threads, workers=[w], pure=False
            ).result()
            for w in workers
        }
    assert got == {w: max(1, len(os.sched_getaffinity(0)) // len(workers)) for w in workers}


def test_torch_threads_share_each_hosts_cores_among_its_task_threads():
    workers = {
        "tcp://a:1": {"host": "a", "nthreads": 2},
        "tcp://a:2": {"host": "a", "nthreads": 2},
        "tcp://b:1": {"host": "b", "nthreads": 2},
        "tcp://c:1": {"host": "c", "nthreads": 8},
    }
    cpus = {"tcp://a:1": 16, "tcp://a:2": 16, "tcp://b:1": 8, "tcp://c:1": 4}
    assert share_host_cores(workers, cpus) == {
        "tcp://a:1": 4, "tcp://a:2": 4, "tcp://b:1": 4, "tcp://c:1": 1,
    }  # fmt: skip


def test_a_killed_worker_does_not_change_the_result(cluster, scenes, models, tmp_path):
    address, workers = cluster
    scene = repeated_vrt(scenes / "aerial-0.6m-epsg3857.tif", 2, tmp_path / "big.vrt")
    parts = tmp_path / "cluster" / ".big.parts"
    errors: list[BaseException] = []

    def job() -> None:
        try:
            geo2map.translate(
                scene, tmp_path / "cluster", model=models(0.6), scheduler=address, **OPTS
            )
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    thread = threading.Thread(target=job)
    thread.start()
    wait_for(lambda: any(parts.glob("*_*.npy")), 120, "a first finished block")
    workers[0].send_signal(signal.SIGKILL)
    thread.join(timeout=300)
    assert not thread.is_alive() and not errors, errors
    geo2map.translate(scene, tmp_path / "local", model=models(0.6), **OPTS)
    assert_same(tmp_path / "local", tmp_path / "cluster", "big")


def test_local_cluster_option(scenes, models, tmp_path):
    scene = scenes / "neon-osbs-10cm-epsg32617.tif"
    opts = dict(model=models(0.6), chip_size=64, overlap=16)
    geo2map.translate(scene, tmp_path / "local", **opts)
    geo2map.translate(scene, tmp_path / "lc", cluster="local:2", **opts)
    assert_same(tmp_path / "local", tmp_path / "lc", scene.stem)


def test_killed_job_resumes_to_the_same_outputs(scenes, models, tmp_path):
    big = repeated_vrt(scenes / "aerial-0.6m-epsg3857.tif", 2, tmp_path / "big.vrt")
    job = {"kind": "translate", "inputs": [str(scenes / "neon-osbs-10cm-epsg32617.tif"), str(big)],
           "mosaic": True, "index": True, "options": {"model": models(0.6), **OPTS, "scheduler": "sync"}}  # fmt: skip
    for name in ("killed", "whole"):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump({**job, "out": str(tmp_path / name)}))
    cmd = [str(BIN / "geo2map"), "run", str(tmp_path / "killed.yaml")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(
            lambda: any((tmp_path / "killed" / ".big.parts").glob("*_*.npy")),
            300,  # slow only when the machine is shared (a training run)
            "a finished block",
        )
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert not (tmp_path / "killed" / "big_render.tif").exists()
    left = [p.name for p in (tmp_path / "killed").glob(".big*")]
    assert any(".blocks-" in n for n in left), left  # the killed writer's temporaries
    resumed = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    hidden = [p.name for p in (tmp_path / "killed").glob(".*")]
    assert hidden == [], f"temporaries, parts or locks left after the resume: {hidden}"
    whole = subprocess.run([str(BIN / "geo2map"), "run", str(tmp_path / "whole.yaml")], capture_output=True,
                           text=True, timeout=600)  # fmt: skip
    assert whole.returncode == 0, whole.stderr
    for name in ("neon-osbs-10cm-epsg32617", "big"):
        assert_same(tmp_path / "killed", tmp_path / "whole", name)
    import json

    summary = json.loads((tmp_path / "killed" / "run-summary.json").read_text())
    assert summary["done"] == 2 and summary["scenes"]["big"]["blocks_resumed"] > 0
    assert (tmp_path / "killed" / "scenes.gpkg").is_file()
    assert (tmp_path / "killed" / "mosaic_render_epsg3857.vrt").is_file()


def mmap_probe():
    """A function for Client.run: bytes glibc maps afresh for a 48 MB array, 0 when the
    array comes from the heap. Built here so cloudpickle sends it by value."""

    def fresh_mmap_bytes() -> int:
        import ctypes

        import numpy as np

        names = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
        info = type("MallInfo2", (ctypes.Structure,), {"_fields_": [(n, ctypes.c_size_t) for n in names.split()]})  # fmt: skip
        mallinfo2 = ctypes.CDLL(None).mallinfo2
        mallinfo2.restype = info
        before = mallinfo2().hblkhd
        array = np.empty(48 << 20, np.uint8)
        grew = mallinfo2().hblkhd - before
        del array
        return grew

    return fresh_mmap_bytes


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc malloc settings")
def test_cluster_workers_serve_large_arrays_from_the_heap():
    """Workers of --cluster local:N, and `dask worker` started with the shipped config, get
    geo2map's malloc settings, so a forward's large arrays are not fresh mmaps (~10 % of a
    forward in page faults; dask's own nanny setting made local:2 1.44x slower)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    # in a process of its own, like a `geo2map translate --cluster local:1` run: the first
    # forkserver of a process must start with the settings, before dask's nanny has put
    # them into os.environ
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from test_cluster import mmap_probe\n"
            "from geo2map.execution import open_runner\n"
            "with open_runner('threads', None, 'local:1') as r:\n"
            "    print(list(r.client.run(mmap_probe()).values()))")  # fmt: skip
    run = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent)], env=env,
                         capture_output=True, text=True, timeout=180, check=True)  # fmt: skip
    assert run.stdout.strip().splitlines()[-1] == "[0]"

    shipped = {**env, "DASK_CONFIG": str(Path(__file__).parents[1] / "pipelines/dask")}
    with (
        dask_cluster(("shipped", [], shipped), ("dask-default", [], env)) as (address, _),
        Client(address, timeout="30s") as client,
    ):
        names = {a: w["name"] for a, w in client.scheduler_info()["workers"].items()}
        grew = {names[a]: n for a, n in client.run(mmap_probe()).items()}
        profiling = {names[a]: p for a, p in client.run(profiler_probe()).items()}
    assert grew["shipped"] == 0
    assert grew["dask-default"] >= 48 << 20  # the probe tells the two apart
    # the shipped config also turns dask's profiler off (see the test below)
    assert profiling == {"shipped": False, "dask-default": True}


def profiler_probe():
    """A function for Client.run: whether the worker runs dask's statistical profiler. Built
    here so cloudpickle sends it by value."""

    def samples_its_stacks(dask_worker) -> bool:
        return "profile" in dask_worker.periodic_callbacks

    return samples_its_stacks


def test_the_schedulers_geo2map_starts_do_not_profile_their_tasks():
    """dask's profiler samples every task thread's stack every 10 ms, under the GIL: 4.5-6
    CPU-s per 8k scene on local:2 (docs/benchmarks.md, session 12). The in-process threaded
    scheduler and --cluster local:N workers run without it."""
    from geo2map.execution import open_runner

    with open_runner("threads", None, None) as runner:
        threads = list(runner.client.run(profiler_probe()).values())
    with open_runner("threads", None, "local:1") as runner:
        local = list(runner.client.run(profiler_probe()).values())
    assert threads == [False] and local == [False]


def test_local_cluster_workers_start_with_the_model_built(models):
    """`--cluster local:N` forks its workers from a server that built the job's CPU model
    once (geo2map/forkserver.py); a spawned worker took ~7 s to import torch and build it
    before its first batch. Another model (or none) gets a server of its own."""
    from geo2map.execution import open_runner
    from geo2map.forkserver import PreloadModel

    def built_models_and_parent():  # defined here, so cloudpickle sends it by value
        import os

        from geo2map.translator import _cached

        return _cached.cache_info().currsize, os.getppid()

    model = PreloadModel(models(0.6), "cpu", "auto", 64)
    with open_runner("threads", None, "local:1", model) as runner:
        [(built, server)] = runner.client.run(built_models_and_parent).values()
    with open_runner("threads", None, "local:1", None) as runner:
        [(built_without, other_server)] = runner.client.run(built_models_and_parent).values()
    assert (built, built_without) == (1, 0)
    assert other_server != server


def test_workers_fork_from_the_server_started_before_planning(models):
    """A job starts the forkserver before it plans (prepare_local_cluster), and the cluster
    must fork its workers from that one. In a fresh process the two once disagreed about the
    workers' environment (dask.distributed was not imported yet), so the cluster stopped
    the first server and started another: ~3 s more per job."""
    script = f"""
import os
from multiprocessing import forkserver
from geo2map.execution import open_runner, prepare_local_cluster
from geo2map.forkserver import PreloadModel
if __name__ == "__main__":
    model = PreloadModel({models(0.6)!r}, "cpu", "auto", 64)
    prepare_local_cluster("local:1", model)
    started = forkserver._forkserver._forkserver_pid
    with open_runner("threads", None, "local:1", model) as runner:
        [parent] = runner.client.run(os.getppid).values()
    print("same server" if parent == started else "another server")
"""
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=180
    )
    assert run.stdout.strip().endswith("same server"), run.stdout + run.stderr[-2000:]


@pytest.mark.parametrize("spec", ["local:x", "local:0", "remote:2"])
def test_a_bad_cluster_spec_stops_before_any_work(scenes, models, tmp_path, spec):
    from geo2map.errors import Geo2MapError

    scene = scenes / "neon-osbs-10cm-epsg32617.tif"
    with pytest.raises(Geo2MapError, match="use local:N"):
        geo2map.translate(scene, tmp_path / "out", model=models(0.6), cluster=spec)
    assert not (tmp_path / "out").exists()


def test_a_second_run_into_the_same_folder_is_refused_while_the_first_writes(
    scenes, models, tmp_path
):
    from geo2map.scene_lock import scene_lock

    scene = scenes / "neon-osbs-10cm-epsg32617.tif"
    out = tmp_path / "out"
    out.mkdir()
    cmd = [str(BIN / "geo2map"), "translate", str(scene), "--out", str(out),
           "--model", models(0.6), "--chip-size", "64", "--overlap", "16"]  # fmt: skip
    with scene_lock(out, scene.stem):  # this process is "the first run", mid-scene
        second = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2, second.stderr
        assert second.stderr.count("\n") == 1 and "another geo2map run (pid " in second.stderr
        assert [p.name for p in out.iterdir()] == [f".{scene.stem}.lock"]
    assert list(out.iterdir()) == []  # the lock file goes with the run
    first_done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert first_done.returncode == 0, first_done.stderr
    assert not [p.name for p in out.glob(".*")]


def test_a_busy_dask_dashboard_port_does_not_warn(scenes, models, tmp_path):
    # A notebook's Dask cluster usually holds 8787; the in-process scheduler must not say so.
    import socket
    import warnings

    holder = socket.socket()
    try:
        holder.bind(("0.0.0.0", 8787))
        holder.listen()
    except OSError:
        pass  # already held by something else: the same situation
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            geo2map.translate(scenes / "neon-osbs-10cm-epsg32617.tif", tmp_path,
                              model=models(0.6), chip_size=64, overlap=16)  # fmt: skip
    finally:
        holder.close()
    assert not [str(w.message) for w in caught if "already in use" in str(w.message)]
