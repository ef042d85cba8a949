"""What chapter 7 (``notebooks/06_cross_model.py``, cross-model comparison) shows: whether
trained language models' atoms couple with the brain's networks more than the atoms of the
same models untrained or reading the story's words shuffled, and whether size explains the
differences.

The variants run as one sweep (:func:`llmbrain_utils.sweep.run_variants`); :func:`load` opens
each variant's artifacts by the sweep table's keys and :func:`measure` computes, per variant, a
row of the comparison table, its couplings and its network signal
(:mod:`llmbrain_utils.netsignal`). The other functions each draw one figure, show one table or
print one summary from those; the figures a function draws are shown by the cell that calls it
(``plt.show()``, or the inline backend at the cell's end). Headline figures are recorded with
the notebook's :class:`~llmbrain_utils.headlines.Recorder` (``hl``) where they are computed.

The verdict logic of the section "The paper's claims, checked on this run" is
:func:`direction` (one paired difference: above 0, below 0, no difference shown, or not
determined) and :func:`signal_verdict` (the sentence over the model-control pairs).
"""

from __future__ import annotations

import json
import logging
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy.stats import false_discovery_control, spearmanr

from .. import compare, netsignal, plotting, stages, sweep

#: the stages each variant runs, up to the network mapping
STAGES = ["extraction", "dictionary", "encoding", "fbn"]

#: the committed coverage benchmark of the network signal's intervals
COVERAGE_FILE = Path(netsignal.__file__).resolve().parents[1] / "benchmarks" / "interval_coverage.json"

#: the columns of the comparison table recorded as headline figures (``summary[...]``)
SUMMARY_COLUMNS = ["n_params_m", "n_ans", "dict_r2", "dict_r2_chance", "theta_milli", "theta_lo", "theta_hi",
                   "atoms_coupled", "networks_involved", "active", "deactive", "diversity_mean_abs_r",
                   "consistency_mean_abs_r", "balance", "cv_r_isc_mask", "cv_r_ci_low", "cv_r_ci_high"]

#: the columns of the comparison table the chapter shows, and their short names (the rest: the
#: figures and tables/06_cross_model.tsv)
SHORT_NAMES = {"theta_milli": "θ x 1e3", "theta_lo": "95% low", "theta_hi": "95% high", "atoms_coupled": "atoms",
               "networks_involved": "networks", "dict_r2": "dict R2", "dict_r2_chance": "chance R2",
               "cv_r_isc_mask": "held-out r"}

#: the measures set against model size: (column, interval low, interval high, title)
SIZE_MEASURES = [("cv_r_isc_mask", "cv_r_ci_low", "cv_r_ci_high", "held-out r (ISC mask)"),
                 ("theta_milli", "theta_lo", "theta_hi", "network signal θ x 1000"),
                 ("atoms_coupled", None, None, "atoms coupled (FDR count)"),
                 ("diversity_mean_abs_r", None, None, "diversity (mean |r|, lower = diverse)"),
                 ("consistency_above_null", None, None, "consistency above size-matched null"),
                 ("balance", None, None, "balance (consistency - diversity)")]

#: the measures whose Spearman correlation with size over the trained models is reported
SIZE_CORRELATED = ("cv_r_isc_mask", "theta_milli", "atoms_coupled", "networks_involved", "diversity_mean_abs_r",
                   "balance")

#: relative depth bins (0-1) of the layer distributions
DEPTH_BINS = np.linspace(0, 1, 7)

#: the models the atom explorer shows (volume data only)
EXPLORED = ("MiniLM-L6", "SmolLM2-135M")


# --------------------------------------------------------------------------- variants by role
def trained(names) -> list[str]:
    """The trained models among the variant ``names`` (their 32-token and causal readings
    too): every variant that is neither untrained nor reading shuffled words."""
    return [n for n in names if "untrained" not in n and "shuffled" not in n]


def controls(names) -> list[str]:
    """The controls among the variant ``names``: untrained copies and shuffled words."""
    t = trained(names)
    return [n for n in names if n not in t]


def primary(names) -> list[str]:
    """One point per trained model: the trained variants that are not a causal or 32-token
    reading."""
    return [n for n in trained(names) if " causal" not in n and " tokens" not in n]


