"""fMRI data: mask, loaders and their checks, ISC and its null, the synthetic twin's calibration."""

from __future__ import annotations

import json
import logging

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from llmbrain_utils import fmri, stimuli
from llmbrain_utils.errors import InputError, ParameterError


# --------------------------------------------------------------------------- helpers
def seitzman_atlas(mask_img, radius_mm: float):
    """Label every mask voxel with the network of the nearest Seitzman 2018 ROI within radius."""
    from nilearn.datasets import fetch_coords_seitzman_2018

    s = fetch_coords_seitzman_2018()
    names = sorted(set(s.networks))
    coords = np.column_stack([s.rois["x"], s.rois["y"], s.rois["z"]]).astype(float)
    lab = np.array([names.index(n) + 1 for n in s.networks])
    mask = np.asarray(mask_img.dataobj) > 0
    ijk = np.argwhere(mask)
    xyz = ijk @ mask_img.affine[:3, :3].T + mask_img.affine[:3, 3]
    d = np.linalg.norm(xyz[:, None, :] - coords[None], axis=2)
    j = d.argmin(1)
    keep = d[np.arange(len(j)), j] <= radius_mm
    out = np.zeros(mask.shape, np.int16)
    out[tuple(ijk[keep].T)] = lab[j[keep]]
    return nib.Nifti1Image(out, mask_img.affine), names


def small_grid(shape=(6, 5, 4), n_t=20, tr=1.5, seed=0):
    rng = np.random.default_rng(seed)
    aff = np.diag([3.0, 3.0, 3.0, 1.0])
    mask = nib.Nifti1Image(np.ones(shape, np.uint8), aff)
    img = nib.Nifti1Image(rng.standard_normal((*shape, n_t)).astype(np.float32), aff)
    img.header.set_xyzt_units("mm", "sec")
    img.header.set_zooms((3.0, 3.0, 3.0, tr))
    return mask, img


def ar_noise(S, T, V, phi=0.4, seed=0):
    rng = np.random.default_rng(seed)
    e = rng.standard_normal((S, T, V))
    x = np.empty_like(e)
    x[:, 0] = e[:, 0]
    for t in range(1, T):
        x[:, t] = phi * x[:, t - 1] + np.sqrt(1 - phi ** 2) * e[:, t]
    return x


@pytest.fixture(scope="module")
def story():
    words, _, n_trs = stimuli.build_stimulus()
    return words, n_trs


@pytest.fixture(scope="module")
def default_twin(tmp_path_factory, story):
    """The book's default: 8 subjects, the shipped story, 6 mm grid, DEFAULT_PLANT."""
    words, n_trs = story
    mask = fmri.brain_mask(6)
    atlas, names = seitzman_atlas(mask, 10.0)
    root = fmri.make_synthetic_dataset(tmp_path_factory.mktemp("twin") / "ds", task="harrowpoint",
                                       words=words, n_trs=n_trs, mask_img=mask, atlas_img=atlas,
                                       network_names=names, seed=0)
    data, subs = fmri.load_dataset(root, "harrowpoint", "001-008", mask)
    labels = np.asarray(atlas.dataobj)[np.asarray(mask.dataobj) > 0]
    return {"root": root, "mask": mask, "atlas": atlas, "names": names, "data": data, "subs": subs,
            "labels": labels, "truth": fmri.read_truth(root),
            "features": fmri.stimulus_features(words, n_trs)}


@pytest.fixture(scope="module")
def small_twin_args(story):
    words, _ = story
    mask = fmri.brain_mask(12)
    atlas, names = seitzman_atlas(mask, 14.0)
    n_trs = 80
    return {"task": "harrowpoint", "words": words[words["onset"] < n_trs * 1.5].copy(),
            "n_trs": n_trs, "mask_img": mask, "atlas_img": atlas, "network_names": names,
            "n_subjects": 3}


