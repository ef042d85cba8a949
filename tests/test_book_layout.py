"""The book's layout helpers, without building the book: the font record of a figure
(plotting.figure_fonts, read back by tests/test_book.py's legibility test) and the one
collapsed parameters block of an executed chapter (pipeline._one_parameters_block)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402

from llmbrain_utils import pipeline, plotting  # noqa: E402


def test_the_font_record_finds_the_smallest_drawn_text():
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot([0, 1], [0, 1])
    ax.set_title("title", fontsize=12)
    ax.set_xlabel("x", fontsize=10)
    ax.tick_params(labelsize=9)
    ax.text(0.5, 0.5, "small", fontsize=7)
    hidden = ax.text(0.2, 0.2, "hidden", fontsize=4)
    hidden.set_visible(False)
    ax.text(5.0, 5.0, "outside the figure", fontsize=3, transform=ax.transAxes)
    rec = plotting.figure_fonts(fig)
    assert rec["min_font_pt"] == 7 and rec["width_in"] == 6 and rec["n_texts"] >= 4
    plt.close(fig)
    empty = plt.figure(figsize=(2, 2))
    assert plotting.figure_fonts(empty)["min_font_pt"] is None
    plt.close(empty)


def test_the_page_shows_one_collapsed_block_of_the_run_parameters():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# A chapter"),
                nbformat.v4.new_code_cell("# Parameters (papermill overrides these)\nk = 64\nseed = 0",
                                          metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("# Parameters\nk = 32\n", metadata={"tags": ["injected-parameters"]}),
                nbformat.v4.new_code_cell("print(k)")]
    pipeline._one_parameters_block(nb)
    block, injected = nb.cells[1], nb.cells[2]
    assert block.source.splitlines()[0].startswith("# Parameters of this run")
    assert "k = 64" in block.source and block.source.rstrip().endswith("k = 32")  # the run's value last
    assert "hide-cell" in block.metadata["tags"] and "parameters" in block.metadata["tags"]
    assert block.metadata["mystnb"]["code_prompt_show"] == "Show the parameters of this run"
    assert "remove-cell" in injected.metadata["tags"]
    ns = {}
    exec(block.source, ns)  # the block runs and gives the run's values
    assert ns["k"] == 32 and ns["seed"] == 0
    # a notebook run without parameters is left as it is
    plain = nbformat.v4.new_notebook()
    plain.cells = [nbformat.v4.new_code_cell("k = 64", metadata={"tags": ["parameters"]})]
    pipeline._one_parameters_block(plain)
    assert plain.cells[0].source == "k = 64" and plain.cells[0].metadata["tags"] == ["parameters"]


def test_every_committed_notebook_keeps_the_outputs_nbval_checks():
    """A notebook rewritten from its script without outputs would make nbval check nothing:
    every checked cell of a committed notebook has its saved output."""
    empty = []
    for path in sorted(pipeline.NOTEBOOKS.glob("*.ipynb")):
        nb = nbformat.read(str(path), as_version=4)
        empty += [f"{path.name} cell {i}" for i, c in enumerate(nb.cells)
                  if c.cell_type == "code" and c.source.startswith("# NBVAL_CHECK_OUTPUT") and not c.outputs]
    assert not empty, f"checked cells without outputs (run `make notebooks`): {empty}"