def pairs(names) -> list[tuple[str, str]]:
    """The paired comparisons of network signal, ``(model a, model b)`` for ``a - b``: each
    primary model against its untrained copy and its shuffled words, causal against
    bidirectional reading with the same 32 tokens, then every two primary models."""
    names = list(names)
    prim = primary(names)
    out = [(n, n + " untrained") for n in prim if n + " untrained" in names]
    out += [(n, n + " shuffled words") for n in prim if n + " shuffled words" in names]
    out += [(n + " causal", n + " 32 tokens") for n in prim if n + " causal" in names and n + " 32 tokens" in names]
    out += [(a, b) for i, a in enumerate(prim) for b in prim[i + 1:]]
    return out


def control_labels(names) -> list[str]:
    """The labels (``"a - b"``) of the pairs of a model and one of its controls."""
    ctrl = controls(names)
    return [f"{a} - {b}" for a, b in pairs(names) if b in ctrl]


def other_labels(names) -> list[str]:
    """The labels of the other pairs: causal against bidirectional, and model against model."""
    ctrl = controls(names)
    return [f"{a} - {b}" for a, b in pairs(names) if b not in ctrl]


# --------------------------------------------------------------------------- the comparison
@dataclass
class Comparison:
    """The sweep the chapter reads: the run's parameters (``base``), the fMRI data every variant
    shares, the sweep's table (indexed by variant name) and its wall time, each variant's
    ``cfg`` and artifacts (``runs[name]``: ``cfg``, ``ext``, ``dic``, ``enc``, ``fbn``), where
    the data live (mask or mesh), the ISC mask and the atlas on the data's columns."""

    base: Any
    data: Any
    sweep_table: pd.DataFrame
    wall_s: float
    n_workers: int
    runs: dict
    where: Any
    mesh: str | None
    keep: np.ndarray
    atlas: Any

    @property
    def names(self) -> list[str]:
        """Every variant, in the sweep's order."""
        return list(self.runs)

    @property
    def truth(self) -> dict | None:
        """The twin's planted truth (None on real data)."""
        return self.data.info.get("truth")


def load(base, variants: list[dict], *, n_workers: int = 2) -> Comparison:
    """Run (or read from the store) the sweep of ``variants`` up to the network mapping on
    ``n_workers`` processes, and open every variant's artifacts and the shared fMRI data."""
    logging.getLogger("distributed").setLevel(logging.ERROR)  # the local cluster's shutdown chatter
    data = stages.fmri_data(base)  # made by chapter 4; shared by every variant
    wall0 = time.perf_counter()
    sweep_table, done = sweep.run_variants(base, variants, until="fbn", n_workers=n_workers)
    wall_s = time.perf_counter() - wall0
    runs = {}
    for name, d in done.items():  # the artifacts named by the sweep table's keys
        a = d["artifacts"]
        runs[name] = dict(cfg=d["cfg"], ext=a["extraction"], dic=a["dictionary"], enc=a["encoding"],
                          fbn=a["fbn"])
    where = stages.read_where(data)  # the brain mask, or the cortical mesh (then a "voxel" is a vertex)
    return Comparison(base=base, data=data, sweep_table=sweep_table.set_index("name"), wall_s=wall_s,
                      n_workers=n_workers, runs=runs, where=where,
                      mesh=where if isinstance(where, str) else None,
                      keep=stages.read_isc_mask(data, base.alpha), atlas=stages.load_atlas_on(base.atlas, data))


def print_timing(cmp: Comparison) -> None:
    """Print each variant's status and seconds per stage in the sweep, and its wall time."""
    t = cmp.sweep_table
    timing = t[[f"{s}_seconds" for s in STAGES]].set_axis(STAGES, axis=1).round(1)
    timing.insert(0, "status", t.status)
    print(timing.to_string())
    print(f"variants' wall time {cmp.wall_s:.0f} s with {cmp.n_workers} worker(s); table: runs/sweeps/cross_model.tsv")


@dataclass
class Measures:
    """What :func:`measure` computes per variant: the comparison table (``summary``, one row per
    variant), the couplings tables, the atoms' time courses (``Ds``), the per-subject
    coefficients (``betas``), the network signal and the dictionary with its ANs' layers
    (``reads[name] = (result, layers)``)."""

    summary: pd.DataFrame
    tables: dict
    Ds: dict
    betas: dict
    signal: dict
    reads: dict


