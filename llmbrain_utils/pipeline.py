"""Runs the book's notebooks with papermill, in stage order, with a parameter set.

Each notebook in ``notebooks/`` has a papermill ``parameters`` cell. A parameter set (YAML) has
a ``common`` section, given to every notebook that declares the parameter, and one section per
stage. The runner checks every parameter against the notebook's declared parameters (unknown
names and wrong types are errors before anything runs), executes each notebook into the run's
folder (:mod:`.runfolder`: ``<store>/books/NAME/notebooks/``; the default run's into
``book/executed/``, the copies the published book renders), and skips a notebook whose executed
copy was made from the same notebook, parameters and package version (the stages' own artifacts
are cached in the store besides, so a changed parameter recomputes only what depends on it). At
the end the run's folder gets every figure, the headline tables and a manifest.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import config
from . import errors
from . import runfolder
from .errors import InputError, ParameterError, StageError

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
EXECUTED = REPO / "book" / "executed"
DEFAULT_PARAMS = config.DEFAULT_PARAMS

#: the package's own errors: raised inside a notebook, they reach the CLI as one line
_OWN_ERRORS = {c.__name__ for c in vars(errors).values()
               if isinstance(c, type) and issubclass(c, errors.LLMBrainError)}

#: stage name -> notebook, in run order (declared in llmbrain_utils.config)
STAGES = config.CHAPTERS
load_params = config.load_params
unknown_parameter = config.unknown_parameter


def check_sections(params: dict, path=None) -> None:
    """Every name of every stage section is a parameter of that stage's notebook, whether or not
    the stage runs now (``--only``): a typo is an error before any work starts."""
    path = Path(path) if path else DEFAULT_PARAMS
    for stage in STAGES:
        section = params.get(stage) or {}
        if not section:
            continue
        nb = NOTEBOOKS / STAGES[stage]
        declared = declared_parameters(nb)
        for name in section:
            if name not in declared:
                raise unknown_parameter(path, stage, name, declared, f"a parameter of {nb.name}")


def declared_parameters(notebook: Path) -> dict[str, dict]:
    """The parameters a notebook declares in its ``parameters`` cell (papermill's inspection)."""
    import papermill as pm

    return pm.inspect_notebook(str(notebook))


_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,),
          "list": (list, tuple), "dict": (dict,), "None": (type(None),)}


def _check_type(name: str, value, decl: dict, notebook: str) -> None:
    inferred = decl.get("inferred_type_name", "None")
    default = decl.get("default", "None")
    if value is None or inferred in ("None", "") or default == "None":
        return
    kinds = [k.strip() for k in str(inferred).replace("Optional[", "").rstrip("]").split("|")]
    allowed = tuple(t for k in kinds for t in _TYPES.get(k, (object,)))
    if isinstance(value, bool) and bool not in allowed:
        allowed = ()
    if not isinstance(value, allowed):
        words = config.allowed(name) if name in config.PARAMS else str(inferred)
        raise ParameterError(name, f"{value!r} has type {type(value).__name__} in {notebook}",
                             expected=f"{words}; default {default}")


def stage_parameters(stage: str, params: dict) -> dict:
    """The parameters that ``stage``'s notebook gets: declared ones from common + its section."""
    nb = NOTEBOOKS / STAGES[stage]
    declared = declared_parameters(nb)
    merged = {k: v for k, v in params.get("common", {}).items() if k in declared}
    section = params.get(stage, {})
    unknown = set(section) - set(declared)
    if unknown:
        name = sorted(unknown)[0]
        hint = config.suggest(name, declared)
        raise ParameterError(f"{stage}.{name}", f"not a parameter of {nb.name}{hint}",
                             expected=None if hint else f"one of {sorted(declared)}")
    merged.update(section)
    for k, v in merged.items():
        _check_type(k, v, declared[k], nb.name)
    return merged


