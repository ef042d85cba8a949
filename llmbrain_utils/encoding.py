"""Voxel-wise encoding models (stage 4): the dictionary's atoms as fixed regressors of fMRI.

Every model here is fitted for all voxels at once (matrix algebra over a block of voxels,
blocks chunked for memory), never voxel by voxel:

* :func:`fit_ols` - ordinary least squares: coefficients (one signed map per atom), t, p, z and
  the in-sample R2 the method's paper reports; equal to ``statsmodels`` OLS and to nilearn's
  ``OLSModel``.
* :func:`fit_lasso` - the L1-penalised fit (the paper's likely ``lambda_f``) with SPAMS.
* :func:`contiguous_folds`, :func:`cv_scores` - held-out scores on contiguous blocks of TRs
  with a gap (``trim``) between training and test TRs; ridge with one alpha per voxel chosen
  by an inner contiguous cross-validation (himalaya ``RidgeCV``), or OLS; scored per block
  and averaged (unbiased under the null), or on the concatenated predictions.
* :func:`permutation_pvalues`, :func:`fdr` - nonparametric p-values from circular shifts or
  block permutations of the regressors' time axis, Benjamini-Hochberg FDR.
* :func:`ridge_null_r`, :func:`group_cv_test`, :func:`recovery_rates` - a group test of held-out
  r with one null for all subjects (phase-randomised surrogates of the BOLD by default; the
  subjects' average BOLD or their mean r), and its rates against a planted truth.
* :func:`noise_ceiling`, :func:`normalise_by_ceiling`, :func:`group_maps` - the noise ceiling of
  a single subject's prediction (from the leave-one-subject-out ISC), normalisation by it, and
  group maps over subjects.
* :func:`score_regressors`, :func:`layerwise_baseline` - the same cross-validated score for
  any regressor set (the layer-wise baseline and the control models use it).
* :func:`encode_subjects` - OLS and cross-validation for every subject, the stage's output.

Conventions: ``X`` is ``T x k`` (TRs x regressors), ``Y`` one subject's BOLD ``T x V`` or a
stack ``S x T x V`` (or a list of ``T x V`` arrays with the same V). Arrays may be memory-mapped;
only one block of voxels is read into memory at a time. Functions with a ``device`` parameter
run their matrix products with torch on ``"cuda"`` when it is available and fall back to the
CPU (numpy) otherwise.
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np

from ._validation import check_choice, check_int
from .stats import fdr  # noqa: F401 (encoding.fdr: the encoding's FDR)
from .devices import resolve_device
from .errors import ParameterError

log = logging.getLogger(__name__)

__all__ = [
    "OLSResult", "LassoResult", "CVResult", "GroupMaps", "EncodingResult",
    "fit_ols", "fit_lasso", "contiguous_folds", "cv_scores", "permutation_pvalues", "fdr",
    "noise_ceiling", "normalise_by_ceiling", "group_maps", "score_regressors", "layerwise_baseline",
    "encode_subjects", "DEFAULT_ALPHAS", "GroupTest", "ridge_null_r", "group_cv_test",
    "recovery_rates", "n_circular_shifts",
]

#: The default ridge grid: 15 values from 1e-2 to 1e5 (for z-scored regressors).
DEFAULT_ALPHAS = np.logspace(-2, 5, 15)

Folds = list[tuple[np.ndarray, np.ndarray]]  # (train_idx, test_idx) per fold

_MODELS = ("ridge", "ols")
_PERM_METHODS = ("circular", "block", "phase")
_PERM_STATISTICS = ("r2_insample", "cv_r")


# ---------------------------------------------------------------------------------------------
# validation helpers
# ---------------------------------------------------------------------------------------------

def _check_X(X: Any, name: str = "X") -> np.ndarray:
    """Return ``X`` as a finite float64 ``T x k`` array, or raise naming what is wrong."""
    try:
        arr = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ParameterError(name, f"cannot be read as numbers ({exc})",
                             expected="a T x k array of floats") from None
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ParameterError(name, f"has {arr.ndim} dimensions",
                             expected="a 2-D array, time points (TRs) x regressors")
    if arr.shape[0] < 3 or arr.shape[1] < 1:
        raise ParameterError(name, f"has shape {arr.shape}",
                             expected="at least 3 time points and 1 regressor")
    bad = ~np.isfinite(arr)
    if bad.any():
        t, j = np.argwhere(bad)[0]
        raise ParameterError(name, f"value {arr[t, j]} at TR {t}, regressor {j}",
                             expected="finite values only")
    return arr


def _as_subjects(Y: Any, T: int, name: str = "Y") -> tuple[list[np.ndarray], bool]:
    """Split ``Y`` into a list of ``T x V`` arrays (views, not copies) and check them.

    Returns the list and whether the input was a stack (3-D array or list of subjects).
    Every value is checked to be finite, one subject at a time.
    """
    if isinstance(Y, (list, tuple)):
        if len(Y) == 0:
            raise ParameterError(name, "is an empty list", expected="at least one subject")
        subjects = [y if isinstance(y, np.ndarray) else np.asarray(y) for y in Y]
        stacked = True
    else:
        arr = Y if isinstance(Y, np.ndarray) else np.asarray(Y)
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.ndim == 2:
            subjects, stacked = [arr], False
        elif arr.ndim == 3:
            subjects, stacked = [arr[s] for s in range(arr.shape[0])], True
        else:
            raise ParameterError(name, f"has {arr.ndim} dimensions",
                                 expected="T x V (one subject) or S x T x V (a stack)")
    V = None
    for s, y in enumerate(subjects):
        who = f"subject {s}: " if stacked else ""
        if y.ndim != 2:
            raise ParameterError(name, f"{who}has {y.ndim} dimensions", expected="T x V")
        if not np.issubdtype(y.dtype, np.number) or np.issubdtype(y.dtype, np.complexfloating):
            raise ParameterError(name, f"{who}has dtype {y.dtype}", expected="real numbers")
        if y.shape[0] != T:
            raise ParameterError(
                name, f"{who}has {y.shape[0]} time points (TRs) but X has {T}",
                expected="the same number of TRs on axis 0 of X and of each subject's Y")
        if V is None:
            V = y.shape[1]
        elif y.shape[1] != V:
            raise ParameterError(name, f"{who}has {y.shape[1]} voxels, subject 0 has {V}",
                                 expected="the same voxels (mask) for every subject")
        if V == 0:
            raise ParameterError(name, f"{who}has no voxels", expected="V >= 1")
        for start in range(0, V, 50_000):
            block = np.asarray(y[:, start:start + 50_000])
            bad = ~np.isfinite(block)
            if bad.any():
                t, v = np.argwhere(bad)[0]
                raise ParameterError(
                    name, f"{who}value {block[t, v]} at TR {t}, voxel {start + v}",
                    expected="finite values only (drop or fill voxels outside the brain)")
    return subjects, stacked


def _check_alphas(alphas: Any) -> np.ndarray:
    try:
        a = np.atleast_1d(np.asarray(alphas, dtype=np.float64))
    except (TypeError, ValueError):
        raise ParameterError("alphas", f"is {alphas!r}", expected="positive numbers") from None
    if a.ndim != 1 or a.size == 0 or not np.all(np.isfinite(a)) or np.any(a <= 0):
        raise ParameterError("alphas", f"is {alphas!r}",
                             expected="a non-empty 1-D array of finite positive numbers")
    return np.sort(a)


def _to_device(a: np.ndarray, device: str, dtype: Any = np.float64):
    """A numpy array on ``device``: itself on the CPU, a torch tensor on a GPU."""
    a = np.ascontiguousarray(a, dtype=dtype)
    if device == "cpu":
        return a
    import torch
    return torch.from_numpy(a).to(device)


def _to_numpy(a) -> np.ndarray:
    if isinstance(a, np.ndarray):
        return a
    return a.detach().cpu().numpy()


def _chunks(V: int, size: int) -> Iterator[slice]:
    for start in range(0, V, size):
        yield slice(start, min(V, start + size))


def _design(X: np.ndarray, intercept: bool) -> np.ndarray:
    return np.column_stack([np.ones(X.shape[0]), X]) if intercept else X


def _t_to_p_z(t: np.ndarray, dof: int) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided p and the signed z with the same tail probability (no underflow to inf)."""
    from scipy import special
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        abs_t = np.abs(t)
        sf = special.stdtr(dof, -abs_t)  # upper tail of Student's t
        p = np.minimum(1.0, 2.0 * sf)
        logsf = np.log(sf)
        far = (sf < 1e-300) & np.isfinite(abs_t)
        if far.any():  # tail beyond double precision: leading term of the incomplete beta
            a, x = dof / 2.0, dof / (dof + abs_t[far] ** 2)
            logsf[far] = (np.log(0.5) + a * np.log(x) + 0.5 * np.log1p(-x) - np.log(a)
                          - special.betaln(a, 0.5))
        z = np.sign(t) * -special.ndtri_exp(logsf) + 0.0  # + 0.0: no negative zeros
    return p, z


# ---------------------------------------------------------------------------------------------
# OLS
# ---------------------------------------------------------------------------------------------

@dataclass
class OLSResult:
    """Voxel-wise OLS fit. Shapes: ``(k, V)``/``(V,)`` for one subject, a leading ``S`` axis
    for a stack.

    Attributes
    ----------
    beta, t, p, z : ndarray
        Coefficient of each regressor, its t statistic, two-sided p and the z score with the
        same tail probability.
    r2 : ndarray
        In-sample coefficient of determination (centred when ``intercept``).
    dof : int
        Residual degrees of freedom, ``T - k - intercept``.
    intercept : ndarray or None
        The intercept per voxel, or None when fitted without one.
    """

    beta: np.ndarray
    t: np.ndarray
    p: np.ndarray
    z: np.ndarray
    r2: np.ndarray
    dof: int
    intercept: np.ndarray | None


