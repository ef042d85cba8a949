"""The regression of the numbers that move with the CPU's BLAS kernel (llmbrain_utils.headlines).

nbval compares the notebooks' kernel-stable outputs exactly; the figures that move with the
kernel are recorded by the notebooks and compared here with the committed reference
(notebooks/headlines.json), within tolerances computed from the measured spread
(benchmarks/kernel_spread.json). A real change (another lambda, k or seed) must still fail.
"""


import numpy as np
import pytest

from llmbrain_utils import headlines as H
from llmbrain_utils.errors import InputError

REPO = H.REPO


def test_recorder_writes_and_reads_back(tmp_path):
    spread = {"_meta": {"n_seeds": 3, "n_kernels": 2},
              "nb": {"r2": {"values": {"Haswell/seed0": 0.65, "Sandybridge/seed0": 0.66, "Haswell/seed1": 0.64}}}}
    hl = H.Recorder("nb", {"runs_dir": str(tmp_path)}, spread=spread)
    assert hl.add("r2", np.float64(0.655)) == 0.655
    hl.add("count", np.int64(7), digits=0)
    hl.add("missing", float("nan"))
    run = H.read_run(tmp_path)
    assert run["nb"]["r2"]["value"] == 0.655 and run["nb"]["count"]["value"] == 7
    assert isinstance(run["nb"]["count"]["value"], int) and run["nb"]["missing"]["value"] is None
    assert hl.fmt("r2", digits=2) == "0.66 [0.64, 0.66]"
    assert hl.legend() == "[brackets: the range over 3 seeds x 2 BLAS kernels, benchmarks/kernel_spread.json]"
    assert hl.holds("r2", lambda v: v > 0.6) == "holds"
    assert hl.holds("r2", lambda v: v > 0.7) == "fails"
    assert hl.holds("r2", lambda v: v >= 0.65) == "not determined"
    assert "spread not measured" in hl.holds("count", lambda v: v > 3)


def test_other_parameters_get_no_default_spread(tmp_path):
    """The spread was measured on the default run: a run with other parameters (a mesh, k)
    prints its values without the default's brackets, and says why; the seed and where the
    run is stored do not count."""
    from llmbrain_utils import config

    spread = H.load_spread()
    nb, name = next((nb, n) for nb, figs in spread.items() if nb != "_meta" for n in figs)
    same = H.Recorder(nb, config.validate({"runs_dir": str(tmp_path), "seed": 2}))
    assert same.off_default == [] and same.spread(name) is not None
    other = H.Recorder(nb, config.validate({"runs_dir": str(tmp_path), "space": "fsaverage5", "k": 32}))
    assert "k" in other.off_default and "space" in other.off_default
    assert other.spread(name) is None
    value = next(iter(spread[nb][name]["values"].values()))
    other.add(name, value, digits=2)
    assert "[" not in other.fmt(name)
    assert other.legend().startswith("(no brackets: the spread over seeds and BLAS kernels was measured")
    assert max(map(len, other.legend().splitlines())) <= 88


def test_joint_verdicts_are_evaluated_within_each_run(tmp_path):
    spread = {"nb": {"a": {"values": {"H/0": 1.0, "H/1": 2.0, "S/0": 1.0}},
                     "b": {"values": {"H/0": 1.5, "H/1": 1.9, "S/0": 1.2}}}}
    hl = H.Recorder("nb", {"runs_dir": str(tmp_path)}, spread=spread)
    assert hl.holds_joint(["a", "b"], lambda a, b: a < b + 0.5, label="x") == "holds"
    assert hl.holds_joint(["a", "b"], lambda a, b: a < b, label="y") == "not determined"
    assert hl.holds_joint(["a", "b"], lambda a, b: a > b + 1) == "fails"
    assert hl.verdicts == {"x": "holds", "y": "not determined"}


def test_tolerance_rule():
    # twice the kernel spread, at least half the last printed digit; the seed spread never widens it
    assert H.tolerance(0.01, 0.5, 3) == pytest.approx(0.02)
    assert H.tolerance(0.0, 10.0, 0) == 0.5
    assert H.tolerance(None, None, 2) == pytest.approx(0.005)


def _reference(values, tol=0.01):
    return {"nb": {k: {"value": v, "digits": 2, "tolerance": tol} for k, v in values.items()}}


def _run(values):
    return {"nb": {k: {"value": v, "digits": 2} for k, v in values.items()}}


def test_compare_flags_what_moved_and_what_is_missing():
    ref = _reference({"a": 1.0, "b": 2.0, "c": None})
    assert H.compare(_run({"a": 1.005, "b": 1.99, "c": None}), ref) == []
    out = H.compare(_run({"a": 1.02, "c": 3.0, "d": 1.0}), ref)
    assert any(p.startswith("nb:a: 1.02 against the reference's 1.0") for p in out)
    assert any(p.startswith("nb:b: not recorded") for p in out)
    assert any(p.startswith("nb:c: 3.0 against") for p in out)
    assert any(p.startswith("nb:d: recorded but not") for p in out)
    assert H.compare({}, ref) == ["nb: no headline figures recorded"]


