"""The group test of held-out ridge r: one null drawn for all subjects and voxels
(:func:`ridge_null_r`: the fold-mean held-out r with fixed per-voxel penalties, observed and on
surrogates of the BOLD or of the regressors), the test itself (:func:`group_cv_test`,
:class:`GroupTest`: pooled, per-voxel or Gaussian tails), and its rates against a planted truth
(:func:`recovery_rates`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .._validation import check_choice, check_int
from ..devices import resolve_device
from ..errors import ParameterError
from ._common import _as_subjects, _check_mask, _check_X, _chunks, _to_device, _to_numpy
from .cv import DEFAULT_ALPHAS, _check_folds, _fold_design, contiguous_folds, cv_scores
from .permutation import _permutations, _phase_rotations


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
        from ..progress import bar
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
    data = _group_data(subjects, statistic, cols)
    if alphas is None:
        A = cv_scores(X, np.stack(data), folds=folds, trim=trim, alphas=ridge_alphas,
                      inner_folds=inner_folds, device=device).best_alphas
    else:
        A = _check_fold_alphas(alphas, len(data), len(folds), V)[:, :, cols]
    vals = ridge_null_r(X, data, A, null=null, n_perm=n_perm, seed=seed, min_shift=min_shift,
                        folds=folds, batch=batch, chunk_voxels=chunk_voxels, device=device,
                        progress=progress)
    return group_test_result(vals, A, cols, V, statistic=statistic, null=null, tail=tail)


def _group_data(subjects: list, statistic: str, cols: Any = slice(None)) -> list[np.ndarray]:
    """The arrays the group statistic refits (float64, T x len(cols) each) from the columns
    ``cols`` of every subject (read one subject at a time): the subjects' average BOLD z-scored
    per voxel (``"average_bold"``), or every subject's BOLD (``"mean_r"``). Every operation is
    per voxel, so a block of voxels gives those voxels' columns bit for bit."""
    if statistic == "average_bold":
        avg = None
        for y in subjects:
            if avg is None:
                avg = np.zeros((y.shape[0], np.arange(y.shape[1])[cols].size))
            avg += np.asarray(y[:, cols], dtype=np.float64)
        sd = avg.std(0)
        return [(avg - avg.mean(0)) / np.where(sd > 0, sd, 1.0)]
    return [np.asarray(y[:, cols], dtype=np.float64) for y in subjects]


def group_null_block(X: Any, Y: Any, alphas: Any, *, statistic: str = "average_bold",
                     **kw) -> np.ndarray:
    """:func:`ridge_null_r` of the group statistic's data (:func:`group_cv_test`'s) for one
    block of voxels of every subject's BOLD ``Y`` (S x T x w) with fixed penalties ``alphas``
    (``(n_folds, w)`` for ``"average_bold"``, ``(S, n_folds, w)`` for ``"mean_r"``):
    ``(1 + n_surrogates, S', w)``. The surrogates depend on ``seed`` only, and every
    operation is per voxel, so blocks whose widths are multiples of ``chunk_voxels``
    (:func:`ridge_null_r`'s, 2,048) give, side by side, the values of one pass over all voxels
    bit for bit; :func:`group_test_result` turns them into the test (the fan-out of
    ``stages.encoding_tests``)."""
    X = _check_X(X)
    subjects, stacked = _as_subjects(Y, X.shape[0])
    statistic = check_choice("statistic", statistic, _GROUP_STATISTICS)
    if not stacked or len(subjects) < 2:
        raise ParameterError("Y", f"has {len(subjects)} subject(s)",
                             expected="a stack of at least 2 subjects")
    return ridge_null_r(X, _group_data(subjects, statistic), alphas, **kw)


def group_test_result(vals: np.ndarray, alphas: np.ndarray, cols: Any, n_voxels: int, *,
                      statistic: str, null: str, tail: str) -> GroupTest:
    """The :class:`GroupTest` of :func:`ridge_null_r`'s values ``vals`` (1 + n_null, S', len
    (cols)) for the tested voxels ``cols`` of ``n_voxels`` (the others NaN), with the penalties
    ``alphas`` (S', n_folds, len(cols)) they were refitted with."""
    tail = check_choice("tail", tail, _GROUP_TAILS)
    cols = np.asarray(cols)
    g = vals.mean(1)                                              # (1 + n_null, Vm)
    p, z = _group_p(g, tail)

    def full(a):
        o = np.full(a.shape[:-1] + (n_voxels,), np.nan)
        o[..., cols] = a
        return o

    return GroupTest(observed=full(g[0]), p=full(p), z=full(z), null_mean=full(g[1:].mean(0)),
                     null_sd=full(g[1:].std(0, ddof=1)), values=full(g), subject_r=full(vals[0]),
                     alphas=full(np.asarray(alphas, float)), n_null=int(g.shape[0] - 1),
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
