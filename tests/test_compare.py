import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from llmbrain_utils import compare


def table(rows):
    return pd.DataFrame(rows, columns=["atom", "network", "sign", "coupled"])


def test_diversity_and_offdiag():
    rng = np.random.default_rng(0)
    D = rng.standard_normal((300, 10))
    assert compare.diversity(D) < 0.1
    same = np.repeat(D[:, :1], 5, axis=1)
    assert compare.diversity(same) == pytest.approx(1.0)
    assert np.isnan(compare.mean_abs_offdiag(np.ones((1, 1))))


def test_network_consistency_against_size_matched_null():
    rng = np.random.default_rng(1)
    base = rng.standard_normal((400, 1))
    D = rng.standard_normal((400, 20))
    D[:, :4] = base + 0.3 * rng.standard_normal((400, 4))  # four similar atoms
    t = table([(a, "Auditory", "active", True) for a in range(4)]
              + [(a, "Visual", "active", True) for a in (10, 11, 12, 13)]
              + [(5, "Visual", "deactive", True), (6, "Reward", "active", False)])
    cons = compare.network_consistency(D, t, n_null=500)
    aud = cons[cons.network == "Auditory"].iloc[0]
    vis = cons[(cons.network == "Visual") & (cons.sign == "active")].iloc[0]
    assert aud.consistency > 0.8 and aud.p < 0.01
    assert vis.consistency < 0.2 and vis.p > 0.05
    assert set(cons.n_atoms) == {4}  # single-atom and uncoupled rows are left out


def test_couplings_per_network_and_layers():
    t = table([(0, "A", "active", True), (1, "A", "active", True), (1, "B", "deactive", True),
               (2, "B", "active", False)])
    c = compare.couplings_per_network(t, ["A", "B", "C"])
    assert c.loc["A", "active"] == 2 and c.loc["B", "deactive"] == 1 and c.loc["C"].sum() == 0
    A = sp.csr_matrix(np.array([[1, 0, 1, 0], [0, 1, 0, 0]], float))
    dist = compare.layer_distribution(A, np.array([0, 0, 1, 1]), atoms=[0])
    assert dist.to_dict() == {0: 0.5, 1: 0.5}


def test_bootstrap_interval_contains_mean():
    m, lo, hi = compare.bootstrap_mean(np.array([0.1, 0.2, 0.3, 0.15, 0.25]), seed=0)
    assert lo <= m <= hi and m == pytest.approx(0.2)
