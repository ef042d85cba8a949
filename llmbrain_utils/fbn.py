"""Stage 5, FBN mapping: label each atom's brain map with the functional brain networks it overlaps.

Each atom of the dictionary has a group brain map (one value per voxel of a brain mask on an MNI
grid, in the voxel order of nilearn's ``NiftiMasker`` for that mask). This module

1. loads network atlases onto the mask's voxels: the 23 atlases of the Network Correspondence
   Toolbox data (Kong et al., 2025; ``data_manifests/atlases.yaml``), from a local copy or
   downloaded with checksums, and an offline approximation of Seitzman et al. (2018) built from
   the ROI coordinates nilearn ships (:func:`load_atlas`, :func:`seitzman_atlas`);
2. measures the overlap of every map with every network (:func:`overlap`): each map is cut at a
   threshold into its positive part ("active") and its negative part ("deactive"); the Dice
   coefficient of each part with each network mask, and the spatial correlation of the
   unthresholded (sign-aware) map with the network's indicator;
3. tests each overlap against a null distribution and controls the false discovery rate
   (:func:`couple_atoms`): an atom is *coupled* to a network, as active or deactive, when the
   Benjamini-Hochberg q value of its overlap statistic (Dice by default; or the spatial
   correlation ``r``, see Statistics) is at most ``alpha``;
4. scores a run against planted couplings (:func:`recovery`), compares the labels two atlases
   give (:func:`atlas_agreement`) and shows how the couplings depend on the threshold
   (:func:`threshold_sensitivity`).

Thresholds
----------
``threshold`` is either a string ``"topQ%"``: in each map, the Q% of voxels with the largest
absolute values, split by sign; or a positive number ``c``: the voxels with value > c (active)
and < -c (deactive), e.g. ``3.1`` for a group t map. The default, ``"top10%"``, makes the
thresholded parts the same size for every atom whatever the scale of its map (betas, t values,
few or many subjects), so Dice values are comparable across atoms and models; whether a part's
overlap is more than chance is left to the permutation test.

Statistics
----------
``statistic="dice"`` (default, the toolbox's measure): the Dice coefficient of the thresholded
part with the network. ``statistic="r"``: the Pearson (point-biserial) correlation of the
unthresholded map with the network's 0/1 indicator, sign-aware (``r`` for active, ``-r`` for
deactive). ``r`` needs no threshold and is not capped by a size mismatch between the part and
the network (a 10% part of 436 voxels against a 70-voxel network can reach a Dice of 0.28 at
most), so it is the more sensitive test for small networks; it is also the weaker guard against
a map that is broadly shifted over a large network without a concentrated peak in it. Both
columns are always reported; ``statistic`` says which one is tested and decides.

Nulls
-----
``"spin"`` (the function's default, kept for the toolbox's comparison; the mapping stage's
default is ``"surrogate"``, below): random rigid 3-D rotations about the brain's centre, the volumetric
analogue of the spin test the toolbox uses on the sphere. The *network masks* are rotated
(the same rotations for all atoms) and resampled on the mask's voxels, and the Dice of the
observed thresholded map with each rotated network gives the null. A rotation keeps a network's
size, shape and spatial smoothness but moves it to an unrelated place, so the test asks whether
the map overlaps *this* network more than a network of the same shape at a random place; it
needs nothing but the group map, and rotating the networks rather than the maps leaves each
map's thresholded part exactly as observed. The brain is not a ball: coordinates are first
scaled per axis by their spread (an ellipsoid becomes a ball), rotated, scaled back, and each
voxel takes the value of the mask voxel nearest to its rotated source, so voxels whose source
falls outside the brain copy the nearest brain voxel (an approximation, as all volumetric spins).

``"surrogate"``: tissue-conditioned, autocorrelation-matched surrogate *maps* (the networks
stay fixed). Real group maps are not stationary: their mean and spread follow grey matter, and a
rotated cortical network lands in white matter, CSF or deep structures, so the spin null above
is anti-conservative on such maps (``benchmarks/null_calibration.json``). Each map ``x`` is
written as ``mu(g) + s(g) * z`` with ``g`` the MNI152 grey-matter probability of the voxel
(nilearn's template on the mask's grid): ``mu`` is the least-squares line of ``x`` on ``g``,
``s`` the line of ``|x - mu|`` on ``g`` (times sqrt(pi / 2), floored at 5% of its median), so
``z`` is the map with its tissue trend and tissue-dependent spread removed. The spatial
autocorrelation of the ``z`` of all maps of a call (pooled: they come from one data set and
one encoding) is estimated on the mask (the zero-filled product divided by the number of voxel
pairs at each lag), tapered to zero between the first lag where its radial mean falls below 0.02
and twice that lag, corrected once for its bias (fields drawn from the estimate and detrended as
the maps were show how much lower it comes out; that much is added back), and turned into a
power spectrum; ``n_perm``
stationary Gaussian fields with that spectrum (Fourier synthesis on a grid twice the mask's
bounding box, so nothing wraps) give each map its surrogates ``mu(g) + s(g) * sd(z) * field``,
which keep its tissue structure and its smoothness but put it at random relative to the
networks. Burt et al. (2020) match the variogram of each map in the same spirit; the
assumptions here are that, given tissue, the map is stationary and Gaussian in its
autocorrelation, and that the maps of one call share it. The same fields serve every atom
(:class:`SurrogateNull` holds them, so that several statistics, thresholds or bootstrap
resamples of the same maps reuse them).

``"signflip"`` (needs subject maps, S x k x V): the group one-sample t map is recomputed with
each subject's map multiplied by a random sign, thresholded with the same rule, and compared
with the fixed networks. It tests whether the group effect's overlap exceeds what maps with no
consistent effect across subjects reach; it keeps the subjects' spatial noise structure but not
the smoothness of the signal itself, and it cannot tell a real effect next to a network from
one in it, which is why it is not the default.

p values count the null statistics (Dice or r) at least as large as the observed one, with
the +1 correction:
``p = (1 + #{null >= observed}) / (1 + n_perm)``; q values are Benjamini-Hochberg over all
atoms x networks x signs of a call. The smallest such p is ``1 / (n_perm + 1)``, and BH over
thousands of tests may need more tests at that floor than there are couplings; with
``tail="gpd"`` a generalised Pareto tail fitted to the null gives the p of every test that
fewer than ``GPD_MIN_EXCEED`` null values reach (:func:`gpd_tail_p`, Winkler et al. 2016).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._io import read_yaml
from ._validation import check_int
from .fetch import download as http_download
from .stats import bh_reject, fdr
from .store import sha256_file
from .errors import InputError, ParameterError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

log = logging.getLogger(__name__)

MANIFEST = Path(__file__).resolve().parents[1] / "data_manifests" / "atlases.yaml"
"""The committed manifest of the toolbox's atlases (names, files, checksums, source)."""
ATLAS_DIR_ENV = "LLMBRAIN_ATLAS_DIR"
"""Environment variable naming a local copy of the atlas data (same layout as the source)."""
SHARED_MIRROR = Path(__file__).resolve().parents[2] / "shared" / "atlases" / "nct"
"""The read-only mirror beside the checkout, used when present."""
SEITZMAN = "Seitzman2018"
SIGNS = ("active", "deactive")
NULLS = ("spin", "surrogate", "signflip")
DEFAULT_THRESHOLD = "top10%"
DEFAULT_SOFT_THRESHOLD = 2.3
DEFAULT_SEITZMAN_RADIUS_MM = 10.0
DEFAULT_N_PERM = 1000
STATISTICS = ("dice", "r")
DEFAULT_STATISTIC = "dice"
TABLE_COLUMNS = ["atom", "atlas", "network", "sign", "dice", "r", "p", "q", "coupled"]
_UNASSIGNED = {"unassigned", "none", "unknown", "na", "n/a", "other"}
_PERM_CHUNK = 64