def measure(cmp: Comparison, *, n_subsets: int = 1000, hl=None) -> Measures:
    """Per variant: its row of the comparison table (``compare.model_summary``: size, couplings,
    diversity, consistency, held-out r), its dictionary R2 beside its chance level, and its
    network signal with a 95% interval over ``n_subsets`` subsets of half the listeners. Records
    the table's :data:`SUMMARY_COLUMNS` in ``hl`` as ``summary[model][column]``."""
    seed = cmp.base.seed
    rows, tables, Ds, betas, signal, reads = [], {}, {}, {}, {}, {}
    for name, r in cmp.runs.items():
        res = stages.read_dictionary(r["dic"], r["ext"])
        table = stages.read_couplings(r["fbn"])
        layers = stages.read_an_table(r["ext"]).layer.to_numpy()
        info = dict(r["ext"].info["model"], n_params_m=round(r["ext"].info["n_params"] / 1e6, 1))
        row = compare.model_summary(name, D=res.D, loadings=res.A, layers=layers,
                                    table=table, cv_r=np.load(r["enc"].file("cv_r.npy")), isc_keep=cmp.keep,
                                    info=info, seed=seed) | {"dict_r2": res.r2_overall}
        # chance: the best R2 of three structureless dictionaries of the same k under the same lasso
        # (random bases of the responses' k-PC subspace, random ANs, random smooth atoms; chapter 3)
        chance = stages.read_tsv(stages.dictionary_chance(r["cfg"]), "chance.tsv").set_index("model")
        row["dict_r2_chance"] = chance.r2_lasso.max()
        t = cmp.sweep_table.loc[name]  # the sweep's metrics of this variant
        assert t.n_atoms_coupled == row["atoms_coupled"] and t.n_networks_involved == row["networks_involved"]
        betas[name] = np.load(r["enc"].file("beta.npy"))  # (subjects, atoms, voxels): the same listeners for every model
        sig = signal[name] = netsignal.network_signal(betas[name], cmp.atlas, n_resamples=n_subsets, seed=seed)
        row.update(theta_milli=1e3 * sig.estimate, theta_lo=1e3 * sig.lo, theta_hi=1e3 * sig.hi, theta_p=sig.p)
        rows.append(row)
        tables[name], Ds[name], reads[name] = table, res.D, (res, layers)
    summary = pd.DataFrame(rows).set_index("model")
    if hl is not None:
        hl.add_table("summary", summary[SUMMARY_COLUMNS])
    return Measures(summary=summary, tables=tables, Ds=Ds, betas=betas, signal=signal, reads=reads)


def summary_table(m: Measures) -> pd.DataFrame:
    """The comparison table as the chapter shows it: network signal with its interval, atoms
    coupled, networks involved, dictionary R2 and its chance level, held-out r; rounded."""
    return m.summary[list(SHORT_NAMES)].rename(columns=SHORT_NAMES).round(3)


def print_sizes(m: Measures) -> None:
    """Print what was compared: each variant's parameters (millions) and number of ANs."""
    print(m.summary[["n_params_m", "n_ans"]].to_string())


# --------------------------------------------------------------------------- couplings
def counts_figure(cmp: Comparison, m: Measures) -> plt.Figure:
    """Figure 7.1: heat maps of the atoms coupled to each network (FDR) per model and control,
    active (top) and deactive (bottom); each model's parameters in millions in its label."""
    counts = {n: compare.couplings_per_network(t, cmp.atlas.network_names) for n, t in m.tables.items()}
    fig, axes = plt.subplots(2, 1, figsize=(7.2, 10.0))
    vmax = max(1, max(c.to_numpy().max() for c in counts.values()))
    for ax, sign in zip(axes, ["active", "deactive"]):
        M = pd.DataFrame({n: c[sign] for n, c in counts.items()})
        sized = [f"{n} ({m.summary.loc[n, 'n_params_m']:.0f} M)" for n in M.columns]
        plotting.heatmap(ax, M.to_numpy(), xlabels=sized, ylabels=list(M.index), cmap="viridis", vmax=vmax,
                         title=f"{sign.capitalize()} atoms per network", label="atoms coupled (FDR)")
    fig.tight_layout()
    return fig


def print_planted(cmp: Comparison) -> None:
    """Print the networks the twin planted signal in (nothing on real data)."""
    truth = cmp.truth
    if truth is not None:
        print("networks with planted signal:")
        print("    " + ", ".join(sorted({p["network"] for p in truth["plant"]})))


# --------------------------------------------------------------------------- network signal
def print_coverage(path: str | Path | None = None) -> None:
    """Print the coverage of the network signal's 95% intervals in the committed simulation
    benchmark (``benchmarks/interval_coverage.json``): per model, for a difference of two
    models and for a true difference of 0, with its Monte Carlo standard error."""
    cov = json.loads(Path(path or COVERAGE_FILE).read_text())
    print(f"coverage of 95% intervals in {cov['n_reps']} simulated replications:")
    print("    " + ", ".join(f"{q} {c:.3f}" for q, c in cov["coverages"][next(iter(cov["coverages"]))].items())
          + f" (Monte Carlo se {cov['mc_se_of_coverage']:.3f})")


