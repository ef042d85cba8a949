"""Noise ceiling: leave-one-subject-out inter-subject correlation (:func:`isc_loo`), its
phase-randomisation or circular-shift null (:func:`isc_null`) and the FDR mask (:func:`isc_mask`)."""

from __future__ import annotations

import functools

import numpy as np

from ..errors import ParameterError
from ..stats import fdr


def _check_data(data, name: str = "data", min_subjects: int = 2) -> np.ndarray:
    x = np.asarray(data)
    if x.ndim != 3:
        raise ParameterError(name, f"shape {x.shape}", expected="S x T x V (subjects, TRs, voxels)")
    if x.shape[0] < min_subjects:
        raise ParameterError(name, f"{x.shape[0]} subject(s)", expected=f">= {min_subjects} subjects")
    if x.shape[1] < 3:
        raise ParameterError(name, f"{x.shape[1]} TRs", expected=">= 3 TRs")
    for v0 in range(0, x.shape[2], _CHECK_BLOCK):  # in blocks: x may be a memory map
        if not np.isfinite(x[:, :, v0:v0 + _CHECK_BLOCK]).all():
            raise ParameterError(name, "holds NaN or inf", expected="finite values")
    return x


_CHECK_BLOCK = 256   # voxels per block of the checks and of isc_loo: the block's z-scores stay in cache


def _zscore_t(x: np.ndarray, dtype=np.float64) -> np.ndarray:
    """Z-score along axis -2 (time) of S x T x V (or T x V); constant series -> 0."""
    x = np.asarray(x, dtype=dtype)
    mu = x.mean(axis=-2, keepdims=True)
    sd = x.std(axis=-2, keepdims=True)
    return np.where(sd > 0, (x - mu) / np.where(sd > 0, sd, 1.0), 0.0).astype(dtype, copy=False)


def _loo_from_z(z: np.ndarray) -> np.ndarray:
    """Per-subject LOO correlation (S x V) from S x T x V series z-scored over time.

    With ``tot = sum_s z_s``, ``d_s = z_s . tot`` and ``n_s = z_s . z_s`` (T, or 0 for a
    constant series): ``r_s = (d_s - n_s) / sqrt(n_s * |tot - z_s|^2)`` (``tot - z_s`` has
    mean 0), so one pass over the data suffices.
    """
    tot = z.sum(axis=0)
    tt = np.einsum("tv,tv->v", tot, tot, dtype=np.float64)
    out = np.zeros((z.shape[0], z.shape[2]))
    for s in range(z.shape[0]):
        d = np.einsum("tv,tv->v", z[s], tot, dtype=np.float64)
        n = np.einsum("tv,tv->v", z[s], z[s], dtype=np.float64)
        den = n * np.maximum(tt - 2 * d + n, 0.0)
        ok = den > 1e-12 * (z.shape[1] ** 2)
        out[s, ok] = (d[ok] - n[ok]) / np.sqrt(den[ok])
    return np.clip(out, -1.0, 1.0)


def _summarize(r: np.ndarray, summary: str) -> np.ndarray:
    if summary == "mean":
        return r.mean(axis=0)
    if summary == "median":
        return np.median(r, axis=0)
    if summary == "fisher":
        return np.tanh(np.arctanh(np.clip(r, -0.999999, 0.999999)).mean(axis=0))
    raise ParameterError("summary", f"{summary!r}", expected="'mean', 'median' or 'fisher'")


def isc_loo(data, *, summary: str = "mean") -> tuple[np.ndarray, np.ndarray]:
    """Leave-one-subject-out inter-subject correlation per voxel.

    Each subject's time series is correlated with the average of the other subjects'
    (z-scored) series; a constant voxel gives 0. The voxels are taken in blocks of 256, so
    the memory beside ``data`` (which may be a memory map) is a few ``S x T x 256`` float64
    arrays, not a float64 copy of the whole array, and the block's passes stay in cache.

    Parameters
    ----------
    data : array, S x T x V
        Subjects x TRs x voxels (S >= 2).
    summary : {'mean', 'median', 'fisher'}
        Summary over subjects ('fisher' averages Fisher z and transforms back).

    Returns
    -------
    isc : numpy.ndarray, (V,)
        The summary over subjects.
    per_subject : numpy.ndarray, (S, V)
        Each subject's correlation with the others' mean.
    """
    x = _check_data(data)
    _summarize(np.zeros((1, 1)), summary)
    r = np.empty((x.shape[0], x.shape[2]))
    for v0 in range(0, x.shape[2], _CHECK_BLOCK):  # per voxel: the same numbers as in one pass
        sl = slice(v0, v0 + _CHECK_BLOCK)
        r[:, sl] = _loo_from_z(_zscore_t(x[:, :, sl]))
    return _summarize(r, summary), r