# --------------------------------------------------------------------------------------------
# Atlas container


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


# --------------------------------------------------------------------------------------------
# Manifest, files, checksums


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


# --------------------------------------------------------------------------------------------
# Masks and images


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


# --------------------------------------------------------------------------------------------
# Loading atlases


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


# --------------------------------------------------------------------------------------------
# Thresholds and overlap


def parse_threshold(threshold: str | float) -> tuple[str, float]:
    """``("top", fraction)`` for ``"topQ%"``, ``("abs", c)`` for a positive number ``c``."""
    expected = "'topQ%' with 0 < Q < 100 (e.g. 'top10%') or a positive number (e.g. 3.1)"
    if isinstance(threshold, str):
        m = re.fullmatch(r"\s*top\s*([0-9]*\.?[0-9]+)\s*%\s*", threshold)
        if not m or not 0 < float(m.group(1)) < 100:
            raise ParameterError("threshold", f"{threshold!r} is not understood",
                                 expected=expected)
        return "top", float(m.group(1)) / 100.0
    if (isinstance(threshold, (int, float, np.integer, np.floating))
            and not isinstance(threshold, bool) and math.isfinite(threshold) and threshold > 0):
        return "abs", float(threshold)
    raise ParameterError("threshold", f"{threshold!r} is not understood", expected=expected)