def differences(cmp: Comparison, m: Measures, *, n_subsets: int = 1000, hl=None) -> pd.DataFrame:
    """The paired differences of network signal of :func:`pairs` (first model minus second, on
    the same subsets of listeners), x 1e3 with their 95% intervals, two-sided p and
    Benjamini-Hochberg q over the pairs; rows labelled ``"a - b"``. Records the network signal
    (``netsignal[model][...]``) and the differences (``difference[a - b][...]``) in ``hl``."""
    diffs = netsignal.paired_signal_differences(m.betas, cmp.atlas, pairs=pairs(cmp.names), n_resamples=n_subsets,
                                                seed=cmp.base.seed)
    diffs["q"] = false_discovery_control(diffs.p)
    diffs = diffs.set_index(diffs.model_a + " - " + diffs.model_b)
    diff_table = diffs[["difference", "ci_low", "ci_high"]] * 1e3
    diff_table.columns = ["difference x 1e3", "ci_low x 1e3", "ci_high x 1e3"]
    diff_table[["p", "q (BH)"]] = diffs[["p", "q"]]
    if hl is not None:
        hl.add_table("netsignal", m.summary[["theta_milli", "theta_lo", "theta_hi"]], digits=2)
        hl.add_table("difference", diff_table[["difference x 1e3", "ci_low x 1e3", "ci_high x 1e3", "q (BH)"]],
                     digits=2)
    return diff_table


def signal_figure(cmp: Comparison, m: Measures) -> plt.Figure:
    """Figure 7.2: the network signal (x 1000) of every trained model (blue dots) and control
    (grey squares) with its 95% interval."""
    names, tr = cmp.names, trained(cmp.names)
    fig, ax = plt.subplots(figsize=(7.2, 3.8))
    for i, n in enumerate(names):
        y, lo, hi = m.summary.loc[n, ["theta_milli", "theta_lo", "theta_hi"]]
        ax.errorbar(i, y, yerr=[[y - lo], [hi - y]], fmt="o" if n in tr else "s", ms=5, lw=1,
                    color="C0" if n in tr else "0.55")
    ax.axhline(0, color="0.3", lw=0.6)
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=9)
    ax.set(ylabel="θ x 1000 (95% interval)", title="Network signal: trained models (blue), controls (grey)")
    fig.tight_layout()
    return fig


def per_network_figure(m: Measures) -> plt.Figure:
    """Figure 7.3: heat map of the network signal per network (theta_g x 1000), one row per
    model and control: where each one's signal lies."""
    per = pd.DataFrame({n: s.per_network.estimate * 1e3 for n, s in m.signal.items()}).T
    fig, ax = plt.subplots(figsize=(7.2, 5.6))
    plotting.heatmap(ax, per.to_numpy(), xlabels=list(per.columns), ylabels=list(per.index), cmap="RdBu_r",
                     title="Network signal per network", label="θ_g x 1000")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- diversity, size
def consistency_figure(cmp: Comparison, m: Measures) -> plt.Figure:
    """Figure 7.4: the diversity of each model's atoms (top; mean |r| between atoms, grey:
    controls) and the consistency of the atoms coupled to each network (bottom; dots: networks,
    dashes: the mean of random sets of the same number of atoms)."""
    names, ctrl = cmp.names, controls(cmp.names)
    fig, axes = plt.subplots(2, 1, figsize=(7.2, 7.4), sharex=True)
    is_ctrl = [n in ctrl for n in names]
    axes[0].bar(names, m.summary.loc[names, "diversity_mean_abs_r"], color=["0.6" if c else "C2" for c in is_ctrl])
    axes[0].set(ylabel="mean |r| between atoms", title="Diversity of atoms (lower = more diverse; grey: controls)")
    for i, name in enumerate(names):
        cons = compare.network_consistency(m.Ds[name], m.tables[name], seed=cmp.base.seed)
        if len(cons):
            axes[1].scatter(np.full(len(cons), i), cons.consistency, color="C1", s=18)
            axes[1].scatter(np.full(len(cons), i) + 0.15, cons.null_mean, marker="_", color="0.3", s=80)
    axes[1].set_xticks(range(len(names)), names, rotation=60, ha="right")
    axes[1].set(ylabel="mean |r| within a network", title="Consistency per network (dashes: size-matched null)")
    fig.tight_layout()
    return fig


