"""benchmarks/kernels.py at toy size (--quick): the form of its JSON, its necessary-work counts
against a hand count, the committed result's form, and its table on the performance page."""

import json
import math
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "benchmarks" / "kernels.json"
ENTRY = {"call", "n_draws", "n_draws_timed", "extrapolated", "times_s", "best_s", "time_s",
         "flops_necessary_timed", "flops_necessary", "flops_parts", "bound_kind", "bound_s",
         "bound_ratio", "gflops_achieved"}
BLOCK = {"created", "T", "k", "V", "S", "folds", "reps", "gemm_gflops_f32", "gemm_gflops_f64",
         "read_gbs", "copy_gbs", "load_average_start", "load_average_end", "kernels"}


@pytest.fixture(scope="module")
def kb(benchmark_script):
    return benchmark_script("kernels")


def _check_block(kb, blk):
    assert BLOCK <= set(blk) and set(blk["kernels"]) == set(kb.KERNELS)
    assert blk["gemm_gflops_f32"] > 0 and blk["gemm_gflops_f64"] > 0 and blk["read_gbs"] > 0
    for name, e in blk["kernels"].items():
        assert ENTRY <= set(e), name
        assert len(e["times_s"]) == blk["reps"] and e["best_s"] == min(e["times_s"]) > 0
        assert e["flops_necessary"] > 0 and sum(e["flops_parts"].values()) == pytest.approx(
            e["flops_necessary"])
        assert e["bound_s"] > 0 and e["bound_ratio"] == pytest.approx(e["time_s"] / e["bound_s"])
        assert e["bound_kind"] in ("flops_f32", "flops_f64", "bytes_read")
        if e["extrapolated"]:
            assert e["n_draws_timed"] < e["n_draws"] and e["time_s"] > e["best_s"]
            # linear in the draws at the measured ratio: time / bound is that of the timed draws
            assert e["time_s"] / e["flops_necessary"] == pytest.approx(
                e["best_s"] / e["flops_necessary_timed"])
        else:
            assert e["time_s"] == e["best_s"]
    assert {"bytes_necessary", "bound_bytes_s"} <= set(blk["kernels"]["isc_loo"])
    assert blk["kernels"]["fit_ols"]["bound_kind"] == "flops_f64"
    r = blk["kernels"]["ridge_null_r"]
    assert r["flops_necessary_fft"] < r["flops_necessary"] and r["bound_ratio_fft"] > r["bound_ratio"]


def test_quick_run(kb, tmp_path):
    before = COMMITTED.stat().st_mtime_ns if COMMITTED.exists() else None
    out = tmp_path / "k.json"
    res = kb.main(["--quick", "--out", str(out)])
    assert json.loads(out.read_text()) == res
    assert res["schema"] == kb.SCHEMA and res["threads"] == 1 and set(res["sizes"]) == {"quick"}
    assert set(res["method"]) == set(kb.KERNELS)
    blk = res["sizes"]["quick"]
    _check_block(kb, blk)
    q = kb.SIZES["quick"]
    assert (blk["T"], blk["k"], blk["V"], blk["S"]) == (q["T"], q["k"], q["V"], q["S"])
    assert blk["kernels"]["permutation_pvalues"]["extrapolated"]      # 10 of 20 draws timed
    assert blk["kernels"]["permutation_pvalues"]["flops_necessary"] == \
        kb.work_permutation(q["T"], q["k"], q["V"], q["n_perm"])["flops"]
    kb.main(["--quick"])                                  # --quick alone writes nothing
    assert (COMMITTED.stat().st_mtime_ns if COMMITTED.exists() else None) == before


def test_work_counts_match_a_hand_count(kb):
    L = math.log2(10)
    # permutation_pvalues, T=10, k=2, V=3, P=4: 5 products 2kTV, 5 x 2kV + PV, 4TV
    w = kb.work_permutation(10, 2, 3, 4)
    assert w["parts"] == {"products": 600, "statistics": 72, "centring": 120} and w["flops"] == 792
    # ridge_null_r, folds (6 train, 2 test) and (5, 3)
    w = kb.work_ridge_null(10, 2, 3, 4, [(6, 2), (5, 3)])
    assert w["parts"] == {"surrogate_projections": 960, "surrogate_test_rows": 1200,
                          "observed": 162, "predictions": 300, "scoring": 585}
    assert w["flops"] == 3207
    assert w["flops_fft"] == pytest.approx(2127 + 375 * L)
    assert w["parts_fft"]["rfft_Y"] == pytest.approx(75 * L)
    assert w["parts_fft"]["surrogates_R_Y"] == pytest.approx(4 * 3 * (36 + 25 * L))
    # isc_loo, S=3, T=10, V=4: 9 STV FLOPs, 4 STV bytes
    w = kb.work_isc_loo(3, 10, 4)
    assert (w["flops"], w["bytes"]) == (1080, 480)
    # isc_null, P=5: 3 pairs, F=6
    w = kb.work_isc_null(3, 10, 4, 5)
    assert w["parts"]["cross_spectra"] == 432 and w["parts"]["surrogates"] == 680
    assert w["flops"] == pytest.approx(1080 + 432 + 680 + 600 * L)
    assert (w["bytes"], w["bytes_gathers"]) == (480, 240)
    # fit_ols, T=10, k=2, V=3 (p = 3 with the intercept)
    w = kb.work_ols(10, 2, 3)
    assert w["parts"] == {"projections": 180, "triangular": 27, "residual_sums": 108,
                          "t_values": 18} and w["flops"] == 333


@pytest.mark.skipif(not COMMITTED.exists(), reason="benchmarks/kernels.json not written yet")
def test_committed_result(kb):
    res = json.loads(COMMITTED.read_text())
    assert res["schema"] == kb.SCHEMA and set(res["sizes"]) <= {"default", "real"}
    for size, blk in res["sizes"].items():
        _check_block(kb, blk)
        cfg = kb.SIZES[size]
        assert (blk["T"], blk["k"], blk["V"], blk["S"]) == (cfg["T"], cfg["k"], cfg["V"], cfg["S"])
        assert blk["kernels"]["permutation_pvalues"]["n_draws"] == cfg["n_perm"]


def test_the_page_renders_the_kernels_table(benchmark_script, kb, tmp_path):
    renderer = benchmark_script("render_performance")
    report = json.loads((REPO / "benchmarks" / "report.json").read_text())
    res = kb.main(["--quick"])
    text = renderer.render(report, None, None, res)
    assert "## Other heavy kernels against their bounds (`benchmarks/kernels.py`)" in text
    rows = [ln for ln in text.splitlines() if ln.startswith("| `")]
    assert len(rows) == len(kb.KERNELS)
    e = res["sizes"]["quick"]["kernels"]["permutation_pvalues"]
    assert any(r.startswith("| `permutation_pvalues` | quick (V = 300) |") and "20 draws (timed: 10)"
               in r for r in rows)
    assert renderer._sig(e["bound_ratio"]) in rows[0]
    assert "Other heavy kernels" not in renderer.render(report, None, None)  # None: no section
