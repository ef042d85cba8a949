"""Noise ceiling: leave-one-subject-out inter-subject correlation (:func:`isc_loo`), its
phase-randomisation or circular-shift null (:func:`isc_null`) and the FDR mask (:func:`isc_mask`).

:func:`isc_loo` and the circular null's per-surrogate work run compiled kernels
(:mod:`._isc_numba`) where numba is importable, with the numpy code's numbers bit for bit; the
numpy code below is the reference and the fallback (:data:`_USE_NUMBA` off, or no numba)."""

from __future__ import annotations

import functools

import numpy as np

from ..errors import ParameterError
from ..stats import fdr

_USE_NUMBA = True
"""Use the compiled kernels where numba is importable (False: the numpy code, the reference)."""


@functools.cache
def _load_kernels():
    """:mod:`._isc_numba` (numba's import, ~0.2 s, on the first ISC call only), or None."""
    try:
        from . import _isc_numba
    except ImportError:  # numba not installed: the numpy code
        return None
    return _isc_numba


def _kernels():
    """The compiled kernels module (:mod:`._isc_numba`, imported on first use), or None where
    numba is not importable or :data:`_USE_NUMBA` is off."""
    return _load_kernels() if _USE_NUMBA else None


def _rows(x: np.ndarray):
    """``x`` (S x T x V) as the kernels read it: ``(xf, st_s, st_t)``, a read-only 1-D view from
    its first element to its last and the element strides of subjects and TRs (row ``(s, t)``, V
    contiguous voxels, at ``s * st_s + t * st_t``), so a block ``x[:, :, a:b]`` of a memory map is
    read in place. None unless x is float32 or float64 with contiguous voxels and its rows in C
    order (other layouts are reduced by numpy in other orders: the numpy code then)."""
    S, T, V = x.shape
    isz = x.itemsize
    st = x.strides
    if (x.dtype not in (np.float32, np.float64) or st[2] != isz or st[1] % isz or st[0] % isz
            or st[1] < V * isz or st[0] < T * st[1]):
        return None
    n = (S - 1) * (st[0] // isz) + (T - 1) * (st[1] // isz) + V
    xf = np.lib.stride_tricks.as_strided(x, shape=(n,), strides=(isz,), writeable=False)
    return xf, st[0] // isz, st[1] // isz


def _check_data(data, name: str = "data", min_subjects: int = 2,
                finite: bool = True) -> np.ndarray:
    x = np.asarray(data)
    if x.ndim != 3:
        raise ParameterError(name, f"shape {x.shape}", expected="S x T x V (subjects, TRs, voxels)")
    if x.shape[0] < min_subjects:
        raise ParameterError(name, f"{x.shape[0]} subject(s)", expected=f">= {min_subjects} subjects")
    if x.shape[1] < 3:
        raise ParameterError(name, f"{x.shape[1]} TRs", expected=">= 3 TRs")
    if finite:
        _check_finite(x, name)
    return x


def _check_finite(x: np.ndarray, name: str = "data") -> None:
    for v0 in range(0, x.shape[2], _CHECK_BLOCK):  # in blocks: x may be a memory map
        if not np.isfinite(x[:, :, v0:v0 + _CHECK_BLOCK]).all():
            raise ParameterError(name, "holds NaN or inf", expected="finite values")


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
    arrays, not a float64 copy of the whole array, and the block's passes stay in cache. With
    numba, float32 or float64 data (voxels contiguous) go through a compiled kernel
    (:func:`._isc_numba.isc_loo`: the same numbers, one read of the data, which also checks
    that it is finite).

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
    x = _check_data(data, finite=False)
    _summarize(np.zeros((1, 1)), summary)
    S, T, V = x.shape
    r = np.empty((S, V))
    kernels = _kernels()
    rows = None if kernels is None else _rows(x)
    if rows is None:
        _check_finite(x)
        for v0 in range(0, V, _CHECK_BLOCK):  # per voxel: the same numbers as in one pass
            sl = slice(v0, v0 + _CHECK_BLOCK)
            r[:, sl] = _loo_from_z(_zscore_t(x[:, :, sl]))
        return _summarize(r, summary), r
    if not kernels.isc_loo(*rows, S, T, V, 1e-12 * (T ** 2), r):
        _check_finite(x)  # raises; passes where finite float64 data overflowed a sum (r: numpy's)
    if V % _CHECK_BLOCK == 1:  # numpy's last block, one voxel, is reduced in numpy's pairwise order
        r[:, -1:] = _loo_from_z(_zscore_t(x[:, :, -1:]))
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
        Voxels processed together (at most). ``circular`` computes every subject pair's
        circular cross-correlation once by FFT, in blocks of voxels small enough that one
        subject's pairs stay in cache (~2 MB: 19 voxels at 40 subjects x 326 TRs), and
        gathers the surrogates' inner products from it in batches (peak memory ~40 MB for 40
        subjects and 1,000 surrogates, whatever V). On one core, 1,000 surrogates x 326 TRs,
        with numba's kernels (the numpy code): ~0.7 s (1 s) for 8 subjects x 8,700 voxels,
        ~1.4 s (2 s) for 12, ~1.6 ms (2 ms) per voxel for 40, over half of it the FFTs (the
        former kernel took 2.6x, 2.6x and 4.8x the numpy code's time). ``phase`` works in
        the Fourier domain (inner products by Parseval, memory ~ 4 * S * T * chunk * 4 bytes,
        ~0.1 s per surrogate for 8 subjects).
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


_CIRC_PAIR_BYTES = 2 << 20   # one subject's block of C (its pairs with later subjects), in cache
_CIRC_BATCH_BYTES = 1 << 20  # a batch's gathered rows of C; a batch's LOO temporaries
_CIRC_SUMS_BYTES = 64 << 20  # at most, the sums a (S x n_perm x width float32)


def _zscore_nn(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_zscore_t` (float64, within rounding) in fewer passes, and ``nn_s = z_s . z_s``
    (T, or 0 for a constant series)."""
    z = np.array(x, dtype=np.float64)
    z -= (np.add.reduce(z, axis=1) / z.shape[1])[:, None, :]
    ss = np.einsum("stv,stv->sv", z, z)
    inv = np.divide(1.0, np.sqrt(ss / z.shape[1]), out=np.zeros_like(ss), where=ss > 0)
    z *= inv[:, None, :]
    return z, ss * inv * inv


def _loo_stat(a: np.ndarray, nn: np.ndarray, summary: str, T: int, q: np.ndarray) -> np.ndarray:
    """Summary over subjects of the LOO r of a batch of surrogates (b x width), from
    ``a_s = y_s . (tot - y_s)`` (S x b x width float32) and ``nn`` (S x width); ``q`` is a
    buffer shaped like ``a``.

    ``|tot - y_s|^2 = (N - nn_s) + A - 2 a_s`` (``N = sum nn``, ``A = sum a``) and
    ``r_s = a_s / sqrt(nn_s |tot - y_s|^2)``; 0 where ``nn_s |tot - y_s|^2 <= 1e-12 T^2``, as
    :func:`_loo_r` (which takes ``d_s = nn_s + a_s``).
    """
    thr = 1e-12 * T * T
    np.add(np.add.reduce(a, axis=0), (nn.sum(axis=0) - nn).astype(np.float32)[:, None, :], out=q)
    q -= a
    q -= a
    pos = nn[nn > 0]
    if pos.size and q.min() > thr / pos.min():  # every den > thr where nn > 0 (nn = 0 -> r = 0)
        np.sqrt(q, out=q)
        np.divide(a, q, out=q)
        isn = np.divide(1.0, np.sqrt(nn), out=np.zeros_like(nn), where=nn > 0)
        q *= isn.astype(np.float32)[:, None, :]
    else:
        q *= nn.astype(np.float32)[:, None, :]
        ok = q > thr
        np.sqrt(q, out=q, where=ok)
        np.divide(a, q, out=q, where=ok)
        q[~ok] = 0.0
    np.clip(q, -1.0, 1.0, out=q)
    if summary == "mean":  # float64 sum: the summary as exact as the float32 r allow
        return np.add.reduce(q, axis=0, dtype=np.float64) / a.shape[0]
    if summary == "median":
        return np.median(q, axis=0).astype(np.float64)
    return _summarize(q.astype(np.float64), summary)


def _isc_null_circular(x: np.ndarray, lags: np.ndarray, summary: str, chunk: int,
                       keep_null: bool):
    """Circular-shift null from every pair's circular cross-correlation (exact, no per-surrogate FFT).

    With ``y_s(t) = z_s(t - k_s)``, ``y_s . y_j = C_sj[(k_s - k_j) mod T]`` where
    ``C_sj[L] = sum_u z_s(u) z_j(u + L)``; so ``a_s = y_s . (tot - y_s) = sum_{j != s} C_sj[...]``
    and :func:`_loo_stat` gives the LOO r: a surrogate costs one gather of S(S-1)/2 rows of
    ``C`` (of ``width`` floats) per voxel and two additions per row, not an S x T x V pass.

    Per block of ``width`` voxels, subject by subject (``i``): the pairs ``(i, j > i)``'s ``C``
    by one inverse FFT of length ``nT`` (T where T is a fast FFT length; else
    ``next_fast_len(2T)``, ``[z_j, z_j, 0...]`` against ``[z_i, 0...]``, whose first T lags are
    the circular ones and whose spectrum is ``Z_j (1 + exp(-2 pi i f T / nT))``: one rfft per
    subject. T = 326 = 2 x 163 is a slow length, 675 a fast one), then per batch of surrogates
    the rows ``C_ij[(k_i - k_j) mod T]`` gathered at once: their sum over ``j`` goes to ``a_i``,
    each row to ``a_j``. ``width`` keeps one subject's block ``(S-1) x nT x width`` float32
    under ~2 MB (in cache): 110 voxels at 8 subjects x 326 TRs, 19 at 40 (and at most
    ``chunk``); memory is a few such blocks, ``a`` (``S x n_perm x width`` float32, <= 64 MB)
    and the lag table (``S(S-1)/2 x n_perm`` ints), whatever V. The sums are float32 (the
    former float64 ones, :func:`_isc_null_circular_reference`, give the same counts but where a
    surrogate lies within float rounding of the 1e-6 margin), the observed ISC float64 as in
    :func:`isc_loo`; per voxel the numbers do not depend on ``width`` or ``chunk``.

    With numba (:func:`_kernels`) three steps run compiled, bit for bit the numpy steps they
    replace (kept below: the reference and the fallback): a block's z-scores, ``nn``, observed
    LOO r and zero-padded float32 series (:func:`._isc_numba.zscore_nn_loo`, where the data's
    voxels are contiguous and the block has more than one), the gathers and sums into ``a``
    (:func:`._isc_numba.pair_sums`, pair after pair: each pair's rows of ``C`` stay in cache) and,
    for ``summary='mean'``, :func:`_loo_stat` with the counts (:func:`._isc_numba.null_mean`,
    on the same batches). The FFTs and cross spectra stay scipy's and numpy's.
    """
    from scipy import fft as sfft

    S, T, V = x.shape
    n_perm = lags.shape[0]
    if sfft.next_fast_len(T, real=True) == T:  # a fast length: the circular correlation directly
        nT, ext = T, np.complex64(1.0)
    else:  # the spectrum of [z_j, z_j, 0...] from that of [z_j, 0...]
        nT = sfft.next_fast_len(2 * T, real=True)
        ext = (1.0 + np.exp(-2j * np.pi * np.arange(nT // 2 + 1) * T / nT))[:, None]
        ext = ext.astype(np.complex64)
    n_f = nT // 2 + 1
    width = max(1, min(chunk, _CIRC_PAIR_BYTES // (4 * nT * (S - 1)),
                       _CIRC_SUMS_BYTES // (4 * S * n_perm)))
    # rows[i][j - i - 1, b]: the row of C_ij at surrogate b's lag in subject i's block
    rows = [np.ascontiguousarray(((lags[:, i, None] - lags[:, i + 1:]) % T
                                  + np.arange(S - 1 - i) * nT).T) for i in range(S - 1)]
    n_batch = max(1, min(n_perm, _CIRC_BATCH_BYTES // (4 * S * width)))  # surrogates per LOO batch
    observed = np.empty(V)
    nulls = np.empty((n_perm, V), dtype=np.float32) if keep_null else None
    count = np.zeros(V, dtype=np.int64)
    kernels = _kernels()
    xrows = None if kernels is None else _rows(x)
    if kernels is None:
        gathered = np.empty(max(_CIRC_BATCH_BYTES // 4, (S - 1) * width), dtype=np.float32)
    thr = 1e-12 * T * T  # as _loo_stat's (_loo_from_z's: 1e-12 * T ** 2)
    a = None
    for v0 in range(0, V, width):
        sl = slice(v0, min(V, v0 + width))
        w = sl.stop - sl.start
        if xrows is not None and w > 1:  # (numpy reduces a single voxel in another order)
            r, nn = np.empty((S, w)), np.empty((S, w))
            zp = np.empty((S, nT, w), dtype=np.float32)
            kernels.zscore_nn_loo(*xrows, S, T, v0, w, 1e-12 * (T ** 2), r, nn, zp)
            obs = _summarize(r, summary)
        else:
            z, nn = _zscore_nn(x[:, :, sl])
            obs = _summarize(_loo_from_z(z), summary)
            zp = np.zeros((S, nT, w), dtype=np.float32)
            zp[:, :T] = z
            del z
        observed[sl] = obs
        zf = sfft.rfft(zp, axis=1)
        del zp
        zc = np.conj(zf[:-1])
        zc *= ext
        if a is None or a.shape[2] != w:  # work arrays, reused block after block
            a = np.empty((S, n_perm, w), dtype=np.float32)
            cross = np.empty((S - 1, n_f, w), dtype=np.complex64)
            q = np.empty((S, n_batch, w), dtype=np.float32)
        for i in range(S - 1):
            n = S - 1 - i
            cc = sfft.irfft(np.multiply(zf[i + 1:], zc[i], out=cross[:n]), n=nT, axis=1,
                            overwrite_x=True).reshape(n * nT, w)  # C_ij[L] at row (j-i-1) nT + L
            if kernels is not None:  # the gathers and sums below, fused
                kernels.pair_sums(np.ascontiguousarray(cc), rows[i], i, a)
                continue
            step = max(1, min(n_perm, gathered.size // (n * w)))
            for b0 in range(0, n_perm, step):
                bs = slice(b0, min(n_perm, b0 + step))
                g = gathered[:n * (bs.stop - b0) * w].reshape(n, bs.stop - b0, w)
                np.take(cc, rows[i][:, bs], axis=0, out=g, mode="clip")
                if i == 0:  # the first subject's pairs reach every a_j: set, not add
                    np.add.reduce(g, axis=0, out=a[0, bs])
                    a[1:, bs] = g
                else:
                    a[i, bs] += np.add.reduce(g, axis=0)
                    a[i + 1:, bs] += g
        del cc
        if kernels is not None and summary == "mean":  # _loo_stat and the counts below, fused
            pos = nn[nn > 0]
            isn = np.divide(1.0, np.sqrt(nn), out=np.zeros_like(nn), where=nn > 0)
            kernels.null_mean(a, (nn.sum(axis=0) - nn).astype(np.float32), isn.astype(np.float32),
                              nn.astype(np.float32), thr / pos.min() if pos.size else np.inf,
                              np.float32(thr), n_batch, obs - 1e-6, count,
                              nulls if keep_null else np.empty((0, 0), dtype=np.float32), v0,
                              keep_null)
            continue
        for b0 in range(0, n_perm, n_batch):
            bs = slice(b0, min(n_perm, b0 + n_batch))
            stat = _loo_stat(a[:, bs], nn, summary, T, q[:, :bs.stop - b0])
            count[sl] += np.count_nonzero(stat >= obs - 1e-6, axis=0)
            if keep_null:
                nulls[bs, sl] = stat
    return count, observed, nulls


def _isc_null_circular_reference(x: np.ndarray, lags: np.ndarray, summary: str, chunk: int,
                                 keep_null: bool):
    """The former :func:`_isc_null_circular` (for tests only): FFT of length T, a float64
    ``inc @ g`` per surrogate over chunks of up to ~256 MB of ``C``; same counts within float
    rounding of the 1e-6 margin."""
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