# --------------------------------------------------------------------------- mask
def test_brain_mask_grid_and_determinism():
    a, b = fmri.brain_mask(6), fmri.brain_mask(6.0)
    m = np.asarray(a.dataobj)
    assert np.array_equal(m, np.asarray(b.dataobj)) and np.array_equal(a.affine, b.affine)
    assert np.allclose(np.diag(a.affine)[:3], 6.0)
    assert np.allclose(a.affine[:3, 3] % 6.0, 0.0)
    assert 7000 < m.sum() < 10000  # ~8,700 brain voxels at 6 mm
    # a point deep in the brain (MNI 0, -20, 10) is inside the mask
    ijk = np.round(np.linalg.inv(a.affine) @ [0, -20, 10, 1])[:3].astype(int)
    assert m[tuple(ijk)] == 1
    with pytest.raises(ParameterError, match="resolution_mm"):
        fmri.brain_mask(0.5)


# --------------------------------------------------------------------------- features
def test_stimulus_features(story):
    words, n_trs = story
    f = fmri.stimulus_features(words, n_trs)
    assert list(f.columns) == list(fmri.FEATURES) and f.shape == (n_trs, 5)
    assert np.allclose(f.mean(), 0, atol=1e-9) and np.allclose(f.std(ddof=0), 1)
    counts = np.bincount(words["tr"].clip(0, n_trs - 1), minlength=n_trs)
    lagged = np.r_[np.zeros(3), counts[:-3]]  # the HRF peaks ~5 s (3-4 TRs) after a word
    assert np.corrcoef(lagged, f["word_rate"])[0, 1] > 0.5
    assert f.equals(fmri.stimulus_features(words, n_trs))
    assert abs(np.corrcoef(f["word_rate"], f["drift"])[0, 1]) < 0.5
    with pytest.raises(InputError, match="sentence_end"):
        fmri.stimulus_features(words.drop(columns="sentence_end"), n_trs)
    bad = words.copy()
    bad.loc[5, "offset"] = bad.loc[5, "onset"] - 1
    with pytest.raises(InputError, match="line 5"):
        fmri.stimulus_features(bad, n_trs)


# --------------------------------------------------------------------------- synthetic twin
def test_twin_layout_and_round_trip(default_twin):
    root, mask, truth = default_twin["root"], default_twin["mask"], default_twin["truth"]
    bold = root / truth["bold"].format(sub="003")
    assert bold.name == ("sub-003_task-harrowpoint_space-MNI152NLin2009cAsym_res-native_"
                         "desc-clean_bold.nii.gz")
    assert bold.parent == root / "derivatives" / "afni-nosmooth" / "sub-003" / "func"
    for f in ("dataset_description.json", "participants.tsv", "truth.json", "truth_sources.tsv",
              "code/scan_exclude.json", "sub-001/func/sub-001_task-harrowpoint_events.tsv"):
        assert (root / f).is_file(), f
    assert pd.read_csv(root / "participants.tsv", sep="\t")["participant_id"].tolist() == \
        [f"sub-{i:03d}" for i in range(1, 9)]
    img = nib.load(bold)
    assert img.header.get_zooms()[3] == pytest.approx(1.5)
    assert img.shape[3] == truth["n_trs"] and np.allclose(img.affine, mask.affine)
    raw = fmri.load_bold(bold, mask, zscore=False)
    m = np.asarray(mask.dataobj) > 0
    assert np.array_equal(raw, np.asarray(img.dataobj)[m].T)
    data, subs = default_twin["data"], default_twin["subs"]
    assert subs == truth["subjects"] and data.shape == (8, truth["n_trs"], int(m.sum()))
    assert data.dtype == np.float32
    assert np.allclose(data.mean(1), 0, atol=1e-4) and np.allclose(data.std(1), 1, atol=1e-3)
    win = fmri.load_bold(bold, mask, start_tr=10, n_trs=100)
    assert win.shape == (100, m.sum())
    assert np.allclose(win, fmri._zscore_t(raw[10:110]), atol=1e-4)
    assert truth["unplanted"] and {p["network"] for p in truth["plant"]} == \
        {p["network"] for p in fmri.DEFAULT_PLANT}


