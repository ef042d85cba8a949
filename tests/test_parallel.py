"""The heavy stages' fan-out (llmbrain_utils.parallel): in-process by default, Dask blocks on a
cluster with the same numbers bit for bit, a worker killed mid-stage loses nothing, and the
blocks' partition of the voxels leaves every number as one pass gives it."""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from llmbrain_utils import parallel, stages
from llmbrain_utils.errors import InputError

TINY = dict(n_subjects=3, resolution_mm=12, k=8, n_perm=20, fbn_perm=100, dict_iter=30, group_perm=10)
FILES = {"fmri": ("isc.npy", "isc_p.npy"),
         "encoding": ("beta.npy", "t.npy", "r2.npy", "cv_r.npy", "cv_alphas.npy", "group_t.npy"),
         "encoding_tests": ("p_r2.npy", "p_group_avg.npy", "group_avg_r.npy"),
         "fbn": ("couplings.tsv",)}


def _square(x):
    if x < 0:
        raise ValueError(f"negative block {x}")
    return x * x


def _arrays(runs: Path) -> dict:
    cfg = {**TINY, "runs_dir": str(runs)}
    arts = {"fmri": stages.fmri_data(cfg), "encoding": stages.encoding(cfg),
            "encoding_tests": stages.encoding_tests(cfg), "fbn": stages.fbn_mapping(cfg)}
    return {f"{s}/{f}": _read(arts[s].file(f)) for s, fs in FILES.items() for f in fs}


def _read(path: Path) -> np.ndarray:
    if path.suffix == ".tsv":  # the mapping's table: its numbers (the surrogate null's p, q)
        import pandas as pd
        return pd.read_csv(path, sep="\t")[["dice", "r", "p", "q"]].to_numpy(float)
    return np.load(path)


def _same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert np.array_equal(a[name], b[name], equal_nan=True), name


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """The stages run in-process (no scheduler): the numbers every partition must give."""
    return _arrays(tmp_path_factory.mktemp("inprocess") / "runs")


@pytest.fixture(scope="module")
def cluster():
    pytest.importorskip("distributed")
    import cloudpickle
    from distributed import Client

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import tests/
    with parallel.local_cluster(2) as lc, Client(lc) as client:
        yield lc, client


def test_blocks_run_in_process_in_order_by_default(monkeypatch):
    monkeypatch.delenv(parallel.ENV, raising=False)
    assert parallel.current() is None
    assert parallel.map_blocks(_square, range(5)) == [0, 1, 4, 9, 16]
    with pytest.raises(ValueError, match="negative block -1"):
        parallel.map_blocks(_square, [1, -1])
    assert parallel.blocks_of(5, 2) == [slice(0, 2), slice(2, 4), slice(4, 5)]


def test_a_bad_scheduler_variable_is_named(monkeypatch):
    monkeypatch.setenv(parallel.ENV, "local:zero")
    with pytest.raises(InputError, match="LLMBRAIN_SCHEDULER.*local:N"):
        parallel.current()


def test_the_voxel_partition_leaves_every_number_as_one_pass(monkeypatch, tmp_path, reference):
    """Blocks of 100 voxels (the tiny twin has ~1,000) give the numbers of one block: bit for bit
    but the held-out r, which the float32 ridge kernel's products round differently with the
    block's width (measured: at most 3.8e-7, in 4 % of the voxels; the same penalties). The
    mapping's surrogate null in blocks of 3 of the 8 atoms: its counts bit for bit."""
    monkeypatch.setattr(stages, "VOXEL_BLOCK", 100)
    monkeypatch.setattr(stages, "ATOM_BLOCK", 3)
    got = _arrays(tmp_path / "runs")
    np.testing.assert_allclose(got.pop("encoding/cv_r.npy"), reference["encoding/cv_r.npy"],
                               rtol=0, atol=1e-6)
    _same(got, {k: v for k, v in reference.items() if k != "encoding/cv_r.npy"})


def test_a_cluster_gives_the_in_process_numbers(cluster, tmp_path, reference, monkeypatch):
    _, client = cluster
    monkeypatch.setattr(stages, "ATOM_BLOCK", 3)  # the 8 atoms' null in 3 blocks
    with parallel.using(client):
        assert parallel.current() is client
        assert parallel.map_blocks(_square, range(6)) == [0, 1, 4, 9, 16, 25]
        with pytest.raises(ValueError, match="negative block -2"):
            parallel.map_blocks(_square, [3, -2])
        _same(_arrays(tmp_path / "runs"), reference)
    assert parallel.current() is None or os.environ.get(parallel.ENV)


