"""The pure functions of chapter 6's module (``llmbrain_utils.chapters.fbn``) on small tables."""

from types import SimpleNamespace

import numpy as np
import pandas as pd

from llmbrain_utils.chapters import fbn as chapter


def _table():
    rows = [(a, n, s, c) for a in range(3) for n in ("A", "B", "C") for s in ("active", "deactive")
            for c in [(a, n, s) in {(0, "A", "active"), (1, "A", "active"), (1, "B", "deactive"),
                                    (2, "C", "active")}]]
    return pd.DataFrame(rows, columns=["atom", "network", "sign", "coupled"])


def test_coupling_counts_in_atlas_order_with_empty_networks():
    table = _table()
    counts = chapter.coupling_counts(table[table.coupled], ["C", "B", "A", "D"])
    assert list(counts.index) == ["C", "B", "A", "D"]
    assert list(counts.columns) == ["active", "deactive"]
    assert counts.loc["A"].tolist() == [2, 0]
    assert counts.loc["B"].tolist() == [0, 1]
    assert counts.loc["D"].tolist() == [0, 0]


def test_truth_check_counts_unplanted_couplings_and_tests():
    table = _table()
    coupled = table[table.coupled]
    assert chapter.truth_check(coupled, table, None) is None
    t = chapter.truth_check(coupled, table, {"plant": [{"network": "A"}, {"network": "D"}]})
    assert t["planted"] == {"A", "D"}
    assert (t["on_planted"], t["on_unplanted"]) == (2, 2)
    assert t["unplanted_tests"] == 12  # 3 atoms x networks B, C x 2 signs
    assert t["found"] == ["A"]


def test_min_subjects_needs_precision_and_recall():
    by_n = pd.DataFrame({"statistic": ["dice"] * 3 + ["r"] * 3, "n_subjects": [8, 12, 16] * 2,
                         "precision": [1.0, 0.95, 1.0, 0.8, 0.85, 0.7],
                         "recall": [0.8, 0.92, 1.0, 1.0, 1.0, 1.0]})
    enough = chapter.min_subjects(by_n)
    assert enough.get("dice") == 12
    assert enough.get("r") is None


def test_null_calibration_rows_fill_space_and_atlas_and_keep_the_nearest_wall():
    result = {"settings": {"atlas": "Seitzman2018"},
              "rows": [{"null": "spin", "space": None, "wall": None},
                       {"null": "spin", "space": "surface", "atlas": "TY7", "wall": "nearest"},
                       {"null": "spin", "space": "surface", "atlas": "TY7", "wall": "drop"}]}
    nc = chapter.null_calibration_rows(result)
    assert nc.space.tolist() == ["volume", "surface"]
    assert nc.atlas.tolist() == ["Seitzman2018", "TY7"]


def test_answer_states_couplings_truth_recovery_and_mismatch():
    table = _table()
    cfg = SimpleNamespace(atlas="X", fbn_null="surrogate", alpha=0.05)
    m = SimpleNamespace(cfg=cfg, table=table, coupled=table[table.coupled], group_t=np.zeros((3, 5)),
                        truth={"plant": [{"network": "A"}]})
    at0 = pd.DataFrame({"statistic": ["dice", "dice", "r"], "twin_seed": [1, 2, 1],
                        "precision": [1.0, 0.9, 0.5], "recall": [0.8, 1.0, 0.5]})
    mmr = pd.DataFrame({"space": ["volume", "volume", "surface"], "statistic": ["dice"] * 3,
                        "dice_mismatch": [0.61, 0.8, 0.6], "recall": [0.25, 0.9, 0.99]})
    text = chapter.answer(m, SimpleNamespace(at0=at0), mmr, verdicts={"dice_precision": "holds"})
    assert text.startswith("With the X atlas, the surrogate null and FDR 0.05, 4 of 18 tests are couplings: "
                           "3 of 3 atoms, in 3 networks.")
    assert " 2 of the couplings are on networks that carry planted signal, 2 on the others." in text
    assert "precision 0.95 and recall 0.90 (mean of 2 twins;" in text
    assert "for precision holds, for recall not measured" in text
    assert text.endswith("recall is at most 0.25 over the tests of the committed benchmark above.")
    m.truth = None
    assert "planted signal" not in chapter.answer(m, SimpleNamespace(at0=at0), mmr.iloc[1:], verdicts={})
