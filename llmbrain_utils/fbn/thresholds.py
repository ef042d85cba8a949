"""Thresholds: each map cut into its positive ("active") and negative ("deactive") part, the
``"topQ%"`` of its voxels by absolute value or beyond an absolute value (see Thresholds in
:mod:`llmbrain_utils.fbn`)."""

from __future__ import annotations

import math
import re

import numpy as np

from ..errors import ParameterError

SIGNS = ("active", "deactive")
DEFAULT_THRESHOLD = "top10%"


def parse_threshold(threshold: str | float) -> tuple[str, float]:
    """``("top", fraction)`` for ``"topQ%"``, ``("abs", c)`` for a positive number ``c``."""
    expected = "'topQ%' with 0 < Q < 100 (e.g. 'top10%') or a positive number (e.g. 3.1)"
    if isinstance(threshold, str):
        m = re.fullmatch(r"\s*top\s*([0-9]*\.?[0-9]+)\s*%\s*", threshold)
        if not m or not 0 < float(m.group(1)) < 100:
            raise ParameterError("threshold", f"{threshold!r} is not understood",
                                 expected=expected)
        return "top", float(m.group(1)) / 100.0
    if (isinstance(threshold, (int, float, np.integer, np.floating))
            and not isinstance(threshold, bool) and math.isfinite(threshold) and threshold > 0):
        return "abs", float(threshold)
    raise ParameterError("threshold", f"{threshold!r} is not understood", expected=expected)


def threshold_maps(maps: np.ndarray, threshold: str | float = DEFAULT_THRESHOLD
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Positive (active) and negative (deactive) parts of each map, as boolean arrays.

    Parameters
    ----------
    maps : array, shape (k, V)
    threshold : str or float
        ``"topQ%"``: per map, the ceil(Q% x V) voxels of largest |value| (ties included, zeros
        never), split by sign; a number ``c`` > 0: value > c and value < -c.

    Returns
    -------
    pos, neg : bool arrays, shape (k, V)
    """
    rule, value = parse_threshold(threshold)
    maps = np.asarray(maps)
    if rule == "abs":
        return maps > value, maps < -value
    a = np.abs(maps)
    n_keep = max(1, int(math.ceil(value * maps.shape[1])))
    cut = -np.partition(-a, n_keep - 1, axis=1)[:, n_keep - 1:n_keep]
    sel = (a >= cut) & (a > 0)
    return sel & (maps > 0), sel & (maps < 0)