def test_twin_calibration(default_twin):
    """Single-subject peak r ~0.3-0.45 in the auditory/language networks, most voxels near 0."""
    data, lab, truth, names = (default_twin[k] for k in ("data", "labels", "truth", "names"))
    feats = default_twin["features"]
    T = data.shape[1]
    for net in ("Auditory", "VentralAttention"):
        p = next(p for p in truth["plant"] if p["network"] == net)
        src = feats[p["source"]].to_numpy()
        r = np.einsum("stv,t->sv", data[:, :, lab == p["label"]], src) / T
        peak = np.median(r.max(axis=1))
        assert 0.25 <= peak <= 0.5, (net, peak)
    r_all = np.einsum("stv,t->sv", data, feats["word_rate"].to_numpy()) / T
    assert np.median(np.abs(r_all)) < 0.1
    # the deactive plant (Visual <- word_rate, sign -1) correlates negatively at its peak voxel
    vis = next(p for p in truth["plant"] if p["network"] == "Visual")
    assert np.median(r_all[:, vis["peak_voxel"]]) < -0.15
    isc, _ = fmri.isc_loo(data)
    planted = [np.mean(isc[lab == p["label"]]) for p in truth["plant"]]
    unplanted = [np.mean(isc[lab == names.index(n) + 1]) for n in truth["unplanted"]
                 if (lab == names.index(n) + 1).any()]
    assert min(planted) > max(unplanted) + 0.015
    assert max(abs(u) for u in unplanted) < 0.03
    aud = lab == names.index("Auditory") + 1
    assert 0.15 < isc[aud].max() < 0.5
    assert abs(np.median(isc[lab == 0])) < 0.02


def test_twin_isc_null_finds_planted(default_twin):
    data, lab, truth = default_twin["data"], default_twin["labels"], default_twin["truth"]
    aud = lab == next(p["label"] for p in truth["plant"] if p["network"] == "Auditory")
    sig = fmri.isc_mask(fmri.isc_null(data, n_perm=20, null="pooled", seed=1), alpha=0.05)
    assert sig[aud].mean() > 0.3
    assert sig[lab == 0].mean() < 0.05


def test_twin_deterministic_and_atomic(tmp_path, small_twin_args):
    a = fmri.make_synthetic_dataset(tmp_path / "a", seed=7, **small_twin_args)
    b = fmri.make_synthetic_dataset(tmp_path / "b", seed=7, **small_twin_args)
    c = fmri.make_synthetic_dataset(tmp_path / "c", seed=8, **small_twin_args)
    rel = json.loads((a / "truth.json").read_text())["bold"].format(sub="002")
    va, vb, vc = (np.asarray(nib.load(r / rel).dataobj) for r in (a, b, c))
    assert np.array_equal(va, vb) and not np.array_equal(va, vc)
    assert (a / "truth.json").read_text() == (b / "truth.json").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "c"]  # no temporary leftovers
    with pytest.raises(InputError, match="already exists"):
        fmri.make_synthetic_dataset(tmp_path / "a", seed=7, **small_twin_args)
    fmri.make_synthetic_dataset(tmp_path / "a", seed=8, overwrite=True, **small_twin_args)
    assert np.array_equal(np.asarray(nib.load(a / rel).dataobj), vc)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "c"]


def test_twin_timecourse_mode(tmp_path, small_twin_args):
    T = small_twin_args["n_trs"]
    rng = np.random.default_rng(3)
    tc = np.column_stack([np.convolve(rng.standard_normal(T + 8), np.ones(4), "same")[4:T + 4]
                          for _ in range(2)])
    root = fmri.make_synthetic_dataset(
        tmp_path / "tc", timecourses=tc, snr=1.0,
        plant=[{"network": "Auditory", "source": "timecourse:1", "sign": -1, "weight": 1.0}],
        **small_twin_args)
    truth = fmri.read_truth(root)
    assert truth["plant"][0]["source"] == "timecourse:1" and truth["sources"] == ["timecourse:1"]
    data, _ = fmri.load_dataset(root, "harrowpoint", "1-3", small_twin_args["mask_img"])
    z = (tc[:, 1] - tc[:, 1].mean()) / tc[:, 1].std()
    r = np.einsum("stv,t->sv", data, z) / T
    assert np.all(r[:, truth["plant"][0]["peak_voxel"]] < -0.4)
    other = (z @ ((tc[:, 0] - tc[:, 0].mean()) / tc[:, 0].std())) / T
    assert abs(other) < 0.5


