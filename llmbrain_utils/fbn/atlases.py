"""Network atlases on the voxels of a brain mask: the container (:class:`NetworkAtlas`), the
committed manifest of the Network Correspondence Toolbox's atlases
(``data_manifests/atlases.yaml``), their files (a local copy, the ``shared/`` mirror beside the
checkout, or a download through :func:`llmbrain_utils.fetch.download`, SHA-256 checked) and
loading them onto a mask (:func:`load_atlas`; :func:`seitzman_atlas`, offline)."""

from __future__ import annotations

import functools
import logging
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._io import read_yaml
from ..errors import InputError, ParameterError
from ..fetch import download as http_download
from ..store import sha256_file
from .images import _label_image, _mask, _on_grid, _squeeze3d
from .spin import spin_permutations

log = logging.getLogger(__name__)

# this file is llmbrain_utils/fbn/atlases.py: parents[2] is the checkout, parents[3] beside it
MANIFEST = Path(__file__).resolve().parents[2] / "data_manifests" / "atlases.yaml"
"""The committed manifest of the toolbox's atlases (names, files, checksums, source)."""
ATLAS_DIR_ENV = "LLMBRAIN_ATLAS_DIR"
"""Environment variable naming a local copy of the atlas data (same layout as the source)."""
SHARED_MIRROR = Path(__file__).resolve().parents[3] / "shared" / "atlases" / "nct"
"""The read-only mirror beside the checkout, used when present."""
SEITZMAN = "Seitzman2018"
DEFAULT_SOFT_THRESHOLD = 2.3
DEFAULT_SEITZMAN_RADIUS_MM = 10.0
_UNASSIGNED = {"unassigned", "none", "unknown", "na", "n/a", "other"}


@dataclass(frozen=True, eq=False)
class NetworkAtlas:
    """Network masks of one atlas on the voxels of a brain mask.

    Attributes
    ----------
    name : str
        Short name (``"TY7"``, ``"Seitzman2018"``, ...).
    network_names : tuple of str
        Network names, in the order of the rows of ``masks``.
    masks : numpy.ndarray of bool, shape (n_networks, V)
        ``masks[i, v]`` is True when voxel ``v`` of the mask (NiftiMasker order) is in network i.
        Networks of a soft atlas may overlap; those of a hard atlas do not.
    label_img : nibabel.Nifti1Image
        3-D image on the mask's grid: ``i + 1`` where network i holds the voxel (for overlapping
        soft networks, the one with the largest z), 0 elsewhere. For display.
    mask_img : nibabel.Nifti1Image
        The brain mask the atlas was built on (its grid and voxel order).
    kind : str
        ``"Hard"``, ``"Soft"``, ``"Metric"`` (toolbox kinds) or ``"Coordinates"`` (Seitzman).
    full_name : str
        Long name, e.g. ``"Yeo2011-7"``.
    info : dict
        Where it came from; a surface atlas's ``space`` (mesh), vertices and labels.
    rotations : callable, optional
        ``rotations(n_perm, seed) -> (n_perm, V)`` permutations of the spin null, for an atlas
        without a volume mask: a surface atlas gets the sphere's
        (:func:`llmbrain_utils.surface.load_surface_atlas`). See :meth:`spin_permutations`.
    """

    name: str
    network_names: tuple[str, ...]
    masks: np.ndarray
    label_img: Any
    mask_img: Any
    kind: str = "Hard"
    full_name: str = ""
    info: dict = field(default_factory=dict)
    rotations: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        masks = np.asarray(self.masks)
        if masks.ndim != 2 or masks.dtype != bool:
            raise InputError(f"atlas {self.name}", "masks must be a 2-D boolean array",
                             field="masks", expected="bool array (n_networks, V)")
        if masks.shape[0] != len(self.network_names):
            raise InputError(f"atlas {self.name}",
                             f"{masks.shape[0]} masks for {len(self.network_names)} names",
                             field="network_names", expected="one name per mask row")
        object.__setattr__(self, "network_names", tuple(self.network_names))

    @property
    def n_networks(self) -> int:
        """Number of networks."""
        return len(self.network_names)

    @property
    def n_voxels(self) -> int:
        """Number of voxels of the mask (V)."""
        return int(self.masks.shape[1])

    def sizes(self) -> dict[str, int]:
        """Voxel count of every network on the mask."""
        return dict(zip(self.network_names, self.masks.sum(axis=1).tolist()))

    def index(self, network: str) -> int:
        """Row of ``network`` in ``masks``; an error listing the valid names if it is unknown."""
        try:
            return self.network_names.index(network)
        except ValueError:
            raise InputError(f"atlas {self.name}", f"unknown network {network!r}",
                             field="network", expected=f"one of {list(self.network_names)}"
                             ) from None

    def select(self, networks: Iterable[str]) -> NetworkAtlas:
        """The atlas restricted to ``networks`` (in the order given)."""
        networks = list(networks)
        rows = [self.index(n) for n in networks]
        labels = np.zeros(self.masks.shape[1], dtype=np.int16)
        for i, r in enumerate(rows):
            labels[self.masks[r] & (labels == 0)] = i + 1
        # a surface atlas has no volume mask and no label image
        label_img = None if self.mask_img is None else _label_image(labels, self.mask_img)
        return NetworkAtlas(self.name, tuple(networks), self.masks[rows].copy(), label_img,
                            self.mask_img, self.kind, self.full_name, dict(self.info), self.rotations)

    def spin_permutations(self, n_perm: int = 1000, seed: int = 0) -> np.ndarray:
        """The spin null's ``(n_perm, V)`` permutations of this atlas's voxels or vertices: the
        atlas's own ``rotations`` (a surface atlas: the sphere's), else the rotations of its
        volume mask (:func:`spin_permutations`). The same ``n_perm`` and ``seed`` give the same
        permutations."""
        if self.rotations is not None:
            return self.rotations(n_perm, seed)
        if self.mask_img is None:
            raise ParameterError("perms", f"None for {self.name}, an atlas without a volume mask "
                                 "or rotations", expected="the sphere's rotations: an atlas of "
                                 "surface.load_surface_atlas, or perms from "
                                 "surface.surface_spin_permutations")
        return spin_permutations(self.mask_img, n_perm, seed=seed)


