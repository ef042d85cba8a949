"""The spin null's calibration script (benchmarks/spin_calibration.py) at toy size: one share
per statistic and level, computed from every test of every noise map, with its interval."""

import json

import pytest


def test_toy_calibration_run(benchmark_script, tmp_path):
    cal = benchmark_script("spin_calibration")
    out = tmp_path / "cal.json"
    res = cal.main(["--maps", "70", "--resolution-mm", "12", "--n-perm", "200", "--n-boot", "50",
                    "--out", str(out)])
    assert json.loads(out.read_text()) == res
    n_tests = 70 * len(res["networks"]) * 2  # every map against every network and sign
    for stat in ("dice", "r"):
        s = res["statistics"][stat]
        assert s["n_tests"] == n_tests
        assert [r["level"] for r in s["levels"]] == list(cal.LEVELS)
        shares = [r["share"] for r in s["levels"]]
        assert shares == sorted(shares) and 0 <= shares[0] and shares[-1] <= 1
        for r in s["levels"]:
            assert r["ratio"] == pytest.approx(r["share"] / r["level"])
            assert r["ratio_ci"][0] <= r["ratio"] + 1e-12 and r["ratio"] <= r["ratio_ci"][1] + 1e-12
        # with no signal, at the 10% level the share is near 0.1 (70 independent maps)
        assert 0.03 < s["levels"][-1]["share"] < 0.25


def test_bad_arguments_exit(benchmark_script, capsys):
    cal = benchmark_script("spin_calibration")
    with pytest.raises(SystemExit):
        cal.main(["--maps", "0"])
    assert "--maps" in capsys.readouterr().err
