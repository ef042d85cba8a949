import sys; sys.path.insert(0, "tools")
from nbbuild import P_DICTIONARY, build
from nb01 import PARAMS

build("notebooks/02_dictionary.ipynb", [
("md", """
# 3. Dictionary: 64 temporal atoms over all neurons

Every AN's z-scored response $x_j$ (a length-T signal) is approximated by a sparse combination
of $k$ atoms, $x_j \\approx D a_j$, minimising $\\tfrac12\\lVert x_j - D a_j\\rVert^2 + \\lambda
\\lVert a_j \\rVert_1$ with unit-norm atoms (SPAMS `trainDL`, online dictionary learning, then
`lasso` for the final loadings; each signal is scaled to unit norm first so that $\\lambda$ means
the same for any story length). An atom's **AN sub-group** is the set of ANs with a non-zero
loading on it. The paper used $k = 64$ and reported a dictionary $R^2$ of about 0.5-0.6.
"""),
("params", PARAMS + P_DICTIONARY),
("code", """
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from llmbrain_utils import config, plotting, stages
from llmbrain_utils import dictionary as dl

plotting.style()
cfg = config.collect(globals())
ext = stages.extraction(cfg)
art = stages.dictionary(cfg)
res = stages.read_dictionary(art, ext)
an = stages.read_an_table(ext)
groups = dl.atom_subgroups(res)
"""),
("code", """
print(f"solver: {res.solver}, k = {res.k}, lambda = {res.lam}, T = {res.D.shape[0]}, N = {res.n_ans} ANs "
      f"({res.n_excluded} constant, excluded)")
print(f"dictionary R2: {res.r2_overall:.2f} (paper: about 0.5-0.6)")
print(f"loadings: {res.sparsity:.1%} zero, {res.A.nnz / max(res.n_ans - res.n_excluded, 1):.1f} atoms per AN on average")
print(f"AN sub-group size per atom: median {np.median(groups.sizes):.0f}, range {groups.sizes.min()}-{groups.sizes.max()}")
print(f"atoms used by no AN: {(groups.sizes == 0).sum()}")
""", ["check"]),
("md", "## The atoms\n\nThe first 12 atoms (ordered by the total size of their loadings), and their correlation matrix."),
("code", """
fig, axes = plt.subplots(1, 2, figsize=(13, 4.5), gridspec_kw={"width_ratios": [1.4, 1]})
plotting.time_courses(axes[0], res.D[:, :12], tr_s=cfg["tr_s"], labels=[f"atom {i}" for i in range(12)])
axes[0].set_title("Atoms (z-scored for display)")
C = dl.atom_correlations(res.D)
plotting.heatmap(axes[1], C, title="Correlation between atoms", label="r")
axes[1].set(xlabel="atom", ylabel="atom")
fig.tight_layout()
off = np.abs(C[np.triu_indices_from(C, 1)])
print(f"mean |r| between atoms: {off.mean():.2f}, max {off.max():.2f}")
"""),
("md", "## Where the atoms live in the network\n\nReconstruction $R^2$ per layer, and the layer distribution of each atom's AN sub-group (the paper's Figure 6 style: the share of an atom's ANs in each layer)."),
("code", """
by_layer = dl.reconstruction_r2_by_layer(res)
fig, axes = plt.subplots(1, 2, figsize=(13, 4), gridspec_kw={"width_ratios": [1, 1.6]})
axes[0].bar(by_layer["layer"], by_layer["r2"], color="C0")
axes[0].set(xlabel="layer", ylabel="R2", title="Dictionary R2 by layer", ylim=(0, 1))
share = groups.layer_counts.div(groups.layer_counts.sum(axis=1).replace(0, 1), axis=0)
im = axes[1].imshow(share.T, aspect="auto", cmap="magma", vmin=0, vmax=share.to_numpy().max())
axes[1].set(xlabel="atom", ylabel="layer", title="Share of each atom's ANs per layer")
axes[1].set_yticks(range(share.shape[1]), share.columns)
plt.colorbar(im, ax=axes[1], fraction=0.03)
fig.tight_layout()
by_layer.round(3)
"""),
("md", """
## Choosing k and lambda

The paper gave no reason for $k = 64$ or its $\\lambda$. The sweep below fits every
$(k, \\lambda)$ pair and reports the dictionary $R^2$, the sparsity, and the **stability** of
the atoms: the median |r| of Hungarian-matched atoms learned with two seeds, and learned on two
random halves of the ANs. A useful dictionary explains the responses (high $R^2$) with atoms that
do not depend on the seed or on which neurons were sampled.
"""),
("code", """
sw = stages.read_tsv(stages.dictionary_sweep(cfg), "sweep.tsv")
fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
for lam_, g in sw.groupby("lam"):
    axes[0].plot(g.k, g.r2, "o-", label=f"lambda = {lam_}")
    axes[1].plot(g.k, g.stability_seed, "o-", label=f"lambda = {lam_}")
    axes[2].plot(g.k, g.stability_half, "o-", label=f"lambda = {lam_}")
for ax, t in zip(axes, ["Dictionary R2", "Stability across seeds", "Stability across AN halves"]):
    ax.set(xscale="log", xticks=sorted(sw.k.unique()), xlabel="k", title=t)
    ax.set_xticklabels(sorted(sw.k.unique()))
    ax.axvline(cfg["k"], color="0.7", lw=0.8, ls="--")
axes[0].axhspan(0.5, 0.6, color="0.9", zorder=0, label="paper's range")
axes[0].legend(fontsize=8)
fig.tight_layout()
sw[["k", "lam", "r2", "sparsity", "stability_seed", "stability_half"]].round(2)
"""),
("code", """
row = sw[(sw.k == cfg["k"]) & np.isclose(sw.lam, cfg["lam"])]
if len(row):
    r = row.iloc[0]
    print(f"default k = {cfg['k']}, lambda = {cfg['lam']}: R2 {r.r2:.2f}, stability across seeds {r.stability_seed:.2f}, "
          f"across AN halves {r.stability_half:.2f}")
""", ["check"]),
])