@pytest.mark.parametrize("change, err, match", [
    ({"plant": [{"network": "Language", "source": "word_rate", "sign": 1}]}, ParameterError, "network"),
    ({"plant": [{"network": "Auditory", "source": "loudness", "sign": 1}]}, ParameterError, "source"),
    ({"plant": [{"network": "Auditory", "source": "word_rate", "sign": 0}]}, ParameterError, "sign"),
    ({"plant": [{"network": "Auditory", "source": "timecourse:0", "sign": 1}]}, ParameterError,
     "timecourse"),
    ({"n_subjects": 1}, ParameterError, "n_subjects"),
    ({"task": "harrow-point"}, ParameterError, "task"),
    ({"snr": -1.0}, ParameterError, "snr"),
])
def test_twin_bad_parameters(tmp_path, small_twin_args, change, err, match):
    with pytest.raises(err, match=match):
        fmri.make_synthetic_dataset(tmp_path / "x", **{**small_twin_args, **change})
    assert not any(tmp_path.iterdir())  # nothing written


def test_twin_atlas_on_other_grid(tmp_path, small_twin_args):
    atlas = small_twin_args["atlas_img"]
    shifted = nib.Nifti1Image(np.asarray(atlas.dataobj), atlas.affine @ np.diag([2, 2, 2, 1]))
    with pytest.raises(InputError, match="atlas_img.*grid"):
        fmri.make_synthetic_dataset(tmp_path / "x", **{**small_twin_args, "atlas_img": shifted})


# --------------------------------------------------------------------------- loader checks
def test_load_bold_checks(tmp_path):
    mask, img = small_grid(n_t=20)
    good = tmp_path / "sub-001_bold.nii.gz"
    img.to_filename(good)
    x, info = fmri.load_bold(good, mask, return_info=True)
    assert x.shape == (20, 120) and info["tr_header"] == pytest.approx(1.5)

    raw = good.read_bytes()
    cut = tmp_path / "cut_bold.nii.gz"
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError, match="cut_bold.nii.gz.*(truncated|corrupt|read)"):
        fmri.load_bold(cut, mask)

    three = tmp_path / "three_bold.nii.gz"
    nib.Nifti1Image(np.zeros((6, 5, 4), np.float32), mask.affine).to_filename(three)
    with pytest.raises(InputError, match="three_bold.nii.gz.*3-D.*shape"):
        fmri.load_bold(three, mask)

    slow = tmp_path / "tr2_bold.nii.gz"
    im2 = nib.Nifti1Image(np.asarray(img.dataobj), img.affine)
    im2.header.set_xyzt_units("mm", "sec")
    im2.header.set_zooms((3.0, 3.0, 3.0, 2.0))
    im2.to_filename(slow)
    with pytest.raises(InputError, match=r"tr2_bold.nii.gz.*TR 2 s.*expected 1.5 s"):
        fmri.load_bold(slow, mask)
    ms = tmp_path / "ms_bold.nii.gz"  # 1500 ms is 1.5 s
    im3 = nib.Nifti1Image(np.asarray(img.dataobj), img.affine)
    im3.header.set_xyzt_units("mm", "msec")
    im3.header.set_zooms((3.0, 3.0, 3.0, 1500.0))
    im3.to_filename(ms)
    assert fmri.load_bold(ms, mask).shape == (20, 120)

    with pytest.raises(InputError, match="sub-001_bold.nii.gz.*20 volumes.*25"):
        fmri.load_bold(good, mask, start_tr=5, n_trs=20)

    shifted = mask.affine.copy()
    shifted[:3, 3] += 1.5
    moved = nib.Nifti1Image(np.asarray(mask.dataobj), shifted)
    with pytest.raises(InputError, match="sub-001_bold.nii.gz.*grid.*resample=True"):
        fmri.load_bold(good, moved)
    other = nib.Nifti1Image(np.ones((3, 3, 2), np.uint8), np.diag([6.0, 6.0, 6.0, 1.0]))
    y = fmri.load_bold(good, other, resample=True)
    assert y.shape == (20, 18) and np.isfinite(y).all()

    with pytest.raises(InputError, match="missing_bold.nii.gz.*not found"):
        fmri.load_bold(tmp_path / "missing_bold.nii.gz", mask)


