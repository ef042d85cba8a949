"""The circular ISC null's kernel (``fmri.isc._isc_null_circular``: per subject block of pair
cross-correlations, batched gathers, float32 sums) against the former one
(``_isc_null_circular_reference``: FFT of length T, a float64 product per surrogate), and
against surrogates rolled by hand where the data are degenerate. The generic rolled-series check
is ``test_fmri.test_circular_null_from_pair_correlations_equals_shifted_series``."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import lfilter

from llmbrain_utils import fmri
from llmbrain_utils.fmri import isc

TOL = 1e-5  # |null difference| allowed; a count may differ only by surrogates this close to the margin


def planted(S: int, T: int, V: int, seed: int) -> np.ndarray:
    """AR(0.5) series, float32; a shared series of growing weight in the first third of the voxels."""
    rng = np.random.default_rng(seed)
    x = lfilter([1.0], [1.0, -0.5], rng.standard_normal((S + 1, T, V)), axis=1)
    k = V // 3
    x[:S, :, :k] += np.linspace(0.05, 1.0, k) * x[S, :, :k]
    return x[:S].astype(np.float32)


def circular_lags(seed: int, n_perm: int, S: int, T: int) -> np.ndarray:
    return np.stack([fmri._circular_lags(seed, i, S, T) for i in range(n_perm)])


def assert_same_null(new, ref):
    """Same observed ISC (float64), nulls within TOL, and counts that differ only by surrogates
    whose former null lies within TOL of the 1e-6 margin (float rounding; none in practice)."""
    (count, observed, null), (count0, observed0, null0) = new, ref
    assert np.allclose(observed, observed0, rtol=0, atol=1e-12)
    assert np.abs(null - null0).max() < TOL
    near = (np.abs(null0 - (observed0 - 1e-6)) < TOL).sum(axis=0)
    assert (np.abs(count - count0) <= near).all()
    return int((count != count0).sum())


@pytest.mark.parametrize("T", [61, 64])
@pytest.mark.parametrize("summary", ["mean", "median", "fisher"])
def test_circular_kernel_matches_former_kernel(summary, T):
    S, V, n_perm = 6, 150, 100
    x = planted(S, T, V, seed=T)
    lags = circular_lags(3, n_perm, S, T)
    new = isc._isc_null_circular(x, lags, summary, 2048, True)
    ref = isc._isc_null_circular_reference(x, lags, summary, 2048, True)
    assert assert_same_null(new, ref) == 0
    assert (new[0][V // 6: V // 3] == 0).all()  # the strongly planted voxels: p = 1 / (1 + n_perm)


def test_circular_kernel_block_width_and_memmap(tmp_path):
    """Per voxel the numbers do not depend on the block width, and a memory map reads the same."""
    S, T, V, n_perm = 5, 40, 90, 60
    x = planted(S, T, V, seed=1)
    lags = circular_lags(0, n_perm, S, T)
    count, observed, null = isc._isc_null_circular(x, lags, "mean", 2048, True)
    for chunk in (1, 7, 64):
        c, o, n = isc._isc_null_circular(x, lags, "mean", chunk, True)
        assert np.array_equal(c, count) and np.allclose(o, observed, rtol=0, atol=1e-12)
        assert np.abs(n - null).max() < 1e-6
    np.save(tmp_path / "x.npy", x)
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")[:, :, 10:70]
    c, o, n = isc._isc_null_circular(mm, lags, "mean", 2048, True)
    assert np.array_equal(c, count[10:70]) and np.array_equal(n, null[:, 10:70])


@pytest.mark.parametrize("S,T", [(2, 3), (2, 17), (4, 3), (4, 30)])
def test_circular_kernel_degenerate_data(S, T):
    """Constant series (one subject's, or a whole voxel), two subjects, three TRs: the kernel equals
    the former kernel and, surrogate by surrogate, ``isc_loo`` of the rolled series."""
    V, n_perm = 12, 40
    x = planted(S, T, V, seed=S * T)
    x[0, :, 1] = 3.0          # one subject constant
    x[:, :, 2] = -1.0         # every subject constant
    x[:, :, 3] = x[0, :, 3]   # identical subjects
    x[1, :, 4] = -x[0, :, 4]  # anti-correlated pair
    lags = circular_lags(7, n_perm, S, T)
    new = isc._isc_null_circular(x, lags, "mean", 2048, True)
    assert_same_null(new, isc._isc_null_circular_reference(x, lags, "mean", 2048, True))
    assert (new[2][:, 2] == 0).all() and np.isfinite(new[2]).all()
    for i in range(0, n_perm, 8):
        rolled = np.stack([np.roll(x[s], lags[i, s], axis=0) for s in range(S)])
        assert np.allclose(new[2][i], fmri.isc_loo(rolled)[0], rtol=0, atol=TOL)


@pytest.mark.parametrize("null", ["voxel", "pooled"])
def test_isc_null_circular_same_p_as_former_kernel(monkeypatch, null):
    """isc_null(method='circular') end to end (voxel and pooled p, the returned null)."""
    x = planted(5, 50, 120, seed=4)
    p, dist = fmri.isc_null(x, n_perm=80, method="circular", seed=2, null=null, return_null=True)
    monkeypatch.setattr(isc, "_isc_null_circular", isc._isc_null_circular_reference)
    p0, dist0 = fmri.isc_null(x, n_perm=80, method="circular", seed=2, null=null, return_null=True)
    assert np.array_equal(p, p0) and dist.dtype == np.float32 and np.abs(dist - dist0).max() < TOL
