"""Multiple comparisons, written once: the Benjamini-Hochberg false discovery rate with one NaN
policy (a NaN p value is not a test: it is left out of the family and never rejected). Every
stage's FDR goes through :func:`fdr`. The lowest layer: imports only :mod:`.errors`."""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import ParameterError


def fdr(p: Any, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Benjamini-Hochberg false discovery rate over all finite p-values of ``p`` (one family).

    Parameters
    ----------
    p : array
        p-values in [0, 1]; NaN entries are left out of the family (never rejected).
    alpha : float
        FDR level in (0, 1).

    Returns
    -------
    reject : ndarray of bool
        Discoveries at level ``alpha``, shaped like ``p``.
    q : ndarray
        BH-adjusted p-values (``scipy.stats.false_discovery_control``), NaN where ``p`` is NaN.
    """
    from scipy.stats import false_discovery_control

    p = np.asarray(p, dtype=np.float64)
    try:
        alpha = float(alpha)
    except (TypeError, ValueError):
        raise ParameterError("alpha", f"is {alpha!r}", expected="a number in (0, 1)") from None
    if not 0 < alpha < 1:
        raise ParameterError("alpha", f"is {alpha}", expected="a number in (0, 1)")
    finite = np.isfinite(p)
    if np.any((p[finite] < 0) | (p[finite] > 1)):
        raise ParameterError("p", "has values outside [0, 1]", expected="p-values")
    q = np.full(p.shape, np.nan)
    if finite.any():
        q[finite] = false_discovery_control(p[finite], method="bh")
    reject = np.zeros(p.shape, dtype=bool)
    reject[finite] = q[finite] <= alpha
    return reject, q


def bh_reject(p: Any, alpha: float) -> np.ndarray:
    """:func:`fdr`'s decisions for bounds that may exceed 1 (e.g. a scaled count's upper bound
    on a p value): values above 1 count as 1."""
    return fdr(np.minimum(np.asarray(p, dtype=np.float64), 1.0), alpha)[0]
