import sys; sys.path.insert(0, "tools")
from nbbuild import build
from nb05 import PARAMS_FBN

VARIANTS = '''variants = [
    {"name": "MiniLM-L6", "model": "all-MiniLM-L6-v2"},
    {"name": "MiniLM-L6 32 tokens", "model": "all-MiniLM-L6-v2", "context_tokens": 32},
    {"name": "MiniLM-L6 causal", "model": "all-MiniLM-L6-v2", "context": "causal", "context_tokens": 32},
    {"name": "MiniLM-L6 shuffled words", "model": "all-MiniLM-L6-v2", "shuffle_words": True},
    {"name": "MiniLM-L6 untrained", "model": "all-MiniLM-L6-v2", "untrained": True},
    {"name": "MPNet", "model": "all-mpnet-base-v2"},
    {"name": "MPNet 32 tokens", "model": "all-mpnet-base-v2", "context_tokens": 32},
    {"name": "MPNet causal", "model": "all-mpnet-base-v2", "context": "causal", "context_tokens": 32},
    {"name": "MPNet untrained", "model": "all-mpnet-base-v2", "untrained": True},
    {"name": "SmolLM2-135M", "model": "SmolLM2-135M"},
    {"name": "SmolLM2-135M untrained", "model": "SmolLM2-135M", "untrained": True},
    {"name": "Gemma-3-270M", "model": "gemma-3-270m"},
    {"name": "Gemma-3-270M untrained", "model": "gemma-3-270m", "untrained": True},
]
n_workers = 2  # variants computed at the same time (each single-threaded; results do not depend on it)
n_boot = 20  # subject resamples of the coupling-count bootstrap, per variant
'''

