"""Nonparametric p-values per subject and voxel from permutations of the regressors' time axis
(:func:`permutation_pvalues`: circular shifts, block permutations or phase-randomised
surrogates; the in-sample OLS R2 or the held-out OLS r), and how many distinct circular shifts
a run has (:func:`n_circular_shifts`). The FDR over voxels is :func:`llmbrain_utils.stats.fdr`
(``encoding.fdr``)."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from .._validation import check_choice, check_int
from ..devices import resolve_device
from ..errors import ParameterError
from ._common import _as_subjects, _check_X, _chunks, _to_device, _to_numpy
from .cv import _ols_operator, _pearson, contiguous_folds


_PERM_METHODS = ("circular", "block", "phase")
_PERM_STATISTICS = ("r2_insample", "cv_r")


def _allowed_shifts(T: int, min_shift: int | None) -> np.ndarray:
    """The circular shifts ``min_shift <= s <= T - min_shift`` (default ``ceil(0.1 T)``)."""
    m = int(np.ceil(0.1 * T)) if min_shift is None else check_int("min_shift", min_shift, 1)
    if 2 * m > T:
        raise ParameterError("min_shift", f"is {m} for {T} TRs",
                             expected=f"at most T/2 = {T // 2}")
    return np.arange(m, T - m + 1)


def n_circular_shifts(T: int, min_shift: int | None = None) -> int:
    """How many distinct circular shifts :func:`permutation_pvalues` can draw for ``T`` TRs.

    ``T - 2 min_shift + 1`` (default ``min_shift = ceil(0.1 T)``): 261 for T = 326, so that
    circular-shift p-values cannot go below ``1 / 262`` whatever ``n_perm`` asks.
    """
    return int(_allowed_shifts(check_int("T", T, 2), min_shift).size)


def _phase_rotations(T: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``(n, T // 2 + 1)`` unit factors ``exp(i phi)`` of the rfft coefficients, phases uniform
    and independent, the DC (and, for even ``T``, the Nyquist) term kept: applied to a series'
    rfft and inverted, a phase-randomised surrogate with the same power spectrum. One row is
    one surrogate; applied to several columns at once it keeps their cross-spectrum too (the
    map is an orthogonal ``T x T`` matrix that fixes the constant vector)."""
    nf = T // 2 + 1
    ph = rng.uniform(0, 2 * np.pi, size=(n, nf))
    ph[:, 0] = 0.0
    if T % 2 == 0:
        ph[:, -1] = 0.0
    return np.exp(1j * ph)


def _permutations(T: int, n_perm: int, method: str, rng: np.random.Generator,
                  min_shift: int | None, block_size: int | None) -> np.ndarray:
    """Row orders of the regressors, ``(P, T)``; the identity is never among them."""
    if method == "circular":
        allowed = _allowed_shifts(T, min_shift)
        if n_perm >= allowed.size:
            if n_perm > allowed.size:
                warnings.warn(f"circular shifts: n_perm={n_perm} asked but only {allowed.size} "
                              f"distinct shifts exist for T={T} (min_shift={allowed[0]}); all "
                              f"{allowed.size} are used, the smallest p-value is "
                              f"1/{allowed.size + 1}; method='phase' gives independent draws",
                              RuntimeWarning, stacklevel=3)
            shifts = allowed
        else:
            shifts = np.sort(rng.choice(allowed, size=n_perm, replace=False))
        return (np.arange(T)[None, :] - shifts[:, None]) % T  # row t of X_perm = X[t - s]
    if block_size is None:
        b = max(2, int(np.ceil(T / 10)))
    else:
        b = check_int("block_size", block_size, 1)
    starts = np.arange(0, T, b)
    if starts.size < 2:
        raise ParameterError("block_size", f"is {b} for {T} TRs",
                             expected="at most T/2 (two blocks or more)")
    blocks = [np.arange(st, min(st + b, T)) for st in starts]
    if len(blocks) < 20 and math.factorial(len(blocks)) - 1 < n_perm:
        warnings.warn(f"block permutations: n_perm={n_perm} asked but only "
                      f"{math.factorial(len(blocks)) - 1} distinct orders of {len(blocks)} blocks "
                      "exist; the draws repeat", RuntimeWarning, stacklevel=3)
    out = np.empty((n_perm, T), dtype=np.intp)
    for i in range(n_perm):
        order = rng.permutation(len(blocks))
        while np.all(order == np.arange(len(blocks))):
            order = rng.permutation(len(blocks))
        out[i] = np.concatenate([blocks[j] for j in order])
    return out


