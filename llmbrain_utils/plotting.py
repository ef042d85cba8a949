"""Figures shared by the notebooks: one consistent style, brain maps through nilearn."""

from __future__ import annotations

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np


def style() -> None:
    """A quiet, readable matplotlib style for the book's figures."""
    mpl.rcParams.update({
        "figure.dpi": 100, "savefig.dpi": 100, "font.size": 10, "axes.titlesize": 11,
        "axes.spines.top": False, "axes.spines.right": False, "axes.grid": False,
        "image.cmap": "viridis", "figure.max_open_warning": 0,
    })


def heatmap(ax, matrix, *, xlabels=None, ylabels=None, cmap="RdBu_r", vmax=None, title=None,
            colorbar=True, label=None):
    """A labelled matrix (symmetric colour range around 0 for diverging maps)."""
    matrix = np.asarray(matrix, float)
    if vmax is None:
        vmax = np.nanmax(np.abs(matrix)) or 1.0
    vmin = -vmax if cmap in ("RdBu_r", "coolwarm", "bwr") else 0
    im = ax.imshow(matrix, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest")
    if xlabels is not None:
        ax.set_xticks(range(len(xlabels)), xlabels, rotation=60, ha="right", fontsize=8)
    if ylabels is not None:
        ax.set_yticks(range(len(ylabels)), ylabels, fontsize=8)
    if title:
        ax.set_title(title)
    if colorbar:
        plt.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label=label)
    return im
