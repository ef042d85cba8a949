"""Quality control of scans: temporal SNR (:func:`tsnr`) and carpet plots (:func:`carpet_array`)."""

from __future__ import annotations

import math

import numpy as np

from ..errors import ParameterError
from .isc import _zscore_t


def tsnr(data) -> np.ndarray:
    """Temporal SNR per voxel (mean / SD over time) of a ``T x V`` array or ``S x T x V`` (per subject).

    Use data that keep their mean (load with ``zscore=False``, kind ``preproc``): the cleaned
    Narratives derivatives are regression residuals with mean ~0, whose tSNR is meaningless.
    """
    x = np.asarray(data, dtype=np.float64)
    if x.ndim not in (2, 3):
        raise ParameterError("data", f"shape {x.shape}", expected="T x V or S x T x V")
    mu = x.mean(axis=-2)
    sd = x.std(axis=-2)
    return np.where(sd > 0, mu / np.where(sd > 0, sd, 1.0), 0.0)


def carpet_array(data, labels=None, *, max_voxels: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """A carpet plot's image: voxels (rows, grouped by label) x TRs, z-scored, evenly thinned.

    Parameters
    ----------
    data : array, T x V
    labels : array (V,), optional
        Network label per voxel; rows are sorted by label (stable).
    max_voxels : int
        Keep at most this many rows (every k-th voxel after sorting).

    Returns
    -------
    image : numpy.ndarray (V' x T) float32
    row_labels : numpy.ndarray (V',)
    """
    x = np.asarray(data, dtype=np.float64)
    if x.ndim != 2:
        raise ParameterError("data", f"shape {x.shape}", expected="T x V")
    lab = np.zeros(x.shape[1], dtype=int) if labels is None else np.asarray(labels)
    if lab.shape != (x.shape[1],):
        raise ParameterError("labels", f"shape {lab.shape}", expected=f"({x.shape[1]},)")
    order = np.argsort(lab, kind="stable")
    step = max(1, math.ceil(order.size / max(1, int(max_voxels))))
    order = order[::step]
    return _zscore_t(x)[:, order].T.astype(np.float32), lab[order]
