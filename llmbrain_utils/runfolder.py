"""A run as a named, self-contained output: ``<store>/books/NAME/``.

``python -m llmbrain_utils run --params my.yaml [--name NAME]`` (:func:`llmbrain_utils.pipeline.
execute`) writes into a folder of its own under the artifact store's ``books/`` (the store:
``runs_dir``, ``$LLMBRAIN_RUNS`` or ``runs/``)::

    books/NAME/
      manifest.json     parameters, the stages run (status, seconds, notebook digest, the
                        artifacts each opened or built), package versions, timings, paths
      notebooks/        the executed notebooks (the default run keeps them in book/executed/)
      figures/          every figure of every notebook as PNG (and SVG where the notebook holds
                        one), captions.tsv: notebook, cell, file, vector, caption
      tables/           NB.tsv: the headline figures each notebook recorded (Recorder); the
                        parameter sweeps a notebook ran (NB.sweep-STEM.tsv)
      headlines/        the Recorder's JSON of each notebook, as this run left it
      _build/html/      ``python -m llmbrain_utils book --run NAME``

The name defaults to the parameter file's stem and a short hash of its parameters, so two runs
with different parameters never share a folder. A rerun with the same name and parameters reuses
the folder (and every notebook whose digest is unchanged); the same name with other parameters is
refused (:class:`~llmbrain_utils.errors.ParameterError` on ``--name``, saying what differs) unless
``--force``, which replaces that run. The default run (no ``--name``, ``params/default.yaml``) is
the published book's: its notebooks stay in ``book/executed/``, its folder is ``books/default/``.

Nothing here decides an artifact's content: this module only reads what the notebooks left.
"""

from __future__ import annotations

import copy
import csv
import json
import os
import platform
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import config
from .errors import InputError, ParameterError

REPO = Path(__file__).resolve().parents[1]
MANIFEST = "manifest.json"
DEFAULT_NAME = "default"
#: a run's name: a plain label, never a path
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,79}")
NAME_WORDS = "a name of letters, digits, '_', '.' and '-' (at most 80) that starts with a letter or digit, not a path"
#: packages whose versions a manifest records (absent ones say so)
VERSIONS = ("llmbrain_utils", "numpy", "scipy", "pandas", "scikit-learn", "torch", "transformers",
            "spams-bin", "himalaya", "nilearn", "nibabel", "matplotlib", "papermill", "nbformat",
            "ipykernel", "jupyter-book")
#: what the manifest says when no notebook output holds a vector figure
PNG_ONLY = ("PNG only: the notebooks' outputs hold no vector (SVG/PDF) figure (matplotlib's "
            "inline backend draws PNG); `run --svg` draws SVG besides")
_VECTOR = {"image/svg+xml": "svg", "application/pdf": "pdf"}
_RASTER = {"image/png": "png", "image/jpeg": "jpg"}


# ------------------------------------------------------------------------------- names, folders

def store_root(params: dict) -> Path:
    """The artifact store a run's notebooks use: ``common.runs_dir``, else ``$LLMBRAIN_RUNS``,
    else the repository's ``runs/`` (what :func:`config.validate` gives the notebooks, whose
    working folder is the repository: a relative ``$LLMBRAIN_RUNS`` is taken from there)."""
    given = (params.get("common") or {}).get("runs_dir")
    if given:
        return Path(given).resolve()
    env = os.environ.get("LLMBRAIN_RUNS")
    if env:
        p = Path(env)
        return (p if p.is_absolute() else REPO / p).resolve()
    return config.REPO_RUNS.resolve()


def books_root(params_or_store) -> Path:
    """``<store>/books``: the folder that holds every named run."""
    root = params_or_store if isinstance(params_or_store, Path) else store_root(params_or_store)
    return root / "books"


def run_parameters(params: dict) -> dict:
    """A parameter set as a run's identity: its sections without empty ones and without
    ``common.runs_dir`` (where a run goes is not what it computes)."""
    out = {}
    for sec, vals in sorted(params.items()):
        vals = {k: v for k, v in (vals or {}).items() if not (sec == "common" and k == "runs_dir")}
        if vals:
            out[sec] = copy.deepcopy(vals)
    return json.loads(_canonical(out))


