"""Draw the book's pipeline schematic (book/_static/pipeline.svg): the stages, what each one
computes and the artifact it writes. Run from the repository root after changing the stages:

    .venv/bin/python tools/pipeline_schematic.py
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "book" / "_static" / "pipeline.svg"

# (column, row, title, what it does, artifact) on a 3 x 3 grid; row 0 at the top
BOXES = {
    "stimulus": (0, 0, "1. Story", "transcript and word timings;\nthe words of every TR", "stimulus/\nwords.tsv, trs.tsv"),
    "extraction": (1, 0, "2. Artificial neurons", "every FFN output unit,\npooled per TR, HRF", "extraction/\nresponses.npy"),
    "dictionary": (2, 0, "3. Atoms", "a sparse dictionary\nof 64 time courses", "dictionary/\nD.npy, loadings.npz"),
    "fmri": (1, 1, "4. Listeners' fMRI", "synthetic twin or\nNarratives, TR 1.5 s", "fmri/\nbold.npy, isc.npy"),
    "encoding": (2, 1, "5. Encoding", "atoms predict each\nvoxel (ridge, held out)", "encoding/\nbeta.npy, group_t.npy"),
    "fbn": (2, 2, "6. Networks", "atom maps against an\natlas: Dice, null, FDR", "fbn/\ncouplings.tsv"),
    "compare": (1, 2, "7. Comparison", "models against controls:\nnetwork signal", "sweeps/\ncross_model.tsv"),
}
ARROWS = [("stimulus", "extraction"), ("extraction", "dictionary"), ("dictionary", "encoding"),
          ("stimulus", "fmri"), ("fmri", "encoding"), ("encoding", "fbn"), ("fbn", "compare")]
W, H, DX, DY = 2.15, 1.42, 2.4, 1.72  # box size and grid step (inches)


def centre(name):
    col, row, *_ = BOXES[name]
    return 0.1 + col * DX + W / 2, -row * DY + H / 2


def main() -> Path:
    plt.rcParams.update({"font.size": 10, "svg.fonttype": "path", "svg.hashsalt": "llmbrain"})
    fig = plt.figure(figsize=(7.2, 5.2))
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_xlim(0, 7.2)
    ax.set_ylim(-2 * DY - 0.1, H + 0.1)
    ax.axis("off")
    for name, (col, row, title, what, artifact) in BOXES.items():
        x, y = 0.1 + col * DX, -row * DY
        colour = "#f2f2f2" if name == "fmri" else "#e8f0fa"
        ax.add_patch(FancyBboxPatch((x, y), W, H, boxstyle="round,pad=0.02,rounding_size=0.08",
                                    fc=colour, ec="0.35", lw=1))
        ax.text(x + W / 2, y + H - 0.12, title, ha="center", va="top", fontsize=11, fontweight="bold")
        ax.text(x + W / 2, y + H - 0.42, what, ha="center", va="top", fontsize=9.5)
        ax.text(x + W / 2, y + 0.1, artifact, ha="center", va="bottom", fontsize=9, family="monospace",
                color="0.3")
    for a, b in ARROWS:
        (xa, ya), (xb, yb) = centre(a), centre(b)
        if ya == yb:  # same row: edge to edge
            sgn = 1 if xb > xa else -1
            start, end, style = (xa + sgn * (W / 2 + 0.02), ya), (xb - sgn * (W / 2 + 0.02), yb), "arc3,rad=0"
        elif xa == xb:  # same column: bottom to top
            start, end, style = (xa, ya - H / 2 - 0.02), (xb, yb + H / 2 + 0.02), "arc3,rad=0"
        else:  # down from the bottom edge, then along to the left edge
            start, end = (xa, ya - H / 2 - 0.02), (xb - W / 2 - 0.02, yb)
            style = "angle,angleA=-90,angleB=180,rad=0"
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=14, lw=1.2,
                                     color="0.3", connectionstyle=style))
    ax.text(0.1, -2 * DY + H / 2, "Every stage writes an artifact under\nruns/STAGE/KEY/, keyed by its\n"
            "parameters and inputs, and\nreuses it when they are unchanged.\nThe numbers are the\nbook's chapters.",
            ha="left", va="center", fontsize=9.5, color="0.25")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT, metadata={"Date": None})
    return OUT


if __name__ == "__main__":
    print(main())
