"""Brain masks and images on a mask's grid: a mask as (image, voxels), label images, 3-D
volumes, and values resampled onto a mask's voxels (in the voxel order of nilearn's
``NiftiMasker`` for that mask)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError, ParameterError


def _mask(mask_img: Any, name: str = "mask_img") -> tuple[Any, np.ndarray]:
    """(3-D image, boolean data) of a brain mask given as an image or a path."""
    import nibabel as nib
    from nilearn.image import check_niimg_3d

    try:
        img = check_niimg_3d(mask_img)
    except Exception as exc:  # nilearn raises several types for bad images
        raise ParameterError(name, f"not a 3-D image: {exc}",
                             expected="a 3-D NIfTI brain mask (image or path)") from exc
    data = np.asanyarray(img.dataobj)
    if not np.all(np.isfinite(data)):
        raise InputError(name, "mask has non-finite values", expected="a binary mask")
    mask = data != 0
    if mask.sum() == 0:
        raise InputError(name, "mask has no voxels", expected="a non-empty binary mask")
    img = nib.Nifti1Image(mask.astype(np.uint8), img.affine)
    return img, mask


def _label_image(labels: np.ndarray, mask_img: Any) -> Any:
    import nibabel as nib

    mask = np.asanyarray(mask_img.dataobj) != 0
    vol = np.zeros(mask.shape, dtype=np.int16)
    vol[mask] = labels
    return nib.Nifti1Image(vol, mask_img.affine)


def _squeeze3d(img: Any) -> Any:
    import nibabel as nib

    data = np.asanyarray(img.dataobj)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(img.get_filename() or "<image>", f"{data.ndim}-D atlas volume",
                         expected="a 3-D volume")
    return nib.Nifti1Image(np.asarray(data, dtype=np.float32), img.affine)


def _on_grid(img: Any, mask_img: Any, mask: np.ndarray, interpolation: str) -> np.ndarray:
    """Values of ``img`` at the mask's voxels after resampling onto the mask's grid."""
    from nilearn.image import resample_to_img

    res = resample_to_img(img, mask_img, interpolation=interpolation, force_resample=True,
                          copy_header=True)
    return np.asanyarray(res.dataobj)[mask]
