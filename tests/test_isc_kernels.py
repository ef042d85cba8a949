"""The compiled ISC kernels (``fmri._isc_numba``, numba) against the numpy code they replace
(``fmri.isc`` with ``_USE_NUMBA`` off): :func:`isc_loo` and the circular null
(``_isc_null_circular``: observed ISC, counts, null distribution) bit for bit, on shapes that
exercise every branch (two subjects, a single-voxel last block, constant series, the
per-batch slow path of ``_loo_stat``, fast and slow FFT lengths, memory maps, float64), and the
numpy fallback where numba is off or not importable."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from llmbrain_utils import fmri
from llmbrain_utils.errors import ParameterError
from llmbrain_utils.fmri import isc

numba_kernels = pytest.importorskip("llmbrain_utils.fmri._isc_numba",
                                    reason="numba is not installed")


def data(S: int, T: int, V: int, seed: int = 0, dtype=np.float32) -> np.ndarray:
    """A shared AR(0.5) series plus each subject's, of varying scale; degenerate voxels: every
    subject constant (0), one subject constant (1), all but one constant (2), identical subjects
    (3), an anti-correlated pair (4)."""
    rng = np.random.default_rng(seed)
    e = rng.standard_normal((S + 1, T, V))
    for t in range(1, T):
        e[:, t] += 0.5 * e[:, t - 1]
    x = (e[:S] + 0.7 * e[S]) * rng.uniform(0.5, 3.0, size=(S, 1, V)) + rng.normal(size=(S, 1, V))
    x[:, :, 0] = 2.5
    if V >= 5:
        x[0, :, 1] = -1.0
        x[1:, :, 2] = 4.0
        x[:, :, 3] = x[0, :, 3]
        x[1, :, 4] = -x[0, :, 4]
    return x.astype(dtype)


def numpy_path(monkeypatch, fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` with the kernels off (the numpy reference)."""
    with monkeypatch.context() as m:
        m.setattr(isc, "_USE_NUMBA", False)
        return fn(*args, **kwargs)


def spy(monkeypatch, name: str) -> list:
    """Count the calls of kernel ``name``."""
    calls = []
    kernel = getattr(numba_kernels, name)

    def counted(*args):
        calls.append(1)
        return kernel(*args)

    monkeypatch.setattr(numba_kernels, name, counted)
    return calls


