"""The calibration script of the mapping's nulls (benchmarks/null_calibration.py) at toy size,
and the committed result's form and verdict (the target of issue #18: every non-legacy ratio in
[0.8, 1.25]), for the volume and, merged from benchmarks/surface_calibration.py, the surface."""

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
KEYS = {"null", "space", "noise", "statistic", "alpha", "share_over_alpha", "ci",
        "fdr_false_couplings_per_map", "n_maps", "legacy"}


def test_toy_run(benchmark_script, tmp_path):
    cal = benchmark_script("null_calibration")
    out = tmp_path / "cal.json"
    res = cal.main(["--maps", "64", "--resolution-mm", "12", "--n-perm", "100", "--n-boot", "50",
                    "--noises", "uniform", "gm_shift", "--out", str(out)])
    assert json.loads(out.read_text()) == res
    rows = res["rows"]
    assert len(rows) == 2 * 2 * 2 * 2  # noises x nulls x statistics x alphas
    for r in rows:
        assert KEYS <= set(r)
        assert r["ci"][0] <= r["share_over_alpha"] + 1e-9 <= r["ci"][1] + 2e-9
        assert r["legacy"] == (r["null"] == "spin") and r["n_maps"] == 64
        assert 0 <= r["share_over_alpha"] <= 1 / r["alpha"]


def test_noise_models_follow_grey_matter(benchmark_script):
    import numpy as np

    from llmbrain_utils import fbn, fmri

    cal = benchmark_script("null_calibration")
    mask_img = fmri.brain_mask(12.0)
    mask = np.asarray(mask_img.dataobj) > 0
    gm = fbn.grey_matter(mask_img)
    for kind in cal.NOISES:
        x = cal.null_maps(kind, mask, gm, 32, np.random.default_rng(0))
        assert x.shape == (32, mask.sum()) and np.isfinite(x).all()
        ratio = x[:, gm > 0.7].std() / x[:, gm < 0.1].std()
        assert (0.8 < ratio < 1.25) if kind == "uniform" else ratio > 1.8


def test_committed_result_meets_the_target():
    res = json.loads((REPO / "benchmarks" / "null_calibration.json").read_text())
    rows = [r for r in res["rows"] if r["space"] == "volume"]
    assert {r["noise"] for r in rows} >= {"uniform", "gm_amplitude", "gm_shift"}
    assert {r["statistic"] for r in rows} == {"dice", "r"} and {r["alpha"] for r in rows} == {0.05, 0.01}
    assert any(r["legacy"] for r in rows) and all(KEYS <= set(r) for r in rows)
    lo, hi = res["settings"]["target"]
    # the three noise models; long_range (a fourth, added here) is reported, not required
    required = [r for r in rows if r["noise"] in ("uniform", "gm_amplitude", "gm_shift")]
    bad = [r for r in required if not r["legacy"] and not lo <= r["share_over_alpha"] <= hi]
    assert not bad, bad
    # and the legacy spin fails it on maps that follow grey matter: the reason for the new null
    assert any(r["legacy"] and r["share_over_alpha"] > hi for r in rows if r["noise"] == "gm_amplitude")


def test_committed_result_holds_both_spaces():
    """The surface spin's calibration (benchmarks/surface_calibration.json) is merged in: the
    same rows, with its settings under settings["surface"]; every non-legacy row of each space's
    default test is in the target: volume, the surrogate null on the issue's three noise models
    (long_range is reported); surface, the spin with the default medial-wall rule on all of its
    noise models. The other rule ("refill") is reported, and misses the target on long-range
    noise (the reason it is not the default)."""
    res = json.loads((REPO / "benchmarks" / "null_calibration.json").read_text())
    surface = json.loads((REPO / "benchmarks" / "surface_calibration.json").read_text())
    rows = res["rows"]
    assert {r["space"] for r in rows} == {"volume", "surface"}
    assert all(KEYS <= set(r) for r in rows)
    assert [r for r in rows if r["space"] == "surface"] == surface["rows"]
    assert res["settings"]["surface"] == {**surface["settings"], "seconds": surface["seconds"]}
    assert [r["space"] for r in rows] == sorted((r["space"] for r in rows), reverse=True)  # volume first
    lo, hi = res["settings"]["target"]
    assert res["settings"]["surface"]["target"] == [lo, hi]
    default_wall = res["settings"]["surface"]["default_wall"]
    required = {
        "volume": [r for r in rows if r["space"] == "volume" and not r["legacy"]
                   and r["noise"] in ("uniform", "gm_amplitude", "gm_shift")],
        "surface": [r for r in rows if r["space"] == "surface" and not r["legacy"]
                    and r["wall"] == default_wall]}
    for space, req in required.items():
        # noise models x (surface: atlases) x statistics x alphas
        assert len(req) == {"volume": 12, "surface": 24}[space], (space, len(req))
        assert {r["statistic"] for r in req} == {"dice", "r"} and {r["alpha"] for r in req} == {0.05, 0.01}
        bad = [r for r in req if not lo <= r["share_over_alpha"] <= hi]
        assert not bad, (space, bad)
    assert any(r["share_over_alpha"] > hi for r in rows
               if r["space"] == "surface" and r["wall"] != default_wall and r["noise"] == "long_range")


def test_merge_space_keeps_the_volume_rows(benchmark_script, tmp_path):
    cal = benchmark_script("null_calibration")
    path = tmp_path / "cal.json"
    vol = {"rows": [{"space": "volume", "noise": "uniform", "x": 1.0}], "settings": {"a": 1},
           "seconds": {"total": 2.0}}
    path.write_text(json.dumps(vol, indent=1) + "\n")
    first = {"rows": [{"space": "surface", "noise": "uniform", "x": 2.0}], "settings": {"b": 2},
             "seconds": {"total": 3.0}}
    cal.merge_space(path, first, "surface")
    second = {**first, "rows": [{"space": "surface", "noise": "long_range", "x": 4.0}]}
    merged = cal.merge_space(path, second, "surface")  # a rerun replaces the surface rows
    assert merged == json.loads(path.read_text())
    assert merged["rows"] == vol["rows"] + second["rows"]
    assert merged["settings"] == {"a": 1, "surface": {"b": 2, "seconds": {"total": 3.0}}}
    assert merged["seconds"] == vol["seconds"]
    with pytest.raises(ValueError, match="space"):
        cal.merge_space(path, {"rows": [{"space": "volume"}]}, "surface")
    with pytest.raises(ValueError, match="volume"):
        cal.merge_space(path, vol, "volume")


def test_bad_arguments_exit(benchmark_script, capsys):
    cal = benchmark_script("null_calibration")
    with pytest.raises(SystemExit):
        cal.main(["--maps", "0"])
    assert "--maps" in capsys.readouterr().err