def _kill_once_plugin(marker: str):
    from distributed import WorkerPlugin

    class KillOnce(_KillOnce, WorkerPlugin):
        pass

    return KillOnce(marker)


class _KillOnce:
    """A worker plugin: the first block any worker starts kills that worker (SIGKILL, no
    clean-up) a moment later, mid-block; a marker file makes it happen once in the cluster."""

    name = "kill-once"

    def __init__(self, marker: str):
        self.marker = marker

    def setup(self, worker):
        self.worker = worker

    def transition(self, key, start, finish, **kwargs):
        if finish != "executing":
            return
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGKILL)).start()


def test_a_worker_killed_mid_stage_loses_nothing(cluster, tmp_path, reference):
    lc, client = cluster
    marker = tmp_path / "killed"
    before = set(client.scheduler_info()["workers"])
    client.register_plugin(_kill_once_plugin(str(marker)))
    try:
        with parallel.using(client):
            got = _arrays(tmp_path / "runs")
    finally:
        client.unregister_worker_plugin("kill-once")
    assert marker.exists(), "no worker was killed: the test tested nothing"
    pid = int(marker.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # that worker process is gone
    _same(got, reference)
    client.wait_for_workers(2, timeout=60)  # the nanny restarted it
    assert set(client.scheduler_info()["workers"]) != before


def test_the_environment_variable_reaches_a_local_cluster(monkeypatch):
    monkeypatch.setenv(parallel.ENV, "local:1")
    try:
        client = parallel.current()
        assert client is not None and parallel.current() is client  # connected once
        assert parallel.map_blocks(_square, [2, 3]) == [4, 9]
    finally:
        parallel.close_env_client()
    monkeypatch.delenv(parallel.ENV)
    assert parallel.current() is None


def test_the_stage_key_does_not_depend_on_the_scheduler():
    """The partition is fixed by stages.VOXEL_BLOCK (a result module), parallel.py is not part
    of any artifact's key: a cluster run reuses an in-process run's artifacts."""
    from llmbrain_utils import store

    assert "parallel" not in store._RESULT_MODULES
    assert "VOXEL_BLOCK" in Path(stages.__file__).read_text()


def test_serving_points_the_kernels_at_a_cluster_and_restores_the_environment(monkeypatch):
    monkeypatch.delenv(parallel.ENV, raising=False)
    with parallel.serving(workers=1) as addr:
        assert addr.startswith("tcp://") and os.environ[parallel.ENV] == addr
        assert parallel.map_blocks(_square, [4, 5]) == [16, 25]
    assert parallel.ENV not in os.environ
    with parallel.serving() as addr:
        assert addr is None and parallel.current() is None
    with pytest.raises(Exception, match="either --workers N or --scheduler ADDR"):
        with parallel.serving(workers=2, scheduler="tcp://nowhere:1"):
            pass


def test_the_package_errors_travel_back_from_a_worker_whole():
    """A block's InputError (a bad scan) reaches the caller pickled: its type, message and fields."""
    import pickle

    from llmbrain_utils.errors import ParameterError, StageError

    for err in (InputError("sub-002.nii.gz", "250 TRs x 10 voxels", field="volumes", expected="326"),
                ParameterError("n_perm", "5", expected="an int >= 10"),
                StageError("fmri", "02_fmri.ipynb", "InputError", "bad")):
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is type(err) and str(back) == str(err) and back.__dict__ == err.__dict__


def test_a_slow_worker_killed_at_shutdown_prints_nothing(cluster):
    """The nanny's warning when a worker outlives the close (a loaded machine) would print a
    109-character line into the cross-model chapter; it is dropped, other warnings are not."""
    import logging

    nanny = logging.getLogger("distributed.nanny")
    assert parallel._QUIET in nanny.filters
    make = lambda msg: logging.LogRecord("distributed.nanny", logging.WARNING, __file__, 1, msg, (), None)  # noqa: E731
    assert not nanny.filter(make("Worker process still alive after 4.0 seconds, killing"))
    assert nanny.filter(make("Worker exceeded 95% memory budget. Restarting..."))
