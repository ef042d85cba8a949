"""A run is a named, self-contained output (issue #20, item 1): ``<store>/books/NAME/`` holds its
executed notebooks, figures (PNG, SVG with --svg, captions.tsv), headline tables (TSV) and
manifest.json; two runs with other parameters never share a folder; a name reused with other
parameters is refused; ``book --run NAME`` builds a book of the run.

Cheap: the real runs execute only the stimulus notebook (about 5 s each) into a scratch store;
the exporters and the book are tested on a small synthetic executed notebook."""

from __future__ import annotations

import base64
import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from llmbrain_utils import headlines, pipeline, runfolder
from llmbrain_utils.errors import ParameterError

REPO = Path(__file__).resolve().parents[1]
# the smallest valid PNG (1 x 1, one grey pixel)
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAAAAAA6fptVAAAACklEQVR4nGNgAAAAAgABc3UBGAAAAABJRU5ErkJggg==")
SVG = '<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"><rect width="4" height="4"/></svg>'


def _params(tmp: Path, name: str, doc: dict) -> Path:
    p = tmp / f"{name}.yaml"
    p.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return p


@pytest.fixture
def no_book(tmp_path, monkeypatch):
    """The published book's folder, moved to the scratch folder: a named run must not write it."""
    path = tmp_path / "book-executed"
    monkeypatch.setattr(pipeline, "EXECUTED", path)
    return path


# --------------------------------------------------------------------------- real runs (stimulus)

def test_two_runs_with_other_parameters_keep_their_own_folders(tmp_path, no_book):
    runs = tmp_path / "runs"
    a = _params(tmp_path, "lucy", {"common": {"seed": 1}})
    b = _params(tmp_path, "lucy-slow", {"common": {"seed": 1}, "stimulus": {"tr_s": 2.0}})
    ra = pipeline.execute(a, only=["stimulus"], runs_dir=str(runs))
    rb = pipeline.execute(b, only=["stimulus"], runs_dir=str(runs))
    assert ra.run.name.startswith("lucy-") and rb.run.name.startswith("lucy-slow-")
    assert ra.run.folder != rb.run.folder and ra.run.folder.parent == rb.run.folder.parent == runs / "books"
    assert not no_book.exists()  # the published book's notebooks are untouched
    keys = []
    for r, tr_s in ((ra, 1.5), (rb, 2.0)):
        nb = nbformat.read(r.run.folder / "notebooks" / "00_stimulus.ipynb", as_version=4)
        assert nb.metadata["llmbrain"]["parameters"].get("tr_s", 1.5) == tr_s
        man = json.loads((r.run.folder / "manifest.json").read_text())
        assert man["status"] == "complete" and man["name"] == r.run.name
        assert man["parameters"] == json.loads(json.dumps(yaml.safe_load(
            (a if r is ra else b).read_text())))
        arts = man["stages"]["stimulus"]["artifacts"]
        assert [x["stage"] for x in arts] == ["stimulus"]
        assert (runs / "stimulus" / arts[0]["key"] / "artifact.json").is_file()
        keys.append(arts[0]["key"])
        assert man["environment"]["versions"]["llmbrain_utils"].startswith("0.")
        assert man["figures"]["png"] == 1 and man["figures"]["note"] == runfolder.PNG_ONLY
        assert man["invocations"][-1]["records"][0]["status"] == "executed"
        assert (r.run.folder / "figures" / "00_stimulus_cell006_1.png").read_bytes()[:4] == b"\x89PNG"
    assert keys[0] != keys[1]
    # a rerun reuses its folder and its notebook; the other run's folder is untouched
    before = (rb.run.folder / "notebooks" / "00_stimulus.ipynb").stat().st_mtime_ns
    again = pipeline.execute(a, only=["stimulus"], runs_dir=str(runs))
    assert again.run.folder == ra.run.folder and [r["status"] for r in again.records] == ["unchanged"]
    assert (rb.run.folder / "notebooks" / "00_stimulus.ipynb").stat().st_mtime_ns == before
    man = json.loads((ra.run.folder / "manifest.json").read_text())
    assert len(man["invocations"]) == 2 and man["stages"]["stimulus"]["artifacts"][0]["key"] == keys[0]


