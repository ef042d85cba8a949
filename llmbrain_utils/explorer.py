"""An atom explorer that works in the static book: precomputed figures, client-side links.

The built book has no kernel, so no Python callback runs there. The explorer therefore
precomputes one composite PNG per (model, atom) -- the atom's time course, its group t map as a
glass brain, the layer histogram of its AN sub-group and the networks it is coupled to -- and
lays them out in ``ipywidgets.Stack`` containers whose ``selected_index`` is tied to the
pickers with :func:`ipywidgets.jslink`. ``jslink`` runs in the browser's widget manager, so
picking a model or an atom in the built HTML switches the figure without a kernel, provided
the notebook was executed with its widget state saved (nbclient and papermill do so by
default: ``store_widget_state=True``) and the page loads a widget manager (see
``tools/fetch_widget_js.sh``).

Layout::

    VBox
    ├── HBox: Dropdown (model) · Dropdown (atom) · IntSlider (atom)
    └── Stack (one child per model)          <- jslink(model.index, selected_index)
        └── Stack (one child per atom)       <- jslink(atom.index, selected_index), per model
            └── VBox: HTML caption · Image (PNG)

One atom picker drives the inner stack of every model, so the choice of atom is kept when the
model changes. Models with fewer atoms than the largest get a short note in the missing places.
"""

from __future__ import annotations

import html
import io
import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from .errors import InputError, ParameterError

logger = logging.getLogger(__name__)

__all__ = ["atom_explorer", "atom_figure", "atom_pngs", "REQUIRED_KEYS", "COUPLING_COLUMNS"]

REQUIRED_KEYS = ("D", "group_t", "mask_img", "loadings", "layers", "couplings")
COUPLING_COLUMNS = ("atom", "network", "sign", "dice", "q", "coupled")
_ACTIVE = "#c0392b"
_DEACTIVE = "#2874a6"


# --------------------------------------------------------------------------------------------
# Validation


def _n_mask_voxels(mask_img: Any, source: str) -> int:
    from nilearn.masking import load_mask_img

    try:
        mask, _ = load_mask_img(mask_img)
    except Exception as exc:  # nilearn raises TypeError/ValueError/FileNotFoundError
        raise InputError(source, f"cannot read the mask image: {exc}", field="mask_img",
                         expected="a binary 3-D Nifti image or its path") from exc
    return int(np.count_nonzero(mask))


def _is_active(sign: Any) -> bool:
    """``"active"``/``"+"``/positive number -> True; ``"deactive"``/``"-"``/negative -> False."""
    if isinstance(sign, str):
        s = sign.strip().lower()
        if s in ("active", "+", "pos", "positive"):
            return True
        if s in ("deactive", "-", "neg", "negative", "inactive"):
            return False
        raise ValueError(sign)
    value = float(sign)
    if value == 0 or not np.isfinite(value):
        raise ValueError(sign)
    return value > 0