def _ols_block(Xd_dev, Rinv_dev, Q_dev, diag_dev, Yb, intercept: bool, dof: int):
    """OLS of one block of voxels; works on numpy arrays and on torch tensors alike."""
    B = Rinv_dev @ (Q_dev.T @ Yb)
    resid = Yb - Xd_dev @ B
    rss = (resid * resid).sum(0)
    se = (rss[None, :] / dof * diag_dev[:, None]) ** 0.5
    t = B / se
    if intercept:
        Yc = Yb - Yb.mean(0)
        tss = (Yc * Yc).sum(0)
    else:
        tss = (Yb * Yb).sum(0)
    r2 = 1.0 - rss / tss
    return B, t, r2


def fit_ols(X: Any, Y: Any, intercept: bool = True, *, chunk_voxels: int = 20_000,
            device: str = "cpu", dtype: Any = np.float64) -> OLSResult:
    """Fit ``Y = [1, X] beta + e`` by ordinary least squares for every voxel at once.

    Parameters
    ----------
    X : array, shape (T, k)
        Regressors (the dictionary's atoms, HRF-convolved), shared by all voxels.
    Y : array, shape (T, V) or (S, T, V), or list of (T, V)
        BOLD time series (z-scored per voxel); may be memory-mapped.
    intercept : bool
        Add a constant regressor (not reported in ``beta``; see ``OLSResult.intercept``).
    chunk_voxels : int
        Voxels solved per block (bounds the memory to a few ``T x chunk_voxels`` arrays).
    device : {"cpu", "cuda"}
        Where the matrix products run (torch on a GPU; CPU fallback).
    dtype : numpy dtype
        Dtype of the returned arrays (computations are float64).

    Returns
    -------
    OLSResult
        Coefficients, t, p, z and in-sample R2; voxels with zero variance get NaN R2.

    Raises
    ------
    ParameterError
        Non-finite values, mismatched time axes, collinear regressors or no residual
        degrees of freedom, all before any fitting.
    """
    X = _check_X(X)
    T, k = X.shape
    subjects, stacked = _as_subjects(Y, T)
    chunk_voxels = check_int("chunk_voxels", chunk_voxels, 1)
    device = resolve_device(device)
    Xd = _design(X, intercept)
    p_cols = Xd.shape[1]
    dof = T - p_cols
    if dof < 1:
        raise ParameterError("X", f"has {k} regressors{' + intercept' if intercept else ''} "
                             f"for {T} time points: no residual degrees of freedom",
                             expected="more TRs than regressors")
    rank = np.linalg.matrix_rank(Xd)
    if rank < p_cols:
        raise ParameterError("X", f"regressors are linearly dependent (rank {rank} of {p_cols} "
                             f"columns{' with the intercept' if intercept else ''})",
                             expected="linearly independent, non-constant regressors")
    from scipy.linalg import solve_triangular
    Q, R = np.linalg.qr(Xd)
    Rinv = solve_triangular(R, np.eye(p_cols))
    diag = (Rinv ** 2).sum(1)  # diag((X'X)^-1)
    Xd_dev, Q_dev, Rinv_dev, diag_dev = (_to_device(a, device) for a in (Xd, Q, Rinv, diag))

    S, V = len(subjects), subjects[0].shape[1]
    beta = np.empty((S, k, V), dtype=dtype)
    tt = np.empty((S, k, V), dtype=dtype)
    r2 = np.empty((S, V), dtype=dtype)
    icpt = np.empty((S, V), dtype=dtype) if intercept else None
    for s, y in enumerate(subjects):
        for sl in _chunks(V, chunk_voxels):
            Yb = _to_device(y[:, sl], device)
            with np.errstate(invalid="ignore", divide="ignore"):
                B, t, rr = (_to_numpy(a) for a in
                            _ols_block(Xd_dev, Rinv_dev, Q_dev, diag_dev, Yb, intercept, dof))
            off = 1 if intercept else 0
            beta[s, :, sl] = B[off:]
            tt[s, :, sl] = t[off:]
            r2[s, sl] = rr
            if intercept:
                icpt[s, sl] = B[0]
    p, z = _t_to_p_z(tt.astype(np.float64, copy=False), dof)
    out = OLSResult(beta=beta, t=tt, p=p.astype(dtype, copy=False), z=z.astype(dtype, copy=False),
                    r2=r2, dof=dof, intercept=icpt)
    if not stacked:
        out = OLSResult(beta=beta[0], t=tt[0], p=out.p[0], z=out.z[0], r2=r2[0], dof=dof,
                        intercept=None if icpt is None else icpt[0])
    return out


# ---------------------------------------------------------------------------------------------
# Lasso (SPAMS)
# ---------------------------------------------------------------------------------------------

@dataclass
class LassoResult:
    """Voxel-wise lasso fit: ``beta`` (k, V) [or (S, k, V)], in-sample ``r2``, ``intercept``."""

    beta: np.ndarray
    r2: np.ndarray
    intercept: np.ndarray | None
    lam: float


def fit_lasso(X: Any, Y: Any, lam: float, *, intercept: bool = True, lambda2: float = 0.0,
              chunk_voxels: int = 20_000, num_threads: int = -1) -> LassoResult:
    """Fit every voxel by an L1-penalised regression with SPAMS (``spams.lasso``, LARS).

    Each voxel ``y`` (centred, as is ``X``, when ``intercept``) solves::

        min_b 0.5 ||y - X b||_2^2 + lam ||b||_1 + 0.5 lambda2 ||b||_2^2

    the paper's second sparsity weight ``lambda_f`` on the fixed dictionary. In scikit-learn
    terms, ``Lasso(alpha=lam / T)`` for ``lambda2 = 0``.

    Parameters
    ----------
    X : array, shape (T, k)
        Regressors.
    Y : array, shape (T, V) or (S, T, V), or list of (T, V)
        BOLD time series.
    lam : float
        L1 weight (>= 0), in the units of the un-normalised squared error above.
    intercept : bool
        Centre ``X`` and ``Y`` first and report the intercept.
    lambda2 : float
        Optional L2 weight (elastic net), 0 by default.
    chunk_voxels : int
        Voxels passed to SPAMS per call.
    num_threads : int
        SPAMS threads (-1: all cores).

    Returns
    -------
    LassoResult
        Dense coefficients, in-sample R2 and intercepts.
    """
    X = _check_X(X)
    T, k = X.shape
    subjects, stacked = _as_subjects(Y, T)
    try:
        lam = float(lam)
        lambda2 = float(lambda2)
    except (TypeError, ValueError):
        raise ParameterError("lam", f"is {lam!r}", expected="a number >= 0") from None
    if not np.isfinite(lam) or lam < 0:
        raise ParameterError("lam", f"is {lam}", expected="a finite number >= 0")
    if not np.isfinite(lambda2) or lambda2 < 0:
        raise ParameterError("lambda2", f"is {lambda2}", expected="a finite number >= 0")
    chunk_voxels = check_int("chunk_voxels", chunk_voxels, 1)
    import spams

    xm = X.mean(0) if intercept else np.zeros(k)
    D = np.asfortranarray(X - xm)
    S, V = len(subjects), subjects[0].shape[1]
    beta = np.zeros((S, k, V))
    r2 = np.empty((S, V))
    icpt = np.empty((S, V)) if intercept else None
    for s, y in enumerate(subjects):
        for sl in _chunks(V, chunk_voxels):
            Yb = np.asarray(y[:, sl], dtype=np.float64)
            ym = Yb.mean(0) if intercept else np.zeros(Yb.shape[1])
            Yc = np.asfortranarray(Yb - ym)
            B = spams.lasso(Yc, D=D, lambda1=lam, lambda2=lambda2, mode=2,
                            numThreads=num_threads).toarray()
            beta[s, :, sl] = B
            resid = Yc - D @ B
            rss = (resid ** 2).sum(0)
            tss = (Yc ** 2).sum(0) if intercept else (Yb ** 2).sum(0)
            with np.errstate(invalid="ignore", divide="ignore"):
                r2[s, sl] = 1.0 - rss / tss
            if intercept:
                icpt[s, sl] = ym - xm @ B
    if not stacked:
        return LassoResult(beta=beta[0], r2=r2[0], intercept=None if icpt is None else icpt[0],
                           lam=lam)
    return LassoResult(beta=beta, r2=r2, intercept=icpt, lam=lam)


# ---------------------------------------------------------------------------------------------
# folds and cross-validation
# ---------------------------------------------------------------------------------------------

def contiguous_folds(T: int, n_folds: int = 5, trim: int = 5) -> Folds:
    """Split ``T`` time points into contiguous test blocks, never shuffled.

    Parameters
    ----------
    T : int
        Number of time points (TRs).
    n_folds : int
        Number of blocks (2 <= n_folds <= T); block sizes differ by at most one TR.
    trim : int
        TRs removed from the training set on each side of the test block, so that
        training and test TRs are at least ``trim + 1`` TRs apart (autocorrelation guard).

    Returns
    -------
    list of (train_idx, test_idx)
        Sorted integer arrays; the test blocks partition ``range(T)`` in order.
    """
    T = check_int("T", T, 2)
    n_folds = check_int("n_folds", n_folds, 2, expected=f"an integer from 2 to T={T}")
    if n_folds > T:
        raise ParameterError("n_folds", f"is {n_folds} for {T} time points",
                             expected=f"an integer from 2 to T={T}")
    trim = check_int("trim", trim, 0)
    folds = []
    for i, test in enumerate(np.array_split(np.arange(T), n_folds)):
        lo, hi = test[0] - trim, test[-1] + trim
        train = np.concatenate([np.arange(0, max(lo, 0)), np.arange(min(hi + 1, T), T)])
        if train.size == 0:
            raise ParameterError("trim", f"is {trim}: fold {i} (TRs {test[0]}-{test[-1]}) keeps "
                                 "no training TRs", expected="a smaller trim or more TRs")
        folds.append((train.astype(np.intp), test.astype(np.intp)))
    return folds


