"""The synthetic twin in memory (:func:`fmri.synthetic.synthetic_clean_series`, what the
``fbn_recovery`` stage's volume twins use): bit for bit what ``load_dataset`` reads of the twin
that ``make_synthetic_dataset`` writes, and the files that function writes unchanged by the
refactor that shares its generation code."""

from __future__ import annotations

import gzip
import hashlib
import json

import nibabel as nib
import numpy as np
import pytest

from llmbrain_utils import fbn, fmri, stimuli
from llmbrain_utils.errors import ParameterError
from llmbrain_utils.fmri.synthetic import synthetic_clean_series

N_TRS = 40


@pytest.fixture(scope="module")
def grid():
    """The default 6 mm grid, the default read-out atlas, the shipped story's first TRs, and
    the realistic twin's options (planting atlas, tissue, jitter) on that grid."""
    words, _, _ = stimuli.build_stimulus()
    words = words[words["onset"] < N_TRS * fmri.TR_S].copy().reset_index(drop=True)
    mask = fmri.brain_mask(6.0)
    atlas = fbn.load_atlas("Seitzman2018", mask)
    realistic, _ = fmri.twin_options("realistic", atlas.label_img, mask, 6.0, 0)
    return {"words": words, "mask": mask, "atlas": atlas, "realistic": realistic}


def twin_args(grid, case: str, **kw) -> dict:
    options = {"ideal": {}, "tissue": {"tissue": True}, "jitter": {"jitter_mm": 3.0},
               "planting": {"planting_img": grid["realistic"]["planting_img"]},
               "realistic": grid["realistic"]}[case]
    return {"words": grid["words"], "n_trs": N_TRS, "mask_img": grid["mask"],
            "atlas_img": grid["atlas"].label_img, "network_names": grid["atlas"].network_names,
            "n_subjects": 3, "seed": 5, **options, **kw}


# ----------------------------------------------------------------- in memory = written + read
@pytest.mark.parametrize("case", ["ideal", "tissue", "jitter", "planting", "realistic"])
def test_in_memory_equals_written_then_loaded(tmp_path, grid, case):
    args = twin_args(grid, case)
    root = fmri.make_synthetic_dataset(tmp_path / "ds", task="harrowpoint", preproc=False, **args)
    m = np.asarray(grid["mask"].dataobj) > 0
    truth = fmri.read_truth(root)
    # as the written volumes hold them (float32, the mask's voxels in C order)
    raw = synthetic_clean_series(**args)
    assert raw.dtype == np.float32 and raw.shape == (3, N_TRS, int(m.sum()))
    for i, sub in enumerate(truth["subjects"]):
        written = np.asarray(nib.load(root / truth["bold"].format(sub=sub)).dataobj)[m].T
        assert written.dtype == np.float32 and np.array_equal(raw[i], written)
    # as load_dataset reads them: the stage's call (z-scored), and the loader's other options
    for opts in ({}, {"zscore": False}, {"detrend": True}):
        want, subs = fmri.load_dataset(root, "harrowpoint", "001-003", grid["mask"],
                                       n_trs=N_TRS, tr_s=fmri.TR_S, **opts)
        got = synthetic_clean_series(**args, zscore=opts.get("zscore", True),
                                     detrend=opts.get("detrend", False))
        assert subs == ["001", "002", "003"]
        assert got.dtype == want.dtype == np.float32 and got.shape == want.shape
        assert np.array_equal(got, want), opts


def test_subjects_in_any_order_and_a_story_s_exclusions(tmp_path, grid):
    """A subject's series does not depend on which others are made; the subjects that the
    loader keeps of a twin named after a Narratives story (tunnel excludes sub-004), picked with
    dataset_paths as the stage does, give load_dataset's array."""
    args = twin_args(grid, "realistic", n_subjects=5)
    every = synthetic_clean_series(**args, zscore=True)
    assert np.array_equal(synthetic_clean_series(**args, zscore=True, subjects=[5, 2]),
                          every[[4, 1]])
    assert np.array_equal(synthetic_clean_series(**args, zscore=True, subjects="002-003"),
                          every[1:3])
    root = fmri.make_synthetic_dataset(tmp_path / "ds", task="tunnel", preproc=False, **args)
    labels = [f"{i:03d}" for i in range(1, 6)]
    keep = list(fmri.dataset_paths(tmp_path / "elsewhere", "tunnel", labels))
    assert keep == ["001", "002", "003", "005"]
    want, subs = fmri.load_dataset(root, "tunnel", labels, grid["mask"], n_trs=N_TRS)
    assert subs == keep
    assert np.array_equal(synthetic_clean_series(**args, zscore=True, subjects=keep), want)
    for bad in ([0], [6], "001-006", []):
        with pytest.raises(ParameterError, match="subjects"):
            synthetic_clean_series(**args, subjects=bad)


