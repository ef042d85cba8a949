"""The volumetric spin null: random rigid rotations of the brain about its centre, the voxel
permutations they induce on a mask (:func:`spin_permutations`), and how often the Dice or the
correlation with the rotated networks reaches the observed one (see Nulls in
:mod:`llmbrain_utils.fbn`)."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from .._validation import check_int
from .images import _mask

DEFAULT_N_PERM = 1000
_PERM_CHUNK = 64


def _rotations(n: int, rng: np.random.Generator) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.random(n, random_state=rng).as_matrix()


class _Spinner:
    """Nearest-mask-voxel lookup of rotated coordinates (see the package's Nulls section)."""

    def __init__(self, mask_img: Any, pad: int = 8) -> None:
        from nibabel.affines import apply_affine
        from scipy.ndimage import distance_transform_edt

        mask_img, mask = _mask(mask_img)
        ijk = np.argwhere(mask)
        self.xyz = apply_affine(mask_img.affine, ijk)
        self.centre = self.xyz.mean(0)
        self.scale = self.xyz.std(0)
        self.scale[self.scale == 0] = 1.0
        self.unit = (self.xyz - self.centre) / self.scale
        self.inv = np.linalg.inv(mask_img.affine)
        self.pad = pad
        padded = np.pad(mask, pad)
        index = np.full(padded.shape, -1, dtype=np.int64)
        index[padded] = np.arange(mask.sum())
        spacing = np.sqrt((mask_img.affine[:3, :3] ** 2).sum(0))
        _, nearest = distance_transform_edt(~padded, sampling=spacing, return_indices=True)
        self.lut = index[tuple(nearest)].astype(np.int32)
        self.shape = np.asarray(padded.shape)

    def indices(self, rotations: np.ndarray) -> np.ndarray:
        """(n_rot, V) source voxel of every voxel under each rotation (the object is rotated)."""
        src = np.einsum("vj,pjk->pvk", self.unit, rotations)  # R^T u for every voxel
        xyz = src * self.scale + self.centre
        ijk = xyz @ self.inv[:3, :3].T + self.inv[:3, 3]
        ijk = np.rint(ijk).astype(np.int64) + self.pad
        ijk = np.clip(ijk, 0, self.shape - 1)
        return self.lut[ijk[..., 0], ijk[..., 1], ijk[..., 2]]


def spin_permutations(mask_img: Any, n_perm: int = DEFAULT_N_PERM, *, seed: int = 0
                      ) -> np.ndarray:
    """Voxel index arrays of random rigid rotations about the brain's centre.

    ``values[:, idx[p]]`` is ``values`` rotated by the p-th uniformly random 3-D rotation
    (after scaling the brain's coordinates per axis to a ball and back) and resampled on the
    mask's voxels by nearest neighbour.

    Parameters
    ----------
    mask_img : Nifti1Image or path
    n_perm : int
    seed : int

    Returns
    -------
    numpy.ndarray of int32, shape (n_perm, V)
        Read-only; cached per process for the last two (mask, n_perm, seed).
    """
    check_int("n_perm", n_perm, 1)
    check_int("seed", seed, 0)
    img, mask = _mask(mask_img)
    key = hashlib.sha1(np.packbits(mask).tobytes() + str(mask.shape).encode()
                       + np.asarray(img.affine, dtype=np.float64).tobytes()).hexdigest()
    ck = (key, int(n_perm), int(seed))
    if ck not in _SPIN_CACHE:
        spinner = _Spinner(img)
        rots = _rotations(n_perm, np.random.default_rng(seed))
        perms = np.concatenate([spinner.indices(rots[i:i + _PERM_CHUNK])
                                for i in range(0, n_perm, _PERM_CHUNK)])
        perms.setflags(write=False)
        while len(_SPIN_CACHE) >= 2:  # keep the two most recent (about 35 MB each at 6 mm)
            _SPIN_CACHE.pop(next(iter(_SPIN_CACHE)))
        _SPIN_CACHE[ck] = perms
    return _SPIN_CACHE[ck]


_SPIN_CACHE: dict[tuple[str, int, int], np.ndarray] = {}


def _spin_counts(parts: np.ndarray, observed: np.ndarray, nets: np.ndarray,
                 perms: np.ndarray, keep: list | None = None) -> np.ndarray:
    """How often the Dice of ``parts`` with rotated ``nets`` reaches ``observed``: (m, n).
    ``keep``: a list that receives the null values, (m, chunk, n) float32 per chunk."""
    p32 = parts.astype(np.float32)
    sp = p32.sum(1, dtype=np.float64)
    n32 = nets.astype(np.float32)
    m, n = observed.shape
    counts = np.zeros((m, n), dtype=np.int64)
    tol = observed - 1e-9
    for start in range(0, perms.shape[0], _PERM_CHUNK):
        idx = perms[start:start + _PERM_CHUNK]
        c = idx.shape[0]
        rot = n32[:, idx].transpose(1, 0, 2).reshape(c * n, -1)  # (c*n, V)
        inter = (p32 @ rot.T).astype(np.float64).reshape(m, c, n)
        sn = rot.sum(1, dtype=np.float64).reshape(c, n)
        den = sp[:, None, None] + sn[None]
        dice = np.divide(2.0 * inter, den, out=np.zeros_like(inter), where=den > 0)
        counts += (dice >= tol[:, None, :]).sum(1)
        if keep is not None:
            keep.append(dice.astype(np.float32))
    return counts


def _corr_rot(xc: np.ndarray, xnorm: np.ndarray, rot: np.ndarray, n_vox: int) -> np.ndarray:
    """Correlation of centred maps ``xc`` (k, V) with 0/1 rows ``rot`` (m, V) (float32): (k, m).

    For an indicator with s ones out of V, its centred norm is sqrt(s (1 - s / V)) and the
    centred map's dot product with it is the plain dot product (the map is centred), so one
    matrix product gives every correlation."""
    dot = (xc @ rot.T).astype(np.float64)
    s = rot.sum(1, dtype=np.float64)
    den = xnorm[:, None] * np.sqrt(np.maximum(s * (1.0 - s / n_vox), 0.0))[None, :]
    return np.divide(dot, den, out=np.zeros_like(dot), where=den > 0)


def _spin_counts_r(maps: np.ndarray, observed: np.ndarray, nets: np.ndarray,
                   perms: np.ndarray, keep: list | None = None) -> np.ndarray:
    """How often the signed correlation of ``maps`` (k, V) with rotated ``nets`` reaches
    ``observed`` (2k, n; rows: r of the k maps, then -r): counts (2k, n)."""
    x = np.asarray(maps, dtype=np.float64)
    xc64 = x - x.mean(1, keepdims=True)
    xnorm = np.linalg.norm(xc64, axis=1)
    xc = xc64.astype(np.float32)
    n32 = nets.astype(np.float32)
    k, n_vox = x.shape
    n = nets.shape[0]
    counts = np.zeros((2 * k, n), dtype=np.int64)
    tol = observed - 1e-9
    for start in range(0, perms.shape[0], _PERM_CHUNK):
        idx = perms[start:start + _PERM_CHUNK]
        c = idx.shape[0]
        rot = n32[:, idx].transpose(1, 0, 2).reshape(c * n, -1)
        r = _corr_rot(xc, xnorm, rot, n_vox).reshape(k, c, n)
        counts[:k] += (r >= tol[:k, None, :]).sum(1)
        counts[k:] += (-r >= tol[k:, None, :]).sum(1)
        if keep is not None:
            keep.append(np.concatenate([r, -r]).astype(np.float32))
    return counts
