"""The noise ceiling of a single subject's prediction, from the leave-one-subject-out ISC
(:func:`noise_ceiling`), and a score normalised by it (:func:`normalise_by_ceiling`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._validation import check_int
from ..errors import ParameterError


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