def _check_model(name: Any, model: Any) -> dict[str, Any]:
    """Validate one model's inputs and return them as arrays; raise before any work."""
    import pandas as pd
    import scipy.sparse as sp

    source = f"models[{name!r}]"
    if not isinstance(name, str) or not name:
        raise ParameterError("models", f"key {name!r} is not a non-empty string",
                             expected="model names (str) as keys")
    if not isinstance(model, Mapping):
        raise InputError(source, f"is a {type(model).__name__}",
                         expected=f"a dict with keys {', '.join(REQUIRED_KEYS)}")
    missing = [key for key in REQUIRED_KEYS if key not in model]
    if missing:
        raise InputError(source, f"missing key(s) {', '.join(missing)}",
                         expected=f"keys {', '.join(REQUIRED_KEYS)}")

    D = np.asarray(model["D"], dtype=float)
    if D.ndim != 2 or D.shape[0] < 2 or D.shape[1] < 1:
        raise InputError(source, f"D has shape {D.shape}", field="D",
                         expected="a T x k array with T >= 2 and k >= 1")
    if not np.all(np.isfinite(D)):
        raise InputError(source, "D has non-finite values", field="D", expected="finite numbers")
    T, k = D.shape

    n_vox = _n_mask_voxels(model["mask_img"], source)
    group_t = np.asarray(model["group_t"], dtype=float)
    if group_t.shape != (k, n_vox):
        raise InputError(source, f"group_t has shape {group_t.shape}", field="group_t",
                         expected=f"(k, V) = ({k}, {n_vox}): one map per atom of D over the "
                                  "mask's voxels")
    if np.isnan(group_t).any():
        raise InputError(source, "group_t has NaN values", field="group_t",
                         expected="numbers (infinite values are clipped)")

    loadings = model["loadings"]
    if not sp.issparse(loadings):
        raise InputError(source, f"loadings is a {type(loadings).__name__}", field="loadings",
                         expected="a scipy.sparse matrix (k x N)")
    loadings = sp.csr_array(loadings)
    if loadings.shape[0] != k:
        raise InputError(source, f"loadings has shape {loadings.shape}", field="loadings",
                         expected=f"{k} rows, one per atom of D")
    n_an = loadings.shape[1]

    layers = np.asarray(model["layers"])
    if layers.shape != (n_an,) or not np.issubdtype(layers.dtype, np.integer) or (
            n_an and layers.min() < 0):
        raise InputError(source, f"layers has shape {layers.shape} and dtype {layers.dtype}",
                         field="layers",
                         expected=f"{n_an} non-negative integers, one per AN (loadings column)")

    table = model["couplings"]
    if not isinstance(table, pd.DataFrame):
        raise InputError(source, f"couplings is a {type(table).__name__}", field="couplings",
                         expected="a pandas DataFrame")
    absent = [c for c in COUPLING_COLUMNS if c not in table.columns]
    if absent:
        raise InputError(source, f"couplings lacks column(s) {', '.join(absent)}",
                         field="couplings", expected=f"columns {', '.join(COUPLING_COLUMNS)}")
    atoms = pd.to_numeric(table["atom"], errors="coerce")
    bad = ~atoms.between(0, k - 1) | (atoms != atoms.round())
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputError(source, f"couplings row {row}: atom {table['atom'].iloc[row]!r}",
                         field="couplings.atom", expected=f"integers 0..{k - 1}")
    for row, sign in enumerate(table["sign"]):
        try:
            _is_active(sign)
        except (TypeError, ValueError):
            raise InputError(source, f"couplings row {row}: sign {sign!r}", field="couplings.sign",
                             expected="'active'/'deactive' or a signed number") from None
    return {"D": D, "group_t": group_t, "mask_img": model["mask_img"], "loadings": loadings,
            "layers": layers.astype(int), "couplings": table.assign(atom=atoms.astype(int))}