def test_same_name_other_parameters_is_refused_unless_forced(tmp_path, no_book):
    runs = tmp_path / "runs"
    a = _params(tmp_path, "a", {"common": {"seed": 1}})
    b = _params(tmp_path, "b", {"common": {"seed": 2}})
    first = pipeline.execute(a, only=["stimulus"], runs_dir=str(runs), name="mine")
    folder = runs / "books" / "mine"
    assert first.run.folder == folder
    with pytest.raises(ParameterError) as e:
        pipeline.execute(b, only=["stimulus"], runs_dir=str(runs), name="mine")
    msg = str(e.value)
    assert "parameter '--name'" in msg and "common.seed: 1 -> 2" in msg and "--force" in msg
    assert str(folder) in msg and "\n" not in msg
    built = [d for d in (runs / "stimulus").iterdir() if (d / "artifact.json").is_file()]
    assert len(built) == 1  # nothing ran for the refused run
    assert json.loads((folder / "manifest.json").read_text())["parameters"] == {"common": {"seed": 1}}
    # --force replaces that run
    forced = pipeline.execute(b, only=["stimulus"], runs_dir=str(runs), name="mine", force=True)
    assert [r["status"] for r in forced.records] == ["executed"]
    man = json.loads((folder / "manifest.json").read_text())
    assert man["parameters"] == {"common": {"seed": 2}} and len(man["invocations"]) == 1


def test_cli_says_where_everything_went(tmp_path):
    runs = tmp_path / "runs"
    p = _params(tmp_path, "mine", {"common": {"seed": 3}})
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-m", "llmbrain_utils", "run", "--params", str(p), "--only",
                        "stimulus", "--runs-dir", str(runs), "--name", "cli-run", "--svg"],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    folder = runs / "books" / "cli-run"
    out = r.stdout
    assert f"run 'cli-run': {folder}" in out
    for what, path in (("notebooks", "notebooks"), ("figures", "figures"), ("tables", "tables"),
                       ("manifest", "manifest.json")):
        assert f"  {what:10s} {folder / path}" in out, out
    assert "book --run cli-run" in out and "headline numbers" in out
    assert "1 PNG, 1 SVG" in out
    assert (folder / "figures" / "00_stimulus_cell006_1.svg").read_text().lstrip().startswith(("<?xml", "<svg"))
    rows = list(csv.DictReader(open(folder / "figures" / "captions.tsv"), delimiter="\t"))
    assert rows[0]["vector"] == "00_stimulus_cell006_1.svg"
    assert rows[0]["caption"].startswith("Figure 1.1. ") and "words per TR" in rows[0]["caption"]  # the chapter's
    man = json.loads((folder / "manifest.json").read_text())
    assert man["figures"]["formats"] == ["png", "svg"] and man["figures"]["note"] is None


# --------------------------------------------------------------------------- names

def test_names_and_the_published_run(tmp_path):
    p = {"common": {"seed": 1, "runs_dir": str(tmp_path / "s1")}}
    q = {"common": {"seed": 1, "runs_dir": str(tmp_path / "s2")}}
    name = runfolder.default_name(tmp_path / "my params.yaml", p)
    assert name.startswith("my-params-") and runfolder.NAME.fullmatch(name)
    assert name == runfolder.default_name(tmp_path / "my params.yaml", q)  # runs_dir is no parameter
    assert name != runfolder.default_name(tmp_path / "my params.yaml", {"common": {"seed": 2}})
    for bad in ("../x", "a/b", "", ".hidden", "x" * 81):
        with pytest.raises(ParameterError, match="'--name'"):
            runfolder.check_name(bad)
    published = runfolder.plan(p, None, name=None, published_default=True, executed_dir=tmp_path / "exe")
    assert published.published and published.name == "default"
    assert published.notebooks == (tmp_path / "exe").resolve()
    named = runfolder.plan(p, None, name="mine", published_default=True, executed_dir=tmp_path / "exe")
    assert not named.published and named.notebooks == tmp_path / "s1" / "books" / "mine" / "notebooks"
    # the published run follows params/default.yaml: other parameters replace it, no refusal
    runfolder.start(published, runfolder.claim(published, force=False), only=None, force=False)
    changed = runfolder.plan({"common": {"seed": 5, "runs_dir": str(tmp_path / "s1")}}, None,
                             name=None, published_default=True, executed_dir=tmp_path / "exe")
    assert runfolder.claim(changed, force=False) is None
    # a folder that is no run folder is not taken over
    stray = runfolder.plan(p, None, name="stray", published_default=False, executed_dir=tmp_path)
    stray.folder.mkdir(parents=True)
    (stray.folder / "notes.txt").write_text("mine")
    with pytest.raises(ParameterError, match="holds no manifest.json"):
        runfolder.claim(stray, force=False)


