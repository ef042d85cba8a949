"""The cross-model chapter's pure functions (``llmbrain_utils.chapters.cross_model``): the
variants' roles and pairs, the verdict on a paired difference (every seed and BLAS kernel, BH
q <= alpha) and the verdict sentence, on small made-up tables."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from llmbrain_utils import headlines
from llmbrain_utils.chapters import cross_model as chapter

NAMES = ["A", "A 32 tokens", "A causal", "A shuffled words", "A untrained", "B", "B untrained", "C"]
NB = "06_cross_model"


@pytest.fixture
def headlines_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMBRAIN_HEADLINES_DIR", str(tmp_path))
    return tmp_path


def recorder(spread_values=None):
    """A Recorder whose measured spread holds ``{figure name: {run: value}}``."""
    spread = {NB: {name: {"values": vals} for name, vals in (spread_values or {}).items()}} if spread_values else {}
    return headlines.Recorder(NB, None, spread=spread)


def spread_of(label, d, q):
    """The spread of one pair's difference and q over runs: ``d``, ``q`` lists, one per run."""
    runs = [f"kernel{i}/seed0" for i in range(len(d))]
    return {f"difference[{label}][difference x 1e3]": dict(zip(runs, d)),
            f"difference[{label}][q (BH)]": dict(zip(runs, q))}


# --------------------------------------------------------------------------- roles and pairs
def test_roles_of_the_variants():
    assert chapter.trained(NAMES) == ["A", "A 32 tokens", "A causal", "B", "C"]
    assert chapter.controls(NAMES) == ["A shuffled words", "A untrained", "B untrained"]
    assert chapter.primary(NAMES) == ["A", "B", "C"]


def test_pairs_controls_then_causal_then_models():
    assert chapter.pairs(NAMES) == [("A", "A untrained"), ("B", "B untrained"), ("A", "A shuffled words"),
                                    ("A causal", "A 32 tokens"), ("A", "B"), ("A", "C"), ("B", "C")]
    assert chapter.control_labels(NAMES) == ["A - A untrained", "B - B untrained", "A - A shuffled words"]
    assert chapter.other_labels(NAMES) == ["A causal - A 32 tokens", "A - B", "A - C", "B - C"]


def test_causal_pair_needs_both_readings():
    assert ("A causal", "A 32 tokens") not in chapter.pairs(["A", "A causal", "A untrained"])


# --------------------------------------------------------------------------- direction
@pytest.mark.parametrize("d, q, expected", [
    ([1.2, 0.8, 1.0], [0.01, 0.04, 0.05], "above 0"),  # q == alpha is claimed
    ([-1.2, -0.8, -1.0], [0.01, 0.02, 0.03], "below 0"),
    ([0.3, -0.2, 0.1], [0.4, 0.6, 0.2], "no difference shown"),
    ([1.2, 0.8, 1.0], [0.01, 0.2, 0.03], "not determined (flips with the seed or kernel)"),  # q flips
    ([1.2, -0.8, 1.0], [0.01, 0.02, 0.03], "not determined (flips with the seed or kernel)"),  # sign flips
])
def test_direction_holds_under_every_seed_and_kernel(headlines_dir, d, q, expected):
    hl = recorder(spread_of("A - B", d, q))
    assert chapter.direction("A - B", hl, alpha=0.05) == expected


def test_direction_without_a_measured_spread_uses_the_run_itself(headlines_dir):
    diff_table = pd.DataFrame({"difference x 1e3": [1.4, -1.9, 0.3], "ci_low x 1e3": [0.3, -3.0, -0.6],
                               "ci_high x 1e3": [2.5, -0.6, 1.5], "q (BH)": [0.005, 0.01, 0.4]},
                              index=["A - B", "A - A untrained", "B - C"])
    hl = recorder()
    hl.add_table("difference", diff_table, digits=2)
    assert [chapter.direction(lab, hl, alpha=0.05) for lab in diff_table.index] == [
        "above 0", "below 0", "no difference shown"]
    # not recorded at all: neither holds
    assert chapter.direction("X - Y", hl, alpha=0.05) == "not determined (flips with the seed or kernel)"


# --------------------------------------------------------------------------- verdict sentence
def test_verdict_every_model_above_its_controls():
    v = chapter.signal_verdict({"A - A untrained": "above 0", "B - B untrained": "above 0"}, alpha=0.05)
    assert v == ("Every trained model carries more network signal than each of its controls (paired "
                 "differences, BH q <= 0.05 over the chapter's pairs).")


def test_verdict_some_pairs_separated_names_them():
    v = chapter.signal_verdict({"A - A untrained": "no difference shown", "B - B untrained": "below 0",
                                "A - A shuffled words": "below 0"}, alpha=0.05)
    assert v == ("The network signal separates some trained models from their controls and not others (paired "
                 "differences, BH q <= 0.05): the model carries more than its control for no pair, less for "
                 "B - B untrained, A - A shuffled words, and no difference is shown (or the verdict flips with "
                 "the seed or BLAS kernel) for the rest.")
    v = chapter.signal_verdict({"A - A untrained": "above 0", "B - B untrained": "not determined"}, alpha=0.1)
    assert "BH q <= 0.1" in v and "more than its control for A - A untrained, less for no pair" in v


@pytest.mark.parametrize("directions", [{}, {"A - A untrained": "no difference shown",
                                             "B - B untrained": "not determined (flips with the seed or kernel)"}])
def test_verdict_nothing_separated(directions):
    v = chapter.signal_verdict(directions, alpha=0.05)
    assert v.startswith("The network signal does not separate any trained model from its controls: no paired "
                        "difference reaches BH q <= 0.05.")