def _inner_splits(train: np.ndarray, n_inner: int, trim: int) -> Folds:
    """Contiguous folds over the training TRs, as positions into ``train``.

    The inner test blocks are contiguous runs of training positions; training positions
    whose TR lies within ``trim`` TRs of the block's TR span are dropped.
    """
    n = train.size
    if n_inner > n:
        raise ParameterError("inner_folds", f"is {n_inner} for {n} training TRs",
                             expected="at most the number of training TRs")
    out = []
    for pos in np.array_split(np.arange(n), n_inner):
        lo, hi = train[pos[0]] - trim, train[pos[-1]] + trim
        keep = np.flatnonzero((train < lo) | (train > hi))
        if keep.size == 0:
            raise ParameterError("trim", f"is {trim}: an inner fold keeps no training TRs",
                                 expected="a smaller trim, fewer inner_folds or more TRs")
        out.append((keep.astype(np.intp), pos.astype(np.intp)))
    return out


def _check_folds(folds: Any, T: int) -> Folds:
    out = []
    seen = np.zeros(T, dtype=bool)
    try:
        items = list(folds)
    except TypeError:
        raise ParameterError("folds", f"is {folds!r}",
                             expected="a list of (train_idx, test_idx) pairs") from None
    if len(items) < 2:
        raise ParameterError("folds", f"has {len(items)} fold(s)", expected="at least 2 folds")
    for i, pair in enumerate(items):
        try:
            train, test = (np.asarray(a) for a in pair)
        except (TypeError, ValueError):
            raise ParameterError("folds", f"fold {i} is not a (train_idx, test_idx) pair") from None
        for what, idx in (("train", train), ("test", test)):
            if idx.ndim != 1 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer):
                raise ParameterError("folds", f"fold {i}: {what} indices are empty or not integers")
            if idx.min() < 0 or idx.max() >= T:
                raise ParameterError("folds", f"fold {i}: {what} indices outside 0..{T - 1}")
        if np.intersect1d(train, test).size:
            raise ParameterError("folds", f"fold {i}: train and test share TRs",
                                 expected="disjoint train and test indices")
        if seen[test].any():
            raise ParameterError("folds", f"fold {i}: test TRs already tested in another fold",
                                 expected="disjoint test blocks")
        seen[test] = True
        out.append((np.sort(train).astype(np.intp), np.sort(test).astype(np.intp)))
    return out


@dataclass
class CVResult:
    """Cross-validated (held-out) scores per voxel, see :func:`cv_scores` for ``scoring``.

    Attributes
    ----------
    r : ndarray, (V,) or (S, V)
        Pearson correlation of held-out predictions with the data.
    r2 : ndarray, (V,) or (S, V)
        ``1 - SSE / SST`` of the same predictions (SST around the data's mean).
    best_alphas : ndarray or None, (n_folds, V) or (S, n_folds, V)
        Ridge alpha chosen per fold and voxel (None for OLS).
    folds : list of (train_idx, test_idx)
        The outer folds used.
    predictions : ndarray or None
        Held-out predictions (T, V) or (S, T, V) when asked for (NaN on untested TRs).
    """

    r: np.ndarray
    r2: np.ndarray
    best_alphas: np.ndarray | None
    folds: list
    predictions: np.ndarray | None = None


def _fold_design(X: np.ndarray, train: np.ndarray, test: np.ndarray, transformer: Any,
                 standardize: bool) -> tuple[np.ndarray, np.ndarray]:
    """Regressors of one fold: transformer and z-scoring fitted on the training TRs only."""
    Xtr, Xte = X[train], X[test]
    if transformer is not None:
        from sklearn.base import clone
        tr = clone(transformer)
        Xtr = np.asarray(tr.fit_transform(Xtr), dtype=np.float64)
        Xte = np.asarray(tr.transform(Xte), dtype=np.float64)
    if standardize:
        mu, sd = Xtr.mean(0), Xtr.std(0)
        sd[sd == 0] = 1.0
        Xtr, Xte = (Xtr - mu) / sd, (Xte - mu) / sd
    return Xtr, Xte


def _ols_operator(Xtr: np.ndarray, Xte: np.ndarray) -> np.ndarray:
    """Matrix ``H`` (n_test x n_train) with OLS-with-intercept predictions ``H @ Y_train``."""
    xm = Xtr.mean(0)
    A = np.linalg.pinv(Xtr - xm)  # rows orthogonal to the constant: centres Y implicitly
    return (Xte - xm) @ A + 1.0 / Xtr.shape[0]


@contextlib.contextmanager
def _himalaya_backend(device: str):
    """Use himalaya's numpy backend on the CPU, its torch_cuda backend on a GPU; restore after."""
    from himalaya.backend import get_backend, set_backend
    previous = get_backend().name
    wanted = "numpy" if device == "cpu" else "torch_cuda"
    set_backend(wanted, on_error="raise")
    try:
        yield get_backend()
    finally:
        set_backend(previous, on_error="warn")


def _pearson(a, b):
    """Column-wise Pearson correlation along axis -2 (works for numpy and torch)."""
    kw = {"keepdims": True} if isinstance(a, np.ndarray) else {"keepdim": True}
    a = a - a.mean(-2, **kw)
    b = b - b.mean(-2, **kw)
    return (a * b).sum(-2) / ((a * a).sum(-2) * (b * b).sum(-2)) ** 0.5