# --------------------------------------------------------------------------- export (synthetic)

def _synthetic_notebook(path: Path) -> Path:
    """An executed notebook: a heading, a figure cell (PNG) with a title in its code, a cell
    with PNG and SVG, a text-only cell, and a glued headline figure."""
    nb = nbformat.v4.new_notebook(metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"}})
    png = base64.b64encode(PNG).decode()
    fig1 = nbformat.v4.new_code_cell('ax.set_title("Words per TR")\nax.set_title(f"atom {a}")')
    fig1.outputs = [nbformat.v4.new_output("display_data", data={"image/png": png, "text/plain": "<Figure>"})]
    fig2 = nbformat.v4.new_code_cell("plot()")
    fig2.outputs = [nbformat.v4.new_output("display_data", data={"image/png": png, "image/svg+xml": SVG})]
    text = nbformat.v4.new_code_cell("print(1)")
    text.outputs = [nbformat.v4.new_output("stream", name="stdout", text="1\n")]
    glue = nbformat.v4.new_code_cell("hl.glue_all()")
    glue.outputs = [nbformat.v4.new_output(
        "display_data", data={"application/papermill.record/text/plain": "0.4123"},
        metadata={"scrapbook": {"name": "hl_r2", "mime_prefix": "application/papermill.record/"}})]
    nb.cells = [nbformat.v4.new_markdown_cell("# 1. Stimulus\n\nText."), fig1,
                nbformat.v4.new_markdown_cell("## Pauses\n\nMore text."), text, fig2, glue]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


def _run_folder(tmp_path: Path, name: str = "synth") -> runfolder.RunFolder:
    params = {"common": {"seed": 1, "runs_dir": str(tmp_path / "store")}}
    rf = runfolder.plan(params, tmp_path / "p.yaml", name=name, published_default=False,
                        executed_dir=tmp_path / "unused")
    runfolder.start(rf, runfolder.claim(rf, force=False), only=None, force=False)
    return rf


def test_runs_sharing_a_store_keep_their_own_headline_figures(tmp_path, monkeypatch):
    """Two runs on one store write the same notebook's figures at the same time: each kernel
    writes into its own run folder (LLMBRAIN_HEADLINES_DIR, set by the pipeline), so neither
    run's folder gets the other's values; the store keeps a whole copy of the last to end."""
    store = tmp_path / "runs"
    a, b = tmp_path / "a" / "headlines", tmp_path / "b" / "headlines"
    since = __import__("time").time() - 1
    monkeypatch.setenv("LLMBRAIN_HEADLINES_DIR", str(a))
    rec_a = headlines.Recorder("04_encoding", {"runs_dir": str(store)}, spread={})
    monkeypatch.setenv("LLMBRAIN_HEADLINES_DIR", str(b))
    rec_b = headlines.Recorder("04_encoding", {"runs_dir": str(store)}, spread={})
    for i in range(3):  # interleaved, as two kernels would
        rec_a.add(f"x{i}", 1.0 + i)
        rec_b.add(f"x{i}", 10.0 + i)
    assert not (store / "headlines").exists()
    got = {k: json.loads((d / "04_encoding.json").read_text())["figures"]["x2"]["value"]
           for k, d in (("a", a), ("b", b))}
    assert got == {"a": 3.0, "b": 12.0}
    for d, value in ((a, 3.0), (b, 12.0)):  # each run's snapshot, as its notebook ends
        fake = type("RF", (), {"store": store, "headlines": d, "tables": d.parent / "tables"})()
        left = runfolder.snapshot_stage(fake, "04_encoding.ipynb", since)
        assert Path(left["headlines"]) == d / "04_encoding.json"
        assert headlines.read_run(store)["04_encoding"]["x2"]["value"] == value


def test_figures_tables_and_manifest_from_a_synthetic_notebook(tmp_path):
    rf = _run_folder(tmp_path)
    nb1 = _synthetic_notebook(rf.notebooks / "00_stimulus.ipynb")
    nb2 = _synthetic_notebook(rf.notebooks / "02_dictionary.ipynb")
    # the dictionary notebook's Recorder wrote its JSON into the store during the run
    since = __import__("time").time() - 1
    rec = headlines.Recorder("02_dictionary", {"runs_dir": str(rf.store)}, spread={})
    rec.add("r2", 0.41234, digits=2)
    rec.add("atoms_unused", 3)
    sweeps = rf.store / "sweeps"
    sweeps.mkdir(parents=True)
    (sweeps / "cross_model.tsv").write_text("name\tstatus\textraction_key\tdictionary_key\n"
                                            "base\tdone\taaaa\tbbbb\nctrl\tdone\taaaa\tcccc\n")
    left = runfolder.snapshot_stage(rf, "02_dictionary.ipynb", since)
    assert Path(left["headlines"]) == rf.headlines / "02_dictionary.json"
    assert [(x["stage"], x["key"]) for x in left["sweep_artifacts"]] == [
        ("extraction", "aaaa"), ("dictionary", "bbbb"), ("dictionary", "cccc")]
    assert runfolder.snapshot_stage(rf, "00_stimulus.ipynb", __import__("time").time() + 60) == {
        "headlines": None, "sweeps": [], "sweep_artifacts": []}  # older files are another run's
    man = json.loads(rf.manifest.read_text())
    exported = runfolder.finish(rf, man, [nb1, nb2], status="complete", seconds=1.0)

    rows = list(csv.DictReader(open(rf.figures / "captions.tsv"), delimiter="\t"))
    assert [(r["notebook"], r["cell"], r["file"], r["vector"]) for r in rows] == [
        ("00_stimulus", "1", "00_stimulus_cell001_1.png", ""),
        ("00_stimulus", "4", "00_stimulus_cell004_1.png", "00_stimulus_cell004_1.svg"),
        ("02_dictionary", "1", "02_dictionary_cell001_1.png", ""),
        ("02_dictionary", "4", "02_dictionary_cell004_1.png", "02_dictionary_cell004_1.svg")]
    assert rows[0]["caption"] == "1. Stimulus - Words per TR"  # the template title is left out
    assert rows[1]["caption"] == "Pauses"
    assert (rf.figures / "00_stimulus_cell001_1.png").read_bytes() == PNG
    assert (rf.figures / "00_stimulus_cell004_1.svg").read_text() == SVG
    assert len(exported["figures"]) == 4

    # tables: the Recorder's JSON where this run left one, else the glued figures
    t2 = list(csv.reader(open(rf.tables / "02_dictionary.tsv"), delimiter="\t"))
    # in the order the notebook glued them (r2 first), not the JSON's sorted order
    assert t2 == [["figure", "value", "digits"], ["r2", "0.41234", "2"], ["atoms_unused", "3", "3"]]
    t0 = list(csv.reader(open(rf.tables / "00_stimulus.tsv"), delimiter="\t"))
    assert t0 == [["figure", "value", "digits"], ["r2", "0.4123", ""]]
    assert (rf.tables / "02_dictionary.sweep-cross_model.tsv").is_file()

    man = json.loads(rf.manifest.read_text())
    assert man["status"] == "complete" and man["figures"]["count"] == 4
    assert man["figures"]["formats"] == ["png", "svg"] and man["figures"]["note"] is None
    assert man["headline_figures"] == {"00_stimulus": 1, "02_dictionary": 2}
    assert man["paths"]["figures"] == str(rf.figures) and man["parameters"] == {"common": {"seed": 1}}
    lines = runfolder.summary(rf, exported)
    assert lines[0] == f"run 'synth': {rf.folder}"
    assert any(line.startswith("  02_dictionary") and "r2 0.41" in line for line in lines)


def test_png_only_is_stated_in_the_manifest(tmp_path):
    rf = _run_folder(tmp_path, "pngonly")
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("plot()")
    cell.outputs = [nbformat.v4.new_output("display_data", data={"image/png": base64.b64encode(PNG).decode()})]
    nb.cells = [cell]
    path = rf.notebooks / "00_stimulus.ipynb"
    nbformat.write(nb, str(path))
    runfolder.finish(rf, json.loads(rf.manifest.read_text()), [path], status="complete", seconds=0.1)
    man = json.loads(rf.manifest.read_text())
    assert man["figures"]["note"] == runfolder.PNG_ONLY and man["figures"]["formats"] == ["png"]
    rows = list(csv.DictReader(open(rf.figures / "captions.tsv"), delimiter="\t"))
    assert rows == [{"notebook": "00_stimulus", "cell": "0", "file": "00_stimulus_cell000_1.png",
                     "vector": "", "caption": "00_stimulus"}]


# --------------------------------------------------------------------------- the run's book

def test_run_book_sources(tmp_path):
    rf = _run_folder(tmp_path, "booked")
    cfg, toc, index = runfolder.book_sources(rf, ["00_stimulus.ipynb", "02_dictionary.ipynb"])
    assert toc["root"] == "index"
    assert [c["file"] for c in toc["parts"][0]["chapters"]] == ["notebooks/00_stimulus", "notebooks/02_dictionary"]
    assert cfg["title"] == "llmbrain run: booked" and cfg["only_build_toc_files"] is True
    assert cfg["execute"]["execute_notebooks"] == "off" and "bibtex_bibfiles" not in cfg
    assert "_build/*" in cfg["exclude_patterns"]
    static = cfg["sphinx"]["config"].get("html_static_path")
    assert static is None or all(Path(s).is_absolute() and Path(s).is_dir() for s in static)
    assert "# Run `booked`" in index and "seed: 1" in index


@pytest.mark.skipif(shutil.which("jupyter-book", path=str(Path(sys.executable).parent)) is None,
                    reason="jupyter-book is not installed beside this interpreter")
def test_run_book_builds(tmp_path, capsys):
    """The real build (jupyter-book, warnings as errors) of a run with one synthetic notebook:
    a few seconds, no kernel."""
    rf = _run_folder(tmp_path, "tiny")
    _synthetic_notebook(rf.notebooks / "00_stimulus.ipynb")
    index = runfolder.build_book("tiny", rf.store)
    assert index == rf.folder / "_build" / "html" / "index.html"
    page = (rf.folder / "_build" / "html" / "notebooks" / "00_stimulus.html").read_text()
    assert page.count("<img") >= 2 and "Traceback" not in page
    assert (rf.folder / "_toc.yml").is_file() and (rf.folder / "_config.yml").is_file()
    with pytest.raises(Exception, match="no run named 'nope'"):
        runfolder.build_book("nope", rf.store)


def test_the_default_run_still_writes_the_published_books_notebooks(tmp_path, no_book):
    """No --name, params/default.yaml: the notebooks go to book/executed/ (here moved to the
    scratch folder), the figures, tables and manifest to books/default/."""
    runs = tmp_path / "runs"
    result = pipeline.execute(None, only=["stimulus"], runs_dir=str(runs))
    assert result.run.name == "default" and result.run.published
    assert (no_book / "00_stimulus.ipynb").is_file()
    folder = runs / "books" / "default"
    assert not (folder / "notebooks").exists()
    man = json.loads((folder / "manifest.json").read_text())
    assert man["published_book"] is True and man["paths"]["notebooks"] == str(no_book.resolve())
    assert man["parameters"] == runfolder.run_parameters(pipeline.load_params(None))
    assert (folder / "figures" / "00_stimulus_cell006_1.png").is_file()
    assert "(the published book's)" in result.summary()[0]