if __name__ == "__main__":
    build("notebooks/06_cross_model.ipynb", [
("md", """
# 7. Cross-model comparison, with controls

The same stages for several models and controls, on the same story and the same listeners:

* two **BERT-family encoders**: **all-MiniLM-L6-v2** (6 x 384 ANs) and **all-mpnet-base-v2**
  (MPNet, BERT-base's size: 12 x 768 ANs), each reading bidirectionally and **causally** (only
  the past, as a listener hears it: one window per word that ends at the word). To keep the
  default run short the causal windows hold 32 preceding tokens instead of 128; so that the
  contrast is one of direction, not of length, each encoder also reads bidirectionally with 32
  preceding tokens ("32 tokens"), and causal is compared with that;
* two **decoders**: **SmolLM2-135M** (Llama architecture, 30 x 576 ANs) and **Gemma-3-270M**
  (Gemma 3, 18 x 640 ANs);
* **untrained** copies of all four (same architecture, fresh random weights): how much of the
  coupling comes from architecture and the story's statistics alone;
* **shuffled words** (MiniLM reading the story's words in random order, with the same timings):
  how much comes from word-level timing rather than meaning.

Per model: atoms coupled per network (active/deactive) and the networks involved, both with
95% bootstrap intervals across subjects; the temporal consistency of atoms coupled to the same
network against a null matched on the number of atoms; the diversity of all atoms and the balance
of the two; layer distributions of each coupled atom's and each network's ANs; held-out encoding
scores with bootstrap intervals across subjects; all against model size (parameters and ANs).
The data are the synthetic twin, so this chapter compares how much of the planted,
stimulus-driven signal each model's atoms carry.

**Cost.** The variants run as one sweep (`llmbrain_utils.sweep`, the same machinery as
`python -m llmbrain_utils sweep`): every variant is a named point, its stages from extraction to
the coupling bootstrap are tasks of a Dask graph on a local cluster of `n_workers` (2)
single-threaded processes, so the numbers do not depend on it; tasks the variants share (the
story, the fMRI data, a model's extraction) run once, and artifacts already in the store are
reused. The chapter reads the sweep's table (`runs/sweeps/cross_model.tsv`: status, artifact
keys, seconds and summary metrics per variant) and opens each variant's artifacts by its keys. The coupling bootstrap resamples the subjects `n_boot` (20)
times per model: each resample recomputes the group t maps from the per-subject coefficients of
the encoding stage and repeats the mapping stage's test: with the default surrogate null, each
resample's maps get their own grey-matter model but share the 1,000 surrogate fields of the
model's full sample (the autocorrelation is the full sample's estimate; a resample of the same
subjects has nearly the same smoothness, and estimating it again would cost about 8 s per
resample), and the fitted tail gives the tests that fewer than 10 surrogates reach their $p$, as
the stage does. The surrogates are met in stages (200, then 1,000): an atom stops as soon as
even the lower bound of each of its tests' p (exceedances so far can only grow; 0 while a test
could still get a tail $p$) is above the FDR cut-off that the bounds of all tests allow, so the
decisions are exactly those of all surrogates, and the full sample's decisions are checked to
equal the mapping stage's. A resample costs about 4 s (the legacy spin null's, `fbn_null: spin`,
about 1 s, with the same staging over its 5,000 rotations) and only the couplings and near
misses meet all of them. Twenty resamples give rough intervals; raise `n_boot`
for finer ones.
"""),
("params", PARAMS_FBN + VARIANTS),
("code", """
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from llmbrain_utils import compare, config, fbn, headlines, plotting, stages

import logging

logging.getLogger("distributed").setLevel(logging.ERROR)  # the local cluster's shutdown chatter
plotting.style()
base = config.collect(globals())
data = stages.fmri_data(base)  # made by chapter 4; shared by every variant
wall0 = time.perf_counter()
sweep_table, done = compare.run_variants(base, variants, n_workers=n_workers)
wall_variants = time.perf_counter() - wall0
sweep_table = sweep_table.set_index("name")
runs = {}
for name, d in done.items():  # the artifacts named by the sweep table's keys
    a = d["artifacts"]
    runs[name] = dict(cfg=d["cfg"], ext=a["extraction"], dic=a["dictionary"], enc=a["encoding"],
                      fbn=a["fbn"], boot=stages.read_bootstrap(a["coupling_bootstrap"]))
mask = stages.read_mask(data)
keep = stages.read_isc_mask(data, base["alpha"])
atlas = fbn.load_atlas(base["atlas"], mask)
hl = headlines.Recorder("06_cross_model", base)  # numbers that move with the BLAS kernel
"""),
("code", """
rows, tables, Ds = [], {}, {}
for name, r in runs.items():
    res = stages.read_dictionary(r["dic"], r["ext"])
    table = stages.read_couplings(r["fbn"])
    info = dict(r["ext"].info["model"], n_params_m=round(r["ext"].info["n_params"] / 1e6, 1))
    row = compare.model_summary(name, D=res.D, loadings=res.A, layers=stages.read_an_table(r["ext"]).layer.to_numpy(),
                                table=table, cv_r=np.load(r["enc"].file("cv_r.npy")), isc_keep=keep,
                                info=info, seed=base["seed"]) | {"dict_r2": res.r2_overall}
    assert r["boot"].observed_table.coupled.tolist() == table.coupled.tolist()  # the bootstrap's rule is the stage's
    t = sweep_table.loc[name]  # the sweep's metrics of this variant
    assert t.n_atoms_coupled == row["atoms_coupled"] and t.n_networks_involved == row["networks_involved"]
    for m in ("atoms_coupled", "networks_involved"):
        row[m + "_lo"], row[m + "_hi"] = t[m + "_ci_low"], t[m + "_ci_high"]
    rows.append(row)
    tables[name], Ds[name] = table, res.D
summary = pd.DataFrame(rows).set_index("model")
cols = ["n_params_m", "n_ans", "dict_r2", "atoms_coupled", "atoms_coupled_lo", "atoms_coupled_hi",
        "networks_involved", "networks_involved_lo", "networks_involved_hi", "active", "deactive",
        "diversity_mean_abs_r", "consistency_mean_abs_r", "balance", "cv_r_isc_mask", "cv_r_ci_low", "cv_r_ci_high"]
print(summary[cols].round(3).to_string())
hl.add_table("summary", summary[cols])
"""),
("code", """
print(summary[["n_params_m", "n_ans"]].to_string())  # what was compared (does not move with the kernel)
""", ["check"]),
("md", """
## Atoms coupled per network, model by model

Left and middle: atoms coupled to each network. Right: the same counts for the trained models
with their 95% bootstrap intervals across subjects (resamples of the 8 subjects with
replacement hold about 5 distinct subjects each, so they couple less than the full sample: the
intervals show how much a count rests on the particular subjects, and sit below the full-sample
count when it does). These intervals are descriptive only: resampling with replacement duplicates
subjects, which weakens the group maps, so the observed count often lies above its own interval,
and on a simulation with a known difference between two models such percentile intervals of the
difference covered it in 22% of replications instead of 95% (`benchmarks/interval_coverage.json`).
Overlapping intervals therefore do not show that two models are alike.
"""),
("code", """
counts = {n: compare.couplings_per_network(t, atlas.network_names) for n, t in tables.items()}
fig, axes = plt.subplots(1, 3, figsize=(18, 4.6), gridspec_kw={"width_ratios": [1, 1, 1.1]})
for ax, sign in zip(axes[:2], ["active", "deactive"]):
    M = pd.DataFrame({n: c[sign] for n, c in counts.items()})
    sized = [f"{n} ({summary.loc[n, 'n_params_m']:.0f} M, {summary.loc[n, 'n_ans']} ANs)" for n in M.columns]
    plotting.heatmap(ax, M.to_numpy(), xlabels=sized, ylabels=list(M.index), cmap="viridis",
                     vmax=max(1, max(c.to_numpy().max() for c in counts.values())), title=f"{sign} atoms per network")
axes[1].set_yticklabels([])
trained = [n for n in runs if "untrained" not in n and "shuffled" not in n]
ax = axes[2]
width = 0.8 / len(trained)
for i, name in enumerate(trained):
    pn = runs[name]["boot"].per_network.groupby("network", sort=False)[["observed", "ci_low", "ci_high"]].sum()
    pn = pn.reindex(atlas.network_names)
    x = np.arange(len(pn)) + (i - len(trained) / 2 + 0.5) * width
    ax.errorbar(x, pn.observed, yerr=[np.maximum(pn.observed - pn.ci_low, 0), np.maximum(pn.ci_high - pn.observed, 0)],
                fmt="o", ms=3, lw=0.8, label=name)
ax.set_xticks(range(len(atlas.network_names)), atlas.network_names, rotation=60, ha="right", fontsize=7)
ax.set(ylabel="atoms coupled (active + deactive)", title="Trained models, 95% bootstrap intervals")
ax.legend(fontsize=6)
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
("md", """
## Every measure against model size

A larger model can score higher because it has more ANs (more ways to fit), not because it is
more capable. Each measure is plotted against the number of parameters (top) and of ANs
(bottom); controls are grey, error bars are 95% bootstrap intervals across subjects.
"""),
("code", """
names = list(runs)
measures = [("cv_r_isc_mask", "cv_r_ci_low", "cv_r_ci_high", "held-out r (ISC mask)"),
            ("atoms_coupled", "atoms_coupled_lo", "atoms_coupled_hi", "atoms coupled"),
            ("networks_involved", "networks_involved_lo", "networks_involved_hi", "networks involved"),
            ("diversity_mean_abs_r", None, None, "diversity (mean |r|, lower = diverse)"),
            ("consistency_above_null", None, None, "consistency above size-matched null"),
            ("balance", None, None, "balance (consistency - diversity)")]
fig, axes = plt.subplots(2, len(measures), figsize=(3.1 * len(measures), 6.2))
for row, (xcol, xlabel) in enumerate([("n_params_m", "parameters (M, log)"), ("n_ans", "ANs (log)")]):
    for ax, (col, lo, hi, label) in zip(axes[row], measures):
        for n in names:
            ctrl = "untrained" in n or "shuffled" in n
            y = summary.loc[n, col]
            yerr = None if lo is None else [[max(y - summary.loc[n, lo], 0)], [max(summary.loc[n, hi] - y, 0)]]
            ax.errorbar(summary.loc[n, xcol], y, yerr=yerr, fmt="s" if ctrl else "o", ms=4, lw=0.8,
                        color="0.6" if ctrl else "C0")
            if row == 0 and not ctrl:
                ax.annotate(n, (summary.loc[n, xcol], y), fontsize=6)
        ax.set(xscale="log", xlabel=xlabel, title=label if row == 0 else None)
        ax.title.set_fontsize(8)
fig.tight_layout()
"""),
("md", """
## Where coupled atoms live: layer distribution of their ANs

Top: per model, the share of the coupled atoms' ANs in each layer. Bottom: per trained model and
network, the layer distribution of the ANs of the atoms coupled to that network (layers scaled
to relative depth 0-1, so models of different depth line up).
"""),
("code", """
fig, axes = plt.subplots(1, len(names), figsize=(2.2 * len(names), 2.6), sharey=True)
reads = {}
for ax, name in zip(np.atleast_1d(axes), names):
    r = runs[name]
    res = stages.read_dictionary(r["dic"], r["ext"])
    layers = stages.read_an_table(r["ext"]).layer.to_numpy()
    reads[name] = (res, layers)
    atoms = sorted(tables[name][tables[name].coupled].atom.unique())
    dist = compare.layer_distribution(res.A, layers, atoms)
    ax.bar(dist.index, dist.values, color="C4")
    ax.set_title(name, fontsize=7)
    ax.set(xlabel="layer")
np.atleast_1d(axes)[0].set_ylabel("share of coupled atoms' ANs")
fig.tight_layout()
bins = np.linspace(0, 1, 7)
fig, axes = plt.subplots(1, len(trained), figsize=(3.2 * len(trained), 4), sharey=True)
for ax, name in zip(np.atleast_1d(axes), trained):
    res, layers = reads[name]
    c = tables[name][tables[name].coupled]
    M = np.zeros((len(atlas.network_names), len(bins) - 1))
    for j, net in enumerate(atlas.network_names):
        atoms = sorted(c[c.network == net].atom.unique())
        if atoms:
            dist = compare.layer_distribution(res.A, layers, atoms)
            M[j] = np.histogram(dist.index / max(layers.max(), 1), bins, weights=dist.values)[0]
    plotting.heatmap(ax, M, xlabels=[f"{b:.1f}" for b in bins[1:]], ylabels=list(atlas.network_names),
                     cmap="magma", vmax=1, title=name)
    ax.set_xlabel("relative depth (bin end)")
fig.tight_layout()
"""),
("md", """
And per atom: the layer distribution of every atom's ANs (rows: atoms, coupled ones marked with
a dot at the left), for the trained models.
"""),
("code", """
fig, axes = plt.subplots(1, len(trained), figsize=(2.6 * len(trained), 6), sharey=True)
for ax, name in zip(np.atleast_1d(axes), trained):
    res, layers = reads[name]
    top = max(layers.max(), 1)
    M = np.array([np.histogram(d.index / top, bins, weights=d.values)[0]
                  for d in (compare.layer_distribution(res.A, layers, [a]) for a in range(res.A.shape[0]))])
    ax.imshow(M, aspect="auto", cmap="magma", vmin=0, vmax=1, interpolation="nearest")
    coupled_atoms = sorted(tables[name][tables[name].coupled].atom.unique())
    ax.scatter(np.full(len(coupled_atoms), -0.9), coupled_atoms, s=4, color="C2", clip_on=False)
    ax.set_xticks(range(len(bins) - 1), [f"{b:.1f}" for b in bins[1:]], fontsize=7)
    ax.set_title(f"{name} ({summary.loc[name, 'n_params_m']:.0f} M)", fontsize=7)
    ax.set_xlabel("relative depth")
np.atleast_1d(axes)[0].set_ylabel("atom")
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

shown, pngs = {}, {}
for name in [n for n in ("MiniLM-L6", "SmolLM2-135M") if n in runs]:
    r = runs[name]
    res = stages.read_dictionary(r["dic"], r["ext"])
    shown[name] = dict(D=res.D, group_t=np.load(r["enc"].file("group_t.npy")), mask_img=mask, loadings=res.A,
                       layers=stages.read_an_table(r["ext"]).layer.to_numpy(), couplings=tables[name])
    # the figures are an artifact of their own: drawn once (about a minute per model), then read
    pngs[name] = stages.read_explorer_figures(stages.explorer_figures(r["cfg"], name))
explorer.atom_explorer(shown, tr_s=base["tr_s"], pngs=pngs)
"""),
("md", """
## The paper's claims, checked on this run

Each claim of the paper, and what this run says, with the numbers computed above. These are
statements about the **synthetic** data of the default run (with planted, stimulus-driven
networks), so they test whether the method can tell models apart, not what human brains do.
"""),
("code", """
from scipy.stats import spearmanr

ctrl = [n for n in names if n not in trained]
s = summary
def ci(n, m):
    return f"{s.loc[n, m]:.0f} [{s.loc[n, m + '_lo']:.0f}, {s.loc[n, m + '_hi']:.0f}]"
def fmt(n):
    return (f"{n}: {ci(n, 'atoms_coupled')} atoms, {ci(n, 'networks_involved')} networks, "
            f"r = {s.loc[n, 'cv_r_isc_mask']:.3f} [{s.loc[n, 'cv_r_ci_low']:.3f}, {s.loc[n, 'cv_r_ci_high']:.3f}]")
print("Claim 1. Sub-groups of ANs (atoms) couple with functional brain networks, in every model.")
for n in trained: print("   " + fmt(n))
print("Claim 2 (implicit). The couplings come from what the model learned. Controls:")
for n in ctrl: print("   " + fmt(n))
def overlap_share(a_names, b_names, m):
    pairs = [(a, b) for a in a_names for b in b_names]
    return sum(s.loc[a, m + "_lo"] <= s.loc[b, m + "_hi"] and s.loc[b, m + "_lo"] <= s.loc[a, m + "_hi"]
               for a, b in pairs), len(pairs)
k_ov, k_all = overlap_share(trained, ctrl, "atoms_coupled")
print(f"   atoms-coupled intervals of trained models and controls overlap in {k_ov} of {k_all} pairs;"
      f" best trained r {s.loc[trained, 'cv_r_isc_mask'].max():.3f} vs best control r {s.loc[ctrl, 'cv_r_isc_mask'].max():.3f}")
print("Claim 3. Better models have more diverse atoms (lower mean |r|):",
      ", ".join(f"{n} {s.loc[n, 'diversity_mean_abs_r']:.3f}" for n in names))
print("Claim 4. ... and more consistent atoms within a network (above a size-matched null):",
      ", ".join(f"{n} {s.loc[n, 'consistency_above_null']:+.3f}" for n in names))
print("Claim 5. ... so the balance of the two grows with capability (consistency - diversity):",
      ", ".join(f"{n} {s.loc[n, 'balance']:+.3f}" for n in names))
primary = [n for n in trained if " causal" not in n and " tokens" not in n]  # one point per model
print("Size, not capability? Spearman rho with parameters, one point per trained model (n = %d):" % len(primary))
for m in ("cv_r_isc_mask", "atoms_coupled", "networks_involved", "diversity_mean_abs_r", "balance"):
    x = s.loc[primary, "n_params_m"].to_numpy(float)
    y = s.loc[primary, m].to_numpy(float)
    rho = spearmanr(x, y).statistic if np.isfinite(y).all() and np.ptp(y) > 0 else float("nan")
    hl.add(f"spearman_size_{m}", rho, digits=2)
    print(f"   {m}: {rho:+.2f}")
hl.add("trained_control_overlaps", k_ov, digits=0)
"""),
("md", """
The sentences below are computed from the table above; the book's results page pastes them
(so it never repeats a number by hand).
"""),
("code", """
from myst_nb import glue

def interval(n, m):
    return f"{n} {s.loc[n, m]:.0f} [{s.loc[n, m + '_lo']:.0f}, {s.loc[n, m + '_hi']:.0f}]"
above = [t for t in trained if s.loc[t, "atoms_coupled_lo"] > s.loc[ctrl, "atoms_coupled_hi"].max()]
if above:
    verdict = (f"Atoms coupled separate some trained models from every control: the 95% intervals of "
               f"{', '.join(above)} lie above all controls'.")
else:
    verdict = ("Counts of coupled atoms do not separate the trained models from the controls: no trained "
               "model's 95% interval lies above every control's. These intervals have no verified coverage "
               "(they are descriptive), so this is no evidence that the models are alike either; what it "
               "shows is that a count cannot by itself rank models here.")
sentences = {
    "cmp_counts_verdict": verdict,
    "cmp_counts_trained": "; ".join(interval(n, "atoms_coupled") for n in trained),
    "cmp_counts_controls": "; ".join(interval(n, "atoms_coupled") for n in ctrl),
    "cmp_networks": "; ".join(interval(n, "networks_involved") for n in names),
}
score = s["cv_r_isc_mask"]
best, worst = score.idxmax(), score.idxmin()
bt, bc = score[trained].idxmax(), score[ctrl].idxmax()
sentences["cmp_encoding"] = (
    f"Held-out encoding in the ISC mask is highest for {best} (r = {score[best]:.3f}) and lowest for {worst} "
    f"(r = {score[worst]:.3f}); the best trained model is {bt} ({score[bt]:.3f}), the best control {bc} ({score[bc]:.3f})."
    + (" A control predicting this synthetic brain best means its planted signals are low-level (word rate, "
       "word length), which random networks carry strongly." if best in ctrl else ""))
pairs = [(n, n + " 32 tokens", n + " causal") for n in names if n + " causal" in names and n + " 32 tokens" in names]
sentences["cmp_causal"] = "; ".join(f"{a}: r {score[c]:.3f} causal vs {score[b]:.3f} bidirectional, both with 32 "
                                    f"preceding tokens ({score[a]:.3f} with 128)" for a, b, c in pairs)
above_null = s.loc[trained, "consistency_above_null"]
sentences["cmp_consistency"] = (f"over the trained models, the atoms coupled to one network are "
                                f"{above_null.min():+.3f} to {above_null.max():+.3f} (mean |r|) away from random "
                                f"sets of the same number of atoms")
rho = spearmanr(s.loc[primary, "n_params_m"], score[primary]).statistic
sizes = ", ".join(f"{n} {m:.0f} M" for n, m in s.loc[primary, "n_params_m"].items())
sentences["cmp_size"] = (f"the Spearman correlation of held-out r with parameters over the {len(primary)} "
                         f"trained models (one point per model) is {rho:+.2f} ({sizes})")
for key, text in sentences.items():
    glue(key, text, display=False)
    print(f"{key}: {text}")
"""),
("code", """
stage_names = ["extraction", "dictionary", "encoding", "fbn", "coupling_bootstrap"]
timing = sweep_table[[f"{s}_seconds" for s in stage_names]].set_axis(stage_names, axis=1).round(1)
timing.insert(0, "status", sweep_table.status)
print(timing.to_string())
print(f"variants' wall time {wall_variants:.0f} s with {n_workers} worker(s); table: runs/sweeps/cross_model.tsv")
"""),
("code", "hl.glue_all()  # every headline figure, for the book's pages", ["remove"]),
])
