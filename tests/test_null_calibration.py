"""The calibration script of the mapping's nulls (benchmarks/null_calibration.py) at toy size,
and the committed result's form and verdict (the target of issue #18: every non-legacy ratio in
[0.8, 1.25])."""

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
    rows = res["rows"]
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


def test_bad_arguments_exit(benchmark_script, capsys):
    cal = benchmark_script("null_calibration")
    with pytest.raises(SystemExit):
        cal.main(["--maps", "0"])
    assert "--maps" in capsys.readouterr().err
