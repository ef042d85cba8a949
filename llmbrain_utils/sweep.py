"""Parameter sweeps as a Dask task graph: one chain of stage tasks per grid point.

A sweep spec is YAML::

    params: default.yaml        # optional base parameter set (relative to the spec's folder)
    common: {n_subjects: 4}     # optional, like a parameter file's sections
    dictionary: {dict_iter: 300}
    until: fbn                  # last stage of every point (default fbn)
    grid:                       # parameter -> list of values; the points are their product
      k: [16, 32]
      lam: [0.1, 0.2]

or, instead of ``grid``, named points (each its own parameter overrides; the cross-model
chapter's variants)::

    points:
      - {name: MiniLM, model: all-MiniLM-L6-v2}
      - {name: MiniLM untrained, model: all-MiniLM-L6-v2, untrained: true}

Every point runs the stages ``stimulus -> extraction -> dictionary -> fmri -> encoding -> fbn
-> coupling_bootstrap`` (up to ``until``) through :mod:`llmbrain_utils.stages`, so its artifacts
are exactly those of a notebook run with the same parameters. A stage's parameters for a point
are, in increasing precedence: the base file's ``common`` and its section for that stage, the
spec's ``common`` and section, the grid values (or the named point's). Tasks are identified
like store artifacts (stage, the stage's own parameters, the identities of its inputs), so
identical upstream tasks of different points (one extraction for several k) are one task.

Every parameter of every point is checked (:func:`llmbrain_utils.config.validate`, the models'
weights at hand) before any task starts. The graph runs on a ``LocalCluster`` (one process per
worker, one thread each, single-threaded BLAS) or on an existing scheduler by address, e.g. one
that ``dask-jobqueue`` started (workers there must import this package and see the same store
directory). An artifact already in the store is reused and reported ``cached``; a failed task
is reported with its error, its dependants ``skipped: upstream failed``, and every other task
still runs. A worker that dies mid-task is replaced by Dask and its task reruns elsewhere; the
store's atomic writes and file locks make that safe. The results are one table (TSV, written
atomically): one row per point with its grid values, status, artifact keys and summary metrics.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from . import config, stages
from .errors import InputError, ParameterError

log = logging.getLogger(__name__)

#: sweep stages in run order (the store's stage names) and, per stage, its upstream stages with
#: the parameter overrides it asks them with: both read from the stage table (stages.CHAIN)
STAGES = tuple(stages.CHAIN)
DEPS: dict[str, tuple[tuple[str, dict], ...]] = {n: s.upstream for n, s in stages.CHAIN.items()}
#: grid or section names that are not analysis parameters of a point
NOT_SWEPT = ("runs_dir", "variants", "compare_atlas", "n_workers", "n_subsets")
#: table column -> (stage, key in the artifact's sidecar ``info``)
METRICS = {
    "n_trs": ("stimulus", "n_trs"),
    "n_ans": ("extraction", "n_ans"),
    "dictionary_r2": ("dictionary", "r2_overall"),
    "dictionary_sparsity": ("dictionary", "sparsity"),
    "dictionary_objective": ("dictionary", "objective"),
    "n_voxels": ("fmri", "n_voxels"),
    "isc_mask_voxels": ("fmri", "isc_mask_voxels"),
    "encoding_median_r2": ("encoding", "median_r2"),
    "encoding_mean_cv_r_isc_mask": ("encoding", "mean_cv_r_in_isc_mask"),
    "encoding_ceiling_normalised_isc_mask": ("encoding", "ceiling_normalised_in_isc_mask"),
    "encoding_mean_cv_r_whole_brain": ("encoding", "mean_cv_r_whole_brain"),
    "n_couplings": ("fbn", "n_couplings"),
    "n_atoms_coupled": ("fbn", "n_atoms_coupled"),
    "n_networks_involved": ("fbn", "n_networks_involved"),
    "atoms_coupled_ci_low": ("coupling_bootstrap", "atoms_coupled_ci_low"),
    "atoms_coupled_ci_high": ("coupling_bootstrap", "atoms_coupled_ci_high"),
    "networks_involved_ci_low": ("coupling_bootstrap", "networks_involved_ci_low"),
    "networks_involved_ci_high": ("coupling_bootstrap", "networks_involved_ci_high"),
}
SPEC_KEYS = ("params", "common", "grid", "points", "until", *STAGES)


def _stage_params(stage: str) -> tuple[str, ...]:
    return stages.CHAIN[stage].params


def _stage_function(stage: str):
    return stages.CHAIN[stage].build


def chain(until: str) -> list[str]:
    """The stages a point runs to reach ``until``, in run order."""
    need, todo = set(), [until]
    while todo:
        s = todo.pop()
        if s not in need:
            need.add(s)
            todo.extend(u for u, _ in DEPS[s])
    return [s for s in STAGES if s in need]


# --------------------------------------------------------------------------- the spec
@dataclass
class Spec:
    """A parsed sweep spec: base sections (``common`` + per stage), the grid or the named
    points, the last stage."""

    source: str
    sections: dict[str, dict]
    grid: dict[str, list]
    until: str = "fbn"
    named: list[dict] | None = None

    def points(self) -> list[dict]:
        if self.named is not None:
            return [dict(p) for p in self.named]
        names = list(self.grid)
        return [dict(zip(names, vals)) for vals in itertools.product(*(self.grid[n] for n in names))]

    def stage_config(self, stage: str, point: dict) -> dict:
        cfg = dict(self.sections.get("common", {}))
        cfg.update(self.sections.get(stage, {}))
        cfg.update({k: v for k, v in point.items() if k != "name"})
        return cfg


def _check_names(source: str, section: str, values: dict) -> None:
    for name in values:
        if name not in config.PARAMS:
            raise ParameterError(f"{section}.{name}" if section else name,
                                 f"unknown parameter (in {source})",
                                 expected=f"one of {sorted(config.PARAMS)}")


def parse_spec(data: Any, source: str = "<spec>", base_dir: str | os.PathLike | None = None,
               runs_dir: str | None = None) -> Spec:
    """Check a sweep spec (the parsed YAML) and return a :class:`Spec`; raise InputError /
    ParameterError naming the spec, the field and what was expected, before any work."""
    from .config import load_params

    if not isinstance(data, dict):
        raise InputError(source, "top level is not a mapping", expected=f"keys among {list(SPEC_KEYS)}")
    unknown = sorted(set(data) - set(SPEC_KEYS))
    if unknown:
        raise InputError(source, f"unknown key(s) {unknown}", expected=f"keys among {list(SPEC_KEYS)}")
    sections: dict[str, dict] = {}
    if data.get("params") is not None:
        if not isinstance(data["params"], str):
            raise InputError(source, f"{data['params']!r} is not a path", field="params",
                             expected="the path of a parameter file")
        p = Path(data["params"]).expanduser()
        if not p.is_absolute() and base_dir is not None:
            p = Path(base_dir) / p
        base = load_params(p)
        base.pop("cross_model", None)  # the sweep runs no cross-model notebook
        for sec, vals in base.items():
            _check_names(str(p), sec, vals)
            sections[sec] = dict(vals)
    for sec in ("common", *STAGES):
        vals = data.get(sec)
        if vals is None:
            continue
        if not isinstance(vals, dict):
            raise InputError(source, "section is not a mapping", field=sec,
                             expected="parameter: value")
        _check_names(source, sec, vals)
        sections.setdefault(sec, {}).update(vals)
    until = data.get("until", "fbn")
    if until not in STAGES:
        raise InputError(source, f"{until!r} is not a stage", field="until", expected=f"one of {list(STAGES)}")
    grid, named = data.get("grid"), data.get("points")
    if grid is not None and named is not None:
        raise InputError(source, "both a grid and points", field="points",
                         expected="either grid (a product of values) or points (a list)")
    if named is not None:
        named = _check_points(source, named)
        grid = {}
    elif not isinstance(grid, dict) or not grid:
        raise InputError(source, "no grid" if grid is None else "grid is not a non-empty mapping",
                         field="grid", expected="parameter: [value, value, ...] (or points: [...])")
    for name, values in grid.items():
        _check_varied(source, f"grid.{name}", name, "cannot be swept")
        if not isinstance(values, list) or not values:
            raise ParameterError(f"grid.{name}", f"{values!r} is not a non-empty list (in {source})",
                                 expected="a list of values, e.g. [16, 32]")
        if len({repr(v) for v in values}) != len(values):
            raise ParameterError(f"grid.{name}", f"repeated value in {values!r}", expected="distinct values")
    for sec, vals in sections.items():
        for name in NOT_SWEPT[1:]:
            vals.pop(name, None)
    if runs_dir is not None:
        sections.setdefault("common", {})["runs_dir"] = runs_dir
    rd = sections.get("common", {}).get("runs_dir")
    if rd is not None:
        if not isinstance(rd, str):
            raise ParameterError("common.runs_dir", f"{rd!r}", expected="a path")
        sections["common"]["runs_dir"] = str(Path(rd).expanduser().resolve())
    else:  # resolve once here, so every worker writes to the same store
        sections.setdefault("common", {})["runs_dir"] = config.validate({})["runs_dir"]
    return Spec(source=source, sections=sections, grid={k: list(v) for k, v in grid.items()},
                until=until, named=named)


def _check_points(source: str, points: Any) -> list[dict]:
    """Named points: a non-empty list of ``{name: str, parameter: value, ...}``, unique names."""
    if not isinstance(points, list) or not points:
        raise InputError(source, f"{points!r} is not a non-empty list", field="points",
                         expected="a list of {name: ..., parameter: value, ...}")
    seen = set()
    for i, p in enumerate(points):
        if not isinstance(p, dict) or not isinstance(p.get("name"), str) or not p["name"]:
            raise InputError(source, f"{p!r}", field=f"points[{i}]",
                             expected="{name: a non-empty string, parameter: value, ...}")
        if p["name"] in seen:
            raise InputError(source, f"{p['name']!r} twice", field=f"points[{i}].name",
                             expected="unique names")
        seen.add(p["name"])
        for name in p:
            if name != "name":
                _check_varied(source, f"points[{i}].{name}", name, "cannot vary between points")
    return [dict(p) for p in points]


def _check_varied(source: str, field: str, name: str, not_swept: str) -> None:
    """A parameter that differs between points: known, and an analysis parameter."""
    if name not in config.PARAMS:
        raise ParameterError(field, f"unknown parameter (in {source})",
                             expected=f"one of {sorted(config.PARAMS)}")
    if name in NOT_SWEPT:
        raise ParameterError(field, not_swept,
                             expected=f"an analysis parameter (not {', '.join(NOT_SWEPT)})")


def load_spec(path: str | os.PathLike, runs_dir: str | None = None) -> Spec:
    """Read and check a sweep spec file (see :func:`parse_spec`)."""
    path = Path(path)
    data = config.read_yaml(path, what="sweep spec", expected="a YAML file with a grid")
    return parse_spec(data, str(path), base_dir=path.parent, runs_dir=runs_dir)


# --------------------------------------------------------------------------- the plan
@dataclass
class Node:
    """One task: a stage with its full parameter set; ``id`` hashes what decides its artifact."""

    id: str
    stage: str
    cfg: dict
    deps: list[str]


@dataclass
class Plan:
    spec: Spec
    nodes: dict[str, Node]                 # in topological order
    points: list[dict]                     # grid values of each point
    point_nodes: list[dict[str, str]] = field(default_factory=list)  # stage -> node id


def plan(spec: Spec) -> Plan:
    """Expand the grid, validate every point's parameters and merge identical tasks."""
    from . import models
    from .store import hash_params

    nodes: dict[str, Node] = {}

    def node(stage: str, cfg: config.Params) -> str:
        deps = [node(up, cfg.replace(**over) if over else cfg) for up, over in DEPS[stage]]
        ident = {"stage": stage, "params": {k: cfg[k] for k in _stage_params(stage)},
                 "runs_dir": cfg.runs_dir, "narratives_dir": cfg.narratives_dir, "deps": deps}
        nid = hash_params(ident)
        if nid not in nodes:
            nodes[nid] = Node(nid, stage, cfg, deps)
        return nid

    points = spec.points()
    out = Plan(spec, nodes, points)
    model_names = set()
    for point in points:
        ids = {}
        for stage in chain(spec.until):
            try:
                cfg = config.validate(spec.stage_config(stage, point))
            except ParameterError as e:
                raise ParameterError(e.source.removeprefix("parameter ").strip("'"),
                                     f"{e.problem} (grid point {point}, stage {stage}, {spec.source})",
                                     expected=e.expected) from None
            if stage == "extraction":
                model_names.add(cfg.model)
            ids[stage] = node(stage, cfg)
        out.point_nodes.append(ids)
    for name in sorted(model_names):
        models.check_available(name)
    return out


