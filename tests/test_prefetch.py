"""The process that builds ahead (llmbrain_utils.prefetch): what it builds, in which order and
with which parameters (the chapters' own), when a run starts it, and that it stops with the run.
That the chapters read exactly what it built is checked on the default run (test_book)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from llmbrain_utils import config, pipeline, prefetch, sweep
from llmbrain_utils.chapters import cross_model


@pytest.fixture(scope="module")
def params():
    return config.load_params(None)


def test_namespace_is_the_notebooks_parameters(params):
    ns = pipeline.notebook_namespace("cross_model", params)
    declared = pipeline.declared_parameters(pipeline.NOTEBOOKS / pipeline.STAGES["cross_model"])
    assert set(declared) <= set(ns)
    given = pipeline.stage_parameters("cross_model", params)
    assert given and all(ns[k] == v for k, v in given.items())
    # a parameter of the run set wins over the cell's default, as papermill's injected cell does
    mine = {**params, "fbn": {**params.get("fbn", {}), "fbn_perm": 123}}
    assert config.collect(pipeline.notebook_namespace("fbn", mine)).fbn_perm == 123


def test_work_items_order_and_coverage(params):
    spaces = {c: pipeline.notebook_namespace(c, params) for c in ("fbn", "cross_model")}
    items = prefetch.work_items(spaces)
    labels = [i.label for i in items]
    assert labels[0] == "fbn_recovery"
    ext = [i for i in items if i.fn.__name__ == "extraction"]
    causal = [i.args[0].context == "causal" for i in ext]
    assert any(causal) and causal == sorted(causal, reverse=True)  # the per-word reads first
    ns = pipeline.notebook_namespace("cross_model", params)
    names = [v["name"] for v in ns["variants"]]
    assert [l.removeprefix("dictionary_chance ") for l in labels
            if l.startswith("dictionary_chance ")] == names
    assert [l.removeprefix("explorer_figures ") for l in labels
            if l.startswith("explorer_figures ")] == [n for n in cross_model.EXPLORED if n in names]
    # every task of the chapter's sweep, once; the chance levels and figures with its variants' cfg
    spec = sweep.parse_spec({"common": dict(config.collect(ns)), "points": ns["variants"],
                             "until": "fbn"}, source="t")
    nodes = list(sweep.plan(spec).nodes.values())
    chain = [i for i in items if i.label != "fbn_recovery"
             and not i.label.startswith(("dictionary_chance", "explorer_figures"))]
    assert len(chain) == len(nodes)
    for n in nodes:
        assert sum(i.fn is sweep._stage_function(n.stage) and i.args == (n.cfg,) for i in chain) == 1
    assert [i.label for i in prefetch.work_items({"fbn": spaces["fbn"]})] == ["fbn_recovery"]
    assert prefetch.work_items({}) == []


def test_wanted(monkeypatch):
    monkeypatch.delenv(prefetch.ENV, raising=False)
    monkeypatch.delenv("LLMBRAIN_SCHEDULER", raising=False)
    monkeypatch.setattr(prefetch.os, "cpu_count", lambda: 2)
    assert prefetch.wanted(None) and not prefetch.wanted(False)
    monkeypatch.setattr(prefetch.os, "cpu_count", lambda: 1)
    assert not prefetch.wanted(None) and prefetch.wanted(True)
    monkeypatch.setattr(prefetch.os, "cpu_count", lambda: 4)
    monkeypatch.setenv("LLMBRAIN_SCHEDULER", "tcp://127.0.0.1:1")
    assert not prefetch.wanted(None)  # the stages' blocks use that cluster
    monkeypatch.delenv("LLMBRAIN_SCHEDULER")
    monkeypatch.setenv(prefetch.ENV, "0")
    assert not prefetch.wanted(None)


def test_a_failing_item_is_logged_and_the_next_goes_on():
    class Art:
        stage, key = "s", "k1"

    def boom(x):
        raise ValueError(f"bad {x}\nsecond line")

    recs = prefetch.run_items([prefetch.Item("a", boom, (1,)), prefetch.Item("b", lambda: Art(), ())])
    assert recs[0]["status"] == "failed" and recs[0]["error"] == "ValueError: bad 1 second line"
    assert recs[1] == {"label": "b", "status": "done", "stage": "s", "key": "k1",
                       "seconds": recs[1]["seconds"]}


def test_bad_parameters_leave_the_process_idle(tmp_path):
    log = tmp_path / "prefetch.log"
    log.write_text("an older run's log\n")
    spaces = {"fbn": {"k": -3}}  # the run refuses it itself, with the error the user sees
    with prefetch.Ahead(spaces, log) as ahead:
        assert ahead.proc.wait(timeout=120) == 0
    assert "nothing to do" in log.read_text() and "older" not in log.read_text()
    assert prefetch.read_log(log) == []


def test_parameters_it_cannot_pass_on_leave_it_off(tmp_path):
    import datetime

    ahead = prefetch.Ahead({"fbn": {"story": datetime.date(2024, 1, 1)}}, tmp_path / "p.log")
    with ahead:
        assert ahead.proc is None  # the run goes on without it


def test_the_run_ending_stops_it(tmp_path):
    log = tmp_path / "prefetch.log"
    ahead = prefetch.Ahead({"cross_model": {}}, log)
    ahead.proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    ahead.__exit__(None, None, None)
    assert ahead.proc.returncode is not None
    assert "stopped" in log.read_text()
    nothing = prefetch.Ahead({"stimulus": {}, "encoding": {}}, tmp_path / "none.log")
    with nothing:
        assert nothing.proc is None  # no chapter it serves