def _canonical(obj) -> str:
    from .store import canonical_json

    return canonical_json(obj)


def params_hash(params: dict, n: int = 8) -> str:
    from .store import hash_params

    return hash_params(run_parameters(params), n)


def default_name(params_file, params: dict) -> str:
    """``STEM-HASH``: the parameter file's stem as a safe label and 8 hex of the parameters."""
    stem = Path(params_file).stem if params_file else "run"
    label = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-._")[:60] or "run"
    return f"{label}-{params_hash(params)}"


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name) or name in (".", ".."):
        raise ParameterError("--name", f"{name!r} is not a plain name", expected=NAME_WORDS)
    return name


def differences(old: dict, new: dict) -> list[str]:
    """What differs between two parameter sets, as ``section.name: old -> new`` lines."""
    def flat(d):
        return {f"{s}.{k}": v for s, vals in d.items() for k, v in (vals or {}).items()}

    a, b = flat(old), flat(new)
    out = []
    for k in sorted(set(a) | set(b)):
        if k not in b:
            out.append(f"{k}: {a[k]!r} -> (not set)")
        elif k not in a:
            out.append(f"{k}: (not set) -> {b[k]!r}")
        elif _canonical(a[k]) != _canonical(b[k]):
            out.append(f"{k}: {a[k]!r} -> {b[k]!r}")
    return out


def read_manifest(folder: Path) -> dict | None:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise InputError(path, f"unreadable run manifest ({e})", expected="a manifest.json this package wrote") from None


def write_manifest(folder: Path, manifest: dict) -> Path:
    from .store import write_json_atomic

    path = Path(folder) / MANIFEST
    write_json_atomic(path, manifest)
    return path


# ------------------------------------------------------------------------------- a run

@dataclass
class RunFolder:
    """Where one run goes: its name, folder, notebooks' folder, and whether it is the published
    default run (notebooks in ``book/executed/``)."""

    name: str
    folder: Path
    notebooks: Path
    store: Path
    published: bool = False
    params_file: str | None = None
    parameters: dict = field(default_factory=dict)

    @property
    def figures(self) -> Path:
        return self.folder / "figures"

    @property
    def tables(self) -> Path:
        return self.folder / "tables"

    @property
    def headlines(self) -> Path:
        return self.folder / "headlines"

    @property
    def manifest(self) -> Path:
        return self.folder / MANIFEST


def plan(params: dict, params_file, *, name: str | None, published_default: bool,
         executed_dir: Path, notebooks_dir: Path | None = None) -> RunFolder:
    """Decide a run's name and folders (nothing is written). ``published_default``: the
    parameter file is the default one; without ``name`` (or with ``name='default'``) the run is
    the published book's, whose notebooks go to ``executed_dir``."""
    store = store_root(params)
    published = published_default and name in (None, DEFAULT_NAME)
    if name is None:
        name = DEFAULT_NAME if published else default_name(params_file, params)
    check_name(name)
    folder = books_root(store) / name
    if notebooks_dir is not None:
        nbs = Path(notebooks_dir).resolve()
    else:
        nbs = Path(executed_dir).resolve() if published else folder / "notebooks"
    return RunFolder(name, folder, nbs, store, published,
                     str(Path(params_file).resolve()) if params_file else None,
                     run_parameters(params))


def claim(run: RunFolder, *, force: bool) -> dict | None:
    """Check that ``run`` may use its folder: the same name with other parameters is refused
    (unless ``force``, which empties the folder). Returns the previous manifest when the run is
    a rerun with the same parameters (its stage records are kept), else None. Writes nothing."""
    old = read_manifest(run.folder)
    if old is None:
        if run.folder.is_dir() and any(p.name != "_build" for p in run.folder.iterdir()) and not force:
            raise ParameterError("--name", f"{run.folder} exists but holds no {MANIFEST} (not a run "
                                 "folder this package wrote)",
                                 expected="another --name, or --force to replace that folder")
        return None
    if _canonical(old.get("parameters", {})) == _canonical(run.parameters):
        return old
    if run.published or force:  # the published book follows params/default.yaml; --force replaces
        return None
    diff = differences(old.get("parameters", {}), run.parameters)
    shown = "; ".join(diff[:5]) + (f"; and {len(diff) - 5} more" if len(diff) > 5 else "")
    raise ParameterError("--name", f"run '{run.name}' ({run.folder}) was made with other "
                         f"parameters ({old.get('params_file') or 'its file'}): {shown}",
                         expected="another --name (without one, the name derives from the "
                         "parameters), or --force to replace that run")


