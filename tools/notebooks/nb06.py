import sys; sys.path.insert(0, "tools")
from nbbuild import build
from nb05 import PARAMS_FBN

VARIANTS = '''variants = [
    {"name": "MiniLM-L6", "model": "all-MiniLM-L6-v2"},
    {"name": "MiniLM-L6 causal", "model": "all-MiniLM-L6-v2", "context": "causal", "context_tokens": 32},
    {"name": "MiniLM-L6 shuffled words", "model": "all-MiniLM-L6-v2", "shuffle_words": True},
    {"name": "MiniLM-L6 untrained", "model": "all-MiniLM-L6-v2", "untrained": True},
    {"name": "SmolLM2-135M", "model": "SmolLM2-135M"},
    {"name": "SmolLM2-135M untrained", "model": "SmolLM2-135M", "untrained": True},
]
'''

if __name__ == "__main__":
    build("notebooks/06_cross_model.ipynb", [
("md", """
# 7. Cross-model comparison, with controls

The same stages for several models and controls, on the same story and the same listeners:

* **all-MiniLM-L6-v2** (BERT architecture, 6 x 384 ANs), reading bidirectionally and **causally**
  (only the past, as a listener hears it: one window per word that ends at the word; to keep
  the default run short the causal windows hold 32 preceding tokens instead of 128, so this
  contrast mixes context direction with context length: rerun with `context_tokens` equal
  to see the pure effect);
* **SmolLM2-135M** (Llama architecture, 30 x 576 ANs), a decoder;
* **untrained** copies of both (same architecture, random weights): how much of the coupling
  comes from architecture and the story's statistics alone;
* **shuffled words** (MiniLM reading the story's words in random order, with the same timings):
  how much comes from word-level timing rather than meaning.

Per model: atoms coupled per network (active/deactive), networks involved, the temporal
consistency of atoms coupled to the same network against a null matched on the number of atoms,
the diversity of all atoms, layer distributions, and held-out encoding scores with bootstrap
intervals across subjects; model size beside them. The data are the synthetic twin, so this
chapter compares how much of the planted, stimulus-driven signal each model's atoms carry.
"""),
("params", PARAMS_FBN + VARIANTS),
("code", """
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from llmbrain_utils import compare, config, fbn, fmri, plotting, stages

plotting.style()
base = config.collect(globals())
runs = {}
for v in variants:
    vcfg = config.validate({**base, **{k: val for k, val in v.items() if k != "name"}})
    ext, dic, enc_art, fb = (stages.extraction(vcfg), stages.dictionary(vcfg), stages.encoding(vcfg),
                             stages.fbn_mapping(vcfg))
    runs[v["name"]] = dict(cfg=vcfg, ext=ext, dic=dic, enc=enc_art, fbn=fb)
data = stages.fmri_data(base)
mask = stages.read_mask(data)
keep = fmri.isc_mask(np.load(data.file("isc_p.npy")), base["alpha"])
atlas = fbn.load_atlas(base["atlas"], mask)
"""),
("code", """
rows, tables, Ds = [], {}, {}
for name, r in runs.items():
    res = stages.read_dictionary(r["dic"], r["ext"])
    table = stages.read_couplings(r["fbn"])
    info = dict(r["ext"].info["model"], n_params_m=round(r["ext"].info["n_params"] / 1e6, 1))
    rows.append(compare.model_summary(name, D=res.D, loadings=res.A, layers=stages.read_an_table(r["ext"]).layer.to_numpy(),
                                      table=table, cv_r=np.load(r["enc"].file("cv_r.npy")), isc_keep=keep,
                                      info=info, seed=base["seed"]) | {"dict_r2": res.r2_overall})
    tables[name], Ds[name] = table, res.D
summary = pd.DataFrame(rows).set_index("model")
cols = ["n_params_m", "n_ans", "dict_r2", "atoms_coupled", "networks_involved", "active", "deactive",
        "diversity_mean_abs_r", "consistency_mean_abs_r", "cv_r_isc_mask", "cv_r_ci_low", "cv_r_ci_high"]
print(summary[cols].round(3).to_string())
""", ["check"]),
("md", "## Atoms coupled per network, model by model"),
("code", """
counts = {n: compare.couplings_per_network(t, atlas.network_names) for n, t in tables.items()}
fig, axes = plt.subplots(1, 2, figsize=(13, 4.2), sharey=True)
for ax, sign in zip(axes, ["active", "deactive"]):
    M = pd.DataFrame({n: c[sign] for n, c in counts.items()})
    plotting.heatmap(ax, M.to_numpy(), xlabels=list(M.columns), ylabels=list(M.index), cmap="viridis",
                     vmax=max(1, max(c.to_numpy().max() for c in counts.values())), title=f"{sign} atoms per network")
fig.tight_layout()
truth = data.info.get("truth")
if truth is not None:
    print("networks with planted signal:", ", ".join(sorted({p["network"] for p in truth["plant"]})))
"""),
("md", """
## Diversity and consistency

*Diversity* is the mean pairwise |r| between all of a model's atoms (lower = more diverse).
*Consistency* is the mean pairwise |r| between atoms coupled to the same network; because fewer
atoms alone can raise it, each network's value is compared with random sets of the same number
of the model's atoms (the dashed marks). The paper's claim: better models balance more diverse
atoms with more consistent networks.
"""),
("code", """
fig, axes = plt.subplots(1, 2, figsize=(13, 3.8))
names = list(runs)
axes[0].bar(names, summary.loc[names, "diversity_mean_abs_r"], color="C2")
axes[0].set(ylabel="mean |r| between atoms", title="Diversity of atoms (lower = more diverse)")
axes[0].tick_params(axis="x", rotation=35)
for i, name in enumerate(names):
    cons = compare.network_consistency(Ds[name], tables[name], seed=base["seed"])
    if len(cons):
        axes[1].scatter(np.full(len(cons), i), cons.consistency, color="C1", s=18)
        axes[1].scatter(np.full(len(cons), i) + 0.15, cons.null_mean, marker="_", color="0.3", s=80)
axes[1].set_xticks(range(len(names)), names, rotation=35, ha="right")
axes[1].set(ylabel="mean |r| within a network", title="Consistency per network (dashes: size-matched null)")
fig.tight_layout()
"""),
("md", "## Held-out encoding, with 95% bootstrap intervals across subjects, against model size"),
("code", """
fig, axes = plt.subplots(1, 2, figsize=(13, 3.8))
y = summary.loc[names, "cv_r_isc_mask"]
err = [y - summary.loc[names, "cv_r_ci_low"], summary.loc[names, "cv_r_ci_high"] - y]
axes[0].bar(names, y, yerr=err, color=["C0" if "untrained" not in n and "shuffled" not in n else "0.6" for n in names])
axes[0].axhline(0, color="0.5", lw=0.8)
axes[0].set(ylabel="held-out r (ISC mask)", title="Encoding score per model and control")
axes[0].tick_params(axis="x", rotation=35)
axes[1].scatter(summary.loc[names, "n_ans"], y)
for n in names:
    axes[1].annotate(n, (summary.loc[n, "n_ans"], y[n]), fontsize=7)
axes[1].set(xscale="log", xlabel="ANs (log)", ylabel="held-out r", title="Score against size")
fig.tight_layout()
"""),
("md", "## Where coupled atoms live: layer distribution of their ANs"),
("code", """
fig, axes = plt.subplots(1, len(names), figsize=(3 * len(names), 3), sharey=True)
for ax, name in zip(np.atleast_1d(axes), names):
    r = runs[name]
    res = stages.read_dictionary(r["dic"], r["ext"])
    layers = stages.read_an_table(r["ext"]).layer.to_numpy()
    atoms = sorted(tables[name][tables[name].coupled].atom.unique())
    dist = compare.layer_distribution(res.A, layers, atoms)
    ax.bar(dist.index, dist.values, color="C4")
    ax.set(title=name, xlabel="layer")
np.atleast_1d(axes)[0].set_ylabel("share of coupled atoms' ANs")
fig.tight_layout()
"""),
("md", """
## Atom explorer

Pick a model and an atom: its time course, its group $t$ map, the layers of its AN sub-group
and the networks it is coupled to (red: active, blue: deactive; grey: best overlaps when none
passes FDR). The widget works in the static page, without a running kernel.
"""),
("code", """
from llmbrain_utils import explorer

shown = {}
for name in [n for n in ("MiniLM-L6", "SmolLM2-135M") if n in runs]:
    r = runs[name]
    res = stages.read_dictionary(r["dic"], r["ext"])
    shown[name] = dict(D=res.D, group_t=np.load(r["enc"].file("group_t.npy")), mask_img=mask, loadings=res.A,
                       layers=stages.read_an_table(r["ext"]).layer.to_numpy(), couplings=tables[name])
explorer.atom_explorer(shown, tr_s=base["tr_s"])
"""),
("md", """
## The paper's claims, checked on this run

Each claim of the paper, and what this run says. These are statements about the **synthetic**
data of the default run (with planted, stimulus-driven networks), so they test whether the
method can tell models apart, not what human brains do.
"""),
("code", """
trained = [n for n in names if "untrained" not in n and "shuffled" not in n]
ctrl = [n for n in names if n not in trained]
s = summary
def fmt(n):
    return f"{n}: {s.loc[n, 'atoms_coupled']} atoms, {s.loc[n, 'networks_involved']} networks, r = {s.loc[n, 'cv_r_isc_mask']:.3f}"
print("1. Sub-groups of ANs couple with functional networks (trained models):")
for n in trained: print("   " + fmt(n))
print("2. ... more than in controls (untrained weights, shuffled words):")
for n in ctrl: print("   " + fmt(n))
best_ctrl = s.loc[ctrl, "cv_r_isc_mask"].max() if ctrl else float("nan")
print(f"   best trained r {s.loc[trained, 'cv_r_isc_mask'].max():.3f} vs best control r {best_ctrl:.3f}")
print("3. Diversity (mean |r| between atoms; lower = more diverse):",
      ", ".join(f"{n} {s.loc[n, 'diversity_mean_abs_r']:.3f}" for n in names))
print("4. Consistency within networks above a size-matched null:",
      ", ".join(f"{n} {s.loc[n, 'consistency_above_null']:+.3f}" for n in names))
""", ["check"]),
])