def test_bad_arguments_are_refused_as_by_make_synthetic_dataset(grid):
    with pytest.raises(ParameterError, match="n_trs"):
        synthetic_clean_series(**{**twin_args(grid, "ideal"), "n_trs": 5})
    with pytest.raises(ParameterError, match="jitter_mm"):
        synthetic_clean_series(**twin_args(grid, "ideal", jitter_mm=-1.0))


# ------------------------------------------------------- make_synthetic_dataset's files as before
def _fingerprint(root) -> dict:
    """Per file of a written twin: the sha256 of its bytes (``.nii.gz``: decompressed;
    ``truth.json`` and ``dataset_description.json`` without the package's version), and for the
    scans the sha256 of their header (without the scaling of the int16 ``preproc`` volumes)
    and a few sums of their data, compared with a tolerance: the bits of the series may differ
    between machines (the BLAS, numpy's SIMD cos and exp), a change of the random draws or of
    the model moves every sum."""
    out = {}
    for p in sorted(root.rglob("*")):
        if not p.is_file():
            continue
        rel = str(p.relative_to(root)).replace("_space-MNI152NLin2009cAsym_res-native", "")
        rel = rel.replace("MNI152NLin2009cAsym", "MNI")
        if rel.endswith("_bold.nii.gz"):
            img = nib.load(p)
            hdr = img.header.copy()
            hdr["scl_slope"], hdr["scl_inter"] = 0, 0
            d = np.asarray(img.dataobj, np.float64).ravel()
            w = np.cos(np.arange(d.size) * 0.1)
            nz = np.flatnonzero(d)
            out[rel] = [hashlib.sha256(hdr.binaryblock).hexdigest()[:16],
                        [float(d.sum()), float(d @ d), float(d @ w), *map(float, d[nz[[0, 777, -1]]])]]
            continue
        if p.name.endswith(".gz"):
            b = gzip.decompress(p.read_bytes())
        elif p.name in ("truth.json", "dataset_description.json"):
            doc = json.loads(p.read_text())
            doc.pop("version", None)
            for g in doc.get("GeneratedBy", []):
                g.pop("Version", None)
            b = json.dumps(doc, sort_keys=True).encode()
        else:
            b = p.read_bytes()
        out[rel] = hashlib.sha256(b).hexdigest()[:16]
    return out