def _r2(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``1 - SSE / SST`` per column, SST around the column's mean."""
    return 1.0 - ((y - pred) ** 2).sum(0) / ((y - y.mean(0)) ** 2).sum(0)


def cv_scores(X: Any, Y: Any, model: str = "ridge", n_folds: int = 5, trim: int = 5,
              alphas: Any = DEFAULT_ALPHAS, inner_folds: int = 3, *, folds: Any = None,
              transformer: Any = None, standardize: bool = True,
              scoring: str = "fold_mean", center: str = "fold", chunk_voxels: int = 20_000,
              device: str = "cpu", return_predictions: bool = False,
              solver_dtype: str = "float32") -> CVResult:
    """Held-out encoding scores on contiguous folds (ridge with per-voxel alpha, or OLS).

    For each outer fold the model is fitted on the training TRs (``trim`` TRs away from the
    test block) and predicts the test block. Scores per voxel (Pearson r and R2):

    * ``scoring="fold_mean"`` (default): the mean over test blocks of each block's score.
      Unbiased under the null (mean r about 0 for voxels the regressors do not explain).
    * ``scoring="concatenated"``: one score of the predictions concatenated over the blocks.
      With ``center="fold"`` data and predictions are first centred within each block: a
      fold's intercept is its training TRs' mean, anti-correlated with the test block's mean
      for a z-scored run, and those offsets alone give a heavily shrunk null ridge a mean r of
      about -0.07 (T = 300, 5 folds, ``center="none"``). Even centred, concatenated ridge
      scores stay biased below 0 under the null when alpha is chosen per fold: each fold's
      prediction scale depends on the others' test data, and blocks that disagree with the
      rest shrink the other folds' predictions and dominate the concatenation (measured mean
      r: -0.04, T = 300, k = 64, white noise; -0.06, T = 300, k = 16, smooth noise; none for
      OLS or one fixed alpha). Prefer ``fold_mean`` to compare models.

    Judge significance with :func:`permutation_pvalues`, not against 0.

    Ridge uses himalaya's ``RidgeCV`` (one alpha per voxel, the alpha with the lowest mean
    squared error over ``inner_folds`` contiguous inner folds of the training TRs, with the
    same ``trim``; intercept fitted; then refitted on all training TRs), by default in float32
    on every device (``solver_dtype``; 2.3x faster than float64 on one core; measured on the
    default data: held-out r within 2e-4 of float64's, the same alpha in all but 0.002% of
    voxels; ``benchmarks/encoding.py`` measures both). OLS fits an intercept.

    Parameters
    ----------
    X : array, shape (T, k)
        Regressors.
    Y : array, shape (T, V) or (S, T, V), or list of (T, V)
        BOLD; a stack is scored subject by subject with the same folds.
    model : {"ridge", "ols"}
        Regression model.
    n_folds, trim : int
        Outer folds, see :func:`contiguous_folds` (ignored when ``folds`` is given, except
        that ``trim`` still spaces the inner folds).
    alphas : array
        Ridge grid (positive; for standardised regressors).
    inner_folds : int
        Inner contiguous folds used to choose alpha (ridge only).
    folds : list of (train_idx, test_idx), optional
        Outer folds to reuse (e.g. the atom model's), instead of ``n_folds``/``trim``.
    transformer : scikit-learn transformer, optional
        Applied to the regressors, cloned and fitted on each fold's training TRs only (e.g.
        ``PCA(64)`` for a layer's units).
    standardize : bool
        z-score each regressor with the training TRs' mean and SD in every fold.
    scoring : {"fold_mean", "concatenated"}
        Average the test blocks' scores (default), or score the concatenated predictions.
    center : {"fold", "none"}
        For concatenated scores: centre data and predictions within each test block before
        scoring (default), or not.
    chunk_voxels : int
        Voxels per block.
    device : {"cpu", "cuda"}
        himalaya backend ``torch_cuda`` / torch on a GPU, numpy otherwise.
    return_predictions : bool
        Keep the held-out predictions.
    solver_dtype : {"float32", "float64"}
        Precision of the ridge solver (the scores are computed in float64).

    Returns
    -------
    CVResult
    """
    X = _check_X(X)
    T = X.shape[0]
    subjects, stacked = _as_subjects(Y, T)
    model = check_choice("model", model, _MODELS)
    center = check_choice("center", center, ("fold", "none"))
    scoring = check_choice("scoring", scoring, ("concatenated", "fold_mean"))
    trim = check_int("trim", trim, 0)
    if folds is None:
        folds = contiguous_folds(T, n_folds, trim)
    else:
        folds = _check_folds(folds, T)
    chunk_voxels = check_int("chunk_voxels", chunk_voxels, 1)
    if model == "ridge":
        alphas = _check_alphas(alphas)
        inner_folds = check_int("inner_folds", inner_folds, 2)
    solver_dtype = np.dtype(check_choice("solver_dtype", solver_dtype, ("float32", "float64")))
    device = resolve_device(device)

    designs = []
    for i, (train, test) in enumerate(folds):
        Xtr, Xte = _fold_design(X, train, test, transformer, standardize)
        if model == "ols" and train.size <= Xtr.shape[1] + 1:
            raise ParameterError("n_folds", f"fold {i} has {train.size} training TRs for "
                                 f"{Xtr.shape[1]} regressors + intercept",
                                 expected="more training TRs than regressors (fewer folds, "
                                 "smaller trim, or ridge)")
        inner = _inner_splits(train, inner_folds, trim) if model == "ridge" else None
        H = _ols_operator(Xtr, Xte) if model == "ols" else None
        designs.append((train, test, Xtr, Xte, inner, H))

    S, V = len(subjects), subjects[0].shape[1]
    tested = np.sort(np.concatenate([f[1] for f in folds]))
    r = np.empty((S, V))
    r2 = np.empty((S, V))
    best = np.empty((S, len(folds), V)) if model == "ridge" else None
    preds_out = np.full((S, T, V), np.nan, dtype=np.float32) if return_predictions else None

    ctx = _himalaya_backend(device) if model == "ridge" else contextlib.nullcontext()
    with ctx, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*n_samples < n_features.*")
        for s, y in enumerate(subjects):
            for sl in _chunks(V, chunk_voxels):
                Yb = np.asarray(y[:, sl], dtype=np.float64)
                pred = np.zeros_like(Yb)
                for i, (train, test, Xtr, Xte, inner, H) in enumerate(designs):
                    if model == "ridge":
                        pred[test], best[s, i, sl] = _ridge_fold(Xtr, Xte, Yb[train], alphas,
                                                                 inner, solver_dtype)
                    else:
                        pred[test] = _to_numpy(_to_device(H, device)
                                               @ _to_device(Yb[train], device))
                if preds_out is not None:
                    preds_out[s, tested, sl] = pred[tested]
                with np.errstate(invalid="ignore", divide="ignore"):
                    if scoring == "fold_mean":
                        r[s, sl] = np.mean([_pearson(pred[te], Yb[te]) for _, te in folds], 0)
                        r2[s, sl] = np.mean([_r2(pred[te], Yb[te]) for _, te in folds], 0)
                        continue
                    if center == "fold":
                        Yb = Yb.copy()
                        for _, test in folds:
                            Yb[test] -= Yb[test].mean(0)
                            pred[test] -= pred[test].mean(0)
                    yt, pt = Yb[tested], pred[tested]
                    r[s, sl] = _pearson(pt, yt)
                    r2[s, sl] = _r2(pt, yt)
    if not stacked:
        return CVResult(r=r[0], r2=r2[0], best_alphas=None if best is None else best[0],
                        folds=folds, predictions=None if preds_out is None else preds_out[0])
    return CVResult(r=r, r2=r2, best_alphas=best, folds=folds, predictions=preds_out)


def _ridge_fold(Xtr, Xte, Ytr, alphas, inner, dtype=np.float32):
    """One outer fold of himalaya RidgeCV (per-target alpha) in ``dtype`` on the active
    backend: test predictions (float64) and the chosen alphas."""
    from himalaya.ridge import RidgeCV
    # targets in batches of 2000 keep himalaya's (alphas x test TRs x targets) predictions in
    # cache-sized blocks (another 10% on one core)
    est = RidgeCV(alphas=alphas, fit_intercept=True, cv=inner,
                  solver_params=dict(warn=False, n_targets_batch=2000))
    est.fit(Xtr.astype(dtype), Ytr.astype(dtype))
    pred = _to_numpy(est.predict(Xte.astype(dtype))).astype(np.float64)
    # the chosen alphas as the grid's exact (float64) values
    chosen = np.log(_to_numpy(est.best_alphas_).astype(np.float64))
    grid = np.asarray(alphas, dtype=np.float64)
    return pred, grid[np.abs(np.log(grid)[:, None] - chosen[None]).argmin(0)]


# ---------------------------------------------------------------------------------------------
# permutation tests and FDR
# ---------------------------------------------------------------------------------------------

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
                        return_n_null: bool = False) -> np.ndarray | tuple[np.ndarray, int]:
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

    Returns
    -------
    ndarray, (V,) or (S, V)
        p-values in ``(0, 1]`` (denominator ``1 + P``, ``P`` the draws used).
    int
        Only with ``return_n_null``: distinct null draws (circular: the shifts used, at most
        :func:`n_circular_shifts`; block: distinct block orders among the ``P`` draws; phase:
        ``n_perm``).
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
        from .progress import bar
        batches = bar(batches, f"{statistic} permutations", unit="batch", show=True)
    # precompute observed statistics
    for s, y in enumerate(subjects):
        for sl in _chunks(V, vchunk):
            Yb = prepare(np.asarray(y[:, sl], dtype=np.float64))
            with np.errstate(invalid="ignore", divide="ignore"):
                observed[s, sl] = _to_numpy(stat(obs_dev_op, _to_device(Yb, device, dtype)))[0]
    for sel in batches:
        M = _to_device(operators(surrogates(base, sel)), device, dtype)
        for s, y in enumerate(subjects):
            for sl in _chunks(V, vchunk):
                Yb = prepare(np.asarray(y[:, sl], dtype=np.float64))
                with np.errstate(invalid="ignore", divide="ignore"):
                    null = _to_numpy(stat(M, _to_device(Yb, device, dtype)))
                obs = observed[s, sl]
                counts[s, sl] += (null >= obs - eps * np.abs(obs)).sum(0)
    p = (1.0 + counts) / (1.0 + P)
    p[~np.isfinite(observed)] = np.nan
    p = p if stacked else p[0]
    return (p, n_null) if return_n_null else p


# ---------------------------------------------------------------------------------------------
# group test of held-out scores: one null of the group statistic for all subjects
# ---------------------------------------------------------------------------------------------

_GROUP_STATISTICS = ("mean_r", "average_bold")
_GROUP_TAILS = ("pooled", "voxel", "gaussian")
_NULLS = ("phase", "shift_bold", "shift_regressors")


def _shift_list(T: int, n_perm: int, min_shift: int | None, seed: int) -> np.ndarray:
    """The circular shifts of :func:`permutation_pvalues` (all allowed ones when n_perm is large)."""
    orders = _permutations(T, n_perm, "circular", np.random.default_rng(seed), min_shift, None)
    return (-orders[:, 0]) % T  # row 0 of a shifted X is X[-s]


def _check_fold_alphas(alphas: Any, S: int, n_folds: int, V: int) -> np.ndarray:
    a = np.asarray(alphas, dtype=np.float64)
    if a.shape == (n_folds, V):
        a = np.broadcast_to(a, (S, n_folds, V))
    if a.shape != (S, n_folds, V) or not np.all(np.isfinite(a)) or np.any(a <= 0):
        raise ParameterError("alphas", f"has shape {a.shape}",
                             expected=f"finite positive ridge penalties of shape ({S}, {n_folds}, "
                             f"{V}) or ({n_folds}, {V}), e.g. CVResult.best_alphas")
    return a


