"""Loaders of the real Narratives layout: one NIfTI scan inside a mask (:func:`load_bold`),
surface GIfTI (:func:`load_gifti`), the paths of a story's scans (:func:`dataset_paths`) and a
story's scans of several subjects (:func:`load_dataset`, in memory or into the rows of a memory
map; :func:`dataset_scans` and :func:`load_scan` for a caller that loads them one at a time)."""

from __future__ import annotations

import json
import logging
import os
import re
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from ..errors import InputError, ParameterError
from .masks import _load_mask

log = logging.getLogger(__name__.rpartition(".")[0])  # "llmbrain_utils.fmri", as before the split


TR_S = 1.5
SPACE = "MNI152NLin2009cAsym"


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
    # max |x| (x is finite here) without an |x| copy: the same number as np.abs(x).max()
    big = max(0.0, float(-x.min(initial=0.0)), float(x.max(initial=0.0)))
    const = np.flatnonzero(sd <= 1e-8 * max(1.0, big))
    if const.size:
        log.warning("%s: %d constant voxel(s) (set to 0 when z-scoring)", source, const.size)
    if zscore:
        sd_safe = np.where(sd > 0, sd, 1.0)
        x = x - x.mean(axis=0)  # a new array (never the caller's), then in place: same numbers
        x /= sd_safe
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


_GZ_IN = 1 << 20
"""Compressed bytes read from a ``.nii.gz`` at a time."""
_BATCH = 16 << 20
"""Decompressed bytes (whole volumes) gathered at the mask's voxels at a time."""


def _inflate_module():
    """zlib, or ISA-L's drop-in inflate (``isal``, ~1.6x faster) when it is installed: the
    bytes are the same, only the time differs."""
    try:
        from isal import isal_zlib
    except ImportError:
        return zlib, (zlib.error,)
    return isal_zlib, (zlib.error, isal_zlib.error)


class _Inflater:
    """The decompressed bytes of a gzip file (one member or several), read in order into
    buffers, never the whole file at once. An inflater may hold output back (ISA-L takes its
    input whole): it is asked again, with no input, before the data are said to end."""

    def __init__(self, f, z):
        self.f, self.z, self.d, self.tail, self.done = f, z, z.decompressobj(31), b"", False

    def _step(self, max_length: int) -> bytes:
        if not self.tail and not self.done:
            self.tail = self.f.read(_GZ_IN)
            self.done = not self.tail
        got = self.d.decompress(self.tail, max_length)
        self.tail = self.d.unconsumed_tail
        return got

    def readinto(self, buf: memoryview) -> int:
        pos, n = 0, len(buf)
        while pos < n:
            if self.d.eof:  # another member may follow
                rest = self.d.unused_data or (b"" if self.done else self.f.read(_GZ_IN))
                if not rest:
                    break
                self.d, self.tail = self.z.decompressobj(31), rest
            got = self._step(n - pos)
            if not got and self.done and not self.tail:
                break  # no input left and nothing held back
            buf[pos:pos + len(got)] = got
            pos += len(got)
        return pos

    def finish(self) -> None:
        """Read the member to its end, so its trailer (CRC and length) is checked."""
        while not self.d.eof:
            if not self._step(_BATCH) and self.done and not self.tail and not self.d.eof:
                raise EOFError("the compressed data end before the gzip trailer")


def _read_exact(src, buf: memoryview, what: str) -> None:
    got = src.readinto(buf)
    if got != len(buf):
        raise EOFError(f"{got} of the {len(buf)} bytes of {what}")


def _mask_columns(img, mask: np.ndarray) -> np.ndarray | None:
    """Where the mask's voxels (in their C order, as ``data[mask]``) lie in each volume of the
    file, or None when the file is not a single-file NIfTI that :func:`_read_masked` can read
    (then nibabel reads it)."""
    from nibabel.arrayproxy import ArrayProxy

    proxy = img.dataobj
    name = getattr(proxy, "file_like", None)
    if not (isinstance(proxy, ArrayProxy) and isinstance(name, str) and proxy.order == "F"
            and len(proxy.shape) == 4 and tuple(proxy.shape[:3]) == mask.shape
            and (name.endswith(".nii") or name.endswith(".nii.gz"))):
        return None
    i, j, k = np.nonzero(mask)
    nx, ny, _ = mask.shape
    return (i + nx * (j + ny * k)).astype(np.intp)


