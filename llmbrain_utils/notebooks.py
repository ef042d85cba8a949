"""The chapters' sources: jupytext percent scripts ``notebooks/NN_name.py``, paired with the
``notebooks/NN_name.ipynb`` files that papermill runs and nbval compares.

The script is what one edits and reviews (and what the tests lint); the ``.ipynb`` holds the
same cells plus the saved outputs of the default run. :func:`sync` carries a script's cells
into its notebook, keeping the outputs of every cell whose source did not change, and rewrites
each script's ``parameters`` cell and the book's parameter table (``book/parameters.md``)
from the one declaration of the parameters
(:data:`llmbrain_utils.config.PARAMS`): a chapter declares the parameters of its stage and of
every stage upstream of it (:data:`llmbrain_utils.stages.TABLE`), so every notebook runs on
its own. ``python -m llmbrain_utils notebooks`` runs it; ``--check`` only reports.
"""

from __future__ import annotations

import json
from pathlib import Path

from . import config, stages

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
#: percent scripts with no notebook metadata header; cells keep their tags (and myst-nb's)
FORMAT = {"extension": ".py", "format_name": "percent", "notebook_metadata_filter": "-all",
          "cell_metadata_filter": "tags,mystnb"}
_HEADER = "# Parameters (papermill overrides these)"


def script(chapter: str) -> Path:
    """``notebooks/NN_name.py``: the chapter's source."""
    return NOTEBOOKS / Path(config.CHAPTERS[chapter]).with_suffix(".py").name


def notebook(chapter: str) -> Path:
    return NOTEBOOKS / config.CHAPTERS[chapter]


def chapter_sections(chapter: str) -> list[str]:
    """The parameter sections a chapter declares: its own and those of every chapter whose
    stages its chain stages read, in the book's order."""
    seen: set[str] = set()
    todo = [s.name for s in stages.CHAIN.values() if s.chapter == chapter]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += [up for up, _ in stages.TABLE[name].upstream]
    need = {stages.TABLE[name].chapter for name in seen} | {chapter}
    return [c for c in config.CHAPTERS if c in need]


def _literal(value) -> str:
    """A default as Python source, in the notebooks' style (double quotes, one variant a line)."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_literal(k)}: {_literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        if value and all(isinstance(v, dict) for v in value):
            return "[\n" + "".join(f"    {_literal(v)},\n" for v in value) + "]"
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    return repr(value)


def parameters_cell(chapter: str) -> str:
    """The source of a chapter's ``parameters`` cell, generated from :data:`config.PARAMS`."""
    sections = chapter_sections(chapter)
    lines = [_HEADER]
    lines += [f"{name} = {_literal(p.default)}" for name, p in config.PARAMS.items()
              if p.section in sections]
    return "\n".join(lines)


TABLE_PAGE = ROOT / "book" / "parameters.md"


def parameter_table() -> str:
    """The book's page of every run parameter (``book/parameters.md``), from :data:`config.PARAMS`:
    per chapter, each parameter's default, its allowed values in words and the reason."""
    out = ["# Parameters", "",
           "Every parameter of a run, declared once in `llmbrain_utils.config.PARAMS` (this page is",
           "generated from it by `python -m llmbrain_utils notebooks`). A parameter file",
           "(`params/default.yaml`) sets them per chapter or under `common`; a notebook run with",
           "papermill takes them as its parameters (`-p k 32`). Each chapter declares its own",
           "parameters and those of the chapters it reads, so that it runs on its own.", ""]
    for chapter in config.CHAPTERS:
        rows = [(n, p) for n, p in config.PARAMS.items() if p.section == chapter]
        if not rows:
            continue
        out += [f"## {chapter} (`{config.CHAPTERS[chapter]}`)", "",
                "| parameter | default | allowed | why |", "|---|---|---|---|"]
        for name, p in rows:
            default = "(13 variants)" if name == "variants" else _literal(p.default)
            cells = [f"`{name}`", f"`{default}`", config.allowed(name), p.reason]
            out.append("| " + " | ".join(c.replace("|", "\\|").replace("$", "\\$") for c in cells) + " |")
        out.append("")
    return "\n".join(out)


def code_lines(chapter: str) -> int:
    """A chapter's code lines: non-blank, non-comment lines of its code cells, its parameters
    cell left out (generated)."""
    import jupytext

    nb = jupytext.read(script(chapter), fmt=FORMAT)
    return sum(1 for c in nb.cells if c.cell_type == "code"
               and "parameters" not in c.metadata.get("tags", [])
               for line in c.source.splitlines() if line.strip() and not line.lstrip().startswith("#"))


def _params_index(nb) -> int:
    found = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    if len(found) != 1:
        raise ValueError(f"{len(found)} cells tagged 'parameters' (expected one)")
    return found[0]


def _stable_ids(nb) -> None:
    # stable ids: a regenerated notebook differs only where its cells do
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"c{i:03d}-{cell.cell_type[:4]}"


def _cells(nb) -> list[tuple]:
    return [(c.cell_type, c.source, sorted(c.metadata.get("tags", []))) for c in nb.cells]


def sync(chapters=None, *, check: bool = False) -> list[str]:
    """Rewrite each chapter's parameters cell in its script and carry the script's cells into
    its ``.ipynb`` (outputs kept where a cell's source is unchanged). Returns what changed (or,
    with ``check``, what would change, writing nothing)."""
    import jupytext
    import nbformat
    from jupytext.combine import combine_inputs_with_outputs

    changed = []
    table = parameter_table()
    if not TABLE_PAGE.is_file() or TABLE_PAGE.read_text(encoding="utf-8") != table:
        changed.append(f"{TABLE_PAGE.name}: the parameter table")
        if not check:
            TABLE_PAGE.write_text(table, encoding="utf-8")
    for chapter in chapters or config.CHAPTERS:
        src_path, nb_path = script(chapter), notebook(chapter)
        text = src_path.read_text(encoding="utf-8")
        source = jupytext.reads(text, fmt=FORMAT)
        try:
            i = _params_index(source)
        except ValueError as e:
            raise ValueError(f"{src_path}: {e}") from None
        source.cells[i].source = parameters_cell(chapter)
        new_text = jupytext.writes(source, fmt=FORMAT)
        if new_text != text:
            changed.append(f"{src_path.name}: parameters cell")
            if not check:
                src_path.write_text(new_text, encoding="utf-8")
        old = nbformat.read(str(nb_path), as_version=4) if nb_path.is_file() else None
        if old is not None and _cells(old) == _cells(source):
            continue
        changed.append(f"{nb_path.name}: cells from {src_path.name}")
        if check:
            continue
        new = combine_inputs_with_outputs(source, old, fmt=FORMAT) if old is not None else source
        new.metadata = old.metadata if old is not None else {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"}}
        new.metadata.pop("jupytext", None)
        _stable_ids(new)
        nbformat.write(new, str(nb_path))
    return changed