def start(run: RunFolder, previous: dict | None, *, only, force: bool) -> dict:
    """Create the folder (emptied when ``previous`` is None and a manifest of other parameters
    is there) and write the manifest as ``running``; return it."""
    if previous is None and run.folder.exists():
        shutil.rmtree(run.folder)
    run.folder.mkdir(parents=True, exist_ok=True)
    run.notebooks.mkdir(parents=True, exist_ok=True)
    now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    man = {
        "about": "a run of llmbrain (llmbrain_utils.runfolder): its parameters, stages, artifacts, "
                 "versions, timings and where its outputs are",
        "name": run.name,
        "published_book": run.published,
        "params_file": run.params_file,
        "parameters": run.parameters,
        "parameters_hash": _short_hash(run.parameters),
        "created": (previous or {}).get("created", now),
        "updated": now,
        "status": "running",
        "stages": dict((previous or {}).get("stages", {})),
        "invocations": list((previous or {}).get("invocations", [])),
        "paths": paths(run),
    }
    man["invocations"].append({"started": now, "argv": sys.argv[1:], "only": only, "force": force})
    write_manifest(run.folder, man)
    return man


def _short_hash(parameters: dict) -> str:
    from .store import hash_params

    return hash_params(parameters, 8)


def paths(run: RunFolder) -> dict:
    return {"run": str(run.folder), "notebooks": str(run.notebooks), "figures": str(run.figures),
            "captions": str(run.figures / "captions.tsv"), "tables": str(run.tables),
            "headlines": str(run.headlines), "manifest": str(run.manifest), "store": str(run.store),
            "book": str(run.folder / "_build" / "html")}


def environment() -> dict:
    from .store import package_versions

    return {"python": platform.python_version(), "platform": platform.platform(),
            "machine": platform.machine(), "versions": package_versions(VERSIONS),
            "threads": {v: os.environ.get(v) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                         "MKL_NUM_THREADS")}}


# ------------------------------------------------------------------------------- what a stage left

def snapshot_stage(run: RunFolder, notebook: str, since: float) -> dict:
    """After a notebook ran: its headline figures (written by its kernel into the run folder's
    ``headlines/NB.json`` and copied to ``<store>/headlines/``; from a kernel that wrote them
    to the store instead, copied from there) and the sweep tables it wrote (``<store>/sweeps/*.tsv``) into the run folder, when they were
    written since ``since`` (the store's copies are shared by every run of that store). Returns
    ``{"headlines": path or None, "sweeps": [paths], "sweep_artifacts": [...]}``."""
    stem = Path(notebook).stem
    out = {"headlines": None, "sweeps": [], "sweep_artifacts": []}
    src = run.store / "headlines" / f"{stem}.json"
    own = run.headlines / f"{stem}.json"  # written there by the kernel (LLMBRAIN_HEADLINES_DIR)
    if own.is_file() and own.stat().st_mtime >= since:
        src.parent.mkdir(parents=True, exist_ok=True)
        tmp = src.with_name(f".{src.name}.{os.getpid()}")
        shutil.copyfile(own, tmp)
        os.replace(tmp, src)  # the store's copy: this run's, whole, as the notebook ended
        out["headlines"] = str(own)
    elif src.is_file() and src.stat().st_mtime >= since:
        run.headlines.mkdir(parents=True, exist_ok=True)
        dst = run.headlines / src.name
        shutil.copyfile(src, dst)
        out["headlines"] = str(dst)
    sweeps = run.store / "sweeps"
    if sweeps.is_dir():
        for tsv in sorted(sweeps.glob("*.tsv")):
            if tsv.stat().st_mtime < since:
                continue
            run.tables.mkdir(parents=True, exist_ok=True)
            dst = run.tables / f"{stem}.sweep-{tsv.stem}.tsv"
            shutil.copyfile(tsv, dst)
            out["sweeps"].append(str(dst))
            out["sweep_artifacts"] += sweep_artifacts(dst)
    return out