@functools.lru_cache(maxsize=4)
def _read_manifest(path: str) -> dict:
    p = Path(path)
    doc = read_yaml(p, what="atlas manifest", expected="data_manifests/atlases.yaml")
    for key in ("source", "atlases", "cortical_mask"):
        if not isinstance(doc, dict) or key not in doc:
            raise InputError(p, f"missing key {key!r}", field=key)
    for name, entry in doc["atlases"].items():
        for key in ("kind", "files", "networks"):
            if key not in entry:
                raise InputError(p, f"atlas {name} lacks {key!r}", field=f"atlases.{name}.{key}")
        if entry["kind"] == "Hard" and len(entry.get("labels", [])) != len(entry["networks"]):
            raise InputError(p, f"atlas {name}: one label per network needed",
                             field=f"atlases.{name}.labels")
    return doc


def atlas_manifest(path: str | os.PathLike | None = None) -> dict:
    """The parsed atlas manifest (``data_manifests/atlases.yaml`` by default), cached."""
    return _read_manifest(str(Path(path) if path is not None else MANIFEST))


def available_atlases(manifest: str | os.PathLike | None = None) -> list[str]:
    """Names :func:`load_atlas` accepts: the manifest's atlases and ``"Seitzman2018"``."""
    return list(atlas_manifest(manifest)["atlases"]) + [SEITZMAN]


def atlas_root(root: str | os.PathLike | None = None) -> Path | None:
    """Where atlas files are read from.

    Order: ``root``; ``$LLMBRAIN_ATLAS_DIR``; the ``shared/atlases/nct`` mirror beside the
    checkout if present; else None (files are downloaded into a cache, see :func:`load_atlas`).
    """
    if root is not None:
        p = Path(root)
        if not p.is_dir():
            raise ParameterError("root", f"{p} is not a directory",
                                 expected="a local copy of the atlas data")
        return p
    env = os.environ.get(ATLAS_DIR_ENV)
    if env:
        return Path(env)
    if SHARED_MIRROR.is_dir():
        return SHARED_MIRROR
    return None


