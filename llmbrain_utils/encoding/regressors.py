"""The held-out score of any regressor set, one row per subject with the same folds for all
(:func:`score_regressors`: the atoms, the controls), and the layer-wise baseline that scores
each layer's AN responses that way (:func:`layerwise_baseline`)."""

from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np

from .._validation import check_int
from ..errors import ParameterError
from ._common import _as_subjects, _check_mask, _check_X
from .cv import DEFAULT_ALPHAS, _check_folds, contiguous_folds, cv_scores

log = logging.getLogger(__package__)  # records named llmbrain_utils.encoding, as before the split


def _subject_names(subjects: Any, S: int) -> list[str]:
    if subjects is None:
        return [f"sub-{i:02d}" for i in range(S)]
    names = [str(s) for s in subjects]
    if len(names) != S:
        raise ParameterError("subjects", f"has {len(names)} names for {S} subjects",
                             expected="one name per subject")
    return names


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
