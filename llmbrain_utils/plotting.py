"""Figures shared by the notebooks: one house style, brain maps through nilearn.

The house style (:func:`style`) is sized for the book's page: figures at most
:data:`PAGE_WIDTH_IN` inches wide at 100 dpi, so that they are shown at their natural size in the
book's content column (:data:`PAGE_WIDTH_PX` pixels), and no text smaller than
:data:`MIN_FONT_PT` points there. In a notebook's kernel every figure's PNG carries a record of
the smallest font it was drawn with and its size (a PNG text chunk ``llmbrain``, JSON, see
:func:`figure_fonts`), which the book's legibility test reads back from the built pages.
"""

from __future__ import annotations

import json

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np

#: the book's content column (pixels) and the widest figure shown at its natural size there
PAGE_WIDTH_PX = 730
PAGE_WIDTH_IN = 7.3
#: the smallest font size (points, at the rendered width) a figure may show
MIN_FONT_PT = 9.0


#: the book's house style (:func:`style`), also applied where figures are drawn into artifacts
#: (:func:`llmbrain_utils.explorer.atom_pngs`), so they look the same whichever process draws them
HOUSE_RC = {
    "figure.dpi": 100, "savefig.dpi": 100, "figure.figsize": (7.2, 3.6),
    "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10,
    "xtick.labelsize": 9, "ytick.labelsize": 9, "legend.fontsize": 9,
    "legend.title_fontsize": 9, "figure.titlesize": 11,
    "axes.spines.top": False, "axes.spines.right": False, "axes.grid": False,
    "image.cmap": "viridis", "figure.max_open_warning": 0,
}


def style() -> None:
    """The book's house style for matplotlib: page-sized figures (7.2 in at 100 dpi), text of
    9-11 pt, quiet axes; inline figures in a kernel (also when MPLBACKEND=Agg is set for the
    tests, which would otherwise hide them), each PNG with its font record (module docstring)."""
    shell = None
    try:
        from IPython import get_ipython

        shell = get_ipython()
        if shell is not None and "IPKernelApp" in shell.config:
            shell.run_line_magic("matplotlib", "inline")
        else:
            shell = None
    except ImportError:  # pragma: no cover - IPython comes with the kernel
        pass
    mpl.rcParams.update(HOUSE_RC)
    if shell is not None:
        from matplotlib.figure import Figure

        shell.display_formatter.formatters["image/png"].for_type(Figure, _png_with_fonts)


def figure_fonts(fig) -> dict:
    """The figure's drawn size and the smallest font among its visible, non-empty texts inside
    the figure (titles, labels, tick labels, legends, annotations, colorbars):
    ``{"min_font_pt", "width_in", "height_in", "n_texts"}`` (``min_font_pt`` None without text).
    Draws the figure first, so that tick labels exist."""
    from matplotlib.text import Text

    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    box = fig.bbox
    sizes = []
    for t in fig.findobj(Text):
        if not (t.get_visible() and t.get_text().strip()):
            continue
        if t.axes is not None and not t.axes.get_visible():
            continue
        ext = t.get_window_extent(renderer)
        if ext.width <= 0 or ext.x1 < box.x0 or ext.x0 > box.x1 or ext.y1 < box.y0 or ext.y0 > box.y1:
            continue  # not drawn inside the figure (e.g. a tick label outside the axis's view)
        sizes.append(float(t.get_fontsize()))
    w, h = fig.get_size_inches()
    return {"min_font_pt": min(sizes) if sizes else None, "width_in": round(float(w), 3),
            "height_in": round(float(h), 3), "n_texts": len(sizes)}


def _png_with_fonts(fig) -> bytes:
    """IPython's inline PNG of ``fig`` (tight bounding box), with :func:`figure_fonts` in a PNG
    text chunk ``llmbrain``."""
    from IPython.core.pylabtools import print_figure

    record = figure_fonts(fig)
    return print_figure(fig, "png", bbox_inches="tight", base64=False,
                        metadata={"llmbrain": json.dumps(record)})


