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

Modules (every name below is also reachable here, as ``fmri.NAME``):

- :mod:`.masks`: the MNI152 brain mask on a grid (:func:`brain_mask`), reading a mask, the
  grey-matter probability on a grid;
- :mod:`.io`: :data:`TR_S`, :data:`SPACE`, :func:`load_bold`, :func:`load_gifti`,
  :func:`dataset_paths`, :func:`load_dataset`;
- :mod:`.isc`: :func:`isc_loo`, :func:`isc_null` and its circular and Fourier nulls,
  :func:`isc_mask`;
- :mod:`.qc`: :func:`tsnr`, :func:`carpet_array`;
- :mod:`.features`: :data:`FEATURES`, :func:`stimulus_features`, :func:`sentence_ends`;
- :mod:`.plants`: :data:`DEFAULT_PLANT`, :data:`DEFAULT_SNR`, :func:`check_plants`,
  :func:`live_plants`;
- :mod:`.deform`: :func:`deform_labels`, :func:`mismatched_labels`, :func:`bisect_dice`,
  :data:`JITTER_FWHM_VOX`, :data:`DEFORM_MODEL`;
- :mod:`.synthetic`: :func:`make_synthetic_dataset`, :func:`read_truth`,
  :func:`epi_baseline` (:data:`EPI_BASELINE`), :func:`twin_options` (:data:`REALISTIC_TWIN`).
"""

from .deform import (DEFORM_MODEL, JITTER_FWHM_VOX, _dice_masks, bisect_dice, deform_labels,
                     mismatched_labels)
from .features import FEATURES, sentence_ends, stimulus_features
from .io import SPACE, TR_S, _standardize, dataset_paths, load_bold, load_dataset, load_gifti
from .isc import (_circular_lags, _isc_null_circular, _isc_null_fourier, _rotation, _zscore_t,
                  isc_loo, isc_mask, isc_null)
from .masks import _gm_on_grid, brain_mask
from .plants import DEFAULT_PLANT, DEFAULT_SNR, _validate_plant, check_plants, live_plants
from .qc import carpet_array, tsnr
from .synthetic import (EPI_BASELINE, REALISTIC_TWIN, epi_baseline, make_synthetic_dataset,
                        read_truth, twin_options)

__all__ = [
    "TR_S", "SPACE", "FEATURES", "DEFAULT_SNR", "DEFAULT_PLANT", "EPI_BASELINE", "JITTER_FWHM_VOX",
    "DEFORM_MODEL", "REALISTIC_TWIN",
    "brain_mask", "load_bold", "load_gifti", "dataset_paths", "load_dataset",
    "isc_loo", "isc_null", "isc_mask", "tsnr", "carpet_array",
    "stimulus_features", "sentence_ends", "check_plants", "live_plants",
    "deform_labels", "mismatched_labels", "bisect_dice",
    "epi_baseline", "twin_options", "make_synthetic_dataset", "read_truth",
]

# private names that other modules (stages, surface, fbn), the tests and the benchmarks use as
# ``fmri.NAME`` (re-exported, not part of __all__)
_USED_OUTSIDE = (_standardize, _zscore_t, _circular_lags, _rotation, _isc_null_circular,
                 _isc_null_fourier, _gm_on_grid, _validate_plant, _dice_masks)