# --------------------------------------------------------------------------- wording helpers
def summary_table():
    return pd.DataFrame({"theta_milli": [4.531, 5.431, 3.1, 2.0], "theta_lo": [3.46, 3.403, 1.5, 1.0],
                         "theta_hi": [5.483, 7.039, 4.04, 3.0], "atoms_coupled": [38, 46, 23, 10],
                         "networks_involved": [6, 5, 3, 2], "cv_r_isc_mask": [0.02, 0.032, 0.055, 0.05],
                         "cv_r_ci_low": [0.013, 0.026, 0.047, 0.04], "cv_r_ci_high": [0.027, 0.038, 0.063, 0.06],
                         "consistency_above_null": [0.01, 0.0, -0.004, 0.033], "n_params_m": [22.7, 22.7, 109.5, 268.1]},
                        index=pd.Index(["A", "A untrained", "B", "C"], name="model"))


def test_texts():
    s = summary_table()
    assert chapter.theta_text(s, "A") == "θ x 1e3 = 4.53 [3.46, 5.48]"
    assert chapter.model_text(s, "A") == ("A: θ x 1e3 = 4.53 [3.46, 5.48], 38 atoms coupled in 6 networks, "
                                          "r = 0.020 [0.013, 0.027]")
    d = pd.DataFrame({"difference x 1e3": [1.433], "ci_low x 1e3": [0.347], "ci_high x 1e3": [-0.2],
                      "q (BH)": [0.0049]}, index=["A - B"])
    assert chapter.difference_text(d, "A - B") == "A - B: +1.43 [+0.35, -0.20], q = 0.005"


def test_say_wraps_to_the_page(capsys):
    chapter.say("word " * 40, 3)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) > 1 and all(len(line) <= 86 for line in lines)
    assert lines[0].startswith("   word") and lines[1].startswith("       word")


def test_size_rho():
    assert chapter.size_rho([1, 2, 3], [0.1, 0.3, 0.2]) == pytest.approx(0.5)
    assert np.isnan(chapter.size_rho([1, 2, 3], [0.2, 0.2, 0.2]))  # constant
    assert np.isnan(chapter.size_rho([1, 2, 3], [0.2, np.nan, 0.1]))  # not finite


def test_sentences_on_a_small_table(headlines_dir):
    names = ["A", "A untrained", "B", "C"]
    cmp = SimpleNamespace(names=names, base=SimpleNamespace(alpha=0.05))
    diff_table = pd.DataFrame({"difference x 1e3": [-0.9, 1.4, 1.2, -0.2], "ci_low x 1e3": [-2.0, 0.3, 0.1, -1.1],
                               "ci_high x 1e3": [0.2, 2.5, 2.0, 0.6], "q (BH)": [0.38, 0.005, 0.005, 0.8]},
                              index=["A - A untrained", "A - B", "A - C", "B - C"])
    hl = recorder()
    hl.add_table("difference", diff_table, digits=2)
    out = chapter.sentences(cmp, SimpleNamespace(summary=summary_table()), diff_table, hl)
    assert list(out) == ["cmp_signal_verdict", "cmp_signal_trained", "cmp_signal_controls", "cmp_signal_pairs",
                         "cmp_counts", "cmp_networks", "cmp_encoding", "cmp_causal", "cmp_consistency", "cmp_size"]
    assert out["cmp_signal_verdict"].startswith("The network signal does not separate any trained model")
    assert out["cmp_signal_controls"] == "A untrained θ x 1e3 = 5.43 [3.40, 7.04]"
    assert out["cmp_signal_pairs"] == "A - A untrained: -0.90 [-2.00, +0.20], q = 0.380"
    assert out["cmp_counts"] == "A 38; A untrained 46; B 23; C 10"
    assert out["cmp_encoding"] == ("Held-out encoding in the ISC mask is highest for B (r = 0.055) and lowest for A "
                                   "(r = 0.020); the best trained model is B (0.055), the best control A untrained "
                                   "(0.032).")
    assert out["cmp_causal"] == ""
    assert out["cmp_consistency"].startswith("over the trained models, the atoms coupled to one network are "
                                             "-0.004 to +0.033")
    assert out["cmp_size"] == ("the Spearman correlation of held-out r with parameters over the 3 trained models "
                               "(one point per model) is +0.50 (A 23 M, B 110 M, C 268 M)")


# --------------------------------------------------------------------------- layer depth
def test_depth_distributions():
    # 2 atoms over 4 ANs in layers 0, 0, 1, 3: atom 0 uses ANs 0 and 3, atom 1 uses AN 2
    A = sparse.csr_matrix(np.array([[1.0, 0, 0, 2.0], [0, 0, 0.5, 0]]))
    layers = np.array([0, 0, 1, 3])
    per_atom = chapter.atom_depth(SimpleNamespace(A=A), layers)
    assert per_atom.shape == (2, 6)
    np.testing.assert_allclose(per_atom.sum(1), 1.0)
    assert per_atom[0, 0] == 0.5 and per_atom[0, -1] == 0.5  # depth 0 and depth 1
    table = pd.DataFrame({"atom": [0, 1, 1], "network": ["N1", "N1", "N2"], "coupled": [True, False, True]})
    M = chapter.network_depth(SimpleNamespace(A=A), layers, table, ["N1", "N2", "N3"])
    np.testing.assert_allclose(M[0], per_atom[0])
    np.testing.assert_allclose(M[1], per_atom[1])
    assert not M[2].any()  # no atom coupled to N3
