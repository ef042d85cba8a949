"""Held-out scores on contiguous folds: the folds (:func:`contiguous_folds`, and the same splits
as a scikit-learn cross-validator, :class:`ContiguousKFold`), the inner folds that choose a
ridge penalty per voxel (himalaya ``RidgeCV``), and :func:`cv_scores` (ridge or OLS, scored
per test block or on the concatenated predictions)."""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
from sklearn.model_selection import BaseCrossValidator

from .._validation import check_choice, check_int
from ..devices import resolve_device
from ..errors import ParameterError
from ._common import _as_subjects, _check_alphas, _check_X, _chunks, _to_device, _to_numpy


#: The default ridge grid: 15 values from 1e-2 to 1e5 (for z-scored regressors).
DEFAULT_ALPHAS = np.logspace(-2, 5, 15)


Folds = list[tuple[np.ndarray, np.ndarray]]  # (train_idx, test_idx) per fold

_MODELS = ("ridge", "ols")


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


class ContiguousKFold(BaseCrossValidator):
    """:func:`contiguous_folds` as a scikit-learn cross-validator.

    ``split(X)`` yields the (train, test) index pairs of ``contiguous_folds(len(X), n_splits,
    trim)``: ``n_splits`` contiguous test blocks in time order (never shuffled; sizes differ by
    at most one sample), each with the samples within ``trim`` of the block left out of its
    training set. It serves as ``cv=`` of scikit-learn (``cross_val_score``, ``GridSearchCV``,
    ``RidgeCV``) and of himalaya (``RidgeCV``, ``KernelRidgeCV``).

    :func:`cv_scores` does not use it for its inner folds (``_inner_splits``): those run over
    the training TRs of an outer fold, which jump over the outer test block, and their ``trim``
    counts TRs, not positions, whereas ``ContiguousKFold`` over the same positions would also
    drop the ``trim`` training TRs just across that jump (already far enough away) whenever an
    inner block ends at it, and could choose other penalties.

    Parameters
    ----------
    n_splits : int
        Number of folds (2 <= n_splits <= n_samples).
    trim : int
        Samples removed from the training set on each side of the test block (>= 0).
    """

    def __init__(self, n_splits: int = 5, trim: int = 5):
        check_int("n_splits", n_splits, 2)
        check_int("trim", trim, 0)
        self.n_splits = n_splits
        self.trim = trim

    def split(self, X: Any, y: Any = None,
              groups: Any = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(train, test) indices of each fold, as :func:`contiguous_folds` gives them.

        Parameters
        ----------
        X : array-like, shape (n_samples, ...)
            Only its number of samples (``X.shape[0]`` or ``len(X)``) is used.
        y, groups : ignored
            For scikit-learn's interface.

        Yields
        ------
        train, test : ndarray of int
            Sorted sample indices.
        """
        n = int(X.shape[0]) if hasattr(X, "shape") else len(X)
        if n < self.n_splits:
            raise ParameterError("n_splits", f"is {self.n_splits} for {n} samples",
                                 expected=f"an integer from 2 to n_samples={n}")
        yield from contiguous_folds(n, self.n_splits, self.trim)

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:
        """The number of folds, ``n_splits`` (the arguments are ignored)."""
        return self.n_splits


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
              solver_dtype: str = "float32", ridge_solver: str = "auto") -> CVResult:
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

    Ridge computes what himalaya's ``RidgeCV`` computes (one alpha per voxel, the alpha with
    the lowest mean squared error over ``inner_folds`` contiguous inner folds of the training
    TRs, with the same ``trim``; intercept fitted; then refitted on all training TRs), with the
    project's kernel on the CPU (:mod:`llmbrain_utils.encoding.ridge`: every alpha scored in
    the k-dimensional rotated space, 6-7x faster than ``RidgeCV`` and 2.3-2.6x from its
    arithmetic bound on one core, ``benchmarks/ridge_cv.json``) and himalaya on a GPU
    (``ridge_solver``), by default in float32
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
    ridge_solver : {"auto", "svd", "himalaya"}
        ``"svd"``: the project's kernel (numpy); ``"himalaya"``: ``RidgeCV``, the reference;
        ``"auto"``: the kernel on the CPU, himalaya on a GPU.

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
    ridge_solver = check_choice("ridge_solver", ridge_solver, RIDGE_SOLVERS)
    if ridge_solver == "auto":
        ridge_solver = "svd" if device == "cpu" else "himalaya"

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
                                                                 inner, solver_dtype,
                                                                 ridge_solver)
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


RIDGE_SOLVERS = ("auto", "svd", "himalaya")


def _ridge_fold(Xtr, Xte, Ytr, alphas, inner, dtype=np.float32, solver="svd"):
    """One outer fold of ridge with a per-target alpha chosen by the inner splits ``inner``,
    in ``dtype``: test predictions (float64) and the chosen alphas. ``solver``: the project's
    kernel (``"svd"``, :func:`llmbrain_utils.encoding.ridge.ridge_fold_svd`, numpy) or
    himalaya's ``RidgeCV`` (``"himalaya"``, the reference; on the active himalaya backend)."""
    if solver == "svd":
        from .ridge import ridge_fold_svd

        pred, chosen = ridge_fold_svd(Xtr, Xte, Ytr, alphas, inner, dtype=dtype)
        # predictions in the solver's precision, as himalaya gives them (a float32 store of
        # them, return_predictions, then loses nothing)
        return pred.astype(dtype).astype(np.float64), chosen
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
