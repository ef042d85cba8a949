"""Masks on the MNI152 grid: the brain mask of a resolution, a mask read from a path or an
image, and the grey-matter probability of nilearn's template on a grid."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

from ..errors import InputError, ParameterError


@functools.lru_cache(maxsize=8)
def _mask_arrays(resolution_mm: float) -> tuple[np.ndarray, np.ndarray]:
    from nilearn.datasets import load_mni152_brain_mask
    from nilearn.image import new_img_like, resample_img

    src = load_mni152_brain_mask(resolution=1)
    src = new_img_like(src, src.get_fdata().astype(np.float32), copy_header=True)
    shape = np.array(src.shape)
    step = np.diag(src.affine)[:3]
    lo = src.affine[:3, 3]
    hi = lo + (shape - 1) * step
    r = float(resolution_mm)
    origin = np.floor(lo / r) * r
    n = (np.ceil((hi - origin) / r) + 1).astype(int)
    affine = np.diag([r, r, r, 1.0])
    affine[:3, 3] = origin
    import warnings

    with warnings.catch_warnings():  # continuous on purpose: the share of brain in each voxel
        warnings.filterwarnings("ignore", message="Resampling binary images")
        res = resample_img(src, target_affine=affine, target_shape=tuple(int(x) for x in n),
                           interpolation="continuous", force_resample=True, copy_header=True)
    mask = (np.asarray(res.dataobj) >= 0.5).astype(np.uint8)
    return mask, affine


def brain_mask(resolution_mm: float = 6.0):
    """MNI152 brain mask on an isotropic grid (nilearn's template mask, resampled, thresholded).

    The grid's origin is a multiple of the resolution, so every call with the same resolution
    gives the same grid (deterministic).

    Parameters
    ----------
    resolution_mm : float
        Voxel size in mm, 1-16 (6 mm: 35 x 41 x 33 grid, ~8,700 brain voxels).

    Returns
    -------
    nibabel.Nifti1Image
        uint8 mask (1 = brain).
    """
    import nibabel as nib

    if isinstance(resolution_mm, bool) or not isinstance(resolution_mm, (int, float)) \
            or not 1 <= resolution_mm <= 16:
        raise ParameterError("resolution_mm", f"{resolution_mm!r}", expected="a number of mm in [1, 16]")
    mask, affine = _mask_arrays(float(resolution_mm))
    img = nib.Nifti1Image(mask.copy(), affine.copy())
    img.header.set_xyzt_units("mm", "sec")
    return img


def _load_mask(mask_img, name: str = "mask_img"):
    """(image, bool array) of a 3-D mask given as a path or an image; InputError if unusable."""
    import nibabel as nib

    if mask_img is None:
        raise ParameterError(name, "missing", expected="a 3-D mask image or its path")
    if isinstance(mask_img, (str, os.PathLike)):
        p = Path(mask_img)
        if not p.is_file():
            raise InputError(p, "mask file not found")
        try:
            mask_img = nib.load(p)
            data = np.asarray(mask_img.dataobj)
        except Exception as e:  # noqa: BLE001 - any reader failure is a bad file
            raise InputError(p, f"cannot read the mask ({type(e).__name__}: {e})") from None
        src = str(p)
    else:
        if not hasattr(mask_img, "affine") or not hasattr(mask_img, "dataobj"):
            raise ParameterError(name, f"{type(mask_img).__name__}", expected="a NIfTI image or a path")
        data = np.asarray(mask_img.dataobj)
        src = name
    data = np.squeeze(data) if data.ndim == 4 and data.shape[3] == 1 else data
    if data.ndim != 3:
        raise InputError(src, f"{data.ndim}-D mask", field="shape", expected="a 3-D mask")
    mask = np.asarray(data) > 0
    if not mask.any():
        raise InputError(src, "empty mask", expected="at least one voxel > 0")
    return mask_img, mask


@functools.lru_cache(maxsize=8)
def _gm_on_grid(shape: tuple, affine: tuple) -> np.ndarray:
    from nilearn.datasets import load_mni152_gm_template
    from nilearn.image import resample_img

    gm = load_mni152_gm_template(resolution=1)
    res = resample_img(gm, target_affine=np.array(affine), target_shape=shape,
                       interpolation="continuous", force_resample=True, copy_header=True)
    return np.clip(np.asarray(res.dataobj, dtype=np.float64), 0.0, 1.0)
