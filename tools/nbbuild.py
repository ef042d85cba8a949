"""Write a notebook from a compact cell list (used to author notebooks/*.ipynb).

    cells = [("md", "# Title"), ("params", "k = 64"), ("code", "print(k)", ["check"])]

A "params" cell gets papermill's ``parameters`` tag; a code cell with "check" gets the
``# NBVAL_CHECK_OUTPUT`` marker that nbval --nbval-lax compares.
"""
import textwrap

import nbformat


def build(path, cells, title=None):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for spec in cells:
        kind, src = spec[0], textwrap.dedent(spec[1]).strip("\n")
        flags = spec[2] if len(spec) > 2 else []
        if kind == "md":
            nb.cells.append(nbformat.v4.new_markdown_cell(src))
            continue
        meta = {}
        if kind == "params":
            meta["tags"] = ["parameters"]
        if "check" in flags:
            src = "# NBVAL_CHECK_OUTPUT\n" + src
        if "hide" in flags:
            meta.setdefault("tags", []).append("hide-input")
        nb.cells.append(nbformat.v4.new_code_cell(src, metadata=meta))
    nbformat.write(nb, path)