def isc_null(data, n_perm: int = 1000, method: str = "phase", seed: int = 0, *,
             summary: str = "mean", null: str = "voxel", chunk: int = 2048,
             return_null: bool = False):
    """Permutation p-values of leave-one-out ISC per voxel.

    Surrogates randomise every subject's time series independently while keeping its
    autocorrelation: ``phase`` randomises the Fourier phases (the same random phases for all
    voxels of a subject, so spatial correlation is kept; mean and power spectrum exactly
    kept), ``circular`` shifts the series circularly by a random lag (1..T-1).

    ``null="voxel"``: ``p = (1 + #{null_v >= observed_v}) / (1 + n_perm)``, so the smallest
    p is ``1/(1+n_perm)``: with FDR over many voxels use ``n_perm >= 1000``.
    ``null="pooled"``: every voxel's observed ISC is compared with the surrogates of all
    voxels (``n_perm x V`` values; assumes exchangeable voxels, finer p with few surrogates).

    Parameters
    ----------
    data : array, S x T x V
    n_perm : int
        Number of surrogates (>= 10).
    method : {'phase', 'circular'}
    seed : int
        The surrogates depend on the seed only (not on ``chunk``).
    summary : {'mean', 'median', 'fisher'}
    null : {'voxel', 'pooled'}
    chunk : int
        Voxels processed together. ``circular`` computes every subject pair's circular
        cross-correlation once (``S(S-1)/2 x T x chunk`` floats, chunk shrunk to keep that
        under ~256 MB) and reads each surrogate's inner products from it (~1 ms per
        surrogate for 12 subjects x 326 TRs x 8,700 voxels on one core, 1,000 surrogates
        ~10 s); ``phase`` works in the Fourier domain (inner products by Parseval, memory
        ~ 4 * S * T * chunk * 4 bytes, ~0.1 s per surrogate for 8 subjects).
    return_null : bool
        Also return the null distribution (n_perm x V, float32).

    Returns
    -------
    p : numpy.ndarray, (V,)
        One-sided p-values (ISC greater than chance).
    null : numpy.ndarray, (n_perm, V)
        Only with ``return_null``.
    """
    x = _check_data(data)
    if isinstance(n_perm, bool) or not isinstance(n_perm, (int, np.integer)) or n_perm < 10:
        raise ParameterError("n_perm", f"{n_perm!r}", expected="an int >= 10")
    if method not in ("phase", "circular"):
        raise ParameterError("method", f"{method!r}", expected="'phase' or 'circular'")
    if null not in ("voxel", "pooled"):
        raise ParameterError("null", f"{null!r}", expected="'voxel' or 'pooled'")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ParameterError("seed", f"{seed!r}", expected="an int >= 0")
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise ParameterError("chunk", f"{chunk!r}", expected="an int >= 1")
    _summarize(np.zeros((1, 1)), summary)
    S, T, V = x.shape
    keep_null = return_null or null == "pooled"
    if method == "circular":
        lags = np.stack([_circular_lags(seed, i, S, T) for i in range(n_perm)])
        count, observed, nulls = _isc_null_circular(x, lags, summary, int(chunk), keep_null)
    else:
        count, observed, nulls = _isc_null_fourier(
            x, [functools.partial(_rotation, seed, i, S, T, method) for i in range(n_perm)], summary,
            int(chunk), keep_null)
    if null == "pooled":
        pool = np.sort(nulls, axis=None)
        ge = pool.size - np.searchsorted(pool, observed - 1e-6, side="left")
        p = (1.0 + ge) / (1.0 + pool.size)
    else:
        p = (1.0 + count) / (1.0 + n_perm)
    return (p, nulls) if return_null else p


def _circular_lags(seed: int, i: int, S: int, T: int) -> np.ndarray:
    """Surrogate i's circular shifts (1..T-1, one per subject), a function of (seed, i) only."""
    return np.random.default_rng([int(seed), i]).integers(1, T, size=S)