def test_load_bold_reports_nan_and_constant(tmp_path, caplog):
    mask, img = small_grid(n_t=15)
    d = np.asarray(img.dataobj).copy()
    d[0, 0, 0, 3] = np.nan
    d[1, 1, 1, :] = 4.0
    p = tmp_path / "q_bold.nii.gz"
    nib.Nifti1Image(d, img.affine, img.header).to_filename(p)
    with caplog.at_level(logging.WARNING):
        x, info = fmri.load_bold(p, mask, return_info=True)
    assert len(info["nan_voxels"]) == 1 and len(info["constant_voxels"]) == 1
    assert np.isfinite(x).all() and np.all(x[:, info["constant_voxels"]] == 0)
    assert "NaN" in caplog.text and "constant" in caplog.text


def test_load_dataset_missing_subject(tmp_path, small_twin_args):
    root = fmri.make_synthetic_dataset(tmp_path / "ds", **small_twin_args)
    with pytest.raises(InputError, match=r"sub-004.*not found.*fetch"):
        fmri.load_dataset(root, "harrowpoint", "001-004", small_twin_args["mask_img"])
    # a scan listed in the data set's own code/scan_exclude.json is left out
    (root / "code" / "scan_exclude.json").write_text(
        json.dumps({"harrowpoint": {"sub-002": ["sub-002_task-harrowpoint"]}}))
    data, subs = fmri.load_dataset(root, "harrowpoint", "001-003", small_twin_args["mask_img"])
    assert subs == ["001", "003"] and data.shape[0] == 2