def ridge_null_r(X: Any, Y: Any, alphas: Any, *, null: str = "phase", n_perm: int = 100,
                 seed: int = 0, min_shift: int | None = None, folds: Any = None,
                 n_folds: int = 5, trim: int = 5, batch: int = 16, chunk_voxels: int = 2048,
                 device: str = "cpu", dtype: Any = np.float32,
                 progress: bool = False) -> np.ndarray:
    """Fold-mean held-out ridge r, observed and under a null, with fixed per-voxel penalties.

    Every fold is refitted with the penalty ``alphas[subject, fold, voxel]`` (standardised
    regressors, intercept) and scored as ``cv_scores(..., scoring="fold_mean")`` scores it: row
    0 of the result (the observed alignment, with the penalties ``cv_scores`` chose) equals its
    ``r``. Rows ``1..`` are the null, the same surrogate for every subject and voxel:

    * ``"phase"`` (default): the BOLD with randomised Fourier phases (uniform, the DC and
      Nyquist terms kept): a stationary series with the BOLD's power spectrum, drawn afresh for
      each surrogate, so that the null values are independent draws. The regressors and the
      folds stay as they are.
    * ``"shift_bold"``: the BOLD read circularly shifted by ``s`` TRs (``min_shift <= s <= T -
      min_shift``), regressors and folds fixed.
    * ``"shift_regressors"``: the regressors shifted by ``s``, the folds fixed on the BOLD's
      axis (the classic circular-shift test).

    Circular shifts are not independent draws: neighbouring shifts give nearly the same value,
    and with the shifts near 0 left out the observed value is less like the null values than
    they are like each other, so a voxel's shift null is too narrow (measured with the default
    run's 64 atoms, T = 326, 1,500 voxels of white noise, fixed penalty: null SD 5 % too small,
    6-7 % of voxels at p <= 0.05 instead of 5 %, for shifted regressors and shifted BOLD alike;
    AR(1) noise: 7 %). Phase surrogates are independent draws: 5.1-5.8 % (white, AR(1) and
    drifting noise); the tests check the default on null data.

    One SVD of each fold's training regressors serves every voxel and penalty (one per shift
    for ``"shift_regressors"``), so a batch of surrogates is two matrix products per block of
    voxels, ``(n_train + n_test) k`` multiply-adds per voxel, fold and surrogate.

    Parameters
    ----------
    X : array, shape (T, k)
        Regressors.
    Y : array, shape (T, V) or (S, T, V), or list of (T, V)
        BOLD.
    alphas : array, shape (S, n_folds, V) or (n_folds, V)
        Ridge penalty per subject, fold and voxel (``CVResult.best_alphas``).
    null : {"phase", "shift_bold", "shift_regressors"}
        See above.
    n_perm : int
        Surrogates (shifts: capped at the number of allowed shifts; 0: only the observed).
    seed : int
        Seed of the phases or of the choice of shifts.
    min_shift : int, optional
        Smallest circular shift (default ``ceil(0.1 T)``).
    folds, n_folds, trim
        Outer folds, see :func:`cv_scores`.
    batch : int
        Surrogates per matrix product.
    chunk_voxels : int
        Voxels per block.
    device : {"cpu", "cuda"}
        torch on a GPU, numpy otherwise.
    dtype : numpy dtype
        Precision of the products with the BOLD (float32 by default; the SVDs are float64).
    progress : bool
        tqdm bar over batches of surrogates.

    Returns
    -------
    ndarray, (1 + n_surrogates, S, V)
        Held-out r: row 0 observed, then one row per surrogate (NaN for constant voxels).
    """
    from scipy import fft as sfft

    X = _check_X(X)
    T, k = X.shape
    subjects, _ = _as_subjects(Y, T)
    S, V = len(subjects), subjects[0].shape[1]
    folds = contiguous_folds(T, n_folds, trim) if folds is None else _check_folds(folds, T)
    A = _check_fold_alphas(alphas, S, len(folds), V)
    null = check_choice("null", null, _NULLS)
    n_perm = check_int("n_perm", n_perm, 0)
    seed = check_int("seed", seed, 0)
    batch = check_int("batch", batch, 1)
    chunk_voxels = check_int("chunk_voxels", chunk_voxels, 1)
    device = resolve_device(device)
    rng = np.random.default_rng(seed)
    if null == "phase":
        nf = T // 2 + 1
        rot = np.concatenate([np.ones((1, nf)), _phase_rotations(T, n_perm, rng)])  # row 0: data
        n_total = rot.shape[0]
        eye_f = sfft.rfft(np.eye(T), axis=0)                        # (nf, T)
    else:
        shifts = _shift_list(T, n_perm, min_shift, seed) if n_perm else np.zeros(0, np.intp)
        shifts = np.concatenate([[0], shifts]).astype(np.intp)
        n_total = shifts.size

    def fold_svd(Xs, train, test):
        """Standardised fold design: U' (k, n_train), singular values (k,), X_test W (n_test, k)."""
        Xtr, Xte = _fold_design(Xs, train, test, None, True)
        U, s_, Wt = np.linalg.svd(Xtr, full_matrices=False)
        return U.T, s_, Xte @ Wt.T

    fixed = [fold_svd(X, tr, te) for tr, te in folds] if null != "shift_regressors" else None
    out = np.zeros((n_total, S, V))
    starts = list(range(0, n_total, batch))
    if progress:
        from .progress import bar
        starts = bar(starts, f"{null} null", unit="batch", show=True)
    for b0 in starts:
        bsl = slice(b0, min(n_total, b0 + batch))
        B = bsl.stop - bsl.start
        # surrogate b of the BOLD is R[b] @ Y (R: T x T, orthogonal); for shifted regressors R = I
        if null == "phase":
            R = sfft.irfft(rot[bsl, :, None] * eye_f[None], n=T, axis=1)          # (B, T, T)
        elif null == "shift_bold":
            R = np.zeros((B, T, T))
            R[np.arange(B)[:, None], np.arange(T)[None, :],
              (np.arange(T)[None, :] + shifts[bsl, None]) % T] = 1.0
        else:
            R = np.eye(T)[None]
        designs = []
        for f, (train, test) in enumerate(folds):
            if null == "shift_regressors":
                parts = [fold_svd(X[(np.arange(T) - s_) % T], train, test) for s_ in shifts[bsl]]
                Ut, sv, XteW = (np.stack(z) for z in zip(*parts))
            else:
                Ut, sv, XteW = (z[None] for z in fixed[f])
            Qtr = Ut @ R[:, train, :]                     # (B, k, T): U' of the surrogate's rows
            Rte = R[:, test, :]                           # (B or 1, n_test, T)
            Rte = Rte - Rte.mean(1, keepdims=True)        # centres the test block
            designs.append((_to_device(Qtr.reshape(-1, T), device, dtype),
                            _to_device(Rte.reshape(-1, T), device, dtype),
                            _to_device(XteW, device, dtype),
                            _to_device(sv[:, :, None], device, dtype), Qtr.shape[0], Rte.shape[0]))
        for s, y in enumerate(subjects):
            for sl in _chunks(V, chunk_voxels):
                Yb = _to_device(np.asarray(y[:, sl]), device, dtype)
                Vc = Yb.shape[1]
                for f, (train, test) in enumerate(folds):
                    Qtr_d, Rte_d, XteW_d, sv_d, bq, br = designs[f]
                    n_te = test.size
                    C = (Qtr_d @ Yb).reshape(bq, k, Vc)                     # (B, k, Vc)
                    Yte = (Rte_d @ Yb).reshape(br, n_te, Vc)                # centred test block
                    a_d = _to_device(A[s, f, sl][None, None, :], device, dtype)
                    pred = XteW_d @ (C * (sv_d / (sv_d * sv_d + a_d)))     # (B, n_test, Vc)
                    # Pearson r with the centred test block: sums, no centred copy of pred
                    if device == "cpu":
                        Yte = np.broadcast_to(Yte, pred.shape)
                        num = np.einsum("btv,btv->bv", pred, Yte).astype(np.float64)
                        ss = np.einsum("btv,btv->bv", pred, pred).astype(np.float64)
                        yy = np.einsum("btv,btv->bv", Yte, Yte).astype(np.float64)
                    else:
                        num = _to_numpy((pred * Yte).sum(1)).astype(np.float64)
                        ss = _to_numpy((pred * pred).sum(1)).astype(np.float64)
                        yy = _to_numpy((Yte * Yte).sum(1)).astype(np.float64)
                    mean = _to_numpy(pred.sum(1)).astype(np.float64) / n_te
                    with np.errstate(invalid="ignore", divide="ignore"):
                        r = num / np.sqrt(np.maximum(ss - n_te * mean * mean, 0.0) * yy)
                    out[bsl, s, sl] += np.broadcast_to(r, (B, Vc))
    return out / len(folds)


@dataclass
class GroupTest:
    """A group test of held-out r against a null drawn once for all subjects.

    Attributes
    ----------
    observed : ndarray (V,)
        The group statistic: the mean over subjects of the held-out r (``"mean_r"``), or the
        held-out r of the subjects' average BOLD (``"average_bold"``); NaN where not tested.
    p : ndarray (V,)
        One-sided p-value (larger is more extreme), all tested voxels one family.
    z : ndarray (V,)
        The observed value standardised by the mean and SD of the voxel's null values.
    null_mean, null_sd : ndarray (V,)
        Mean and SD of the voxel's null values.
    values : ndarray (1 + n_null, V)
        The group statistic, observed (row 0) and on every surrogate.
    subject_r : ndarray (S, V)
        Held-out r of each subject (or of the average BOLD, S = 1), from the same arithmetic as
        the null.
    alphas : ndarray (S, n_folds, V)
        The fixed ridge penalties of the observed and every surrogate fit.
    n_null : int
        Null values per voxel.
    statistic, null, tail : str
    """

    observed: np.ndarray
    p: np.ndarray
    z: np.ndarray
    null_mean: np.ndarray
    null_sd: np.ndarray
    values: np.ndarray
    subject_r: np.ndarray
    alphas: np.ndarray
    n_null: int
    statistic: str
    null: str
    tail: str

    def pvalues(self, mask: Any = None, tail: str | None = None) -> np.ndarray:
        """p-values with only the voxels of ``mask`` (tested ones) as the family and, for the
        pooled tail, as the pool (e.g. the ISC mask); NaN elsewhere."""
        V = self.observed.shape[0]
        m = _check_mask(mask, V) & np.isfinite(self.observed)
        tail = check_choice("tail", self.tail if tail is None else tail, _GROUP_TAILS)
        out = np.full(V, np.nan)
        if m.any():
            out[m] = _group_p(self.values[:, m], tail)[0]
        return out


