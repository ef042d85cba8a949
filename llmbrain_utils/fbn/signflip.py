"""The sign-flip null: the group one-sample t map (:func:`group_t`) recomputed with each
subject's map multiplied by a random sign (see Nulls in :mod:`llmbrain_utils.fbn`)."""

from __future__ import annotations

import math

import numpy as np

from ..errors import ParameterError
from .overlaps import _corr, _dice
from .thresholds import threshold_maps


def group_t(subject_maps: np.ndarray) -> np.ndarray:
    """One-sample t map across subjects: (S, k, V) -> (k, V); 0 where the variance is 0."""
    x = np.asarray(subject_maps, dtype=np.float64)
    if x.ndim != 3 or x.shape[0] < 2:
        raise ParameterError("subject_maps", f"shape {x.shape}",
                             expected="(S >= 2 subjects, k atoms, V voxels)")
    s = x.shape[0]
    mean = x.mean(0)
    sd = x.std(0, ddof=1)
    return np.divide(mean, sd / math.sqrt(s), out=np.zeros_like(mean), where=sd > 0)


def _signflip_counts(subject_maps: np.ndarray, observed: np.ndarray, nets: np.ndarray,
                     threshold: str | float, n_perm: int, rng: np.random.Generator,
                     statistic: str = "dice") -> np.ndarray:
    """Counts of sign-flipped group-t statistics reaching ``observed`` (2k, n): active rows
    first (for ``"r"``: r, then -r)."""
    s, k, _ = subject_maps.shape
    n = nets.shape[0]
    n32 = nets.astype(np.float32)
    sn = n32.sum(1, dtype=np.float64)
    counts = np.zeros((2, k, n), dtype=np.int64)
    obs = observed.reshape(2, k, n) - 1e-9
    for a in range(k):
        x = subject_maps[:, a, :].astype(np.float32)
        ss = (x.astype(np.float64) ** 2).sum(0).astype(np.float32)
        flips = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=(n_perm, s))
        for start in range(0, n_perm, 256):
            mean = flips[start:start + 256] @ x
            mean /= s
            var = mean * mean  # (ss - s mean^2) / (s - 1): the variance, as in group_t
            var *= -s
            var += ss
            var /= (s - 1) * s  # squared standard error
            np.maximum(var, 0, out=var)
            np.sqrt(var, out=var)
            t = np.divide(mean, var, out=np.zeros_like(mean), where=var > 1e-12)
            if statistic == "r":
                r = _corr(t.astype(np.float64), nets)  # (chunk, n)
                r = np.nan_to_num(r)
                counts[0, a] += (r >= obs[0, a][None, :]).sum(0)
                counts[1, a] += (-r >= obs[1, a][None, :]).sum(0)
                continue
            pos, neg = threshold_maps(t, threshold)
            for j, part in enumerate((pos, neg)):
                d = _dice(part, n32, net_sizes=sn)
                counts[j, a] += (d >= obs[j, a][None, :]).sum(0)
    return counts.reshape(2 * k, n)