def heatmap(ax, matrix, *, xlabels=None, ylabels=None, cmap="RdBu_r", vmax=None, title=None,
            colorbar=True, label=None):
    """A labelled matrix (symmetric colour range around 0 for diverging maps)."""
    matrix = np.asarray(matrix, float)
    if vmax is None:
        vmax = np.nanmax(np.abs(matrix)) or 1.0
    vmin = -vmax if cmap in ("RdBu_r", "coolwarm", "bwr") else 0
    im = ax.imshow(matrix, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest")
    if xlabels is not None:
        ax.set_xticks(range(len(xlabels)), xlabels, rotation=60, ha="right", fontsize=9)
    if ylabels is not None:
        ax.set_yticks(range(len(ylabels)), ylabels, fontsize=9)
    if title:
        ax.set_title(title)
    if colorbar:
        plt.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label=label)
    return im


def to_img(values, mask_img):
    """A vector over the mask's voxels (nilearn's order) -> a 3-D image; (n, V) -> 4-D."""
    from nilearn.maskers import NiftiMasker

    return NiftiMasker(mask_img).fit().inverse_transform(np.asarray(values, np.float32))


def label_colorbar(display, label: str, *, nbins: int = 4) -> None:
    """Name a nilearn display's colour scale and thin its ticks to a few round values (nilearn
    adds the threshold's values as ticks, which overprint each other near 0)."""
    from matplotlib.ticker import MaxNLocator

    cb = getattr(display, "_cbar", None)
    if cb is None:
        return
    lo, hi = float(cb.norm.vmin), float(cb.norm.vmax)
    ticks = [t for t in MaxNLocator(nbins=nbins, symmetric=lo < 0 < hi).tick_values(lo, hi) if lo <= t <= hi]
    cb.set_ticks(ticks)
    cb.ax.tick_params(labelsize=9)
    cb.ax.set_title(label, fontsize=9, loc="left")


def glass(values, mask_img, *, title=None, ax=None, cmap="cold_hot", threshold=None, vmax=None,
          plot_abs=False, colorbar=True, display_mode="lzry", symmetric=True, label=None):
    """Glass-brain view of a voxel vector (on a page-wide figure of its own without ``ax``);
    ``label`` names the colour scale."""
    from nilearn import plotting

    figure = None if ax is not None else plt.figure(figsize=(6.7, 2.2 if display_mode == "lzry" else 2.6))
    display = plotting.plot_glass_brain(to_img(values, mask_img), title=title, axes=ax, figure=figure,
                                        cmap=cmap, threshold=threshold, vmax=vmax, plot_abs=plot_abs,
                                        colorbar=colorbar, display_mode=display_mode,
                                        symmetric_cbar=symmetric)
    if colorbar and label:
        label_colorbar(display, label)
    return display


def _fsaverage5_hemis(values, mesh):
    """A surface map (or labels) on ``mesh`` as full fsaverage5 hemispheres (NaN in the medial
    wall): fsaverage6 shows its first 10,242 vertices per hemisphere, which are fsaverage5's."""
    from . import surface

    left, right = surface.to_hemispheres(values, mesh)
    n = surface.HEMI_VERTICES["fsaverage5"]
    return left[..., :n], right[..., :n]


_VIEWS = (("left", "lateral"), ("left", "medial"), ("right", "lateral"), ("right", "medial"))


def _surface_axes(title, height=1.9, bottom=0.02):
    fig = plt.figure(figsize=(PAGE_WIDTH_IN - 0.6, height))
    top = 0.86 if title else 0.96
    axes = [fig.add_axes([0.005 + i * 0.215, bottom, 0.215, top - bottom], projection="3d")
            for i in range(4)]
    if title:
        fig.suptitle(title, fontsize=10, y=0.99)
    return fig, axes