def size_figure(cmp: Comparison, m: Measures, *, x: str = "n_params_m") -> plt.Figure:
    """Figure 7.5 (one of its two): every measure of :data:`SIZE_MEASURES` against model size,
    ``x`` = ``"n_params_m"`` (parameters) or ``"n_ans"`` (ANs), log scale; one colour per model
    family, filled for trained models, open squares for controls; bars: 95% intervals."""
    names, ctrl, prim, s = cmp.names, controls(cmp.names), primary(cmp.names), m.summary
    xlabel = {"n_params_m": "parameters (M, log scale)", "n_ans": "ANs (log scale)"}[x]
    family = {}  # one colour per model family (trained and its controls alike); controls: open squares
    for n in names:
        family.setdefault(s.loc[n, "n_params_m"], f"C{len(family)}")
    fig, axes = plt.subplots(3, 2, figsize=(7.2, 7.8))
    for ax, (col, lo, hi, label) in zip(axes.ravel(), SIZE_MEASURES):
        for n in names:
            control = n in ctrl
            y = s.loc[n, col]
            yerr = None if lo is None else [[max(y - s.loc[n, lo], 0)], [max(s.loc[n, hi] - y, 0)]]
            c = family[s.loc[n, "n_params_m"]]
            ax.errorbar(s.loc[n, x], y, yerr=yerr, fmt="s" if control else "o", ms=5, lw=0.8, color=c,
                        mfc="white" if control else c, label=n if n in prim else None)
        ax.set(xscale="log", title=label)
        ax.xaxis.set_minor_formatter(mpl.ticker.NullFormatter())  # no overprinted minor log labels
    for ax in axes[-1]:
        ax.set_xlabel(xlabel)
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="upper center", ncol=4, fontsize=9,
               bbox_to_anchor=(0.5, 0.0), frameon=False, title="filled: trained models (their 32-token and causal variants too); open squares: controls",
               title_fontsize=9)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- layers
def _coupled_atoms(table: pd.DataFrame) -> list:
    return sorted(table[table.coupled].atom.unique())


def layer_figure(cmp: Comparison, m: Measures, *, ncol: int = 4) -> plt.Figure:
    """Figure 7.6: per model and control (small multiples, ``ncol`` per row), the share of the
    ANs of its coupled atoms in each layer."""
    names = cmp.names
    nrow = -(-len(names) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(7.2, 1.9 * nrow), sharey=True)
    for ax in axes.ravel()[len(names):]:
        ax.remove()
    for ax, name in zip(axes.ravel(), names):
        res, layers = m.reads[name]
        dist = compare.layer_distribution(res.A, layers, _coupled_atoms(m.tables[name]))
        ax.bar(dist.index, dist.values, color="C4")
        ax.set_title(name, fontsize=9)
    for ax in axes[:, 0]:
        ax.set_ylabel("share of ANs")
    for ax in axes.ravel()[max(0, len(names) - ncol):len(names)]:
        ax.set_xlabel("layer")
    fig.tight_layout()
    return fig


def network_depth(res, layers, table: pd.DataFrame, network_names, bins=DEPTH_BINS) -> np.ndarray:
    """Per network (rows), the layer distribution of the ANs of the atoms coupled to it, over
    relative depth bins (columns; layers scaled to 0-1); zeros for a network without atoms."""
    c = table[table.coupled]
    M = np.zeros((len(network_names), len(bins) - 1))
    for j, net in enumerate(network_names):
        atoms = sorted(c[c.network == net].atom.unique())
        if atoms:
            dist = compare.layer_distribution(res.A, layers, atoms)
            M[j] = np.histogram(dist.index / max(layers.max(), 1), bins, weights=dist.values)[0]
    return M