#: _fingerprint of the twins below, written by make_synthetic_dataset before it shared its
#: generation code with synthetic_clean_series (at commit 94d2482; there, the scans' bytes
#: were also the same, as were the gzip files')
BEFORE = {
    'ideal': {
        'code/scan_exclude.json': 'e1a53a91e6929a7c',
        'dataset_description.json': '6fb711bb18ca57f9',
        'derivatives/afni-nosmooth/dataset_description.json': '20072496acdea01c',
        'derivatives/afni-nosmooth/sub-001/func/sub-001_task-harrowpoint_desc-clean_bold.nii.gz':
            ['aa024dc92856ed93', [-4.2682062257881626e-06, 268112.77195527917, -781.5628891749566,
                                  1.5083999633789062, -0.6723681688308716, 0.4093565046787262]],
        'derivatives/afni-nosmooth/sub-002/func/sub-002_task-harrowpoint_desc-clean_bold.nii.gz':
            ['aa024dc92856ed93', [3.3240430639125407e-06, 310017.37618686026, -48.2205830079797,
                                  -1.148019552230835, 1.273488998413086, -0.0019331746734678745]],
        'derivatives/afni-nosmooth/sub-003/func/sub-003_task-harrowpoint_desc-clean_bold.nii.gz':
            ['aa024dc92856ed93', [8.22948300083226e-06, 395052.02344354405, 134.65680242353375,
                                  0.865436315536499, -0.5864043831825256, -0.6004400849342346]],
        'derivatives/afni-nosmooth/tpl-MNI/tpl-MNI_res-harrowpoint_desc-brain_mask.nii.gz': '787e8f067c42290a',
        'derivatives/fmriprep/dataset_description.json': '971b5545b1a25b24',
        'derivatives/fmriprep/sub-001/func/sub-001_task-harrowpoint_desc-preproc_bold.nii.gz':
            ['33afb6a1367b0491', [323821192.75115335, 314361401057.73254, -66147.89361069133,
                                  800.9740329906344, 1093.1200193241239, 801.0128718614578]],
        'derivatives/fmriprep/sub-002/func/sub-002_task-harrowpoint_desc-preproc_bold.nii.gz':
            ['33afb6a1367b0491', [306976978.1573616, 282512730114.2689, -49603.91103707162,
                                  742.7082793787122, 1053.2621010765433, 756.6729520540684]],
        'derivatives/fmriprep/sub-003/func/sub-003_task-harrowpoint_desc-preproc_bold.nii.gz':
            ['33afb6a1367b0491', [314147596.38153076, 295875848808.49646, -50483.29595980687,
                                  772.9320186674595, 1061.2329784333706, 770.3439704477787]],
        'participants.tsv': '89f22e566651f566',
        'sub-001/func/sub-001_task-harrowpoint_events.tsv': 'f6e60f366fd8ed6a',
        'sub-002/func/sub-002_task-harrowpoint_events.tsv': 'f6e60f366fd8ed6a',
        'sub-003/func/sub-003_task-harrowpoint_events.tsv': 'f6e60f366fd8ed6a',
        'truth.json': '8380e5ec3335b9e2',
        'truth_sources.tsv': '0a1dae36e854020e',
    },
    'realistic': {
        'code/scan_exclude.json': 'e1a53a91e6929a7c',
        'dataset_description.json': '6fb711bb18ca57f9',
        'derivatives/afni-nosmooth/dataset_description.json': '20072496acdea01c',
        'derivatives/afni-nosmooth/sub-001/func/sub-001_task-harrowpoint_desc-clean_bold.nii.gz':
            ['aa024dc92856ed93', [-5.622143476102792e-06, 162075.22361200425, -691.0844183368162,
                                  0.9985213875770569, -0.6064497232437134, 0.26808837056159973]],
        'derivatives/afni-nosmooth/sub-002/func/sub-002_task-harrowpoint_desc-clean_bold.nii.gz':
            ['aa024dc92856ed93', [-5.429639259091346e-06, 187929.9017560584, -161.22790537919298,
                                  -0.7213051319122314, 1.1486371755599976, -0.0012660399079322815]],
        'derivatives/afni-nosmooth/sub-003/func/sub-003_task-harrowpoint_desc-clean_bold.nii.gz':
            ['aa024dc92856ed93', [-1.9841536413878202e-08, 239355.65221497958, 17.538594148924254,
                                  0.5864309072494507, -0.5289137959480286, -0.3932293951511383]],
        'derivatives/afni-nosmooth/tpl-MNI/tpl-MNI_res-harrowpoint_desc-brain_mask.nii.gz': '787e8f067c42290a',
        'derivatives/fmriprep/dataset_description.json': '971b5545b1a25b24',
        'derivatives/fmriprep/sub-001/func/sub-001_task-harrowpoint_desc-preproc_bold.nii.gz':
            ['33afb6a1367b0491', [323821186.8656299, 314351207438.55725, -64551.618142636406,
                                  797.6152431350201, 1093.7319175060838, 800.0433843247592]],
        'derivatives/fmriprep/sub-002/func/sub-002_task-harrowpoint_desc-preproc_bold.nii.gz':
            ['33afb6a1367b0491', [306976975.3473003, 282502202048.56885, -50825.878067057114,
                                  745.3776197433472, 1052.1761898100376, 756.6673386991024]],
        'derivatives/fmriprep/sub-003/func/sub-003_task-harrowpoint_desc-preproc_bold.nii.gz':
            ['33afb6a1367b0491', [314147603.1954033, 295861783588.1085, -51068.57436362867,
                                  771.1550048422068, 1061.7619741559029, 771.7274038363248]],
        'participants.tsv': '89f22e566651f566',
        'sub-001/func/sub-001_task-harrowpoint_events.tsv': 'f6e60f366fd8ed6a',
        'sub-002/func/sub-002_task-harrowpoint_events.tsv': 'f6e60f366fd8ed6a',
        'sub-003/func/sub-003_task-harrowpoint_events.tsv': 'f6e60f366fd8ed6a',
        'truth.json': 'b95026954f543c51',
        'truth_sources.tsv': '0a1dae36e854020e',
    },
}


@pytest.mark.parametrize("case", ["ideal", "realistic"])
def test_written_files_as_before_the_refactor(tmp_path, grid, case):
    root = fmri.make_synthetic_dataset(tmp_path / "ds", task="harrowpoint", preproc=True,
                                       **twin_args(grid, case))
    got, want = _fingerprint(root), BEFORE[case]
    assert sorted(got) == sorted(want)
    for rel, w in want.items():
        if isinstance(w, str):
            assert got[rel] == w, rel
        else:
            assert got[rel][0] == w[0], rel
            np.testing.assert_allclose(got[rel][1], w[1], rtol=1e-6, atol=1e-4, err_msg=rel)