def sweep_artifacts(tsv: Path) -> list[dict]:
    """The artifact keys a sweep table names (its ``STAGE_key`` columns), one record per key."""
    with open(tsv, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    seen, out = set(), []
    for row in rows:
        for col, key in row.items():
            if col and col.endswith("_key") and key:
                stage = col[:-4]
                if (stage, key) not in seen:
                    seen.add((stage, key))
                    out.append({"stage": stage, "key": key, "via": f"sweep table {tsv.name}",
                                "variant": row.get("name", "")})
    return out


def read_trace(path: Path) -> list[dict]:
    """The artifacts a notebook's kernel opened or built (:func:`trace_artifacts`'s file), each
    once, in order."""
    if not path.is_file():
        return []
    seen, out = set(), []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        k = (rec.get("stage"), rec.get("key"))
        if k in seen:
            continue
        seen.add(k)
        out.append(rec)
    return out


def trace_artifacts(path: str) -> None:
    """In a notebook's kernel (started by the runner with this as its first line): record every
    artifact the store hands out (stage, key, path, built or reused) in ``path``, one JSON line
    each. The store's behaviour is unchanged; a failed write of the record is ignored. Artifacts
    that other processes build (a Dask sweep's workers) are not seen here: the sweep's table
    names them (:func:`snapshot_stage`)."""
    from . import store

    orig = store.Store.get_or_create
    if getattr(orig, "_llmbrain_traced", False):
        return

    def get_or_create(self, stage, params, build, **kw):
        built = []

        def build_and_note(out):
            built.append(True)
            return build(out)

        art = orig(self, stage, params, build_and_note, **kw)
        try:
            with open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"stage": stage, "key": art.key, "path": str(art.path),
                                    "built": bool(built)}) + "\n")
        except OSError:
            pass
        return art

    get_or_create._llmbrain_traced = True
    store.Store.get_or_create = get_or_create


def glue_headlines(nb) -> dict:
    """The figures a notebook glued (``Recorder.glue_all``: ``hl_*`` names), when the Recorder's
    JSON of it is not at hand: ``{glue name: {"value", "digits": None}}``."""
    out = {}
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            name = (o.get("metadata") or {}).get("scrapbook", {}).get("name")
            text = (o.get("data") or {}).get("application/papermill.record/text/plain")
            if not name or text is None or not name.startswith("hl_"):
                continue
            text = "".join(text) if isinstance(text, list) else str(text)
            value: object = text.strip().strip("'\"")
            for conv in (int, float):
                try:
                    value = conv(text)
                    break
                except ValueError:
                    continue
            out[name[3:]] = {"value": value, "digits": None}
    return out


# ------------------------------------------------------------------------------- figures, tables

def _heading(md: str) -> str | None:
    heads = [line.lstrip("#").strip() for line in md.splitlines() if re.match(r"#{1,6}\s", line)]
    return heads[-1] if heads else None


_TITLE = re.compile(r"(?:suptitle|set_title|title)\s*[(=]\s*[rbu]?([\"'])(.+?)\1")


def _titles(code: str) -> list[str]:
    """Literal figure titles in a code cell (templates with ``{...}`` are left out)."""
    return [m.group(2) for m in _TITLE.finditer(code) if "{" not in m.group(2)]


def _bytes(data, mime: str) -> bytes:
    import base64

    value = "".join(data) if isinstance(data, list) else data
    if mime in ("image/svg+xml",):
        return value.encode("utf-8")
    return base64.b64decode(value)