def network_depth_figure(cmp: Comparison, m: Measures) -> plt.Figure:
    """Figure 7.7: per trained model (two per row) and network, the layer distribution
    (relative depth) of the ANs of the atoms coupled to that network."""
    tr, bins, networks = trained(cmp.names), DEPTH_BINS, cmp.atlas.network_names
    nrow = -(-len(tr) // 2)
    fig, axes = plt.subplots(nrow, 2, figsize=(7.2, 4.2 * nrow), sharey=True)
    for ax in axes.ravel()[len(tr):]:
        ax.remove()
    for ax, name in zip(axes.ravel(), tr):
        res, layers = m.reads[name]
        M = network_depth(res, layers, m.tables[name], networks, bins)
        plotting.heatmap(ax, M, xlabels=[f"{b:.1f}" for b in bins[1:]], ylabels=list(networks),
                         cmap="magma", vmax=1, title=name, label="share of ANs")
        ax.set_xlabel("relative depth (bin end)")
    fig.tight_layout()
    return fig


def atom_depth(res, layers, bins=DEPTH_BINS) -> np.ndarray:
    """Per atom (rows), the layer distribution of its ANs over relative depth bins (columns)."""
    top = max(layers.max(), 1)
    return np.array([np.histogram(d.index / top, bins, weights=d.values)[0]
                     for d in (compare.layer_distribution(res.A, layers, [a]) for a in range(res.A.shape[0]))])


def atom_depth_figure(cmp: Comparison, m: Measures) -> plt.Figure:
    """Figure 7.8: per trained model (small multiples in rows of four), the layer distribution
    (relative depth) of every atom's ANs, on one shared colour scale; green dots at the left:
    the atoms coupled to a network."""
    tr, bins, s = trained(cmp.names), DEPTH_BINS, m.summary
    ncol = min(4, len(tr))  # small multiples in rows of four, so the titles do not overprint
    nrow = -(-len(tr) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(6.4, 4.0 * nrow), sharey=True, squeeze=False)
    for ax in axes.flat[len(tr):]:
        ax.axis("off")
    per_atom = {name: atom_depth(*m.reads[name], bins) for name in tr}
    vmax = max(M.max() for M in per_atom.values())  # one shared scale, up to the largest share
    for ax, name in zip(axes.flat, tr):
        im = ax.imshow(per_atom[name], aspect="auto", cmap="magma", vmin=0, vmax=vmax, interpolation="nearest")
        coupled_atoms = _coupled_atoms(m.tables[name])
        ax.scatter(np.full(len(coupled_atoms), -0.9), coupled_atoms, s=4, color="C2", clip_on=False)
        ax.set_xticks(range(len(bins) - 1), [f"{b:.1f}" for b in bins[1:]], fontsize=9, rotation=90)
        ax.set_title(name.replace(" ", "\n", 1) + f"\n({s.loc[name, 'n_params_m']:.0f} M)", fontsize=9)
        ax.set_xlabel("depth")
    for row in axes:
        row[0].set_ylabel("atom")
    fig.tight_layout()
    fig.colorbar(im, ax=axes.ravel().tolist(), label="share of the atom's ANs", fraction=0.03, pad=0.02)
    return fig


# --------------------------------------------------------------------------- explorer
def atom_explorer(cmp: Comparison, m: Measures, *, names=EXPLORED):
    """The atom explorer widget of the models ``names`` (those that ran): pick a model and an
    atom to see its time course, group t map, AN layers and networks. None on a mesh (the
    explorer draws glass brains of the volume; a line says so) or when none of them ran."""
    from .. import explorer

    shown, pngs = {}, {}
    if cmp.mesh:  # the explorer draws glass brains of the volume
        print(f"no atom explorer on a mesh ({cmp.mesh}): chapter 6 shows the coupled atoms on the cortex")
    for name in [n for n in names if n in cmp.runs and not cmp.mesh]:
        r = cmp.runs[name]
        res = stages.read_dictionary(r["dic"], r["ext"])
        shown[name] = dict(D=res.D, group_t=np.load(r["enc"].file("group_t.npy")), mask_img=cmp.where,
                           loadings=res.A, layers=stages.read_an_table(r["ext"]).layer.to_numpy(),
                           couplings=m.tables[name])
        # the figures are an artifact of their own: drawn once (about a minute per model), then read
        pngs[name] = stages.read_explorer_figures(stages.explorer_figures(r["cfg"], name))
    return explorer.atom_explorer(shown, tr_s=cmp.base.tr_s, pngs=pngs) if shown else None


# --------------------------------------------------------------------------- claims and verdicts
def say(text: str, indent: int = 0) -> None:
    """Print ``text`` wrapped to the page (86 characters), continuation lines indented 4 more."""
    print(textwrap.fill(text, width=86, initial_indent=" " * indent, subsequent_indent=" " * (indent + 4)))


def theta_text(summary: pd.DataFrame, name: str) -> str:
    """``"θ x 1e3 = 4.53 [3.46, 5.48]"``: a variant's network signal with its 95% interval."""
    s = summary
    return f"θ x 1e3 = {s.loc[name, 'theta_milli']:.2f} [{s.loc[name, 'theta_lo']:.2f}, {s.loc[name, 'theta_hi']:.2f}]"


def model_text(summary: pd.DataFrame, name: str) -> str:
    """A variant in one line: network signal, atoms coupled and networks involved, held-out r
    with its interval."""
    s = summary
    return (f"{name}: {theta_text(s, name)}, {s.loc[name, 'atoms_coupled']:.0f} atoms coupled in "
            f"{s.loc[name, 'networks_involved']:.0f} networks, r = {s.loc[name, 'cv_r_isc_mask']:.3f} "
            f"[{s.loc[name, 'cv_r_ci_low']:.3f}, {s.loc[name, 'cv_r_ci_high']:.3f}]")


def difference_text(diff_table: pd.DataFrame, label: str) -> str:
    """A paired difference in one line: ``"a - b: +1.43 [+0.35, +2.49], q = 0.005"`` (x 1e3)."""
    d = diff_table.loc[label]
    return (f"{label}: {d['difference x 1e3']:+.2f} [{d['ci_low x 1e3']:+.2f}, {d['ci_high x 1e3']:+.2f}], "
            f"q = {d['q (BH)']:.3f}")


def direction(label: str, hl, *, alpha: float) -> str:
    """The verdict on the paired difference ``label`` (``"a - b"``, recorded in ``hl`` by
    :func:`differences`): ``"above 0"`` or ``"below 0"`` when the difference has that sign with
    BH q <= ``alpha`` under every measured seed and BLAS kernel (``hl.holds_joint``), ``"no
    difference shown"`` when q > ``alpha`` under all of them (``hl.holds``), else ``"not
    determined (flips with the seed or kernel)"``: a verdict that flips with them is not a
    finding. Without a measured spread the run's own values decide."""
    d, q = f"difference[{label}][difference x 1e3]", f"difference[{label}][q (BH)]"
    if hl.holds_joint([d, q], lambda d, q: d > 0 and q <= alpha).startswith("holds"):
        return "above 0"
    if hl.holds_joint([d, q], lambda d, q: d < 0 and q <= alpha).startswith("holds"):
        return "below 0"
    if hl.holds(q, lambda q: q > alpha).startswith("holds"):
        return "no difference shown"
    return "not determined (flips with the seed or kernel)"


def signal_verdict(directions: dict[str, str], *, alpha: float) -> str:
    """The chapter's verdict in one sentence, from the :func:`direction` of every pair of a
    model and one of its controls (``{label: direction}``): every model above all its controls,
    some pairs separated (naming those above and below 0), or none."""
    above = [lab for lab, d in directions.items() if d == "above 0"]
    below = [lab for lab, d in directions.items() if d == "below 0"]
    if above and len(above) == len(directions):
        return ("Every trained model carries more network signal than each of its controls (paired differences, "
                f"BH q <= {alpha} over the chapter's pairs).")
    if above or below:
        return (f"The network signal separates some trained models from their controls and not others (paired "
                f"differences, BH q <= {alpha}): the model carries more than its control for "
                f"{', '.join(above) or 'no pair'}, less for {', '.join(below) or 'no pair'}, and no difference is "
                f"shown (or the verdict flips with the seed or BLAS kernel) for the rest.")
    return ("The network signal does not separate any trained model from its controls: no paired difference "
            f"reaches BH q <= {alpha}. With intervals whose coverage was checked, this says the "
            "differences, if any, are smaller than the intervals' half-widths on these 8 listeners.")


def model_claims(cmp: Comparison, m: Measures) -> None:
    """Print claims 1 and 2: every trained model, then every control, in one line each
    (:func:`model_text`)."""
    say("Claim 1. Sub-groups of ANs (atoms) couple with functional brain networks, in every model.")
    for n in trained(cmp.names):
        say(model_text(m.summary, n), 3)
    say("Claim 2 (implicit). The couplings come from what the model learned. Controls:")
    for n in controls(cmp.names):
        say(model_text(m.summary, n), 3)


def difference_claims(cmp: Comparison, diff_table: pd.DataFrame, hl) -> None:
    """Print every paired difference with its :func:`direction`: each model against its
    controls, then causal against bidirectional reading and the models against each other."""
    alpha = cmp.base.alpha
    say("Paired differences of network signal, each model against its controls (95% intervals, BH q over all pairs):", 3)
    for label in control_labels(cmp.names):
        say(f"{difference_text(diff_table, label)}: {direction(label, hl, alpha=alpha)}", 3)
    say("Causal against bidirectional reading, and the trained models against each other:", 3)
    for label in other_labels(cmp.names):
        say(f"{difference_text(diff_table, label)}: {direction(label, hl, alpha=alpha)}", 3)


def atom_claims(cmp: Comparison, m: Measures) -> None:
    """Print claims 3-5 with every variant's value: diversity (mean |r|), consistency above the
    size-matched null, and their balance."""
    s, names = m.summary, cmp.names
    say("Claim 3. Better models have more diverse atoms (lower mean |r|): "
        + ", ".join(f"{n} {s.loc[n, 'diversity_mean_abs_r']:.3f}" for n in names))
    say("Claim 4. ... and more consistent atoms within a network (above a size-matched null): "
        + ", ".join(f"{n} {s.loc[n, 'consistency_above_null']:+.3f}" for n in names))
    say("Claim 5. ... so the balance of the two grows with capability (consistency - diversity): "
        + ", ".join(f"{n} {s.loc[n, 'balance']:+.3f}" for n in names))


def size_rho(x, y) -> float:
    """Spearman's rho of ``y`` with ``x``; NaN when ``y`` is constant or not finite."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    return spearmanr(x, y).statistic if np.isfinite(y).all() and np.ptp(y) > 0 else float("nan")


def size_correlations(cmp: Comparison, m: Measures, hl=None) -> None:
    """Print, and record in ``hl`` as ``spearman_size_<measure>``, the Spearman correlation of
    each measure of :data:`SIZE_CORRELATED` with parameters, one point per trained model."""
    prim, s = primary(cmp.names), m.summary
    say("Size, not capability? Spearman rho with parameters, one point per trained model (n = %d):" % len(prim))
    for col in SIZE_CORRELATED:
        rho = size_rho(s.loc[prim, "n_params_m"].to_numpy(float), s.loc[prim, col].to_numpy(float))
        if hl is not None:
            hl.add(f"spearman_size_{col}", rho, digits=2)
        print(f"   {col}: {rho:+.2f}")


def sentences(cmp: Comparison, m: Measures, diff_table: pd.DataFrame, hl) -> dict[str, str]:
    """The sentences the book's results page pastes (glue names ``cmp_*``): the verdict
    (:func:`signal_verdict`), the network signal of trained models and controls, the
    model-control differences, counts and networks per variant, held-out encoding, causal
    against bidirectional reading, consistency above its null, and held-out r against size."""
    s, names, alpha = m.summary, cmp.names, cmp.base.alpha
    tr, ctrl, prim = trained(names), controls(names), primary(names)
    labels = control_labels(names)
    out = {
        "cmp_signal_verdict": signal_verdict({lab: direction(lab, hl, alpha=alpha) for lab in labels}, alpha=alpha),
        "cmp_signal_trained": "; ".join(f"{n} {theta_text(s, n)}" for n in tr),
        "cmp_signal_controls": "; ".join(f"{n} {theta_text(s, n)}" for n in ctrl),
        "cmp_signal_pairs": "; ".join(difference_text(diff_table, label) for label in labels),
        "cmp_counts": "; ".join(f"{n} {s.loc[n, 'atoms_coupled']:.0f}" for n in names),
        "cmp_networks": "; ".join(f"{n} {s.loc[n, 'networks_involved']:.0f}" for n in names),
    }
    score = s["cv_r_isc_mask"]
    best, worst = score.idxmax(), score.idxmin()
    bt, bc = score[tr].idxmax(), score[ctrl].idxmax()
    out["cmp_encoding"] = (
        f"Held-out encoding in the ISC mask is highest for {best} (r = {score[best]:.3f}) and lowest for {worst} "
        f"(r = {score[worst]:.3f}); the best trained model is {bt} ({score[bt]:.3f}), the best control {bc} ({score[bc]:.3f})."
        + (" A control predicting this synthetic brain best means its planted signals are low-level (word rate, "
           "word length), which random networks carry strongly." if best in ctrl else ""))
    causal_sets = [(n, n + " 32 tokens", n + " causal") for n in names
                   if n + " causal" in names and n + " 32 tokens" in names]
    out["cmp_causal"] = "; ".join(f"{a}: r {score[c]:.3f} causal vs {score[b]:.3f} bidirectional, both with 32 "
                                  f"preceding tokens ({score[a]:.3f} with 128)" for a, b, c in causal_sets)
    above_null = s.loc[tr, "consistency_above_null"]
    out["cmp_consistency"] = (f"over the trained models, the atoms coupled to one network are "
                              f"{above_null.min():+.3f} to {above_null.max():+.3f} (mean |r|) away from random "
                              f"sets of the same number of atoms")
    rho = spearmanr(s.loc[prim, "n_params_m"], score[prim]).statistic
    sizes = ", ".join(f"{n} {v:.0f} M" for n, v in s.loc[prim, "n_params_m"].items())
    out["cmp_size"] = (f"the Spearman correlation of held-out r with parameters over the {len(prim)} "
                       f"trained models (one point per model) is {rho:+.2f} ({sizes})")
    return out