def _cache_dir() -> Path:
    env = os.environ.get(ATLAS_DIR_ENV)
    if env:
        return Path(env)
    import pooch

    return Path(pooch.os_cache("llmbrain")) / "nct"


@functools.cache
def _sha256_of(path: str, size: int, mtime_ns: int) -> str:
    """:func:`llmbrain_utils.store.sha256_file`, remembered per (path, size, mtime)."""
    return sha256_file(path)


def verify_sha256(path: str | os.PathLike, sha256: str | None) -> str:
    """Check a file's SHA-256 (cached per process by path, size and mtime); return the digest.

    Raises
    ------
    InputError
        The digest differs from ``sha256`` (no check when ``sha256`` is None).
    """
    p = Path(path).resolve()
    st = p.stat()
    digest = _sha256_of(str(p), st.st_size, st.st_mtime_ns)
    if sha256 is not None and digest != sha256.lower():
        raise InputError(p, f"sha256 mismatch: got {digest}", field="sha256", expected=sha256)
    return digest


def _fetch(relpath: str, sha256: str | None, root: Path | None, *, download: bool,
           manifest: dict) -> Path:
    """A verified local path of ``relpath`` of the atlas data (read from root or downloaded)."""
    if root is not None:
        p = root / relpath
        if p.is_file():
            verify_sha256(p, sha256)
            return p
    cache = _cache_dir()
    cached = cache / relpath
    if not download:
        if cached.is_file():
            verify_sha256(cached, sha256)
            return cached
        where = root if root is not None else cache
        raise InputError(where / relpath, "atlas file not found and download=False",
                         expected="a local copy of the atlas data, or download=True")
    src = manifest["source"]
    url = src["url_pattern"].format(commit=src["commit"], path=relpath)
    if sha256 is None:
        log.warning("%s has no pinned checksum in the manifest; downloading it unverified", relpath)
    log.info("downloading %s", url)
    # the package's one download path: pooch, retries of transient failures, checksum checked
    out = http_download(url, cached, sha256, retries=3, progress=False,
                        hint=f"a reachable source, or a local copy (root= or ${ATLAS_DIR_ENV})")
    digest = verify_sha256(out, sha256)
    if sha256 is None:
        log.warning("%s sha256 %s (add it to the manifest to pin it)", relpath, digest)
    return Path(out)


