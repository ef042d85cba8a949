"""Labels moved by a smooth random displacement field (:func:`deform_labels`): the twin's
subject jitter and mismatched planting atlases at a target Dice (:func:`mismatched_labels`,
:func:`bisect_dice`)."""

from __future__ import annotations

import math

import numpy as np

from ..errors import ParameterError


#: Smoothness (FWHM, voxels) of the displacement fields of :func:`deform_labels` and of the
#: twin's subject-specific boundary jitter (``make_synthetic_dataset(jitter_mm=...)``).
JITTER_FWHM_VOX = 3.0
#: Deformation model of :func:`deform_labels`, as recorded in ``truth.json``.
DEFORM_MODEL = ("labels(x) <- labels(nearest voxel of x + d(x)) within the mask (0 outside); "
                "d: 3 components, each white noise on the grid smoothed with a Gaussian of FWHM "
                "fwhm_vox voxels, rescaled so that sqrt(mean over mask voxels of |d|^2) = rms_mm "
                "(mm; per axis divided by the voxel size)")


def _deform_index(mask: np.ndarray, rms_mm: float, voxel_mm, rng: np.random.Generator,
                  fwhm_vox: float) -> np.ndarray:
    """Flat grid index, per grid voxel x, of the voxel nearest to x + d(x) (see DEFORM_MODEL)."""
    from scipy.ndimage import gaussian_filter, map_coordinates

    shape = mask.shape
    idx = np.arange(int(np.prod(shape)), dtype=np.float64).reshape(shape)
    if rms_mm == 0:
        return idx.astype(np.int64)
    field = np.stack([rng.standard_normal(shape) for _ in range(3)])
    if fwhm_vox > 0:
        field = np.stack([gaussian_filter(f, fwhm_vox / 2.3548, mode="nearest") for f in field])
    rms = float(np.sqrt((field[:, mask] ** 2).sum(axis=0).mean()))
    if not rms > 0:
        return idx.astype(np.int64)
    vox = np.broadcast_to(np.asarray(voxel_mm, dtype=float), (3,))
    disp = field * (rms_mm / rms) / vox[:, None, None, None]  # voxels
    coords = np.indices(shape, dtype=np.float64) + disp
    src = map_coordinates(idx, coords, order=0, mode="nearest")
    return np.rint(src).astype(np.int64)


def deform_labels(labels_3d, mask, rms_mm: float, voxel_mm, rng,
                  fwhm_vox: float = JITTER_FWHM_VOX) -> np.ndarray:
    """Labels moved by a smooth random displacement field: a mismatched or jittered atlas.

    Each voxel ``x`` of ``mask`` takes the label found at ``x + d(x)`` (nearest neighbour,
    :func:`scipy.ndimage.map_coordinates` with ``order=0``; positions past the grid's edge are
    clamped to it); voxels outside the mask are 0, and labels outside the mask are never
    carried in. ``d`` has 3 components, each white noise on the grid smoothed with a Gaussian of
    FWHM ``fwhm_vox`` voxels, rescaled together so that the RMS length of ``d`` over the mask's
    voxels is ``rms_mm`` mm (divided per axis by ``voxel_mm``). ``rms_mm=0``: the labels, masked,
    and nothing is drawn from ``rng``. The twin's subject jitter
    (:func:`make_synthetic_dataset`, ``jitter_mm``) is this map with subject ``s``'s generator.

    Parameters
    ----------
    labels_3d : array (X, Y, Z) of int
    mask : array (X, Y, Z) of bool, or a mask image
    rms_mm : float
        RMS displacement (mm), >= 0.
    voxel_mm : float or 3 floats
        Voxel size (mm).
    rng : numpy.random.Generator or int
    fwhm_vox : float
        Smoothness of the field (voxels); default :data:`JITTER_FWHM_VOX`.

    Returns
    -------
    numpy.ndarray
        Integer labels, same shape as ``labels_3d``.
    """
    if hasattr(mask, "affine"):
        mask = np.asarray(mask.dataobj) > 0
    mask = np.asarray(mask, dtype=bool)
    lab = np.asarray(labels_3d)
    if lab.shape != mask.shape or lab.ndim != 3:
        raise ParameterError("labels_3d", f"shape {lab.shape}", expected=f"the mask's shape {mask.shape}")
    if not np.allclose(lab, np.round(lab)):
        raise ParameterError("labels_3d", "not integer labels", expected="integers")
    for name, v in (("rms_mm", rms_mm), ("fwhm_vox", fwhm_vox)):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) \
                or not (np.isfinite(v) and v >= 0):
            raise ParameterError(name, f"{v!r}", expected="a finite number >= 0")
    vox = np.asarray(voxel_mm, dtype=float)
    if vox.size not in (1, 3) or not np.all(vox > 0):
        raise ParameterError("voxel_mm", f"{voxel_mm!r}", expected="a voxel size > 0 (mm), or 3")
    if not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(rng)
    lab = np.where(mask, np.round(lab), 0).astype(np.int64)
    src = _deform_index(mask, float(rms_mm), vox, rng, float(fwhm_vox))
    return np.where(mask, lab.ravel()[src], 0)


