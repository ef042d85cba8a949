"""The performance page is the rendering of the committed benchmark report (no benchmark runs)."""

import copy
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REPORT = REPO / "benchmarks" / "report.json"
PAGE = REPO / "book" / "performance.md"


@pytest.fixture(scope="module")
def renderer(benchmark_script):
    return benchmark_script("render_performance")


@pytest.fixture(scope="module")
def report():
    return json.loads(REPORT.read_text())


def test_committed_page_is_the_rendered_report(renderer, report):
    assert renderer.render(report) == PAGE.read_text(), (
        "book/performance.md differs from the rendering of benchmarks/report.json: run "
        "`.venv/bin/python benchmarks/render_performance.py benchmarks/report.json`")


def test_report_has_the_required_fields(report):
    assert report["schema"] == 1 and report["mode"] == "full" and report["repeats"] >= 3
    m = report["machine"]
    assert m["cpu_model"] and m["cores"] >= 1 and m["memory_gib"] > 0 and "gpu" in m
    for pkg in ("numpy", "torch", "spams-bin", "nilearn", "llmbrain_utils"):
        assert report["versions"][pkg]
    gemm = report["peak"]["gemm"]
    assert {"float32_1thread", f"float32_{m['cores']}thread"} <= set(gemm)
    assert all(g["peak_gflops"] > 0 for g in gemm.values()) and report["peak"]["copy"]["best_gbs"] > 0
    # extraction vs the plain forward pass, same run, median of the repeats
    for e in report["extraction"]:
        assert len(e["overhead_ratio"]["values"]) == e["repeats"] >= 3
        assert e["overhead_ratio"]["min"] <= e["overhead_ratio"]["median"] <= e["overhead_ratio"]["max"]
        assert e["flops"]["total"] > 0 and 0 < e["plain_gflops"]
    # torch solver vs SPAMS, objectives evaluated alike
    for d in report["dictionary"]:
        s = d["solvers"]
        assert s["spams"]["time_vs_spams"]["median"] == pytest.approx(1.0)
        assert s["torch"]["objective_vs_spams"]["median"] == pytest.approx(1.0, abs=0.05)
        assert s["torch"]["gflops"] > 0
    rows = report["encoding"]["rows"]
    for name in ("batched OLS (fit_ols)", "per-voxel statsmodels OLS", "nilearn OLSModel (+ t per atom)"):
        assert len(rows[name]["ratio_to_batched"]["values"]) == report["repeats"]
    e2e = report["end_to_end"]
    assert e2e is None or all(s["build_s"] >= 0 for s in e2e["stages"].values())


def test_a_report_without_a_required_field_is_refused(renderer, report):
    bad = copy.deepcopy(report)
    del bad["machine"]["gpu"]
    with pytest.raises(ValueError, match="gpu"):
        renderer.render(bad)


def test_the_page_follows_the_report(renderer, report):
    """A changed number changes the page (the page is not a fixed text)."""
    other = copy.deepcopy(report)
    other["machine"]["gpu"] = "NVIDIA H100 80GB HBM3"
    other["extraction"][0]["overhead_ratio"]["median"] = 9.87
    text = renderer.render(other)
    assert "NVIDIA H100 80GB HBM3" in text and "9.87" in text
    assert ("No GPU was available" in renderer.render(report)) == (report["machine"]["gpu"] is None)
