"""Voxel-wise encoding models (stage 4): the dictionary's atoms as fixed regressors of fMRI.

Every model here is fitted for all voxels at once (matrix algebra over a block of voxels,
blocks chunked for memory), never voxel by voxel. One concept per submodule, every public name
re-exported here (``encoding.fit_ols``):

* :func:`fit_ols` - ordinary least squares: coefficients (one signed map per atom), t, p, z and
  the in-sample R2 the method's paper reports; equal to ``statsmodels`` OLS and to nilearn's
  ``OLSModel``. :func:`fit_lasso` - the L1-penalised fit (the paper's likely ``lambda_f``) with
  SPAMS. (``encoding.ols``)
* :func:`contiguous_folds`, :class:`ContiguousKFold`, :func:`cv_scores` - held-out scores on
  contiguous blocks of TRs with a gap (``trim``) between training and test TRs; ridge with one
  alpha per voxel chosen by an inner contiguous cross-validation (himalaya ``RidgeCV``), or OLS;
  scored per block and averaged (unbiased under the null), or on the concatenated predictions.
  ``ContiguousKFold`` is ``contiguous_folds`` as a scikit-learn cross-validator (``cv=``).
  (``encoding.cv``)
* :func:`permutation_pvalues`, :func:`fdr` - nonparametric p-values from circular shifts or
  block permutations of the regressors' time axis (``encoding.permutation``),
  Benjamini-Hochberg FDR (:func:`llmbrain_utils.stats.fdr`).
* :func:`ridge_null_r`, :func:`group_cv_test`, :func:`recovery_rates` - a group test of held-out
  r with one null for all subjects (phase-randomised surrogates of the BOLD by default; the
  subjects' average BOLD or their mean r), and its rates against a planted truth;
  :func:`group_null_block` and :func:`group_test_result`, the same test in blocks of voxels.
  (``encoding.group_test``)
* :func:`noise_ceiling`, :func:`normalise_by_ceiling` - the noise ceiling of a single subject's
  prediction (from the leave-one-subject-out ISC) and normalisation by it
  (``encoding.ceiling``); :func:`group_maps` - group maps over subjects (``encoding.maps``).
* :func:`score_regressors`, :func:`layerwise_baseline` - the same cross-validated score for
  any regressor set (the layer-wise baseline and the control models use it).
  (``encoding.regressors``)
* :func:`encode_subjects` - OLS and cross-validation for every subject, the stage's output.
  (``encoding.subjects``)

The checks of the inputs and the array plumbing they share live in ``encoding._common``.

Conventions: ``X`` is ``T x k`` (TRs x regressors), ``Y`` one subject's BOLD ``T x V`` or a
stack ``S x T x V`` (or a list of ``T x V`` arrays with the same V). Arrays may be memory-mapped;
only one block of voxels is read into memory at a time. Functions with a ``device`` parameter
run their matrix products with torch on ``"cuda"`` when it is available and fall back to the
CPU (numpy) otherwise.
"""

from __future__ import annotations

from ..stats import fdr  # encoding.fdr: the encoding's FDR
from .ceiling import noise_ceiling, normalise_by_ceiling
from .cv import (DEFAULT_ALPHAS, ContiguousKFold, CVResult, _inner_splits, contiguous_folds,
                 cv_scores)
from .group_test import (GroupTest, _group_p, _shift_list, group_cv_test, group_null_block,
                         group_test_result, recovery_rates, ridge_null_r)
from .maps import GroupMaps, group_maps
from .ols import LassoResult, OLSResult, fit_lasso, fit_ols
from .permutation import _phase_rotations, n_circular_shifts, permutation_pvalues
from .regressors import layerwise_baseline, score_regressors
from .subjects import EncodingResult, encode_subjects

__all__ = [
    "OLSResult", "LassoResult", "CVResult", "GroupMaps", "EncodingResult",
    "fit_ols", "fit_lasso", "contiguous_folds", "cv_scores", "permutation_pvalues", "fdr",
    "noise_ceiling", "normalise_by_ceiling", "group_maps", "score_regressors", "layerwise_baseline",
    "encode_subjects", "DEFAULT_ALPHAS", "GroupTest", "ridge_null_r", "group_cv_test",
    "group_null_block", "group_test_result", "recovery_rates", "n_circular_shifts", "ContiguousKFold",
]

# private names the tests use as ``encoding.NAME`` (re-exported, not part of __all__)
_TESTED_INTERNALS = (_inner_splits, _shift_list, _group_p, _phase_rotations)
