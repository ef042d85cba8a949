"""The chapters' sources (``notebooks/*.py``, jupytext percent scripts) and the one declaration
of the run parameters (``config.PARAMS``): the scripts lint clean, agree with the notebooks
nbval reads, and their parameters cells, the book's parameter table and ``params/*.yaml`` agree
with the declaration."""

import pickle
import shutil

import nbformat
import pytest
import yaml
from pyflakes.api import check as pyflakes_check
from pyflakes.reporter import Reporter

from llmbrain_utils import config, notebooks
from llmbrain_utils.errors import ParameterError


def test_scripts_notebooks_and_parameter_table_agree():
    """Every notebook's cells are its script's, every parameters cell and book/parameters.md
    are generated from config.PARAMS (`python -m llmbrain_utils notebooks` fixes what this
    reports)."""
    assert notebooks.sync(check=True) == []


def test_every_chapter_has_a_script():
    for chapter in config.CHAPTERS:
        assert notebooks.script(chapter).is_file(), chapter
    scripts = sorted(p.name for p in notebooks.NOTEBOOKS.glob("*.py"))
    assert scripts == sorted(notebooks.script(c).name for c in config.CHAPTERS)


def test_scripts_lint_clean(capsys):
    """pyflakes, as on the package: no unused import, no undefined name (IPython's `display`
    is imported, not assumed)."""
    import io

    out, err = io.StringIO(), io.StringIO()
    n = 0
    for chapter in config.CHAPTERS:
        path = notebooks.script(chapter)
        n += pyflakes_check(path.read_text(encoding="utf-8"), str(path), Reporter(out, err))
    assert n == 0, out.getvalue() + err.getvalue()


def test_every_chapter_is_short_narrative_over_package_calls():
    """At most 60 code lines a chapter (its generated parameters cell aside): what a chapter
    computes, draws or concludes lives in llmbrain_utils.chapters, where it is tested."""
    lines = {c: notebooks.code_lines(c) for c in config.CHAPTERS}
    assert max(lines.values()) <= 60, lines
    assert min(lines.values()) > 0


def test_parameters_cells_declare_each_chapters_upstream_sections():
    assert notebooks.chapter_sections("stimulus") == ["stimulus"]
    assert notebooks.chapter_sections("fmri") == ["stimulus", "fmri"]  # the story, not the model
    assert notebooks.chapter_sections("encoding") == ["stimulus", "extraction", "dictionary",
                                                      "fmri", "encoding"]
    assert notebooks.chapter_sections("cross_model") == list(config.CHAPTERS)
    ns: dict = {}
    exec(notebooks.parameters_cell("fbn"), ns)
    declared = {k: v for k, v in ns.items() if not k.startswith("__")}
    expected = {n: p.default for n, p in config.PARAMS.items()
                if p.section in notebooks.chapter_sections("fbn")}
    assert declared == expected


def test_every_declared_parameter_is_in_a_chapter_and_documented():
    assert {p.section for p in config.PARAMS.values()} <= set(config.CHAPTERS)
    table = notebooks.parameter_table()
    for name, p in config.PARAMS.items():
        assert f"| `{name}` |" in table, name
        assert p.reason and config.allowed(name)


@pytest.mark.parametrize("path", sorted(config.DEFAULT_PARAMS.parent.glob("*.yaml")),
                         ids=lambda p: p.name)
def test_parameter_files_name_declared_parameters(path):
    """Each section of a parameter file names parameters its chapter declares (a sweep spec's
    points are checked by the sweep); the default run states only declared defaults."""
    data = yaml.safe_load(path.read_text()) or {}
    if "grid" in data or "points" in data:  # a sweep spec
        pytest.skip("a sweep spec: its own parser checks it (test_sweep)")
    for section, values in data.items():
        allowed = (set(config.PARAMS) if section == "common" else
                   {n for n, p in config.PARAMS.items()
                    if p.section in notebooks.chapter_sections(section)})
        assert set(values or {}) <= allowed, (path.name, section, set(values) - allowed)
        if path == config.DEFAULT_PARAMS:
            for name, value in (values or {}).items():
                assert value == config.PARAMS[name].default, (name, value)


def test_params_are_typed_immutable_and_checked_once():
    p = config.validate({"k": 32})
    assert p.k == 32 and p["k"] == 32 and p.lam == config.PARAMS["lam"].default
    assert config.validate(p) is p  # a validated set is not re-checked
    with pytest.raises(AttributeError, match="immutable"):
        p.k = 16
    with pytest.raises(TypeError):
        p["k"] = 16  # type: ignore[index]
    with pytest.raises(AttributeError, match="did you mean 'lam'"):
        p.lamb
    q = p.replace(k=16)
    assert q.k == 16 and p.k == 32
    with pytest.raises(ParameterError, match="an integer >= 1"):
        p.replace(k=0)
    r = pickle.loads(pickle.dumps(p))  # the sweep's workers get them pickled
    assert dict(r) == dict(p) and isinstance(r, config.Params)
    with pytest.raises(TypeError, match="config.validate"):
        config.Params({"k": 0})
    assert dict(p, k=8)["k"] == 8  # a plain copy for overrides


def test_defaults_are_not_shared_between_runs():
    a = config.validate({})
    a.variants.append({"name": "x"})  # a list default must be a fresh copy per run
    assert config.validate({}).variants == config.PARAMS["variants"].default
    assert {"name": "x"} not in config.PARAMS["variants"].default


def test_sync_carries_a_script_edit_and_keeps_the_other_outputs(tmp_path, monkeypatch):
    """An edited markdown cell reaches the notebook; every code cell keeps its saved output."""
    for chapter in ("stimulus",):
        shutil.copy(notebooks.script(chapter), tmp_path)
        shutil.copy(notebooks.notebook(chapter), tmp_path)
    monkeypatch.setattr(notebooks, "NOTEBOOKS", tmp_path)
    monkeypatch.setattr(notebooks, "TABLE_PAGE", tmp_path / "parameters.md")
    script = notebooks.script("stimulus")
    text = script.read_text()
    script.write_text(text.replace("# # 1. Stimulus", "# # 1. Stimulus (edited)", 1))
    before = nbformat.read(str(notebooks.notebook("stimulus")), as_version=4)
    changed = notebooks.sync(["stimulus"])
    assert "00_stimulus.ipynb: cells from 00_stimulus.py" in changed
    after = nbformat.read(str(notebooks.notebook("stimulus")), as_version=4)
    assert after.cells[0].source.startswith("# 1. Stimulus (edited)")
    outs = [(c.source, c.outputs) for c in before.cells if c.cell_type == "code"]
    assert outs == [(c.source, c.outputs) for c in after.cells if c.cell_type == "code"]
    assert any(o for _, o in outs)
    assert notebooks.sync(["stimulus"], check=True) == []