def _check_options(tr_s: Any, t_threshold: Any, dpi: Any, figsize: Any, max_networks: Any
                   ) -> None:
    if isinstance(max_networks, bool) or not isinstance(max_networks, int) or max_networks < 1:
        raise ParameterError("max_networks", f"got {max_networks!r}", expected="an integer >= 1")
    for pname, value in (("tr_s", tr_s), ("t_threshold", t_threshold)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(
                value) or value < 0 or (pname == "tr_s" and value == 0):
            raise ParameterError(pname, f"got {value!r}",
                                 expected="a positive number" if pname == "tr_s"
                                 else "a non-negative number")
    if isinstance(dpi, bool) or not isinstance(dpi, (int, float)) or not 20 <= dpi <= 300:
        raise ParameterError("dpi", f"got {dpi!r}", expected="a number in 20..300")
    try:
        w, h = (float(v) for v in figsize)
    except (TypeError, ValueError):
        raise ParameterError("figsize", f"got {figsize!r}",
                             expected="(width, height) in inches") from None
    if not (0 < w <= 20 and 0 < h <= 20):
        raise ParameterError("figsize", f"got {figsize!r}", expected="sizes in (0, 20] inches")


# --------------------------------------------------------------------------------------------
# Figures


def _network_lines(table: Any, atom: int, max_networks: int) -> tuple[list[tuple[str, str]], bool]:
    """(text, colour) lines for one atom's networks; True when they are coupled ones."""
    rows = table[table["atom"] == atom]
    multi_atlas = "atlas" in rows.columns and rows["atlas"].nunique() > 1
    coupled = rows[rows["coupled"].astype(bool)]
    shown, is_coupled = (coupled, True) if len(coupled) else (rows, False)
    shown = shown.sort_values(["q", "dice"], ascending=[True, False], na_position="last")
    lines = []
    for _, r in shown.head(max_networks).iterrows():
        active = _is_active(r["sign"])
        label = str(r["network"])
        if multi_atlas:
            label = f"{r['atlas']}: {label}"
        if len(label) > 22:
            label = label[:21] + "…"
        mark = "+" if active else "−"
        lines.append((f"{mark} {label}  (Dice {float(r['dice']):.2f}, q {float(r['q']):.2g})",
                      _ACTIVE if active else _DEACTIVE))
    if is_coupled and len(coupled) > max_networks:
        lines.append((f"… and {len(coupled) - max_networks} more", "0.3"))
    return lines, is_coupled


class _AtomFigure:
    """One model's composite figure, drawn once and updated per atom.

    The glass-brain schematic holds thousands of patches: building it once per model and only
    swapping the t-map overlay makes each atom's figure about twice as fast as a fresh one.
    """

    def __init__(self, model: Mapping[str, Any], *, name: str, tr_s: float, t_threshold: float,
                 figsize: tuple[float, float], max_networks: int, t_img: Any = None) -> None:
        from matplotlib.figure import Figure
        from nilearn import masking, plotting

        self.model, self.name, self.t_threshold = model, name, t_threshold
        self.max_networks = max_networks
        self.t_img = t_img if t_img is not None else masking.unmask(
            np.nan_to_num(model["group_t"], posinf=1e6, neginf=-1e6).astype(np.float32),
            model["mask_img"])
        D = model["D"]
        self.fig = fig = Figure(figsize=figsize)
        # rows: the time course; the glass brain, its colour scale and the layers; the networks
        # (a full-width row of their own, so their lines are legible at 9 pt)
        gs = fig.add_gridspec(3, 4, height_ratios=[0.8, 1.5, 0.62],
                              width_ratios=[1, 1, 0.035, 0.95], left=0.085, right=0.985,
                              top=0.92, bottom=0.02, wspace=0.35, hspace=0.55)
        self.suptitle = fig.suptitle("", fontsize=10, fontweight="bold", x=0.01, ha="left")

        ax = self.ax_tc = fig.add_subplot(gs[0, :])
        t = np.arange(D.shape[0]) * tr_s
        (self.line,) = ax.plot(t, D[:, 0], lw=0.7, color="0.15")
        ax.axhline(0, lw=0.5, color="0.6")
        ax.set_xlim(t[0], t[-1])
        ax.set_xlabel("time (s)", fontsize=9, labelpad=1)
        ax.set_title("time course", fontsize=9, loc="left", pad=2)
        _quiet(ax)

        self.ax_net = fig.add_subplot(gs[2, :])

        ax = self.ax_brain = fig.add_subplot(gs[1, :2])
        ax.axis("off")
        self.display = plotting.plot_glass_brain(
            None, figure=fig, axes=ax, display_mode="ortho", plot_abs=False, colorbar=False,
            annotate=True, black_bg=False)
        for a in self.display.axes.values():  # the L/R letters and cut labels at 9 pt
            for txt in a.ax.texts:
                txt.set_fontsize(9)
        ax.set_title(f"group t map (|t| ≥ {t_threshold:g})", fontsize=9, loc="left", pad=2)
        self.cax = fig.add_subplot(gs[1, 2])
        self.ax_hist = fig.add_subplot(gs[1, 3])
        layers = model["layers"]
        self.n_layers = int(layers.max()) + 1 if layers.size else 1

    def draw(self, atom: int):
        """Show ``atom`` and return the figure."""
        from matplotlib import colormaps
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import Normalize
        from nilearn import image

        model, fig = self.model, self.fig
        self.suptitle.set_text(f"{self.name} · atom {atom}" if self.name else f"atom {atom}")

        d = model["D"][:, atom]
        self.line.set_ydata(d)
        pad = 0.05 * (float(np.ptp(d)) or 1.0)
        self.ax_tc.set_ylim(float(d.min()) - pad, float(d.max()) + pad)

        ax = self.ax_net
        ax.clear()
        ax.axis("off")
        lines, coupled = _network_lines(model["couplings"], atom, self.max_networks)
        ax.set_title("coupled networks" if coupled else "no coupled network; best overlaps",
                     fontsize=9, loc="left", pad=2)
        lines = lines or [("(no rows in the couplings table)", "0.3")]
        per_col = max(1, -(-len(lines) // 2))  # two columns, filled top to bottom
        for i, (text, colour) in enumerate(lines):
            ax.text(0.5 * (i // per_col), 0.95 - (i % per_col) * (0.9 / per_col), text,
                    fontsize=9, color=colour if coupled else "0.45", transform=ax.transAxes,
                    va="top", ha="left")

        # glass brain: drop the previous overlay (images; the schematic is patches), add this one
        values = model["group_t"][atom]
        vmax = float(np.max(np.abs(np.nan_to_num(values, posinf=1e6, neginf=-1e6)))) or 1.0
        threshold = min(self.t_threshold, 0.999 * vmax)
        for axes in self.display.axes.values():
            for im in list(axes.ax.images):
                im.remove()
        cmap = colormaps["cold_hot"]
        self.display.add_overlay(image.index_img(self.t_img, atom), threshold=threshold,
                                 cmap=cmap, vmin=-vmax, vmax=vmax)
        cax = self.cax
        cax.clear()
        fig.colorbar(ScalarMappable(Normalize(-vmax, vmax), cmap), cax=cax)
        cax.axhspan(-threshold, threshold, color="0.85")
        cax.yaxis.tick_left()
        cax.tick_params(labelsize=9, length=2, pad=1)

        ax = self.ax_hist
        ax.clear()
        row = model["loadings"][[atom], :].tocoo()
        keep = row.data != 0
        cols, vals = row.col[keep], row.data[keep]
        layers = model["layers"]
        pos = np.bincount(layers[cols[vals > 0]], minlength=self.n_layers)
        neg = np.bincount(layers[cols[vals < 0]], minlength=self.n_layers)
        x = np.arange(self.n_layers)
        ax.bar(x, pos, color=_ACTIVE, width=0.85, label="+ loading")
        ax.bar(x, neg, bottom=pos, color=_DEACTIVE, width=0.85, label="− loading")
        ax.set_xlabel("layer", fontsize=9, labelpad=1)
        ax.set_title(f"AN sub-group: {cols.size} ANs", fontsize=9, loc="left", pad=2)
        ax.set_xlim(-0.6, self.n_layers - 0.4)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.yaxis.get_major_locator().set_params(integer=True)
        if cols.size:
            ax.legend(fontsize=9, frameon=False, loc="upper left", handlelength=1,
                      borderpad=0)
        _quiet(ax)
        return fig


def _quiet(ax) -> None:
    ax.tick_params(labelsize=9, length=2)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def atom_figure(model: Mapping[str, Any], atom: int, *, name: str = "", tr_s: float = 1.5,
                t_threshold: float = 3.0, figsize: tuple[float, float] = (7.2, 5.0),
                max_networks: int = 6):
    """The composite figure of one atom of one model.

    Parameters
    ----------
    model : mapping
        One model's inputs, as described in :func:`atom_explorer`; checked first.
    atom : int
        The atom's index (column of ``D``, row of ``group_t`` and ``loadings``).
    name : str
        The model's name, for the title.
    tr_s : float
        Repetition time in seconds (time axis of the time course).
    t_threshold : float
        Voxels with ``|t|`` below this are not drawn on the glass brain.
    figsize : (float, float)
        Figure size in inches.
    max_networks : int
        At most this many network labels are listed.

    Returns
    -------
    matplotlib.figure.Figure
        Rows: the time course; the glass brain of the signed group t map beside the layer
        histogram of the atom's AN sub-group (positive and negative loadings stacked); the
        network labels (coupled ones, or the best overlaps in grey when none is coupled). Text
        at 9 pt or more. Not attached to pyplot.
    """
    _check_options(tr_s, t_threshold, 90, figsize, max_networks)
    checked = _check_model(name or "model", model)
    k = checked["D"].shape[1]
    if isinstance(atom, bool) or not isinstance(atom, (int, np.integer)) or not 0 <= atom < k:
        raise ParameterError("atom", f"got {atom!r}", expected=f"an integer in 0..{k - 1}")
    return _AtomFigure(checked, name=name, tr_s=tr_s, t_threshold=t_threshold, figsize=figsize,
                       max_networks=max_networks).draw(int(atom))


def _png(fig, dpi: float) -> bytes:
    """Save a figure as a PNG with an adaptive 256-colour palette (about a third of the size).
    The figure is rendered once at ``dpi`` on a white ground and its pixels quantised directly
    (the bytes of saving a PNG, reading it back and quantising that, without the round trip)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    fig.set_dpi(dpi)
    fig.set_facecolor("white")
    canvas.draw()
    with Image.fromarray(np.asarray(canvas.buffer_rgba()), "RGBA") as im:
        pal = im.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    out = io.BytesIO()
    pal.save(out, format="PNG", optimize=True)
    return out.getvalue()


def atom_pngs(model: Mapping[str, Any], *, name: str = "", tr_s: float = 1.5,
              t_threshold: float = 3.0, dpi: float = 100, figsize: tuple[float, float] = (7.2, 5.0),
              max_networks: int = 6) -> list[bytes]:
    """One composite PNG per atom of one model (see :func:`atom_figure`).

    Parameters
    ----------
    model : mapping
        ``D``, ``group_t``, ``mask_img``, ``loadings``, ``layers``, ``couplings`` (see
        :func:`atom_explorer`); checked before any figure is drawn.
    name, tr_s, t_threshold, dpi, figsize, max_networks
        See :func:`atom_explorer`.

    Returns
    -------
    list of bytes
        PNG files, one per atom, in atom order.
    """
    import matplotlib as mpl
    from tqdm import tqdm  # the text bar, off without a terminal (no stray widgets in a notebook)

    from .plotting import HOUSE_RC

    _check_options(tr_s, t_threshold, dpi, figsize, max_networks)
    checked = _check_model(name or "model", model)
    k = checked["D"].shape[1]
    with mpl.rc_context(HOUSE_RC):  # the book's style, whichever process draws them
        renderer = _AtomFigure(checked, name=name, tr_s=tr_s, t_threshold=t_threshold,
                               figsize=figsize, max_networks=max_networks)
        out = [_png(renderer.draw(atom), dpi)
               for atom in tqdm(range(k), desc=f"explorer figures {name}".strip(), leave=False,
                                disable=None)]
    logger.info("explorer: %d figures for %s, %.0f KB on average", k, name or "model",
                sum(map(len, out)) / max(k, 1) / 1024)
    return out


# --------------------------------------------------------------------------------------------
# Widget


def _caption(name: str, model: Mapping[str, Any], atom: int) -> str:
    row = model["loadings"][[atom], :]
    n_an = int(np.count_nonzero(row.data))
    lines, coupled = _network_lines(model["couplings"], atom, 10**6)
    nets = "; ".join(text.split("  (")[0] for text, _ in lines) if coupled else "none"
    return (f"<b>{html.escape(name)}</b> · atom {atom} · {n_an} ANs · "
            f"coupled networks: {html.escape(nets)}")


def atom_explorer(models: Mapping[str, Mapping[str, Any]], tr_s: float = 1.5, *,
                  t_threshold: float = 3.0, dpi: float = 100,
                  figsize: tuple[float, float] = (7.2, 5.0), max_networks: int = 6,
                  pngs: Mapping[str, Any] | None = None):
    """An atom explorer widget that keeps working in the static HTML of the book.

    Parameters
    ----------
    models : dict
        Model name -> dict with

        - ``D``: array (T, k), the dictionary (one temporal atom per column);
        - ``group_t``: array (k, V), each atom's group t map over the mask's voxels;
        - ``mask_img``: the brain mask (Nifti image or path) of ``group_t``'s voxels;
        - ``loadings``: scipy.sparse (k, N), the sparse loadings of the N ANs;
        - ``layers``: int array (N,), each AN's layer;
        - ``couplings``: DataFrame with columns ``atom, network, sign, dice, q, coupled``
          (``sign``: ``"active"``/``"deactive"``; an ``atlas`` column, when present and
          holding several atlases, prefixes the network names).
    tr_s : float
        Repetition time in seconds.
    t_threshold : float
        ``|t|`` below this is not drawn on the glass brains.
    dpi : float
        Resolution of the PNGs (100: the default size is shown at its natural width in the
        book's 730 px column, so its 9 pt text stays 9 pt; about 40-60 KB each).
    figsize : (float, float)
        Size of each composite figure in inches.
    max_networks : int
        At most this many networks listed per figure.
    pngs : dict, optional
        Model name -> the model's figures, one PNG (bytes) per atom in atom order, drawn before
        (e.g. ``stages.explorer_figures``, which caches them); the models not in it are drawn
        here with the options above.

    Returns
    -------
    ipywidgets.VBox
        ``children[0]``: an HBox with the model Dropdown, the atom Dropdown and an atom
        IntSlider; ``children[1]``: a Stack over models, each a Stack over atoms of
        ``VBox([HTML caption, Image])``. The pickers are tied to the stacks by
        :func:`ipywidgets.jslink` (kept as the VBox's ``links`` attribute), so switching
        works in the browser without a kernel once the widget state is embedded.

    Raises
    ------
    ParameterError, InputError
        Bad options or model inputs, before any figure is drawn.
    """
    import ipywidgets as widgets

    if not isinstance(models, Mapping) or not models:
        raise ParameterError("models", f"got {type(models).__name__} of length "
                             f"{len(models) if hasattr(models, '__len__') else '?'}",
                             expected="a non-empty dict: model name -> inputs")
    _check_options(tr_s, t_threshold, dpi, figsize, max_networks)
    checked = {name: _check_model(name, model) for name, model in models.items()}
    n_atoms = max(m["D"].shape[1] for m in checked.values())
    given = dict(pngs or {})
    unknown = set(given) - set(checked)
    if unknown:
        raise ParameterError("pngs", f"figures of unknown model(s) {sorted(unknown)}",
                             expected=f"names among {list(checked)}")
    for name, figs in given.items():
        k = checked[name]["D"].shape[1]
        if (isinstance(figs, (bytes, str)) or len(figs) != k
                or not all(isinstance(f, bytes) and f.startswith(b"\x89PNG") for f in figs)):
            raise InputError(f"pngs[{name!r}]", "not one PNG per atom", field="pngs",
                             expected=f"{k} PNG files (bytes), one per atom of D")

    model_stacks = []
    for name, model in checked.items():
        figs = given[name] if name in given else atom_pngs(
            model, name=name, tr_s=tr_s, t_threshold=t_threshold, dpi=dpi, figsize=figsize,
            max_networks=max_networks)
        pages = [widgets.VBox([widgets.HTML(_caption(name, model, j)),
                               widgets.Image(value=png, format="png",
                                             layout=widgets.Layout(max_width="100%",
                                                                   height="auto"))])
                 for j, png in enumerate(figs)]
        pages += [widgets.HTML(f"<i>{html.escape(name)} has {len(figs)} atoms: "
                               f"no atom {j}.</i>") for j in range(len(figs), n_atoms)]
        model_stacks.append(widgets.Stack(pages, selected_index=0))
    outer = widgets.Stack(model_stacks, selected_index=0)

    model_pick = widgets.Dropdown(options=list(checked), index=0, description="model",
                                  layout=widgets.Layout(width="auto"))
    atom_pick = widgets.Dropdown(options=[(f"atom {j}", j) for j in range(n_atoms)], index=0,
                                 description="atom", layout=widgets.Layout(width="12em"))
    atom_slider = widgets.IntSlider(value=0, min=0, max=n_atoms - 1, description="",
                                    continuous_update=True, readout=False,
                                    layout=widgets.Layout(width="16em"))
    links = [widgets.jslink((model_pick, "index"), (outer, "selected_index")),
             widgets.jslink((atom_slider, "value"), (atom_pick, "index"))]
    links += [widgets.jslink((atom_pick, "index"), (stack, "selected_index"))
              for stack in model_stacks]
    box = widgets.VBox([widgets.HBox([model_pick, atom_pick, atom_slider]), outer])
    box.links = links  # keep the Link widgets reachable (and inspectable by tests)
    return box