def threshold_maps(maps: np.ndarray, threshold: str | float = DEFAULT_THRESHOLD
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Positive (active) and negative (deactive) parts of each map, as boolean arrays.

    Parameters
    ----------
    maps : array, shape (k, V)
    threshold : str or float
        ``"topQ%"``: per map, the ceil(Q% x V) voxels of largest |value| (ties included, zeros
        never), split by sign; a number ``c`` > 0: value > c and value < -c.

    Returns
    -------
    pos, neg : bool arrays, shape (k, V)
    """
    rule, value = parse_threshold(threshold)
    maps = np.asarray(maps)
    if rule == "abs":
        return maps > value, maps < -value
    a = np.abs(maps)
    n_keep = max(1, int(math.ceil(value * maps.shape[1])))
    cut = -np.partition(-a, n_keep - 1, axis=1)[:, n_keep - 1:n_keep]
    sel = (a >= cut) & (a > 0)
    return sel & (maps > 0), sel & (maps < 0)


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


def _corr(maps: np.ndarray, nets: np.ndarray) -> np.ndarray:
    """Pearson correlation of every map (k, V) with every network indicator (n, V): (k, n)."""
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


# --------------------------------------------------------------------------------------------
# Nulls


def group_t(subject_maps: np.ndarray) -> np.ndarray:
    """One-sample t map across subjects: (S, k, V) -> (k, V); 0 where the variance is 0."""
    x = np.asarray(subject_maps, dtype=np.float64)
    if x.ndim != 3 or x.shape[0] < 2:
        raise ParameterError("subject_maps", f"shape {x.shape}",
                             expected="(S >= 2 subjects, k atoms, V voxels)")
    s = x.shape[0]
    mean = x.mean(0)
    sd = x.std(0, ddof=1)
    return np.divide(mean, sd / math.sqrt(s), out=np.zeros_like(mean), where=sd > 0)


def _rotations(n: int, rng: np.random.Generator) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.random(n, random_state=rng).as_matrix()


class _Spinner:
    """Nearest-mask-voxel lookup of rotated coordinates (see the module's Nulls section)."""

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


def grey_matter(mask_img: Any) -> np.ndarray:
    """MNI152 grey-matter probability (nilearn's 2009 template) of every mask voxel, in [0, 1]."""
    from . import fmri

    img, mask = _mask(mask_img)
    aff = tuple(map(tuple, np.round(np.asarray(img.affine, dtype=float), 6)))
    return fmri._gm_on_grid(tuple(int(n) for n in mask.shape), aff)[mask]


def tissue_model(maps: np.ndarray, gm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``maps = mu + s * z`` per map (k, V): ``mu`` and ``s`` linear in grey matter ``gm``.

    ``mu`` is the least-squares line of the map on ``gm``; ``s`` that of ``|map - mu|`` times
    sqrt(pi / 2) (the SD of a Gaussian), floored at 5% of its median. Returns ``mu, s, z``,
    each (k, V)."""
    x = np.atleast_2d(np.asarray(maps, dtype=np.float64))
    g = np.column_stack([np.ones_like(gm), gm])
    gp = np.linalg.pinv(g)
    mu = (x @ gp.T) @ g.T
    e = x - mu
    sd = (np.abs(e) @ gp.T) @ g.T * math.sqrt(math.pi / 2)
    floor = 0.05 * np.median(sd, axis=1, keepdims=True)
    sd = np.maximum(sd, np.maximum(floor, 1e-12))
    return mu, sd, e / sd


def _pooled_acf(rows: np.ndarray, bm: np.ndarray, grid: tuple, pairs: np.ndarray,
                ok: np.ndarray) -> np.ndarray:
    """Pooled autocorrelation of the (standardised) rows on the box mask ``bm``: the zero-filled
    product at every lag divided by the number of voxel pairs at that lag (0 where too few)."""
    rows = rows / np.maximum(rows.std(1, keepdims=True), 1e-12)
    power = np.zeros(grid[:2] + (grid[2] // 2 + 1,))
    vol = np.zeros(bm.shape)
    for row in rows:
        vol[bm] = row
        power += np.abs(np.fft.rfftn(vol, s=grid, axes=(0, 1, 2))) ** 2
    acf = np.fft.irfftn(power / len(rows), s=grid, axes=(0, 1, 2))
    return np.where(ok, acf / np.maximum(pairs, 1.0), 0.0)


def _synthesise(amp: np.ndarray, bm: np.ndarray, grid: tuple, m: int,
                rng: np.random.Generator) -> np.ndarray:
    """``m`` Gaussian fields with amplitude spectrum ``amp``, on the box mask's voxels (m, V)."""
    white = np.fft.rfftn(rng.standard_normal((m, *grid)), axes=(1, 2, 3))
    f = np.fft.irfftn(white * amp[None], s=grid, axes=(1, 2, 3))
    return f[:, :bm.shape[0], :bm.shape[1], :bm.shape[2]][:, bm]


#: fields drawn to correct the autocorrelation estimate's bias (see :func:`surrogate_fields`)
N_BIAS_FIELDS = 32


def _acf_spectrum(z: np.ndarray, mask: np.ndarray, design: np.ndarray | None,
                  rng: np.random.Generator) -> tuple[np.ndarray, tuple, tuple]:
    """Amplitude spectrum of the pooled, pair-count-corrected, bias-corrected, tapered
    autocorrelation of the rows of ``z`` (k, V) on ``mask``; and the bounding box and padded
    grid it lives on."""
    ijk = np.argwhere(mask)
    lo, hi = ijk.min(0), ijk.max(0) + 1
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    bm = mask[box]
    grid = tuple(2 * int(n) for n in bm.shape)
    pairs = np.fft.irfftn(np.abs(np.fft.rfftn(bm.astype(float), s=grid, axes=(0, 1, 2))) ** 2,
                          s=grid, axes=(0, 1, 2))
    ok = pairs > 20  # lags with enough voxel pairs
    acf = _pooled_acf(z, bm, grid, pairs, ok)
    axes = np.meshgrid(*[np.minimum(np.arange(n), n - np.arange(n)).astype(float) for n in grid],
                       indexing="ij")
    dist = np.sqrt(sum(a ** 2 for a in axes))
    bins = np.rint(dist).astype(np.int64).ravel()
    radial = np.bincount(bins, (acf * ok).ravel()) / np.maximum(np.bincount(bins, ok.ravel()), 1)
    below = np.nonzero(radial < 0.02)[0]
    h0 = max(2.0, float(below[0]) if below.size else 2.0)
    taper = np.clip((2 * h0 - dist) / h0, 0.0, 1.0)
    taper = np.where(dist <= h0, 1.0, 0.5 * (1 - np.cos(np.pi * taper)))

    def amplitude(a: np.ndarray) -> np.ndarray:
        return np.sqrt(np.maximum(np.fft.rfftn(a * taper, axes=(0, 1, 2)).real, 0.0))

    # The estimate from maps whose mean (and grey-matter trend) was removed is biased low at
    # every lag, and the synthesis adds its own loss: fields drawn from the estimate and treated
    # as the maps were show the combined bias, which is added back once.
    sims = _synthesise(amplitude(acf), bm, grid, N_BIAS_FIELDS, rng)
    if design is None:
        sims -= sims.mean(1, keepdims=True)
    else:
        sims -= (sims @ np.linalg.pinv(design).T) @ design.T
    acf = acf + (acf - _pooled_acf(sims, bm, grid, pairs, ok))
    return amplitude(acf), box, grid


def surrogate_fields(z: np.ndarray, mask_img: Any, n_perm: int, *, seed: int = 0,
                     gm: np.ndarray | None = None, chunk: int = 50) -> np.ndarray:
    """``n_perm`` stationary Gaussian fields on the mask (n_perm, V; float32, each standardised)
    with the pooled spatial autocorrelation of the rows of ``z`` (see the module's Nulls).
    ``gm``: the grey matter the rows of ``z`` were detrended on (:func:`tissue_model`), so that
    the estimate's bias is measured on fields detrended the same way (default: centred only)."""
    check_int("n_perm", n_perm, 1)
    check_int("seed", seed, 0)
    _, mask = _mask(mask_img)
    z = np.atleast_2d(np.asarray(z, dtype=np.float64))
    if z.shape[1] != int(mask.sum()):
        raise ParameterError("z", f"{z.shape[1]} voxels", expected=f"{int(mask.sum())}, the mask's")
    design = None if gm is None else np.column_stack([np.ones(z.shape[1]), np.asarray(gm, float)])
    rng = np.random.default_rng(seed)
    amp, box, grid = _acf_spectrum(z, mask, design, np.random.default_rng([seed, 1]))
    bm = mask[box]
    out = np.empty((n_perm, int(bm.sum())), dtype=np.float32)
    for start in range(0, n_perm, chunk):
        m = min(chunk, n_perm - start)
        f = _synthesise(amp, bm, grid, m, rng)
        f -= f.mean(1, keepdims=True)
        f /= np.maximum(f.std(1, keepdims=True), 1e-12)
        out[start:start + m] = f
    return out


class SurrogateNull:
    """The surrogate null of one set of maps, prepared once and reused (see the module's Nulls).

    Holds the grey matter of the atlas's mask and ``n_perm`` fields (:func:`surrogate_fields`)
    drawn from the pooled autocorrelation of ``maps`` (with ``seed``, as :func:`couple_atoms`
    draws them). :meth:`counts` turns the fields into each map's surrogates and counts; it is
    used by :func:`couple_atoms` for every statistic and threshold of one call, by
    :func:`threshold_sensitivity`, and by the coupling bootstrap
    (:func:`llmbrain_utils.compare.bootstrap_couplings`), whose resamples reuse the full
    sample's fields (their tissue model is their own).
    """

    def __init__(self, atlas: NetworkAtlas, maps: np.ndarray, n_perm: int, seed: int = 0,
                 *, gm: np.ndarray | None = None) -> None:
        if not isinstance(atlas, NetworkAtlas):
            raise ParameterError("atlas", f"{type(atlas).__name__} is not a NetworkAtlas",
                                 expected="load_atlas(...) or seitzman_atlas(...)")
        if atlas.mask_img is None:
            raise ParameterError("null", "'surrogate' on an atlas without a volume mask "
                                 f"({atlas.name})", expected="a volumetric atlas (load_atlas); "
                                 "on the surface use the spin test (surface.couple_surface)")
        maps = _check_maps(maps, atlas)
        self.atlas, self.n_perm, self.seed = atlas, int(n_perm), int(seed)
        self.gm = grey_matter(atlas.mask_img) if gm is None else np.asarray(gm, dtype=np.float64)
        self._maps, self._tissue = maps, tissue_model(maps, self.gm)
        self.fields = surrogate_fields(self._tissue[2], atlas.mask_img, n_perm, seed=seed, gm=self.gm)
        self.nets32 = atlas.masks.astype(np.float32)
        self.net_sizes = self.nets32.sum(1, dtype=np.float64)

    def values(self, mu: np.ndarray, scale: np.ndarray, rows: slice, threshold: str | float,
               statistic: str) -> np.ndarray:
        """The null statistic of one map's surrogates ``mu + scale * field`` for the fields
        ``rows``: (2, m, n), active then deactive."""
        x = self.fields[rows] * scale
        x += mu
        if statistic == "dice":
            rule, value = parse_threshold(threshold)
            if rule == "top":  # threshold_maps' parts, computed without its copies
                a = np.abs(x)
                kk = x.shape[1] - max(1, int(math.ceil(value * x.shape[1])))
                cut = np.partition(a, kk, axis=1)[:, kk:kk + 1]
                del a
                cut = np.maximum(cut, np.float32(np.nextafter(np.float32(0), np.float32(1))))
                pos, neg = x >= cut, x <= -cut
            else:
                pos, neg = threshold_maps(x, threshold)
            del x
            m = pos.shape[0]
            both = np.concatenate([pos, neg])
            sizes = np.count_nonzero(both, axis=1).astype(np.float64)
            inter = (both.astype(np.float32) @ self.nets32.T).astype(np.float64)
            den = sizes[:, None] + self.net_sizes[None, :]
            dice = np.divide(2.0 * inter, den, out=np.zeros_like(inter), where=den > 0)
            return dice.reshape(2, m, -1)
        r = np.nan_to_num(_corr(x.astype(np.float64), self.atlas.masks))
        return np.stack([r, -r])

    def counts(self, maps: np.ndarray, observed: np.ndarray, threshold: str | float,
               statistic: str, *, keep: list | None = None,
               alpha: float | None = None, tail: str = "none", n_screen: int = 200,
               growth: int = 5, chunk: int = 500) -> tuple[np.ndarray, np.ndarray]:
        """How often each map's surrogates reach ``observed`` (2k, n; active rows first).

        ``alpha=None``: every test meets all fields (the mapping stage's exact counts).
        ``alpha`` given: the fields are met in stages (``n_screen``, then ``growth`` times as
        many, ...) and an atom stops when none of its tests can still pass Benjamini-Hochberg
        at ``alpha`` (as :meth:`llmbrain_utils.compare.SpinNull.counts`: ``(1 + count) /
        (1 + n_perm)`` is a lower bound of a test's p; with ``tail="gpd"`` a test that fewer
        than ``GPD_MIN_EXCEED`` values reach has the bound 0, since its tail p can be smaller),
        so the decisions are those of all fields; a stopped test's count is scaled to
        ``n_perm``. ``keep``: a list that receives the null values (2k, n_perm, n) float32 (complete for
        every test counted in full). Returns ``(counts, complete)``."""
        maps = np.asarray(maps, dtype=np.float64)
        same = maps.shape == self._maps.shape and np.array_equal(maps, self._maps)
        mu, sd, z = self._tissue if same else tissue_model(maps, self.gm)
        k, n, P = maps.shape[0], self.atlas.n_networks, self.n_perm
        null = np.zeros((2, k, P, n), np.float32) if keep is not None else None
        counts = np.zeros((2, k, n), dtype=np.int64)
        seen = np.zeros((2, k, n), dtype=np.int64)

        active = np.ones((2, k, n), dtype=bool)
        obs = observed.reshape(2, k, n) - 1e-9
        scale = [(sd[a] * z[a].std()).astype(np.float32) for a in range(k)]
        mu32 = mu.astype(np.float32)
        done, stop = 0, (P if alpha is None else min(int(n_screen), P))
        while True:
            for a in np.flatnonzero(active.any((0, 2))):
                for start in range(done, stop, chunk):
                    rows = slice(start, min(start + chunk, stop))
                    v = self.values(mu32[a], scale[a], rows, threshold, statistic)
                    counts[:, a] += ((v >= obs[:, a][:, None, :]) & active[:, a][:, None, :]).sum(1)
                    if null is not None:
                        null[:, a, rows] = v
            seen[active] = stop
            done = stop
            if done == P:
                break
            bound = (1.0 + counts) / (1.0 + P)
            if tail == "gpd":
                bound = np.where(counts < GPD_MIN_EXCEED, 0.0, bound)
            rej = bh_reject(bound.ravel(), alpha)
            cut = alpha * rej.sum() / rej.size
            active &= bound <= cut
            if not active.any():
                break
            stop = min(done * int(growth), P)
        complete = (seen == P).reshape(2 * k, n)
        counts = counts.reshape(2 * k, n)
        if null is not None:
            keep.append(null.reshape(2 * k, P, n))
        scaled = np.where(complete, counts, counts * (P / np.maximum(seen.reshape(2 * k, n), 1)))
        return scaled, complete


TAILS = ("none", "gpd")
#: Generalised Pareto tail: fitted where fewer than this many null values reach the observed one
GPD_MIN_EXCEED = 10
#: ... to the largest null values, this many (or a tenth of the null, if fewer)
GPD_N_TAIL = 250


def gpd_tail_p(null: np.ndarray, observed: float) -> float:
    """Tail p value of ``observed`` against the null sample ``null`` (Winkler et al. 2016).

    A generalised Pareto distribution (scipy.stats.genpareto, location 0) is fitted to the
    excesses of the ``GPD_N_TAIL`` largest null values over the threshold ``u`` half-way between
    the ``GPD_N_TAIL``-th and the next largest, and ``p = (N_tail / N) * P(GPD > observed - u)``.
    Meant for an observed value in the tail (fewer than ``GPD_MIN_EXCEED`` null values reach it);
    elsewhere the plain count is better and is what :func:`couple_atoms` uses. A fitted shape
    below 0 (a bounded tail, as of a correlation) would give p = 0 beyond the tail's end and
    was seen to overstate by up to 25x against a brute-force null; such tails are replaced by
    the exponential (shape 0) with the excesses' mean as scale, which errs conservative.
    Discrete null values (Dice of small parts) make the fit an approximation."""
    from scipy.stats import genpareto

    x = np.sort(np.asarray(null, dtype=np.float64))[::-1]
    n = x.size
    m = min(GPD_N_TAIL, max(n // 10, 5))
    if n < 50:
        raise ParameterError("null", f"{n} values", expected="at least 50 null values for a tail fit")
    u = 0.5 * (x[m - 1] + x[m]) if m < n else x[-1]
    exc = x[:m] - u
    if np.ptp(exc) <= 0:
        return float((1 + (x >= observed - 1e-9).sum()) / (1 + n))
    # started from the method-of-moments estimates: the same optimum, in half the iterations
    mean, var = float(exc.mean()), float(exc.var())
    ratio = mean * mean / var if var > 0 else 1.0
    c, _, scale = genpareto.fit(exc, 0.5 * (1 - ratio), floc=0.0, scale=0.5 * mean * (ratio + 1))
    if c < 0:  # a bounded tail would give p = 0 beyond its end: the exponential tail instead
        c, scale = 0.0, float(exc.mean())
    p = (m / n) * float(genpareto.sf(observed - u, c, loc=0.0, scale=scale))
    return float(max(p, np.finfo(float).tiny))


def _tail_pvalues(pvals: np.ndarray, counts: np.ndarray, observed: np.ndarray,
                  null: np.ndarray) -> np.ndarray:
    """``pvals`` (2k, n) with the GPD tail p where fewer than ``GPD_MIN_EXCEED`` of the null
    values (2k, n_perm, n) reach the observed statistic; never above the count's p."""
    out = pvals.copy()
    for i, j in zip(*np.nonzero(counts < GPD_MIN_EXCEED)):
        out[i, j] = min(out[i, j], gpd_tail_p(null[i, :, j], observed[i, j]))
    return out


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


def _signflip_counts(subject_maps: np.ndarray, observed: np.ndarray, nets: np.ndarray,
                     threshold: str | float, n_perm: int, rng: np.random.Generator,
                     statistic: str = "dice") -> np.ndarray:
    """Counts of sign-flipped group-t statistics reaching ``observed`` (2k, n): active rows
    first (for ``"r"``: r, then -r)."""
    s, k, _ = subject_maps.shape
    n = nets.shape[0]
    n32 = nets.astype(np.float32)
    sn = n32.sum(1, dtype=np.float64)
    counts = np.zeros((2, k, n), dtype=np.int64)
    obs = observed.reshape(2, k, n) - 1e-9
    for a in range(k):
        x = subject_maps[:, a, :].astype(np.float32)
        ss = (x.astype(np.float64) ** 2).sum(0).astype(np.float32)
        flips = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=(n_perm, s))
        for start in range(0, n_perm, 256):
            mean = flips[start:start + 256] @ x
            mean /= s
            var = mean * mean  # (ss - s mean^2) / (s - 1): the variance, as in group_t
            var *= -s
            var += ss
            var /= (s - 1) * s  # squared standard error
            np.maximum(var, 0, out=var)
            np.sqrt(var, out=var)
            t = np.divide(mean, var, out=np.zeros_like(mean), where=var > 1e-12)
            if statistic == "r":
                r = _corr(t.astype(np.float64), nets)  # (chunk, n)
                r = np.nan_to_num(r)
                counts[0, a] += (r >= obs[0, a][None, :]).sum(0)
                counts[1, a] += (-r >= obs[1, a][None, :]).sum(0)
                continue
            pos, neg = threshold_maps(t, threshold)
            for j, part in enumerate((pos, neg)):
                d = _dice(part, n32, net_sizes=sn)
                counts[j, a] += (d >= obs[j, a][None, :]).sum(0)
    return counts.reshape(2 * k, n)


# --------------------------------------------------------------------------------------------
# Coupling


def _check_common(n_perm: int, alpha: float, seed: int, null: str,
                  subject_maps: Any, statistic: str = DEFAULT_STATISTIC) -> None:
    if statistic not in STATISTICS:
        raise ParameterError("statistic", f"{statistic!r}", expected=f"one of {list(STATISTICS)}")
    check_int("n_perm", n_perm, 1)
    check_int("seed", seed, 0)
    if (not isinstance(alpha, (int, float)) or isinstance(alpha, bool)
            or not 0 < alpha < 1):
        raise ParameterError("alpha", f"{alpha!r}", expected="a number in (0, 1), e.g. 0.05")
    if null not in NULLS:
        raise ParameterError("null", f"{null!r}", expected=f"one of {list(NULLS)}")
    if null == "signflip" and subject_maps is None:
        raise ParameterError("null", "'signflip' needs subject_maps",
                             expected="subject_maps (S, k, V), or null='spin'")


def _check_subjects(subject_maps: Any, atlas: NetworkAtlas, k: int | None) -> np.ndarray:
    x = np.asarray(subject_maps, dtype=np.float64)
    if x.ndim != 3 or x.shape[0] < 2:
        raise ParameterError("subject_maps", f"shape {x.shape}",
                             expected="(S >= 2 subjects, k atoms, V voxels)")
    if x.shape[2] != atlas.n_voxels:
        raise InputError("subject_maps", f"{x.shape[2]} voxels per map", field="V",
                         expected=f"{atlas.n_voxels}, the voxels of the atlas's mask")
    if k is not None and x.shape[1] != k:
        raise InputError("subject_maps", f"{x.shape[1]} atoms", field="k",
                         expected=f"{k}, as group_maps")
    if not np.all(np.isfinite(x)):
        raise InputError("subject_maps", "non-finite value", expected="finite numbers")
    return x


def couple_atoms(group_maps: np.ndarray | None, atlas: NetworkAtlas, *,
                 subject_maps: np.ndarray | None = None,
                 threshold: str | float = DEFAULT_THRESHOLD, n_perm: int = DEFAULT_N_PERM,
                 alpha: float = 0.05, seed: int = 0, null: str = "spin",
                 perms: np.ndarray | None = None, statistic: str = DEFAULT_STATISTIC,
                 tail: str = "none", surrogates: SurrogateNull | None = None) -> pd.DataFrame:
    """Couple atoms to networks: Dice, correlation, permutation p, BH q, decision.

    Parameters
    ----------
    group_maps : array (k, V) or None
        Group map of each atom (usually a group t map) on the atlas's mask voxels. None:
        the one-sample t map of ``subject_maps``.
    atlas : NetworkAtlas
    subject_maps : array (S, k, V), optional
        Per-subject maps; needed for ``null="signflip"``. With that null the observed maps are
        the group t maps of ``subject_maps`` (``group_maps``, if given, must equal them).
    threshold : str or float
        See :func:`threshold_maps` (default ``"top10%"``).
    n_perm : int
        Permutations of the null (default 1000). The smallest p is 1 / (n_perm + 1), and BH
        over m = 2 k n tests passes it only when at least m / (alpha (n_perm + 1)) tests reach
        it: with k=64 atoms and 14 networks, 1000 permutations need 36 such couplings, 10000
        need 4 (a spin run of that size takes about a minute on one core).
    alpha : float
        FDR level: coupled when q <= alpha and the tested statistic (Dice, or the signed r) is
        > 0.
    seed : int
        Seed of the rotations / sign flips.
    null : {"spin", "surrogate", "signflip"}
        See the module's Nulls section; "spin" (default) tests network specificity with
        nothing but the group map and is the toolbox's choice; "surrogate" does too, keeping
        the maps' grey-matter structure, and is the one calibrated on tissue-weighted maps
        (``benchmarks/null_calibration.json``) and the mapping stage's default
        (``fbn_null``); the spin is anti-conservative on such maps.
    perms : array (n_perm, V), optional
        Precomputed :func:`spin_permutations` (reused across calls).
    statistic : {"dice", "r"}
        The overlap that is tested (see the module's Statistics section): ``"dice"`` (default)
        of the thresholded part, or the signed spatial correlation ``"r"`` of the unthresholded
        map with the network's indicator. ``p`` and ``q`` are those of this statistic.

    Returns
    -------
    pandas.DataFrame
        Columns ``atom, atlas, network, sign, dice, r, p, q, coupled``; one row per atom,
        network and sign (``"active"``/``"deactive"``; for ``"deactive"``, ``r`` is minus the
        map's correlation). ``attrs`` holds the settings.
    tail : {"none", "gpd"}
        ``"gpd"``: where fewer than ``GPD_MIN_EXCEED`` null values reach the observed one, the p
        value of a generalised Pareto tail fitted to the null (:func:`gpd_tail_p`), so p can go
        below ``1 / (n_perm + 1)`` and FDR is not held at the permutation floor; not with
        ``null="signflip"``.
    surrogates : SurrogateNull, optional
        With ``null="surrogate"``: prepared surrogate fields (reused across statistics and
        thresholds of the same maps); drawn from ``group_maps`` when None.
    """
    import pandas as pd

    parse_threshold(threshold)
    _check_common(n_perm, alpha, seed, null, subject_maps, statistic)
    if tail not in TAILS or (tail == "gpd" and null == "signflip"):
        raise ParameterError("tail", f"{tail!r} with null {null!r}",
                             expected=f"one of {list(TAILS)}; 'gpd' with the spin or surrogate null")
    if not isinstance(atlas, NetworkAtlas):
        raise ParameterError("atlas", f"{type(atlas).__name__} is not a NetworkAtlas",
                             expected="load_atlas(...) or seitzman_atlas(...)")
    subj = None
    if group_maps is None:
        if subject_maps is None:
            raise ParameterError("group_maps", "None and no subject_maps",
                                 expected="group maps (k, V) or subject maps (S, k, V)")
        subj = _check_subjects(subject_maps, atlas, None)
        maps = group_t(subj)
    else:
        maps = _check_maps(group_maps, atlas)
        if subject_maps is not None:
            subj = _check_subjects(subject_maps, atlas, maps.shape[0])
    if null == "signflip":
        t = group_t(subj)
        if group_maps is not None and not np.allclose(maps, t, rtol=1e-4, atol=1e-6):
            raise InputError("group_maps", "differ from the group t maps of subject_maps",
                             expected="group_maps=None or group_t(subject_maps) with "
                             "null='signflip'")
        maps = t
        if 2 ** (subj.shape[0] - 1) < n_perm:
            log.warning("%d subjects allow only %d distinct sign flips (< n_perm=%d)",
                        subj.shape[0], 2 ** subj.shape[0], n_perm)
    if surrogates is not None and (
            null != "surrogate" or not isinstance(surrogates, SurrogateNull)
            or surrogates.atlas is not atlas or (surrogates.n_perm, surrogates.seed) != (n_perm, seed)):
        raise ParameterError("surrogates", "not a SurrogateNull of this atlas, n_perm and seed "
                             f"(null {null!r})", expected=f"SurrogateNull(atlas, maps, {n_perm}, "
                             f"{seed}) with null='surrogate'")
    if perms is not None:
        perms = np.asarray(perms)
        if perms.ndim != 2 or perms.shape[1] != atlas.n_voxels or perms.shape[0] != n_perm:
            raise ParameterError("perms", f"shape {perms.shape}",
                                 expected=f"({n_perm}, {atlas.n_voxels}) from spin_permutations")

    k, n = maps.shape[0], atlas.n_networks
    need = math.ceil(2 * k * n / (alpha * (n_perm + 1)))
    if need > 1:
        log.info("n_perm=%d: with %d tests, BH at alpha=%g declares couplings only when at "
                 "least %d reach the smallest p; raise n_perm to detect fewer",
                 n_perm, 2 * k * n, alpha, need)
    pos, neg = threshold_maps(maps, threshold)
    parts = np.concatenate([pos, neg])
    dice = _dice(parts, atlas.masks)
    corr = _corr(maps, atlas.masks)
    # the tested statistic, (2k, n): active rows first
    observed = dice if statistic == "dice" else np.nan_to_num(np.concatenate([corr, -corr]))
    rng = np.random.default_rng(seed)
    keep = [] if tail == "gpd" else None
    if null == "spin":
        if perms is None:
            perms = atlas.spin_permutations(n_perm, seed)
        if statistic == "dice":
            counts = _spin_counts(parts, observed, atlas.masks, perms, keep)
        else:
            counts = _spin_counts_r(maps, observed, atlas.masks, perms, keep)
    elif null == "surrogate":
        if surrogates is None:
            surrogates = SurrogateNull(atlas, maps, n_perm, seed)
        counts, _ = surrogates.counts(maps, observed, threshold, statistic, keep=keep)
    else:
        counts = _signflip_counts(subj, observed, atlas.masks, threshold, n_perm, rng,
                                  statistic)
    pvals = (1.0 + counts) / (1.0 + n_perm)
    p_count = pvals
    if keep is not None:
        pvals = _tail_pvalues(pvals, counts, observed, np.concatenate(keep, axis=1))

    cols = _rows(atlas, dice, corr)
    cols["p"] = pvals.reshape(2, k, n).transpose(1, 2, 0).ravel()
    cols["q"] = fdr(cols["p"], alpha)[1]
    table = pd.DataFrame(cols)
    table.insert(1, "atlas", atlas.name)
    tested = table["dice"] if statistic == "dice" else table["r"]
    table["coupled"] = (table["q"] <= alpha) & (tested > 0)
    table.attrs.update({"threshold": threshold, "null": null, "n_perm": n_perm, "tail": tail,
                        "alpha": alpha, "seed": seed, "atlas": atlas.name,
                        "statistic": statistic,
                        # the plain permutation p (before any tail fit), in the table's row order
                        "p_count": p_count.reshape(2, k, n).transpose(1, 2, 0).ravel()})
    return table[TABLE_COLUMNS]


# --------------------------------------------------------------------------------------------
# Evaluation


def _check_table(table: Any, name: str = "table") -> pd.DataFrame:
    import pandas as pd

    if not isinstance(table, pd.DataFrame):
        raise ParameterError(name, f"{type(table).__name__}", expected="a couple_atoms table")
    missing = [c for c in ("atom", "atlas", "network", "sign", "coupled") if c not in table]
    if missing:
        raise InputError(name, f"missing columns {missing}", field=missing[0],
                         expected=f"the columns {TABLE_COLUMNS}")
    return table


def _parse_truth(truth: Any, networks: Sequence[str], atoms: set[int]
                 ) -> tuple[str, set[tuple]]:
    """('atom', {(atom, network, sign)}) or ('global', {(network, sign)})."""

    def check(net: Any, sign: Any, where: str) -> tuple[str, str]:
        if net not in networks:
            raise InputError("truth", f"unknown network {net!r}", field=where,
                             expected=f"one of {list(networks)}")
        if sign not in SIGNS:
            raise InputError("truth", f"unknown sign {sign!r}", field=where,
                             expected=f"one of {list(SIGNS)}")
        return str(net), str(sign)

    def check_atom(a: Any, where: str) -> int:
        if not isinstance(a, (int, np.integer)) or int(a) not in atoms:
            raise InputError("truth", f"unknown atom {a!r}", field=where,
                             expected=f"an atom of the table (0..{max(atoms)})")
        return int(a)

    if isinstance(truth, Mapping):
        out = set()
        for a, pairs in truth.items():
            a = check_atom(a, f"atom {a!r}")
            for pair in pairs:
                if len(pair) != 2:
                    raise InputError("truth", f"{pair!r}", field=f"atom {a}",
                                     expected="(network, sign) pairs")
                out.add((a, *check(pair[0], pair[1], f"atom {a}")))
        return "atom", out
    items = list(truth)
    if not items:
        raise ParameterError("truth", "empty", expected="(network, sign) pairs or "
                             "(atom, network, sign) triples, or {atom: [(network, sign)]}")
    lengths = {len(t) if isinstance(t, (tuple, list)) else -1 for t in items}
    if lengths == {2}:
        return "global", {check(n, s, f"item {i}") for i, (n, s) in enumerate(items)}
    if lengths == {3}:
        return "atom", {(check_atom(a, f"item {i}"), *check(n, s, f"item {i}"))
                        for i, (a, n, s) in enumerate(items)}
    raise ParameterError("truth", "mixed or malformed items",
                         expected="all (network, sign) or all (atom, network, sign)")


def recovery(table: pd.DataFrame, truth: Any, *, atlas: str | None = None) -> dict[str, float]:
    """Precision, recall and false-positive rate of the couplings against planted ones.

    Parameters
    ----------
    table : DataFrame
        A :func:`couple_atoms` table.
    truth : mapping or iterable
        Planted couplings, per atom: ``{atom: [(network, sign), ...]}`` or
        ``[(atom, network, sign), ...]``; or globally: ``[(network, sign), ...]``.
    atlas : str, optional
        The atlas to score when the table holds several.

    Returns
    -------
    dict
        ``precision`` (coupled rows that are planted / coupled rows; NaN if none coupled),
        ``recall`` (planted couplings found / planted; globally: a planted (network, sign) is
        found when any atom is coupled to it), ``fpr`` (coupled rows among the unplanted
        atom x network x sign rows), and the counts ``tp, fp, fn, n_planted, n_unplanted``.
    """
    table = _check_table(table)
    names = list(dict.fromkeys(table["atlas"]))
    if atlas is None:
        if len(names) != 1:
            raise ParameterError("atlas", f"table holds atlases {names}",
                                 expected="one of them")
    elif atlas not in names:
        raise ParameterError("atlas", f"unknown atlas {atlas!r}", expected=f"one of {names}")
    else:
        table = table[table["atlas"] == atlas]
    networks = list(dict.fromkeys(table["network"]))
    mode, planted = _parse_truth(truth, networks, set(int(a) for a in table["atom"]))
    atoms = table["atom"].astype(int).to_numpy()
    nets = table["network"].astype(str).to_numpy()
    signs = table["sign"].astype(str).to_numpy()
    coupled = table["coupled"].astype(bool).to_numpy()
    if mode == "atom":
        is_planted = np.array([(a, n, s) in planted for a, n, s in zip(atoms, nets, signs)])
        tp = int((coupled & is_planted).sum())
        fn = len(planted) - tp
    else:
        is_planted = np.array([(n, s) in planted for n, s in zip(nets, signs)])
        tp = int((coupled & is_planted).sum())
        found = {(n, s) for n, s, c in zip(nets, signs, coupled) if c and (n, s) in planted}
        fn = len(planted) - len(found)
    fp = int((coupled & ~is_planted).sum())
    n_unplanted = int((~is_planted).sum())
    n_coupled = int(coupled.sum())
    n_pl = len(planted)
    recall = (n_pl - fn) / n_pl if n_pl else float("nan")
    return {"precision": tp / n_coupled if n_coupled else float("nan"),
            "recall": recall,
            "fpr": fp / n_unplanted if n_unplanted else float("nan"),
            "tp": tp, "fp": fp, "fn": fn, "n_planted": n_pl, "n_unplanted": n_unplanted}


def atlas_agreement(tables: Any, *, atlases: Sequence[str] | None = None) -> pd.DataFrame:
    """Cross-tabulate the network labels two atlases give the same atoms.

    Parameters
    ----------
    tables : DataFrame, or sequence / mapping of DataFrames
        :func:`couple_atoms` tables (concatenated here).
    atlases : pair of str, optional
        The two atlases to compare (needed when the tables hold more than two).

    Returns
    -------
    pandas.DataFrame
        Rows: networks of the first atlas; columns: networks of the second; entry: the number
        of (atom, sign) couplings found under both (an atom coupled as active to Language in
        one atlas and active to Default in the other counts once in that cell). ``attrs``
        holds ``n_atoms_both`` (atoms coupled under both atlases) and the atlas names.
    """
    import pandas as pd

    if isinstance(tables, Mapping):
        tables = list(tables.values())
    if isinstance(tables, pd.DataFrame):
        tables = [tables]
    tables = [_check_table(t, f"tables[{i}]") for i, t in enumerate(tables)]
    if not tables:
        raise ParameterError("tables", "empty", expected="couple_atoms tables of two atlases")
    table = pd.concat(tables, ignore_index=True)
    names = list(dict.fromkeys(table["atlas"]))
    if atlases is None:
        if len(names) != 2:
            raise ParameterError("atlases", f"tables hold atlases {names}",
                                 expected="exactly two atlases, or atlases=(a, b)")
        atlases = names
    atlases = list(atlases)
    if len(atlases) != 2 or any(a not in names for a in atlases):
        raise ParameterError("atlases", f"{atlases!r}", expected=f"two of {names}")
    a_name, b_name = atlases
    rows_a = list(dict.fromkeys(table.loc[table["atlas"] == a_name, "network"]))
    cols_b = list(dict.fromkeys(table.loc[table["atlas"] == b_name, "network"]))
    hit = table[table["coupled"].astype(bool)]
    ca = hit[hit["atlas"] == a_name][["atom", "sign", "network"]]
    cb = hit[hit["atlas"] == b_name][["atom", "sign", "network"]]
    pairs = ca.merge(cb, on=["atom", "sign"], suffixes=("_a", "_b"))
    out = pd.crosstab(pairs["network_a"], pairs["network_b"]).reindex(
        index=rows_a, columns=cols_b, fill_value=0).astype(int)
    out.index.name, out.columns.name = a_name, b_name
    out.attrs.update({"atlases": (a_name, b_name),
                      "n_atoms_both": int(pairs["atom"].nunique())})
    return out


def threshold_sensitivity(group_maps: np.ndarray | None, atlas: NetworkAtlas,
                          thresholds: Sequence[str | float] = ("top5%", "top10%", "top20%"),
                          **kwargs: Any) -> pd.DataFrame:
    """How the couplings change with the threshold.

    Parameters
    ----------
    group_maps, atlas
        As :func:`couple_atoms`.
    thresholds : sequence
        Thresholds to try (see :func:`threshold_maps`); all must share one rule, "topQ%" or
        numbers.
    **kwargs
        Passed to :func:`couple_atoms` (``subject_maps, n_perm, alpha, seed, null, perms,
        surrogates, statistic, tail``; without ``perms`` the spin null draws the atlas's
        rotations once, :meth:`NetworkAtlas.spin_permutations`; with ``statistic="r"`` the decisions do not depend on the threshold,
        only the reported Dice and ``mean_dice`` do); the same rotations or surrogate fields are
        used for every threshold.

    Returns
    -------
    pandas.DataFrame
        One row per threshold: ``threshold, n_coupled, n_active, n_deactive, n_atoms,
        n_networks, mean_dice`` (over coupled rows, NaN if none).
    """
    import pandas as pd

    if "threshold" in kwargs:
        raise ParameterError("threshold", "given twice", expected="thresholds=[...] only")
    thresholds = list(thresholds)
    if not thresholds:
        raise ParameterError("thresholds", "empty", expected="e.g. ['top5%', 'top10%']")
    for t in thresholds:
        parse_threshold(t)
    n_perm = kwargs.get("n_perm", DEFAULT_N_PERM)
    seed = kwargs.get("seed", 0)
    _check_common(n_perm, kwargs.get("alpha", 0.05), seed, kwargs.get("null", "spin"),
                  kwargs.get("subject_maps"), kwargs.get("statistic", DEFAULT_STATISTIC))
    if not isinstance(atlas, NetworkAtlas):
        raise ParameterError("atlas", f"{type(atlas).__name__} is not a NetworkAtlas",
                             expected="load_atlas(...) or seitzman_atlas(...)")
    shared: dict[str, Any] = {}
    if kwargs.get("null", "spin") == "spin" and "perms" not in kwargs:
        shared["perms"] = atlas.spin_permutations(n_perm, seed)
    elif kwargs.get("null") == "surrogate" and group_maps is not None and "surrogates" not in kwargs:
        shared["surrogates"] = SurrogateNull(atlas, group_maps, n_perm, seed)
    rows = []
    for t in thresholds:
        tab = couple_atoms(group_maps, atlas, threshold=t, **shared, **kwargs)
        c = tab[tab["coupled"]]
        rows.append({"threshold": t, "n_coupled": len(c),
                     "n_active": int((c["sign"] == "active").sum()),
                     "n_deactive": int((c["sign"] == "deactive").sum()),
                     "n_atoms": int(c["atom"].nunique()),
                     "n_networks": int(c["network"].nunique()),
                     "mean_dice": float(c["dice"].mean()) if len(c) else float("nan")})
    return pd.DataFrame(rows)
