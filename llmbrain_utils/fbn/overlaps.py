"""The overlap of maps with networks: the Dice coefficient of each thresholded part with each
network mask and the spatial correlation of the unthresholded map with each network's
indicator (:func:`overlap`), with the checks of the maps they are given (see Statistics in
:mod:`llmbrain_utils.fbn`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError, ParameterError
from .atlases import NetworkAtlas
from .thresholds import DEFAULT_THRESHOLD, SIGNS, parse_threshold, threshold_maps

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd


def _dice(parts: np.ndarray, nets: np.ndarray, part_sizes: np.ndarray | None = None,
          net_sizes: np.ndarray | None = None) -> np.ndarray:
    """Dice of every row of ``parts`` (m, V) with every row of ``nets`` (n, V): (m, n)."""
    p = parts.astype(np.float32, copy=False)
    n = nets.astype(np.float32, copy=False)
    inter = (p @ n.T).astype(np.float64)
    sp = p.sum(1, dtype=np.float64) if part_sizes is None else part_sizes
    sn = n.sum(1, dtype=np.float64) if net_sizes is None else net_sizes
    den = sp[:, None] + sn[None, :]
    return np.divide(2.0 * inter, den, out=np.zeros_like(inter), where=den > 0)


def _corr(maps: np.ndarray, nets: np.ndarray, *, overwrite: bool = False,
          square: np.ndarray | None = None) -> np.ndarray:
    """Pearson correlation of every map (k, V) with every network indicator (n, V): (k, n).
    ``overwrite``: ``maps`` (float64) may be centred in place. ``square``: a float64 array of
    the maps' shape that receives their squares (a working array; default a new one)."""
    if overwrite:
        x = maps
        x -= maps.mean(1, keepdims=True)
    else:
        x = maps - maps.mean(1, keepdims=True)
    y = nets.astype(np.float64) - nets.mean(1, keepdims=True)
    # np.linalg.norm(., axis=1) of real rows, without its conjugate's copy
    nx = np.sqrt(np.add.reduce(np.multiply(x, x, out=square), axis=1))
    ny = np.sqrt(np.add.reduce(y * y, axis=1))
    den = nx[:, None] * ny[None, :]
    r = x @ y.T
    return np.divide(r, den, out=np.full_like(r, np.nan), where=den > 0)


def _corr_reference(maps: np.ndarray, nets: np.ndarray) -> np.ndarray:
    """:func:`_corr` as first written (the tests' reference)."""
    x = maps - maps.mean(1, keepdims=True)
    y = nets.astype(np.float64) - nets.mean(1, keepdims=True)
    nx, ny = np.linalg.norm(x, axis=1), np.linalg.norm(y, axis=1)
    den = nx[:, None] * ny[None, :]
    r = x @ y.T
    return np.divide(r, den, out=np.full_like(r, np.nan), where=den > 0)

def _check_maps(maps: Any, atlas: NetworkAtlas, name: str = "group_maps") -> np.ndarray:
    if not isinstance(atlas, NetworkAtlas):
        raise ParameterError("atlas", f"{type(atlas).__name__} is not a NetworkAtlas",
                             expected="load_atlas(...) or seitzman_atlas(...)")
    return map_array(maps, atlas.n_voxels, name, unit=("voxel", "voxels"),
                     where="the voxels of the atlas's mask")


def map_array(maps: Any, n: int, name: str, *, unit: tuple[str, str], where: str) -> np.ndarray:
    """``maps`` as a float64 ``(k, n)`` array of finite numbers (one map: ``(1, n)``), else an
    error naming ``name`` and, for a non-finite value, its map and ``unit[0]`` (the volume's
    and the surface's maps share this check: ``unit`` is ``("voxel", "voxels")`` or
    ``("vertex", "vertices")``, ``where`` says what ``n`` counts)."""
    try:
        arr = np.asarray(maps, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ParameterError(name, f"not numeric: {exc}", expected="array (k, V)") from exc
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise ParameterError(name, f"shape {arr.shape}", expected=f"a 2-D array (k atoms, V {unit[1]})")
    if arr.shape[1] != n:
        raise InputError(name, f"{arr.shape[1]} {unit[1]} per map", field="V", expected=f"{n}, {where}")
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise InputError(name, "non-finite value", field=f"atom {bad[0]}, {unit[0]} {bad[1]}",
                         expected="finite numbers")
    return arr


def _rows(atlas: NetworkAtlas, dice: np.ndarray, r: np.ndarray) -> dict[str, np.ndarray]:
    """Long-format columns from (2k, n) dice (active rows first) and (k, n) correlations."""
    k = r.shape[0]
    n = atlas.n_networks
    d = dice.reshape(2, k, n).transpose(1, 2, 0)  # (k, n, sign)
    rr = np.stack([r, -r], axis=-1)
    return {
        "atom": np.repeat(np.arange(k), n * 2),
        "network": np.tile(np.repeat(np.asarray(atlas.network_names, dtype=object), 2), k),
        "sign": np.tile(np.asarray(SIGNS, dtype=object), k * n),
        "dice": d.ravel(),
        "r": rr.ravel(),
    }


def overlap(maps: np.ndarray, atlas: NetworkAtlas, *, threshold: str | float = DEFAULT_THRESHOLD
            ) -> pd.DataFrame:
    """Dice and correlation of every map with every network, per sign.

    Parameters
    ----------
    maps : array, shape (k, V)
        One map per atom on the atlas's mask voxels.
    atlas : NetworkAtlas
    threshold : str or float
        See :func:`threshold_maps` (default ``"top10%"``).

    Returns
    -------
    pandas.DataFrame
        Columns ``atom, network, sign, dice, r``: one row per atom, network and sign
        ("active": the positive part and the map; "deactive": the negative part and minus the
        map). ``r`` is the Pearson correlation of the unthresholded (signed) map with the
        network's 0/1 indicator (NaN when undefined).
    """
    import pandas as pd

    parse_threshold(threshold)
    arr = _check_maps(maps, atlas, "maps")
    pos, neg = threshold_maps(arr, threshold)
    dice = _dice(np.concatenate([pos, neg]), atlas.masks)
    return pd.DataFrame(_rows(atlas, dice, _corr(arr, atlas.masks)))
