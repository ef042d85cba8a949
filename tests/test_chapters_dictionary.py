"""The dictionary chapter's pure helpers (``llmbrain_utils.chapters.dictionary``), on small inputs."""
import numpy as np
import pandas as pd
import scipy.sparse as sp

from llmbrain_utils import headlines
from llmbrain_utils.chapters import dictionary as chapter


def test_sign_balance_per_atom():
    A = sp.csr_matrix(np.array([[1.0, -1.0, 0.0],    # balanced
                                [2.0, 0.0, 1.0],     # one sign
                                [0.0, 0.0, 0.0],     # unused: 0, no division by zero
                                [-3.0, 1.0, 0.0]]))  # |-2| / 4
    np.testing.assert_allclose(chapter.sign_balance(A), [0.0, 1.0, 0.0, 0.5])


def test_off_diagonal_abs_takes_each_pair_once():
    C = np.array([[1.0, -0.5, 0.2], [-0.5, 1.0, 0.1], [0.2, 0.1, 1.0]])
    np.testing.assert_allclose(chapter.off_diagonal_abs(C), [0.5, 0.2, 0.1])


def test_layer_share_rows_sum_to_one_or_zero():
    counts = pd.DataFrame([[1, 3], [0, 0], [2, 2]], columns=[0, 1])
    share = chapter.layer_share(counts)
    np.testing.assert_allclose(share.to_numpy(), [[0.25, 0.75], [0, 0], [0.5, 0.5]])


def test_default_row_finds_the_runs_pair_or_none():
    sw = pd.DataFrame({"k": [32, 64, 64], "lam": [0.1, 0.1, 0.2], "r2": [0.5, 0.6, 0.55]})
    assert chapter.default_row(sw, k=64, lam=0.1 + 1e-12).r2 == 0.6
    assert chapter.default_row(sw, k=128, lam=0.1) is None


def test_chance_summary_without_the_default_row_leaves_out_stability(capsys):
    chance = pd.DataFrame({c: [0.1, 0.3] for c in chapter.CHANCE_COLUMNS},
                          index=pd.Index(["a", "b"], name="model"))
    chapter.chance_summary(chance, r2_lasso=0.5, r2_ls=0.25)
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 5  # header, index name, two models, the learned line
    assert out[-1] == "learned: lasso R2 0.500 (best chance 0.300), least-squares R2 0.250 (best chance 0.300)"
    chapter.chance_summary(chance, r2_lasso=0.5, r2_ls=0.25,
                           row=pd.Series({"stability_seed": 0.5, "stability_half": 0.2}))
    out = capsys.readouterr().out.splitlines()
    assert out[-2:] == ["learned: stability across seeds 0.50 (best chance 0.30),",
                        "    across AN halves 0.20 (best chance 0.30)"]


def test_sweep_default_summary_records_and_prints_the_default_pair(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LLMBRAIN_HEADLINES_DIR", str(tmp_path))
    hl = headlines.Recorder("02_dictionary", spread={})
    chapter.sweep_default_summary(None, hl, k=64, lam=0.1)  # the sweep lacks the pair: nothing
    assert hl.figures == {} and capsys.readouterr().out == ""
    row = pd.Series({"r2": 0.654, "stability_seed": 0.561, "stability_half": 0.468})
    chapter.sweep_default_summary(row, hl, k=64, lam=0.1)
    assert list(hl.figures) == ["sweep_r2", "sweep_stability_seed", "sweep_stability_half"]
    assert capsys.readouterr().out.splitlines() == [
        "default k = 64, lambda = 0.1:", "    R2 0.65", "    stability across seeds 0.56",
        "    stability across AN halves 0.47"]