# --------------------------------------------------------------------------- the tasks
def run_stage_task(stage: str, cfg: config.Params, *upstream: dict) -> dict:
    """Run one stage (on a worker); return its artifact's key, path, ``info`` and whether it
    was already in the store. ``upstream`` (the inputs' results) only orders the graph."""
    from .store import SIDECAR

    t0 = time.perf_counter()
    stage_dir = Path(cfg.runs_dir) / stage
    before = {p.name for p in stage_dir.iterdir() if (p / SIDECAR).is_file()} if stage_dir.is_dir() else set()
    art = _stage_function(stage)(cfg)
    return {"stage": stage, "key": art.key, "path": str(art.path), "info": art.info,
            "cached": art.key in before, "seconds": round(time.perf_counter() - t0, 3),
            "pid": os.getpid()}


def local_cluster(n_workers: int | None = None, **kwargs):
    """A LocalCluster of ``n_workers`` single-threaded processes (:func:`parallel.local_cluster`)."""
    from . import parallel

    return parallel.local_cluster(n_workers, **kwargs)


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".replace("\t", " ").replace("\n", " ")


def execute(pl: Plan, client, *, progress: bool = True) -> dict[str, dict]:
    """Submit every task of the plan to ``client``; wait for all; return per node id a record
    (status ``built`` / ``cached`` / ``failed`` / ``skipped``, result or error)."""
    from distributed import as_completed
    from tqdm.auto import tqdm

    token = uuid.uuid4().hex[:8]
    futures, by_key = {}, {}
    for nid, nd in pl.nodes.items():
        f = client.submit(run_stage_task, nd.stage, nd.cfg, *[futures[d] for d in nd.deps],
                          key=f"{nd.stage}-{nid}-{token}", pure=False)
        futures[nid] = f
        by_key[f.key] = nid
    done: dict[str, dict] = {}
    bar = tqdm(total=len(futures), desc="sweep", unit="task", disable=not progress)
    try:
        for f in as_completed(list(futures.values())):
            nid = by_key[f.key]
            if f.status == "finished":
                res = f.result()
                done[nid] = {"status": "cached" if res["cached"] else "built", "result": res}
            else:
                try:
                    exc = f.exception()
                except Exception as e:  # cancelled, scheduler gone
                    exc = e
                done[nid] = {"status": "error", "error": exc}
            bar.update(1)
            bar.set_postfix(failed=sum(r["status"] == "error" for r in done.values()), refresh=False)
    finally:
        bar.close()
    # a dependant of a failed task carries its upstream's error: report it as skipped
    for nid, nd in pl.nodes.items():  # topological order
        rec = done[nid]
        bad = [d for d in nd.deps if done[d]["status"] in ("failed", "skipped")]
        if bad:
            up = pl.nodes[bad[0]]
            rec.update(status="skipped", error=f"upstream failed: {up.stage} ({bad[0]})")
        elif rec["status"] == "error":
            exc = rec["error"]
            rec.update(status="failed", error=_error_text(exc))
            log.error("%s (%s) failed: %s", nd.stage, nid, rec["error"])
    for f in futures.values():
        f.release()
    return done


