"""Chapter 3, the dictionary (``notebooks/02_dictionary.py``): what the learned atoms are, where
they live in the network, how the sweep of k and lambda and the chance dictionaries compare.

Each function draws one figure, builds one table or prints one summary from the dictionary
stage's artifacts (:func:`stages.read_dictionary`, the ``sweep.tsv`` and ``chance.tsv`` tables).
"""
from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .. import dictionary as dl
from .. import headlines, plotting

#: the columns of the chance table that are shown, recorded and compared with the learned atoms
CHANCE_COLUMNS = ["r2_lasso", "r2_ls", "sparsity", "stability", "stability_half"]
#: the columns of the sweep table the chapter shows
SWEEP_COLUMNS = ["k", "lam", "r2", "sparsity", "stability_seed", "stability_half"]


# --------------------------------------------------------------------------- pure numbers
def sign_balance(A) -> np.ndarray:
    """Per atom, ``|sum of its loadings| / sum of their |.|`` (0: as much positive as negative
    loading, 1: one sign only); an atom without loadings counts as 0. ``A`` is the sparse
    (k x N) loading matrix."""
    A_abs = abs(A).sum(axis=1).A.ravel()
    return np.abs(A.sum(axis=1).A.ravel()) / np.where(A_abs > 0, A_abs, 1)


def off_diagonal_abs(C: np.ndarray) -> np.ndarray:
    """The |r| above the diagonal of a (k x k) correlation matrix: each pair of atoms once."""
    return np.abs(C[np.triu_indices_from(C, 1)])


def layer_share(layer_counts: pd.DataFrame) -> pd.DataFrame:
    """Per atom (rows), the share of its AN sub-group in each layer (columns); an atom with no
    ANs keeps a row of zeros."""
    return layer_counts.div(layer_counts.sum(axis=1).replace(0, 1), axis=0)


def default_row(sweep: pd.DataFrame, *, k: int, lam: float) -> pd.Series | None:
    """The sweep's row for ``(k, lam)`` (the run's own parameters), or None if the sweep did
    not fit that pair."""
    row = sweep[(sweep.k == k) & np.isclose(sweep.lam, lam)]
    return row.iloc[0] if len(row) else None


# --------------------------------------------------------------------------- summaries
def fit_summary(res) -> None:
    """Print the fit in one line: solver, k, lambda, the story's length T and the number of ANs
    (and how many were left out as constant)."""
    print(f"solver: {res.solver}, k = {res.k}, lambda = {res.lam}, T = {res.D.shape[0]}, N = {res.n_ans} ANs "
          f"({res.n_excluded} constant, excluded)")


def headline_summary(res, hl: headlines.Recorder) -> None:
    """Record the dictionary's headline figures (R2, sparsity, atoms per AN, sub-group sizes,
    unused atoms) in ``hl`` and print each with its seed-and-kernel range."""
    for name, value in headlines.dictionary_figures(res).items():
        hl.add(name, value, digits=3)
    print(hl.legend())
    print(f"dictionary R2: {hl.fmt('r2', digits=3)}; paper: about 0.5-0.6")
    print(f"loadings zero: {hl.fmt('sparsity')}")
    print(f"atoms per AN: {hl.fmt('atoms_per_an', digits=1)}")
    print(f"AN sub-group size per atom: median {hl.fmt('subgroup_median', digits=0)}")
    print(f"    smallest {hl.fmt('subgroup_min', digits=0)}, largest {hl.fmt('subgroup_max', digits=0)}")
    print(f"atoms used by no AN: {hl.fmt('atoms_unused', digits=0)}")


def sign_balance_summary(res) -> None:
    """Print how balanced in sign each atom's loadings are (:func:`sign_balance`): the median
    over atoms and the share of nearly balanced atoms."""
    balance = sign_balance(res.A)
    print(f"sign balance of the loadings, |sum| / sum |.| per atom: median {np.median(balance):.2f}")
    print(f"    {np.mean(balance < 0.1):.0%} of atoms below 0.1")
    print("    (an atom's sign is a convention: its loadings sum to a positive number)")


def atom_correlation_summary(res) -> None:
    """Print the mean and the largest |r| between two different atoms."""
    off = off_diagonal_abs(dl.atom_correlations(res.D))
    print(f"mean |r| between atoms: {off.mean():.2f}, max {off.max():.2f}")


def sweep_default_summary(row: pd.Series | None, hl: headlines.Recorder, *, k: int, lam: float) -> None:
    """Record and print the sweep's R2 and stabilities at the run's own ``(k, lam)``
    (``row``, from :func:`default_row`); nothing if the sweep did not fit that pair."""
    if row is None:
        return
    for col in ("r2", "stability_seed", "stability_half"):
        hl.add(f"sweep_{col}", row[col], digits=2)
    print(f"default k = {k}, lambda = {lam}:")
    print(f"    R2 {hl.fmt('sweep_r2')}")
    print(f"    stability across seeds {hl.fmt('sweep_stability_seed')}")
    print(f"    stability across AN halves {hl.fmt('sweep_stability_half')}")