def test_load_gifti(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for hemi, n_v in (("L", 7), ("R", 5)):
        arrays = [nib.gifti.GiftiDataArray(rng.standard_normal(n_v).astype(np.float32),
                                           intent="NIFTI_INTENT_TIME_SERIES",
                                           meta={"TimeStep": "1500.000000"}) for _ in range(12)]
        p = tmp_path / f"sub-001_task-x_space-fsaverage6_hemi-{hemi}_desc-clean.func.gii"
        nib.save(nib.gifti.GiftiImage(darrays=arrays), p)
        paths.append(p)
    x = fmri.load_gifti(paths, start_tr=2, n_trs=10)
    assert x.shape == (10, 12) and np.allclose(x.std(0), 1, atol=1e-5)
    with pytest.raises(InputError, match="TimeStep"):
        fmri.load_gifti(paths, tr_s=2.0)
    with pytest.raises(InputError, match="hemi-L.*volumes"):
        fmri.load_gifti(paths, n_trs=13)


# --------------------------------------------------------------------------- ISC
def test_isc_loo_matches_naive():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((5, 40, 30)) + rng.standard_normal((1, 40, 30))
    x = x * rng.uniform(0.5, 3, size=(5, 1, 30))  # subjects of different scale
    isc, per = fmri.isc_loo(x)
    z = (x - x.mean(1, keepdims=True)) / x.std(1, keepdims=True)
    for s in range(5):
        others = np.delete(z, s, axis=0).mean(0)  # mean of the others' z-scored series
        naive = [np.corrcoef(x[s, :, v], others[:, v])[0, 1] for v in range(30)]
        assert np.allclose(per[s], naive, atol=1e-6)
    assert np.allclose(isc, per.mean(0))
    x[:, :, 0] = 1.0  # constant voxel
    assert fmri.isc_loo(x)[0][0] == 0.0
    with pytest.raises(ParameterError, match="data"):
        fmri.isc_loo(x[0])


@pytest.mark.parametrize("method", ["phase", "circular"])
def test_isc_null_uniform_on_noise(method):
    from scipy.stats import kstest

    x = ar_noise(6, 150, 600, seed=5)
    p = fmri.isc_null(x, n_perm=200, method=method, seed=0)
    fpr = (p <= 0.05).mean()
    assert 0.02 <= fpr <= 0.09, fpr
    assert kstest(p, "uniform").pvalue > 1e-3
    assert fmri.isc_mask(p, 0.05).mean() <= 0.01
    assert np.array_equal(p, fmri.isc_null(x, n_perm=200, method=method, seed=0, chunk=77))


def test_isc_null_detects_shared_signal():
    x = ar_noise(6, 150, 200, seed=6)
    x[:, :, :50] += 0.8 * ar_noise(1, 150, 50, seed=7)
    p, null = fmri.isc_null(x, n_perm=100, seed=1, return_null=True)
    assert null.shape == (100, 200)
    assert (p[:50] <= 1 / 101 + 1e-12).all()
    assert fmri.isc_mask(fmri.isc_null(x, n_perm=50, null="pooled"), 0.05)[:50].all()
    with pytest.raises(ParameterError, match="method"):
        fmri.isc_null(x, n_perm=20, method="shuffle")
    with pytest.raises(ParameterError, match="n_perm"):
        fmri.isc_null(x, n_perm=5)


def test_fdr_tsnr_carpet():
    from scipy.stats import false_discovery_control

    from llmbrain_utils import stats

    p = np.random.default_rng(0).uniform(size=50) ** 2
    assert np.allclose(stats.fdr(p, 0.05)[1], false_discovery_control(p))
    # the package's one NaN policy: a NaN p value (e.g. a constant voxel) is not a test
    with_nan = np.append(p, np.nan)
    assert np.array_equal(fmri.isc_mask(with_nan, 0.05), np.append(false_discovery_control(p) <= 0.05, False))
    with pytest.raises(ParameterError, match="alpha"):
        fmri.isc_mask(p, 1.5)
    x = np.column_stack([np.full(30, 10.0) + np.linspace(-1, 1, 30), np.zeros(30)])
    t = fmri.tsnr(x)
    assert t[0] == pytest.approx(10 / np.linspace(-1, 1, 30).std()) and t[1] == 0
    img, labs = fmri.carpet_array(np.random.default_rng(1).standard_normal((20, 9)),
                                  labels=[3, 1, 2, 1, 3, 2, 1, 2, 3], max_voxels=5)
    assert img.shape[1] == 20 and img.shape[0] <= 5 and np.all(np.diff(labs) >= 0)



# --------------------------------------------------------------------------- tSNR of the twin
def test_twin_preproc_tsnr(default_twin):
    """The twin's preproc volumes: the clean series on a realistic EPI baseline."""
    root, mask, truth = default_twin["root"], default_twin["mask"], default_twin["truth"]
    raw, subs = fmri.load_dataset(root, "harrowpoint", "001-008", mask, kind="preproc", zscore=False)
    assert subs == default_twin["subs"] and raw.shape == default_twin["data"].shape
    mean = raw.mean(axis=1)
    assert 500 < np.median(mean) < 1500  # scanner-like intensities, not residuals around 0
    t = fmri.tsnr(raw)  # S x V
    med = np.median(t.mean(0))
    assert 60 < med < 120 and np.percentile(t, 1) > 25 and np.percentile(t, 99) < 170
    # higher in dorsal cortex (near the coils) than in ventral cortex (susceptibility loss)
    xyz = np.argwhere(np.asarray(mask.dataobj) > 0) @ mask.affine[:3, :3].T + mask.affine[:3, 3]
    assert np.median(t.mean(0)[xyz[:, 2] > 40]) > 1.5 * np.median(t.mean(0)[xyz[:, 2] < -30])
    # the subject's noise level lowers its tSNR: the truth predicts each subject's median
    scale = np.array(truth["subject_noise"])
    assert np.corrcoef(np.median(t, axis=1), 1 / scale)[0, 1] > 0.9
    assert truth["preproc"]["tsnr_v"]["min"] > 25 and len(truth["preproc"]["subject_scale"]) == 8
    # z-scored, the preproc volumes are the clean volumes (the twin has no other confounds)
    z = (raw - mean[:, None]) / raw.std(axis=1, keepdims=True)
    assert np.abs(z - default_twin["data"]).max() < 2e-2  # int16 quantisation of the scanner units


# --------------------------------------------------------------------------- more bad input
def test_load_bold_corrupt_space_and_shape(tmp_path):
    mask, img = small_grid(n_t=20)
    garbage = tmp_path / "sub-001_task-x_space-MNI152NLin2009cAsym_desc-clean_bold.nii.gz"
    garbage.write_bytes(np.random.default_rng(0).bytes(4000))
    with pytest.raises(InputError, match=r"sub-001_task-x.*cannot read as NIfTI"):
        fmri.load_bold(garbage, mask)
    # an uncompressed file cut inside its data block
    good = tmp_path / "full_bold.nii"
    img.to_filename(good)
    cut = tmp_path / "cut_bold.nii"
    cut.write_bytes(good.read_bytes()[:-500])
    with pytest.raises(InputError, match=r"cut_bold.nii.*(truncated|corrupt|read)"):
        fmri.load_bold(cut, mask)
    # another template in the file name
    other = tmp_path / "sub-001_task-x_space-MNI152NLin6Asym_res-2_desc-clean_bold.nii.gz"
    img.to_filename(other)
    with pytest.raises(InputError, match=r"MNI152NLin6Asym.*space.*MNI152NLin2009cAsym"):
        fmri.load_bold(other, mask)
    assert fmri.load_bold(other, mask, space=None).shape == (20, 120)
    # same affine, another grid shape
    bigger = nib.Nifti1Image(np.ones((7, 5, 4), np.uint8), mask.affine)
    with pytest.raises(InputError, match=r"full_bold.nii.*grid \(6, 5, 4\).*\(7, 5, 4\)"):
        fmri.load_bold(good, bigger)


def _gifti(path, n_v, n_t, rng, step_ms=1500.0):
    arrays = [nib.gifti.GiftiDataArray(rng.standard_normal(n_v).astype(np.float32),
                                       intent="NIFTI_INTENT_TIME_SERIES",
                                       meta={"TimeStep": f"{step_ms:f}"}) for _ in range(n_t)]
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.gifti.GiftiImage(darrays=arrays), path)


