"""Stage 5, FBN mapping: label each atom's brain map with the functional brain networks it overlaps.

Each atom of the dictionary has a group brain map (one value per voxel of a brain mask on an MNI
grid, in the voxel order of nilearn's ``NiftiMasker`` for that mask). This subpackage

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
5. measures the recovery of the whole encoding + mapping chain on synthetic twins with planted
   couplings (:func:`mapping_recovery`, the ``fbn_recovery`` stage's analysis).

Submodules
----------
One concept each; every name the package's users call is re-exported here (``fbn.couple_atoms``).

* ``fbn.atlases`` - :class:`NetworkAtlas`, the atlas manifest (:func:`atlas_manifest`,
  :func:`available_atlases`), the atlas files (:func:`atlas_root`, :func:`verify_sha256`;
  downloads through :func:`llmbrain_utils.fetch.download`) and loading (:func:`load_atlas`,
  :func:`seitzman_atlas`);
* ``fbn.images`` - brain masks, label images and resampling onto a mask's voxels;
* ``fbn.thresholds`` - :func:`parse_threshold`, :func:`threshold_maps`: the active / deactive
  split (Thresholds, below);
* ``fbn.overlaps`` - Dice and correlation of maps with networks (:func:`overlap`) and the check
  of maps (:func:`map_array`);
* ``fbn.spin`` - the volumetric spin null: :func:`spin_permutations` and its counts;
* ``fbn.surrogate`` - the surrogate null: :func:`grey_matter`, :func:`tissue_model`,
  :func:`surrogate_fields`, :class:`SurrogateNull`;
* ``fbn.signflip`` - the sign-flip null and :func:`group_t`;
* ``fbn.tail`` - generalised Pareto tail p values (:func:`gpd_tail_p`);
* ``fbn.coupling`` - :func:`couple_atoms`, :func:`threshold_sensitivity`,
  :func:`surrogate_counts_block` and :func:`spin_counts_block` (the nulls' counts of a block
  of atoms or of rotations);
* ``fbn.evaluate`` - :func:`recovery`, :func:`atlas_agreement`, :func:`mapping_recovery`
  (:func:`recovery_design`, :class:`MappingRecovery`).

A surface atlas (:func:`llmbrain_utils.surface.load_surface_atlas`) is a :class:`NetworkAtlas`
that brings its sphere's rotations (``NetworkAtlas.rotations``): this subpackage never imports
``surface``.

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

from .atlases import (ATLAS_DIR_ENV, DEFAULT_SEITZMAN_RADIUS_MM, DEFAULT_SOFT_THRESHOLD, MANIFEST,
                      SEITZMAN, SHARED_MIRROR, NetworkAtlas, _fetch, atlas_manifest, atlas_root,
                      available_atlases, load_atlas, seitzman_atlas, verify_sha256)
from .coupling import (DEFAULT_STATISTIC, NULLS, STATISTICS, TABLE_COLUMNS, couple_atoms,
                       spin_counts_block, surrogate_counts_block, threshold_sensitivity)
from .evaluate import (MappingRecovery, atlas_agreement, mapping_recovery, recovery,
                       recovery_design)
from .overlaps import _corr, _dice, _rows, map_array, overlap
from .signflip import group_t
from .spin import DEFAULT_N_PERM, _rotations, _Spinner, spin_permutations
from .surrogate import N_BIAS_FIELDS, SurrogateNull, grey_matter, surrogate_fields, tissue_model
from .tail import GPD_MIN_EXCEED, GPD_N_TAIL, TAILS, _tail_pvalues, gpd_tail_p
from .thresholds import DEFAULT_THRESHOLD, SIGNS, parse_threshold, threshold_maps

__all__ = [
    # atlases
    "NetworkAtlas", "MANIFEST", "ATLAS_DIR_ENV", "SHARED_MIRROR", "SEITZMAN",
    "DEFAULT_SOFT_THRESHOLD", "DEFAULT_SEITZMAN_RADIUS_MM", "atlas_manifest", "available_atlases",
    "atlas_root", "verify_sha256", "load_atlas", "seitzman_atlas",
    # thresholds and overlap
    "SIGNS", "DEFAULT_THRESHOLD", "parse_threshold", "threshold_maps", "map_array", "overlap",
    # nulls
    "DEFAULT_N_PERM", "spin_permutations", "group_t", "grey_matter", "tissue_model",
    "N_BIAS_FIELDS", "surrogate_fields", "SurrogateNull", "TAILS", "GPD_MIN_EXCEED", "GPD_N_TAIL",
    "gpd_tail_p",
    # coupling
    "NULLS", "STATISTICS", "DEFAULT_STATISTIC", "TABLE_COLUMNS", "couple_atoms",
    "surrogate_counts_block", "spin_counts_block", "threshold_sensitivity",
    # evaluation
    "recovery", "atlas_agreement", "recovery_design", "mapping_recovery", "MappingRecovery",
]

# private names used elsewhere as ``fbn.NAME`` (surface, compare, the tests, the benchmarks):
# re-exported, not part of __all__
_USED_INTERNALS = (_fetch, _corr, _dice, _rows, _rotations, _Spinner, _tail_pvalues)
