"""The paper-scale script (benchmarks/paper_scale.py) runs its whole chain at toy size on the
CPU: every stage reports its wall time and peak memory, the sizes agree with each other, and
the responses stay a memory-mapped file. (The twin keeps the data set's own exclusions: pieman
has none of sub-001's scans, so 3 subjects give 2.)"""

import json

import numpy as np
import pytest


def test_tiny_chain_on_the_cpu(benchmark_script, narratives, tmp_path):
    ps = benchmark_script("paper_scale")
    out = tmp_path / "report.json"
    res = ps.main(["--config", "tiny", "--story", "pieman", "--narratives-dir", str(narratives),
                   "--device", "cpu", "--k", "6", "--dict-iter", "20", "--subjects", "3",
                   "--resolution-mm", "12", "--n-perm", "10", "--fbn-perm", "100",
                   "--work", str(tmp_path / "work"), "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(res, default=str))
    assert list(res["stages"]) == ["stimulus", "model", "forward", "extraction", "dictionary", "fmri",
                                   "encoding", "mapping"]
    for name, rec in res["stages"].items():
        assert rec["wall_s"] > 0 and rec["peak_rss_gib"] >= rec["rss_start_gib"] > 0, name
        assert "peak_gpu_gib" not in rec  # CPU run
    s = res["sizes"]
    assert s["ans"] == 2 * 64 and s["layers"] == 2  # the tiny config: 2 layers x d_model 64
    assert s["words"] > 900 and s["trs"] > 200 and s["subjects"] >= 2 and s["voxels"] > 500
    assert s["tokens_read"] >= s["words"] and s["avoided_tokens_x_ans_gib"] > 0
    resp = np.load(tmp_path / "work" / "responses.npy", mmap_mode="r")
    assert resp.shape == (s["trs"], s["ans"])
    assert 0 <= res["stages"]["dictionary"]["r2_overall"] <= 1
    assert res["stages"]["mapping"]["atoms_coupled"] <= 6
    assert res["total_wall_s"] == pytest.approx(sum(r["wall_s"] for r in res["stages"].values()), abs=1e-2)


def test_unknown_config_is_refused(benchmark_script):
    ps = benchmark_script("paper_scale")
    with pytest.raises(SystemExit):
        ps.parse(["--config", "llama9"])