def surface_map(values, mesh, *, title=None, cmap="cold_hot", threshold=None, vmax=None,
                symmetric=True, label=None, outline=None):
    """A cortical map (cortex columns of ``mesh``, as :mod:`llmbrain_utils.surface` keeps
    them) on fsaverage5's inflated surface, lateral and medial views of both hemispheres, on a
    page-wide figure with one colour scale named ``label``. ``outline``: a boolean map whose
    border is drawn (e.g. a network)."""
    import matplotlib as mpl
    from nilearn import datasets, plotting as nplot

    fs = datasets.load_fsaverage("fsaverage5")
    infl, sulc = fs["inflated"], datasets.load_fsaverage_data("fsaverage5", data_type="sulcal")
    vals = np.asarray(values, dtype=np.float64)
    vmax = float(np.nanmax(np.abs(vals))) if vmax is None else float(vmax)
    vmax = vmax if vmax > 0 else 1.0
    vmin = -vmax if symmetric else (0.0 if np.nanmin(vals) >= 0 else float(np.nanmin(vals)))
    hemis = dict(zip(("left", "right"), _fsaverage5_hemis(vals, mesh)))
    rois = (None if outline is None else
            dict(zip(("left", "right"), _fsaverage5_hemis(np.asarray(outline, float), mesh))))
    fig, axes = _surface_axes(title)
    for ax, (hemi, view) in zip(axes, _VIEWS):
        nplot.plot_surf_stat_map(infl, np.nan_to_num(hemis[hemi]), hemi=hemi, view=view,
                                 bg_map=sulc, axes=ax, figure=fig, cmap=cmap, colorbar=False,
                                 threshold=threshold, vmin=vmin, vmax=vmax)
        if rois is not None and np.nansum(rois[hemi]) > 0:
            nplot.plot_surf_contours(infl, np.nan_to_num(rois[hemi]).astype(int), levels=[1],
                                     axes=ax, figure=fig, colors=["lime"])
        ax.set_title(f"{hemi[0].upper()} {view}", fontsize=9, y=0.93)
    cax = fig.add_axes([0.88, 0.18, 0.012, 0.6])
    sm = mpl.cm.ScalarMappable(norm=mpl.colors.Normalize(vmin, vmax), cmap=cmap)
    cb = fig.colorbar(sm, cax=cax)
    cb.ax.tick_params(labelsize=9)
    if label:
        cb.ax.set_title(label, fontsize=9, loc="left")
    return fig


def surface_labels(labels, mesh, names, *, title=None, cmap="tab20", colors=None, legend=True):
    """Network labels (1..n, 0 = none) on fsaverage5's inflated surface, four views, with a
    legend of the labels present (``legend=False``: none; ``colors``: one per name)."""
    import matplotlib as mpl
    from nilearn import datasets, plotting as nplot

    fs = datasets.load_fsaverage("fsaverage5")
    infl, sulc = fs["inflated"], datasets.load_fsaverage_data("fsaverage5", data_type="sulcal")
    lab = np.asarray(labels, dtype=np.float64)
    hemis = dict(zip(("left", "right"), _fsaverage5_hemis(lab, mesh)))
    present = [int(i) for i in np.unique(lab) if i > 0]
    if colors is None:
        colours = mpl.colormaps[cmap].resampled(max(len(names), 2))
        colors = [colours(i) for i in range(len(names))]
    listed = mpl.colors.ListedColormap(list(colors)[:len(names)])
    rows = -(-len(present) // 4) if legend else 0
    height = 1.8 + 0.2 * rows
    fig, axes = _surface_axes(title, height=height, bottom=(0.2 * rows + 0.02) / height)
    for ax, (hemi, view) in zip(axes, _VIEWS):
        roi = np.nan_to_num(hemis[hemi])
        nplot.plot_surf_roi(infl, np.where(roi > 0, roi, np.nan), hemi=hemi, view=view,
                            bg_map=sulc, axes=ax, figure=fig, cmap=listed, colorbar=False,
                            vmin=0.5, vmax=len(names) + 0.5)
        ax.set_title(f"{hemi[0].upper()} {view}", fontsize=9, y=0.93)
    if legend:
        handles = [mpl.patches.Patch(color=listed(i - 1), label=names[i - 1]) for i in present]
        fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=9, frameon=False,
                   bbox_to_anchor=(0.5, 0.0), handlelength=1.2, columnspacing=1.2)
    return fig