def chance_summary(chance: pd.DataFrame, *, r2_lasso: float, r2_ls: float,
                   row: pd.Series | None = None) -> None:
    """Print the chance dictionaries' table and the learned atoms against the best of them:
    R2 under the lasso and by least squares and, given the sweep's ``row`` at the default
    (k, lambda), the stability across seeds and across halves of the ANs."""
    print(chance[CHANCE_COLUMNS].round(3).to_string())
    best = chance[CHANCE_COLUMNS].max()
    print(f"learned: lasso R2 {r2_lasso:.3f} (best chance {best.r2_lasso:.3f}), "
          f"least-squares R2 {r2_ls:.3f} (best chance {best.r2_ls:.3f})")
    if row is not None:
        print(f"learned: stability across seeds {row.stability_seed:.2f} (best chance {best.stability:.2f}),")
        print(f"    across AN halves {row.stability_half:.2f} (best chance {best.stability_half:.2f})")


# --------------------------------------------------------------------------- tables
def sweep_table(sweep: pd.DataFrame) -> pd.DataFrame:
    """The sweep of k and lambda: R2, sparsity and the two stabilities per pair, rounded."""
    return sweep[SWEEP_COLUMNS].round(2)


# --------------------------------------------------------------------------- figures
def atoms_figure(res, *, tr_s: float, n_atoms: int = 12) -> plt.Figure:
    """Figure 3.1: the first ``n_atoms`` atoms over the story (left, z-scored for display) and
    the correlation between all atoms (right)."""
    fig, axes = plt.subplots(1, 2, figsize=(7.2, 3.6), gridspec_kw={"width_ratios": [1.25, 1]})
    plotting.time_courses(axes[0], res.D[:, :n_atoms], tr_s=tr_s,
                          labels=[f"atom {i}" for i in range(n_atoms)])
    axes[0].set_title("Atoms (z-scored for display)")
    C = dl.atom_correlations(res.D)
    plotting.heatmap(axes[1], C, title="Correlation between atoms", label="r")
    axes[1].set(xlabel="atom", ylabel="atom")
    fig.tight_layout()
    return fig


def layer_figure(by_layer: pd.DataFrame, groups) -> plt.Figure:
    """Figure 3.2: the dictionary's R2 of each layer's ANs (left, ``by_layer`` from
    :func:`dictionary.reconstruction_r2_by_layer`) and, per atom, the share of its AN sub-group
    in each layer (right, from ``groups`` = :func:`dictionary.atom_subgroups`)."""
    fig, axes = plt.subplots(1, 2, figsize=(7.2, 3.4), gridspec_kw={"width_ratios": [1, 1.6]})
    axes[0].bar(by_layer["layer"], by_layer["r2"], color="C0")
    axes[0].set(xlabel="layer", ylabel="R2", title="Dictionary R2 by layer", ylim=(0, 1))
    share = layer_share(groups.layer_counts)
    im = axes[1].imshow(share.T, aspect="auto", cmap="magma", vmin=0, vmax=share.to_numpy().max())
    axes[1].set(xlabel="atom", ylabel="layer", title="Share of each atom's ANs per layer")
    axes[1].set_yticks(range(share.shape[1]), share.columns)
    plt.colorbar(im, ax=axes[1], fraction=0.05, label="share of the atom's ANs")
    fig.tight_layout()
    return fig


def sweep_figure(sweep: pd.DataFrame, *, k: Any) -> plt.Figure:
    """Figure 3.3: over the swept k, one line per lambda: the dictionary R2 (left; shaded: the
    paper's 0.5-0.6), the stability across seeds (middle) and across AN halves (right); a
    dashed line marks the run's ``k``."""
    fig, axes = plt.subplots(1, 3, figsize=(7.2, 2.9))
    for lam_, g in sweep.groupby("lam"):
        axes[0].plot(g.k, g.r2, "o-", label=f"lambda = {lam_}")
        axes[1].plot(g.k, g.stability_seed, "o-", label=f"lambda = {lam_}")
        axes[2].plot(g.k, g.stability_half, "o-", label=f"lambda = {lam_}")
    for ax, t, y in zip(axes, ["Dictionary R2", "Across seeds", "Across AN halves"],
                        ["R2 of the AN responses", "median |r| of matched atoms", "median |r| of matched atoms"]):
        ax.set(xscale="log", xlabel="k (atoms)", ylabel=y, title=t)
        ax.minorticks_off()  # only the swept k as ticks
        ax.set_xticks(sorted(sweep.k.unique()), sorted(sweep.k.unique()))
        ax.axvline(k, color="0.7", lw=0.8, ls="--")
    axes[0].axhspan(0.5, 0.6, color="0.9", zorder=0, label="paper's range")
    fig.tight_layout()
    fig.legend(*axes[0].get_legend_handles_labels(), loc="upper center", ncol=4, bbox_to_anchor=(0.5, 0.0),
               frameon=False)
    return fig