def test_write_reference_needs_a_measured_spread(tmp_path):
    run = _run({"a": 1.0})
    with pytest.raises(InputError, match="no measured spread"):
        H.write_reference(run, {"nb": {}}, tmp_path / "ref.json")
    path = H.write_reference(run, {"nb": {"a": {"kernel_spread": 0.1, "seed_spread": 1.0}}}, tmp_path / "ref.json")
    ref = H.load_reference(path)
    assert ref["nb"]["a"]["tolerance"] == pytest.approx(0.2)


def test_malformed_spread_file_is_named(tmp_path):
    bad = tmp_path / "spread.json"
    bad.write_text('{"figures": [{"nome": 1}]}')
    with pytest.raises(InputError, match="malformed spread file"):
        H.load_spread(bad)


def test_committed_reference_agrees_with_the_measured_spread():
    """Every figure of the reference has a measured spread, and its tolerance follows the rule."""
    ref = H.load_reference()
    spread = H.load_spread()
    assert set(spread["_meta"]["kernels"]) >= {"Haswell"} and spread["_meta"]["n_kernels"] >= 2
    assert spread["_meta"]["n_seeds"] >= 3
    n = 0
    for nb, figs in ref.items():
        for name, f in figs.items():
            s = spread[nb][name]
            assert f["tolerance"] == pytest.approx(H.tolerance(s["kernel_spread"], s["seed_spread"], f["digits"]))
            n += 1
    assert n > 50


# ------------------------------------------------------------------- the default run against it

@pytest.fixture(scope="module")
def default_run():
    from llmbrain_utils import pipeline

    pipeline.run()
    return H.read_run(run="default")  # the run's own figures, whatever else ran on the store


def test_default_run_reproduces_the_reference(default_run):
    problems = H.compare(default_run, H.load_reference())
    assert not problems, "headline figures moved beyond their measured spread:\n" + "\n".join(problems[:40])


@pytest.fixture(scope="module")
def base_cfg():
    from llmbrain_utils import config, pipeline

    p = pipeline.stage_parameters("encoding", pipeline.load_params(None))
    return config.validate({**config.defaults(), **p})


@pytest.mark.parametrize("change", [{"lam": 0.2}, {"k": 32}])
def test_a_changed_dictionary_fails_the_regression(default_run, base_cfg, change):
    from llmbrain_utils import stages

    cfg = {**base_cfg, **change}
    res = stages.read_dictionary(stages.dictionary(cfg), stages.extraction(cfg))
    figs = {"02_dictionary": {k: {"value": v, "digits": 3} for k, v in H.dictionary_figures(res).items()}}
    ref = {"02_dictionary": {k: v for k, v in H.load_reference()["02_dictionary"].items()
                             if k in figs["02_dictionary"]}}
    assert len(ref["02_dictionary"]) == len(figs["02_dictionary"])
    problems = H.compare(figs, ref)
    assert problems, f"{change}: the regression did not notice"
    # and the default parameters themselves pass the same check
    res0 = stages.read_dictionary(stages.dictionary(base_cfg), stages.extraction(base_cfg))
    figs0 = {"02_dictionary": {k: {"value": v, "digits": 3} for k, v in H.dictionary_figures(res0).items()}}
    assert H.compare(figs0, ref) == []


def test_a_changed_seed_fails_the_regression(default_run, base_cfg):
    """The seed changes the twin, whose figures no BLAS kernel moves: caught exactly."""
    from llmbrain_utils import stages

    ref = {"03_fmri_data": H.load_reference()["03_fmri_data"]}
    for seed, should_pass in ((base_cfg["seed"], True), (base_cfg["seed"] + 1, False)):
        art = stages.fmri_data({**base_cfg, "seed": seed})
        figs = {"03_fmri_data": {k: {"value": v, "digits": 4}
                                 for k, v in H.fmri_figures(art, base_cfg["alpha"]).items()}}
        assert (H.compare(figs, ref) == []) == should_pass, (seed, H.compare(figs, ref))


def test_the_tests_leave_the_blas_kernel_alone():
    """Nothing in the tests, the package, the Makefile or CI sets OPENBLAS_CORETYPE (some
    machines set it for correctness); only benchmarks/kernel_spread.py does, in its children."""
    import re

    sets = re.compile(r"OPENBLAS_CORETYPE['\"]?\]?\s*=(?!=)|setdefault\(['\"]OPENBLAS_CORETYPE|"
                      r"putenv\(['\"]OPENBLAS_CORETYPE|export\s+OPENBLAS_CORETYPE")
    for path in [REPO / "Makefile", REPO / ".ci" / "run", *sorted((REPO / "tests").glob("*.py")),
                 *sorted((REPO / "llmbrain_utils").glob("*.py"))]:
        if path.name == "test_headlines.py":
            continue
        assert not sets.search(path.read_text()), f"{path} sets OPENBLAS_CORETYPE"
    assert sets.search((REPO / "benchmarks" / "kernel_spread.py").read_text())  # the pattern works