# ------------------------------------------------------------------------------ isc_loo
@pytest.mark.parametrize("S,T,V", [(2, 3, 7), (2, 40, 300), (3, 41, 257), (8, 326, 700),
                                   (12, 300, 513), (5, 17, 1)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_isc_loo_kernel_bit_for_bit(monkeypatch, S, T, V, dtype):
    x = data(S, T, V, seed=S * T + V, dtype=dtype)
    calls = spy(monkeypatch, "isc_loo")
    for summary in ("mean", "median", "fisher"):
        got = fmri.isc_loo(x, summary=summary)
        ref = numpy_path(monkeypatch, fmri.isc_loo, x, summary=summary)
        assert np.array_equal(got[1], ref[1]) and np.array_equal(got[0], ref[0])
    assert len(calls) == 3
    assert (got[1][:, 0] == 0).all()  # a constant voxel


def test_isc_loo_kernel_reads_memory_map_blocks_in_place(monkeypatch, tmp_path):
    """A block ``x[:, :, a:b]`` of a memory map (rows far apart), as the pipeline passes it, and a
    float64 slice: the numbers of the numpy path, the data not copied."""
    x = data(6, 50, 900, seed=3)
    np.save(tmp_path / "x.npy", x)
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")[:, :, 37:800]
    calls = spy(monkeypatch, "isc_loo")
    got = fmri.isc_loo(mm)
    assert len(calls) == 1 and np.array_equal(got[1], numpy_path(monkeypatch, fmri.isc_loo, mm)[1])
    for arr in (x.astype(np.float64)[:, :, 300:557], x[:, ::2], x[::2, 1:]):
        assert np.array_equal(fmri.isc_loo(arr)[1], numpy_path(monkeypatch, fmri.isc_loo, arr)[1])
    assert len(calls) == 4
    xf, st_s, st_t = isc._rows(mm)
    assert not xf.flags.writeable and np.shares_memory(xf, mm) and (st_s, st_t) == (50 * 900, 900)


@pytest.mark.parametrize("where", [(0, 0, 0), (2, 17, 413), (5, 49, 899)])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_isc_loo_kernel_finite_check(monkeypatch, where, bad):
    """The finite check, folded into the kernel's read, raises the numpy path's error."""
    x = data(6, 50, 900, seed=1)
    x[where] = bad
    calls = spy(monkeypatch, "isc_loo")
    with pytest.raises(ParameterError, match="NaN or inf"):
        fmri.isc_loo(x)
    assert len(calls) == 1
    with pytest.raises(ParameterError, match="NaN or inf"):
        numpy_path(monkeypatch, fmri.isc_loo, x)


def test_isc_loo_other_layouts_take_the_numpy_path(monkeypatch):
    """Arrays whose voxels are not contiguous rows (another order, another dtype) go through the
    numpy code, which reduces them in its own orders."""
    x = data(4, 30, 100, seed=2)
    calls = spy(monkeypatch, "isc_loo")
    for arr in (np.asfortranarray(x), x.transpose(1, 0, 2), x.astype(np.float16), x[:, :, ::2],
                x.astype(">f4"), x.astype(np.int16)):
        assert isc._rows(arr) is None
        assert np.array_equal(fmri.isc_loo(arr)[1], numpy_path(monkeypatch, fmri.isc_loo, arr)[1])
    assert not calls


# ------------------------------------------------------------------------------ circular null
def lags_for(seed: int, n_perm: int, S: int, T: int) -> np.ndarray:
    return np.stack([fmri._circular_lags(seed, i, S, T) for i in range(n_perm)])


def assert_same_circular(monkeypatch, x, lags, summary, chunk, keep=True):
    got = isc._isc_null_circular(x, lags, summary, chunk, keep)
    ref = numpy_path(monkeypatch, isc._isc_null_circular, x, lags, summary, chunk, keep)
    for g, r in zip(got, ref):
        assert (g is None and r is None) or (np.array_equal(g, r) and g.dtype == r.dtype)
    return got


@pytest.mark.parametrize("S,T,V,n_perm", [(2, 40, 23, 10), (3, 41, 130, 137), (8, 326, 250, 100),
                                          (12, 300, 71, 60), (8, 64, 300, 1000)])
def test_circular_null_kernels_bit_for_bit(monkeypatch, S, T, V, n_perm):
    """Slow (41, 326) and fast (40, 64, 300) FFT lengths, V not a multiple of the block width,
    degenerate voxels (S = 2 with a constant subject: the batch's slow branch)."""
    x = data(S, T, V, seed=S + T)
    lags = lags_for(S, n_perm, S, T)
    calls = {k: spy(monkeypatch, k) for k in ("zscore_nn_loo", "pair_sums", "null_mean")}
    count, observed, null = assert_same_circular(monkeypatch, x, lags, "mean", 2048)
    assert all(calls.values())
    assert (null[:, 0] == 0).all() and np.isfinite(null).all()
    assert count.sum() > 0 and np.isfinite(observed).all()


@pytest.mark.parametrize("summary", ["median", "fisher"])
def test_circular_null_other_summaries_bit_for_bit(monkeypatch, summary):
    """'median' and 'fisher' take the pair sums' kernel and numpy's ``_loo_stat``."""
    x = data(5, 61, 90, seed=7)
    calls = spy(monkeypatch, "null_mean")
    assert_same_circular(monkeypatch, x, lags_for(1, 50, 5, 61), summary, 2048)
    assert not calls


@pytest.mark.parametrize("chunk", [1, 2, 7, 64])
def test_circular_null_chunks_bit_for_bit(monkeypatch, chunk):
    """Blocks of one voxel (numpy's own order for the observed ISC; a block of constant series
    has no nn > 0) and of a few, with and without the null returned."""
    x = data(4, 30, 20, seed=chunk)
    lags = lags_for(5, 40, 4, 30)
    assert_same_circular(monkeypatch, x, lags, "mean", chunk)
    assert_same_circular(monkeypatch, x, lags, "mean", chunk, keep=False)


def test_circular_null_memory_map_and_float64(monkeypatch, tmp_path):
    x = data(5, 40, 200, seed=9)
    np.save(tmp_path / "x.npy", x)
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")[:, :, 11:190]
    lags = lags_for(2, 30, 5, 40)
    assert_same_circular(monkeypatch, mm, lags, "mean", 2048)
    assert_same_circular(monkeypatch, x.astype(np.float64)[:, :, 3:150], lags, "mean", 2048)


@pytest.mark.parametrize("null", ["voxel", "pooled"])
def test_isc_null_circular_end_to_end_bit_for_bit(monkeypatch, null):
    x = data(6, 50, 150, seed=4)
    kw = dict(n_perm=200, method="circular", seed=3, null=null, return_null=True)
    p, dist = fmri.isc_null(x, **kw)
    p0, dist0 = numpy_path(monkeypatch, fmri.isc_null, x, **kw)
    assert np.array_equal(p, p0) and np.array_equal(dist, dist0)


# ------------------------------------------------------------------------------ fallback
def test_numpy_fallback_when_kernels_off(monkeypatch):
    """``_USE_NUMBA`` off: no kernel runs, and the numbers are the kernels'."""
    def refuse(*args):
        raise AssertionError("a kernel ran")

    x = data(4, 40, 60, seed=5)
    loo = fmri.isc_loo(x)
    p = fmri.isc_null(x, n_perm=30, method="circular", seed=1)
    for name in ("isc_loo", "zscore_nn_loo", "pair_sums", "null_mean"):
        monkeypatch.setattr(numba_kernels, name, refuse)
    monkeypatch.setattr(isc, "_USE_NUMBA", False)
    assert isc._kernels() is None
    assert np.array_equal(fmri.isc_loo(x)[1], loo[1])
    assert np.array_equal(fmri.isc_null(x, n_perm=30, method="circular", seed=1), p)


def test_numpy_fallback_without_numba(tmp_path):
    """Where numba cannot be imported the package still imports and computes (numpy code)."""
    code = textwrap.dedent("""
        import sys
        sys.modules["numba"] = None  # import numba -> ImportError
        import numpy as np
        from llmbrain_utils import fmri
        from llmbrain_utils.fmri import isc
        x = np.random.default_rng(0).standard_normal((3, 20, 40)).astype(np.float32)
        r = fmri.isc_loo(x)[1]
        p = fmri.isc_null(x, n_perm=20, method="circular")
        assert isc._kernels() is None and "llmbrain_utils.fmri._isc_numba" not in sys.modules
        np.save(sys.argv[1], r)
    """)
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "r.npy")], check=True)
    x = np.random.default_rng(0).standard_normal((3, 20, 40)).astype(np.float32)
    assert np.array_equal(np.load(tmp_path / "r.npy"), fmri.isc_loo(x)[1])