def _read_masked(img, cols: np.ndarray, start_tr: int, n_trs: int) -> np.ndarray:
    """The window's volumes of a single-file NIfTI at voxels ``cols``: ``T x V`` float32, the
    numbers of ``np.asarray(img.dataobj[..., window], np.float32)[mask].T``.

    Volumes are read a batch at a time (a ``.nii.gz`` decompressed as a stream) and only the
    mask's voxels kept; the file's scaling (nibabel's own rule, element by element) is applied
    to those alone, a batch at a time. Never the whole 4-D image in memory, nor a float64 copy."""
    from nibabel.volumeutils import apply_read_scaling

    proxy = img.dataobj
    name, dt = proxy.file_like, proxy.dtype
    n_vox = int(np.prod(proxy.shape[:3]))
    vol = n_vox * dt.itemsize
    per = min(max(1, _BATCH // vol), n_trs)
    # as ArrayProxy._get_scaled: the scale factors cast to the slope's type where they fit
    slope, inter = np.asanyarray(proxy.slope), np.asanyarray(proxy.inter)
    if np.can_cast(inter, slope.dtype):
        inter = inter.astype(slope.dtype)
    x = np.empty((n_trs, cols.size), dtype=np.float32)
    # the file's unscaled values at the mask, unless they are x's own (float32, no scaling)
    same = dt == x.dtype and (slope, inter) == (1, 0)
    raw = None if same else np.empty((per, cols.size), dtype=dt)
    buf = np.empty(per * vol, np.uint8)
    z, _ = _inflate_module()
    with open(name, "rb") as f:
        src = _Inflater(f, z) if name.endswith(".gz") else f
        skip = proxy.offset + start_tr * vol
        while skip:
            m = min(skip, buf.size)
            _read_exact(src, memoryview(buf)[:m], "the header and the volumes before the window")
            skip -= m
        for t in range(0, n_trs, per):
            m = min(per, n_trs - t)
            _read_exact(src, memoryview(buf)[:m * vol], f"volumes {start_tr + t}-{start_tr + t + m - 1}")
            vols = buf[:m * vol].view(dt).reshape(m, n_vox)
            if raw is None:
                np.take(vols, cols, axis=1, out=x[t:t + m], mode="clip")
            else:
                np.take(vols, cols, axis=1, out=raw[:m], mode="clip")
                x[t:t + m] = apply_read_scaling(raw[:m], slope, inter)  # cast as np.asarray
        if isinstance(src, _Inflater) and start_tr + n_trs == proxy.shape[3]:
            src.finish()
    return x


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
    cols = _mask_columns(img, mask) if same_grid else None
    try:
        if cols is not None:  # the mask's voxels, read volume by volume
            x = _read_masked(img, cols, start_tr, n_trs)
        else:
            data = np.asarray(img.dataobj[..., start_tr:start_tr + n_trs], dtype=np.float32)
    except (OSError, EOFError, ValueError, *_inflate_module()[1]) as e:
        raise InputError(path, f"truncated or corrupt data ({type(e).__name__}: {e})",
                         expected="a complete file; download it again") from None
    if cols is None:
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
    from .. import fetch

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
    from .. import fetch

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


def dataset_scans(root: str | Path, story: str, subjects: str | Iterable, mask_img=None, *,
                  kind: str = "clean", tr_s: float = TR_S, start_tr: int = 0,
                  n_trs: int | None = None, detrend: bool = False, zscore: bool = True,
                  resample: bool = False, include_excluded: bool = False,
                  manifest=None, columns=None) -> tuple[dict[str, list[Path]], dict]:
    """What :func:`load_dataset` reads, checked before anything is read: ``(scans, options)``,
    each subject's files (``{subject: [path, ...]}``, in order) and the keywords of
    :func:`load_scan` for every one of them. Same parameters and errors as :func:`load_dataset`.

    For a caller that loads the subjects itself, e.g. one block per subject:
    ``load_scan(scans[sub], **options)``, then :func:`check_row` before writing its row.
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
    kw = {"tr_s": tr_s, "start_tr": start_tr, "n_trs": n_trs, "detrend": detrend,
          "zscore": zscore, "space": spec.get("space")}
    if not surface:
        _load_mask(mask_img)  # checked here, before any scan is read
        if columns is not None:
            raise ParameterError("columns", f"given with kind {kind!r}, a volume",
                                 expected="a surface kind (fsaverage6, ...) or columns=None")
        return paths, {**kw, "mask_img": mask_img, "resample": resample}
    if columns is not None:
        columns = np.asarray(columns)
        n_file = spec.get("vertices_per_hemi")
        if (columns.ndim != 1 or not np.issubdtype(columns.dtype, np.integer) or columns.size == 0
                or (n_file is not None and (columns.min() < 0 or columns.max() >= 2 * n_file))):
            raise ParameterError("columns", f"{columns.size} vertex indices (shape {columns.shape}, "
                                 f"{columns.dtype}) for kind {kind!r} ({n_file} vertices per "
                                 "hemisphere)", expected=f"integers in 0..{2 * (n_file or 0) - 1}: "
                                 "surface.mesh_columns(mesh, n_file) of the kind's own mesh or a "
                                 "coarser one that it nests (fsaverage5 in fsaverage6)")
    return paths, {**kw, "n_vertices": spec.get("vertices_per_hemi"), "columns": columns}


def load_scan(paths: Sequence[str | Path], **options) -> np.ndarray:
    """One subject's scan as :func:`load_dataset` reads it: ``T x V`` float32.

    ``paths``: its files (one volume, or the L and R surface files); ``options``: the
    keywords that :func:`dataset_scans` gives (:func:`load_bold`'s, or :func:`load_gifti`'s
    for surface files).
    """
    paths = [Path(p) for p in paths]
    if str(paths[0]).endswith(".func.gii"):
        return load_gifti(paths, **options)
    return load_bold(paths[0], options.pop("mask_img", None), **options)


def check_row(shape: tuple, x: np.ndarray, path: Path, first: str | None) -> None:
    """Raise an error naming ``path`` when its scan ``x`` (T x V) does not fit a row of an
    ``S x T x V`` array of ``shape`` (``first``: the subject whose scan set it)."""
    if x.shape != tuple(shape[1:]):
        has = f"sub-{first} has" if first is not None else "the output array's rows are"
        raise InputError(path, f"{x.shape[0]} TRs x {x.shape[1]} voxels; {has} "
                         f"{shape[1]} x {shape[2]}", field="volumes",
                         expected="the same number of TRs (give n_trs)")


def load_dataset(root: str | Path, story: str, subjects: str | Iterable, mask_img=None, *,
                 kind: str = "clean", tr_s: float = TR_S, start_tr: int = 0,
                 n_trs: int | None = None, detrend: bool = False, zscore: bool = True,
                 resample: bool = False, include_excluded: bool = False,
                 manifest=None, columns=None, out: np.ndarray | None = None
                 ) -> tuple[np.ndarray, list[str]]:
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
    out : array, optional
        ``S x T x V`` float32 to write into (e.g. ``np.lib.format.open_memmap``), one row per
        subject of :func:`dataset_scans`: then no more than one subject is held in memory,
        and ``out`` is returned.

    Returns
    -------
    data : numpy.ndarray
        ``S x T x V`` float32.
    subjects : list of str
        The subjects loaded, in order.
    """
    paths, options = dataset_scans(root, story, subjects, mask_img, kind=kind, tr_s=tr_s,
                                   start_tr=start_tr, n_trs=n_trs, detrend=detrend, zscore=zscore,
                                   resample=resample, include_excluded=include_excluded,
                                   manifest=manifest, columns=columns)
    if options.get("mask_img") is not None:
        options["mask_img"] = _load_mask(options["mask_img"])[0]  # read once, not per subject
    first = None
    if out is not None:
        if (getattr(out, "ndim", None) != 3 or out.dtype != np.float32
                or out.shape[0] != len(paths)):
            raise ParameterError("out", f"{type(out).__name__} of shape "
                                 f"{getattr(out, 'shape', None)} and dtype {getattr(out, 'dtype', None)}",
                                 expected=f"an S x T x V float32 array with S = {len(paths)} "
                                          "(the subjects of dataset_scans)")
    for i, (sub, ps) in enumerate(paths.items()):
        x = load_scan(ps, **options)
        if out is None:
            out = np.empty((len(paths), *x.shape), dtype=np.float32)
        check_row(out.shape, x, Path(ps[0]), first)
        out[i] = x
        first = first or sub
        del x
    return out, list(paths)