def results_table(pl: Plan, done: dict[str, dict]) -> pd.DataFrame:
    """One row per grid point: its grid values, status, per-stage status and artifact key,
    the summary metrics of its artifacts and the first error."""
    stages_run = chain(pl.spec.until)
    rows = []
    for i, (point, ids) in enumerate(zip(pl.points, pl.point_nodes)):
        row: dict[str, Any] = {"point": i, **point}
        statuses = {s: done[ids[s]]["status"] for s in stages_run}
        failed = [s for s in stages_run if statuses[s] == "failed"]
        skipped = [s for s in stages_run if statuses[s] == "skipped"]
        if failed:
            row["status"] = "failed"
        elif skipped:
            row["status"] = "skipped"
        elif all(v == "cached" for v in statuses.values()):
            row["status"] = "cached"
        else:
            row["status"] = "done"
        first = (failed or skipped or [None])[0]
        row["error"] = f"{first}: {done[ids[first]]['error']}" if first else ""
        seconds = 0.0
        for s in stages_run:
            rec = done[ids[s]]
            row[f"{s}_status"] = rec["status"]
            row[f"{s}_key"] = rec["result"]["key"] if "result" in rec else ""
            row[f"{s}_seconds"] = rec["result"]["seconds"] if "result" in rec else float("nan")
            seconds += rec["result"]["seconds"] if "result" in rec else 0.0
        for col, (s, k) in METRICS.items():
            if s in stages_run and "result" in done[ids[s]]:
                row[col] = done[ids[s]]["result"]["info"].get(k)
        row["task_seconds"] = round(seconds, 3)
        rows.append(row)
    return pd.DataFrame(rows)