def notebook_namespace(stage: str, params: dict) -> dict:
    """The variables a stage's notebook has after its parameters cell and papermill's injected
    one: the cell's defaults (literals), updated with the run's parameters of that stage."""
    import nbformat

    nb = nbformat.read(str(NOTEBOOKS / STAGES[stage]), as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ParameterError(STAGES[stage], f"{len(cells)} parameters cells", expected="one")
    ns: dict = {}
    exec(compile(cells[0].source, STAGES[stage], "exec"), ns)
    ns.pop("__builtins__", None)
    ns.update(stage_parameters(stage, params))
    return ns


def _check_models(plan) -> None:
    """Every model a run names must have its weights at hand before any notebook runs."""
    from . import models

    names = {p["model"] for _, p in plan if "model" in p}
    for _, p in plan:
        for v in p.get("variants") or []:
            if not isinstance(v, dict) or "name" not in v:
                raise ParameterError("variants", f"{v!r}", expected="{name: ..., parameter: value}")
            config.validate({k: val for k, val in v.items() if k != "name"})
            names.add(v.get("model", p.get("model", config.PARAMS["model"].default)))
    for name in sorted(names):
        models.check_available(name)


def _digest(notebook: Path, parameters: dict) -> str:
    from .store import package_versions

    h = hashlib.sha256(notebook.read_bytes())
    h.update(json.dumps(parameters, sort_keys=True, default=str).encode())
    h.update(package_versions(["llmbrain_utils"])["llmbrain_utils"].encode())
    for src in sorted(Path(__file__).resolve().parent.glob("*.py")):  # plotting, compare, ...
        h.update(src.read_bytes())
    spread = REPO / "benchmarks" / "kernel_spread.json"  # the ranges the chapters print
    if spread.is_file():
        h.update(spread.read_bytes())
    return h.hexdigest()[:16]


def _executed_digest(path: Path) -> str | None:
    try:
        return json.loads(path.read_text())["metadata"].get("llmbrain", {}).get("digest")
    except (OSError, ValueError, KeyError):
        return None


def run(params_file: str | os.PathLike | None = None, *, only: list[str] | None = None,
        force: bool = False, refresh_notebooks: bool = False, runs_dir: str | None = None,
        executed_dir: str | os.PathLike | None = None, name: str | None = None,
        svg: bool = False, prefetch: bool | None = None) -> list[dict]:
    """Execute the stages' notebooks; return one record per stage (name, status, seconds).

    :func:`execute` with its records only (the run folder's paths and headline figures are in
    what :func:`execute` returns)."""
    return execute(params_file, only=only, force=force, refresh_notebooks=refresh_notebooks,
                   runs_dir=runs_dir, executed_dir=executed_dir, name=name, svg=svg,
                   prefetch=prefetch).records


@dataclass
class RunResult:
    """What :func:`execute` did: one record per stage, the run's folder and what it exported."""

    records: list[dict]
    run: runfolder.RunFolder
    exported: dict = field(default_factory=dict)

    def summary(self) -> list[str]:
        return runfolder.summary(self.run, self.exported)


def _is_default_params(params_file) -> bool:
    return params_file is None or Path(params_file).resolve() == DEFAULT_PARAMS.resolve()


def execute(params_file: str | os.PathLike | None = None, *, only: list[str] | None = None,
            force: bool = False, refresh_notebooks: bool = False, runs_dir: str | None = None,
            executed_dir: str | os.PathLike | None = None, name: str | None = None,
            svg: bool = False, prefetch: bool | None = None) -> RunResult:
    """Execute the stages' notebooks into a run folder of their own (:mod:`.runfolder`).

    The run's folder is ``<store>/books/NAME/`` (``name``: default ``STEM-HASH`` of the
    parameter file and its parameters); its notebooks go to its ``notebooks/``, except for the
    default run (``params/default.yaml``, no ``name``), whose notebooks go to ``book/executed/``
    (the copies the published book renders). ``executed_dir`` puts the notebooks elsewhere.
    The same ``name`` with other parameters is refused before any work, unless ``force`` (which
    replaces that run); with the same parameters, notebooks whose digest is unchanged are not
    re-executed. At the end every figure, the headline tables and ``manifest.json`` are
    written into the run folder. ``svg``: the notebooks' figures are drawn as SVG besides PNG
    (matplotlib's inline backend), so every figure has a vector file too. ``prefetch``: build
    the later chapters' largest artifacts ahead in a second process (:mod:`.prefetch`; default:
    where two or more CPUs and no Dask scheduler; the numbers are the same either way)."""
    import papermill as pm

    from . import prefetch as ahead

    params = load_params(params_file)
    if runs_dir is not None:
        params.setdefault("common", {})["runs_dir"] = runs_dir
    if "runs_dir" in params.get("common", {}):
        params["common"]["runs_dir"] = str(Path(params["common"]["runs_dir"]).resolve())
    stages = list(STAGES)
    if only:
        bad = [s for s in only if s not in STAGES]
        if bad:
            raise ParameterError("--only", f"unknown stage(s) {bad}", expected=f"any of {stages}")
        stages = [s for s in stages if s in only]
    if svg and refresh_notebooks:  # the committed notebooks (nbval's references) keep PNG only
        raise ParameterError("--svg", "with --refresh-notebooks", expected="one of the two")
    # validate every notebook's parameters before any work starts: names of every section
    # (stages not run now too), then types, ranges and choices
    check_sections(params, params_file)
    for s in STAGES:
        if s not in stages and params.get(s):
            config.validate(stage_parameters(s, params))
    plan = [(s, stage_parameters(s, params)) for s in stages]
    for _, p in plan:
        config.validate(p)  # ranges and choices too, not only types
    _check_models(plan)
    # the run's folder: a name clash (other parameters) is refused before any work too
    rf = runfolder.plan(params, params_file, name=name,
                        published_default=_is_default_params(params_file), executed_dir=EXECUTED,
                        notebooks_dir=executed_dir)
    previous = runfolder.claim(rf, force=force)
    manifest = runfolder.start(rf, previous, only=only, force=force)
    out_dir = rf.notebooks
    records = []

    def digest_of(stage: str, p: dict) -> str:
        digest = _digest(NOTEBOOKS / STAGES[stage], p)
        if svg:  # other outputs: a notebook executed without SVG is not reused
            digest = hashlib.sha256(f"{digest}:svg".encode()).hexdigest()[:16]
        return digest

    def unchanged(stage: str, digest: str) -> bool:
        dst = out_dir / STAGES[stage]
        return not force and dst.is_file() and _executed_digest(dst) == digest

    digests = {s: digest_of(s, p) for s, p in plan}
    pending = [s for s, _ in plan if not unchanged(s, digests[s])]
    served = [s for s in pending if s in ahead.SERVED] if ahead.wanted(prefetch) else []
    building_ahead = ahead.Ahead({s: notebook_namespace(s, params) for s in served},
                                 rf.folder / "prefetch.log")
    t_run = time.perf_counter()
    with building_ahead:  # stopped when the chapters are done, or one failed
        try:
            for stage, p in plan:
                src = NOTEBOOKS / STAGES[stage]
                dst = out_dir / STAGES[stage]
                digest = digests[stage]
                if unchanged(stage, digest):
                    records.append({"stage": stage, "status": "unchanged", "seconds": 0.0})
                    log.info("%s: unchanged, not re-executed", stage)
                    manifest["stages"].setdefault(stage, {}).update(
                        {"notebook": str(dst), "digest": digest, "parameters": p, "status": "unchanged"})
                    if refresh_notebooks:  # a regenerated notebook (same cells, no outputs) gets them back
                        _refresh(dst, src)
                    continue
                tmp = dst.with_name(f".tmp-{dst.name}")
                trace = dst.with_name(f".artifacts-{dst.stem}.jsonl")
                trace.unlink(missing_ok=True)
                t0, since = time.perf_counter(), time.time() - 1.0
                print(f"[llmbrain] {stage}: executing {src.name}", flush=True)
                try:
                    with _kernel_stderr(trace, svg=svg, headlines=rf.headlines) as km_class:
                        nb = pm.execute_notebook(str(src), str(tmp), parameters=p, cwd=str(REPO),
                                                 kernel_name="python3", progress_bar=_cell_progress(stage),
                                                 request_save_on_cell_execute=False,
                                                 kernel_manager_class=km_class)
                except Exception as e:
                    # keep the failed copy for reading, never under the executed name
                    failed = dst.with_name(f"FAILED-{dst.name}")
                    if tmp.exists():
                        os.replace(tmp, failed)
                    manifest["stages"][stage] = {"notebook": str(failed), "parameters": p,
                                                 "status": "failed", "error": " ".join(str(
                                                     getattr(e, "evalue", e)).split())[:500],
                                                 "seconds": round(time.perf_counter() - t0, 1),
                                                 "artifacts": runfolder.read_trace(trace)}
                    trace.unlink(missing_ok=True)
                    if getattr(e, "ename", None) in _OWN_ERRORS:  # the stage refused an input: one line
                        raise StageError(stage, src.name, e.ename, e.evalue, failed) from None
                    raise
                _one_parameters_block(nb)
                nb.metadata["llmbrain"] = {"digest": digest, "parameters": p,
                                           "figure_formats": ["png", "svg"] if svg else ["png"]}
                import nbformat

                nbformat.write(nb, str(tmp))
                os.replace(tmp, dst)
                failed = dst.with_name(f"FAILED-{dst.name}")
                failed.unlink(missing_ok=True)
                secs = time.perf_counter() - t0
                print(f"[llmbrain] {stage}: done in {secs:.1f} s", flush=True)
                records.append({"stage": stage, "status": "executed", "seconds": round(secs, 1)})
                left = runfolder.snapshot_stage(rf, STAGES[stage], since)
                manifest["stages"][stage] = {
                    "notebook": str(dst), "digest": digest, "parameters": p, "status": "executed",
                    "seconds": round(secs, 1), "executed": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "artifacts": runfolder.read_trace(trace) + left["sweep_artifacts"],
                    "headlines": left["headlines"], "sweep_tables": left["sweeps"]}
                trace.unlink(missing_ok=True)
                if refresh_notebooks:
                    _refresh(dst, src)
        except BaseException as e:
            manifest["status"] = "failed"
            manifest["error"] = " ".join(str(e).split())[:500]
            manifest["invocations"][-1].update(status="failed", records=records,
                                               seconds=round(time.perf_counter() - t_run, 1))
            runfolder.write_manifest(rf.folder, manifest)
            raise
    manifest["invocations"][-1]["records"] = records
    manifest.pop("error", None)
    done = [out_dir / STAGES[s] for s in STAGES if (out_dir / STAGES[s]).is_file()]
    exported = runfolder.finish(rf, manifest, done, status="complete",
                                seconds=time.perf_counter() - t_run)
    return RunResult(records, rf, exported)


#: what the kernel process writes to its stderr that says nothing to the user of a local run:
#: ipykernel's note that the (loopback) TCP transport is not encrypted, and its report of the
#: interrupt that a kernel's shutdown may send
KERNEL_NOISE = re.compile(r"Kernel is running over TCP without encryption|"
                          r"KeyboardInterrupt caught in kernel")


def _cell_progress(stage: str) -> dict | bool:
    """papermill's progress bar over a notebook's cells, shown only where someone watches (a
    terminal on stderr; never in logs or CI), e.g. ``encoding: 40%|####  | 8/20 [01:02<...]``;
    ``LLMBRAIN_PROGRESS=0`` turns it off, ``=1`` on."""
    from .progress import forced

    show = sys.stderr.isatty() if forced() is None else forced()
    return {"desc": stage, "unit": "cell", "leave": False, "file": sys.stderr} if show else False


@contextlib.contextmanager
def _kernel_stderr(trace: Path | None = None, *, svg: bool = False,
                   headlines: Path | None = None):
    """A kernel manager class whose kernels write their stderr to a temporary file; on leaving,
    the file's lines are passed on to this process's stderr, less :data:`KERNEL_NOISE`.

    ``trace``: the kernel records every artifact the store hands it in this file (its first
    line, before the notebook's cells: :func:`runfolder.trace_artifacts`). ``svg``: the inline
    backend draws every figure as SVG besides PNG (a setting that ``%matplotlib inline`` keeps).
    ``headlines``: the run folder's ``headlines/``, where the kernel's Recorders write
    (``LLMBRAIN_HEADLINES_DIR`` in its environment)."""
    import tempfile

    from jupyter_client.manager import AsyncKernelManager

    with tempfile.TemporaryFile(mode="w+b") as f:

        class _KernelManager(AsyncKernelManager):
            async def start_kernel(self, **kw):
                kw.setdefault("stderr", f)
                lines = []
                if trace is not None:
                    lines.append("import llmbrain_utils.runfolder as _llmbrain_rf; "
                                 f"_llmbrain_rf.trace_artifacts({str(trace)!r}); del _llmbrain_rf")
                if svg:
                    lines.append("%config InlineBackend.figure_formats = ['png', 'svg']")
                if headlines is not None:
                    kw["env"] = {**(kw.get("env") or os.environ),
                                 "LLMBRAIN_HEADLINES_DIR": str(headlines)}
                kw["extra_arguments"] = [*kw.get("extra_arguments", []),
                                         *(f"--IPKernelApp.exec_lines={x}" for x in lines)]
                return await super().start_kernel(**kw)

        try:
            yield _KernelManager
        finally:
            f.seek(0)
            for line in f.read().decode("utf-8", "replace").splitlines():
                if line.strip() and not KERNEL_NOISE.search(line):
                    print(line, file=sys.stderr)
            sys.stderr.flush()


def _one_parameters_block(nb) -> None:
    """The executed notebook's parameters as one collapsed block on the book's page.

    papermill leaves two cells: the notebook's defaults (tag ``parameters``) and the values the
    run set (``injected-parameters``). The defaults cell becomes "Parameters of this run": the
    defaults, then the run's values (later lines win, so the cell still runs as it did), shown
    collapsed (``hide-cell``); the injected cell stays in the notebook (papermill's record and
    what re-executes) but not on the page (``remove-cell``)."""
    cells = nb.cells
    tags = [set(c.get("metadata", {}).get("tags", [])) for c in cells]
    defaults = next((i for i, t in enumerate(tags) if "parameters" in t), None)
    injected = next((i for i, t in enumerate(tags) if "injected-parameters" in t), None)
    if defaults is None or injected is None:
        return
    lines = cells[defaults].source.splitlines()
    if lines and lines[0].startswith("# Parameters"):
        lines = lines[1:]
    set_here = [ln for ln in cells[injected].source.splitlines() if ln.strip() and not ln.startswith("#")]
    cells[defaults].source = "\n".join(
        ["# Parameters of this run: the notebook's defaults, then the values this run set",
         *lines, "", "# set by this run", *set_here])
    for i, tag in ((defaults, "hide-cell"), (injected, "remove-cell")):
        meta = cells[i].setdefault("metadata", {})
        meta["tags"] = [*meta.get("tags", []), tag]
    # the collapsed block's toggle says what it holds (myst-nb's cell-level prompts)
    cells[defaults].metadata["mystnb"] = {"code_prompt_show": "Show the parameters of this run",
                                          "code_prompt_hide": "Hide the parameters"}


def _refresh(executed: Path, committed: Path) -> None:
    """Copy an executed notebook's outputs back to the committed one (what nbval compares)."""
    import nbformat

    nb = nbformat.read(str(executed), as_version=4)
    own = nbformat.read(str(committed), as_version=4)
    own_params = next((c for c in own.cells if "parameters" in c.get("metadata", {}).get("tags", [])), None)
    nb.metadata.pop("llmbrain", None)
    nb.metadata.pop("papermill", None)
    keep = []
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags:
            continue  # the committed notebook keeps its own defaults
        if "parameters" in tags and own_params is not None:  # not the book's merged block
            cell.source, cell.metadata["tags"] = own_params.source, list(own_params.metadata["tags"])
        cell.get("metadata", {}).pop("papermill", None)
        cell.get("metadata", {}).pop("execution", None)
        keep.append(cell)
    nb.cells = keep
    nbformat.write(nb, str(committed))


def build_book(*, strict: bool = True) -> Path:
    """Build the Jupyter Book (HTML) at the repository root; return the index page.

    Warnings are errors (``-W -n --keep-going``), since jupyter-book exits 0 on many failures.
    """
    missing = [n for n in STAGES.values() if not (EXECUTED / n).is_file()]
    if missing:
        raise InputError(EXECUTED, f"executed notebooks missing: {missing}",
                         expected="`python -m llmbrain_utils run` first")
    exe = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(exe), "build", str(REPO), "--builder", "html"]
    if strict:
        cmd += ["-W", "-n", "--keep-going"]
    print("[llmbrain] " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=REPO)
    index = REPO / "_build" / "html" / "index.html"
    if not index.is_file():
        raise InputError(index, "the book build wrote no index page")
    return index