def export_figures(notebooks: list[Path], dest: Path) -> list[dict]:
    """Write every figure of ``notebooks`` (their PNG/JPEG outputs, and SVG/PDF where an output
    holds one) into ``dest`` (emptied first) as ``NB_cellCCC_K.png`` and a caption line per
    figure in ``dest/captions.tsv`` (notebook, cell, file, vector, caption: the chapter's caption
    of the figure, the markdown cell "**Figure C.N.** ..." that follows the figure's cell; else
    the nearest preceding markdown heading and the figure's literal titles in the cell's code).
    Returns the rows."""
    import nbformat

    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    rows = []
    for path in notebooks:
        nb = nbformat.read(str(path), as_version=4)
        stem = Path(path).stem
        heading = None
        for i, cell in enumerate(nb.cells):
            if cell.cell_type == "markdown":
                heading = _heading(cell.source) or heading
                continue
            if cell.cell_type != "code":
                continue
            k = 0
            for out in cell.get("outputs", []):
                data = out.get("data") or {}
                raster = next((m for m in _RASTER if m in data), None)
                vector = next((m for m in _VECTOR if m in data), None)
                if raster is None and vector is None:
                    continue
                k += 1
                base = f"{stem}_cell{i:03d}_{k}"
                files = {}
                for mime in filter(None, (raster, vector)):
                    ext = {**_RASTER, **_VECTOR}[mime]
                    (dest / f"{base}.{ext}").write_bytes(_bytes(data[mime], mime))
                    files[ext] = f"{base}.{ext}"
                nxt = nb.cells[i + 1] if i + 1 < len(nb.cells) else None
                if nxt is not None and nxt.cell_type == "markdown" and nxt.source.startswith("**Figure "):
                    caption = nxt.source.replace("**", "")
                else:
                    titles = _titles(cell.source)
                    caption = " - ".join(x for x in (heading, "; ".join(titles)) if x) or stem
                rows.append({"notebook": stem, "cell": i,
                             "file": files.get("png") or files.get("jpg") or "",
                             "vector": files.get("svg") or files.get("pdf") or "",
                             "caption": " ".join(caption.split())})
    with open(dest / "captions.tsv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, ["notebook", "cell", "file", "vector", "caption"], delimiter="\t",
                           lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    return rows


def headline_figures(run: RunFolder, notebooks: list[Path]) -> dict[str, dict]:
    """Each notebook's headline figures: the Recorder's JSON this run left (``headlines/``; in
    the order the notebook glued them, which is the order it recorded them), else the figures
    the executed notebook glued (names as glued, digits unknown)."""
    import nbformat

    from .headlines import glue_name

    out = {}
    for path in notebooks:
        stem = Path(path).stem
        glued = glue_headlines(nbformat.read(str(path), as_version=4))
        js = run.headlines / f"{stem}.json"
        if js.is_file():
            try:
                figs = json.loads(js.read_text(encoding="utf-8"))["figures"]
            except (ValueError, KeyError):
                figs = None
            if figs is not None:
                order = {n: i for i, n in enumerate(glued)}
                out[stem] = dict(sorted(figs.items(), key=lambda kv: order.get(
                    glue_name(kv[0])[3:], len(order))))
                continue
        if glued:
            out[stem] = glued
    return out


def export_tables(figures: dict[str, dict], dest: Path) -> list[Path]:
    """``dest/NB.tsv`` per notebook: figure, value, digits (what the notebook recorded)."""
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("*.tsv"):
        if ".sweep-" not in old.name:
            old.unlink()
    written = []
    for stem, figs in figures.items():
        p = dest / f"{stem}.tsv"
        with open(p, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, delimiter="\t", lineterminator="\n")
            w.writerow(["figure", "value", "digits"])
            for name, fig in figs.items():
                v, d = fig.get("value"), fig.get("digits")
                w.writerow([name, "" if v is None else v, "" if d is None else d])
        written.append(p)
    return written


def fmt_value(fig: dict) -> str:
    v, d = fig.get("value"), fig.get("digits")
    if v is None:
        return "n/a"
    if isinstance(v, float) and d is not None:
        return f"{v:.{d}f}"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def headline_lines(figures: dict[str, dict], per_notebook: int = 3) -> list[str]:
    """A few headline figures per notebook, one line each (what ``run`` prints at its end)."""
    lines = []
    for stem, figs in figures.items():
        items = list(figs.items())
        shown = ", ".join(f"{n} {fmt_value(f)}" for n, f in items[:per_notebook])
        more = f" (+{len(items) - per_notebook} more in tables/{stem}.tsv)" if len(items) > per_notebook else ""
        lines.append(f"  {stem:16s} {shown}{more}")
    return lines


def finish(run: RunFolder, manifest: dict, notebooks: list[Path], *, status: str,
           seconds: float) -> dict:
    """Export the figures and tables of ``notebooks`` and complete the manifest."""
    figs = export_figures(notebooks, run.figures)
    headlines = headline_figures(run, notebooks)
    tables = export_tables(headlines, run.tables)
    vector = any(r["vector"] for r in figs)
    manifest.update({
        "status": status,
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "environment": environment(),
        "paths": paths(run),
        "notebooks": [str(p) for p in notebooks],
        "figures": {"count": len(figs), "png": sum(bool(r["file"]) for r in figs),
                    "vector": sum(bool(r["vector"]) for r in figs),
                    "formats": sorted({Path(r[c]).suffix[1:] for r in figs for c in ("file", "vector") if r[c]}),
                    "note": None if vector else PNG_ONLY,
                    "captions": str(run.figures / "captions.tsv")},
        "tables": sorted(str(p) for p in run.tables.glob("*.tsv")) if run.tables.is_dir() else [],
        "headline_figures": {nb: len(f) for nb, f in headlines.items()},
    })
    manifest["invocations"][-1]["seconds"] = round(seconds, 1)
    manifest["invocations"][-1]["status"] = status
    write_manifest(run.folder, manifest)
    return {"figures": figs, "headlines": headlines, "tables": tables}


def summary(run: RunFolder, exported: dict, *, per_notebook: int = 3) -> list[str]:
    """The lines ``run`` prints at its end: where everything went, and the headline numbers."""
    figs = exported["figures"]
    n_vec = sum(bool(r["vector"]) for r in figs)
    fig_words = f"{len(figs)} PNG" + (f", {n_vec} SVG" if n_vec else ", no SVG: run --svg draws them")
    n_nb = len(list(run.notebooks.glob("*.ipynb"))) if run.notebooks.is_dir() else 0
    tables = sorted(run.tables.glob("*.tsv")) if run.tables.is_dir() else []
    lines = [f"run '{run.name}'" + (" (the published book's)" if run.published else "") + f": {run.folder}",
             f"  notebooks  {run.notebooks} ({n_nb})",
             f"  figures    {run.figures} ({fig_words}; captions.tsv)",
             f"  tables     {run.tables} ({len(tables)} TSV)",
             f"  manifest   {run.manifest}",
             f"  book       python -m llmbrain_utils book --run {run.name}"
             + (f" --runs-dir {run.store}" if run.store != config.REPO_RUNS.resolve() else "")]
    hl = headline_lines(exported["headlines"], per_notebook)
    lines += ["headline numbers:"] + hl if hl else ["headline numbers: none recorded by this run's notebooks"]
    return lines


# ------------------------------------------------------------------------------- a run's book

def find_run(name: str, runs_dir=None) -> RunFolder:
    """The run folder ``name`` under ``runs_dir``'s ``books/`` (default store otherwise)."""
    check_name(name)
    store = Path(runs_dir).resolve() if runs_dir else store_root({})
    folder = books_root(store) / name
    man = read_manifest(folder)
    if man is None:
        known = sorted(p.name for p in books_root(store).glob("*") if (p / MANIFEST).is_file()) \
            if books_root(store).is_dir() else []
        raise InputError(folder, f"no run named '{name}'",
                         expected=f"one of {known}" if known else "`python -m llmbrain_utils run --name NAME` first")
    p = man.get("paths", {})
    return RunFolder(name, folder, Path(p.get("notebooks", folder / "notebooks")), store,
                     bool(man.get("published_book")), man.get("params_file"), man.get("parameters", {}))


def book_sources(run: RunFolder, notebooks: list[str]) -> tuple[dict, dict, str]:
    """The run's book: ``_config.yml`` (the project's, its paths made absolute, the run's title,
    only the run folder's sources), ``_toc.yml`` (an index page and the run's notebooks in stage
    order) and the index page's text."""
    import yaml

    cfg = yaml.safe_load((REPO / "_config.yml").read_text(encoding="utf-8"))
    cfg["title"] = f"llmbrain run: {run.name}"
    cfg["only_build_toc_files"] = True
    cfg["exclude_patterns"] = ["_build/*", "figures/*", "tables/*", "headlines/*", "**.ipynb_checkpoints"]
    cfg.pop("bibtex_bibfiles", None)  # the notebooks cite nothing; the pages that do are the book's
    cfg.setdefault("execute", {})["execute_notebooks"] = "off"
    sphinx = cfg.setdefault("sphinx", {}).setdefault("config", {})
    sphinx.pop("bibtex_reference_style", None)
    static = REPO / "book" / "_static"
    if (static / "embed-amd.js").is_file() and (static / "mathjax").is_dir():
        sphinx["html_static_path"] = [str(static)]  # the local widget manager and MathJax
    else:  # not fetched (tools/fetch_widget_js.sh): myst-nb's and Sphinx's defaults
        for k in ("html_static_path", "mathjax_path", "nb_ipywidgets_js"):
            sphinx.pop(k, None)
    toc = {"format": "jb-book", "root": "index",
           "parts": [{"caption": "The stages (executed notebooks)",
                      "chapters": [{"file": f"notebooks/{Path(n).stem}"} for n in notebooks]}]}
    man = read_manifest(run.folder) or {}
    params = yaml.safe_dump(man.get("parameters", run.parameters), sort_keys=True).rstrip() or "{}"
    index = (f"# Run `{run.name}`\n\n"
             f"The notebooks of the run `{run.name}`, executed with these parameters"
             f" ({man.get('params_file') or 'the defaults'}):\n\n```yaml\n{params}\n```\n\n"
             "Its figures (PNG, with `captions.tsv`), headline tables (TSV) and `manifest.json` "
             f"lie beside this book, in `{run.folder}`.\n")
    return cfg, toc, index


def build_book(name: str, runs_dir=None, *, strict: bool = True) -> Path:
    """Build the Jupyter Book of run ``name`` into ``<run>/_build/html``; return its index page.

    The book's sources are the run folder: ``_config.yml``, ``_toc.yml``, ``index.md`` are
    written there, and the notebooks of a run that keeps them elsewhere (the default run's
    ``book/executed/``) are copied into its ``notebooks/`` first."""
    import subprocess

    import yaml

    from .config import CHAPTERS as STAGES

    run = find_run(name, runs_dir)
    local = run.folder / "notebooks"
    if run.notebooks.resolve() != local.resolve():
        local.mkdir(parents=True, exist_ok=True)
        for nb in STAGES.values():
            if (run.notebooks / nb).is_file():
                shutil.copyfile(run.notebooks / nb, local / nb)
    notebooks = [nb for nb in STAGES.values() if (local / nb).is_file()]
    if not notebooks:
        raise InputError(local, "the run has no executed notebook", expected="a run that executed a stage")
    cfg, toc, index = book_sources(run, notebooks)
    for fname, text in (("_config.yml", yaml.safe_dump(cfg, sort_keys=False)),
                        ("_toc.yml", yaml.safe_dump(toc, sort_keys=False)), ("index.md", index)):
        (run.folder / fname).write_text(text, encoding="utf-8")
    exe = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(exe), "build", str(run.folder), "--builder", "html"]
    if strict:
        cmd += ["-W", "-n", "--keep-going"]
    print("[llmbrain] " + " ".join(cmd), flush=True)
    rc = subprocess.run(cmd, cwd=run.folder).returncode
    if rc != 0:
        raise InputError(run.folder, f"the book build failed (jupyter-book exit status {rc}; its "
                         "warnings are errors: they are printed above)",
                         expected="a build without warnings, or `book --run NAME --no-strict`")
    page = run.folder / "_build" / "html" / "index.html"
    if not page.is_file():
        raise InputError(page, "the book build wrote no index page")
    return page