def labels_map(labels, where, legend, *, colors, title=None, ncol=3):
    """Labels 1..n (0 = none) on the brain, one colour each, with a legend below: five axial
    slices of a volume (``where`` = the mask image) or the inflated cortex (``where`` = a mesh
    name); ``legend``: one text per label."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    n = len(legend)
    if isinstance(where, str):
        fig = surface_labels(labels, where, list(legend), colors=colors, legend=False)
    else:
        from nilearn import plotting as nplot

        fig = plt.figure(figsize=(6.8, 2.1))
        nplot.plot_roi(to_img(labels, where), display_mode="z", cut_coords=[-12, 6, 24, 42, 60],
                       figure=fig, cmap=ListedColormap(colors), vmin=0.5, vmax=n + 0.5,
                       colorbar=False, black_bg=False, draw_cross=False)
    fig.legend(handles=[Patch(color=c, label=t) for c, t in zip(colors, legend)], loc="upper center",
               ncol=ncol, fontsize=9, bbox_to_anchor=(0.5, 0.0), frameon=False)
    if title:
        fig.suptitle(title, y=1.06)
    return fig


def overview(values, where, *, title=None, threshold=None, label=None, cmap="cold_hot",
             symmetric=True):
    """A whole-brain view of a map: a glass brain of a volume, or the inflated cortex of a mesh
    (where ``threshold=None`` hides exact zeros), page-wide, its colour scale named ``label``."""
    if isinstance(where, str):
        return surface_map(values, where, title=title, label=label, cmap=cmap,
                           symmetric=symmetric, threshold=1e-6 if threshold is None else threshold)
    if title is None:
        return glass(values, where, cmap=cmap, symmetric=symmetric, threshold=threshold,
                     label=label).frame_axes.figure
    fig, ax = plt.subplots(figsize=(7.2, 2.5))
    glass(values, where, ax=ax, threshold=threshold, label=label, cmap=cmap, symmetric=symmetric)
    ax.set_title(title, fontsize=10)
    return fig


def slices(values, where, *, threshold, label="t", title=None, outline=None):
    """A statistical map on five axial slices of a volume, or on the inflated cortex of a mesh,
    thresholded at ``|value| > threshold``; ``outline``: a 0/1 map drawn as a green contour."""
    if isinstance(where, str):
        return surface_map(values, where, threshold=threshold, label=label, title=title,
                           outline=outline)
    from nilearn import plotting as nplot

    fig, ax = plt.subplots(figsize=(7.2, 1.95))
    d = nplot.plot_stat_map(to_img(values, where), display_mode="z", cut_coords=[-18, 0, 18, 36, 54],
                            axes=ax, threshold=threshold, colorbar=True, cbar_tick_format="%.0f")
    label_colorbar(d, label)
    if title:
        ax.set_title(title, fontsize=10, loc="left")
    if outline is not None:
        d.add_contours(to_img(np.asarray(outline, np.float32), where), levels=[0.5],
                       colors="lime", linewidths=0.8)
    return fig


def time_courses(ax, X, *, tr_s=1.5, labels=None, spacing=3.0, color=None, lw=0.8):
    """Stacked z-scored time courses (columns of X), offset vertically."""
    X = np.asarray(X, float)
    t = np.arange(X.shape[0]) * tr_s
    for i in range(X.shape[1]):
        x = X[:, i]
        sd = x.std() or 1.0
        ax.plot(t, (x - x.mean()) / sd - i * spacing, lw=lw, color=color or f"C{i % 10}")
    ax.set_yticks([-i * spacing for i in range(X.shape[1])],
                  labels if labels is not None else [str(i) for i in range(X.shape[1])], fontsize=9)
    ax.set_xlabel("time (s)")
    ax.set_xlim(t[0], t[-1])


def _space_rows(rows: list[dict], space: str, atlas: str | None = None) -> list[dict]:
    """The rows of one space (rows without the key are volume rows); on the surface, the
    default medial-wall rule ("nearest") and one atlas only."""
    out = [r for r in rows if r.get("space", "volume") == space
           and r.get("wall", "nearest") == "nearest"]
    if atlas is not None:
        out = [r for r in out if r.get("atlas") in (None, atlas)]
    return out


def null_calibration(result: dict, *, alphas=(0.05, 0.01), target=(0.8, 1.25),
                     space: str = "volume", atlas: str | None = None):
    """Share of p <= alpha over alpha, with its 95% interval, per null, noise model and statistic
    (``benchmarks/null_calibration.json``; the rows of ``space``, "volume" or "surface", and
    of ``atlas`` where the rows name one); the target band shaded. Returns the figure."""
    rows = _space_rows(result["rows"], space, atlas)
    noises = list(dict.fromkeys(r["noise"] for r in rows))
    series = list(dict.fromkeys((r["null"], r["statistic"]) for r in rows))
    colors = {"spin": "tab:red", "surrogate": "tab:blue"}
    fig, axes = plt.subplots(1, len(alphas), figsize=(7.2, 3.4), sharey=True)
    for ax, alpha in zip(np.atleast_1d(axes), alphas):
        ax.axhspan(*target, color="0.9", zorder=0, label=f"target {target[0]}-{target[1]}")
        ax.axhline(1.0, color="0.5", lw=0.8)
        for j, (null, stat) in enumerate(series):
            pts = [next((r for r in rows if r["noise"] == nz and r["null"] == null
                         and r["statistic"] == stat and r["alpha"] == alpha), None) for nz in noises]
            x = np.arange(len(noises)) + (j - (len(series) - 1) / 2) * 0.16
            y = np.array([p["share_over_alpha"] if p else np.nan for p in pts])
            lo = np.array([p["ci"][0] if p else np.nan for p in pts])
            hi = np.array([p["ci"][1] if p else np.nan for p in pts])
            legacy = " (legacy)" if any(p and p.get("legacy") for p in pts) else ""
            ax.errorbar(x, y, yerr=[y - lo, hi - y], fmt="o" if stat == "dice" else "s",
                        color=colors.get(null, "k"), mfc="white" if stat == "r" else None,
                        ms=4, lw=1, capsize=2, label=f"{null}{legacy}, {stat}")
        ax.set_xticks(range(len(noises)), [n.replace("_", "\n") for n in noises], fontsize=9)
        ax.set_title(f"{space}{', ' + atlas if atlas else ''}: alpha = {alpha:g}", fontsize=10)
        ax.set_xlabel("null maps (noise model)")
    np.atleast_1d(axes)[0].set_ylabel("false-positive rate / alpha")
    handles, labels = np.atleast_1d(axes)[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=9, loc="lower center", ncol=3, frameon=False)
    fig.tight_layout(rect=(0, 0.16, 1, 1))
    return fig


def recovery_mismatch(result: dict, *, statistic: str = "dice", target=(0.9, 0.8),
                      space: str = "volume"):
    """Precision and recall against the read-out atlas's Dice with the planted networks, one line
    per test (null, tail, rotations) (``benchmarks/recovery_mismatch.json``, the rows of
    ``space``). Returns the figure."""
    rows = [r for r in _space_rows(result["rows"], space) if r["statistic"] == statistic]
    methods = list(dict.fromkeys((r.get("null", "spin"), r.get("tail", "none"), r["n_perm"]) for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(7.2, 3.3), sharex=True)
    for m in methods:
        g = sorted((r for r in rows if (r.get("null", "spin"), r.get("tail", "none"), r["n_perm"]) == m),
                   key=lambda r: r["dice_mismatch"])
        x = [r["dice_mismatch"] for r in g]
        for ax, key in zip(axes, ("precision", "recall")):
            y = [np.nan if r[key] is None else r[key] for r in g]
            ax.plot(x, y, "o-", ms=4, label=f"{m[0]}, tail {m[1]}, {m[2]}")
    for ax, key, t in zip(axes, ("precision", "recall"), target):
        ax.axhline(t, color="0.5", ls="--", lw=0.8)
        ax.set_ylim(-0.03, 1.03)
        ax.set_ylabel(key)
        ax.set_xlabel("Dice of read-out with planted networks")
    axes[0].set_title(f"{space}, {statistic}: precision\n(empty: nothing coupled)", fontsize=10)
    axes[1].set_title(f"{space}, {statistic}: recall", fontsize=10)
    handles, labels = axes[1].get_legend_handles_labels()
    fig.legend(handles, [f"{lab} rotations" for lab in labels], fontsize=9, loc="lower center",
               ncol=2, frameon=False)
    fig.tight_layout(rect=(0, 0.17, 1, 1))
    return fig
