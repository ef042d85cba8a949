"""In-sample voxel-wise fits of the regressors: ordinary least squares (:func:`fit_ols`:
coefficients, t, p, z and R2, every voxel at once) and the L1-penalised fit with SPAMS
(:func:`fit_lasso`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .._validation import check_int
from ..devices import resolve_device
from ..errors import ParameterError
from ._common import _as_subjects, _check_X, _chunks, _design, _to_device, _to_numpy


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
        same tail probability (p and z None when fitted with ``pvalues=False``).
    r2 : ndarray
        In-sample coefficient of determination (centred when ``intercept``).
    dof : int
        Residual degrees of freedom, ``T - k - intercept``.
    intercept : ndarray or None
        The intercept per voxel, or None when fitted without one.
    """

    beta: np.ndarray
    t: np.ndarray
    p: np.ndarray | None
    z: np.ndarray | None
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


def _ols_block_cpu(Xd, Rinv, Q, diag, y, intercept: bool, dof: int, work: np.ndarray):
    """:func:`_ols_block` on the CPU, the same operations in the same order (so the same
    numbers, bit for bit) with the block's T x w temporaries written into ``work`` (2 x T x
    chunk float64, reused block after block) instead of five new arrays: at 1,024 voxels a
    block's arrays stay in cache (the former 20,000-voxel blocks of ~50 MB each did not).
    Both are contiguous T x w arrays, as the former ones were: BLAS may round a strided operand
    otherwise."""
    T, w = y.shape
    Yb, resid = work[0, :T * w].reshape(T, w), work[1, :T * w].reshape(T, w)
    np.copyto(Yb, y)  # float64
    B = Rinv @ (Q.T @ Yb)
    np.matmul(Xd, B, out=resid)
    np.subtract(Yb, resid, out=resid)
    np.multiply(resid, resid, out=resid)
    rss = np.add.reduce(resid, axis=0)
    se = (rss[None, :] / dof * diag[:, None]) ** 0.5
    t = B / se
    if intercept:
        np.subtract(Yb, np.add.reduce(Yb, axis=0) / Yb.shape[0], out=Yb)  # Yb - Yb.mean(0)
    np.multiply(Yb, Yb, out=Yb)
    tss = np.add.reduce(Yb, axis=0)
    r2 = 1.0 - rss / tss
    return B, t, r2


def fit_ols(X: Any, Y: Any, intercept: bool = True, *, chunk_voxels: int = 1024,
            device: str = "cpu", dtype: Any = np.float64, pvalues: bool = True) -> OLSResult:
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
        Voxels solved per block (bounds the memory to a few ``T x chunk_voxels`` arrays; at
        1,024 a block's float64 temporaries stay in cache: 0.37 -> 0.22 s a subject at 70,000
        voxels against 20,000, the same numbers bit for bit except where BLAS rounds a narrow
        last block differently, within 1e-14).
    device : {"cpu", "cuda"}
        Where the matrix products run (torch on a GPU; CPU fallback).
    dtype : numpy dtype
        Dtype of the returned arrays (computations are float64).
    pvalues : bool
        Compute ``p`` and ``z`` (Student's t tail per coefficient: five times the fit's own
        time at 70,000 voxels, ``benchmarks/kernels.json``); False leaves them None.

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
    work = np.empty((2, T * min(V, chunk_voxels))) if device == "cpu" else None
    for s, y in enumerate(subjects):
        for sl in _chunks(V, chunk_voxels):
            with np.errstate(invalid="ignore", divide="ignore"):
                if work is not None:
                    B, t, rr = _ols_block_cpu(Xd_dev, Rinv_dev, Q_dev, diag_dev, y[:, sl], intercept,
                                              dof, work)
                else:
                    B, t, rr = (_to_numpy(a) for a in _ols_block(
                        Xd_dev, Rinv_dev, Q_dev, diag_dev, _to_device(y[:, sl], device),
                        intercept, dof))
            off = 1 if intercept else 0
            beta[s, :, sl] = B[off:]
            tt[s, :, sl] = t[off:]
            r2[s, sl] = rr
            if intercept:
                icpt[s, sl] = B[0]
    p = z = None
    if pvalues:
        p, z = _t_to_p_z(tt.astype(np.float64, copy=False), dof)
        p, z = p.astype(dtype, copy=False), z.astype(dtype, copy=False)
    out = OLSResult(beta=beta, t=tt, p=p, z=z, r2=r2, dof=dof, intercept=icpt)
    if not stacked:
        out = OLSResult(beta=beta[0], t=tt[0], p=None if p is None else p[0],
                        z=None if z is None else z[0], r2=r2[0], dof=dof,
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
