"""The encoding chapter's presentation functions (``llmbrain_utils.chapters.encoding``) on small
hand-made tables: which atoms are shown, how the baseline table is summarised, the verdicts
against the baselines and the answer's wording."""

import numpy as np
import pandas as pd
import pytest

from llmbrain_utils import headlines
from llmbrain_utils.chapters import encoding as chapter


@pytest.fixture
def hl(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMBRAIN_HEADLINES_DIR", str(tmp_path))
    return headlines.Recorder("04_encoding", None, spread={})


def test_strongest_atoms_are_those_with_the_largest_mean_abs_t():
    group_t = np.array([[0.1, -0.1], [5.0, -5.0], [-2.0, 2.0], [3.0, 0.0], [0.0, 0.0]])
    assert chapter.strongest_atoms(group_t).tolist() == [1, 2, 3, 0]
    assert chapter.strongest_atoms(group_t, 2).tolist() == [1, 2]


def _baseline():
    rows = []
    for subject, shift in ((0, 0.0), (1, 0.01)):
        rows += [{"subject": subject, "regressors": "atoms", "layer": np.nan, "mean_r": 0.02 + shift},
                 {"subject": subject, "regressors": "layer PCs", "layer": 0, "mean_r": 0.01 + shift},
                 {"subject": subject, "regressors": "layer PCs", "layer": 1, "mean_r": 0.03 + shift},
                 {"subject": subject, "regressors": "all ANs (PCs)", "layer": np.nan, "mean_r": 0.04 + shift},
                 {"subject": subject, "regressors": "atoms, shuffled words", "layer": np.nan, "mean_r": 0.0 + shift}]
    return pd.DataFrame(rows)


def test_baseline_summary_names_layers_and_keeps_the_tables_order():
    bl = _baseline()
    summary = chapter.baseline_summary(bl)
    assert list(summary.index) == ["atoms", "layer 0", "layer 1", "all ANs (PCs)", "atoms, shuffled words"]
    assert list(summary.columns) == ["mean", "std"]
    assert summary.loc["atoms", "mean"] == pytest.approx(0.025)
    assert summary.loc["layer 1", "std"] == pytest.approx(0.007)  # rounded to 3 decimals
    assert "set" not in bl  # the stage's table is left as read


def test_baseline_verdicts_compare_the_atoms_with_each_baseline_present(hl, capsys):
    summary = chapter.baseline_summary(_baseline())
    hl.add_table("baseline", summary)
    chapter.baseline_verdicts(summary, hl)
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["atoms below layer 1: holds in this run (spread not measured)",
                     "atoms below all ANs (PCs): holds in this run (spread not measured)",
                     "atoms above atoms, shuffled words: holds in this run (spread not measured)"]
    assert set(hl.verdicts) == {"atoms_below_last_layer", "atoms_below_all_ans", "atoms_above_shuffled"}


def _fits(**kw):
    keep = np.array([True, True, False, False])
    cv_r = np.array([[0.1, 0.3, -0.1, 0.0], [0.1, 0.1, -0.1, 0.0]])
    arrays = dict(r2=np.zeros((2, 4)), cv_r=cv_r, p=np.ones((2, 4)), group_t=np.zeros((3, 4)),
                  agree=np.zeros((3, 4)), isc=np.zeros(4), keep=keep, ceiling=np.ones(4),
                  norm=np.array([0.2, 0.4, np.nan, 0.0]), sig=np.zeros((2, 4), bool),
                  p_group=np.ones(4), gsig=np.zeros(4, bool), gsig_isc=np.array([True, False, False, False]))
    arrays.update(kw)
    return chapter.Fits(art=None, data=None, tests=None, where=None, mesh=None, **arrays)


def test_answer_states_prediction_recovery_and_verdicts():
    fits = _fits()
    rec = pd.DataFrame({"snr": [0.3, 0.3, 0.3], "regressors": ["atoms", "planted sources", "atoms"],
                        "test": ["group average BOLD, ISC mask"] * 2 + ["group average BOLD, whole brain"],
                        "sensitivity": [0.125, 0.8, 0.01]})
    text = chapter.answer(fits, rec, 0.3, verdicts={"atoms_below_last_layer": "holds"})
    assert text.startswith("Held out, the atoms predict the listeners' BOLD weakly: mean r 0.150 in the "
                           "ISC mask (0.30 of the single-subject noise ceiling) and 0.050 over the whole "
                           "brain; the group test finds 1 of the 2 voxels of the ISC mask.")
    assert " On the twin they find 12% of the planted voxels in the mask, the planted sources themselves 80%" in text
    assert "last layer's components (holds)" in text and "untrained model's atoms (not run)" in text
    real = chapter.answer(fits, None, None, verdicts={})
    assert "twin" not in real and "baselines" not in real


def test_recovery_summary_on_real_data_says_there_is_no_truth(hl, capsys):
    chapter.recovery_summary(None, None, hl=hl)
    assert capsys.readouterr().out == "real data: no planted truth\n"
    assert chapter.recovery_figure(None, None, alpha=0.05) is None