def _dice_masks(a: np.ndarray, b: np.ndarray) -> float:
    n = int(a.sum()) + int(b.sum())
    return 2.0 * int((a & b).sum()) / n if n else float("nan")


def mismatched_labels(readout: np.ndarray, mask: np.ndarray, target: float, voxel_mm: float,
                      seed: int, tol: float = 0.01, n_iter: int = 30) -> tuple[np.ndarray, float, float]:
    """Planting labels whose mean network Dice with the read-out labels is about ``target``.

    ``readout`` (X, Y, Z) deformed by :func:`deform_labels` with the RMS displacement (mm) found
    by bisection on the measured mean Dice over the read-out's networks (the field's shape is
    fixed by ``seed``; only its size changes). ``target >= 1``: the read-out labels themselves.
    Returns ``(labels, rms_mm, dice)``."""
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not 0 < target <= 1:
        raise ParameterError("target", f"{target!r}", expected="a mean Dice in (0, 1]")
    mask = np.asarray(mask, dtype=bool)
    labels = [int(i) for i in np.unique(np.asarray(readout)[mask]) if i > 0]
    ro = np.where(mask, readout, 0)

    def at(rms: float) -> tuple[np.ndarray, float]:
        lab = deform_labels(readout, mask, rms, voxel_mm, np.random.default_rng(seed))
        return lab, float(np.mean([_dice_masks(lab[mask] == i, ro[mask] == i) for i in labels]))

    return bisect_dice(at, target, start=float(voxel_mm), limit=50 * voxel_mm, tol=tol, n_iter=n_iter)


def bisect_dice(at, target: float, *, start: float, limit: float, tol: float,
                n_iter: int) -> tuple[np.ndarray, float, float]:
    """The deformation size whose labels have mean network Dice ``target`` (volume and surface).

    ``at(rms)`` gives ``(labels, dice)`` for a displacement of RMS ``rms`` mm (a fixed field
    shape, only its size changing, so the Dice falls as ``rms`` grows). The bracket doubles
    from ``start`` until the Dice falls below ``target`` (or ``limit``), then at most ``n_iter``
    halvings stop once within ``tol / 4``; the closest labels seen are returned as
    ``(labels, rms_mm, dice)``. ``target >= 1``: ``at(0)``."""
    if target >= 1.0:
        lab, d = at(0.0)
        return lab, 0.0, float(d)
    lo, hi = 0.0, float(start)
    while at(hi)[1] > target and hi < limit:
        lo, hi = hi, 2 * hi
    best = (math.inf, None, 0.0, 1.0)
    for _ in range(n_iter):
        mid = 0.5 * (lo + hi)
        lab, d = at(mid)
        if abs(d - target) < best[0]:
            best = (abs(d - target), lab, mid, d)
        if abs(d - target) <= tol / 4:
            break
        lo, hi = (mid, hi) if d > target else (lo, mid)
    _, lab, rms, d = best
    return lab, float(rms), float(d)
