"""Write a notebook from a compact cell list (used to author notebooks/*.ipynb).

    cells = [("md", "# Title"), ("params", "k = 64"), ("code", "print(k)", ["check"])]

A "params" cell gets papermill's ``parameters`` tag; a code cell with "check" gets the
``# NBVAL_CHECK_OUTPUT`` marker that nbval --nbval-lax compares. A "caption" cell is the caption
of the figure above it: a markdown cell "**Figure C.N.** text", numbered in order within the
chapter (C: the notebook's number + 1). An "answer" cell is code that sets ``answer`` (a string
with the chapter's computed answer): it becomes a removed cell that glues it and a markdown cell
"## Answer" that shows it.

Usage: ``PYTHONPATH=tools/notebooks .venv/bin/python tools/notebooks/nbNN.py`` rewrites
``notebooks/NN_*.ipynb`` without outputs; then ``make notebooks`` executes them with the default
parameters and saves the outputs that nbval compares.
"""
import textwrap
from pathlib import Path

import nbformat


def build(path, cells, title=None):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    chapter, n_fig = int(Path(path).name[:2]) + 1, 0
    for spec in cells:
        kind, src = spec[0], textwrap.dedent(spec[1]).strip("\n")
        flags = spec[2] if len(spec) > 2 else []
        if kind == "md":
            nb.cells.append(nbformat.v4.new_markdown_cell(src))
            continue
        if kind == "answer":  # code that sets `answer` (a string): glued, and shown under "Answer"
            src = f"from myst_nb import glue\n\n{src}\nglue(\"answer\", answer, display=False)\nprint(answer)"
            nb.cells.append(nbformat.v4.new_code_cell(src, metadata={"tags": ["remove-cell"]}))
            nb.cells.append(nbformat.v4.new_markdown_cell("## Answer\n\n{glue:text}`answer:s`"))
            continue
        if kind == "caption":
            n_fig += 1
            nb.cells.append(nbformat.v4.new_markdown_cell(f"**Figure {chapter}.{n_fig}.** {src}"))
            continue
        meta = {}
        if kind == "params":
            meta["tags"] = ["parameters"]
        if "check" in flags:
            src = "# NBVAL_CHECK_OUTPUT\n" + src
        if "hide" in flags:
            meta.setdefault("tags", []).append("hide-input")
        if "remove" in flags:
            meta.setdefault("tags", []).append("remove-cell")
        nb.cells.append(nbformat.v4.new_code_cell(src, metadata=meta))
    for i, cell in enumerate(nb.cells):  # stable ids: a regenerated notebook differs only where its cells do
        cell["id"] = f"c{i:03d}-{cell.cell_type[:4]}"
    nbformat.write(nb, path)


# Parameter blocks of the notebooks' `parameters` cells (each stage declares its own and its
# upstream stages' parameters, so that every notebook runs on its own).
P_STIMULUS = """
# Parameters (papermill overrides these)
runs_dir = None
story = "harrowpoint"
narratives_dir = None
tr_s = 1.5
shuffle_words = False
seed = 0
"""
P_MODEL = """model = "all-MiniLM-L6-v2"
untrained = False
units = "output"
context = "auto"
context_tokens = 128
word_pool = "mean"
tr_pool = "mean"
hrf = "spm"
"""
P_DICTIONARY = """k = 64
lam = 0.1
solver = "spams"
dict_iter = 300
"""
P_FMRI = """fmri_source = "synthetic"
space = "volume"
twin = "ideal"
n_subjects = 8
resolution_mm = 6.0
snr = None
plant_atlas = "Seitzman2018"
n_perm = 1000
alpha = 0.05
"""
P_ENCODING = """n_folds = 5
trim = 5
"""