def load_atlas(name: str, mask_img: Any, *, root: str | os.PathLike | None = None,
               soft_threshold: float = DEFAULT_SOFT_THRESHOLD, cortical_only: bool = True,
               download: bool = True, manifest: str | os.PathLike | None = None
               ) -> NetworkAtlas:
    """Load a network atlas onto the voxels of ``mask_img``.

    Parameters
    ----------
    name : str
        A short name of ``data_manifests/atlases.yaml`` (``"TY7"``, ``"MG360J12"``, ...) or
        ``"Seitzman2018"`` (offline, see :func:`seitzman_atlas`).
    mask_img : Nifti1Image or path
        Brain mask on an MNI grid (e.g. nilearn's 6 mm MNI152 mask); voxel order of the result
        is that of ``NiftiMasker(mask_img)``.
    root : path, optional
        A local copy of the atlas data (layout of the source repository). Default: see
        :func:`atlas_root` (``$LLMBRAIN_ATLAS_DIR``, then the ``shared/atlases/nct`` mirror
        beside the checkout). Files missing there are downloaded from the pinned commit into
        ``$LLMBRAIN_ATLAS_DIR`` or a user cache, their SHA-256 checked.
    soft_threshold : float
        Soft atlases (one z map per network: HCPICA, UKBICA, AL20) are resampled with
        trilinear interpolation and a voxel belongs to a network when z > ``soft_threshold``.
        Default 2.3, the usual FSL level: the UK Biobank maps are already cut there, so it keeps
        their extent, and it drops the low fringe that interpolation to a coarser grid adds.
        (The toolbox uses z > 0 on its native 2 mm grid.)
    cortical_only : bool
        Restrict the atlas to the toolbox's cortical mask first, as the toolbox does.
    download : bool
        Allow downloads; with False a missing file raises :class:`InputError`.
    manifest : path, optional
        Another manifest than ``data_manifests/atlases.yaml``.

    Returns
    -------
    NetworkAtlas

    Notes
    -----
    Hard atlases (one label per voxel) are resampled with nearest-neighbour interpolation;
    parcel-level ones (Schaefer, Yan, Shen) first map parcels to networks with the toolbox's
    network-assignment file. Binary per-network volumes (``Metric``, Woodward 2024) are
    resampled with nearest neighbour. Networks labelled ``NONE`` are dropped. Every file's
    SHA-256 is checked on first use in a process.
    """
    if not isinstance(name, str):
        raise ParameterError("name", f"{name!r} is not a string",
                             expected=f"one of {available_atlases(manifest)}")
    if name == SEITZMAN:
        return seitzman_atlas(mask_img)
    doc = atlas_manifest(manifest)
    if name not in doc["atlases"]:
        raise ParameterError("name", f"unknown atlas {name!r}",
                             expected=f"one of {available_atlases(manifest)}")
    if (not isinstance(soft_threshold, (int, float)) or isinstance(soft_threshold, bool)
            or not math.isfinite(soft_threshold)):
        raise ParameterError("soft_threshold", f"{soft_threshold!r} is not a finite number",
                             expected="a z value, e.g. 2.3")
    mask_img, mask = _mask(mask_img)
    base = atlas_root(root)
    entry = doc["atlases"][name]
    kind = entry["kind"]
    fetch = functools.partial(_fetch, root=base, download=download, manifest=doc)
    import nibabel as nib

    cortex = None
    if cortical_only:
        cm = doc["cortical_mask"]
        cortex = _squeeze3d(nib.load(fetch(cm["path"], cm["sha256"])))

    def restrict(img: Any) -> Any:
        if cortex is None:
            return img
        c = cortex
        if c.shape != img.shape or not np.allclose(c.affine, img.affine):
            from nilearn.image import resample_to_img

            c = resample_to_img(c, img, interpolation="nearest", force_resample=True,
                                copy_header=True)
        data = np.asanyarray(img.dataobj) * (np.asanyarray(c.dataobj) > 0)
        return nib.Nifti1Image(data.astype(np.float32), img.affine)

    names = list(entry["networks"])
    if kind == "Hard":
        f = entry["files"][0]
        img = _squeeze3d(nib.load(fetch(f["path"], f["sha256"])))
        assign = entry.get("network_assignment")
        if assign:
            from scipy.io import loadmat

            mpath = fetch(assign["path"], assign.get("sha256"))
            mapping = np.asarray(loadmat(mpath).get("mapping", np.empty(0))).ravel()
            if mapping.size == 0:
                raise InputError(mpath, "no 'mapping' variable", field="mapping",
                                 expected="parcel-to-network mapping (1 x n_parcels)")
            parcels = np.rint(np.asanyarray(img.dataobj)).astype(np.int64)
            if parcels.max() > mapping.size:
                raise InputError(mpath, f"{mapping.size} parcels mapped, atlas has "
                                 f"{parcels.max()}", field="mapping")
            lut = np.concatenate([[0], mapping]).astype(np.float32)
            img = nib.Nifti1Image(lut[parcels], img.affine)
        vals = np.rint(_on_grid(restrict(img), mask_img, mask, "nearest")).astype(np.int64)
        labels = np.asarray(entry["labels"], dtype=np.int64)
        masks = vals[None, :] == labels[:, None]
        score = masks.astype(np.float32)
    else:
        files = entry["files"]
        if len(files) != len(names):
            raise InputError(manifest or MANIFEST, f"atlas {name}: {len(files)} files for "
                             f"{len(names)} networks", field=f"atlases.{name}.files")
        rows = []
        for f in files:
            img = restrict(_squeeze3d(nib.load(fetch(f["path"], f["sha256"]))))
            if kind == "Soft":
                rows.append(_on_grid(img, mask_img, mask, "linear").astype(np.float32))
            else:
                rows.append((_on_grid(img, mask_img, mask, "nearest") > 0).astype(np.float32))
        score = np.stack(rows)
        masks = score > (soft_threshold if kind == "Soft" else 0.0)
    keep = [i for i, n in enumerate(names) if n not in set(entry.get("exclude", []))]
    names = [names[i] for i in keep]
    masks, score = masks[keep], score[keep]
    labels_v = np.where(masks.any(0), np.argmax(np.where(masks, score, -np.inf), axis=0) + 1, 0)
    empty = [n for n, m in zip(names, masks) if not m.any()]
    if empty:
        log.warning("atlas %s: networks with no voxel on this mask: %s", name, empty)
    return NetworkAtlas(name, tuple(names), masks, _label_image(labels_v, mask_img), mask_img,
                        kind, entry.get("full_name", name),
                        {"soft_threshold": soft_threshold if kind == "Soft" else None,
                         "cortical_only": cortical_only, "source": doc["source"]["repository"],
                         "commit": doc["source"]["commit"]})


