"""Figures shared by the notebooks: one consistent style, brain maps through nilearn."""

from __future__ import annotations

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np


def style() -> None:
    """A quiet, readable matplotlib style for the book's figures; inline figures in a kernel
    (also when MPLBACKEND=Agg is set for the tests, which would otherwise hide them)."""
    try:
        from IPython import get_ipython

        shell = get_ipython()
        if shell is not None and "IPKernelApp" in shell.config:
            shell.run_line_magic("matplotlib", "inline")
    except ImportError:  # pragma: no cover - IPython comes with the kernel
        pass
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


def to_img(values, mask_img):
    """A vector over the mask's voxels (nilearn's order) -> a 3-D image; (n, V) -> 4-D."""
    from nilearn.maskers import NiftiMasker

    return NiftiMasker(mask_img).fit().inverse_transform(np.asarray(values, np.float32))


def glass(values, mask_img, *, title=None, ax=None, cmap="cold_hot", threshold=None, vmax=None,
          plot_abs=False, colorbar=True, display_mode="lzry", symmetric=True):
    """Glass-brain view of a voxel vector."""
    from nilearn import plotting

    return plotting.plot_glass_brain(to_img(values, mask_img), title=title, axes=ax, cmap=cmap,
                                     threshold=threshold, vmax=vmax, plot_abs=plot_abs,
                                     colorbar=colorbar, display_mode=display_mode,
                                     symmetric_cbar=symmetric)


def time_courses(ax, X, *, tr_s=1.5, labels=None, spacing=3.0, color=None, lw=0.8):
    """Stacked z-scored time courses (columns of X), offset vertically."""
    X = np.asarray(X, float)
    t = np.arange(X.shape[0]) * tr_s
    for i in range(X.shape[1]):
        x = X[:, i]
        sd = x.std() or 1.0
        ax.plot(t, (x - x.mean()) / sd - i * spacing, lw=lw, color=color or f"C{i % 10}")
    ax.set_yticks([-i * spacing for i in range(X.shape[1])],
                  labels if labels is not None else [str(i) for i in range(X.shape[1])], fontsize=8)
    ax.set_xlabel("time (s)")
    ax.set_xlim(t[0], t[-1])
