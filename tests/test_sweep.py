"""Sweeps on Dask: a small grid on a two-worker LocalCluster survives a worker killed mid-task,
every artifact is complete and equals a sequential run's; bad specs are refused before any
work; a failing point is reported while the others complete."""

import json
import os
import signal
import threading
import time

import pytest
import yaml

from llmbrain_utils import cli, stages, sweep
from llmbrain_utils.errors import InputError, ParameterError
from llmbrain_utils.store import package_versions, read_artifact

TINY = {"n_subjects": 2, "resolution_mm": 12, "n_perm": 10, "fbn_perm": 100, "dict_iter": 30}
GRID = {"k": [3, 4], "lam": [0.1, 0.2]}


def _spec(tmp_path, name, data):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _without_times(obj):
    """A JSON record without its wall times (keys ``timings`` and ``*_s``)."""
    if isinstance(obj, dict):
        return {k: _without_times(v) for k, v in obj.items() if k != "timings" and not k.endswith("_s")}
    if isinstance(obj, list):
        return [_without_times(v) for v in obj]
    return obj


@pytest.fixture(scope="module")
def client():
    from distributed import Client

    cluster = sweep.local_cluster(2)
    c = Client(cluster)
    yield c
    c.close()
    cluster.close()


def _kill_first_extraction_worker(client, record, stop):
    """SIGKILL the worker process that runs the extraction task, 1.5 s after it got it."""
    while not stop.is_set():
        for addr, keys in client.processing().items():
            if any(str(k).startswith("extraction-") for k in keys):
                time.sleep(1.5)
                pid = client.run(os.getpid).get(addr)
                if pid is not None:
                    os.kill(pid, signal.SIGKILL)
                    record.update(pid=pid, addr=addr, at=time.time())
                    return
        time.sleep(0.1)