def permutation_pvalues(X: Any, Y: Any, n_perm: int = 1000, method: str = "circular",
                        statistic: str = "r2_insample", seed: int = 0, *,
                        min_shift: int | None = None, block_size: int | None = None,
                        n_folds: int = 5, trim: int = 5, batch: int = 32,
                        chunk_voxels: int = 8192, device: str = "cpu",
                        dtype: Any = np.float32, progress: bool = False,
                        return_n_null: bool = False, stop_after: int | None = None,
                        return_draws: bool = False) -> np.ndarray | tuple:
    """Nonparametric p-value per voxel from permutations of the regressors' time axis.

    All regressors are moved together (their mutual structure is kept, their alignment with
    the BOLD is broken): ``"circular"`` shifts by ``s`` TRs with ``min_shift <= s <= T -
    min_shift`` (default ``min_shift = ceil(0.1 T)``; when ``n_perm`` is at least the number of
    such shifts, every shift is used once, exhaustively), or ``"block"`` permutations of
    contiguous blocks of ``block_size`` TRs (default ``ceil(T / 10)``). The p-value is
    ``(1 + #{null >= observed}) / (1 + n_null)``. Both schemes are exact for temporally
    independent BOLD and approximately valid for autocorrelated BOLD, slightly liberal when
    both series are smooth (measured rate of p <= 0.05 under the null, T = 200, regressors
    smoothed with a 2-TR Gaussian, BOLD with 1.5 TR: 0.060 circular, 0.062 blocks of 20 TRs,
    0.057 blocks of 40 TRs; longer blocks are safer). ``"phase"``: phase-randomised surrogates
    of the regressors, the same random phases (DC and Nyquist kept) for all ``k`` columns, so
    that their autocorrelation and cross-correlation (and ``X'X``) are kept; the draws are
    independent, so ``n_perm`` surrogates really give ``n_perm`` null values and p-values down
    to ``1 / (1 + n_perm)``. Exact for circular-stationary Gaussian BOLD; measured on null data
    (T = 326, 16 regressors smoothed with a 2-TR Gaussian, BOLD with 1.5 TR, 1,000 surrogates,
    40 data sets of 2,000 voxels): 0.056 of voxels at p <= 0.05 and 0.012 at p <= 0.01 (circular
    shifts: 0.061 and 0.014); with periodic (wrap-smoothed) data 0.051 and 0.010, so the small
    excess comes from the series' ends.

    Statistics: ``"r2_insample"``, the OLS in-sample R2 with intercept (any row permutation
    leaves ``X'X`` unchanged, so one QR of the centred regressors serves every permutation and
    a batch of permutations is one matrix product), or ``"cv_r"``, the held-out Pearson r of
    OLS on :func:`contiguous_folds` (``n_folds``, ``trim``; fixed folds on the BOLD's time axis;
    scored like :func:`cv_scores` with ``scoring="concatenated"``, unbiased for OLS), computed
    for a batch of permutations as one product with their prediction operators (slower:
    ``T x T`` per permutation instead of ``k x T``; about 2 s per 100 permutations of 2,000
    voxels at T = 300 on 2 CPU cores). The p-values of circular shifts cannot go below
    ``1 / (1 + T - 2 min_shift + 1)`` (1/242 for T = 300, 1/262 for T = 326; see
    :func:`n_circular_shifts`), which limits FDR discoveries over many voxels: asking for more
    shifts than exist warns and uses each once. Block permutations and phase surrogates give
    finer p-values.

    Parameters
    ----------
    X : array, shape (T, k)
        Regressors.
    Y : array, shape (T, V) or (S, T, V), or list of (T, V)
        BOLD.
    n_perm : int
        Number of permutations or surrogates (fewer when circular shifts run out: a warning).
    method : {"circular", "block", "phase"}
        Null scheme.
    statistic : {"r2_insample", "cv_r"}
        Statistic tested (one-sided: larger is more extreme).
    seed : int
        Seed of the permutations (the same for every subject and voxel).
    min_shift, block_size : int, optional
        See above.
    n_folds, trim : int
        Folds of ``"cv_r"``.
    batch : int
        Permutations per matrix product.
    chunk_voxels : int
        Voxels per block.
    device : {"cpu", "cuda"}
        torch on a GPU, numpy otherwise.
    dtype : numpy dtype
        Precision of the products: float32 (default) is 2-4x faster than float64; ties are
        counted with a relative tolerance of 1e-6 (1e-10 in float64), i.e. conservatively.
    progress : bool
        Show a tqdm bar over permutation batches.
    return_n_null : bool
        Also return the number of distinct null draws used.
    stop_after : int, optional
        Sequential Monte Carlo p-values (Besag & Clifford 1991; the "negative binomial" scheme
        of Winkler et al. 2016): a voxel's draws stop as soon as ``stop_after`` (``h``) null
        values have reached its observed statistic, after ``L`` draws, and its p-value is
        ``h / L``; a voxel that never gets there uses all ``P`` draws and keeps the fixed
        test's ``(1 + count) / (1 + P)``. The p-value stays valid (``P(p <= u) <= u`` under
        the null), every voxel whose fixed-test p is below ``(1 + h) / (1 + P)`` gets the very
        same p (it never stops), and the draws come in the same order, so only voxels far from
        significance are cut short: on null voxels the expected number of draws is about
        ``h (1 + ln(P / h))`` (56 for ``h = 10``, ``P = 1000``) instead of ``P``. None: every
        voxel uses all draws.
    return_draws : bool
        Also return the null draws each subject's voxel used (int, like the p-values).

    Returns
    -------
    ndarray, (V,) or (S, V)
        p-values in ``(0, 1]`` (denominator ``1 + P``, ``P`` the draws used; ``h / L`` for a
        voxel stopped by ``stop_after``).
    int
        Only with ``return_n_null``: distinct null draws (circular: the shifts used, at most
        :func:`n_circular_shifts`; block: distinct block orders among the ``P`` draws; phase:
        ``n_perm``).
    ndarray of int
        Only with ``return_draws``: the draws each voxel used (``P`` without ``stop_after``).
    """
    X = _check_X(X)
    T, k = X.shape
    subjects, stacked = _as_subjects(Y, T)
    n_perm = check_int("n_perm", n_perm, 1)
    method = check_choice("method", method, _PERM_METHODS)
    statistic = check_choice("statistic", statistic, _PERM_STATISTICS)
    batch = check_int("batch", batch, 1)
    chunk_voxels = check_int("chunk_voxels", chunk_voxels, 1)
    seed = check_int("seed", seed, 0)
    stop = None if stop_after is None else check_int("stop_after", stop_after, 1)
    device = resolve_device(device)
    rng = np.random.default_rng(seed)
    if method == "phase":
        from scipy import fft as sfft
        rot = _phase_rotations(T, n_perm, rng)
        P = n_null = n_perm                  # continuous independent draws: all distinct

        def surrogates(A: np.ndarray, sel: slice) -> np.ndarray:
            """(B, T, cols): the columns of A with the phases of draws ``sel``."""
            return sfft.irfft(rot[sel, :, None] * sfft.rfft(A, axis=0)[None], n=T, axis=1)
    else:
        perms = _permutations(T, n_perm, method, rng, min_shift, block_size)
        P = perms.shape[0]
        n_null = P if method == "circular" else int(np.unique(perms, axis=0).shape[0])

        def surrogates(A: np.ndarray, sel: slice) -> np.ndarray:
            """(B, T, cols): the rows of A in the orders of draws ``sel``."""
            return A[perms[sel]]
    Xc = X - X.mean(0)
    if np.linalg.matrix_rank(np.column_stack([np.ones(T), X])) < k + 1 or T <= k + 1:
        raise ParameterError("X", "regressors are linearly dependent or too many for T",
                             expected="linearly independent regressors, T > k + 1")
    if statistic == "cv_r":
        folds = contiguous_folds(T, n_folds, trim)
        for i, (train, _) in enumerate(folds):
            if train.size <= k + 1:
                raise ParameterError("n_folds", f"fold {i} has {train.size} training TRs for "
                                     f"{k} regressors + intercept", expected="more training TRs")

        def operators(Xs: np.ndarray) -> np.ndarray:
            """(B*T, T) stacked OLS cross-validation prediction operators of designs (B, T, k)."""
            ops = np.zeros((Xs.shape[0], T, T))
            for b, Xp in enumerate(Xs):
                for train, test in folds:
                    H = _ols_operator(Xp[train], Xp[test])
                    ops[b, test[:, None], train[None, :]] = H - H.mean(0)  # centred in block
            return ops.reshape(-1, T)

        def prepare(Yb: np.ndarray) -> np.ndarray:
            Yb = Yb.copy()
            for _, test in folds:
                Yb[test] -= Yb[test].mean(0)
            return Yb
    else:
        Q, _ = np.linalg.qr(Xc)
        # a permutation or a phase surrogate is an orthogonal T x T map R fixing the constant
        # vector: R Q is an orthonormal basis of the surrogate's centred regressors

        def operators(Qs: np.ndarray) -> np.ndarray:
            """(B*k, T) stacked transposed orthonormal bases (B, T, k) of the surrogates."""
            return Qs.transpose(0, 2, 1).reshape(-1, T)

        def prepare(Yb: np.ndarray) -> np.ndarray:
            return Yb - Yb.mean(0)

    width = k if statistic == "r2_insample" else T
    # voxels per block so that a batch's product stays below ~2e7 numbers
    vchunk = int(max(1, min(chunk_voxels, 2e7 // (batch * width))))
    eps = 1e-6 if np.dtype(dtype) == np.float32 else 1e-10

    def stat(Mdev, Ydev):
        prod = Mdev @ Ydev                                   # (B*width, Vc)
        prod = prod.reshape(-1, width, prod.shape[-1])
        if statistic == "r2_insample":
            return (prod * prod).sum(1) / (Ydev * Ydev).sum(0)  # Y centred
        return _pearson(prod, Ydev)

    S, V = len(subjects), subjects[0].shape[1]
    observed = np.empty((S, V))
    counts = np.zeros((S, V))
    base = X if statistic == "cv_r" else Q
    obs_dev_op = _to_device(operators(base[None]), device, dtype)
    batches = [slice(i, min(P, i + batch)) for i in range(0, P, batch)]
    if progress:
        from ..progress import bar
        batches = bar(batches, f"{statistic} permutations", unit="batch", show=True)
    # precompute observed statistics
    for s, y in enumerate(subjects):
        for sl in _chunks(V, vchunk):
            Yb = prepare(np.asarray(y[:, sl], dtype=np.float64))
            with np.errstate(invalid="ignore", divide="ignore"):
                observed[s, sl] = _to_numpy(stat(obs_dev_op, _to_device(Yb, device, dtype)))[0]
    draws = np.zeros((S, V), dtype=np.int64)
    p_stop = np.full((S, V), np.nan)      # h / L of the voxels stopped by ``stop_after``
    for sel in batches:
        M = _to_device(operators(surrogates(base, sel)), device, dtype)
        for s, y in enumerate(subjects):
            if stop is None:
                cols_of = _chunks(V, vchunk)
            else:  # the voxels still drawing, in blocks of vchunk: the products stay wide
                live = np.flatnonzero(np.isnan(p_stop[s]) & np.isfinite(observed[s]))
                cols_of = [live[i:i + vchunk] for i in range(0, live.size, vchunk)]
            for cols in cols_of:
                Yb = prepare(np.asarray(y[:, cols], dtype=np.float64))
                with np.errstate(invalid="ignore", divide="ignore"):
                    null = _to_numpy(stat(M, _to_device(Yb, device, dtype)))
                obs = observed[s, cols]
                ge = null >= obs - eps * np.abs(obs)
                if stop is None:
                    counts[s, cols] += ge.sum(0)
                    continue
                before = counts[s, cols]
                cum = before + np.cumsum(ge, axis=0)           # (B, cols) exceedances so far
                hit = cum[-1] >= stop
                first = np.argmax(cum >= stop, axis=0)          # the draw that reached h
                used = np.where(hit, first + 1, ge.shape[0])
                counts[s, cols] = np.where(hit, stop, cum[-1])
                draws[s, cols] += used
                idx = cols[hit]
                p_stop[s, idx] = stop / draws[s, idx]
    if stop is None:
        draws[:] = P
    else:
        draws[~np.isfinite(observed)] = 0
    p = np.where(np.isnan(p_stop), (1.0 + counts) / (1.0 + P), p_stop)
    p[~np.isfinite(observed)] = np.nan
    p, draws = (p, draws) if stacked else (p[0], draws[0])
    out = (p,) + ((n_null,) if return_n_null else ()) + ((draws,) if return_draws else ())
    return out[0] if len(out) == 1 else out