def seitzman_atlas(mask_img: Any, radius_mm: float = DEFAULT_SEITZMAN_RADIUS_MM
                   ) -> NetworkAtlas:
    """Offline network atlas from the 300 ROIs of Seitzman et al. (2018), an approximation.

    nilearn ships the ROI coordinates and their network labels (no download). Each voxel of the
    mask takes the network of its nearest ROI when that ROI lies within ``radius_mm`` (a
    Voronoi partition of the brain around the ROIs, cut at ``radius_mm``); voxels whose nearest
    ROI is unassigned, or farther, belong to no network. The published networks are defined on
    the ROIs only: this volume is an approximation for tests and offline runs, not the atlas.

    Parameters
    ----------
    mask_img : Nifti1Image or path
        Brain mask on an MNI grid.
    radius_mm : float
        Largest distance from a voxel to its ROI (default 10 mm: the ROIs are 5 mm spheres, plus
        about one 6 mm voxel; on nilearn's 6 mm MNI mask this covers about as many voxels as
        the toolbox's cortical mask).

    Returns
    -------
    NetworkAtlas
        name ``"Seitzman2018"``, networks sorted by name, "unassigned" dropped.
    """
    if (not isinstance(radius_mm, (int, float)) or isinstance(radius_mm, bool)
            or not math.isfinite(radius_mm) or radius_mm <= 0):
        raise ParameterError("radius_mm", f"{radius_mm!r} is not a positive number",
                             expected="a distance in mm, e.g. 12")
    from nilearn.datasets import fetch_coords_seitzman_2018
    from nibabel.affines import apply_affine
    from scipy.spatial import cKDTree

    mask_img, mask = _mask(mask_img)
    atlas = fetch_coords_seitzman_2018()
    rois = np.asarray(atlas.rois[["x", "y", "z"]], dtype=float)
    nets = [str(n) for n in atlas.networks]
    names = sorted({n for n in nets if n.strip().lower() not in _UNASSIGNED})
    xyz = apply_affine(mask_img.affine, np.argwhere(mask))
    dist, nearest = cKDTree(rois).query(xyz)
    roi_net = np.array([names.index(n) + 1 if n in names else 0 for n in nets])
    labels = np.where(dist <= radius_mm, roi_net[nearest], 0)
    masks = labels[None, :] == np.arange(1, len(names) + 1)[:, None]
    return NetworkAtlas(SEITZMAN, tuple(names), masks, _label_image(labels, mask_img), mask_img,
                        "Coordinates", "Seitzman2018-300ROIs (nearest-ROI approximation)",
                        {"radius_mm": float(radius_mm)})
