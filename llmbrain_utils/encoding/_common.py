"""Shared by the encoding's modules: the checks of the regressors, the BOLD, a ridge grid and a
voxel mask (each a ParameterError naming what is wrong), arrays to and from a torch device,
blocks of voxels and the design matrix with an intercept."""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from ..errors import ParameterError


def _check_X(X: Any, name: str = "X") -> np.ndarray:
    """Return ``X`` as a finite float64 ``T x k`` array, or raise naming what is wrong."""
    try:
        arr = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ParameterError(name, f"cannot be read as numbers ({exc})",
                             expected="a T x k array of floats") from None
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ParameterError(name, f"has {arr.ndim} dimensions",
                             expected="a 2-D array, time points (TRs) x regressors")
    if arr.shape[0] < 3 or arr.shape[1] < 1:
        raise ParameterError(name, f"has shape {arr.shape}",
                             expected="at least 3 time points and 1 regressor")
    bad = ~np.isfinite(arr)
    if bad.any():
        t, j = np.argwhere(bad)[0]
        raise ParameterError(name, f"value {arr[t, j]} at TR {t}, regressor {j}",
                             expected="finite values only")
    return arr


def _as_subjects(Y: Any, T: int, name: str = "Y") -> tuple[list[np.ndarray], bool]:
    """Split ``Y`` into a list of ``T x V`` arrays (views, not copies) and check them.

    Returns the list and whether the input was a stack (3-D array or list of subjects).
    Every value is checked to be finite, one subject at a time.
    """
    if isinstance(Y, (list, tuple)):
        if len(Y) == 0:
            raise ParameterError(name, "is an empty list", expected="at least one subject")
        subjects = [y if isinstance(y, np.ndarray) else np.asarray(y) for y in Y]
        stacked = True
    else:
        arr = Y if isinstance(Y, np.ndarray) else np.asarray(Y)
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.ndim == 2:
            subjects, stacked = [arr], False
        elif arr.ndim == 3:
            subjects, stacked = [arr[s] for s in range(arr.shape[0])], True
        else:
            raise ParameterError(name, f"has {arr.ndim} dimensions",
                                 expected="T x V (one subject) or S x T x V (a stack)")
    V = None
    for s, y in enumerate(subjects):
        who = f"subject {s}: " if stacked else ""
        if y.ndim != 2:
            raise ParameterError(name, f"{who}has {y.ndim} dimensions", expected="T x V")
        if not np.issubdtype(y.dtype, np.number) or np.issubdtype(y.dtype, np.complexfloating):
            raise ParameterError(name, f"{who}has dtype {y.dtype}", expected="real numbers")
        if y.shape[0] != T:
            raise ParameterError(
                name, f"{who}has {y.shape[0]} time points (TRs) but X has {T}",
                expected="the same number of TRs on axis 0 of X and of each subject's Y")
        if V is None:
            V = y.shape[1]
        elif y.shape[1] != V:
            raise ParameterError(name, f"{who}has {y.shape[1]} voxels, subject 0 has {V}",
                                 expected="the same voxels (mask) for every subject")
        if V == 0:
            raise ParameterError(name, f"{who}has no voxels", expected="V >= 1")
        for start in range(0, V, 50_000):
            block = np.asarray(y[:, start:start + 50_000])
            bad = ~np.isfinite(block)
            if bad.any():
                t, v = np.argwhere(bad)[0]
                raise ParameterError(
                    name, f"{who}value {block[t, v]} at TR {t}, voxel {start + v}",
                    expected="finite values only (drop or fill voxels outside the brain)")
    return subjects, stacked


def _check_alphas(alphas: Any) -> np.ndarray:
    try:
        a = np.atleast_1d(np.asarray(alphas, dtype=np.float64))
    except (TypeError, ValueError):
        raise ParameterError("alphas", f"is {alphas!r}", expected="positive numbers") from None
    if a.ndim != 1 or a.size == 0 or not np.all(np.isfinite(a)) or np.any(a <= 0):
        raise ParameterError("alphas", f"is {alphas!r}",
                             expected="a non-empty 1-D array of finite positive numbers")
    return np.sort(a)


def _check_mask(mask: Any, V: int) -> np.ndarray:
    if mask is None:
        return np.ones(V, dtype=bool)
    m = np.asarray(mask)
    if m.shape != (V,) or m.dtype != bool or not m.any():
        raise ParameterError("mask", f"has shape {m.shape}, dtype {m.dtype}",
                             expected=f"a boolean array of shape ({V},) with a True voxel")
    return m


def _to_device(a: np.ndarray, device: str, dtype: Any = np.float64):
    """A numpy array on ``device``: itself on the CPU, a torch tensor on a GPU."""
    a = np.ascontiguousarray(a, dtype=dtype)
    if device == "cpu":
        return a
    import torch
    return torch.from_numpy(a).to(device)


def _to_numpy(a) -> np.ndarray:
    if isinstance(a, np.ndarray):
        return a
    return a.detach().cpu().numpy()


def _chunks(V: int, size: int) -> Iterator[slice]:
    for start in range(0, V, size):
        yield slice(start, min(V, start + size))


def _design(X: np.ndarray, intercept: bool) -> np.ndarray:
    return np.column_stack([np.ones(X.shape[0]), X]) if intercept else X
