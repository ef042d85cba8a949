"""Group statistics of the subjects' maps (atoms x voxels): mean, one-sample t and p, sign
agreement and inter-subject consistency (:func:`group_maps`, :class:`GroupMaps`)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ParameterError


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