def _rotation(seed: int, i: int, S: int, T: int, method: str) -> np.ndarray:
    """Surrogate i as Fourier rotations (S x F), a function of (seed, i) only.

    A circular shift by k is the phase ramp exp(-2 pi i f k / T); phase randomisation
    draws uniform phases, DC and Nyquist kept.
    """
    f = np.arange(T // 2 + 1)
    if method == "circular":
        k = _circular_lags(seed, i, S, T)
        return np.exp(-2j * np.pi * np.outer(k, f) / T).astype(np.complex64)
    rng = np.random.default_rng([int(seed), i])
    rot = np.exp(1j * rng.uniform(0, 2 * np.pi, size=(S, f.size))).astype(np.complex64)
    rot[:, 0] = 1.0
    if T % 2 == 0:
        rot[:, -1] = 1.0
    return rot


def _loo_r(d: np.ndarray, nn: np.ndarray, tt: np.ndarray, T: int) -> np.ndarray:
    """LOO correlations from ``d_s = y_s . tot``, ``nn_s = y_s . y_s``, ``tt = tot . tot``."""
    den = nn * np.maximum(tt - 2 * d + nn, 0.0)
    r = np.zeros_like(d)
    ok = den > 1e-12 * T * T
    r[ok] = (d[ok] - nn[ok]) / np.sqrt(den[ok])
    return np.clip(r, -1.0, 1.0)


def _isc_null_circular(x: np.ndarray, lags: np.ndarray, summary: str, chunk: int,
                       keep_null: bool):
    """Circular-shift null from every pair's circular cross-correlation (exact, no per-surrogate FFT).

    With ``y_s(t) = z_s(t - k_s)``, ``y_s . y_j = C_sj[(k_s - k_j) mod T]`` where
    ``C_sj[L] = sum_u z_s(u) z_j(u + L)``; so ``d_s = y_s . tot = n_s + sum_{j != s} C_sj[...]``
    and ``tot . tot = sum_s d_s``: a surrogate costs one gather of S(S-1)/2 rows of ``C``
    per voxel instead of an S x T x V pass. ``C`` of a chunk takes
    ``S(S-1)/2 * T * chunk * 4`` bytes; the chunk is shrunk to keep that under ~256 MB.
    """
    from scipy import fft as sfft

    S, T, V = x.shape
    n_perm = lags.shape[0]
    si, sj = np.triu_indices(S, k=1)
    n_pairs = si.size
    inc = np.zeros((S, n_pairs))  # d = nn + inc @ pair_products
    inc[si, np.arange(n_pairs)] = 1.0
    inc[sj, np.arange(n_pairs)] = 1.0
    pair_lag = (lags[:, si] - lags[:, sj]) % T  # n_perm x pairs
    chunk = max(1, min(chunk, int(256e6 // max(1, n_pairs * T * 4))))
    observed = np.empty(V)
    nulls = np.empty((n_perm, V), dtype=np.float32) if keep_null else None
    count = np.zeros(V, dtype=np.int64)
    for v0 in range(0, V, chunk):
        sl = slice(v0, min(V, v0 + chunk))
        z = _zscore_t(x[:, :, sl], dtype=np.float64)
        obs = _summarize(_loo_from_z(z), summary)
        observed[sl] = obs
        nn = np.einsum("stv,stv->sv", z, z)
        zf = sfft.rfft(z.astype(np.float32), axis=1)  # single precision: half the FFT time
        del z
        # C[p, L, v] = sum_u z_si(u) z_sj(u + L)
        cc = sfft.irfft(np.conj(zf[si]) * zf[sj], n=T, axis=1)
        del zf
        pairs = np.arange(n_pairs)
        for i in range(n_perm):
            g = cc[pairs, pair_lag[i]]  # pairs x chunk: one contiguous row of C per pair
            d = nn + inc @ g
            stat = _summarize(_loo_r(d, nn, d.sum(axis=0), T), summary)
            count[sl] += stat >= obs - 1e-6
            if keep_null:
                nulls[i, sl] = stat
    return count, observed, nulls


def _isc_null_fourier(x: np.ndarray, rotations: list, summary: str, chunk: int, keep_null: bool):
    """Surrogates as Fourier rotations (callables returning S x F); inner products by Parseval."""
    from scipy import fft as sfft

    S, T, V = x.shape
    n_f = T // 2 + 1
    wf = np.full(n_f, 2.0)
    wf[0] = 1.0
    if T % 2 == 0:
        wf[-1] = 1.0
    wf = (wf / T).astype(np.float32)
    n_perm = len(rotations)
    observed = np.empty(V)
    nulls = np.empty((n_perm, V), dtype=np.float32) if keep_null else None
    count = np.zeros(V, dtype=np.int64)
    rots = [r() for r in rotations] if n_perm * S * n_f <= 2e7 else None
    for v0 in range(0, V, chunk):
        sl = slice(v0, min(V, v0 + chunk))
        z = _zscore_t(x[:, :, sl], dtype=np.float32)
        obs = _summarize(_loo_from_z(z), summary)
        observed[sl] = obs
        nn = np.einsum("stv,stv->sv", z, z, dtype=np.float64)
        zf = sfft.rfft(z, axis=1)
        del z
        for i in range(n_perm):
            y = zf * (rots[i] if rots is not None else rotations[i]())[:, :, None]
            tot = y.sum(axis=0)
            tt = wf @ (tot.real ** 2 + tot.imag ** 2)
            prod = y.real * tot.real
            prod += y.imag * tot.imag
            d = np.einsum("sfv,f->sv", prod, wf).astype(np.float64)
            stat = _summarize(_loo_r(d, nn, tt, T), summary)
            count[sl] += stat >= obs - 1e-6
            if keep_null:
                nulls[i, sl] = stat
    return count, observed, nulls


def isc_mask(p, alpha: float = 0.05) -> np.ndarray:
    """Voxels whose ISC is significant at FDR level ``alpha`` (Benjamini-Hochberg): bool (V,)."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise ParameterError("alpha", f"{alpha!r}", expected="a number in (0, 1)")
    return fdr(p, alpha)[0]  # one FDR for the package (llmbrain_utils.stats)
