"""fMRI data: masks, loaders of the real Narratives layout, ISC noise ceiling, synthetic twin.

Data arrays follow one convention: a subject's scan is ``T x V`` (TRs x voxels of a mask, in
the mask's C order, as :func:`nilearn.masking.apply_mask` returns them); a data set is
``S x T x V`` float32.

Real data (Narratives, OpenNeuro ds002345; see :mod:`llmbrain_utils.fetch` and
``data_manifests/narratives.yaml``) are read from the data set's own layout, e.g.
``derivatives/afni-nosmooth/sub-001/func/sub-001_task-pieman_space-MNI152NLin2009cAsym_res-native_desc-clean_bold.nii.gz``.
The synthetic twin (:func:`make_synthetic_dataset`) writes the same layout, with known couplings
between story features and functional networks (``truth.json``), so every later stage can be
checked against the truth.

Noise ceiling: leave-one-subject-out inter-subject correlation (:func:`isc_loo`) with a
phase-randomisation or circular-shift null (:func:`isc_null`) and Benjamini-Hochberg FDR
(:func:`isc_mask`).

Quality: temporal SNR (:func:`tsnr`) of the volumes before confound regression (kind
``preproc``; the twin writes them on a stated baseline, :func:`epi_baseline`), carpet plots
(:func:`carpet_array`). Surfaces: fsaverage6 GIfTI (:func:`load_gifti`, kind ``fsaverage6``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import re
import shutil
import uuid
import zlib
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from .stats import fdr
from .errors import InputError, ParameterError

log = logging.getLogger(__name__)

TR_S = 1.5
SPACE = "MNI152NLin2009cAsym"
#: Calibrated default amplitude of a planted signal relative to the noise (SD ratio) at a
#: network's peak voxel for a subject of unit gain: single-subject peak-voxel r ~ 0.3-0.45 and
#: leave-one-out ISC ~ 0.25-0.35 in planted networks, as in published Narratives values.
DEFAULT_SNR = 0.36
FEATURES = ("word_rate", "word_length", "sentence_end", "pause", "drift")

#: Planted couplings of the default synthetic data set, in the network names of Seitzman et
#: al. 2018 (nilearn.datasets.fetch_coords_seitzman_2018). Five networks carry signal; the
#: others (SomatomotorDorsal, SomatomotorLateral, DorsalAttention, FrontoParietal, Salience,
#: Reward, ParietoMedial, MedialTemporalLobe, unassigned) carry none.
DEFAULT_PLANT: tuple[dict, ...] = (
    {"network": "Auditory", "source": "word_rate", "sign": 1, "weight": 1.0},
    {"network": "VentralAttention", "source": "word_length", "sign": 1, "weight": 0.9},
    {"network": "DefaultMode", "source": "drift", "sign": 1, "weight": 0.6},
    {"network": "CinguloOpercular", "source": "sentence_end", "sign": 1, "weight": 0.8},
    {"network": "Visual", "source": "word_rate", "sign": -1, "weight": 0.7},
)


# =========================================================================== masks
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


# =========================================================================== loaders
def _header_tr(img) -> float | None:
    zooms = img.header.get_zooms()
    if len(zooms) < 4 or not zooms[3] or zooms[3] <= 0:
        return None
    tr = float(zooms[3])
    unit = img.header.get_xyzt_units()[1]
    if unit == "msec":
        tr /= 1e3
    elif unit == "usec":
        tr /= 1e6
    return tr


def _check_window(start_tr, n_trs):
    if isinstance(start_tr, bool) or not isinstance(start_tr, (int, np.integer)) or start_tr < 0:
        raise ParameterError("start_tr", f"{start_tr!r}", expected="an int >= 0")
    if n_trs is not None and (isinstance(n_trs, bool) or not isinstance(n_trs, (int, np.integer))
                              or n_trs < 1):
        raise ParameterError("n_trs", f"{n_trs!r}", expected="None or an int >= 1")


def _standardize(x: np.ndarray, source, *, detrend: bool, zscore: bool) -> tuple[np.ndarray, dict]:
    """NaN -> 0 and constant voxels reported; optional linear detrend and z-score over time."""
    from scipy.signal import detrend as sp_detrend

    finite = np.isfinite(x)
    nan_vox = np.flatnonzero(~finite.all(axis=0))
    if nan_vox.size:
        log.warning("%s: %d voxel(s) hold NaN/inf values; set to 0", source, nan_vox.size)
        x = np.where(finite, x, 0.0).astype(np.float32)
    if detrend:
        x = sp_detrend(x, axis=0, type="linear").astype(np.float32)
    sd = x.std(axis=0)
    const = np.flatnonzero(sd <= 1e-8 * max(1.0, float(np.abs(x).max(initial=0.0))))
    if const.size:
        log.warning("%s: %d constant voxel(s) (set to 0 when z-scoring)", source, const.size)
    if zscore:
        sd_safe = np.where(sd > 0, sd, 1.0)
        x = (x - x.mean(axis=0)) / sd_safe
        x[:, const] = 0.0
    return x.astype(np.float32, copy=False), {"nan_voxels": nan_vox, "constant_voxels": const}


def _check_space(path: Path, space: str | None) -> None:
    """The BIDS ``space-`` entity of a file name, when present, must be ``space``."""
    if space is None:
        return
    m = re.search(r"_space-([A-Za-z0-9]+)", path.name)
    if m and m.group(1) != space:
        raise InputError(path, f"space {m.group(1)!r} in the file name", field="space",
                         expected=f"{space!r} (another template or native space cannot be "
                                  f"read on this grid)")


def _coverage(img, mask_img, mask: np.ndarray) -> float:
    """Share of the mask's voxels (their centres) that fall inside a scan's field of view."""
    ijk = np.argwhere(mask).T.astype(np.float64)
    xyz = mask_img.affine[:3, :3] @ ijk + mask_img.affine[:3, 3:4]
    inv = np.linalg.inv(img.affine)
    vox = inv[:3, :3] @ xyz + inv[:3, 3:4]
    shape = np.asarray(img.shape[:3], dtype=np.float64)[:, None]
    return float(np.all((vox >= -0.5) & (vox <= shape - 0.5), axis=0).mean())


def load_bold(path: str | Path, mask_img, *, tr_s: float = TR_S, start_tr: int = 0,
              n_trs: int | None = None, detrend: bool = False, zscore: bool = True,
              resample: bool = False, space: str | None = SPACE, return_info: bool = False):
    """Read one 4-D BOLD NIfTI inside a mask: ``T x V`` float32.

    Checks, before reading the data: the file exists and is a 4-D image; the space named in
    its file name (BIDS ``_space-X_``, when there) is ``space``; the TR in its header
    (when set) equals ``tr_s``; it holds at least ``start_tr + n_trs`` volumes; its grid (shape
    and affine) is the mask's, or it is resampled onto it when ``resample=True``. While reading:
    a truncated or corrupt file (e.g. a cut ``.nii.gz``) raises an error naming it. Voxels with
    NaN and constant voxels are reported (warning, and in ``info``).

    Parameters
    ----------
    path : str or Path
        The scan (``.nii`` or ``.nii.gz``).
    mask_img : image or path
        3-D mask; its grid defines the voxels.
    tr_s : float
        Expected repetition time in seconds.
    start_tr, n_trs : int
        Window of volumes to keep (default: from ``start_tr`` to the end).
    detrend : bool
        Remove a linear trend per voxel (over the window).
    zscore : bool
        Z-score each voxel over time (constant voxels become 0).
    resample : bool
        Resample (continuous interpolation) a scan on another grid onto the mask's grid.
    space : str or None
        Template space the file name must name when it names one (default
        MNI152NLin2009cAsym, the Narratives derivatives' and the masks'); None: not checked.
    return_info : bool
        Also return a dict: header TR, number of volumes, voxels with NaN, constant voxels,
        whether it was resampled.

    Returns
    -------
    numpy.ndarray or (numpy.ndarray, dict)
        ``T x V`` float32.
    """
    import nibabel as nib

    _check_window(start_tr, n_trs)
    if not isinstance(tr_s, (int, float)) or isinstance(tr_s, bool) or tr_s <= 0:
        raise ParameterError("tr_s", f"{tr_s!r}", expected="a positive number of seconds")
    path = Path(path)
    mimg, mask = _load_mask(mask_img)
    if not path.is_file():
        raise InputError(path, "file not found")
    _check_space(path, space)
    try:
        img = nib.load(path)
    except Exception as e:  # noqa: BLE001
        raise InputError(path, f"cannot read as NIfTI ({type(e).__name__}: {e})",
                         expected="a readable .nii/.nii.gz") from None
    if len(img.shape) != 4:
        raise InputError(path, f"{len(img.shape)}-D image of shape {img.shape}", field="shape",
                         expected="4-D (x, y, z, time)")
    tr = _header_tr(img)
    if tr is not None and abs(tr - tr_s) > 1e-3:
        raise InputError(path, f"TR {tr:g} s in the header", field="pixdim[4] (TR)",
                         expected=f"{tr_s:g} s")
    n_vol = int(img.shape[3])
    if n_trs is None:
        n_trs = n_vol - start_tr
        if n_trs < 1:
            raise InputError(path, f"{n_vol} volumes, none after start_tr={start_tr}", field="volumes",
                             expected=f"more than {start_tr} volumes")
    if start_tr + n_trs > n_vol:
        raise InputError(path, f"{n_vol} volumes, fewer than the {start_tr + n_trs} the story needs "
                         f"(start_tr={start_tr} + n_trs={n_trs})", field="volumes",
                         expected=f">= {start_tr + n_trs} volumes")
    same_grid = tuple(img.shape[:3]) == mask.shape and np.allclose(img.affine, mimg.affine, atol=1e-3)
    if not same_grid and not resample:
        raise InputError(path, f"grid {tuple(img.shape[:3])} with affine "
                         f"{np.round(img.affine[:3], 3).tolist()} differs from the mask's "
                         f"{mask.shape} / {np.round(mimg.affine[:3], 3).tolist()}",
                         field="shape/affine", expected="the mask's grid, or resample=True")
    if not same_grid:  # a scan in another space (native, another template) resamples to nothing
        share = _coverage(img, mimg, mask)
        if share < 0.5:
            raise InputError(path, f"its field of view covers {share:.0%} of the mask's voxels",
                             field="affine (space)",
                             expected="a scan in the mask's space (MNI152, 'space-' in its name)")
    try:
        data = np.asarray(img.dataobj[..., start_tr:start_tr + n_trs], dtype=np.float32)
    except (OSError, EOFError, ValueError, zlib.error) as e:
        raise InputError(path, f"truncated or corrupt data ({type(e).__name__}: {e})",
                         expected="a complete file; download it again") from None
    if not same_grid:
        from nilearn.image import resample_img

        img4 = nib.Nifti1Image(data, img.affine)
        data = np.asarray(resample_img(img4, target_affine=mimg.affine, target_shape=mask.shape,
                                       interpolation="continuous", force_resample=True,
                                       copy_header=True).dataobj, dtype=np.float32)
    x = np.ascontiguousarray(data[mask].T)  # same order as nilearn.masking.apply_mask
    del data
    x, qc = _standardize(x, path, detrend=detrend, zscore=zscore)
    if return_info:
        return x, {"path": str(path), "tr_header": tr, "n_volumes": n_vol, "start_tr": start_tr,
                   "n_trs": n_trs, "n_voxels": int(mask.sum()), "resampled": not same_grid, **qc}
    return x


def load_gifti(paths: str | Path | Sequence[str | Path], *, tr_s: float = TR_S, start_tr: int = 0,
               n_trs: int | None = None, detrend: bool = False, zscore: bool = True,
               space: str | None = "fsaverage6", n_vertices: int | None = None,
               columns: np.ndarray | None = None, return_info: bool = False):
    """Read surface BOLD (``.func.gii``, e.g. fsaverage6 L then R): ``T x V`` float32.

    A file holds either one data array per time point (fMRIPrep, Narratives) or one
    vertices x time array. Hemispheres are concatenated along vertices in the order given. The
    TR is checked when a ``TimeStep`` (ms) is recorded in the file's metadata, the space when
    the file name names one (``_space-fsaverage6_``; ``space=None``: not checked), the vertices
    of each file when ``n_vertices`` is given (fsaverage6: 40,962 per hemisphere), and every
    file must hold the same number of time points. ``columns``: the vertices kept (indices into
    the concatenated hemispheres, e.g. a mesh's cortex without its medial wall), taken before
    the z-score, so the wall's constant vertices never reach it.
    """
    import nibabel as nib

    _check_window(start_tr, n_trs)
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    parts, n_vols = [], []
    for p in map(Path, paths):
        if not p.is_file():
            raise InputError(p, "file not found")
        _check_space(p, space)
        try:
            g = nib.load(p)
            arrays = [np.asarray(d.data, dtype=np.float32) for d in g.darrays]
        except Exception as e:  # noqa: BLE001
            raise InputError(p, f"cannot read as GIFTI ({type(e).__name__}: {e})",
                             expected="a complete .func.gii") from None
        if not arrays:
            raise InputError(p, "no data arrays", expected="one array per time point")
        if len(arrays) == 1 and arrays[0].ndim == 2:
            x = arrays[0].T
        elif all(a.ndim == 1 and a.shape == arrays[0].shape for a in arrays):
            x = np.stack(arrays)
        else:
            raise InputError(p, "data arrays of mixed shapes", field="darrays",
                             expected="one 1-D array per time point, or one vertices x time array")
        if n_vertices is not None and x.shape[1] != n_vertices:
            raise InputError(p, f"{x.shape[1]} vertices", field="vertices",
                             expected=f"{n_vertices} (the {space or 'surface'} mesh of one hemisphere)")
        step = None
        for meta in (g.meta, g.darrays[0].meta):
            if meta is not None and "TimeStep" in meta:
                step = float(meta["TimeStep"]) / 1e3
        if step is not None and step > 0 and abs(step - tr_s) > 1e-3:
            raise InputError(p, f"TimeStep {step:g} s", field="TimeStep", expected=f"{tr_s:g} s")
        n_vols.append(x.shape[0])
        parts.append((p, x))
    if len(set(n_vols)) > 1:
        raise InputError(parts[1][0], f"{n_vols[1]} time points, the other hemisphere has {n_vols[0]}",
                         field="volumes", expected="the same number in every file")
    n_vol = n_vols[0]
    if n_trs is None:
        n_trs = n_vol - start_tr
    if n_trs < 1 or start_tr + n_trs > n_vol:
        raise InputError(parts[0][0], f"{n_vol} volumes, fewer than the {start_tr + max(n_trs, 1)} "
                         f"the story needs", field="volumes", expected=f">= {start_tr + max(n_trs, 1)}")
    x = np.concatenate([a[start_tr:start_tr + n_trs] for _, a in parts], axis=1)
    if columns is not None:
        columns = np.asarray(columns)
        if columns.size and columns.max() >= x.shape[1]:
            raise InputError(parts[0][0], f"{x.shape[1]} vertices in all", field="vertices",
                             expected=f"at least {columns.max() + 1} (the mesh's cortex)")
        x = x[:, columns]
    x, qc = _standardize(x, parts[0][0], detrend=detrend, zscore=zscore)
    if return_info:
        return x, {"paths": [str(p) for p, _ in parts], "n_volumes": n_vol, "start_tr": start_tr,
                   "n_trs": n_trs, "n_vertices": x.shape[1], **qc}
    return x


def _dataset_info(root: Path, story: str, manifest) -> dict:
    """Story/task info from the manifest, or a plain task (synthetic) with the data set's exclusions."""
    from . import fetch

    m = manifest if isinstance(manifest, dict) else fetch.load_manifest(manifest)
    try:
        info = fetch._story_info(story, m)
    except ParameterError:
        if not re.fullmatch(r"[A-Za-z0-9]+", story):
            raise ParameterError("story", f"{story!r}", expected="a BIDS task label (letters, digits)") from None
        info = {"task": story, "story": story, "n_trs": None, "onset_tr": None, "duration_tr": None,
                "condition": None, "exclude": [], "multi_run": {}, "scrambled": False}
    excl = root / "code" / "scan_exclude.json"
    if excl.is_file():
        try:
            per_task = json.loads(excl.read_text()).get(info["task"], {})
        except (json.JSONDecodeError, AttributeError):
            raise InputError(excl, "not a JSON object of task -> subject -> scans") from None
        extra = [s for scans in per_task.values() for s in scans]
        info["exclude"] = sorted(set(info["exclude"]) | set(extra))
    return {**info, "manifest": m}


def dataset_paths(root: str | Path, story: str, subjects: str | Iterable, *, kind: str = "clean",
                  include_excluded: bool = False, manifest=None) -> dict[str, list[Path]]:
    """Local paths of each subject's scan (one path, or L and R for surface kinds).

    Subjects whose every scan of the task the authors exclude are left out (warning); a
    subject with two runs gets its first usable run. Paths are not checked for existence.
    """
    from . import fetch

    root = Path(root)
    info = _dataset_info(root, story, manifest)
    m = info["manifest"]
    if kind not in m["kinds"]:
        raise ParameterError("kind", f"{kind!r}", expected=f"one of {sorted(m['kinds'])}")
    spec = m["kinds"][kind]
    if "{sub}" not in spec["path"]:
        raise ParameterError("kind", f"{kind!r} is not a per-subject scan", expected="clean, sm6, ...")
    out: dict[str, list[Path]] = {}
    for sub in fetch.parse_subjects(subjects):
        runs = fetch.scans_for(info, sub, include_excluded=include_excluded)
        if not runs:
            log.warning("sub-%s: every scan of task %s is excluded by the data set's authors; left out",
                        sub, info["task"])
            continue
        hemis = spec.get("hemis") or [None]
        out[sub] = [root / spec["path"].format(sub=sub, task=info["task"], run=runs[0], hemi=h)
                    for h in hemis]
    return out


def load_dataset(root: str | Path, story: str, subjects: str | Iterable, mask_img=None, *,
                 kind: str = "clean", tr_s: float = TR_S, start_tr: int = 0,
                 n_trs: int | None = None, detrend: bool = False, zscore: bool = True,
                 resample: bool = False, include_excluded: bool = False,
                 manifest=None, columns=None) -> tuple[np.ndarray, list[str]]:
    """Load a story's scans of several subjects from a data set in the Narratives layout.

    Every subject's file is checked to exist before any is read (the error names the first
    missing file and how to fetch it); scans the authors exclude are left out with a warning.

    Parameters
    ----------
    root : str or Path
        Root of the data set (the real one, a :func:`~llmbrain_utils.fetch.fetch` cache, or a
        synthetic twin).
    story : str
        A Narratives story or task (``pieman``, ``slumlord``...) or the task of a synthetic twin.
    subjects : str or iterable
        Labels, e.g. ``"001-010"`` (see :func:`llmbrain_utils.fetch.parse_subjects`).
    mask_img : image or path
        Mask for volume kinds (ignored for surface kinds).
    kind : str
        Manifest kind: ``clean`` (default), ``clean-sm6``, ``sm6``, ``preproc``, ``fsaverage6``...
    tr_s, start_tr, n_trs, detrend, zscore, resample
        As in :func:`load_bold` (``n_trs=None`` takes all volumes, which must then agree). A
        Narratives story's window in its scan is ``fetch.story_info(story)["onset_tr"]`` and
        ``["duration_tr"]`` (from the data set's events).
    include_excluded : bool
        Keep scans the authors exclude.
    manifest : str, Path or dict, optional
        Another manifest.
    columns : array of int, optional
        Surface kinds: keep these vertices, numbered over the left file's vertices then the
        right file's (``0 .. 2n - 1``); :func:`llmbrain_utils.surface.mesh_columns` gives a
        mesh's cortex vertices (no medial wall) in the column order of that module's maps,
        also of a coarser mesh that the files nest (fsaverage5 in fsaverage6). None: every vertex.

    Returns
    -------
    data : numpy.ndarray
        ``S x T x V`` float32.
    subjects : list of str
        The subjects loaded, in order.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(root, "data set folder not found")
    paths = dataset_paths(root, story, subjects, kind=kind, include_excluded=include_excluded,
                          manifest=manifest)
    if not paths:
        raise InputError(root, f"no usable scan of {story!r} for subjects {subjects!r}",
                         expected="at least one subject whose scan is not excluded")
    for sub, ps in paths.items():
        for p in ps:
            if not p.is_file():
                raise InputError(p, f"sub-{sub}'s scan not found",
                                 expected=f"the file; fetch it with llmbrain_utils.fetch.fetch("
                                          f"{story!r}, {sub!r}, dest={str(root)!r})")
    surface = str(next(iter(paths.values()))[0]).endswith(".func.gii")
    spec = _dataset_info(root, story, manifest)["manifest"]["kinds"][kind]
    space = spec.get("space")
    if not surface:
        mask_img, _ = _load_mask(mask_img)
    out = None
    first = None
    if columns is not None:
        if not surface:
            raise ParameterError("columns", f"given with kind {kind!r}, a volume",
                                 expected="a surface kind (fsaverage6, ...) or columns=None")
        columns = np.asarray(columns)
        n_file = spec.get("vertices_per_hemi")
        if (columns.ndim != 1 or not np.issubdtype(columns.dtype, np.integer) or columns.size == 0
                or (n_file is not None and (columns.min() < 0 or columns.max() >= 2 * n_file))):
            raise ParameterError("columns", f"{columns.size} vertex indices (shape {columns.shape}, "
                                 f"{columns.dtype}) for kind {kind!r} ({n_file} vertices per "
                                 "hemisphere)", expected=f"integers in 0..{2 * (n_file or 0) - 1}: "
                                 "surface.mesh_columns(mesh, n_file) of the kind's own mesh or a "
                                 "coarser one that it nests (fsaverage5 in fsaverage6)")
    for i, (sub, ps) in enumerate(paths.items()):
        if surface:
            x = load_gifti(ps, tr_s=tr_s, start_tr=start_tr, n_trs=n_trs, detrend=detrend, zscore=zscore,
                           space=space, n_vertices=spec.get("vertices_per_hemi"), columns=columns)
        else:
            x = load_bold(ps[0], mask_img, tr_s=tr_s, start_tr=start_tr, n_trs=n_trs, detrend=detrend,
                          zscore=zscore, resample=resample, space=space)
        if out is None:
            out = np.empty((len(paths), *x.shape), dtype=np.float32)
            first = sub
        elif x.shape != out.shape[1:]:
            raise InputError(ps[0], f"{x.shape[0]} TRs x {x.shape[1]} voxels; sub-{first} has "
                             f"{out.shape[1]} x {out.shape[2]}", field="volumes",
                             expected="the same number of TRs (give n_trs)")
        out[i] = x
    return out, list(paths)


# =========================================================================== ISC
def _check_data(data, name: str = "data", min_subjects: int = 2) -> np.ndarray:
    x = np.asarray(data)
    if x.ndim != 3:
        raise ParameterError(name, f"shape {x.shape}", expected="S x T x V (subjects, TRs, voxels)")
    if x.shape[0] < min_subjects:
        raise ParameterError(name, f"{x.shape[0]} subject(s)", expected=f">= {min_subjects} subjects")
    if x.shape[1] < 3:
        raise ParameterError(name, f"{x.shape[1]} TRs", expected=">= 3 TRs")
    if not np.isfinite(x).all():
        raise ParameterError(name, "holds NaN or inf", expected="finite values")
    return x


def _zscore_t(x: np.ndarray, dtype=np.float64) -> np.ndarray:
    """Z-score along axis -2 (time) of S x T x V (or T x V); constant series -> 0."""
    x = np.asarray(x, dtype=dtype)
    mu = x.mean(axis=-2, keepdims=True)
    sd = x.std(axis=-2, keepdims=True)
    return np.where(sd > 0, (x - mu) / np.where(sd > 0, sd, 1.0), 0.0).astype(dtype, copy=False)


def _loo_from_z(z: np.ndarray) -> np.ndarray:
    """Per-subject LOO correlation (S x V) from S x T x V series z-scored over time.

    With ``tot = sum_s z_s``, ``d_s = z_s . tot`` and ``n_s = z_s . z_s`` (T, or 0 for a
    constant series): ``r_s = (d_s - n_s) / sqrt(n_s * |tot - z_s|^2)`` (``tot - z_s`` has
    mean 0), so one pass over the data suffices.
    """
    tot = z.sum(axis=0)
    tt = np.einsum("tv,tv->v", tot, tot, dtype=np.float64)
    out = np.zeros((z.shape[0], z.shape[2]))
    for s in range(z.shape[0]):
        d = np.einsum("tv,tv->v", z[s], tot, dtype=np.float64)
        n = np.einsum("tv,tv->v", z[s], z[s], dtype=np.float64)
        den = n * np.maximum(tt - 2 * d + n, 0.0)
        ok = den > 1e-12 * (z.shape[1] ** 2)
        out[s, ok] = (d[ok] - n[ok]) / np.sqrt(den[ok])
    return np.clip(out, -1.0, 1.0)


def _summarize(r: np.ndarray, summary: str) -> np.ndarray:
    if summary == "mean":
        return r.mean(axis=0)
    if summary == "median":
        return np.median(r, axis=0)
    if summary == "fisher":
        return np.tanh(np.arctanh(np.clip(r, -0.999999, 0.999999)).mean(axis=0))
    raise ParameterError("summary", f"{summary!r}", expected="'mean', 'median' or 'fisher'")


def isc_loo(data, *, summary: str = "mean") -> tuple[np.ndarray, np.ndarray]:
    """Leave-one-subject-out inter-subject correlation per voxel.

    Each subject's time series is correlated with the average of the other subjects'
    (z-scored) series; a constant voxel gives 0.

    Parameters
    ----------
    data : array, S x T x V
        Subjects x TRs x voxels (S >= 2).
    summary : {'mean', 'median', 'fisher'}
        Summary over subjects ('fisher' averages Fisher z and transforms back).

    Returns
    -------
    isc : numpy.ndarray, (V,)
        The summary over subjects.
    per_subject : numpy.ndarray, (S, V)
        Each subject's correlation with the others' mean.
    """
    x = _check_data(data)
    _summarize(np.zeros((1, 1)), summary)
    r = _loo_from_z(_zscore_t(x))
    return _summarize(r, summary), r


def isc_null(data, n_perm: int = 1000, method: str = "phase", seed: int = 0, *,
             summary: str = "mean", null: str = "voxel", chunk: int = 2048,
             return_null: bool = False):
    """Permutation p-values of leave-one-out ISC per voxel.

    Surrogates randomise every subject's time series independently while keeping its
    autocorrelation: ``phase`` randomises the Fourier phases (the same random phases for all
    voxels of a subject, so spatial correlation is kept; mean and power spectrum exactly
    kept), ``circular`` shifts the series circularly by a random lag (1..T-1).

    ``null="voxel"``: ``p = (1 + #{null_v >= observed_v}) / (1 + n_perm)``, so the smallest
    p is ``1/(1+n_perm)``: with FDR over many voxels use ``n_perm >= 1000``.
    ``null="pooled"``: every voxel's observed ISC is compared with the surrogates of all
    voxels (``n_perm x V`` values; assumes exchangeable voxels, finer p with few surrogates).

    Parameters
    ----------
    data : array, S x T x V
    n_perm : int
        Number of surrogates (>= 10).
    method : {'phase', 'circular'}
    seed : int
        The surrogates depend on the seed only (not on ``chunk``).
    summary : {'mean', 'median', 'fisher'}
    null : {'voxel', 'pooled'}
    chunk : int
        Voxels processed together. ``circular`` computes every subject pair's circular
        cross-correlation once (``S(S-1)/2 x T x chunk`` floats, chunk shrunk to keep that
        under ~256 MB) and reads each surrogate's inner products from it (~1 ms per
        surrogate for 12 subjects x 326 TRs x 8,700 voxels on one core, 1,000 surrogates
        ~10 s); ``phase`` works in the Fourier domain (inner products by Parseval, memory
        ~ 4 * S * T * chunk * 4 bytes, ~0.1 s per surrogate for 8 subjects).
    return_null : bool
        Also return the null distribution (n_perm x V, float32).

    Returns
    -------
    p : numpy.ndarray, (V,)
        One-sided p-values (ISC greater than chance).
    null : numpy.ndarray, (n_perm, V)
        Only with ``return_null``.
    """
    x = _check_data(data)
    if isinstance(n_perm, bool) or not isinstance(n_perm, (int, np.integer)) or n_perm < 10:
        raise ParameterError("n_perm", f"{n_perm!r}", expected="an int >= 10")
    if method not in ("phase", "circular"):
        raise ParameterError("method", f"{method!r}", expected="'phase' or 'circular'")
    if null not in ("voxel", "pooled"):
        raise ParameterError("null", f"{null!r}", expected="'voxel' or 'pooled'")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ParameterError("seed", f"{seed!r}", expected="an int >= 0")
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise ParameterError("chunk", f"{chunk!r}", expected="an int >= 1")
    _summarize(np.zeros((1, 1)), summary)
    S, T, V = x.shape
    keep_null = return_null or null == "pooled"
    if method == "circular":
        lags = np.stack([_circular_lags(seed, i, S, T) for i in range(n_perm)])
        count, observed, nulls = _isc_null_circular(x, lags, summary, int(chunk), keep_null)
    else:
        count, observed, nulls = _isc_null_fourier(
            x, [functools.partial(_rotation, seed, i, S, T, method) for i in range(n_perm)], summary,
            int(chunk), keep_null)
    if null == "pooled":
        pool = np.sort(nulls, axis=None)
        ge = pool.size - np.searchsorted(pool, observed - 1e-6, side="left")
        p = (1.0 + ge) / (1.0 + pool.size)
    else:
        p = (1.0 + count) / (1.0 + n_perm)
    return (p, nulls) if return_null else p


def _circular_lags(seed: int, i: int, S: int, T: int) -> np.ndarray:
    """Surrogate i's circular shifts (1..T-1, one per subject), a function of (seed, i) only."""
    return np.random.default_rng([int(seed), i]).integers(1, T, size=S)


def _rotation(seed: int, i: int, S: int, T: int, method: str) -> np.ndarray:
    """Surrogate i as Fourier rotations (S x F), a function of (seed, i) only.

    A circular shift by k is the phase ramp exp(-2 pi i f k / T); phase randomisation
    draws uniform phases, DC and Nyquist kept.
    """
    f = np.arange(T // 2 + 1)
    if method == "circular":
        k = _circular_lags(seed, i, S, T)
        return np.exp(-2j * np.pi * np.outer(k, f) / T).astype(np.complex64)
    rng = np.random.default_rng([int(seed), i])
    rot = np.exp(1j * rng.uniform(0, 2 * np.pi, size=(S, f.size))).astype(np.complex64)
    rot[:, 0] = 1.0
    if T % 2 == 0:
        rot[:, -1] = 1.0
    return rot


def _loo_r(d: np.ndarray, nn: np.ndarray, tt: np.ndarray, T: int) -> np.ndarray:
    """LOO correlations from ``d_s = y_s . tot``, ``nn_s = y_s . y_s``, ``tt = tot . tot``."""
    den = nn * np.maximum(tt - 2 * d + nn, 0.0)
    r = np.zeros_like(d)
    ok = den > 1e-12 * T * T
    r[ok] = (d[ok] - nn[ok]) / np.sqrt(den[ok])
    return np.clip(r, -1.0, 1.0)


def _isc_null_circular(x: np.ndarray, lags: np.ndarray, summary: str, chunk: int,
                       keep_null: bool):
    """Circular-shift null from every pair's circular cross-correlation (exact, no per-surrogate FFT).

    With ``y_s(t) = z_s(t - k_s)``, ``y_s . y_j = C_sj[(k_s - k_j) mod T]`` where
    ``C_sj[L] = sum_u z_s(u) z_j(u + L)``; so ``d_s = y_s . tot = n_s + sum_{j != s} C_sj[...]``
    and ``tot . tot = sum_s d_s``: a surrogate costs one gather of S(S-1)/2 rows of ``C``
    per voxel instead of an S x T x V pass. ``C`` of a chunk takes
    ``S(S-1)/2 * T * chunk * 4`` bytes; the chunk is shrunk to keep that under ~256 MB.
    """
    from scipy import fft as sfft

    S, T, V = x.shape
    n_perm = lags.shape[0]
    si, sj = np.triu_indices(S, k=1)
    n_pairs = si.size
    inc = np.zeros((S, n_pairs))  # d = nn + inc @ pair_products
    inc[si, np.arange(n_pairs)] = 1.0
    inc[sj, np.arange(n_pairs)] = 1.0
    pair_lag = (lags[:, si] - lags[:, sj]) % T  # n_perm x pairs
    chunk = max(1, min(chunk, int(256e6 // max(1, n_pairs * T * 4))))
    observed = np.empty(V)
    nulls = np.empty((n_perm, V), dtype=np.float32) if keep_null else None
    count = np.zeros(V, dtype=np.int64)
    for v0 in range(0, V, chunk):
        sl = slice(v0, min(V, v0 + chunk))
        z = _zscore_t(x[:, :, sl], dtype=np.float64)
        obs = _summarize(_loo_from_z(z), summary)
        observed[sl] = obs
        nn = np.einsum("stv,stv->sv", z, z)
        zf = sfft.rfft(z.astype(np.float32), axis=1)  # single precision: half the FFT time
        del z
        # C[p, L, v] = sum_u z_si(u) z_sj(u + L)
        cc = sfft.irfft(np.conj(zf[si]) * zf[sj], n=T, axis=1)
        del zf
        pairs = np.arange(n_pairs)
        for i in range(n_perm):
            g = cc[pairs, pair_lag[i]]  # pairs x chunk: one contiguous row of C per pair
            d = nn + inc @ g
            stat = _summarize(_loo_r(d, nn, d.sum(axis=0), T), summary)
            count[sl] += stat >= obs - 1e-6
            if keep_null:
                nulls[i, sl] = stat
    return count, observed, nulls


def _isc_null_fourier(x: np.ndarray, rotations: list, summary: str, chunk: int, keep_null: bool):
    """Surrogates as Fourier rotations (callables returning S x F); inner products by Parseval."""
    from scipy import fft as sfft

    S, T, V = x.shape
    n_f = T // 2 + 1
    wf = np.full(n_f, 2.0)
    wf[0] = 1.0
    if T % 2 == 0:
        wf[-1] = 1.0
    wf = (wf / T).astype(np.float32)
    n_perm = len(rotations)
    observed = np.empty(V)
    nulls = np.empty((n_perm, V), dtype=np.float32) if keep_null else None
    count = np.zeros(V, dtype=np.int64)
    rots = [r() for r in rotations] if n_perm * S * n_f <= 2e7 else None
    for v0 in range(0, V, chunk):
        sl = slice(v0, min(V, v0 + chunk))
        z = _zscore_t(x[:, :, sl], dtype=np.float32)
        obs = _summarize(_loo_from_z(z), summary)
        observed[sl] = obs
        nn = np.einsum("stv,stv->sv", z, z, dtype=np.float64)
        zf = sfft.rfft(z, axis=1)
        del z
        for i in range(n_perm):
            y = zf * (rots[i] if rots is not None else rotations[i]())[:, :, None]
            tot = y.sum(axis=0)
            tt = wf @ (tot.real ** 2 + tot.imag ** 2)
            prod = y.real * tot.real
            prod += y.imag * tot.imag
            d = np.einsum("sfv,f->sv", prod, wf).astype(np.float64)
            stat = _summarize(_loo_r(d, nn, tt, T), summary)
            count[sl] += stat >= obs - 1e-6
            if keep_null:
                nulls[i, sl] = stat
    return count, observed, nulls


def isc_mask(p, alpha: float = 0.05) -> np.ndarray:
    """Voxels whose ISC is significant at FDR level ``alpha`` (Benjamini-Hochberg): bool (V,)."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise ParameterError("alpha", f"{alpha!r}", expected="a number in (0, 1)")
    return fdr(p, alpha)[0]  # one FDR for the package (llmbrain_utils.stats)


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


# =========================================================================== synthetic twin
def _letters(word: str) -> int:
    n = sum(ch.isalpha() for ch in str(word))
    return n if n else len(str(word).strip())


def _check_words(words) -> pd.DataFrame:
    if not isinstance(words, pd.DataFrame):
        raise ParameterError("words", f"{type(words).__name__}", expected="a pandas DataFrame (word table)")
    for col in ("word", "onset", "offset", "sentence_end"):
        if col not in words.columns:
            raise InputError("words", "missing column", field=col,
                             expected="columns word, onset, offset, sentence_end (, tr)")
    w = words.reset_index(drop=True)
    on = pd.to_numeric(w["onset"], errors="coerce").to_numpy(float)
    off = pd.to_numeric(w["offset"], errors="coerce").to_numpy(float)
    bad = np.isnan(on) | np.isnan(off)
    if bad.all():
        raise InputError("words", "no word has a time", field="onset", expected="seconds")
    if bad.any():
        log.warning("words: %d word(s) without onset/offset left out of the features", int(bad.sum()))
    neg = np.flatnonzero(~bad & ((on < 0) | (off < on)))
    if neg.size:
        i = int(neg[0])
        raise InputError("words", f"onset {on[i]} / offset {off[i]}", line=i, field="offset",
                         expected="0 <= onset <= offset")
    w = w.loc[~bad].copy()
    w["onset"], w["offset"] = on[~bad], off[~bad]
    w["sentence_end"] = w["sentence_end"].astype(str).str.lower().isin(["true", "1", "yes"]) \
        if w["sentence_end"].dtype == object else w["sentence_end"].astype(bool)
    return w.sort_values("onset", kind="stable").reset_index(drop=True)


def _pause_sentence_ends(on: np.ndarray, off: np.ndarray, pause_s: float) -> np.ndarray:
    """Sentence ends of words sorted by onset: silence after the word >= pause_s; the last word."""
    after = np.r_[on[1:] - off[:-1], np.inf]
    return after >= pause_s


def stimulus_features(words: pd.DataFrame, n_trs: int, tr_s: float = TR_S, *,
                      start_offset_s: float = 0.0, hrf_model: str = "spm", pause_s: float = 0.3,
                      drift_sigma_s: float = 20.0,
                      sentence_pause_s: float | None = 0.5) -> pd.DataFrame:
    """Interpretable story features per TR, HRF-convolved (nilearn) and z-scored.

    ============== ===================================================================
    feature        events (scan time = word time + ``start_offset_s``)
    ============== ===================================================================
    word_rate      an impulse at every word onset
    word_length    an impulse at every onset, weighted by the word's letters minus the mean
    sentence_end   an impulse at the offset of every sentence-final word
    pause          a boxcar over every silence of at least ``pause_s`` between words
    drift          slow narrative drift: each sentence's length in words (centred) as a
                   boxcar over the sentence, convolved, then Gaussian-smoothed
                   (``drift_sigma_s``)
    ============== ===================================================================

    Sentence ends come from the word table's ``sentence_end``. A table with none at all (real
    Narratives transcripts carry no punctuation) and more than one word gets them from pauses:

    ================== ===============================================================
    sentence_pause_s   a word ends a sentence when the silence after it (next onset
                       minus its offset) is at least this many seconds (default 0.5);
                       the last word always ends one. None: no inference (then
                       ``sentence_end`` and ``drift`` of such a table are constant)
    ================== ===============================================================

    A table with at least one sentence end is used as it is.

    Parameters
    ----------
    words : pandas.DataFrame
        Word table with ``word``, ``onset``, ``offset`` (s), ``sentence_end`` (bool).
    n_trs : int
        Length of the scan in TRs (frame times ``i * tr_s``).
    tr_s : float
    start_offset_s : float
        Scan time at which the word times' zero lies (the audio onset).
    hrf_model : str
        nilearn HRF model ('spm', 'glover', ...).
    pause_s, drift_sigma_s : float
    sentence_pause_s : float or None
        See above: the pause that ends a sentence in a table without sentence ends.

    Returns
    -------
    pandas.DataFrame
        ``n_trs x 5`` (columns :data:`FEATURES`), float64; a constant feature (e.g. no sentence
        end in a short excerpt) is all zeros, with a warning.
    """
    from nilearn.glm.first_level.hemodynamic_models import compute_regressor
    from scipy.ndimage import gaussian_filter1d

    if isinstance(n_trs, bool) or not isinstance(n_trs, (int, np.integer)) or n_trs < 2:
        raise ParameterError("n_trs", f"{n_trs!r}", expected="an int >= 2")
    if not isinstance(tr_s, (int, float)) or tr_s <= 0:
        raise ParameterError("tr_s", f"{tr_s!r}", expected="a positive number of seconds")
    if sentence_pause_s is not None and (
            isinstance(sentence_pause_s, bool) or not isinstance(sentence_pause_s, (int, float))
            or not sentence_pause_s >= 0):
        raise ParameterError("sentence_pause_s", f"{sentence_pause_s!r}",
                             expected="None or a number of seconds >= 0")
    w = _check_words(words)
    on = w["onset"].to_numpy() + start_offset_s
    off = w["offset"].to_numpy() + start_offset_s
    frame_times = np.arange(n_trs) * float(tr_s)

    def reg(onsets, durations, amps) -> np.ndarray:
        if len(onsets) == 0 or not np.any(amps):
            return np.zeros(n_trs)
        cond = np.vstack([onsets, durations, amps]).astype(float)
        return compute_regressor(cond, hrf_model, frame_times, oversampling=16)[0][:, 0]

    ones = np.ones(len(w))
    lengths = np.array([_letters(x) for x in w["word"]], dtype=float)
    ends = w["sentence_end"].to_numpy(bool)
    if not ends.any() and len(w) > 1 and sentence_pause_s is not None:
        ends = _pause_sentence_ends(on, off, sentence_pause_s)
        log.info("words: no sentence end in the table; %d inferred from pauses >= %g s "
                 "(the last word ends one)", int(ends.sum()), sentence_pause_s)
    gaps_start, gaps_len = off[:-1], on[1:] - off[:-1]
    keep = gaps_len >= pause_s
    # sentences: runs of words closed by a sentence end
    sent_id = np.concatenate([[0], np.cumsum(ends)[:-1]])
    sent = pd.DataFrame({"id": sent_id, "on": on, "off": off}).groupby("id").agg(
        on=("on", "min"), off=("off", "max"), n=("on", "size"))
    feats = {
        "word_rate": reg(on, np.zeros(len(w)), ones),
        "word_length": reg(on, np.zeros(len(w)), lengths - lengths.mean()),
        "sentence_end": reg(off[ends], np.zeros(int(ends.sum())), np.ones(int(ends.sum()))),
        "pause": reg(gaps_start[keep], gaps_len[keep], np.ones(int(keep.sum()))),
        "drift": gaussian_filter1d(
            reg(sent["on"].to_numpy(), (sent["off"] - sent["on"]).to_numpy(),
                (sent["n"] - sent["n"].mean()).to_numpy(float)),
            sigma=drift_sigma_s / tr_s, mode="nearest"),
    }
    out = {}
    for name, v in feats.items():
        sd = v.std()
        if sd <= 1e-12 * max(1.0, np.abs(v).max()):
            log.warning("stimulus feature %r is constant over the %d TRs; set to 0", name, n_trs)
            out[name] = np.zeros(n_trs)
        else:
            out[name] = (v - v.mean()) / sd
    return pd.DataFrame(out, index=pd.RangeIndex(n_trs, name="tr"))[list(FEATURES)]


def _validate_plant(plant, network_names, feature_names, n_tc) -> list[dict]:
    if isinstance(plant, dict) or not isinstance(plant, Iterable):
        raise ParameterError("plant", f"{type(plant).__name__}", expected="a list of dicts")
    out = []
    for i, p in enumerate(plant):
        if not isinstance(p, dict):
            raise ParameterError(f"plant[{i}]", f"{p!r}", expected="a dict with network, source, sign, weight")
        unknown = set(p) - {"network", "source", "sign", "weight"}
        if unknown:
            raise ParameterError(f"plant[{i}]", f"unknown key(s) {sorted(unknown)}",
                                 expected="network, source, sign, weight")
        net, src = p.get("network"), p.get("source")
        if net not in network_names:
            raise ParameterError(f"plant[{i}].network", f"{net!r}", expected=f"one of {list(network_names)}")
        if isinstance(src, str) and src.startswith("timecourse:"):
            idx = src.split(":", 1)[1]
            if not idx.isdigit() or int(idx) >= n_tc:
                raise ParameterError(f"plant[{i}].source", f"{src!r}",
                                     expected=f"'timecourse:i' with 0 <= i < {n_tc} (columns of timecourses)")
        elif src not in feature_names:
            raise ParameterError(f"plant[{i}].source", f"{src!r}",
                                 expected=f"one of {list(feature_names)} or 'timecourse:i'")
        sign = p.get("sign", 1)
        if sign not in (1, -1) or isinstance(sign, bool):
            raise ParameterError(f"plant[{i}].sign", f"{sign!r}", expected="+1 or -1")
        weight = p.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight > 0:
            raise ParameterError(f"plant[{i}].weight", f"{weight!r}", expected="a number > 0")
        out.append({"network": net, "source": src, "sign": int(sign), "weight": float(weight)})
    return out


def _array_sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes() + str(a.shape).encode()).hexdigest()[:16]


def _bids_label(name: str, value) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9]+", value):
        raise ParameterError(name, f"{value!r}", expected="a BIDS label (letters and digits)")
    return value


@functools.lru_cache(maxsize=8)
def _gm_on_grid(shape: tuple, affine: tuple) -> np.ndarray:
    from nilearn.datasets import load_mni152_gm_template
    from nilearn.image import resample_img

    gm = load_mni152_gm_template(resolution=1)
    res = resample_img(gm, target_affine=np.array(affine), target_shape=shape,
                       interpolation="continuous", force_resample=True, copy_header=True)
    return np.clip(np.asarray(res.dataobj, dtype=np.float64), 0.0, 1.0)


#: Model of the synthetic twin's baseline (see :func:`epi_baseline`).
EPI_BASELINE = {"mean": (600.0, 600.0), "tsnr": (45.0, 75.0), "dropout_z_mm": (-10.0, -40.0),
                "dropout_min": 0.5}


def epi_baseline(mask_img, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean intensity and temporal SNR per mask voxel, as in a preprocessed 3 T EPI run.

    The synthetic twin's ``preproc`` volumes (as fMRIPrep's ``desc-preproc_bold``: no confound
    regression, the signal on its baseline) are ``c_s * mean_v * (1 + clean_v(t) / tsnr_v)``,
    with ``c_s`` a subject's scanner gain (0.9-1.1); the clean series have SD ~1 (the subject's
    noise level, 0.85-1.15), so the volumes' tSNR is ~``tsnr_v``:

    - ``mean_v = 600 + 600 * p_GM(v)`` (arbitrary scanner units; grey matter is brighter than
      white matter in T2*-weighted EPI; ``p_GM`` from nilearn's MNI152 2009 grey-matter
      template on the mask's grid);
    - ``tsnr_v = (45 + 75 * r_v) * d_v``: ``r_v`` in [0, 1] is the voxel's ellipsoidal distance
      from the mask's centre (receive-coil arrays: SNR highest near the cortex, lowest in the
      centre of the head), ``d_v`` a susceptibility loss below MNI z = -10 mm, linear down to
      0.5 at z <= -40 mm (orbitofrontal and inferior temporal dropout).

    On the 6 mm grid this gives a median of ~100 in dorsal (z > 40 mm) and ~110 in lateral
    cortex, ~60 in the centre of the head and ~57 (49-66) below z = -30 mm; 46-120 overall
    (median 93): the range of tSNR of preprocessed Narratives scans (~50-150 in cortex).

    Parameters
    ----------
    mask_img : image or path
        The grid's mask.
    mask : bool array, optional
        The mask's voxels (default: ``mask_img > 0``).

    Returns
    -------
    mean, tsnr : numpy.ndarray, (V,) each
        In the mask's C order.
    """
    mimg, m = _load_mask(mask_img)
    if mask is not None:
        m = np.asarray(mask, bool)
    aff = np.asarray(mimg.affine, dtype=float)
    gm = _gm_on_grid(tuple(int(n) for n in m.shape), tuple(map(tuple, np.round(aff, 6))))[m]
    ijk = np.argwhere(m)
    xyz = ijk @ aff[:3, :3].T + aff[:3, 3]
    centre = xyz.mean(axis=0)
    half = np.maximum(np.abs(xyz - centre).max(axis=0), 1e-6)
    r = np.clip(np.sqrt((((xyz - centre) / half) ** 2).sum(axis=1)), 0.0, 1.0)
    (m0, m1), (t0, t1) = EPI_BASELINE["mean"], EPI_BASELINE["tsnr"]
    z_hi, z_lo = EPI_BASELINE["dropout_z_mm"]
    drop = 1.0 - (1.0 - EPI_BASELINE["dropout_min"]) * np.clip((z_hi - xyz[:, 2]) / (z_hi - z_lo), 0.0, 1.0)
    return m0 + m1 * gm, (t0 + t1 * r) * drop


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


#: the realistic twin (``twin: realistic``): planting networks at this mean Dice with the
#: read-out atlas, and this per-subject boundary jitter (mm RMS)
REALISTIC_TWIN = {"tissue": True, "planting_dice": 0.8, "jitter_mm": 3.0}


def twin_options(twin: str, label_img, mask_img, voxel_mm: float, seed: int) -> tuple[dict, dict]:
    """Keyword arguments of :func:`make_synthetic_dataset` for a twin kind, and what was done.

    ``"ideal"``: none (uniform tissue, planted on the read-out atlas itself, no jitter: the
    positive control, an upper bound of what real data allow). ``"realistic"``
    (:data:`REALISTIC_TWIN`): signal and noise follow grey matter (``tissue=True``), the signals
    are planted on the read-out atlas deformed (:func:`mismatched_labels`, seed ``seed``) to a
    mean network Dice of 0.8 with it, and every subject's planted networks are moved again by
    3 mm RMS (``jitter_mm``). Returns ``(kwargs, info)``; ``info`` states the achieved Dice and
    displacement."""
    import nibabel as nib

    if twin == "ideal":
        return {}, {"twin": "ideal"}
    if twin != "realistic":
        raise ParameterError("twin", f"{twin!r}", expected="'ideal' or 'realistic'")
    mask = np.asarray(mask_img.dataobj) > 0
    readout = np.asarray(label_img.dataobj).astype(np.int64)
    lab, rms, dice = mismatched_labels(readout, mask, REALISTIC_TWIN["planting_dice"], voxel_mm, seed)
    planting = nib.Nifti1Image(lab.astype(np.int16), mask_img.affine)
    kw = {"tissue": REALISTIC_TWIN["tissue"], "jitter_mm": REALISTIC_TWIN["jitter_mm"],
          "planting_img": planting}
    return kw, {"twin": "realistic", **REALISTIC_TWIN, "planting_dice_achieved": round(dice, 4),
                "planting_rms_mm": round(rms, 3)}


def live_plants(truth: dict) -> list[dict]:
    """The planted couplings of a twin's ``truth.json`` that carry a signal.

    A plant whose source is constant over the scan (a stimulus feature that
    :func:`stimulus_features` set to 0) is written with ``"live": false``; entries without the
    key (all plants live, or a truth file from before the key) count as live.
    """
    return [p for p in truth.get("plant", []) if p.get("live", True)]


def sentence_ends(words, sentence_pause_s: float | None) -> tuple[int, bool]:
    """How many sentence ends the word table has, and whether they were inferred from pauses
    of at least ``sentence_pause_s`` (a table without any marked)."""
    wt = _check_words(words)
    n_ends = int(wt["sentence_end"].sum())
    if n_ends == 0 and len(wt) > 1 and sentence_pause_s is not None:
        on_w, off_w = wt["onset"].to_numpy(float), wt["offset"].to_numpy(float)
        return int(_pause_sentence_ends(on_w, off_w, sentence_pause_s).sum()), True
    return n_ends, False


def check_plants(entries: list[dict], sources: dict, n_trs: int, words,
                 sentence_pause_s: float | None) -> tuple[list[bool], list[dict]]:
    """Which plants of a twin are live: a plant whose source is constant over the ``n_trs`` TRs
    (a stimulus feature set to 0, e.g. sentence ends in a word table without any) carries no
    signal. Returns ``(live, dead_plants)``: one flag per entry, and per dead entry
    ``{"network", "source", "reason"}`` (each logged as a warning). Every plant dead is a
    ParameterError naming the constant sources and why. Used by the volume twin and the
    surface twin alike."""
    dead_src = [n for n, v in sources.items() if np.ptp(np.asarray(v)) == 0]
    live = [e["source"] not in dead_src for e in entries]
    n_ends, ends_inferred = sentence_ends(words, sentence_pause_s)

    def dead_reason(src: str) -> str:
        why = f"stimulus feature {src!r} is constant over the {int(n_trs)} TRs (set to 0)"
        if src in ("sentence_end", "drift"):
            why += (f"; the word table has {n_ends} sentence end(s)"
                    + (f" (inferred from pauses >= {sentence_pause_s:g} s)" if ends_inferred else ""))
        return why

    dead_plants = [{"network": e["network"], "source": e["source"], "reason": dead_reason(e["source"])}
                   for e, ok in zip(entries, live) if not ok]
    if dead_plants and not any(live):
        raise ParameterError("plant", "every plant is dead: constant source(s) "
                             + "; ".join(dead_reason(n) for n in dead_src),
                             expected="at least one plant whose source varies over the scan "
                                      "(e.g. word_rate, word_length, pause, or 'timecourse:i')")
    for d in dead_plants:
        log.warning("plant %s <- %s is dead: %s; the network is not planted by it",
                    d["network"], d["source"], d["reason"])
    return live, dead_plants


def make_synthetic_dataset(out_dir: str | Path, *, task: str, words: pd.DataFrame, n_trs: int,
                           mask_img, atlas_img, network_names: Sequence[str], n_subjects: int = 8,
                           plant: Sequence[dict] | None = None, timecourses=None,
                           snr: float | None = None, seed: int = 0, tr_s: float = TR_S,
                           start_offset_s: float = 0.0, smooth_fwhm_vox: float = 2.0,
                           ar_phi: float = 0.4, drift_amp: float = 0.3, profile_fwhm_vox: float = 3.0,
                           hrf_model: str = "spm", preproc: bool = True,
                           overwrite: bool = False, sentence_pause_s: float | None = 0.5,
                           tissue: bool = False, planting_img=None,
                           jitter_mm: float = 0.0) -> Path:
    """Write a Narratives-shaped synthetic fMRI data set with planted network couplings.

    Every voxel of a planted network carries ``sign * weight * snr * g_v * a_s * source(t)``
    plus noise, where ``source`` is a z-scored story feature (:func:`stimulus_features`) or a
    column of ``timecourses``, ``g_v`` in [0.25, 1] a smooth spatial profile (1 at the network's
    peak voxel) and ``a_s`` a subject gain (0.75-1.25). Voxels of unplanted networks and
    outside every network carry noise only. Noise per subject, scaled by a subject noise level
    (0.85-1.15): Gaussian-smoothed white noise (``smooth_fwhm_vox``), AR(1) in time (phi drawn
    in ``ar_phi`` +- 0.1), plus slow drift (cosines below 1/128 Hz, ``drift_amp`` of the SD).

    Dead plants: a plant whose source is constant over the scan (a stimulus feature that
    :func:`stimulus_features` set to 0, e.g. ``drift`` of a story with one sentence) carries no
    signal. It is kept in ``truth.json`` with ``"live": false`` (every entry then has the key),
    listed in ``dead_plants`` (network, source, reason), and a network with no live plant is
    not ``planted`` and is in ``unplanted``; a warning says so. When every plant is dead,
    :class:`ParameterError` (``plant``). With all plants live, ``truth.json`` is as before (no
    ``live`` keys; :func:`live_plants` reads both).

    A harder twin (all off by default; with the defaults the files are byte for byte those of
    a twin made without these options):

    - ``tissue=True``: the signal at voxel v is multiplied by ``0.25 + 0.75 * p_GM(v)`` and
      the noise by ``0.5 + 0.5 * p_GM(v)`` (p_GM: the MNI152 grey-matter probability on the
      mask's grid, as in :func:`epi_baseline`): white matter and CSF fluctuate less than grey
      matter, and carry less of the neural signal, so a voxel's SNR falls from 1x (p_GM = 1)
      to 0.5x (p_GM = 0) that of the uniform twin; voxel-wise z-scored analyses see that
      SNR, and group maps of the twin then scale with grey matter, as real ones do.
    - ``planting_img``: the signals go on the networks of this label image (same numbering
      as ``atlas_img``) instead of ``atlas_img``'s; ``atlas_img`` stays the read-out atlas of
      ``truth.json`` (names, ``networks[...].n_voxels``, ``atlas_sha256``). Each planted
      network's Dice between the read-out and the planting mask is recorded
      (``networks[name]["dice_readout_vs_planted"]``).
    - ``jitter_mm``: subject-specific boundaries. For subject s the planting labels are moved by
      :func:`deform_labels` (a smooth random displacement field: 3 components of white noise
      smoothed with a Gaussian of FWHM :data:`JITTER_FWHM_VOX` voxels, RMS length ``jitter_mm``
      mm; nearest-neighbour resampling at x + d(x), within the mask), drawn from its own
      generator (``SeedSequence([seed, 7919])``, child s): the noise is that of the same twin
      without jitter. The spatial profile ``g_v`` is drawn once on the undeformed planting
      labels and sampled at the same deformed positions as the labels, so subject s's planted
      voxels are exactly its deformed networks. ``truth["jitter"]`` holds the model and, per
      subject, the mean Dice over the planted networks between its deformed and the
      undeformed planting networks.

    Written (atomically: a temporary folder renamed into place), in the real layout::

        dataset_description.json, participants.tsv, code/scan_exclude.json,
        sub-XXX/func/sub-XXX_task-T_events.tsv,
        derivatives/afni-nosmooth/sub-XXX/func/sub-XXX_task-T_space-MNI152NLin2009cAsym_res-native_desc-clean_bold.nii.gz
        derivatives/afni-nosmooth/tpl-MNI152NLin2009cAsym/tpl-MNI152NLin2009cAsym_res-T_desc-brain_mask.nii.gz
        derivatives/fmriprep/sub-XXX/func/sub-XXX_task-T_space-MNI152NLin2009cAsym_res-native_desc-preproc_bold.nii.gz
            (the same series on a realistic baseline, for tSNR: :func:`epi_baseline`)
        truth.json (planted couplings, gains, noise, grid, seed), truth_sources.tsv (T x sources)

    Parameters
    ----------
    out_dir : str or Path
        The data set's root (must not exist unless ``overwrite``).
    task : str
        BIDS task label (the story's name).
    words : pandas.DataFrame
        Word table (``word``, ``onset``, ``offset``, ``sentence_end``).
    n_trs : int
        Scan length in TRs (>= 20).
    mask_img : image or path
        Brain mask; defines the grid (e.g. :func:`brain_mask`).
    atlas_img : image or path
        3-D integer labels on the mask's grid: 0 = none, label i = ``network_names[i-1]``.
    network_names : sequence of str
    n_subjects : int
    plant : list of dict, optional
        ``{"network", "source", "sign": +1/-1, "weight"}``; default :data:`DEFAULT_PLANT`.
    timecourses : array (n_trs x m), optional
        Extra sources, referred to as ``"timecourse:i"`` (z-scored here).
    snr : float, optional
        Signal/noise SD ratio at a peak voxel (default :data:`DEFAULT_SNR`).
    seed : int
        Everything random derives from it: same seed, same bytes.
    tr_s, start_offset_s, hrf_model
        As in :func:`stimulus_features`.
    smooth_fwhm_vox, ar_phi, drift_amp, profile_fwhm_vox : float
        Noise and spatial-profile parameters.
    preproc : bool
        Also write the ``preproc`` volumes (for tSNR; ~1 s per subject at 6 mm); False when
        only the cleaned volumes are needed (e.g. recovery sweeps).
    overwrite : bool
        Replace an existing ``out_dir``.
    sentence_pause_s : float or None
        As in :func:`stimulus_features`: sentence ends of a word table without any, from
        pauses (default 0.5 s; recorded in ``truth["sentence_ends"]`` when used).
    tissue : bool
        Scale signal and noise with grey matter (see above; ``truth["tissue"]`` when True).
    planting_img : image or path, optional
        3-D integer labels on the mask's grid, numbered as ``atlas_img``: the networks that
        carry the signals (default: ``atlas_img``; ``truth["planting"]`` when given).
    jitter_mm : float
        RMS displacement (mm) of every subject's planting networks (default 0: none).

    Returns
    -------
    Path
        ``out_dir``.
    """
    import nibabel as nib
    from scipy.ndimage import gaussian_filter
    from scipy.signal import lfilter

    from . import __version__, fetch

    # ---- validate everything before any work
    out_dir = Path(out_dir)
    task = _bids_label("task", task)
    if out_dir.exists() and not overwrite:
        raise InputError(out_dir, "already exists", expected="a new folder, or overwrite=True")
    for name, v, lo in (("n_trs", n_trs, 20), ("n_subjects", n_subjects, 2)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise ParameterError(name, f"{v!r}", expected=f"an int >= {lo}")
    if n_subjects > 999:
        raise ParameterError("n_subjects", f"{n_subjects}", expected="<= 999 (3-digit labels)")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ParameterError("seed", f"{seed!r}", expected="an int >= 0")
    snr = DEFAULT_SNR if snr is None else snr
    for name, v, ok, exp in (("snr", snr, lambda x: x > 0, "> 0"), ("tr_s", tr_s, lambda x: x > 0, "> 0"),
                             ("ar_phi", ar_phi, lambda x: 0 <= x <= 0.85, "in [0, 0.85]"),
                             ("smooth_fwhm_vox", smooth_fwhm_vox, lambda x: x >= 0, ">= 0"),
                             ("drift_amp", drift_amp, lambda x: x >= 0, ">= 0"),
                             ("profile_fwhm_vox", profile_fwhm_vox, lambda x: x >= 0, ">= 0"),
                             ("start_offset_s", start_offset_s, lambda x: x >= 0, ">= 0")):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.floating)) or not ok(v):
            raise ParameterError(name, f"{v!r}", expected=exp)
    if not isinstance(tissue, (bool, np.bool_)):
        raise ParameterError("tissue", f"{tissue!r}", expected="True or False")
    if isinstance(jitter_mm, bool) or not isinstance(jitter_mm, (int, float, np.integer, np.floating)) \
            or not (np.isfinite(jitter_mm) and jitter_mm >= 0):
        raise ParameterError("jitter_mm", f"{jitter_mm!r}", expected="a finite number of mm >= 0")
    if sentence_pause_s is not None and (
            isinstance(sentence_pause_s, bool) or not isinstance(sentence_pause_s, (int, float))
            or not sentence_pause_s >= 0):
        raise ParameterError("sentence_pause_s", f"{sentence_pause_s!r}",
                             expected="None or a number of seconds >= 0")
    mimg, mask = _load_mask(mask_img)

    def label_grid(img, name: str) -> np.ndarray:
        aimg = img
        if isinstance(img, (str, os.PathLike)):
            if not Path(img).is_file():
                raise InputError(img, "atlas file not found" if name == "atlas_img"
                                 else f"{name} file not found")
            aimg = nib.load(img)
        if not hasattr(aimg, "affine"):
            raise ParameterError(name, f"{type(img).__name__}", expected="a NIfTI image or a path")
        lab = np.asarray(aimg.dataobj)
        if lab.shape != mask.shape or not np.allclose(aimg.affine, mimg.affine, atol=1e-3):
            raise InputError(name, f"grid {lab.shape} differs from the mask's {mask.shape}",
                             field="shape/affine", expected="the mask's grid (resample it with nearest)")
        if not np.allclose(lab, np.round(lab)) or lab.min() < 0:
            raise InputError(name, "labels are not non-negative integers", expected="0 = none, 1..N")
        return np.round(lab).astype(int)

    atlas = label_grid(atlas_img, "atlas_img")
    planting = None if planting_img is None else label_grid(planting_img, "planting_img")
    if isinstance(network_names, str) or not isinstance(network_names, Iterable):
        raise ParameterError("network_names", f"{network_names!r}", expected="a list of names")
    names = [str(n) for n in network_names]
    if len(set(names)) != len(names) or not names:
        raise ParameterError("network_names", "empty or duplicate names", expected="unique names")
    if atlas.max() > len(names):
        raise InputError("atlas_img", f"label {atlas.max()} but {len(names)} network names",
                         expected="labels 1..len(network_names)")
    if planting is not None and planting.max() > len(names):
        raise InputError("planting_img", f"label {planting.max()} but {len(names)} network names",
                         expected="labels 1..len(network_names), numbered as atlas_img")
    tc = None
    if timecourses is not None:
        tc = np.asarray(timecourses, dtype=float)
        tc = tc[:, None] if tc.ndim == 1 else tc
        if tc.ndim != 2 or tc.shape[0] != n_trs or not np.isfinite(tc).all():
            raise ParameterError("timecourses", f"shape {tc.shape}", expected=f"finite ({n_trs}, m)")
        if (tc.std(axis=0) == 0).any():
            raise ParameterError("timecourses", "a constant column", expected="non-constant columns")
    entries = _validate_plant(DEFAULT_PLANT if plant is None else plant, names, FEATURES,
                              0 if tc is None else tc.shape[1])
    labels_in_mask = atlas[mask]
    # the networks that carry the signals: planting_img's when given, else the read-out atlas's
    plant_in_mask = labels_in_mask if planting is None else planting[mask]
    for e in entries:
        if not (plant_in_mask == names.index(e["network"]) + 1).any():
            if planting is not None:
                raise ParameterError("plant", f"network {e['network']!r} has no voxel of "
                                     "planting_img inside the mask",
                                     expected="networks present in planting_img within the mask")
            raise ParameterError("plant", f"network {e['network']!r} has no voxel inside the mask",
                                 expected="networks present in atlas_img within the mask")
    features = stimulus_features(words, int(n_trs), tr_s, start_offset_s=start_offset_s, hrf_model=hrf_model,
                                 sentence_pause_s=sentence_pause_s)
    kinds = fetch.load_manifest()["kinds"]

    # ---- sources and spatial weights
    def source(name: str) -> np.ndarray:
        if name.startswith("timecourse:"):
            v = tc[:, int(name.split(":")[1])]
            return (v - v.mean()) / v.std()
        return features[name].to_numpy()

    src_names = list(dict.fromkeys(e["source"] for e in entries))
    sources = np.column_stack([source(n) for n in src_names])  # T x m
    live, dead_plants = check_plants(entries, dict(zip(src_names, sources.T)), n_trs, words,
                                     sentence_pause_s)
    n_ends, ends_inferred = sentence_ends(words, sentence_pause_s)
    children = np.random.SeedSequence(int(seed)).spawn(int(n_subjects) + 1)
    rng0 = np.random.default_rng(children[0])
    vox = np.argwhere(mask)  # C order, as data[mask]
    n_vox = len(vox)
    profiles: dict[str, np.ndarray] = {}
    for net in sorted({e["network"] for e in entries}):
        field = rng0.standard_normal(mask.shape)
        if profile_fwhm_vox > 0:
            field = gaussian_filter(field, profile_fwhm_vox / 2.3548, mode="nearest")
        inside = plant_in_mask == names.index(net) + 1
        vals = field[mask][inside]
        g = np.ones_like(vals) if vals.size == 1 or np.ptp(vals) == 0 else \
            0.25 + 0.75 * (vals - vals.min()) / np.ptp(vals)
        prof = np.zeros(n_vox)
        prof[inside] = g
        profiles[net] = prof
    weights = np.zeros((len(src_names), n_vox))
    for e in entries:
        weights[src_names.index(e["source"])] += e["sign"] * e["weight"] * profiles[e["network"]]
    signal = sources @ weights  # T x V, peak amplitude 1 * weight

    zooms_mm = np.sqrt((np.asarray(mimg.affine, dtype=float)[:3, :3] ** 2).sum(axis=0))
    # tissue: signal and noise scaled by grey matter (as epi_baseline reads p_GM)
    amp = amp_noise = None
    if tissue:
        aff6 = tuple(map(tuple, np.round(np.asarray(mimg.affine, dtype=float), 6)))
        gm_v = _gm_on_grid(tuple(int(n) for n in mask.shape), aff6)[mask]
        amp, amp_noise = 0.25 + 0.75 * gm_v, 0.5 + 0.5 * gm_v
    # jitter: each subject's planting networks deformed (own generators: the noise draws of
    # children[...] are those of the twin without jitter); jit_src[s][v] = the mask voxel whose
    # label and profile voxel v takes (-1: a position outside the mask, no signal)
    jit_src: list[np.ndarray] | None = None
    jit_dice: list[float] = []
    live_nets = sorted({e["network"] for e, ok in zip(entries, live) if ok})
    if jitter_mm > 0:
        mask_pos = np.full(mask.size, -1, dtype=np.int64)
        mask_pos[np.flatnonzero(mask.ravel())] = np.arange(n_vox)
        flat_in_mask = np.flatnonzero(mask.ravel())
        jit_children = np.random.SeedSequence([int(seed), 7919]).spawn(int(n_subjects))
        jit_src = []
        for s in range(int(n_subjects)):
            src = _deform_index(mask, float(jitter_mm), zooms_mm, np.random.default_rng(jit_children[s]),
                                JITTER_FWHM_VOX)
            sv = mask_pos[src.ravel()[flat_in_mask]]
            jit_src.append(sv)
            moved = np.where(sv >= 0, plant_in_mask[np.maximum(sv, 0)], 0)
            jit_dice.append(float(np.mean([_dice_masks(moved == names.index(n) + 1,
                                                       plant_in_mask == names.index(n) + 1)
                                           for n in live_nets])))

    def subject_signal(s: int) -> np.ndarray:
        if jit_src is None:
            return signal
        sv = jit_src[s]
        return sources @ np.where(sv >= 0, weights[:, np.maximum(sv, 0)], 0.0)

    # drift basis: cosines with period >= 128 s (as SPM's high-pass cut-off)
    T = int(n_trs)
    k_drift = max(1, int(np.floor(2 * T * tr_s / 128.0)))
    tt = np.arange(T)
    dct = np.column_stack([np.cos(np.pi * (tt + 0.5) * k / T) for k in range(1, k_drift + 1)])
    dct /= dct.std(axis=0)

    # ---- write into a temporary sibling, then rename into place
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}"
    subjects = [f"{i:03d}" for i in range(1, int(n_subjects) + 1)]
    gains, noise_levels, phis, scales = [], [], [], []
    base_mean, base_tsnr = epi_baseline(mimg, mask) if preproc else (None, None)
    try:
        tmp.mkdir()
        zooms = tuple(float(z) for z in np.abs(np.diag(mimg.affine))[:3])
        sigma_s = smooth_fwhm_vox / 2.3548
        w_on = float(pd.to_numeric(words["onset"], errors="coerce").min()) + start_offset_s
        w_off = float(pd.to_numeric(words["offset"], errors="coerce").max()) + start_offset_s

        def one_subject(s: int) -> tuple[float, float, float, float]:
            sub = subjects[s]
            rng = np.random.default_rng(children[s + 1])
            a = float(rng.uniform(0.75, 1.25))
            b = float(rng.uniform(0.85, 1.15))
            phi = float(np.clip(rng.uniform(ar_phi - 0.1, ar_phi + 0.1), 0.0, 0.9))
            e = rng.standard_normal((T, *mask.shape), dtype=np.float32)
            if sigma_s > 0:
                e = gaussian_filter(e, sigma=(0, sigma_s, sigma_s, sigma_s), mode="nearest")
            e = e[:, mask]
            e = (e - e.mean(axis=0)) / e.std(axis=0)
            # stationary AR(1): x_0 = e_0, x_t = phi x_{t-1} + sqrt(1 - phi^2) e_t
            noise = np.empty((T, n_vox))
            noise[0] = e[0]
            noise[1:] = lfilter([np.sqrt(1 - phi ** 2)], [1.0, -phi], e[1:], axis=0, zi=phi * e[:1])[0]
            del e
            noise = (noise - noise.mean(axis=0)) / noise.std(axis=0)
            if drift_amp > 0:
                coef = rng.standard_normal((k_drift, n_vox)) / np.sqrt(k_drift)
                noise = (noise + drift_amp * (dct @ coef)) / np.sqrt(1 + drift_amp ** 2)
            if amp is None:
                x = a * snr * subject_signal(s) + b * noise
            else:
                x = a * snr * subject_signal(s) * amp + b * noise * amp_noise
            x = x.astype(np.float32)
            del noise
            # drawn after every draw above, so the clean series do not depend on it
            c = float(rng.uniform(0.9, 1.1))  # the subject's scanner gain (intensity units)

            def write(kind: str, values: np.ndarray, dtype=np.float32) -> None:
                vol = np.zeros((*mask.shape, T), dtype=np.float32)
                vol[mask] = values.T
                img = nib.Nifti1Image(vol, mimg.affine, dtype=dtype)  # int16: nibabel scales
                img.header.set_xyzt_units("mm", "sec")
                img.header.set_zooms((*zooms, float(tr_s)))
                img.header["descrip"] = b"llmbrain synthetic twin"
                rel = kinds[kind]["path"].format(sub=sub, task=task, run="", hemi=None)
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                img.to_filename(tmp / rel)

            write("clean", x)
            # scanner-like volume before confound regression (int16, scaled): the same series on
            # the voxel's mean intensity, scaled to its tSNR (clean = this, demeaned and rescaled)
            if preproc:
                write("preproc", (c * base_mean * (1.0 + x / base_tsnr)).astype(np.float32), np.int16)
            ev = kinds["events"]["path"].format(sub=sub, task=task, run="")
            (tmp / ev).parent.mkdir(parents=True, exist_ok=True)
            pd.DataFrame([{"onset": round(w_on, 3), "duration": round(w_off - w_on, 3),
                           "trial_type": "story", "stim_file": f"{task}_audio.wav"}]).to_csv(
                tmp / ev, sep="\t", index=False)
            return a, b, phi, c

        # subjects are independent (own seed): threads (numpy, scipy and zlib release the GIL)
        n_workers = max(1, min(int(n_subjects), os.cpu_count() or 1, 4))
        with ThreadPoolExecutor(max_workers=n_workers) as pool:
            for a, b, phi, c in pool.map(one_subject, range(int(n_subjects))):
                gains.append(a)
                noise_levels.append(b)
                phis.append(phi)
                scales.append(c)
        mask_rel = kinds["mask"]["path"].format(task=task)
        (tmp / mask_rel).parent.mkdir(parents=True, exist_ok=True)
        mimg_out = nib.Nifti1Image(mask.astype(np.uint8), mimg.affine)
        mimg_out.header.set_xyzt_units("mm", "sec")
        mimg_out.to_filename(tmp / mask_rel)
        desc = {"Name": f"llmbrain synthetic twin of Narratives ({task})", "BIDSVersion": "1.8.0",
                "DatasetType": "raw", "License": "CC0",
                "GeneratedBy": [{"Name": "llmbrain_utils.fmri.make_synthetic_dataset",
                                 "Version": __version__}]}
        (tmp / "dataset_description.json").write_text(json.dumps(desc, indent=2))
        deriv = tmp / "derivatives" / "afni-nosmooth"
        (deriv / "dataset_description.json").write_text(json.dumps(
            {**desc, "DatasetType": "derivative", "Name": desc["Name"] + ", afni-nosmooth"}, indent=2))
        if preproc:
            (tmp / "derivatives" / "fmriprep" / "dataset_description.json").write_text(json.dumps(
                {**desc, "DatasetType": "derivative", "Name": desc["Name"] + ", fmriprep"}, indent=2))
        pd.DataFrame({"participant_id": [f"sub-{s}" for s in subjects], "age": "n/a", "sex": "n/a",
                      "task": task, "condition": "n/a", "comprehension": "n/a"}).to_csv(
            tmp / "participants.tsv", sep="\t", index=False)
        (tmp / "code").mkdir(exist_ok=True)
        (tmp / "code" / "scan_exclude.json").write_text(json.dumps({task: {}}, indent=2))
        pd.DataFrame(sources, columns=src_names, index=pd.RangeIndex(T, name="tr")).to_csv(
            tmp / "truth_sources.tsv", sep="\t", float_format="%.6f")
        planted = []
        # with a dead plant every entry says whether it is live; else as before (no key)
        flag = (lambda ok: {"live": ok}) if dead_plants else (lambda ok: {})
        for e, ok in zip(entries, live):
            prof = profiles[e["network"]]
            peak = int(np.argmax(prof))
            planted.append({**e, "label": names.index(e["network"]) + 1,
                            "n_voxels": int((prof > 0).sum()), "peak_voxel": peak,
                            "peak_ijk": vox[peak].tolist(),
                            "peak_xyz_mm": (mimg.affine[:3, :3] @ vox[peak] + mimg.affine[:3, 3]).round(2).tolist(),
                            **flag(ok)})
        ratio = np.array(gains) * snr / np.array(noise_levels)
        truth = {
            "generator": "llmbrain_utils.fmri.make_synthetic_dataset", "version": __version__,
            "task": task, "subjects": subjects, "n_subjects": int(n_subjects), "n_trs": T,
            "tr_s": float(tr_s), "seed": int(seed), "snr": float(snr), "start_offset_s": float(start_offset_s),
            "hrf_model": hrf_model, "features": list(FEATURES), "sources": src_names,
            "plant": planted,
            "networks": {n: {"label": i + 1, "n_voxels": int((labels_in_mask == i + 1).sum()),
                             "planted": any(e["network"] == n and ok for e, ok in zip(entries, live)),
                             "couplings": [{"source": e["source"], "sign": e["sign"], "weight": e["weight"],
                                            **flag(ok)}
                                           for e, ok in zip(entries, live) if e["network"] == n]}
                         for i, n in enumerate(names)},
            "unplanted": [n for n in names if not any(e["network"] == n and ok
                                                      for e, ok in zip(entries, live))],
            "subject_gain": [round(g, 6) for g in gains], "subject_noise": [round(b, 6) for b in noise_levels],
            "noise": {"smooth_fwhm_vox": float(smooth_fwhm_vox), "ar_phi": [round(p, 6) for p in phis],
                      "drift_amp": float(drift_amp), "drift_cutoff_s": 128.0, "n_drift": k_drift,
                      "profile_fwhm_vox": float(profile_fwhm_vox), "profile_range": [0.25, 1.0]},
            "expected_peak_r": [round(float(r / np.sqrt(1 + r ** 2)), 4) for r in ratio],
            "grid": {"shape": list(mask.shape), "affine": np.round(mimg.affine, 6).tolist(),
                     "voxel_mm": list(zooms), "n_voxels": n_vox, "space": SPACE},
            "mask_sha256": _array_sha(mask.astype(np.uint8)), "atlas_sha256": _array_sha(atlas),
            "bold": kinds["clean"]["path"].format(sub="{sub}", task=task, run="", hemi=None),
            "preproc": None if not preproc else {
                "bold": kinds["preproc"]["path"].format(sub="{sub}", task=task, run="", hemi=None),
                "model": "preproc = c_s * mean_v * (1 + clean / tsnr_v); see fmri.epi_baseline",
                "subject_scale": [round(c, 6) for c in scales],
                "mean_intensity_median": round(float(np.median(base_mean)), 3),
                "tsnr_v": {"median": round(float(np.median(base_tsnr)), 3),
                           "min": round(float(base_tsnr.min()), 3), "max": round(float(base_tsnr.max()), 3)},
            },
        }
        # what the defaults leave out (their truth.json stays byte for byte as before)
        if dead_plants:
            truth["dead_plants"] = dead_plants
        if ends_inferred:
            truth["sentence_ends"] = {"inferred_from_pauses": True,
                                      "sentence_pause_s": float(sentence_pause_s), "n": n_ends}
        if tissue:
            truth["tissue"] = {"model": "signal x (0.25 + 0.75 p_GM), noise x (0.5 + 0.5 p_GM)",
                               "enabled": True,
                               "p_GM": "nilearn MNI152 grey-matter template on the mask's grid",
                               "applies_to": ["signal", "noise"],
                               "amplitude_median": round(float(np.median(amp)), 4)}
        if planting is not None:
            truth["planting"] = {"source": "planting_img", "sha256": _array_sha(planting),
                                 "n_voxels": {n: int((plant_in_mask == i + 1).sum())
                                              for i, n in enumerate(names)}}
        if planting is not None or jitter_mm > 0:
            for n in live_nets:
                lab = names.index(n) + 1
                truth["networks"][n]["dice_readout_vs_planted"] = round(
                    _dice_masks(labels_in_mask == lab, plant_in_mask == lab), 4)
        if jitter_mm > 0:
            truth["jitter"] = {"rms_mm": float(jitter_mm), "fwhm_vox": JITTER_FWHM_VOX,
                               "model": DEFORM_MODEL.replace("fwhm_vox", f"{JITTER_FWHM_VOX:g}")
                                        .replace("rms_mm", f"{float(jitter_mm):g}"),
                               "seed": [int(seed), 7919],
                               "profile": "drawn on the undeformed planting networks, sampled "
                                          "at the deformed positions",
                               "mean_dice_per_subject": [round(d, 4) for d in jit_dice],
                               "mean_dice": round(float(np.mean(jit_dice)), 4)}
        (tmp / "truth.json").write_text(json.dumps(truth, indent=2))
        old = None
        if out_dir.exists():
            old = out_dir.parent / f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("synthetic data set %s: %d subjects x %d TRs x %d voxels", out_dir, n_subjects, T, n_vox)
    return out_dir


def read_truth(root: str | Path) -> dict:
    """The ``truth.json`` of a synthetic data set."""
    p = Path(root) / "truth.json"
    if not p.is_file():
        raise InputError(p, "file not found", expected="a data set made by make_synthetic_dataset")
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise InputError(p, f"not valid JSON ({e})") from None
