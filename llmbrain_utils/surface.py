"""Stage 5 on the cortical surface: network atlases on fsaverage meshes and the spin test.

The functions of :mod:`llmbrain_utils.fbn` (thresholds, Dice and ``r``, permutation p values,
Benjamini-Hochberg) work unchanged on surface maps; this module supplies what the surface needs
in their place: the vertex set, the atlases on it and the rotations of the sphere.

Space
-----
Two meshes, ``MESHES = ("fsaverage5", "fsaverage6")`` (FreeSurfer's icosahedral templates:
10,242 and 40,962 vertices per hemisphere). fsaverage6 nests fsaverage5: the first 10,242
vertices of each fsaverage6 hemisphere *are* the fsaverage5 vertices, so fsaverage5 data are
fsaverage6 data cut to their first 10,242 vertices per hemisphere (no interpolation), which is
what :func:`surface_maps` does with fsaverage6-length input for ``mesh="fsaverage5"``.
fsaverage5 is the default everywhere (about 19,000 vertices: every step is 4x cheaper).

A surface map is one row of length ``V``: the left hemisphere's vertices, then the right's, in
mesh order, each *without its medial wall*. :func:`surface_maps` builds such rows from
per-hemisphere arrays and :func:`to_hemispheres` gives full hemispheres back (for display).

Medial wall
-----------
One mask per mesh, shared by every atlas, so that all atlases of a mesh live on the same
vertices and maps can be compared across atlases: the vertices that Yeo et al.'s (2011)
7-network atlas (``"TY7"`` of the toolbox data, fsaverage6 native) leaves unlabelled (label
0). On fsaverage5 that is 888 left and 881 right vertices, 8.6% of the mesh, so ``V = 18,715``
(fsaverage6: ``V = 74,839``). A vertex that another atlas labels inside that wall is dropped
(at most 247 of 20,484 on fsaverage5, Glasser's); a cortex vertex that an atlas leaves
unlabelled simply belongs to none of its networks.

Atlases
-------
:func:`load_surface_atlas` reads the toolbox's fsaverage6 versions of the same 23 atlases
that :func:`llmbrain_utils.fbn.load_atlas` reads as volumes (its names, networks and label
values come from the same manifest, ``data_manifests/atlases.yaml``; the fsaverage6 files'
SHA-256 are pinned below). Hard atlases: a vertex is in the network whose label it carries;
parcel-level atlases (Schaefer, Yan, Shen) first map parcel i to network ``mapping[i-1]`` with
the toolbox's network-assignment file, exactly as for volumes. Soft atlases (HCPICA, UKBICA,
AL20: one z map per network) use the volumes' rule: a vertex is in a network when z >
``soft_threshold`` (2.3 by default, the FSL level; networks may overlap). Binary per-network
maps (``Metric``, Woodward): value > 0. Seitzman et al. (2018) exists only as ROI coordinates
in the volume and is refused. No resampling happens: the surface files are sampled on
fsaverage6 and fsaverage5 takes their first 10,242 vertices.

Null: the spin test
-------------------
Alexander-Bloch et al. (2018), as neuromaps' ``gen_spinsamples`` and BrainSpace implement it:
each permutation draws a uniformly random 3-D rotation ``R`` (the same generator as the volume
spin, :func:`llmbrain_utils.fbn._rotations`), rotates the left sphere by ``R`` and the right
sphere by its mirror image ``F R F`` (``F``: x -> -x, a reflection through the midsagittal
plane, so homologous regions of the two hemispheres move in mirror-image ways), and each vertex
takes the value of the vertex nearest to its rotated position (``scipy.spatial.cKDTree``,
within its own hemisphere). As for volumes, :func:`llmbrain_utils.fbn.couple_atoms` rotates
the *networks* and keeps each map's thresholded part as observed.

The medial wall: about 9% of the vertices have their rotated position in the wall, where no
network lives. Two rules (``wall=``), both within the index contract of
:func:`llmbrain_utils.fbn.spin_permutations` (every vertex copies some cortex vertex):

``"nearest"`` (default)
    the nearest *cortex* vertex (the search runs over the cortex only): the wall's border band
    is stretched over the hole, so a rotated network stays one coherent piece, but networks
    along the wall grow (TY7's limbic network by 37% on average over the rotations) while
    others shrink by up to 10%.
``"refill"``
    such a vertex takes its value from a further, independent rotation of the same kind (and a
    further one while that too lands in the wall): the hole is filled with a patch of cortex
    from a random place. Each vertex's source stays uniform over the cortex, so every network
    keeps its size on average (TY7: 0.99 to 1.01 of it), but a rotated network becomes a
    patchwork of two places.

``benchmarks/surface_calibration.json`` measured both on 512 smooth null maps (fsaverage5,
Yeo 7 and 17 networks, 1,000 rotations, Dice and ``r``, alpha 0.05 and 0.01): with
``"nearest"`` the share of p <= alpha over alpha lies in [0.86, 1.19] for every noise model,
statistic and level; ``"refill"`` reaches 1.42 on maps with long-range autocorrelation (presumably because its
patchwork networks vary less from rotation to rotation than coherent ones, which narrows the
null). Hence the default. Dropping such vertices (Baum et al. 2020) or a one-to-one
reassignment (Vasa et al. 2018) would need a mask per rotation or far more time.

Synthetic twin and deformations
-------------------------------
:func:`surface_twin` is :func:`llmbrain_utils.fmri.make_synthetic_dataset` on the mesh, in
memory: planted time courses on the planting networks' vertices with a smooth profile in
[0.25, 1], the same SNR definition (signal SD / noise SD at a network's peak vertex), subject
gains and noise levels; noise smoothed on the mesh (:func:`smooth_on_mesh`, FWHM ~13 mm on
fsaverage5, the volume twin's 12 mm), stationary AR(1) in time (phi ~ U(0.3, 0.5) by default)
plus slow cosine drift; per-subject boundary jitter by :func:`surface_displacement`, a smooth
random displacement field on the sphere (tangent, FWHM ~19 mm, RMS 3 mm by default) with
nearest-vertex resampling: the counterpart of :func:`llmbrain_utils.fmri.deform_labels`.
:func:`deform_surface_labels` moves a label vector with such a field and
:func:`mismatched_surface_labels` finds, by bisection on its size, the field that gives a target
mean network Dice (``benchmarks/surface_recovery.py``). Steps of smoothing per mesh:
:data:`TWIN_SMOOTHING`; model strings: :data:`SURFACE_DEFORM_MODEL` and the twin's ``truth``.

fsaverage6 sphere
-----------------
nilearn ships the fsaverage5 meshes (sphere, faces, sulcal depth, curvature) offline but not
fsaverage6's. fsaverage6 is one icosahedral subdivision of fsaverage5, and FreeSurfer numbers
the new vertices by walking the coarse faces in order and taking, for a face ``(a, b, c)``, the
midpoints of the edges ``(a, c)``, ``(b, c)``, ``(a, b)`` when first seen; with that rule the
fsaverage5 sphere rebuilt from its own first 2,562 vertices (fsaverage4) matches nilearn's
fsaverage5 vertex for vertex (7,680 of 7,680). :func:`load_sphere` and :func:`load_faces`
build fsaverage6 that way (new vertices on the edge midpoints, pushed onto the sphere of radius
100). On the mesh so built the toolbox's fsaverage6 Yeo-7 labels agree across 95% of the edges
(14% when shuffled), which a wrong vertex order could not give.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from . import fbn
from ._validation import check_int
from .errors import InputError, ParameterError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

log = logging.getLogger(__name__)

MESHES = ("fsaverage5", "fsaverage6")
DEFAULT_MESH = "fsaverage5"
HEMISPHERES = ("left", "right")
#: vertices of one hemisphere of each mesh (medial wall included)
HEMI_VERTICES = {"fsaverage5": 10242, "fsaverage6": 40962}
#: the atlas whose label 0 defines the medial wall of every mesh
MEDIAL_WALL_ATLAS = "TY7"
#: where the fsaverage6 versions of the atlases lie in the toolbox data
SURFACE_DIR = "atlases/fsaverage6/"
_VOLUME_DIR = "atlases/FSLMNI2mm/"
_SPHERE_RADIUS = 100.0

# SHA-256 of the toolbox's fsaverage6 atlas files (rubykong/cbig_network_correspondence_data at
# the manifest's commit), relative to SURFACE_DIR; data_manifests/atlases.yaml pins the volumes.
_SHA256 = """
24c32882c7899a7dc8d59df578c0abe2382d498a1098acedd8d8e701398434a6 Glasser/MG360J12.mat
fe2a8f6e7dc0e8591044a602f60092c77a00ff82a5cd9baaff099152327763d9 HCPICA/HCPICA_thresh_zstat1.mat
3de550ce38828987844b7cddf411bf0f48422339f8880c1b1ba1905e406d761b HCPICA/HCPICA_thresh_zstat2.mat
5e9cd17f85d78e2ac4375b38111148720f308047cf0705b59de115f36132b6b9 HCPICA/HCPICA_thresh_zstat3.mat
25af8da0544ad5979a3147a3fcfbb5d0c95260ceaf64773fcd46833400104c10 HCPICA/HCPICA_thresh_zstat4.mat
e1d4d566678878c669312ca62c2c7987245c49177e166e39cb37e3d8775ff50b HCPICA/HCPICA_thresh_zstat5.mat
0a3c41839c5601fe286e643322182409907ebfff8fbd3ff4beb1ff0dbe40b00f HCPICA/HCPICA_thresh_zstat6.mat
b48e49e634b0df1256c469cb248dd2c83adc3dfe40f37862cf7aea0ba9cfcf92 HCPICA/HCPICA_thresh_zstat7.mat
0744e47a929cab8a9513efea5ecfa4ee3042967cc7f4e5e5cbf371349810b266 HCPICA/HCPICA_thresh_zstat8.mat
519d8641ee86c595dbc11adc14c905f672a282bb80e32cf75e34053d05c78a01 HCPICA/HCPICA_thresh_zstat9.mat
e446e890b5a6e1cbdca88d889dc616477be282f55112b49783d82a813ce85444 HCPICA/HCPICA_thresh_zstat10.mat
863356411147fbc923cf69b7d7c052433212153677eeeb0bbe348e822f3fe00e HCPICA/HCPICA_thresh_zstat11.mat
24e37f78a15c785ea56338e93f728f675724c221dc69a5a7106230e137118800 HCPICA/HCPICA_thresh_zstat12.mat
82e784071766276a61db252ba3c6d89a9c717813da1367be4b455eb6de53a74b HCPICA/HCPICA_thresh_zstat13.mat
ad6359f696dce6bd9666ec9e0a977961cc607bd51d40a372598b6ee3d170a7b3 HCPICA/HCPICA_thresh_zstat14.mat
82d35765a4a6a4d26739a5fcb1943fe5eebc1debb1067fa31c407f3170780031 HCPICA/HCPICA_thresh_zstat15.mat
ad1f31bfdb81b7a2a0f3cc06faba709f838b18d3df219c429d262af6948109b5 HCPICA/HCPICA_thresh_zstat17.mat
4ce03018aed0283e423de48d530b76c70127b6449a6e7ec99fad41d447c62911 HCPICA/HCPICA_thresh_zstat18.mat
a97217075932f31808eaa022c8485392dd61a2d4dd0daba73251a665dd3b67c5 HCPICA/HCPICA_thresh_zstat19.mat
9d490ecb308c603ca74d3d39d310306096c118d1cb929f2427d69c2384a76fda HCPICA/HCPICA_thresh_zstat20.mat
6725cbe3dc78cc221a7b2f20613da628b64e31368a86ef9d2bc6d2937e4889a0 HCPICA/HCPICA_thresh_zstat23.mat
abf49ae55ceb64f2a9c13dc046735f05ffa0e0c1e4da632171bd38308c5f5923 Laird/AL20_zstat1.mat
f58778af434210fce9a06719b9933dcc53073b65424855c37e1f23b2a62bd6d9 Laird/AL20_zstat2.mat
4fcd608eef4503da6f9a9c6827e12eccfe7f186b228425a403a3deb2f3f75972 Laird/AL20_zstat3.mat
f973e5ee1d2e4f9ac8def7f01cc3aff4942193009032153ae3b1595dc5ce3749 Laird/AL20_zstat4.mat
872c2df9bc129a2aeb11137332b4bb6473159053232b12c9c080d219ffbc5bc4 Laird/AL20_zstat6.mat
7c99bd30e57b30f0a2e391fbf263a83ef0de9a3ce8d3b91b991fe44e46ec0f35 Laird/AL20_zstat7.mat
75ae308e37004adeb44ddbc6ad506d4c5fd387e3e9c657404bfdfea9e978380c Laird/AL20_zstat8.mat
77772ff344e525e7322e4e5d7d891990adde36fa356cb6aa05cda97cd66d6850 Laird/AL20_zstat9.mat
92db86d6ecae82051c4d068a453f29babd15041b291187674c55b91d5a1bd6b0 Laird/AL20_zstat10.mat
44d9b8b6e6286b94f81870ef1d8c92b579a9a117593afdc860d1912676ccdc50 Laird/AL20_zstat11.mat
a6a01898e8bedb8c38e8b0393312afa0e7eb83b0767628ece50f85c078a0e77b Laird/AL20_zstat12.mat
4635bf531bce022e19d96f9b37939c6442f5cf5b4fa5a87c264554a2c0cd8ea6 Laird/AL20_zstat13.mat
fe0cea2cf3eba1e21e53b0c227f9b73ea11ff1f55980dc465389677c7b32e7c9 Laird/AL20_zstat15.mat
ccc3553a020a1aa474045af707e44019f409bda69987c026474598a0b17c8823 Laird/AL20_zstat16.mat
f96d142aebcf8bba3c1ae5cc74f408f3e08bcc8b25c2da379d7f6d065f7ef894 Laird/AL20_zstat17.mat
77a5603921f75e2b96a42b4a8ded275f8c8a016f76e6dfc0cc7cd36ed95a0233 Laird/AL20_zstat18.mat
d117a5f24867421b6e4c6e33b0477119720d69f60f9887748612b3b0d3c286a2 YeoLab/AS200K17.mat
963f9478cf34ca7e5974619b4c7e929ddd2afb7170e4437e1d9f96b1446a9507 YeoLab/AS200Y17.mat
9598d8ef5ee170479333747d95cc708ca0242a98f95c73cd11df90fda23bfbf8 YeoLab/AS400K17.mat
b147a26d7ecf306cbaf6f6be7b08187cbfe3f4af93bd66e1a2fbf2af601638dc YeoLab/AS400Y17.mat
dc0f46e7ca8edcba1428ee4baec226fbcf5f9b8a926df65bc902fc79e834ceff Shen/XS268_8.mat
0eb8fdd813ddac0d9a7670209c475516979f20cbb42ef2d6b97ea35b515be84a Shen/XS368_8.mat
1d703fa88e7521af17de47eb0fb9ae803ae092ce93ba39c859a0d081d7c5bb4c Shirer/WS90_14.mat
1244f00f57d1ed3b6f7eded5dd9efc2b9723f0a9fda37b168de2b7b55f33f32e UKBICA/UKBICA_21goodnodes_thresh_1.mat
265bed2263033d77552cdc13a97289cf0ec1b9de3f0f609607182b6c3c169bdd UKBICA/UKBICA_21goodnodes_thresh_2.mat
302a03a068ee58d9e74b74575384ef23b37546cdc2d42c9f0b7c33b639becfb2 UKBICA/UKBICA_21goodnodes_thresh_3.mat
9e2e64de9ac10a8f5d175e2550c13e65352a0acdd9f9e3de3e4e10e5fd80647d UKBICA/UKBICA_21goodnodes_thresh_4.mat
48d4cd6d28df1c84a65679110f92491aa9c4a085a2e27d44e231b19fb14c7135 UKBICA/UKBICA_21goodnodes_thresh_5.mat
08386e995dc2bfb537d6b9d16579ebd5420ae328900673876deb3bb6a2d313a4 UKBICA/UKBICA_21goodnodes_thresh_6.mat
f6a1710e06b181ce22cd577da8596e5735bddb3842a1adc905233e0f22fcb0ad UKBICA/UKBICA_21goodnodes_thresh_7.mat
06fa9e8c3d3dd1a9c248baa383b297f7389be1ceec5fe3bf27e1af3ef177c538 UKBICA/UKBICA_21goodnodes_thresh_8.mat
96a7871d61864bb8a90c20c7fa532cd5ca5497afc2d20b22fee2e00bd4538045 UKBICA/UKBICA_21goodnodes_thresh_9.mat
1f1f65c24be421806992c08d6ebad50c3eb38ee9bd6a5e4c3022e8897f66a7d4 UKBICA/UKBICA_21goodnodes_thresh_10.mat
6a273919542c0f6aaf4c549a2ffc80fd2063568520622dd768b3adc8598f6020 UKBICA/UKBICA_21goodnodes_thresh_11.mat
c83c29671228c9e2802949183ff271029432642ceb1b7964fa3c9c07a68f2cba UKBICA/UKBICA_21goodnodes_thresh_12.mat
b830388265b461fa6253a8c7e4bed888760c9267a19f05c764157fd121118322 UKBICA/UKBICA_21goodnodes_thresh_13.mat
8653a598ab4efbc3d2eed3cccc29ff406ddee942b2b7dacb8ce5d10457586672 UKBICA/UKBICA_21goodnodes_thresh_14.mat
141af5b89c6dbd325c14600db1654ec83c240f35365eb74cae2918129b9cefb6 UKBICA/UKBICA_21goodnodes_thresh_16.mat
5880cb3043a52fdfb02d1a2f296e88eab6555eb6bc891b0c4d0f6bc89d774d00 UKBICA/UKBICA_21goodnodes_thresh_17.mat
8b8236804dfc25508ee95fa15f21debfa7de71fc3415d555f93251b1bca46af3 UKBICA/UKBICA_21goodnodes_thresh_18.mat
886beefaa8b8fb18ca30bdd3e9bf0e81229e85163037e64890028c15196c010a UKBICA/UKBICA_21goodnodes_thresh_19.mat
a3426ffc79e1e6e13c00c57d3f4139f1f5e9178a0992385b9d555f586077642e UKBICA/UKBICA_21goodnodes_thresh_20.mat
b9c8004e20b9cf4bd5661760ea794b7d8b3a90008fb53e4f992363fb1da707c8 UKBICA/UKBICA_21goodnodes_thresh_21.mat
7a28fa2597bfc215867527c59e9200535b7323af224378233771c402a576f775 WashU/EG286_12.mat
73aa4d2e5ffcf50b76eb8ba8a081f392129cf9f2e98cf55ff46c2f2ee12006f3 WashU/TL12.mat
92b57783dbf451cf3f1a931e437aeb1ef119b671716a11b495ce18c0bd326e8a WashU/EG17.mat
2b2c03a3f2d1a51fa55ce5d19cdfe42550c6348613b2c6dae54c32defd8ad6f2 YeoLab/TY7.mat
357836fc1ce767ab46ff102466195020eeb979c6f8232252a445556163ffd7f6 YeoLab/TY17.mat
f849d9b4f3b4a5f02eabe609216f663fe8daf4fa692fb6e632502e9f5b6229db YeoLab/XY200K17.mat
1a4144328e1575b11ccda7c0375a1e47ae0bae2f72f2dce4e7b6eade79043540 YeoLab/XY200Y17.mat
96690401f0cb759b6990aea297d572284bb2e02e9321565b928076dad3e7ba3c YeoLab/XY400K17.mat
d3985405fa63a091bf1022f86ed83bee55b628a241206834da77ec0b373a1f41 YeoLab/XY400Y17.mat
bad25b3f448ffd16e00f759c8831b4d3f88972f824565894c5a114ac1ebbe27d Woodward/TW_TASK_NETS_1RESP.mat
d4b6a40b2511aa037b279055d148c0ec9144c4969cfab852af8781d77d51665a Woodward/TW_TASK_NETS_2RESP.mat
2fe08f8e7446ac7d760458cc37f652cef4e00749aa836e7875979eeff1e77134 Woodward/TW_TASK_NETS_AAR.mat
a436423a921bcb457d55b831c2ab47356be9d7d60c1dcf8b20ac838c2804a8bc Woodward/TW_TASK_NETS_AUD.mat
0ea4708a11db621dbca15ef2055e9f1ef9c821d670fe47a1c57ab34f742cc8ff Woodward/TW_TASK_NETS_DMNA.mat
3fc79fa7825ae3352e7f5cbd90fd1a4c5809b811b124a1a90cf7f0cb3e0b319f Woodward/TW_TASK_NETS_DMNB.mat
33d766ad3444d5d5faf9d753aa8b07802c575b243bef5248bceaece75f72b7b4 Woodward/TW_TASK_NETS_FoVF.mat
01d35d4cc6a6029a7f218125636f47cb7cf1d83d2d47fbf20c9434bad5c15d30 Woodward/TW_TASK_NETS_INIT.mat
2cadc690c64b85258ec419656149db7ef2d414d8f241991323c1e6b9ab097d5f Woodward/TW_TASK_NETS_LN.mat
3dcce6226b33be54fa69914af7ec4597223edf9cd0641496f3996dc7e4c0a038 Woodward/TW_TASK_NETS_MAIN.mat
ae29646528b8dd914837930dc1ec41133dec8752557af098d7c83cc8ac155c61 Woodward/TW_TASK_NETS_MDN.mat
7dbd08e91da252b7664b8354325eb3fbac8bf10e0527e9dbd399e623f998d2b9 Woodward/TW_TASK_NETS_RE.mat
dc8cb2606b51379b339933c1160bbaefb3a8650c6575220007279e451a09823e WashU/EG5.mat
c8758f6850d73383b2d8430195d3437d9fce4887d014a9604bc4213ce2c77310 Du/DU15NET.mat
"""
SURFACE_SHA256: dict[str, str] = {SURFACE_DIR + p: h for h, p in
                                  (line.split() for line in _SHA256.strip().splitlines())}
"""Pinned SHA-256 of every fsaverage6 atlas file the manifest's atlases use."""