def test_load_dataset_fsaverage6(tmp_path):
    """fsaverage6 surfaces (both hemispheres) of a data set in the real layout, with their checks."""
    from llmbrain_utils import fetch

    rng = np.random.default_rng(0)
    n_v = fetch.load_manifest()["kinds"]["fsaverage6"]["vertices_per_hemi"]
    assert n_v == 40962
    root = tmp_path / "ds"
    for sub in ("002", "003"):
        for rel in fetch.relative_paths("pieman", sub, ["fsaverage6"]):
            _gifti(root / rel, n_v, 14, rng)
    data, subs = fmri.load_dataset(root, "pieman", "002-003", kind="fsaverage6", start_tr=2, n_trs=12)
    assert subs == ["002", "003"] and data.shape == (2, 12, 2 * n_v)
    assert np.allclose(data.std(axis=1), 1, atol=1e-4)
    # L then R: the first n_v columns are the left hemisphere's, z-scored
    left = root / fetch.relative_paths("pieman", "002", ["fsaverage6"])[0]
    raw = np.stack([d.data for d in nib.load(left).darrays])[2:14]
    assert np.allclose(data[0, :, :n_v], (raw - raw.mean(0)) / raw.std(0), atol=1e-4)
    # a mesh that is not fsaverage6, a wrong TR, a missing hemisphere
    right3 = root / fetch.relative_paths("pieman", "003", ["fsaverage6"])[1]
    _gifti(right3, 10242, 14, rng)
    with pytest.raises(InputError, match=r"sub-003.*hemi-R.*10242 vertices.*40962"):
        fmri.load_dataset(root, "pieman", "002-003", kind="fsaverage6")
    _gifti(right3, n_v, 14, rng, step_ms=2000.0)
    with pytest.raises(InputError, match=r"sub-003.*hemi-R.*TimeStep 2 s"):
        fmri.load_dataset(root, "pieman", "002-003", kind="fsaverage6")
    right3.unlink()
    with pytest.raises(InputError, match=r"sub-003.*hemi-R.*not found.*fetch"):
        fmri.load_dataset(root, "pieman", "002-003", kind="fsaverage6")


