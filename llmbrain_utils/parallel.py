"""Fan-out of a stage's independent blocks (subjects, voxel chunks) on Dask, or in-process.

A heavy stage splits its work into blocks whose results do not depend on the partition: a
subject's fits, a chunk of voxels of a per-voxel null. :func:`map_blocks` runs them

* in this process, one after another, when no scheduler is asked for (the default: a plain
  ``make book`` or notebook run needs no cluster);
* as Dask tasks on the scheduler of :func:`using` (a ``distributed.Client``) or of the
  environment variable ``LLMBRAIN_SCHEDULER`` (an address, e.g. ``tcp://host:8786``, or
  ``local:N`` for a LocalCluster of ``N`` single-threaded processes started on first use).
  The variable reaches the notebooks' kernels, so ``python -m llmbrain_utils run --workers N``
  fans the stages of every chapter out.

Inside a Dask worker (a sweep point, or a block of another fan-out) blocks always run
in-process: nested tasks would wait on the workers they occupy.

A worker that dies mid-stage loses nothing: the scheduler gives its blocks to another worker
(``tests/test_parallel.py`` kills one). Blocks carry file paths and indices, not arrays, so a
worker reads only its block (from a memory map) and the BOLD is never sent or held whole.
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Any, Callable, Iterable, Iterator

ENV = "LLMBRAIN_SCHEDULER"

_lock = threading.Lock()
_client: Any = None          # set by using()
_env_client: Any = None      # the client of $LLMBRAIN_SCHEDULER, made on first use
_env_key: str | None = None
_env_cluster: Any = None


@contextlib.contextmanager
def using(client) -> Iterator[Any]:
    """Run the fan-outs inside the block on ``client`` (a ``distributed.Client``; None:
    in-process)."""
    global _client
    with _lock:
        before, _client = _client, client
    try:
        yield client
    finally:
        with _lock:
            _client = before


def _in_worker() -> bool:
    try:
        from distributed import get_worker
    except ImportError:  # pragma: no cover - distributed is a requirement
        return False
    try:
        get_worker()
    except ValueError:
        return False
    return True


def _from_env():
    """The client of ``$LLMBRAIN_SCHEDULER`` (None when unset), connected once per value."""
    global _env_client, _env_key, _env_cluster
    addr = os.environ.get(ENV, "").strip()
    if not addr:
        return None
    with _lock:
        if _env_client is not None and _env_key == addr:
            return _env_client
        from distributed import Client

        from .errors import InputError

        if addr.startswith("local:"):
            try:
                n = int(addr.split(":", 1)[1])
                if n < 1:
                    raise ValueError
            except ValueError:
                raise InputError(f"${ENV}", f"{addr!r}", expected="local:N with N >= 1 worker "
                                 "processes, or a scheduler address like tcp://host:8786") from None
            _env_cluster = local_cluster(n)
            _env_client = Client(_env_cluster)
        else:
            try:
                _env_client = Client(addr, timeout="30s")
            except (OSError, TimeoutError) as e:
                raise InputError(f"${ENV}", f"cannot connect to {addr!r} ({e})",
                                 expected="the address of a running Dask scheduler, e.g. "
                                          "tcp://host:8786, or local:N") from None
        _env_key = addr
        return _env_client


def close_env_client() -> None:
    """Close the client (and LocalCluster) made for ``$LLMBRAIN_SCHEDULER``, if any."""
    global _env_client, _env_key, _env_cluster
    with _lock:
        client, cluster = _env_client, _env_cluster
        _env_client = _env_key = _env_cluster = None
    if client is not None:
        client.close()
    if cluster is not None:
        cluster.close()


def current():
    """The client blocks go to now, or None (in-process)."""
    if _in_worker():
        return None
    if _client is not None:
        return _client
    return _from_env()


@contextlib.contextmanager
def serving(workers: int | None = None, scheduler: str | None = None) -> Iterator[str | None]:
    """Point ``$LLMBRAIN_SCHEDULER`` (and so the notebooks' kernels, which inherit it) at
    ``scheduler``, or at a LocalCluster of ``workers`` processes started here and closed on
    exit; neither: leave it as it is. Yields the address."""
    if scheduler and workers:
        from .errors import ParameterError

        raise ParameterError("workers", f"{workers} with --scheduler {scheduler}",
                             expected="either --workers N or --scheduler ADDR, not both")
    if not (workers or scheduler):
        yield os.environ.get(ENV) or None
        return
    cluster = local_cluster(workers) if workers else None
    addr = cluster.scheduler_address if cluster is not None else scheduler
    before = os.environ.get(ENV)
    os.environ[ENV] = addr
    try:
        yield addr
    finally:
        if before is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = before
        close_env_client()
        if cluster is not None:
            cluster.close()


class _QuietShutdown:
    """Drops the nanny's "Worker process still alive after 4.0 seconds, killing" when a cluster
    closes: the work is done by then and a worker slow to exit (a loaded machine, a large
    model to free) is killed as intended. Its other warnings pass."""

    def filter(self, record) -> bool:
        return "still alive after" not in record.getMessage()


_QUIET = _QuietShutdown()


def local_cluster(n_workers: int | None = None, **kwargs):
    """A LocalCluster of ``n_workers`` processes (default: the CPU count), one thread each,
    single-threaded BLAS, so parallel blocks do not oversubscribe the cores; the workers get
    the package's environment (store, data, offline flags)."""
    import logging

    from distributed import LocalCluster

    n = n_workers or os.cpu_count() or 1
    env = {v: "1" for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    env["TQDM_DISABLE"] = "1"  # workers draw no bars (a first GGUF conversion draws one per tensor)
    env.update({k: os.environ[k] for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "PYTHONHASHSEED",
                                           "LLMBRAIN_RUNS", "LLMBRAIN_DATA", "LLMBRAIN_CACHE",
                                           "LLMBRAIN_ATLAS_DIR") if k in os.environ})
    kw = dict(n_workers=n, threads_per_worker=1, processes=True, env=env, dashboard_address=None,
              silence_logs=logging.WARNING)
    kw.update(kwargs)
    nanny = logging.getLogger("distributed.nanny")
    if _QUIET not in nanny.filters:
        nanny.addFilter(_QUIET)
    return LocalCluster(**kw)


def map_blocks(fn: Callable, blocks: Iterable, *, label: str = "blocks", unit: str = "block",
               progress: bool = False) -> list:
    """``[fn(b) for b in blocks]``, in order, on the current client or in-process.

    ``fn`` must be a module-level function (the workers import it) and each block small
    (paths, indices, parameters): the workers read their data themselves. Dask retries a
    block whose worker died; an exception raised by ``fn`` is raised here, as in-process.
    """
    blocks = list(blocks)
    client = current() if len(blocks) > 1 else None
    if client is None:
        it = blocks
        if progress:
            from .progress import bar
            it = bar(blocks, label, unit=unit, show=True)
        return [fn(b) for b in it]
    futures = client.map(fn, blocks, pure=False)
    if progress:
        from .progress import bar
        from distributed import as_completed
        for _ in bar(as_completed(futures), label, unit=unit, total=len(futures), show=True):
            pass
    return client.gather(futures)


def blocks_of(n: int, size: int) -> list[slice]:
    """``range(n)`` cut into contiguous slices of at most ``size`` (the last may be shorter)."""
    size = max(1, int(size))
    return [slice(i, min(n, i + size)) for i in range(0, n, size)]