# --------------------------------------------------------------------------------------------
# Meshes


def _check_mesh(mesh: Any) -> str:
    if not isinstance(mesh, str) or mesh not in MESHES:
        raise ParameterError("mesh", f"{mesh!r}", expected=f"one of {list(MESHES)}")
    return mesh


def _subdivide(xyz: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One icosahedral subdivision in FreeSurfer's vertex order (see the module's docstring)."""
    n = len(xyz)
    edges = np.stack([faces[:, [0, 2]], faces[:, [1, 2]], faces[:, [0, 1]]], axis=1)
    key = np.sort(edges.reshape(-1, 2), axis=1)
    _, first, inv = np.unique(key[:, 0] * n + key[:, 1], return_index=True, return_inverse=True)
    order = np.argsort(first)  # unique edges in the order they are first met
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    m_ac, m_bc, m_ab = (n + rank[inv.ravel()].reshape(-1, 3)).T
    ends = key[first[order]]
    mid = xyz[ends[:, 0]] + xyz[ends[:, 1]]
    radius = float(np.linalg.norm(xyz, axis=1).mean())
    mid *= radius / np.linalg.norm(mid, axis=1, keepdims=True)
    a, b, c = faces.T
    fine = np.concatenate([np.stack(f, axis=1) for f in
                           ((a, m_ab, m_ac), (b, m_bc, m_ab), (c, m_ac, m_bc), (m_ab, m_bc, m_ac))])
    return np.concatenate([xyz, mid]), fine


@functools.lru_cache(maxsize=2)
def _mesh(mesh: str) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """((left_xyz, left_faces), (right_xyz, right_faces)) of the sphere, read-only."""
    from nilearn.datasets import load_fsaverage

    try:
        sphere = load_fsaverage("fsaverage5")["sphere"]
    except Exception as exc:  # nilearn ships fsaverage5; anything else is a broken install
        raise InputError("nilearn fsaverage5", f"cannot load the sphere: {exc}",
                         expected="nilearn's bundled fsaverage5 meshes") from exc
    out = []
    for hemi in HEMISPHERES:
        part = sphere.parts[hemi]
        xyz = np.asarray(part.coordinates, dtype=np.float64)
        faces = np.asarray(part.faces, dtype=np.int64)
        if mesh == "fsaverage6":
            xyz, faces = _subdivide(xyz, faces)
        if len(xyz) != HEMI_VERTICES[mesh]:
            raise InputError(f"nilearn fsaverage5 sphere ({hemi})", f"{len(xyz)} vertices",
                             expected=f"{HEMI_VERTICES[mesh]} on {mesh}")
        xyz.setflags(write=False)
        faces.setflags(write=False)
        out.append((xyz, faces))
    return tuple(out)


def load_sphere(mesh: str = DEFAULT_MESH) -> tuple[np.ndarray, np.ndarray]:
    """Sphere coordinates of both hemispheres, ``(left_xyz, right_xyz)``, each (n_hemi, 3).

    fsaverage5: nilearn's bundled ``sphere_left/right`` (radius 100); fsaverage6: built from it
    by one icosahedral subdivision in FreeSurfer's vertex order (module docstring). Read-only.
    """
    left, right = _mesh(_check_mesh(mesh))
    return left[0], right[0]


def load_faces(mesh: str = DEFAULT_MESH) -> tuple[np.ndarray, np.ndarray]:
    """Triangles of both hemispheres, ``(left_faces, right_faces)``, each (n_faces, 3) vertex
    indices within the hemisphere (fsaverage5: nilearn's; fsaverage6: subdivided). Read-only."""
    left, right = _mesh(_check_mesh(mesh))
    return left[1], right[1]


# --------------------------------------------------------------------------------------------
# Files, medial wall, vertex sets


def _surface_path(volume_path: str) -> str:
    if not volume_path.startswith(_VOLUME_DIR) or not volume_path.endswith(".nii.gz"):
        raise InputError(fbn.MANIFEST, f"unexpected atlas path {volume_path!r}",
                         expected=f"{_VOLUME_DIR}GROUP/NAME.nii.gz")
    return SURFACE_DIR + volume_path[len(_VOLUME_DIR):-len(".nii.gz")] + ".mat"


def _read_hemis(path: Path, *, integer: bool) -> tuple[np.ndarray, np.ndarray]:
    """``lh_labels``, ``rh_labels`` of an fsaverage6 atlas file, each 40,962 values."""
    from scipy.io import loadmat

    try:
        doc = loadmat(path)
    except Exception as exc:  # scipy raises several types for a bad MATLAB file
        raise InputError(path, f"cannot read as a MATLAB file ({type(exc).__name__}: {exc})",
                         expected="a MATLAB 5 file with lh_labels and rh_labels") from None
    out = []
    for key in ("lh_labels", "rh_labels"):
        if key not in doc:
            raise InputError(path, f"no {key!r} variable", field=key,
                             expected="lh_labels and rh_labels (40962 vertices each)")
        x = np.asarray(doc[key]).ravel()
        if x.size != HEMI_VERTICES["fsaverage6"]:
            raise InputError(path, f"{x.size} vertices", field=key,
                             expected=f"{HEMI_VERTICES['fsaverage6']}, one per fsaverage6 vertex")
        if not np.all(np.isfinite(x)):
            raise InputError(path, "non-finite values", field=key, expected="finite numbers")
        out.append(np.rint(x).astype(np.int64) if integer else x.astype(np.float64))
    return out[0], out[1]


def _fetch(relpath: str, root: Path | None, download: bool, doc: dict) -> Path:
    return fbn._fetch(relpath, SURFACE_SHA256.get(relpath), root, download=download,
                      manifest=doc)


@functools.lru_cache(maxsize=4)
def _wall(root: Path | None, download: bool, manifest: str | None) -> tuple[np.ndarray, np.ndarray]:
    doc = fbn.atlas_manifest(manifest)
    entry = doc["atlases"].get(MEDIAL_WALL_ATLAS)
    if entry is None:
        raise InputError(manifest or fbn.MANIFEST, f"no atlas {MEDIAL_WALL_ATLAS!r}",
                         field="atlases", expected="the toolbox's atlases (TY7 defines the "
                         "surface's medial wall)")
    path = _fetch(_surface_path(entry["files"][0]["path"]), root, download, doc)
    left, right = _read_hemis(path, integer=True)
    out = (left == 0, right == 0)
    for w in out:
        w.setflags(write=False)
    return out


def medial_wall(mesh: str = DEFAULT_MESH, *, root: str | os.PathLike | None = None,
                download: bool = True, manifest: str | os.PathLike | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """The medial wall, ``(left, right)`` boolean arrays over each hemisphere's vertices
    (True: wall): the vertices the Yeo-7 atlas (TY7) leaves unlabelled. ``root``, ``download``
    and ``manifest`` as in :func:`llmbrain_utils.fbn.load_atlas`. Read-only."""
    n = HEMI_VERTICES[_check_mesh(mesh)]
    left, right = _wall(fbn.atlas_root(root), bool(download),
                        None if manifest is None else str(manifest))
    return left[:n], right[:n]


def cortex_vertices(mesh: str = DEFAULT_MESH, **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the kept (non-medial-wall) vertices of each hemisphere, ``(left, right)``:
    column ``j`` of a surface map is vertex ``left[j]`` of the left hemisphere for
    ``j < len(left)``, then vertex ``right[j - len(left)]`` of the right. ``kwargs``: as
    :func:`medial_wall`."""
    left, right = medial_wall(mesh, **kwargs)
    return np.flatnonzero(~left), np.flatnonzero(~right)


def mesh_columns(mesh: str, n_file: int, **kwargs: Any) -> np.ndarray:
    """The columns of a two-hemisphere surface file of ``n_file`` vertices per hemisphere (left
    then right, ``0 .. 2 n_file - 1``) that hold ``mesh``'s cortex vertices, in the column
    order of this module's maps: :func:`llmbrain_utils.fmri.load_dataset`'s ``columns``. A
    coarser mesh is read from a finer file by its nested first vertices (fsaverage5's 10,242
    in fsaverage6's 40,962). ``kwargs``: as :func:`cortex_vertices`."""
    mesh = _check_mesh(mesh)
    if n_file is None or n_file < HEMI_VERTICES[mesh]:
        raise ParameterError("mesh", f"{mesh!r} from files of {n_file} vertices per hemisphere",
                             expected="the files' own mesh or a coarser one that they nest "
                             "(fsaverage5 in fsaverage6)")
    left, right = cortex_vertices(mesh, **kwargs)
    return np.concatenate([left, n_file + right])


def n_vertices(mesh: str = DEFAULT_MESH, **kwargs: Any) -> int:
    """``V``: the vertices of a surface map on ``mesh`` (both hemispheres, no medial wall)."""
    left, right = medial_wall(mesh, **kwargs)
    return int((~left).sum() + (~right).sum())


def _as_rows(x: Any, name: str) -> np.ndarray:
    if x is None:
        raise ParameterError(name, "missing", expected="an array per hemisphere: (n_vertices,) "
                             "or (k maps, n_vertices), both hemispheres given")
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ParameterError(name, f"not numeric: {exc}", expected="a numeric array") from exc
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise ParameterError(name, f"shape {arr.shape}",
                             expected="(n_vertices,) or (k maps, n_vertices), vertices last")
    return arr


def surface_maps(left: Any, right: Any, mesh: str = DEFAULT_MESH, *,
                 root: str | os.PathLike | None = None) -> np.ndarray:
    """Per-hemisphere maps -> surface maps ``(k, V)``: left then right, medial wall dropped.

    Parameters
    ----------
    left, right : array, (n_hemi,) or (k, n_hemi)
        One row per map over *all* vertices of the hemisphere (medial wall included), vertices
        along the last axis; ``n_hemi`` is 10,242 on fsaverage5, 40,962 on fsaverage6. For
        ``mesh="fsaverage5"`` fsaverage6 rows (40,962) are accepted too and cut to their first
        10,242 vertices, which are fsaverage5's (the meshes nest; no interpolation).
    mesh : {"fsaverage5", "fsaverage6"}
    root : path, optional
        Where the atlas data (the TY7 file that defines the medial wall) are read from.

    Returns
    -------
    numpy.ndarray, float64, (k, V)

    Raises
    ------
    ParameterError
        A hemisphere is missing (None) or not a 1-D/2-D numeric array.
    InputError
        A hemisphere's vertex count does not fit ``mesh``, the two hemispheres hold different
        numbers of maps, or a kept vertex is not finite (NaN in the medial wall is fine).
    """
    mesh = _check_mesh(mesh)
    rows = {"left": _as_rows(left, "left"), "right": _as_rows(right, "right")}
    n = HEMI_VERTICES[mesh]
    accepted = {n} | ({HEMI_VERTICES["fsaverage6"]} if mesh == "fsaverage5" else set())
    for hemi, arr in rows.items():
        if arr.shape[1] not in accepted:
            hint = ""
            if mesh == "fsaverage6" and arr.shape[1] == HEMI_VERTICES["fsaverage5"]:
                hint = "; these are fsaverage5 data: use mesh='fsaverage5'"
            raise InputError(f"{hemi} hemisphere", f"{arr.shape[1]} vertices per map{hint}",
                             field="vertices",
                             expected=" or ".join(f"{v} ({m})" for m, v in HEMI_VERTICES.items()
                                                  if v in accepted)
                             + f", all vertices of one hemisphere of {mesh}")
    if rows["left"].shape[0] != rows["right"].shape[0]:
        raise InputError("right hemisphere", f"{rows['right'].shape[0]} maps, the left has "
                         f"{rows['left'].shape[0]}", field="k",
                         expected="the same maps for both hemispheres")
    keep = cortex_vertices(mesh, root=root)
    parts = []
    for (hemi, arr), idx in zip(rows.items(), keep):
        x = arr[:, :n][:, idx]
        if not np.all(np.isfinite(x)):
            a, j = np.argwhere(~np.isfinite(x))[0]
            raise InputError(f"{hemi} hemisphere", "non-finite value outside the medial wall",
                             field=f"map {a}, vertex {idx[j]}", expected="finite numbers")
        parts.append(x)
    return np.concatenate(parts, axis=1)


def to_hemispheres(values: Any, mesh: str = DEFAULT_MESH, *, fill: float = np.nan,
                   root: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Surface maps ``(V,)`` or ``(k, V)`` -> full hemispheres ``(left, right)``, each
    ``(n_hemi,)`` or ``(k, n_hemi)``, with ``fill`` in the medial wall (for plotting)."""
    mesh = _check_mesh(mesh)
    arr = np.asarray(values, dtype=np.float64)
    one = arr.ndim == 1
    arr = np.atleast_2d(arr)
    if arr.ndim != 2:
        raise ParameterError("values", f"shape {arr.shape}", expected="(V,) or (k, V)")
    left, right = cortex_vertices(mesh, root=root)
    _check_length(arr.shape[-1], mesh, "values", root=root)
    out = []
    for idx, part in ((left, arr[:, :left.size]), (right, arr[:, left.size:])):
        full = np.full((arr.shape[0], HEMI_VERTICES[mesh]), fill, dtype=np.float64)
        full[:, idx] = part
        out.append(full[0] if one else full)
    return out[0], out[1]


def _check_length(n: int, mesh: str, name: str, *, atlas: str | None = None,
                  root: str | os.PathLike | None = None) -> None:
    """InputError unless ``n`` is the V of ``mesh``; says which mesh/layout ``n`` fits."""
    want = n_vertices(mesh, root=root)
    if n == want:
        return
    on = f"atlas {atlas} is on {mesh}" if atlas else f"mesh {mesh}"
    fits = None
    for m in MESHES:
        if m != mesh and n == n_vertices(m, root=root):
            fits = (f"{n} vertices per map: the cortex of {m}, while {on} ({want} vertices): "
                    "data on one mesh and an atlas on another")
        elif n == 2 * HEMI_VERTICES[m]:
            fits = (f"{n} vertices per map: both full hemispheres of {m}, medial wall included"
                    f"; {on} ({want} vertices without the medial wall)")
        elif n == HEMI_VERTICES[m]:
            fits = f"{n} vertices per map: one hemisphere of {m}; a hemisphere is missing"
    raise InputError(name, fits or f"{n} vertices per map, {on} ({want} vertices)",
                     field="V", expected=f"{want} (left then right hemisphere of {mesh} without "
                     f"the medial wall): surface_maps(left, right, mesh={mesh!r})")


# --------------------------------------------------------------------------------------------
# Atlases


def load_surface_atlas(name: str, mesh: str = DEFAULT_MESH, *,
                       root: str | os.PathLike | None = None,
                       soft_threshold: float = fbn.DEFAULT_SOFT_THRESHOLD,
                       download: bool = True, manifest: str | os.PathLike | None = None
                       ) -> fbn.NetworkAtlas:
    """Load a network atlas onto the cortex vertices of ``mesh``.

    Parameters
    ----------
    name : str
        A short name of ``data_manifests/atlases.yaml`` (``"TY7"``, ``"MG360J12"``, ...):
        every atlas of :func:`llmbrain_utils.fbn.available_atlases` but ``"Seitzman2018"``
        (volume-only).
    mesh : {"fsaverage5", "fsaverage6"}
    root : path, optional
        A local copy of the atlas data; default as :func:`llmbrain_utils.fbn.atlas_root` (the
        ``shared/atlases/nct`` mirror beside the checkout). Missing files are downloaded from
        the manifest's pinned commit, their SHA-256 checked against :data:`SURFACE_SHA256`.
    soft_threshold : float
        Soft atlases: a vertex is in a network when z > ``soft_threshold`` (default 2.3, as for
        volumes).
    download : bool
        Allow downloads; with False a missing file raises :class:`InputError`.
    manifest : path, optional
        Another manifest than ``data_manifests/atlases.yaml``.

    Returns
    -------
    NetworkAtlas
        ``masks`` (n_networks, V) over the mesh's cortex vertices (see :func:`surface_maps`),
        ``label_img=None``, ``mask_img=None``; ``info``: ``space`` (the mesh),
        ``hemispheres`` ({"left": n_left, "right": n_right}, kept vertices), ``vertices``
        ({"left": indices, "right": indices} into each full hemisphere), ``labels`` (V int16:
        ``i + 1`` for the network holding a vertex, the largest z for overlapping soft networks;
        0 for none), ``medial_wall``, ``soft_threshold``, ``source``, ``commit``.

    Raises
    ------
    ParameterError
        Unknown name, Seitzman2018, a bad mesh or soft threshold.
    InputError
        A file is missing (and download=False), corrupt or off the mesh; a network has no
        vertex on the mesh.
    """
    mesh = _check_mesh(mesh)
    if not isinstance(name, str):
        raise ParameterError("name", f"{name!r} is not a string",
                             expected=f"one of {surface_atlases(manifest)}")
    if name == fbn.SEITZMAN:
        raise ParameterError("name", f"{name} is volumetric only (ROI coordinates in MNI space)",
                             expected=f"a surface atlas, one of {surface_atlases(manifest)}; "
                             "or fbn.load_atlas('Seitzman2018', mask_img) for volumes")
    doc = fbn.atlas_manifest(manifest)
    if name not in doc["atlases"]:
        raise ParameterError("name", f"unknown atlas {name!r}",
                             expected=f"one of {surface_atlases(manifest)}")
    if (not isinstance(soft_threshold, (int, float)) or isinstance(soft_threshold, bool)
            or not math.isfinite(soft_threshold)):
        raise ParameterError("soft_threshold", f"{soft_threshold!r} is not a finite number",
                             expected="a z value, e.g. 2.3")
    base = fbn.atlas_root(root)
    entry = doc["atlases"][name]
    kind = entry["kind"]
    names = list(entry["networks"])
    left_idx, right_idx = cortex_vertices(mesh, root=root, download=download,
                                          manifest=manifest)
    n = HEMI_VERTICES[mesh]

    def on_mesh(path: Path, integer: bool) -> np.ndarray:
        lh, rh = _read_hemis(path, integer=integer)
        return np.concatenate([lh[:n][left_idx], rh[:n][right_idx]])

    first = _fetch(_surface_path(entry["files"][0]["path"]), base, download, doc)
    if kind == "Hard":
        vals = on_mesh(first, integer=True)
        assign = entry.get("network_assignment")
        if assign:
            from scipy.io import loadmat

            mpath = fbn._fetch(assign["path"], assign.get("sha256"), base, download=download,
                               manifest=doc)
            mapping = np.asarray(loadmat(mpath).get("mapping", np.empty(0))).ravel()
            if mapping.size == 0:
                raise InputError(mpath, "no 'mapping' variable", field="mapping",
                                 expected="parcel-to-network mapping (1 x n_parcels)")
            if vals.min() < 0 or vals.max() > mapping.size:
                raise InputError(mpath, f"{mapping.size} parcels mapped, the surface atlas "
                                 f"has parcel {vals.max()}", field="mapping",
                                 expected=f"a network for every parcel of {first.name}")
            vals = np.concatenate([[0], np.rint(mapping)]).astype(np.int64)[vals]
        labels = np.asarray(entry["labels"], dtype=np.int64)
        masks = vals[None, :] == labels[:, None]
        score = masks.astype(np.float64)
    else:
        files = entry["files"]
        if len(files) != len(names):
            raise InputError(manifest or fbn.MANIFEST, f"atlas {name}: {len(files)} files for "
                             f"{len(names)} networks", field=f"atlases.{name}.files")
        score = np.stack([on_mesh(_fetch(_surface_path(f["path"]), base, download, doc),
                                  integer=False) for f in files])
        masks = score > (soft_threshold if kind == "Soft" else 0.0)
    keep = [i for i, nm in enumerate(names) if nm not in set(entry.get("exclude", []))]
    names = [names[i] for i in keep]
    masks, score = masks[keep], score[keep]
    empty = [nm for nm, m in zip(names, masks) if not m.any()]
    if empty:
        raise InputError(first, f"networks with no vertex on {mesh}: {empty}", field="network",
                         expected="every network on at least one cortex vertex (a lower "
                         "soft_threshold for soft atlases)")
    labels_v = np.where(masks.any(0), np.argmax(np.where(masks, score, -np.inf), axis=0) + 1, 0)
    info = {"space": mesh,
            "hemispheres": {"left": int(left_idx.size), "right": int(right_idx.size)},
            "vertices": {"left": left_idx, "right": right_idx},
            "labels": labels_v.astype(np.int16),
            "medial_wall": f"label 0 of {MEDIAL_WALL_ATLAS}",
            "soft_threshold": soft_threshold if kind == "Soft" else None,
            "source": doc["source"]["repository"], "commit": doc["source"]["commit"]}
    return fbn.NetworkAtlas(name, tuple(names), masks, None, None, kind,
                            entry.get("full_name", name), info,
                            functools.partial(_sphere_rotations, mesh, root))


def _sphere_rotations(mesh: str, root, n_perm: int, seed: int) -> np.ndarray:
    """A surface atlas's spin null (:meth:`llmbrain_utils.fbn.NetworkAtlas.spin_permutations`):
    :func:`surface_spin_permutations` on its mesh."""
    return surface_spin_permutations(n_perm, mesh, seed=seed, root=root)


def surface_atlases(manifest: str | os.PathLike | None = None) -> list[str]:
    """Names :func:`load_surface_atlas` accepts: the manifest's atlases (not Seitzman2018)."""
    return [a for a in fbn.available_atlases(manifest) if a != fbn.SEITZMAN]


def is_surface_atlas(atlas: Any) -> bool:
    """True for a :class:`NetworkAtlas` of :func:`load_surface_atlas` (a mesh, no mask)."""
    return (isinstance(atlas, fbn.NetworkAtlas) and atlas.mask_img is None
            and atlas.info.get("space") in MESHES)


def check_surface(maps: Any, atlas: Any, *, name: str = "maps",
                  root: str | os.PathLike | None = None) -> np.ndarray:
    """Surface maps ``(k, V)`` (float64) checked against a surface atlas.

    Raises
    ------
    ParameterError
        ``atlas`` is not a surface atlas (e.g. a volume atlas of ``fbn.load_atlas``).
    InputError
        The maps' length is not the atlas mesh's ``V`` (it says which mesh or layout the
        length fits), values are not finite, or a network of the atlas has no vertex.
    """
    if not is_surface_atlas(atlas):
        if isinstance(atlas, fbn.NetworkAtlas):
            what = (f"atlas {atlas.name} is a volume atlas on a brain mask of {atlas.n_voxels} "
                    "voxels" if atlas.mask_img is not None else
                    f"atlas {atlas.name} has no mesh (info['space']="
                    f"{atlas.info.get('space')!r})")
        else:
            what = f"{type(atlas).__name__} is not a NetworkAtlas"
        raise ParameterError("atlas", what, expected="a surface atlas for surface maps: "
                             "load_surface_atlas(name, mesh)")
    mesh = atlas.info["space"]
    try:
        n = np.shape(maps)[-1] if np.ndim(maps) in (1, 2) else atlas.n_voxels
    except ValueError:  # ragged: map_array says so
        n = atlas.n_voxels
    if n != atlas.n_voxels:  # say which mesh or layout the length fits
        _check_length(n, mesh, name, atlas=atlas.name, root=root)
    arr = fbn.map_array(maps, atlas.n_voxels, name, unit=("vertex", "vertices"),
                        where=f"the vertices of atlas {atlas.name}")
    empty = [nm for nm, m in zip(atlas.network_names, atlas.masks) if not m.any()]
    if empty:
        raise InputError(f"atlas {atlas.name}", f"networks with no vertex on {mesh}: {empty}",
                         field="network", expected="every network on at least one vertex")
    return arr


# --------------------------------------------------------------------------------------------
# Spin test


WALL_RULES = ("nearest", "refill")
"""Medial-wall rules of the spin test (module docstring)."""


def _spin_indices(mesh: str, rotations: np.ndarray, wall: str, refill: np.random.Generator,
                  root: str | os.PathLike | None) -> np.ndarray:
    """(n_rot, V) source vertex of every kept vertex under each rotation."""
    from scipy.spatial import cKDTree

    flip = np.diag([-1.0, 1.0, 1.0])
    walls = medial_wall(mesh, root=root)
    keep = [np.flatnonzero(~w) for w in walls]
    out = np.empty((len(rotations), keep[0].size + keep[1].size), dtype=np.int32)
    offset = 0
    for xyz, idx, mirror in zip(load_sphere(mesh), keep, (False, True)):
        pts = xyz[idx]
        lut = np.full(len(xyz), -1, dtype=np.int64)  # mesh vertex -> column (-1: wall)
        lut[idx] = np.arange(idx.size) + offset
        if wall == "nearest":
            tree, lut = cKDTree(pts), lut[idx]
        else:
            tree = cKDTree(xyz)
        for p, rot in enumerate(rotations):
            r = flip @ rot @ flip if mirror else rot
            src = lut[tree.query(pts @ r)[1]]  # row x @ R = R^T x: the source of each vertex
            todo = np.flatnonzero(src < 0)
            while todo.size:  # "refill": sources in the wall come from further rotations
                r2 = fbn._rotations(1, refill)[0]
                r2 = flip @ r2 @ flip if mirror else r2
                s2 = lut[tree.query(pts[todo] @ r2)[1]]
                src[todo] = s2
                todo = todo[s2 < 0]
            out[p, offset:offset + idx.size] = src
        offset += idx.size
    return out


def surface_spin_permutations(n_perm: int = fbn.DEFAULT_N_PERM, mesh: str = DEFAULT_MESH, *,
                              seed: int = 0, wall: str = "nearest",
                              root: str | os.PathLike | None = None) -> np.ndarray:
    """Vertex index arrays of the spin test (Alexander-Bloch et al. 2018) on ``mesh``.

    ``values[:, idx[p]]`` is the surface map ``values`` (k, V) rotated by the p-th uniformly
    random rotation of the left sphere and its mirror image (x -> -x) on the right, each vertex
    taking the value of the vertex of its hemisphere nearest to its rotated position; one
    whose rotated position falls in the medial wall follows ``wall``. The same contract as
    :func:`llmbrain_utils.fbn.spin_permutations`, so the result goes to
    ``fbn.couple_atoms(maps, surface_atlas, perms=..., n_perm=n_perm)``.

    Parameters
    ----------
    n_perm : int
    mesh : {"fsaverage5", "fsaverage6"}
    seed : int
        Seeds the rotations (and, for ``"refill"``, a second stream ``[seed, 1]`` of refill
        rotations).
    wall : {"nearest", "refill"}
        Medial-wall rule (module docstring): ``"nearest"`` (default, the calibrated one) takes
        the nearest cortex vertex; ``"refill"`` takes the source from further random
        rotations, which keeps every network's size on average.
    root : path, optional
        Where the atlas data (the medial wall's TY7 file) are read from.

    Returns
    -------
    numpy.ndarray of int32, shape (n_perm, V)
        Read-only; cached per process for the last two (mesh, medial wall, n_perm, seed, wall)
        (75 MB per 1,000 rotations on fsaverage5, 300 MB on fsaverage6; about 15 s and 70 s
        to draw on one core).
    """
    check_int("n_perm", n_perm, 1)
    check_int("seed", seed, 0)
    mesh = _check_mesh(mesh)
    if wall not in WALL_RULES:
        raise ParameterError("wall", f"{wall!r}", expected=f"one of {list(WALL_RULES)}")
    keep = cortex_vertices(mesh, root=root)
    key = hashlib.sha1(np.concatenate(keep).astype(np.int32).tobytes()
                       + str(keep[0].size).encode()).hexdigest()
    ck = (mesh, key, int(n_perm), int(seed), wall)
    if ck not in _SPIN_CACHE:
        rots = fbn._rotations(n_perm, np.random.default_rng(seed))
        perms = _spin_indices(mesh, rots, wall, np.random.default_rng([seed, 1]), root)
        perms.setflags(write=False)
        while len(_SPIN_CACHE) >= 2:
            _SPIN_CACHE.pop(next(iter(_SPIN_CACHE)))
        _SPIN_CACHE[ck] = perms
    return _SPIN_CACHE[ck]


_SPIN_CACHE: dict[tuple[str, str, int, int, str], np.ndarray] = {}


def couple_surface(maps: Any, atlas: fbn.NetworkAtlas, *, n_perm: int | None = None,
                   seed: int = 0, perms: np.ndarray | None = None, wall: str = "nearest",
                   root: str | os.PathLike | None = None, **kwargs: Any) -> pd.DataFrame:
    """:func:`llmbrain_utils.fbn.couple_atoms` on the surface, with the spin test.

    Checks the maps against the surface atlas (:func:`check_surface`), draws
    :func:`surface_spin_permutations` on the atlas's mesh (``n_perm``, default 1000, ``seed``
    and ``wall``) unless ``perms`` are given, and passes everything else (``threshold, alpha,
    statistic, tail, subject_maps, null``) to ``couple_atoms``. ``null``: ``"spin"`` (default)
    or ``"signflip"`` (needs ``subject_maps``); the volume's ``"surrogate"`` null needs a
    voxel grid and is refused.
    """
    null = kwargs.pop("null", "spin")
    if null not in ("spin", "signflip"):
        raise ParameterError("null", f"{null!r} on the surface",
                             expected="'spin' or 'signflip' (the surrogate null needs a voxel "
                             "grid)")
    arr = check_surface(maps, atlas, root=root)
    if perms is not None:
        perms = np.asarray(perms)
        if n_perm is None and perms.ndim == 2:
            n_perm = perms.shape[0]
        n_perm = fbn.DEFAULT_N_PERM if n_perm is None else n_perm
        if perms.ndim != 2 or perms.shape != (n_perm, atlas.n_voxels):
            raise ParameterError("perms", f"shape {perms.shape}",
                                 expected=f"({n_perm}, {atlas.n_voxels}) from "
                                 f"surface_spin_permutations(..., mesh={atlas.info['space']!r})")
    n_perm = fbn.DEFAULT_N_PERM if n_perm is None else n_perm
    if perms is None and null == "spin":
        perms = surface_spin_permutations(n_perm, atlas.info["space"], seed=seed, wall=wall,
                                          root=root)
    table = fbn.couple_atoms(arr, atlas, n_perm=n_perm, seed=seed, null=null, perms=perms,
                             **kwargs)
    table.attrs["space"] = atlas.info["space"]
    return table


# --------------------------------------------------------------------------------------------
# Smoothing on the mesh (null maps for tests and calibration)


@functools.lru_cache(maxsize=8)
def _edges(mesh: str, cortex: bool, root: Path | None) -> np.ndarray:
    faces = load_faces(mesh)
    n = HEMI_VERTICES[mesh]
    parts = []
    for h, f in enumerate(faces):
        e = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
        parts.append(np.unique(np.sort(e, axis=1), axis=0) + h * n)
    edges = np.concatenate(parts)
    if cortex:
        wall = np.concatenate(medial_wall(mesh, root=root))
        new = np.cumsum(~wall) - 1
        edges = new[edges[~wall[edges].any(1)]]
    edges.setflags(write=False)
    return edges


def mesh_edges(mesh: str = DEFAULT_MESH, *, cortex: bool = True,
               root: str | os.PathLike | None = None) -> np.ndarray:
    """Edges of the mesh, (E, 2) with i < j: in surface-map columns (``cortex=True``: both
    ends outside the medial wall) or in the full concatenated hemispheres (left then right,
    ``2 * n_hemi`` vertices; ``cortex=False``). Read-only."""
    return _edges(_check_mesh(mesh), bool(cortex), fbn.atlas_root(root))


def smooth_on_mesh(values: Any, mesh: str = DEFAULT_MESH, iterations: int = 10, *,
                   root: str | os.PathLike | None = None) -> np.ndarray:
    """Neighbour averaging over the mesh's edges, ``iterations`` times: each step replaces a
    vertex's value by the mean of it and its neighbours.

    ``values``: (k, V) surface maps (smoothed within the cortex) or (k, 2 * n_hemi) full
    hemispheres, left then right (smoothed over the whole mesh); 1-D for one map. On fsaverage5
    ten steps give a kernel of about 2 edges (~7 mm of the radius-100 sphere) in SD.
    """
    check_int("iterations", iterations, 0)
    mesh = _check_mesh(mesh)
    x = np.asarray(values, dtype=np.float64)
    one = x.ndim == 1
    x = np.atleast_2d(x)
    full = 2 * HEMI_VERTICES[mesh]
    if x.shape[-1] == full:
        edges, n = mesh_edges(mesh, cortex=False, root=root), full
    else:
        _check_length(x.shape[-1], mesh, "values", root=root)
        edges, n = mesh_edges(mesh, root=root), x.shape[-1]
    from scipy.sparse import coo_matrix, diags, identity

    adj = coo_matrix((np.ones(2 * len(edges)), (np.r_[edges[:, 0], edges[:, 1]],
                                                np.r_[edges[:, 1], edges[:, 0]])),
                     shape=(n, n)).tocsr()
    op = diags(1.0 / (1.0 + np.asarray(adj.sum(1)).ravel())) @ (adj + identity(n, format="csr"))
    y = x.T
    for _ in range(iterations):
        y = op @ y
    y = np.ascontiguousarray(y.T)
    return y[0] if one else y


# --------------------------------------------------------------------------------------------
# Deformations on the sphere and the synthetic twin on the mesh

#: Steps of :func:`smooth_on_mesh` used by the twin and the deformations, per mesh. One step on
#: fsaverage5 (edges ~3.8 mm on the radius-100 sphere) widens the kernel by ~2.5 mm SD per
#: sqrt(step); fsaverage6's edges are half as long, so it takes 4x the steps for the same kernel.
#: Measured kernels (impulse response, per-axis SD of the great-circle distance on the sphere,
#: fsaverage5): 5 steps FWHM 13 mm, 10 steps 19 mm, 20 steps 26 mm. Chosen to match the volume
#: twin on its 6 mm grid (:func:`llmbrain_utils.fmri.make_synthetic_dataset`): noise FWHM
#: 2 voxels = 12 mm, spatial profile 3 voxels = 18 mm, deformation field
#: ``fmri.JITTER_FWHM_VOX`` = 3 voxels = 18 mm.
TWIN_SMOOTHING = {"noise": {"fsaverage5": 5, "fsaverage6": 20},
                  "profile": {"fsaverage5": 10, "fsaverage6": 40},
                  "field": {"fsaverage5": 10, "fsaverage6": 40}}
#: Default per-subject boundary jitter of :func:`surface_twin`: RMS displacement (mm on the
#: radius-100 sphere), the volume benchmark's ``--jitter-mm``.
TWIN_JITTER_MM = 3.0
#: Deformation model of :func:`surface_displacement` (recorded in the twin's ``truth``).
SURFACE_DEFORM_MODEL = (
    "labels(x) <- labels(vertex of x's hemisphere nearest to x + d(x), pushed back onto the "
    "radius-100 sphere); 0 (no network, no signal) when that vertex is in the medial wall. "
    "d: 3 components of white noise on every vertex of both hemispheres, smoothed by "
    "`iterations` steps of smooth_on_mesh, projected onto the sphere's tangent plane, rescaled "
    "so that sqrt(mean over cortex vertices of |d|^2) = rms_mm (mm on the sphere)")


def _check_number(name: str, value: Any, ok, expected: str) -> float:
    if (isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating))
            or not math.isfinite(value) or not ok(value)):
        raise ParameterError(name, f"{value!r}", expected=expected)
    return float(value)


def _check_labels(labels: Any, mesh: str, name: str, root) -> np.ndarray:
    """(V,) non-negative integer labels on ``mesh``'s cortex columns."""
    try:
        lab = np.asarray(labels, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ParameterError(name, f"not numeric: {exc}",
                             expected="integer labels (V,), e.g. atlas.info['labels']") from exc
    if lab.ndim != 1:
        raise ParameterError(name, f"shape {lab.shape}", expected="one label per cortex vertex, "
                             "(V,), e.g. load_surface_atlas(...).info['labels']")
    _check_length(lab.size, mesh, name, root=root)
    if not np.all(np.isfinite(lab)) or not np.array_equal(lab, np.round(lab)) or lab.min() < 0:
        raise InputError(name, "labels are not non-negative integers",
                         expected="0 = no network, i = network i (1-based)")
    return lab.astype(np.int64)


def _field_iterations(kind: str, mesh: str, iterations: Any, name: str) -> int:
    """Smoothing steps: ``iterations`` (checked under ``name``) or the default of ``kind``."""
    if iterations is None:
        return TWIN_SMOOTHING[kind][mesh]
    check_int(name, iterations, 0)
    return int(iterations)


def surface_displacement(rms_mm: float, rng: Any, mesh: str = DEFAULT_MESH, *,
                         iterations: int | None = None,
                         root: str | os.PathLike | None = None) -> np.ndarray:
    """Source column of every cortex vertex under a smooth random displacement of the sphere.

    The model (:data:`SURFACE_DEFORM_MODEL`), the surface counterpart of
    :func:`llmbrain_utils.fmri.deform_labels`: a displacement field ``d`` (3 components of white
    noise drawn from ``rng`` on every vertex of both hemispheres, ``iterations`` steps of
    :func:`smooth_on_mesh`, default :data:`TWIN_SMOOTHING` ``["field"]``: FWHM ~19 mm; each
    vector projected onto the sphere's tangent plane at its vertex) rescaled so that its RMS
    length over the cortex vertices is ``rms_mm`` (mm on the radius-100 sphere, about cortical
    mm). Vertex ``x`` then reads the vertex of its own hemisphere nearest to ``x + d(x)``
    pushed back onto the sphere (``scipy.spatial.cKDTree``); a source in the medial wall is
    -1 (no network there: the volume's "outside the mask"). The field's shape depends only on
    ``rng``, its size only on ``rms_mm``. ``rms_mm = 0`` returns every vertex itself and draws
    nothing.

    Returns
    -------
    numpy.ndarray of int64, (V,)
        Column of the source vertex in surface-map order, -1 for the medial wall.
    """
    from scipy.spatial import cKDTree

    mesh = _check_mesh(mesh)
    rms_mm = _check_number("rms_mm", rms_mm, lambda v: v >= 0, "a finite number of mm >= 0")
    its = _field_iterations("field", mesh, iterations, "iterations")
    left, right = cortex_vertices(mesh, root=root)
    V, n = left.size + right.size, HEMI_VERTICES[mesh]
    if rms_mm == 0:
        return np.arange(V, dtype=np.int64)
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    field = smooth_on_mesh(rng.standard_normal((3, 2 * n)), mesh, its, root=root)
    xyz = np.concatenate(load_sphere(mesh))
    unit = xyz / np.linalg.norm(xyz, axis=1, keepdims=True)
    d = field.T - (field.T * unit).sum(1, keepdims=True) * unit  # tangent part
    cols = np.concatenate([left, n + right])
    rms = float(np.sqrt((d[cols] ** 2).sum(1).mean()))
    if not rms > 0:
        return np.arange(V, dtype=np.int64)
    d *= rms_mm / rms
    out = np.empty(V, dtype=np.int64)
    for h, (idx, offset) in enumerate(((left, 0), (right, left.size))):
        sphere = xyz[h * n:(h + 1) * n]
        moved = sphere[idx] + d[h * n + idx]
        moved *= _SPHERE_RADIUS / np.linalg.norm(moved, axis=1, keepdims=True)
        lut = np.full(n, -1, dtype=np.int64)  # hemisphere vertex -> column (-1: wall)
        lut[idx] = np.arange(idx.size) + offset
        out[offset:offset + idx.size] = lut[cKDTree(sphere).query(moved)[1]]
    return out


def deform_surface_labels(labels: Any, rms_mm: float, rng: Any, mesh: str = DEFAULT_MESH, *,
                          iterations: int | None = None,
                          root: str | os.PathLike | None = None) -> np.ndarray:
    """Surface labels moved by a smooth random displacement of the sphere (a mismatched or a
    subject's atlas): ``labels[src]`` with ``src`` of :func:`surface_displacement`, 0 where the
    source is in the medial wall.

    Parameters
    ----------
    labels : array (V,) of non-negative int
        Labels on ``mesh``'s cortex columns (e.g. ``load_surface_atlas(...).info["labels"]``).
    rms_mm : float
        RMS displacement (mm on the radius-100 sphere), >= 0.
    rng : numpy.random.Generator or int
    mesh : {"fsaverage5", "fsaverage6"}
    iterations : int, optional
        Smoothness of the field (:data:`TWIN_SMOOTHING`).

    Returns
    -------
    numpy.ndarray of int64, (V,)
    """
    mesh = _check_mesh(mesh)
    lab = _check_labels(labels, mesh, "labels", root)
    src = surface_displacement(rms_mm, rng, mesh, iterations=iterations, root=root)
    return np.where(src >= 0, lab[np.maximum(src, 0)], 0)


def mean_network_dice(labels: Any, reference: Any, networks: Any = None) -> float:
    """Mean over networks (default: every label > 0 of ``reference``) of the Dice of
    ``labels == i`` with ``reference == i``."""
    a, b = np.asarray(labels), np.asarray(reference)
    if a.shape != b.shape:
        raise ParameterError("labels", f"shape {a.shape}", expected=f"the reference's {b.shape}")
    nets = [int(i) for i in np.unique(b) if i > 0] if networks is None else list(networks)
    if not nets:
        raise ParameterError("reference", "no network (every label is 0)",
                             expected="labels > 0 for networks")
    d = []
    for i in nets:
        x, y = a == i, b == i
        s = int(x.sum()) + int(y.sum())
        d.append(2.0 * int((x & y).sum()) / s if s else float("nan"))
    return float(np.nanmean(d))


def mismatched_surface_labels(labels: Any, target: float, seed: int, mesh: str = DEFAULT_MESH,
                              *, tol: float = 0.01, n_iter: int = 30,
                              iterations: int | None = None,
                              root: str | os.PathLike | None = None
                              ) -> tuple[np.ndarray, float, float]:
    """Planting labels whose mean network Dice with ``labels`` is about ``target``.

    :func:`deform_surface_labels` with the field of ``seed`` (fixed shape) and the RMS
    displacement found by bisection on the measured mean network Dice
    (:func:`mean_network_dice` over every network of ``labels``), as
    ``benchmarks/recovery_mismatch.py``'s ``mismatched_labels`` does in the volume: the
    bracket doubles from 4 mm until the Dice falls below ``target``, then at most ``n_iter``
    halvings stop once within ``tol / 4``; the closest labels seen are returned.
    ``target >= 1``: the labels themselves (rms 0). The measured Dice moves in steps (labels are
    resampled vertex by vertex), so reaching ``target`` within ``tol`` is the usual, not a
    guaranteed, outcome: check the returned Dice.

    Returns
    -------
    labels : numpy.ndarray of int64, (V,)
    rms_mm : float
    dice : float
        The measured mean network Dice with ``labels``.
    """
    mesh = _check_mesh(mesh)
    ref = _check_labels(labels, mesh, "labels", root)
    target = _check_number("target", target, lambda v: 0 < v <= 1, "a mean Dice in (0, 1]")
    tol = _check_number("tol", tol, lambda v: v > 0, "a number > 0")
    check_int("seed", seed, 0)
    check_int("n_iter", n_iter, 1)
    nets = [int(i) for i in np.unique(ref) if i > 0]
    if not nets:
        raise ParameterError("labels", "no network (every label is 0)", expected="labels > 0")

    def at(rms: float) -> tuple[np.ndarray, float]:
        lab = deform_surface_labels(ref, rms, np.random.default_rng(seed), mesh,
                                    iterations=iterations, root=root)
        return lab, mean_network_dice(lab, ref, nets)

    from .fmri import bisect_dice

    return bisect_dice(at, target, start=4.0, limit=200.0, tol=tol, n_iter=n_iter)


class SurfaceTwin(NamedTuple):
    """What :func:`surface_twin` returns."""

    data: np.ndarray
    """(S, T, V) float32: every subject's series on the cortex columns of the mesh."""
    labels: np.ndarray
    """(S, V) int16: every subject's planting labels after its boundary jitter."""
    truth: dict
    """Planted couplings, per-subject gains, noise levels and AR coefficients, the jitter's
    Dice per subject, and the models (strings) with their parameters."""


def surface_twin(timecourses: Any, planting_labels: Any, plant: Any, *,
                 network_names: Any = None, n_subjects: int = 8, snr: float | None = None,
                 seed: int = 0, mesh: str | None = None, jitter_mm: float = TWIN_JITTER_MM,
                 tr_s: float | None = None, ar1: float = 0.4, drift_amp: float = 0.3,
                 noise_iterations: int | None = None, profile_iterations: int | None = None,
                 jitter_iterations: int | None = None,
                 root: str | os.PathLike | None = None) -> SurfaceTwin:
    """A synthetic twin on the cortical mesh with planted network couplings.

    The surface counterpart of :func:`llmbrain_utils.fmri.make_synthetic_dataset` (same SNR
    definition, subject gains, noise levels and AR(1) model; in memory, no files). Subject
    ``s``'s series at cortex vertex ``v`` (columns as :func:`load_surface_atlas`'s masks) is::

        x_s(t, v) = a_s * snr * sum_plants sign * weight * g(v) * source(t) [v in the network]
                    + b_s * noise_s(t, v)

    * ``source``: a column of ``timecourses``, z-scored; ``g(v)`` in [0.25, 1], a smooth spatial
      profile (white noise on the mesh, ``profile_iterations`` steps of :func:`smooth_on_mesh`,
      default FWHM ~19 mm; scaled to [0.25, 1] within each planted network: 1 at its peak);
      ``a_s ~ U(0.75, 1.25)`` a subject gain. ``snr`` is thus the signal SD / noise SD at a
      network's peak vertex for a subject of gain 1, as in the volume twin.
    * ``noise``: white Gaussian noise on every vertex of both hemispheres, ``noise_iterations``
      steps of :func:`smooth_on_mesh` (default 5 on fsaverage5: FWHM ~13 mm, the volume twin's
      12 mm), cut to the cortex and z-scored per vertex; in time a stationary AR(1),
      ``n_t = phi n_(t-1) + sqrt(1 - phi^2) e_t`` with ``phi ~ U(ar1 - 0.1, ar1 + 0.1)`` per
      subject (clipped to [0, 0.9]; default ``ar1 = 0.4``); plus slow drift (cosines of period
      >= 128 s at ``tr_s``, ``drift_amp`` of the SD; the sum rescaled to unit variance); times
      ``b_s ~ U(0.85, 1.15)``, the subject's noise level.
    * boundary jitter: subject ``s``'s planting networks *and* profile are resampled through
      :func:`surface_displacement` (a smooth random displacement of RMS ``jitter_mm`` mm on the
      sphere, field FWHM ~19 mm), drawn from ``SeedSequence([seed, 7919])`` child ``s``, so
      that the noise is that of the same twin without jitter and subject ``s``'s planted
      vertices are exactly ``labels[s]``. A vertex whose source lies in the medial wall carries
      no signal. ``truth["jitter"]`` holds the mean network Dice (planted networks) between each
      subject's labels and ``planting_labels``.

    No tissue scaling (the cortex is all grey matter) and no baseline (the series are the
    "clean" kind, not z-scored: z-score per vertex as ``fmri.load_dataset`` does before
    encoding). Vertices outside every planted network carry noise only. Every random draw
    derives from ``seed``; the noise does not depend on ``snr``, ``plant`` or the jitter.

    Parameters
    ----------
    timecourses : array (T,) or (T, m)
        The sources, referred to as ``"timecourse:i"`` by ``plant``; T >= 20, finite, no
        constant column.
    planting_labels : array (V,) of int, or a surface NetworkAtlas
        Where the signals go: ``i`` = ``network_names[i - 1]``, 0 = none, on ``mesh``'s cortex
        columns. An atlas of :func:`load_surface_atlas` gives its ``info["labels"]``, names and
        mesh.
    plant : list of dict
        ``{"network", "source": "timecourse:i", "sign": +1/-1, "weight": > 0}``.
    network_names : sequence of str
        Names of labels 1, 2, ... (needed unless ``planting_labels`` is an atlas).
    n_subjects : int, >= 1
    snr : float, optional
        Default :data:`llmbrain_utils.fmri.DEFAULT_SNR`.
    seed : int
    mesh : {"fsaverage5", "fsaverage6"}, optional
        Default: the atlas's mesh when ``planting_labels`` is an atlas, else fsaverage5.
    jitter_mm : float
        RMS boundary jitter per subject (default :data:`TWIN_JITTER_MM`; 0: none).
    tr_s : float
        Repetition time (s), for the drift's cut-off (default ``fmri.TR_S``, 1.5 s).
    ar1 : float in [0, 0.85]
    drift_amp : float >= 0
    noise_iterations, profile_iterations, jitter_iterations : int, optional
        Smoothing steps (defaults :data:`TWIN_SMOOTHING` for ``mesh``).
    root : path, optional
        The atlas data (the medial wall).

    Returns
    -------
    SurfaceTwin
        ``data`` (S, T, V) float32, ``labels`` (S, V) int16, ``truth`` (dict).

    Raises
    ------
    ParameterError
        A bad number, seed, mesh, ``plant`` entry (unknown network or source, bad sign or
        weight), ``network_names``, or a planted network with no vertex in ``planting_labels``.
    InputError
        ``planting_labels`` of the wrong length for ``mesh`` (says which mesh it fits), not
        non-negative integers, or with a label beyond ``network_names``.
    """
    from scipy.signal import lfilter

    from . import fmri

    if is_surface_atlas(planting_labels):
        atlas = planting_labels
        if mesh is not None and mesh != atlas.info["space"]:
            raise ParameterError("mesh", f"{mesh!r}, but atlas {atlas.name} is on "
                                 f"{atlas.info['space']}", expected=f"{atlas.info['space']!r} "
                                 "or None with an atlas as planting_labels")
        mesh = atlas.info["space"]
        if network_names is None:
            network_names = atlas.network_names
        planting_labels = atlas.info["labels"]
    mesh = _check_mesh(DEFAULT_MESH if mesh is None else mesh)
    check_int("n_subjects", n_subjects, 1)
    check_int("seed", seed, 0)
    snr = _check_number("snr", fmri.DEFAULT_SNR if snr is None else snr, lambda v: v > 0, "> 0")
    tr_s = _check_number("tr_s", fmri.TR_S if tr_s is None else tr_s, lambda v: v > 0,
                         "seconds > 0")
    jitter_mm = _check_number("jitter_mm", jitter_mm, lambda v: v >= 0, "mm >= 0")
    ar1 = _check_number("ar1", ar1, lambda v: 0 <= v <= 0.85, "in [0, 0.85]")
    drift_amp = _check_number("drift_amp", drift_amp, lambda v: v >= 0, ">= 0")
    its = {k: _field_iterations(k, mesh, v, f"{k}_iterations") for k, v in
           (("noise", noise_iterations), ("profile", profile_iterations))}
    jit_its = _field_iterations("field", mesh, jitter_iterations, "jitter_iterations")
    try:
        tc = np.asarray(timecourses, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ParameterError("timecourses", f"not numeric: {exc}", expected="(T, m)") from exc
    tc = tc[:, None] if tc.ndim == 1 else tc
    if tc.ndim != 2 or tc.shape[0] < 20 or tc.shape[1] < 1 or not np.isfinite(tc).all():
        raise ParameterError("timecourses", f"shape {tc.shape}" if tc.ndim != 2 or
                             tc.shape[0] < 20 or tc.shape[1] < 1 else "non-finite values",
                             expected="finite (T, m), T >= 20 time points, m >= 1 sources")
    if (tc.std(axis=0) == 0).any():
        raise ParameterError("timecourses", f"constant column(s) "
                             f"{np.flatnonzero(tc.std(axis=0) == 0).tolist()}",
                             expected="non-constant columns")
    if network_names is None or isinstance(network_names, str):
        raise ParameterError("network_names", f"{network_names!r}",
                             expected="the names of labels 1, 2, ... (or pass a surface atlas "
                             "as planting_labels)")
    names = [str(x) for x in network_names]
    if not names or len(set(names)) != len(names):
        raise ParameterError("network_names", "empty or duplicate names", expected="unique names")
    lab = _check_labels(planting_labels, mesh, "planting_labels", root)
    if lab.max() > len(names):
        raise InputError("planting_labels", f"label {lab.max()} but {len(names)} network names",
                         expected="labels 0..len(network_names)")
    entries = fmri._validate_plant(plant, names, (), tc.shape[1])
    if not entries:
        raise ParameterError("plant", "empty", expected="at least one planted coupling")
    for i, e in enumerate(entries):
        if not (lab == names.index(e["network"]) + 1).any():
            raise ParameterError(f"plant[{i}].network", f"{e['network']!r} has no vertex in "
                                 "planting_labels", expected="a network present on the mesh")

    T, V, S = tc.shape[0], lab.size, int(n_subjects)
    n = HEMI_VERTICES[mesh]
    left, right = cortex_vertices(mesh, root=root)
    cols = np.concatenate([left, n + right])
    src_names = list(dict.fromkeys(e["source"] for e in entries))
    sources = np.column_stack([tc[:, int(s.split(":")[1])] for s in src_names])
    sources = (sources - sources.mean(0)) / sources.std(0)
    children = np.random.SeedSequence(int(seed)).spawn(S + 1)
    rng0 = np.random.default_rng(children[0])
    planted = sorted({e["network"] for e in entries})
    profiles = {}
    for net in planted:
        field = smooth_on_mesh(rng0.standard_normal(2 * n), mesh, its["profile"], root=root)[cols]
        inside = lab == names.index(net) + 1
        vals = field[inside]
        g = np.ones_like(vals) if np.ptp(vals) == 0 else 0.25 + 0.75 * (vals - vals.min()) / np.ptp(vals)
        profiles[net] = np.zeros(V)
        profiles[net][inside] = g
    weights = np.zeros((len(src_names), V))
    for e in entries:
        weights[src_names.index(e["source"])] += e["sign"] * e["weight"] * profiles[e["network"]]

    jit_children = np.random.SeedSequence([int(seed), 7919]).spawn(S)
    nets_idx = [names.index(x) + 1 for x in planted]
    sub_labels = np.empty((S, V), dtype=np.int16)
    jit_dice, jit_dist = [], []
    xyz = np.concatenate([s[i] for s, i in zip(load_sphere(mesh), (left, right))])
    k_drift = max(1, int(np.floor(2 * T * tr_s / 128.0)))
    tt = np.arange(T)
    dct = np.column_stack([np.cos(np.pi * (tt + 0.5) * k / T) for k in range(1, k_drift + 1)])
    dct /= dct.std(axis=0)
    data = np.empty((S, T, V), dtype=np.float32)
    gains, levels, phis = [], [], []
    for s in range(S):
        src = surface_displacement(jitter_mm, np.random.default_rng(jit_children[s]), mesh,
                                   iterations=jit_its, root=root)
        ok = src >= 0
        sub_labels[s] = np.where(ok, lab[np.maximum(src, 0)], 0)
        jit_dice.append(mean_network_dice(sub_labels[s], lab, nets_idx))
        cosang = np.clip((xyz[ok] * xyz[src[ok]]).sum(1) / _SPHERE_RADIUS ** 2, -1.0, 1.0)
        jit_dist.append(float(np.sqrt(np.mean((_SPHERE_RADIUS * np.arccos(cosang)) ** 2))))
        w_s = np.where(ok, weights[:, np.maximum(src, 0)], 0.0)
        rng = np.random.default_rng(children[s + 1])
        a = float(rng.uniform(0.75, 1.25))
        b = float(rng.uniform(0.85, 1.15))
        phi = float(np.clip(rng.uniform(ar1 - 0.1, ar1 + 0.1), 0.0, 0.9))
        e = smooth_on_mesh(rng.standard_normal((T, 2 * n), dtype=np.float32), mesh,
                           its["noise"], root=root)[:, cols]
        e = (e - e.mean(0)) / e.std(0)
        noise = np.empty_like(e)
        noise[0] = e[0]  # stationary AR(1) started at its stationary distribution
        noise[1:] = lfilter([np.sqrt(1 - phi ** 2)], [1.0, -phi], e[1:], axis=0,
                            zi=phi * e[:1])[0]
        del e
        noise = (noise - noise.mean(0)) / noise.std(0)
        if drift_amp > 0:
            coef = rng.standard_normal((k_drift, V)) / np.sqrt(k_drift)
            noise = (noise + drift_amp * (dct @ coef)) / np.sqrt(1 + drift_amp ** 2)
        data[s] = a * snr * (sources @ w_s) + b * noise
        gains.append(a)
        levels.append(b)
        phis.append(phi)
    truth = {
        "mesh": mesh, "n_vertices": V, "n_trs": T, "n_subjects": S, "snr": snr, "seed": int(seed),
        "network_names": names,
        "plant": entries, "planted_networks": planted,
        "unplanted": [x for x in names if x not in planted],
        "sources": src_names, "gains": gains, "noise_levels": levels, "ar_phi": phis,
        "peak_vertex": {net: int(np.argmax(profiles[net])) for net in planted},
        "model": {
            "signal": "a_s * snr * sign * weight * g(v) * z-scored source(t) on the subject's "
                      "planting networks; g in [0.25, 1] (1 at the network's peak), a_s ~ U(0.75, 1.25)",
            "profile": f"white noise on the mesh, {its['profile']} smooth_on_mesh steps, scaled "
                       "to [0.25, 1] within each planted network",
            "noise": f"b_s * (white noise on the mesh, {its['noise']} smooth_on_mesh steps, "
                     f"z-scored; stationary AR(1) with phi ~ U({ar1 - 0.1:g}, {ar1 + 0.1:g}); "
                     f"+ {drift_amp:g} x cosine drift below 1/128 Hz, rescaled to unit variance), "
                     "b_s ~ U(0.85, 1.15)",
            "tr_s": tr_s},
        "jitter": {"rms_mm": jitter_mm, "iterations": jit_its, "model": SURFACE_DEFORM_MODEL,
                   "seeds": f"SeedSequence([{int(seed)}, 7919]) child s",
                   "mean_dice_per_subject": jit_dice,
                   "mean_dice": float(np.mean(jit_dice)),
                   "rms_distance_mm_per_subject": jit_dist}}
    return SurfaceTwin(data, sub_labels, truth)


# --------------------------------------------------------------------------------------------
# The twin as a data set on disk (the mapping chain's fMRI stage on a mesh)

#: BIDS path of a twin's per-hemisphere series, as the Narratives ``fsaverage6`` kind with the
#: mesh in the ``space-`` entity (``data_manifests/narratives.yaml``)
TWIN_PATH = ("derivatives/afni-nosmooth/sub-{sub}/func/"
             "sub-{sub}_task-{task}{run}_space-{mesh}_hemi-{hemi}_desc-clean.func.gii")

#: roles of :data:`llmbrain_utils.fmri.DEFAULT_PLANT` (its Seitzman network names) and the
#: networks that take them in other atlases, first match wins
PLANT_ROLES = {
    "Auditory": ("Auditory", "AUD", "SomatomotorB", "Somatomotor", "SMOT-B"),
    "VentralAttention": ("VentralAttention", "Sal/VenAttnA", "Sal/VenAttn", "Salience", "SAL/PMN"),
    "DefaultMode": ("DefaultMode", "DefaultA", "Default", "DN-A"),
    "CinguloOpercular": ("CinguloOpercular", "CingOperc", "CG-OP", "Sal/VenAttnB", "ControlA",
                         "Control"),
    "Visual": ("Visual", "VisualA", "VIS-P", "LatVis"),
}


def default_plant(network_names: Any, atlas: str = "the planting atlas") -> list[dict]:
    """:data:`llmbrain_utils.fmri.DEFAULT_PLANT` with its networks renamed to those of an atlas.

    Each of the five Seitzman networks is replaced by the first name of
    :data:`PLANT_ROLES` that the atlas has (Yeo 17: SomatomotorB, Sal/VenAttnA, DefaultA,
    Sal/VenAttnB, VisualA; Yeo 7: Somatomotor, Sal/VenAttn, Default, Control, Visual), so the
    same sources, signs and weights are planted. A ParameterError names ``plant_atlas`` when a
    role has no network there.
    """
    from . import fmri

    names = [str(x) for x in network_names]
    out, used = [], set()
    for p in fmri.DEFAULT_PLANT:
        net = next((c for c in PLANT_ROLES[p["network"]] if c in names and c not in used), None)
        if net is None:
            raise ParameterError("plant_atlas", f"{atlas} has no network for the planted role "
                                 f"{p['network']!r} (tried {list(PLANT_ROLES[p['network']])})",
                                 expected="an atlas with auditory/somatomotor, ventral "
                                 "attention, default, cingulo-opercular/control and visual "
                                 "networks (e.g. TY17, TY7, EG17, DU15NET)")
        used.add(net)
        out.append({**p, "network": net})
    return out


def _write_hemis(path_of, values: np.ndarray, mesh: str, cols: np.ndarray, tr_s: float) -> None:
    """``values`` (T, V) on the cortex columns -> one GIfTI per hemisphere, the medial wall 0,
    one data array per time point (as fMRIPrep writes them), ``TimeStep`` in ms."""
    import nibabel as nib

    n = HEMI_VERTICES[mesh]
    full = np.zeros((values.shape[0], 2 * n), dtype=np.float32)
    full[:, cols] = values
    for h, hemi in enumerate("LR"):
        darrays = [nib.gifti.GiftiDataArray(row, intent="NIFTI_INTENT_TIME_SERIES",
                                            datatype="NIFTI_TYPE_FLOAT32")
                   for row in full[:, h * n:(h + 1) * n]]
        img = nib.gifti.GiftiImage(darrays=darrays,
                                   meta=nib.gifti.GiftiMetaData({"TimeStep": f"{tr_s * 1e3:g}"}))
        p = path_of(hemi)
        p.parent.mkdir(parents=True, exist_ok=True)
        nib.save(img, p)


def make_surface_dataset(out_dir: str | os.PathLike, *, task: str, words: Any, n_trs: int,
                         atlas: fbn.NetworkAtlas, planting_labels: Any = None,
                         plant: Any = None, n_subjects: int = 8, snr: float | None = None,
                         seed: int = 0, tr_s: float | None = None,
                         jitter_mm: float = 0.0, sentence_pause_s: float | None = 0.5,
                         root: str | os.PathLike | None = None) -> Path:
    """Write :func:`surface_twin` as a data set in the Narratives layout, GIfTI on the mesh.

    The counterpart of :func:`llmbrain_utils.fmri.make_synthetic_dataset` for a surface atlas
    (``atlas``, the read-out atlas, on fsaverage5 or fsaverage6): the sources are the story's
    stimulus features (:func:`llmbrain_utils.fmri.stimulus_features`), planted by ``plant``
    (default :func:`default_plant` of the atlas's networks) on ``planting_labels`` (default the
    atlas's own labels: the ideal twin) with ``jitter_mm`` of per-subject boundary jitter.
    Files: :data:`TWIN_PATH` per subject and hemisphere (medial wall 0), ``truth.json``,
    ``truth_sources.tsv``, ``participants.tsv`` and ``code/scan_exclude.json``. ``truth.json``
    has the volume twin's keys that the stages read (``subjects``, ``snr``, ``plant`` with each
    entry's ``label`` and ``live``, ``networks``, ``unplanted``, ``dead_plants``), the mesh, and
    the surface twin's own truth under ``"surface"``. A plant on a constant feature is dead:
    it is kept with ``"live": false`` and carries no signal. Written into a temporary sibling
    and renamed into place, so a failure leaves nothing that looks complete.
    """
    import json
    import shutil
    import uuid

    import pandas as pd

    from . import fmri

    if not is_surface_atlas(atlas):
        raise ParameterError("atlas", f"{getattr(atlas, 'name', type(atlas).__name__)} is not a "
                             "surface atlas", expected="load_surface_atlas(name, mesh)")
    mesh = atlas.info["space"]
    names = list(atlas.network_names)
    readout = np.asarray(atlas.info["labels"])
    lab = readout if planting_labels is None else _check_labels(planting_labels, mesh,
                                                                "planting_labels", root)
    entries = fmri._validate_plant(default_plant(names, atlas.name) if plant is None else plant,
                                   names, fmri.FEATURES, 0)
    tr_s = fmri.TR_S if tr_s is None else tr_s
    feats = fmri.stimulus_features(words, int(n_trs), tr_s, sentence_pause_s=sentence_pause_s)
    src_names = list(dict.fromkeys(e["source"] for e in entries))
    live, dead_plants = fmri.check_plants(entries, {n: feats[n].to_numpy() for n in src_names},
                                          n_trs, words, sentence_pause_s)
    dead_src = {d["source"] for d in dead_plants}
    live_src = [s for s in src_names if s not in dead_src]
    live_entries = [{**e, "source": f"timecourse:{live_src.index(e['source'])}"}
                    for e in entries if e["source"] in live_src]
    twin = surface_twin(feats[live_src].to_numpy(), lab, live_entries, network_names=names,
                        n_subjects=n_subjects, snr=snr, seed=seed, mesh=mesh,
                        jitter_mm=jitter_mm, tr_s=tr_s, root=root)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}"
    subjects = [f"{i:03d}" for i in range(1, int(n_subjects) + 1)]
    left, right = cortex_vertices(mesh, root=root)
    cols = np.concatenate([left, HEMI_VERTICES[mesh] + right])
    try:
        for s, sub in enumerate(subjects):
            _write_hemis(lambda hemi: tmp / TWIN_PATH.format(sub=sub, task=task, run="",
                                                              mesh=mesh, hemi=hemi),
                         twin.data[s], mesh, cols, tr_s)
        pd.DataFrame({"participant_id": [f"sub-{s}" for s in subjects], "age": "n/a",
                      "sex": "n/a", "task": task, "condition": "n/a",
                      "comprehension": "n/a"}).to_csv(tmp / "participants.tsv", sep="\t",
                                                      index=False)
        (tmp / "code").mkdir()
        (tmp / "code" / "scan_exclude.json").write_text(json.dumps({task: {}}, indent=2))
        feats[src_names].rename_axis("tr").to_csv(tmp / "truth_sources.tsv", sep="\t",
                                                  float_format="%.6f")
        flag = (lambda ok: {"live": ok}) if dead_plants else (lambda ok: {})
        peaks = twin.truth["peak_vertex"]
        plant_rows = [{**e, "label": names.index(e["network"]) + 1,
                       "n_voxels": int((lab == names.index(e["network"]) + 1).sum()),
                       **({"peak_voxel": peaks[e["network"]]} if e["network"] in peaks else {}),
                       **flag(ok)} for e, ok in zip(entries, live)]
        ratio = np.asarray(twin.truth["gains"]) * twin.truth["snr"] / np.asarray(
            twin.truth["noise_levels"])
        truth = {
            "generator": "llmbrain_utils.surface.make_surface_dataset", "task": task,
            "space": mesh, "subjects": subjects, "n_subjects": int(n_subjects),
            "n_trs": int(n_trs), "tr_s": float(tr_s), "seed": int(seed),
            "snr": float(twin.truth["snr"]), "features": list(fmri.FEATURES),
            "sources": src_names, "plant": plant_rows,
            "networks": {n: {"label": i + 1, "n_voxels": int((readout == i + 1).sum()),
                             "planted": any(e["network"] == n and ok
                                            for e, ok in zip(entries, live)),
                             "dice_readout_vs_planted": round(float(mean_network_dice(
                                 lab, readout, [i + 1])), 4) if (lab == i + 1).any() else None}
                         for i, n in enumerate(names)},
            "unplanted": [n for n in names if not any(e["network"] == n and ok
                                                      for e, ok in zip(entries, live))],
            "expected_peak_r": [round(float(r / np.sqrt(1 + r ** 2)), 4) for r in ratio],
            "bold": TWIN_PATH.format(sub="{sub}", task=task, run="", mesh=mesh, hemi="{hemi}"),
            "surface": {k: v for k, v in twin.truth.items() if k != "plant"},
        }
        if dead_plants:
            truth["dead_plants"] = dead_plants
        (tmp / "truth.json").write_text(json.dumps(truth, indent=2, default=float))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def twin_planting(twin: str, atlas: fbn.NetworkAtlas, seed: int,
                  root: str | os.PathLike | None = None) -> tuple[dict, dict]:
    """Keyword arguments of :func:`make_surface_dataset` for a twin kind, and what was done
    (the surface counterpart of :func:`llmbrain_utils.fmri.twin_options`).

    ``"ideal"``: planted on the read-out atlas, no jitter. ``"realistic"``: planted on the
    read-out labels deformed (:func:`mismatched_surface_labels`, seed ``seed``) to a mean
    network Dice of 0.8, each subject moved again by 3 mm RMS; no tissue scaling (the cortex
    is grey matter)."""
    from . import fmri

    if twin == "ideal":
        return {}, {"twin": "ideal", "space": atlas.info["space"]}
    if twin != "realistic":
        raise ParameterError("twin", f"{twin!r}", expected="'ideal' or 'realistic'")
    lab, rms, dice = mismatched_surface_labels(atlas.info["labels"],
                                               fmri.REALISTIC_TWIN["planting_dice"], seed,
                                               atlas.info["space"], root=root)
    return ({"planting_labels": lab, "jitter_mm": fmri.REALISTIC_TWIN["jitter_mm"]},
            {"twin": "realistic", "space": atlas.info["space"],
             "planting_dice": fmri.REALISTIC_TWIN["planting_dice"],
             "jitter_mm": fmri.REALISTIC_TWIN["jitter_mm"], "tissue": False,
             "planting_dice_achieved": round(dice, 4), "planting_rms_mm": round(rms, 3)})


def twin_manifest(mesh: str) -> dict:
    """The Narratives manifest with a kind ``twin-MESH`` for :func:`make_surface_dataset`'s
    files, so that :func:`llmbrain_utils.fmri.load_dataset` reads a twin as real data."""
    from . import fetch

    mesh = _check_mesh(mesh)
    m = fetch.load_manifest()
    kinds = {**m["kinds"], f"twin-{mesh}": {"path": TWIN_PATH.replace("{mesh}", mesh),
                                            "space": mesh, "hemis": ["L", "R"],
                                            "vertices_per_hemi": HEMI_VERTICES[mesh]}}
    return {**m, "kinds": kinds}