def _group_p(values: np.ndarray, tail: str) -> tuple[np.ndarray, np.ndarray]:
    """One-sided p and z of row 0 of ``values`` (1 + n_null, V) against rows 1.. (see
    :func:`group_cv_test`)."""
    obs, null = values[0], values[1:]
    zz = _loo_z(values)
    z = zz[0]
    if tail == "voxel":
        p = (1.0 + (null >= obs - 1e-6 * np.abs(obs)).sum(0)) / (1.0 + null.shape[0])
    elif tail == "gaussian":
        from scipy.stats import norm
        p = norm.sf(z)
    else:
        pool = np.sort(zz[1:][np.isfinite(zz[1:])])
        above = pool.size - np.searchsorted(pool, z - 1e-9, side="left")
        p = (1.0 + above) / (1.0 + pool.size)
    return np.where(np.isfinite(z), p, np.nan), z


def _loo_z(values: np.ndarray) -> np.ndarray:
    """Rows standardised against the null rows only, per column.

    Row 0 (the observed value) by the mean and SD (ddof 1) of the null rows 1..n; each null row
    by the mean and SD of the *other null rows* (leave-one-out within the null, row 0 left out).
    Leaving row 0 in a null row's reference (as before) let a strong observed value inflate
    that reference's SD and shrink the voxel's standardised null: in a family that is mostly
    signal the pooled null became too narrow: with 90% of the voxels 8 SD above their null and
    100 surrogates, 10% of the null voxels reached ``p <= 0.05`` (tests/test_encoding.py).
    """
    v = np.asarray(values, dtype=np.float64)
    null = v[1:]
    n = null.shape[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        c = null.mean(0)                                  # centre first (no cancellation)
        d = v - c
        dn = d[1:]
        s1, s2 = dn.sum(0), (dn * dn).sum(0)
        out = np.empty_like(v)
        out[0] = d[0] / np.sqrt(np.maximum(s2 - s1 * s1 / n, 0.0) / (n - 1))
        m = (s1 - dn) / (n - 1)
        var = (s2 - dn * dn - (n - 1) * m * m) / (n - 2)
        out[1:] = (dn - m) / np.sqrt(np.maximum(var, 0.0))
    return out


def group_cv_test(X: Any, Y: Any, *, statistic: str = "average_bold", alphas: Any = None,
                  mask: Any = None, null: str = "phase", n_perm: int = 100, seed: int = 0,
                  tail: str = "pooled", min_shift: int | None = None, folds: Any = None,
                  n_folds: int = 5, trim: int = 5, ridge_alphas: Any = DEFAULT_ALPHAS,
                  inner_folds: int = 3, batch: int = 16, chunk_voxels: int = 2048,
                  device: str = "cpu", progress: bool = False) -> GroupTest:
    """Group-level significance of held-out ridge r, with one null for all subjects.

    The statistic is recomputed on surrogates of the BOLD (see :func:`ridge_null_r`; phase
    randomisation by default), **the same surrogate for every subject and voxel**, so the null
    keeps the BOLD's autocorrelation and its correlation across voxels and subjects; only its
    alignment with the regressors is broken. Statistics:

    * ``"average_bold"`` (default): the held-out r of the subjects' average BOLD (z-scored per
      voxel): its stimulus-locked part is what the listeners share, with the noise reduced by
      about ``sqrt(S)``; a fixed-effects test (is there a shared signal the regressors
      predict?), ``S`` times cheaper than ``"mean_r"``;
    * ``"mean_r"``: the mean over subjects of each subject's fold-mean held-out r (the score
      the stage reports), a test of the average subject's prediction.

    The ridge penalties are those the nested cross-validation chose for the data (``alphas``,
    or chosen here with :func:`cv_scores` when None), held fixed for every surrogate: re-running
    the inner cross-validation per surrogate would cost a full fit each. The inner folds see only
    training TRs, so the penalty carries no information about a held-out block; the false
    positive rate on null data is measured in the tests.

    p-values (one-sided): ``tail="voxel"``, the voxel's own null, ``(1 + #{null >= observed})
    / (1 + n_null)`` (never below ``1 / (1 + n_null)``, too coarse for FDR over thousands of
    voxels unless ``n_perm`` is large); ``"pooled"`` (default), the observed z compared with
    every tested voxel's standardised null values (the observed value standardised by the mean
    and SD of the voxel's null values, each null value by the mean and SD of the voxel's *other
    null* values, the observed one left out so that a strong signal does not widen the
    reference and narrow the pooled null: voxels differ in the centre and spread of their null,
    e.g. the negative mean held-out r of slowly drifting voxels, much less in its shape);
    ``"gaussian"``, the normal tail of the observed z.

    Parameters
    ----------
    X : array, shape (T, k)
        Regressors.
    Y : array, shape (S, T, V), or list of (T, V)
        Every subject's BOLD (S >= 2).
    statistic : {"average_bold", "mean_r"}
        See above.
    alphas : array, optional
        Ridge penalties for every voxel: ``(S, n_folds, V)`` for ``"mean_r"`` (e.g. the
        stage's ``CVResult.best_alphas``), ``(n_folds, V)`` for ``"average_bold"``.
    mask : array of bool (V,), optional
        Voxels tested (the others get NaN); all by default.
    null : {"phase", "shift_bold", "shift_regressors"}
        Surrogates, see :func:`ridge_null_r`.
    n_perm : int
        Surrogates (>= 10).
    seed : int
        Seed of the surrogates.
    tail : {"pooled", "voxel", "gaussian"}
        See above.
    min_shift, folds, n_folds, trim, ridge_alphas, inner_folds
        Shifts, folds, and the grid and inner folds used when ``alphas`` is None (see
        :func:`cv_scores`).
    batch, chunk_voxels, device, progress
        See :func:`ridge_null_r`.

    Returns
    -------
    GroupTest
    """
    X = _check_X(X)
    T, k = X.shape
    subjects, stacked = _as_subjects(Y, T)
    statistic = check_choice("statistic", statistic, _GROUP_STATISTICS)
    tail = check_choice("tail", tail, _GROUP_TAILS)
    null = check_choice("null", null, _NULLS)
    S, V = len(subjects), subjects[0].shape[1]
    if not stacked or S < 2:
        raise ParameterError("Y", f"has {S} subject(s)", expected="a stack of at least 2 subjects")
    n_perm = check_int("n_perm", n_perm, 10)
    m = _check_mask(mask, V)
    folds = contiguous_folds(T, n_folds, trim) if folds is None else _check_folds(folds, T)
    cols = np.flatnonzero(m)
    if statistic == "average_bold":
        avg = np.zeros((T, cols.size))
        for y in subjects:
            avg += np.asarray(y[:, cols], dtype=np.float64)
        sd = avg.std(0)
        data = [(avg - avg.mean(0)) / np.where(sd > 0, sd, 1.0)]
    else:
        data = [np.asarray(y[:, cols], dtype=np.float64) for y in subjects]
    if alphas is None:
        A = cv_scores(X, np.stack(data), folds=folds, trim=trim, alphas=ridge_alphas,
                      inner_folds=inner_folds, device=device).best_alphas
    else:
        A = _check_fold_alphas(alphas, len(data), len(folds), V)[:, :, cols]
    vals = ridge_null_r(X, data, A, null=null, n_perm=n_perm, seed=seed, min_shift=min_shift,
                        folds=folds, batch=batch, chunk_voxels=chunk_voxels, device=device,
                        progress=progress)
    g = vals.mean(1)                                              # (1 + n_null, Vm)
    p, z = _group_p(g, tail)

    def full(a):
        o = np.full(a.shape[:-1] + (V,), np.nan)
        o[..., cols] = a
        return o

    return GroupTest(observed=full(g[0]), p=full(p), z=full(z), null_mean=full(g[1:].mean(0)),
                     null_sd=full(g[1:].std(0, ddof=1)), values=full(g), subject_r=full(vals[0]),
                     alphas=full(np.asarray(A, float)), n_null=int(g.shape[0] - 1),
                     statistic=statistic, null=null, tail=tail)


def recovery_rates(reject: Any, planted: Any, p: Any = None, alpha: float = 0.05) -> dict:
    """How a voxel-wise test did against a planted truth (synthetic data).

    Parameters
    ----------
    reject : array of bool (V,)
        Discoveries (e.g. ``fdr(p)[0]``).
    planted : array of bool (V,)
        Voxels that carry a planted signal.
    p : array (V,), optional
        The uncorrected p-values; NaN marks untested voxels (left out of every rate).
    alpha : float
        Level of the uncorrected rate.

    Returns
    -------
    dict
        ``sensitivity`` (share of tested planted voxels discovered), ``fpr`` (share of tested
        voxels outside discovered), ``fdp`` (false discoveries / discoveries, 0 with none),
        ``discoveries``, ``tested_planted``, ``tested_outside``, and with ``p``,
        ``uncorrected_rate_outside`` (share of tested voxels outside with p <= alpha: about
        alpha for a valid test).
    """
    rej = np.asarray(reject)
    pl = np.asarray(planted)
    if rej.dtype != bool or pl.dtype != bool or rej.shape != pl.shape or rej.ndim != 1:
        raise ParameterError("reject/planted", f"have shapes {rej.shape}, {pl.shape} and dtypes "
                             f"{rej.dtype}, {pl.dtype}", expected="two boolean arrays of shape (V,)")
    tested = np.ones_like(pl) if p is None else np.isfinite(np.asarray(p, dtype=np.float64))
    if p is not None and np.asarray(p).shape != pl.shape:
        raise ParameterError("p", f"has shape {np.asarray(p).shape}", expected=f"shape {pl.shape}")
    inside, outside = tested & pl, tested & ~pl
    n_disc = int((rej & tested).sum())
    out = {"sensitivity": float(rej[inside].mean()) if inside.any() else float("nan"),
           "fpr": float(rej[outside].mean()) if outside.any() else float("nan"),
           "fdp": float((rej & outside).sum() / n_disc) if n_disc else 0.0,
           "discoveries": n_disc, "tested_planted": int(inside.sum()),
           "tested_outside": int(outside.sum())}
    if p is not None:
        pv = np.asarray(p, dtype=np.float64)
        out["uncorrected_rate_outside"] = (float((pv[outside] <= alpha).mean())
                                           if outside.any() else float("nan"))
    return out


# ---------------------------------------------------------------------------------------------
# noise ceiling and group maps
# ---------------------------------------------------------------------------------------------

def normalise_by_ceiling(score: Any, ceiling: Any, min_ceiling: float = 0.05) -> np.ndarray:
    """Divide a score by the noise ceiling, NaN where the ceiling is below ``min_ceiling``.

    Parameters
    ----------
    score : array
        Per-voxel score (e.g. held-out r), shape broadcastable with ``ceiling``.
    ceiling : array
        Noise ceiling in the same units, e.g. :func:`noise_ceiling` of the leave-one-subject-out
        ISC for a single subject's held-out r (the LOO ISC itself is too low a ceiling for one
        subject: a perfect model would score above 1).
    min_ceiling : float
        Voxels with a ceiling below this (or not finite) get NaN.

    Returns
    -------
    ndarray
        ``score / ceiling`` (broadcast shape).
    """
    score = np.asarray(score, dtype=np.float64)
    ceiling = np.asarray(ceiling, dtype=np.float64)
    try:
        shape = np.broadcast_shapes(score.shape, ceiling.shape)
    except ValueError:
        raise ParameterError("ceiling", f"has shape {ceiling.shape}, score {score.shape}",
                             expected="shapes that broadcast (one value per voxel)") from None
    try:
        min_ceiling = float(min_ceiling)
    except (TypeError, ValueError):
        raise ParameterError("min_ceiling", f"is {min_ceiling!r}",
                             expected="a number > 0") from None
    if not np.isfinite(min_ceiling) or min_ceiling <= 0:
        raise ParameterError("min_ceiling", f"is {min_ceiling}", expected="a finite number > 0")
    c = np.broadcast_to(ceiling, shape)
    ok = np.isfinite(c) & (c >= min_ceiling)
    out = np.full(shape, np.nan)
    out[ok] = np.broadcast_to(score, shape)[ok] / c[ok]
    return out


def noise_ceiling(isc_loo: Any, n_subjects: int) -> np.ndarray:
    """The noise ceiling of a single subject's prediction, from the leave-one-subject-out ISC.

    The leave-one-out ISC correlates a subject with the mean of the other ``S - 1`` subjects;
    the noise left in that mean lowers it, so it underestimates how well the shared signal
    itself predicts one subject. With a shared signal plus independent noise of equal variance
    in every subject, and ``rho`` the pairwise (between-subject) correlation, the mean of ``S -
    1`` subjects has the Spearman-Brown reliability ``R = (S - 1) rho / (1 + (S - 2) rho)``, and
    a subject correlates with it by ``r_loo = sqrt(rho R)`` (the product of the square roots of
    the two reliabilities; see Nastase et al. 2019 on leave-one-out against pairwise ISC), so::

        r_loo^2 = (S - 1) rho^2 / (1 + (S - 2) rho)
        rho     = ((S - 2) r^2 + sqrt((S - 2)^2 r^4 + 4 (S - 1) r^2)) / (2 (S - 1))

    and the shared signal correlates with one subject's data by ``sqrt(rho)``: the ceiling
    returned. A perfect model (predicting the shared signal) scores about 1 after
    :func:`normalise_by_ceiling` with this ceiling (``benchmarks/ceiling_calibration.py``).
    With ``S = 2`` the ceiling is ``sqrt(r_loo)``; ``r_loo = 1`` gives 1.

    Parameters
    ----------
    isc_loo : array
        Leave-one-subject-out ISC per voxel (e.g. :func:`llmbrain_utils.fmri.isc_loo`'s mean over
        subjects), at most 1.
    n_subjects : int
        Number of subjects ``S`` the ISC was computed from (>= 2).

    Returns
    -------
    ndarray
        ``sqrt(rho)`` per voxel (same shape as ``isc_loo``), NaN where the ISC is not finite or
        is <= 0.

    Raises
    ------
    ParameterError
        If ``isc_loo`` is not numeric or exceeds 1, or ``n_subjects`` is not an int >= 2.
    """
    S = check_int("n_subjects", n_subjects, 2, expected="an integer >= 2 (subjects)")
    try:
        r = np.array(isc_loo, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ParameterError("isc_loo", f"cannot be read as numbers ({exc})",
                             expected="correlations (<= 1)") from None
    fin = np.isfinite(r)
    if (r[fin] > 1.0 + 1e-6).any():
        raise ParameterError("isc_loo", f"has values up to {r[fin].max():.6g}",
                             expected="correlations (<= 1)")
    ok = fin & (r > 0)
    r2 = np.minimum(r[ok], 1.0) ** 2
    rho = ((S - 2) * r2 + np.sqrt((S - 2) ** 2 * r2 * r2 + 4 * (S - 1) * r2)) / (2 * (S - 1))
    out = np.full(r.shape, np.nan)
    out[ok] = np.sqrt(np.minimum(rho, 1.0))
    return out


@dataclass
class GroupMaps:
    """Group statistics of subjects' maps (atoms x voxels).

    Attributes
    ----------
    mean : ndarray (k, V)
        Mean over subjects.
    t, p : ndarray (k, V)
        One-sample t statistic against 0 and its two-sided p (``scipy.stats.ttest_1samp``).
    sign_agreement : ndarray (k, V)
        Share of subjects whose coefficient has the sign of the group mean.
    consistency : ndarray (k,)
        Per atom, mean pairwise Pearson correlation of subjects' maps over voxels.
    n_subjects : int
    """

    mean: np.ndarray
    t: np.ndarray
    p: np.ndarray
    sign_agreement: np.ndarray
    consistency: np.ndarray
    n_subjects: int


def group_maps(betas: Any, mask: Any = None) -> GroupMaps:
    """Combine subjects' maps: mean, one-sample t and p, sign agreement and consistency.

    Parameters
    ----------
    betas : array, shape (S, k, V)
        Each subject's map per atom (e.g. ``fit_ols(...).beta`` of a stack), S >= 2.
    mask : array of bool (V,), optional
        Voxels used for the inter-subject consistency (all by default).

    Returns
    -------
    GroupMaps
    """
    from scipy import stats
    B = np.asarray(betas)
    if B.ndim != 3:
        raise ParameterError("betas", f"has {B.ndim} dimensions", expected="S x k x V")
    S, k, V = B.shape
    if S < 2:
        raise ParameterError("betas", f"has {S} subject(s)", expected="at least 2 subjects")
    if not np.all(np.isfinite(B)):
        s, j, v = np.argwhere(~np.isfinite(B))[0]
        raise ParameterError("betas", f"value {B[s, j, v]} for subject {s}, atom {j}, voxel {v}",
                             expected="finite values")
    if mask is None:
        mask = np.ones(V, dtype=bool)
    else:
        mask = np.asarray(mask)
        if mask.shape != (V,) or mask.dtype != bool:
            raise ParameterError("mask", f"has shape {mask.shape} and dtype {mask.dtype}",
                                 expected=f"a boolean array of shape ({V},)")
    mean = np.empty((k, V))
    tt = np.empty((k, V))
    pp = np.empty((k, V))
    agree = np.empty((k, V))
    cons = np.full(k, np.nan)
    iu = np.triu_indices(S, 1)
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        for j in range(k):
            b = np.asarray(B[:, j, :], dtype=np.float64)
            res = stats.ttest_1samp(b, 0.0, axis=0)
            m = b.mean(0)
            mean[j], tt[j], pp[j] = m, res.statistic, res.pvalue
            agree[j] = (np.sign(b) == np.sign(m)[None, :]).mean(0)
            bm = b[:, mask]
            if bm.shape[1] >= 2:
                c = np.corrcoef(bm)[iu]
                if np.isfinite(c).any():
                    cons[j] = np.nanmean(c)
    return GroupMaps(mean=mean, t=tt, p=pp, sign_agreement=agree, consistency=cons,
                     n_subjects=S)


# ---------------------------------------------------------------------------------------------
# any regressor set, the layer-wise baseline
# ---------------------------------------------------------------------------------------------

def _subject_names(subjects: Any, S: int) -> list[str]:
    if subjects is None:
        return [f"sub-{i:02d}" for i in range(S)]
    names = [str(s) for s in subjects]
    if len(names) != S:
        raise ParameterError("subjects", f"has {len(names)} names for {S} subjects",
                             expected="one name per subject")
    return names


def _check_mask(mask: Any, V: int) -> np.ndarray:
    if mask is None:
        return np.ones(V, dtype=bool)
    m = np.asarray(mask)
    if m.shape != (V,) or m.dtype != bool or not m.any():
        raise ParameterError("mask", f"has shape {m.shape}, dtype {m.dtype}",
                             expected=f"a boolean array of shape ({V},) with a True voxel")
    return m


def score_regressors(X: Any, Y: Any, *, name: str = "regressors", model: str = "ridge",
                     n_components: int | None = None, mask: Any = None,
                     folds: Any = None, n_folds: int = 5, trim: int = 5,
                     alphas: Any = DEFAULT_ALPHAS, inner_folds: int = 3,
                     subjects: Sequence[str] | None = None, scoring: str = "fold_mean",
                     device: str = "cpu"):
    """Cross-validated score of any regressor set, one row per subject (same folds for all).

    The atoms, the layer-wise baseline and the controls (untrained model, shuffled words) are
    scored by this function with the same folds, so their rows compare directly.

    Parameters
    ----------
    X : array, shape (T, n)
        Regressors (atoms, a layer's AN responses, ...).
    Y : array, shape (T, V) or (S, T, V), or list of (T, V)
        BOLD.
    name : str
        Label written in the ``regressors`` column.
    model : {"ridge", "ols"}
        See :func:`cv_scores`.
    n_components : int, optional
        Reduce ``X`` to its first principal components, fitted on each fold's training TRs
        only (no leakage); capped at the number of columns and training TRs.
    mask : array of bool (V,), optional
        Voxels summarised (e.g. a language mask); all by default.
    folds, n_folds, trim, alphas, inner_folds, scoring, device
        See :func:`cv_scores`.
    subjects : list of str, optional
        Subject labels.

    Returns
    -------
    pandas.DataFrame
        Columns ``regressors, subject, n_regressors, n_components, n_voxels, mean_r,
        median_r, mean_r2``.
    """
    import pandas as pd
    X = _check_X(X)
    T, n = X.shape
    subj, _ = _as_subjects(Y, T)
    names = _subject_names(subjects, len(subj))
    m = _check_mask(mask, subj[0].shape[1])
    folds = contiguous_folds(T, n_folds, trim) if folds is None else _check_folds(folds, T)
    transformer, used = None, None
    if n_components is not None:
        n_components = check_int("n_components", n_components, 1)
        min_train = min(tr.size for tr, _ in folds)
        used = min(n_components, n, min_train)
        from sklearn.decomposition import PCA
        transformer = PCA(n_components=used, svd_solver="full", random_state=0)
    res = cv_scores(X, subj, model=model, trim=trim, alphas=alphas, inner_folds=inner_folds,
                    folds=folds, transformer=transformer, scoring=scoring, device=device)
    rows = []
    for s, nm in enumerate(names):
        r, r2 = res.r[s, m], res.r2[s, m]
        rows.append(dict(regressors=name, subject=nm, n_regressors=n,
                         n_components=used if used is not None else n,
                         n_voxels=int(m.sum()), mean_r=float(np.nanmean(r)),
                         median_r=float(np.nanmedian(r)), mean_r2=float(np.nanmean(r2))))
    return pd.DataFrame(rows)


def layerwise_baseline(responses: Any, layers: Any, Y: Any, n_components: int | None = 64, *,
                       mask: Any = None, folds: Any = None, n_folds: int = 5, trim: int = 5,
                       alphas: Any = DEFAULT_ALPHAS, inner_folds: int = 3,
                       subjects: Sequence[str] | None = None, scoring: str = "fold_mean",
                       device: str = "cpu"):
    """Ridge encoding from each layer's AN responses, scored like the atom model.

    Parameters
    ----------
    responses : array, shape (T, N)
        AN responses (HRF-convolved, z-scored); may be memory-mapped.
    layers : array, shape (N,)
        Layer of each AN.
    Y : array, shape (T, V) or (S, T, V), or list of (T, V)
        BOLD.
    n_components : int or None
        First principal components per layer, fitted on training TRs only (default 64, the
        number of atoms); None uses the layer's units as they are.
    mask, folds, n_folds, trim, alphas, inner_folds, subjects, scoring, device
        See :func:`score_regressors`.

    Returns
    -------
    pandas.DataFrame
        One row per (layer, subject): ``layer`` and the columns of :func:`score_regressors`.
    """
    import pandas as pd
    R = responses if isinstance(responses, np.ndarray) else np.asarray(responses)
    if R.ndim != 2:
        raise ParameterError("responses", f"has {R.ndim} dimensions", expected="T x N")
    lay = np.asarray(layers)
    if lay.shape != (R.shape[1],):
        raise ParameterError("layers", f"has shape {lay.shape} for {R.shape[1]} ANs",
                             expected=f"one layer per AN, shape ({R.shape[1]},)")
    T = R.shape[0]
    _as_subjects(Y, T)  # fail early, before any layer is fitted
    if folds is None:
        folds = contiguous_folds(T, n_folds, trim)
    frames = []
    for layer in np.unique(lay):
        cols = np.flatnonzero(lay == layer)
        df = score_regressors(np.asarray(R[:, cols]), Y, name=f"layer {layer}",
                              n_components=n_components, mask=mask, folds=folds, trim=trim,
                              alphas=alphas, inner_folds=inner_folds, subjects=subjects,
                              scoring=scoring, device=device)
        df.insert(0, "layer", layer.item() if hasattr(layer, "item") else layer)
        frames.append(df)
        log.info("layer %s: mean held-out r %.4f", layer, df["mean_r"].mean())
    return pd.concat(frames, ignore_index=True)


# ---------------------------------------------------------------------------------------------
# the stage's convenience
# ---------------------------------------------------------------------------------------------

@dataclass
class EncodingResult:
    """Encoding of every subject with the atoms as regressors (float32 arrays).

    Attributes
    ----------
    beta, t : ndarray (S, k, V)
        OLS coefficients and t statistics.
    r2 : ndarray (S, V)
        In-sample R2 (OLS).
    cv_r, cv_r2 : ndarray (S, V) or None
        Held-out scores (``cv_model``), None when cross-validation was skipped.
    cv_alphas : ndarray (S, n_folds, V) or None
        Ridge alpha per fold and voxel.
    dof : int
        Residual degrees of freedom of the OLS fits.
    params : dict
        Parameters used.
    """

    beta: np.ndarray
    t: np.ndarray
    r2: np.ndarray
    cv_r: np.ndarray | None
    cv_r2: np.ndarray | None
    cv_alphas: np.ndarray | None
    dof: int
    params: dict

    def p_z(self) -> tuple[np.ndarray, np.ndarray]:
        """Two-sided p and z of ``t`` (computed on demand, not stored)."""
        return _t_to_p_z(self.t.astype(np.float64), self.dof)


def encode_subjects(D: Any, Y: Any, *, intercept: bool = True, cv_model: str | None = "ridge",
                    n_folds: int = 5, trim: int = 5, alphas: Any = DEFAULT_ALPHAS,
                    inner_folds: int = 3, scoring: str = "fold_mean", device: str = "cpu",
                    progress: bool = False) -> EncodingResult:
    """OLS maps and cross-validated scores of the atoms for every subject.

    Parameters
    ----------
    D : array, shape (T, k)
        The dictionary (atoms as regressors).
    Y : array, shape (S, T, V), or list of (T, V)
        Every subject's BOLD on a common voxel grid (a single ``T x V`` is one subject).
    intercept : bool
        Intercept in the OLS fits.
    cv_model : {"ridge", "ols"} or None
        Model of the held-out scores; None skips cross-validation.
    n_folds, trim, alphas, inner_folds, scoring, device
        See :func:`cv_scores`.
    progress : bool
        tqdm bar over subjects.

    Returns
    -------
    EncodingResult
    """
    D = _check_X(D, "D")
    T, k = D.shape
    subjects, _ = _as_subjects(Y, T)
    if cv_model is not None:
        check_choice("cv_model", cv_model, _MODELS)
        folds = contiguous_folds(T, n_folds, trim)
        check_choice("scoring", scoring, ("fold_mean", "concatenated"))
        if cv_model == "ridge":
            _check_alphas(alphas)
            check_int("inner_folds", inner_folds, 2)
    S, V = len(subjects), subjects[0].shape[1]
    beta = np.empty((S, k, V), dtype=np.float32)
    tt = np.empty((S, k, V), dtype=np.float32)
    r2 = np.empty((S, V), dtype=np.float32)
    cv_r = cv_r2 = cv_alphas = None
    if cv_model is not None:
        cv_r = np.empty((S, V), dtype=np.float32)
        cv_r2 = np.empty((S, V), dtype=np.float32)
        if cv_model == "ridge":
            cv_alphas = np.empty((S, len(folds), V), dtype=np.float32)
    it = range(S)
    if progress:
        from .progress import bar
        it = bar(it, "encoding subjects", unit="subject", show=True)
    dof = T - k - int(intercept)
    for s in it:
        ols = fit_ols(D, subjects[s], intercept=intercept, device=device)
        beta[s], tt[s], r2[s], dof = ols.beta, ols.t, ols.r2, ols.dof
        if cv_model is not None:
            cv = cv_scores(D, subjects[s], model=cv_model, trim=trim, alphas=alphas,
                           inner_folds=inner_folds, folds=folds, scoring=scoring,
                           device=device)
            cv_r[s], cv_r2[s] = cv.r, cv.r2
            if cv_alphas is not None:
                cv_alphas[s] = cv.best_alphas
        log.info("subject %d/%d: median in-sample R2 %.4f", s + 1, S, float(np.median(r2[s])))
    params = dict(intercept=intercept, cv_model=cv_model, scoring=scoring, n_folds=n_folds,
                  trim=trim,
                  alphas=np.asarray(alphas, dtype=float).tolist(), inner_folds=inner_folds,
                  ridge_library="himalaya.ridge.RidgeCV (per-voxel alpha, inner contiguous CV)")
    return EncodingResult(beta=beta, t=tt, r2=r2, cv_r=cv_r, cv_r2=cv_r2, cv_alphas=cv_alphas,
                          dof=dof, params=params)
