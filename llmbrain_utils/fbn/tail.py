"""Tail p values of the permutation nulls: a generalised Pareto tail fitted to the null where
fewer than ``GPD_MIN_EXCEED`` null values reach the observed one (Winkler et al. 2016)."""

from __future__ import annotations

import numpy as np

from ..errors import ParameterError


TAILS = ("none", "gpd")
#: Generalised Pareto tail: fitted where fewer than this many null values reach the observed one
GPD_MIN_EXCEED = 10
#: ... to the largest null values, this many (or a tenth of the null, if fewer)
GPD_N_TAIL = 250


def gpd_tail_p(null: np.ndarray, observed: float) -> float:
    """Tail p value of ``observed`` against the null sample ``null`` (Winkler et al. 2016).

    A generalised Pareto distribution (scipy.stats.genpareto, location 0) is fitted to the
    excesses of the ``GPD_N_TAIL`` largest null values over the threshold ``u`` half-way between
    the ``GPD_N_TAIL``-th and the next largest, and ``p = (N_tail / N) * P(GPD > observed - u)``.
    Meant for an observed value in the tail (fewer than ``GPD_MIN_EXCEED`` null values reach it);
    elsewhere the plain count is better and is what :func:`couple_atoms` uses. A fitted shape
    below 0 (a bounded tail, as of a correlation) would give p = 0 beyond the tail's end and
    was seen to overstate by up to 25x against a brute-force null; such tails are replaced by
    the exponential (shape 0) with the excesses' mean as scale, which errs conservative.
    Discrete null values (Dice of small parts) make the fit an approximation."""
    from scipy.stats import genpareto

    x = np.sort(np.asarray(null, dtype=np.float64))[::-1]
    n = x.size
    m = min(GPD_N_TAIL, max(n // 10, 5))
    if n < 50:
        raise ParameterError("null", f"{n} values", expected="at least 50 null values for a tail fit")
    u = 0.5 * (x[m - 1] + x[m]) if m < n else x[-1]
    exc = x[:m] - u
    if np.ptp(exc) <= 0:
        return float((1 + (x >= observed - 1e-9).sum()) / (1 + n))
    # started from the method-of-moments estimates: the same optimum, in half the iterations
    mean, var = float(exc.mean()), float(exc.var())
    ratio = mean * mean / var if var > 0 else 1.0
    c, _, scale = genpareto.fit(exc, 0.5 * (1 - ratio), floc=0.0, scale=0.5 * mean * (ratio + 1))
    if c < 0:  # a bounded tail would give p = 0 beyond its end: the exponential tail instead
        c, scale = 0.0, float(exc.mean())
    p = (m / n) * float(genpareto.sf(observed - u, c, loc=0.0, scale=scale))
    return float(max(p, np.finfo(float).tiny))


def _tail_pvalues(pvals: np.ndarray, counts: np.ndarray, observed: np.ndarray,
                  null: np.ndarray) -> np.ndarray:
    """``pvals`` (2k, n) with the GPD tail p where fewer than ``GPD_MIN_EXCEED`` of the null
    values (2k, n_perm, n) reach the observed statistic; never above the count's p."""
    out = pvals.copy()
    for i, j in zip(*np.nonzero(counts < GPD_MIN_EXCEED)):
        out[i, j] = min(out[i, j], gpd_tail_p(null[i, :, j], observed[i, j]))
    return out
