"""Chapter ``fmri``'s pure functions (``llmbrain_utils.chapters.fmri``) on small hand-made data:
the summary, the planted-truth table, the network labels, the ISC contrast, the calibration and
the answer."""

from types import SimpleNamespace

import numpy as np
import pandas as pd

from llmbrain_utils.chapters import fmri as chapter


def _atlas():
    masks = [np.array([1, 1, 0, 0, 0, 0], bool), np.array([0, 0, 1, 1, 0, 0], bool),
             np.array([0, 0, 0, 0, 1, 0], bool)]
    names = ["Auditory", "Visual", "DefaultMode"]
    return SimpleNamespace(masks=masks, network_names=names, index=names.index)


def _truth():
    return {"plant": [{"network": "Auditory", "source": "word_rate", "sign": 1, "weight": 1.0,
                       "n_voxels": 2, "peak_voxel": 0},
                      {"network": "Visual", "source": "drift", "sign": -1, "weight": 0.5,
                       "n_voxels": 2, "peak_voxel": 3}],
            "unplanted": ["DefaultMode"], "snr": 0.5, "expected_peak_r": [0.314, 0.296]}


def _data(truth=None, where=None):
    rng = np.random.default_rng(0)
    isc = np.array([0.3, 0.2, 0.1, 0.15, -0.01, 0.0])
    keep = np.array([1, 1, 0, 1, 0, 0], bool)
    return chapter.FmriData(bold=rng.standard_normal((2, 10, 6)), where=where, isc=isc,
                            isc_p=np.where(keep, 0.001, 0.5), keep=keep, truth=truth)


def test_summary_on_a_volume_and_on_a_mesh(capsys):
    cfg = SimpleNamespace(resolution_mm=6.0, alpha=0.05)
    chapter.summary(_data(where=SimpleNamespace(shape=(3, 2, 1))), cfg)
    assert capsys.readouterr().out.splitlines() == [
        "subjects: 2, TRs: 10, voxels: 6 (6 mm grid)",
        "ISC (leave-one-out r): median 0.125, max 0.30",
        "voxels with significant ISC (FDR 0.05): 3 (50.0%)"]
    chapter.summary(_data(where="fsaverage5"), cfg)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "subjects: 2, TRs: 10, vertices: 6 (fsaverage5 cortex)"
    assert out[2].startswith("vertices with significant ISC")


def test_planted_table_and_real_data(capsys):
    chapter.planted_table(_truth())
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["network", "source", "sign", "weight", "n_voxels"]
    assert out[1].split() == ["Auditory", "word_rate", "1", "1.0", "2"]
    assert out[3:] == ["unplanted networks: DefaultMode",
                       "snr = 0.5; expected peak single-subject r per subject:", "    [0.31, 0.3]"]
    chapter.planted_table(None)
    assert capsys.readouterr().out == "real data: no planted truth\n"


def test_network_labels_and_planted_contrast():
    atlas = _atlas()
    assert chapter.network_labels(atlas, 6).tolist() == [1, 1, 2, 2, 3, 0]
    groups, planted = chapter.network_isc(_data().isc, atlas, _truth())
    assert planted == {"Auditory", "Visual"} and groups["DefaultMode"].tolist() == [-0.01]
    ins, out = chapter.planted_contrast(_data().isc, atlas, _truth())
    assert np.isclose(ins, 0.175) and np.isclose(out, -0.01)


def test_calibration_correlates_each_peak_voxel_with_its_signed_source():
    data = _data()
    src = pd.DataFrame({"word_rate": data.bold[0][:, 0], "drift": -data.bold[1][:, 3]})
    table = chapter.calibration(data.bold, _truth(), src)
    assert table.columns.tolist() == ["network", "source", "median r", "max r"]
    assert np.isclose(table["max r"], 1.0).all()  # subject 1 (Auditory) and 2 (Visual) are exact


def test_answer_names_the_twins_contrast_and_the_tsnr():
    cfg = SimpleNamespace(alpha=0.05)
    text = chapter.answer(_data(), cfg)
    assert text.startswith("The 2 listeners share a response to the story in 3 of 6 voxels")
    assert "planted" not in text and "tSNR" not in text
    text = chapter.answer(_data(truth=_truth()), cfg, atlas=_atlas(), tsnr=np.full((2, 6), 80.0))
    assert "the median ISC is 0.175, in the others -0.010" in text
    assert text.endswith("The volumes' median tSNR is 80.")