def write_table(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write the table as TSV through a temporary file, fsync and rename."""
    from .store import write_atomic

    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda f: table.to_csv(f, sep="\t", index=False), newline="")
    return path


def default_out(spec: Spec) -> Path:
    stem = Path(spec.source).stem if spec.source != "<spec>" else "sweep"
    return Path(spec.sections["common"]["runs_dir"]) / "sweeps" / f"{stem}.tsv"


def run_sweep(spec: Spec | str | os.PathLike, *, client=None, scheduler: str | None = None,
              workers: int | None = None, out: str | os.PathLike | None = None,
              runs_dir: str | None = None, progress: bool = True) -> tuple[pd.DataFrame, Path]:
    """Plan, execute and tabulate a sweep; return the table and the TSV's path.

    ``client``: an existing ``distributed.Client``; else ``scheduler`` (an address) to connect
    to; else a :func:`local_cluster` of ``workers`` processes, closed at the end.
    """
    if not isinstance(spec, Spec):
        spec = load_spec(spec, runs_dir=runs_dir)
    elif runs_dir is not None:
        spec.sections.setdefault("common", {})["runs_dir"] = str(Path(runs_dir).resolve())
    pl = plan(spec)  # every check before any work
    log.info("sweep %s: %d points, %d tasks", spec.source, len(pl.points), len(pl.nodes))
    cluster = own = None
    if client is None:
        from distributed import Client

        if scheduler:
            try:
                client = own = Client(scheduler, timeout="30s")
            except (OSError, TimeoutError) as e:
                raise InputError(f"--scheduler {scheduler}", f"cannot connect ({e})",
                                 expected="the address of a running Dask scheduler, e.g. tcp://host:8786") from None
        else:
            cluster = local_cluster(workers)
            client = own = Client(cluster)
    try:
        done = execute(pl, client, progress=progress)
    finally:
        if own is not None:
            own.close()
        if cluster is not None:
            cluster.close()
    table = results_table(pl, done)
    path = write_table(table, out or default_out(spec))
    return table, path


def run_variants(base: dict, variants: list[dict], *, until: str = "fbn", n_workers: int = 2,
                 out: str | os.PathLike | None = None, client=None) -> tuple[pd.DataFrame, dict]:
    """Run every variant of a comparison, its stages up to ``until``, as one Dask sweep.

    The cross-model chapter's runner: ``base`` (the run's parameters) is the sweep's
    ``common`` section and each variant (``{"name": ..., parameter: value, ...}``) a named
    point; tasks the variants share run once and artifacts already in the store are reused.
    ``n_workers`` single-threaded processes of a local cluster (results do not depend on it),
    or an existing ``client``. Returns the sweep's table (one row per variant) and, per variant
    name, ``{"cfg", "artifacts": {stage: Artifact}}`` opened from the store by the table's
    keys. A failed variant raises, naming it.
    """
    from .store import Store

    if isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 1:
        raise ParameterError("n_workers", f"{n_workers!r}", expected="an integer >= 1")
    if not isinstance(base, Mapping):
        raise ParameterError("base", f"{type(base).__name__}",
                             expected="the run's parameters (config.Params or a dict)")
    spec = parse_spec({"common": dict(base), "points": variants, "until": until},
                      source="cross-model variants")
    runs_dir = Path(spec.sections["common"]["runs_dir"])
    table, _ = run_sweep(spec, client=client, workers=min(n_workers, len(variants)),
                         out=out or runs_dir / "sweeps" / "cross_model.tsv", progress=False)
    bad = table[~table.status.isin(["done", "cached"])]
    if len(bad):
        raise RuntimeError("; ".join(f"variant {r['name']!r} {r.status}: {r.error}" for _, r in bad.iterrows()))
    store = Store(runs_dir)
    runs = {}
    for (_, row), point in zip(table.iterrows(), spec.points()):
        arts = {}
        for stage in chain(spec.until):
            art = store.find(stage, row[f"{stage}_key"])
            if art is None:
                raise InputError(runs_dir / stage / row[f"{stage}_key"], "missing after the sweep",
                                 expected=f"the {stage} artifact of variant {row['name']!r}")
            arts[stage] = art
        runs[row["name"]] = {"cfg": config.validate(spec.stage_config(spec.until, point)), "artifacts": arts}
    return table, runs