def test_twin_without_preproc(tmp_path, small_twin_args):
    """preproc=False writes only the cleaned volumes, byte-identical to those of the full twin."""
    a = fmri.make_synthetic_dataset(tmp_path / "a", seed=3, **small_twin_args)
    b = fmri.make_synthetic_dataset(tmp_path / "b", seed=3, preproc=False, **small_twin_args)
    rel = fmri.read_truth(a)["bold"].format(sub="002")
    assert (a / rel).read_bytes() == (b / rel).read_bytes()
    assert not (b / "derivatives" / "fmriprep").exists() and fmri.read_truth(b)["preproc"] is None
    raw, _ = fmri.load_dataset(a, "harrowpoint", "001-003", small_twin_args["mask_img"],
                               kind="preproc", zscore=False)
    assert raw.dtype == np.float32 and raw.min() > 0


@pytest.mark.parametrize("summary", ["mean", "median", "fisher"])
def test_circular_null_from_pair_correlations_equals_shifted_series(summary):
    """The circular null's fast path (pairwise circular cross-correlations) against the
    surrogates made literally: every subject's series rolled by its lag, LOO ISC recomputed."""
    import functools

    x = ar_noise(5, 37, 40, seed=11) + 0.5 * ar_noise(1, 37, 40, seed=12)
    n_perm, S, T = 30, 5, 37
    p, null = fmri.isc_null(x, n_perm=n_perm, method="circular", seed=4, summary=summary,
                            return_null=True, chunk=16)
    for i in range(n_perm):
        k = fmri._circular_lags(4, i, S, T)
        rolled = np.stack([np.roll(x[s], k[s], axis=0) for s in range(S)])
        assert np.allclose(null[i], fmri.isc_loo(rolled, summary=summary)[0], atol=2e-5)
    # and the Fourier-rotation path (the phase null's machinery) gives the same counts
    count, observed, _ = fmri._isc_null_fourier(
        x, [functools.partial(fmri._rotation, 4, i, S, T, "circular") for i in range(n_perm)],
        summary, 2048, False)
    assert np.allclose(observed, fmri.isc_loo(x, summary=summary)[0])
    assert np.array_equal(p, (1.0 + count) / (1.0 + n_perm))


def test_isc_null_benchmark_runs_and_both_paths_agree(benchmark_script, tmp_path):
    bench = benchmark_script("isc_null")
    rep = bench.main(["--subjects", "4", "--T", "50", "--voxels", "120", "--perms", "40",
                      "--json", str(tmp_path / "r.json"), "--print-json"])
    assert json.loads((tmp_path / "r.json").read_text()) == rep
    assert rep["voxels_with_different_counts"] == 0
    assert rep["max_abs_null_difference"] < 1e-5 and rep["max_abs_observed_difference"] < 1e-5
    assert rep["seconds"]["pairs"] > 0 and rep["speedup_vs_reference"] > 0
