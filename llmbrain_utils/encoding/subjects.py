"""The encoding stage's fits: OLS maps and held-out scores of the atoms for every subject
(:func:`encode_subjects`, :class:`EncodingResult`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._validation import check_choice, check_int
from ..devices import resolve_device
from ._common import _as_subjects, _check_alphas, _check_X
from .cv import _MODELS, DEFAULT_ALPHAS, contiguous_folds, cv_scores
from .ols import _t_to_p_z, fit_ols

log = logging.getLogger(__package__)  # records named llmbrain_utils.encoding, as before the split


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
        from ..progress import bar
        it = bar(it, "encoding subjects", unit="subject", show=True)
    dof = T - k - int(intercept)
    for s in it:
        ols = fit_ols(D, subjects[s], intercept=intercept, device=device, pvalues=False)
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
                  ridge_library=("llmbrain_utils.encoding.ridge (himalaya RidgeCV's result: "
                                 "per-voxel alpha, inner contiguous CV)"
                                 if resolve_device(device) == "cpu" else
                                 "himalaya.ridge.RidgeCV (per-voxel alpha, inner contiguous CV)"))
    return EncodingResult(beta=beta, t=tt, r2=r2, cv_r=cv_r, cv_r2=cv_r2, cv_alphas=cv_alphas,
                          dof=dof, params=params)