@pytest.fixture(scope="module")
def killed_sweep(client, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweep")
    spec = _spec(tmp, "grid", {"common": TINY, "grid": GRID})
    record, stop = {}, threading.Event()
    killer = threading.Thread(target=_kill_first_extraction_worker, args=(client, record, stop), daemon=True)
    killer.start()
    try:
        table, path = sweep.run_sweep(spec, client=client, runs_dir=str(tmp / "runs"),
                                      out=tmp / "out" / "table.tsv", progress=False)
    finally:
        stop.set()
        killer.join(10)
    return {"tmp": tmp, "table": table, "path": path, "killed": record, "spec": spec}


def test_sweep_survives_a_killed_worker_and_matches_a_sequential_run(killed_sweep):
    import pandas as pd

    table, tmp = killed_sweep["table"], killed_sweep["tmp"]
    assert killed_sweep["killed"], "no worker was killed: the extraction task was never seen"
    assert list(table["status"]) == ["done"] * 4, table[["status", "error"]]
    assert sorted(zip(table.k, table.lam)) == [(3, 0.1), (3, 0.2), (4, 0.1), (4, 0.2)]
    # one extraction and one fMRI task shared by the four points; one dictionary per point
    assert table["extraction_key"].nunique() == 1 and table["fmri_key"].nunique() == 1
    assert table["dictionary_key"].nunique() == 4 and table["fbn_key"].nunique() == 4
    assert table["dictionary_r2"].between(0, 1).all() and table["n_ans"].eq(2304).all()
    # the table on disk is the returned one, and no temporary file is left beside it
    on_disk = pd.read_csv(killed_sweep["path"], sep="\t")
    assert list(on_disk["dictionary_key"]) == list(table["dictionary_key"])
    assert [p.name for p in killed_sweep["path"].parent.iterdir()] == ["table.tsv"]

    # a sequential run of the same points, in-process, in another store
    built_by = read_artifact(tmp / "runs" / "stimulus" / table["stimulus_key"][0]).meta["versions"]
    assert built_by["llmbrain_utils"] == package_versions(["llmbrain_utils"])["llmbrain_utils"], \
        "the package's result-deciding sources changed while this test ran"
    seq_root = tmp / "sequential"
    for k, lam in zip(table.k, table.lam):
        stages.fbn_mapping({**TINY, "k": int(k), "lam": float(lam), "runs_dir": str(seq_root)})
    for _, row in table.iterrows():
        for stage in sweep.chain("fbn"):
            key = row[f"{stage}_key"]
            a = read_artifact(tmp / "runs" / stage / key, verify_hashes=True)  # complete, intact
            # the stage table says what the stage reads and writes: its artifact agrees
            declared = stages.CHAIN[stage]
            assert {k.split(":")[0] for k in a.meta["inputs"]} == {u for u, _ in declared.upstream}, stage
            assert set(declared.files) <= set(a.meta["files"]), (stage, set(declared.files) - set(a.meta["files"]))
            b = read_artifact(seq_root / stage / key, verify_hashes=True)
            assert set(a.meta["files"]) == set(b.meta["files"]), (stage, key)
            for name, rec in a.meta["files"].items():
                if rec["sha256"] == b.meta["files"][name]["sha256"]:
                    continue
                # only records of wall times may differ, and only in their times
                assert name.endswith(".json"), f"{stage}/{key}/{name} differs from the sequential run"
                assert (_without_times(json.loads(a.file(name).read_text()))
                        == _without_times(json.loads(b.file(name).read_text()))), (stage, name)


def test_killed_worker_left_no_partial_artifact(killed_sweep):
    """The worker running the extraction died mid-task; a live worker rebuilt it, and the dead
    one's unfinished build never looks like an artifact."""
    with pytest.raises(ProcessLookupError):
        os.kill(killed_sweep["killed"]["pid"], 0)
    runs = killed_sweep["tmp"] / "runs"
    key = killed_sweep["table"]["extraction_key"].iloc[0]
    assert killed_sweep["table"]["extraction_status"].eq("built").all()
    read_artifact(runs / "extraction" / key, verify_hashes=True)
    complete = [p.name for p in (runs / "extraction").iterdir() if (p / "artifact.json").is_file()]
    assert complete == [key]
    assert all(p.name.startswith((".tmp-", ".")) for p in (runs / "extraction").iterdir() if p.name != key)


def test_failures_are_reported_and_other_points_complete(killed_sweep, client):
    """A point whose fMRI stage fails at run time (the real data set has no story of that name)
    is reported with its error and its encoding and mapping as skipped; the other point
    completes (from the store: every one of its artifacts is reported cached)."""
    tmp = killed_sweep["tmp"]
    spec = _spec(tmp, "failing", {"common": {**TINY, "k": 3, "lam": 0.1},
                                  "grid": {"fmri_source": ["synthetic", "narratives"]}})
    table, path = sweep.run_sweep(spec, client=client, runs_dir=str(tmp / "runs"),
                                  out=tmp / "out" / "failing.tsv", progress=False)
    ok, bad = (table[table.fmri_source == v].iloc[0] for v in ("synthetic", "narratives"))
    assert ok.status == "cached" and ok.fbn_status == "cached" and ok.error == ""
    assert ok.n_couplings == killed_sweep["table"].set_index(["k", "lam"]).loc[(3, 0.1), "n_couplings"]
    assert bad.status == "failed" and bad.fmri_status == "failed"
    assert bad.error.startswith("fmri: ParameterError") and "harrowpoint" in bad.error
    assert bad.encoding_status == "skipped" and bad.fbn_status == "skipped"
    assert bad.dictionary_status == "cached" and bad.encoding_key == "" and bad.fbn_key == ""
    assert path.is_file()


@pytest.mark.parametrize("data, match", [
    ({"grid": {"kk": [1, 2]}}, "grid.kk"),
    ({"grid": {"k": 16}}, "not a non-empty list"),
    ({"grid": {"k": []}}, "not a non-empty list"),
    ({"grid": {"k": [16, 16]}}, "repeated value"),
    ({"grid": {"runs_dir": ["a", "b"]}}, "cannot be swept"),
    ({"common": {"lamda": 0.1}, "grid": {"k": [4]}}, "common.lamda"),
    ({"dictionary": {"bogus": 1}, "grid": {"k": [4]}}, "dictionary.bogus"),
    ({"grid": {"k": [4, 0]}}, "out of range"),
    ({"grid": {"lam": [0.1, "x"]}}, "parameter 'lam'"),
    ({"common": {"k": 4}}, "no grid"),
    ({"grid": {"k": [4]}, "until": "plotting"}, "not a stage"),
    ({"grid": {"k": [4]}, "colour": 1}, "unknown key"),
    ({"grid": {"model": ["no-such-model-anywhere"]}}, "no-such-model-anywhere"),
    ({"grid": {"atlas": ["Seitzman2018", "NoSuchAtlas"]}}, "unknown atlas"),
    ({"grid": {"k": [4]}, "points": [{"name": "a"}]}, "both a grid and points"),
    ({"points": {"name": "a"}}, "not a non-empty list"),
    ({"points": [{"k": 4}]}, r"points\[0\]"),
    ({"points": [{"name": "a"}, {"name": "a", "k": 4}]}, r"points\[1\]\.name.*twice"),
    ({"points": [{"name": "a", "kk": 4}]}, r"points\[0\]\.kk"),
    ({"points": [{"name": "a", "runs_dir": "x"}]}, "cannot vary between points"),
    ({"points": [{"name": "a", "k": 0}]}, "out of range"),
])
def test_bad_spec_is_refused_before_any_work(tmp_path, data, match):
    spec = _spec(tmp_path, "bad", data)
    runs = tmp_path / "runs"
    with pytest.raises(InputError, match=match):
        sweep.run_sweep(spec, runs_dir=str(runs), out=tmp_path / "t.tsv", progress=False)
    assert not runs.exists() and not (tmp_path / "t.tsv").exists()


def test_unknown_grid_parameter_is_a_parameter_error_and_cli_exits_2(tmp_path, capsys):
    spec = _spec(tmp_path, "bad", {"grid": {"k": [4], "n_subject": [2, 3]}})
    with pytest.raises(ParameterError, match="n_subject"):
        sweep.load_spec(spec)
    assert cli.main(["sweep", str(spec), "--runs-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "grid.n_subject" in err and "unknown parameter" in err
    assert cli.main(["sweep", str(tmp_path / "missing.yaml")]) == 2
    assert "sweep spec not found" in capsys.readouterr().err


def test_base_parameter_file_and_sections_merge_and_share_tasks(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump({"common": {"k": 8, "n_subjects": 3}, "dictionary": {"seed": 5}}))
    spec = sweep.load_spec(_spec(tmp_path, "s", {"params": "base.yaml", "common": {"n_subjects": 2},
                                                 "grid": {"lam": [0.1, 0.2]}, "until": "dictionary"}),
                           runs_dir=str(tmp_path / "runs"))
    pl = sweep.plan(spec)
    assert sweep.chain("dictionary") == ["stimulus", "extraction", "dictionary"]
    dic = [pl.nodes[ids["dictionary"]] for ids in pl.point_nodes]
    assert [n.cfg["lam"] for n in dic] == [0.1, 0.2]
    assert all(n.cfg["k"] == 8 and n.cfg["seed"] == 5 and n.cfg["n_subjects"] == 2 for n in dic)
    # the dictionary section's seed reaches its own upstream calls (as stages.dictionary does),
    # so the points share the extraction with seed 5; the point's own extraction has seed 0
    ext = {pl.nodes[d].cfg["seed"] for n in dic for d in n.deps}
    assert ext == {5}
    assert {pl.nodes[ids["extraction"]].cfg["seed"] for ids in pl.point_nodes} == {0}
    assert sum(n.stage == "extraction" for n in pl.nodes.values()) == 2
    assert sum(n.stage == "dictionary" for n in pl.nodes.values()) == 2


def test_example_spec_plans_four_points_sharing_upstream_tasks(tmp_path):
    spec = sweep.load_spec(sweep.config.REPO_RUNS.parent / "params" / "sweep_example.yaml",
                           runs_dir=str(tmp_path / "runs"))
    pl = sweep.plan(spec)
    assert [(p["k"], p["lam"]) for p in pl.points] == [(16, 0.1), (16, 0.2), (32, 0.1), (32, 0.2)]
    count = {s: sum(n.stage == s for n in pl.nodes.values()) for s in sweep.STAGES}
    assert count == {"stimulus": 1, "extraction": 1, "dictionary": 4, "fmri": 1, "encoding": 4, "fbn": 4,
                     "coupling_bootstrap": 0}
    assert not (tmp_path / "runs").exists()


def test_named_points_run_to_the_coupling_bootstrap(killed_sweep, client):
    """Named points (the cross-model chapter's variants) up to the coupling bootstrap: one row
    per name, the bootstrap's artifacts and intervals in the table, its full-sample decisions
    those of the mapping stage; the grid point already run is reused from the store."""
    tmp = killed_sweep["tmp"]
    spec = _spec(tmp, "named", {"common": {**TINY, "lam": 0.1, "n_boot": 4}, "until": "coupling_bootstrap",
                                "points": [{"name": "k3", "k": 3}, {"name": "k3 seed 1", "k": 3, "seed": 1}]})
    table, path = sweep.run_sweep(spec, client=client, runs_dir=str(tmp / "runs"),
                                  out=tmp / "out" / "named.tsv", progress=False)
    assert list(table["name"]) == ["k3", "k3 seed 1"] and table.status.eq("done").all(), table
    first = table.iloc[0]
    assert first.fbn_status == "cached" and first.coupling_bootstrap_status == "built"
    assert first.fbn_key == killed_sweep["table"].set_index(["k", "lam"]).loc[(3, 0.1), "fbn_key"]
    for _, row in table.iterrows():
        boot = stages.read_bootstrap(read_artifact(tmp / "runs" / "coupling_bootstrap" / row.coupling_bootstrap_key))
        mapped = stages.read_couplings(read_artifact(tmp / "runs" / "fbn" / row.fbn_key))
        assert boot.observed_table.coupled.tolist() == mapped.coupled.tolist()
        assert boot.draws["atoms_coupled"].shape == (4,)
        lo, hi = row.atoms_coupled_ci_low, row.atoms_coupled_ci_high
        assert (lo, hi) == boot.interval("atoms_coupled")[1:] and lo <= hi
        assert row.coupling_bootstrap_seconds >= 0 and row.n_atoms_coupled == mapped[mapped.coupled].atom.nunique()
