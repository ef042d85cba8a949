"""The performance page is the rendering of the committed benchmark report (no benchmark runs)."""

import copy
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REPORT = REPO / "benchmarks" / "report.json"
PAGE = REPO / "book" / "performance.md"
PAPER_SCALE = REPO / "benchmarks" / "paper_scale_cpu.json"
RIDGE = REPO / "benchmarks" / "ridge_cv.json"
KERNELS = REPO / "benchmarks" / "kernels.json"
REAL_SCALE = REPO / "benchmarks" / "real_scale.json"
DEFAULT_RUN = REPO / "benchmarks" / "default_run_ab.json"


@pytest.fixture(scope="module")
def renderer(benchmark_script):
    return benchmark_script("render_performance")


@pytest.fixture(scope="module")
def report():
    return json.loads(REPORT.read_text())


@pytest.fixture(scope="module")
def paper_scale():
    return json.loads(PAPER_SCALE.read_text()) if PAPER_SCALE.exists() else None


@pytest.fixture(scope="module")
def ridge():
    return json.loads(RIDGE.read_text())


def _optional(path: Path):
    return json.loads(path.read_text()) if path.exists() else None


def test_committed_page_is_the_rendered_report(renderer, report, paper_scale, ridge):
    rendered = renderer.render(report, paper_scale, ridge, _optional(KERNELS), _optional(REAL_SCALE),
                               _optional(DEFAULT_RUN))
    assert rendered == PAGE.read_text(), (
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


def test_the_paper_scale_table_lists_every_stage_of_every_model(renderer, report):
    """The CPU paper-scale summary (benchmarks/paper_scale.py --report) as a table, and one
    sentence per model with its extraction-to-forward ratio; a run without a plain pass says so."""
    ps = {"device": "cpu", "machine": {"cpu": "x86_64", "torch_threads": 2},
          "runs": [{"model": "llama3-8b", "stage": "forward", "wall_s": 800.0, "peak_rss_gib": 4.9,
                    "ratio_to_reference": 1.0, "layer_build_s": 60.0},
                   {"model": "llama3-8b", "stage": "extraction", "wall_s": 840.0, "peak_rss_gib": 6.1,
                    "ratio_to_reference": 1.05, "layer_build_s": 58.0},
                   {"model": "llama2-7b", "stage": "extraction", "wall_s": 700.0, "peak_rss_gib": 5.0,
                    "ratio_to_reference": None}],
          "models": {m: {"story": "slumlordreach", "n_params": 7.5e9, "until": u, "peak_rss_gib": 6.1,
                         "sizes": {"words": 5344, "trs": 1202, "ans": 131072, "tokens_read": 7513}}
                     for m, u in (("llama3-8b", "mapping"), ("llama2-7b", "dictionary"))}}
    text = renderer.render(report, ps)
    assert "## The paper's systems at their size, on this CPU" in text
    assert "| llama3-8b (7.50 B parameters, 131,072 ANs, 7,513 tokens) | forward | 800.0 | 4.90 | 1.000 | 60.0 |" in text
    assert "| llama3-8b | extraction | 840.0 | 6.10 | 1.050 | 58.0 |" in text
    assert "llama3-8b: extraction 1.050 x the plain forward pass (14.0 min)" in text
    assert "llama2-7b: extraction 11.7 min (no plain pass in this run)" in text
    assert "slumlordreach, 5,344 words, 1,202 TRs" in text
    assert "paper's systems" not in renderer.render(report)  # no summary, no section


def test_the_real_scale_report_has_the_issue_s_fields():
    """benchmarks/real_scale.json, when committed, is a run at the real size with the fields the
    page and the issue name (a toy-size file must not pass for it)."""
    rs = _optional(REAL_SCALE)
    if rs is None:
        pytest.skip("benchmarks/real_scale.json not committed")
    for name in ("subjects", "voxels", "trs", "wall_s", "peak_rss_gib", "workers", "bound_ratio"):
        assert name in rs, name
    assert rs["subjects"] >= 40 and rs["voxels"] >= 60_000 and rs["trs"] >= 300
    assert rs["parameters"]["asked"]["n_perm"] >= 1000
    assert rs["workers"] >= 1 and rs["wall_s"] > 0 and rs["peak_rss_gib"] > 0
    assert all(r > 0 for r in rs["bound_ratio"].values()) and "ridge_cv" in rs["bound_ratio"]
    assert [s["stage"] for s in rs["stages"]][-1] == "fbn_mapping"  # the whole chain ran
