import sys; sys.path.insert(0, "tools")
from nbbuild import build
from nb04 import PARAMS_ENC

PARAMS_FBN = PARAMS_ENC + '''atlas = "Seitzman2018"
threshold = "top10%"
fbn_perm = 5000
compare_atlas = "TY7"
'''

if __name__ == "__main__":
    build("notebooks/05_fbn_mapping.ipynb", [
("md", """
# 6. FBN mapping: which networks does each atom drive?

Reviewers could not tell which networks the paper used or what made an atom "associated" with
one. Here both are explicit:

* **Networks**: the default run uses templates built from nilearn's 300 network-labelled ROIs of
  Seitzman et al. (2018): each brain voxel takes the network of its nearest ROI within 10 mm (an
  approximation that needs no download). Any of the 23 atlases of the Network Correspondence
  Toolbox (Yeo 7/17, Gordon, Glasser + Ji with its language network, ...) is a parameter.
* **Criterion**: an atom's group $t$ map is split into its **active** part (the top 10% of
  voxels by $|t|$ with $t > 0$) and its **deactive** part (the same with $t < 0$); each part's
  overlap with each network is its **Dice** coefficient, and the unthresholded map's spatial
  correlation with the network's mask is reported beside it.
* **Null**: the networks are rotated about the brain's centre at random (a volumetric "spin"
  test that keeps their size, shape and smoothness); $p$ = share of rotations with a Dice at least
  as large; FDR over atoms x networks x signs. An atom is **coupled** to a network when $q \\le
  0.05$.
"""),
("params", PARAMS_FBN),
("code", """
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from nilearn import plotting as nplot
from llmbrain_utils import config, fbn, plotting, stages

plotting.style()
extra = {"compare_atlas": compare_atlas}
cfg = config.collect(globals())
art, enc_art, data = stages.fbn_mapping(cfg), stages.encoding(cfg), stages.fmri_data(cfg)
table = stages.read_couplings(art)
mask = stages.read_mask(data)
atlas = fbn.load_atlas(cfg["atlas"], mask)
group_t = np.load(enc_art.file("group_t.npy"))
coupled = table[table.coupled]
truth = data.info.get("truth")
"""),
("code", """
print(f"atlas: {cfg['atlas']} ({atlas.n_networks} networks), threshold {cfg['threshold']}, {cfg['fbn_perm']} rotations")
print(f"couplings: {len(coupled)} of {len(table)} tests; atoms coupled: {coupled.atom.nunique()} of {group_t.shape[0]}; "
      f"networks involved: {coupled.network.nunique()}")
counts = (coupled.groupby(["network", "sign"]).atom.nunique().unstack(fill_value=0)
          .reindex(index=atlas.network_names, columns=["active", "deactive"], fill_value=0))
print(counts.to_string())
""", ["check"]),
("md", "## Atoms per network (the paper's Figure 4 style)"),
("code", """
fig, ax = plt.subplots(figsize=(10, 3.5))
x = np.arange(len(counts))
ax.bar(x - 0.2, counts["active"], 0.4, label="active", color="C3")
ax.bar(x + 0.2, counts["deactive"], 0.4, label="deactive", color="C0")
ax.set_xticks(x, counts.index, rotation=45, ha="right")
ax.set(ylabel="atoms coupled", title=f"Atoms coupled to each network ({cfg['atlas']})")
if truth is not None:
    planted = {p["network"] for p in truth["plant"]}
    for lab in ax.get_xticklabels():
        if lab.get_text() in planted:
            lab.set_fontweight("bold")
    ax.text(0.99, 0.95, "bold: networks with planted signal", transform=ax.transAxes, ha="right", va="top", fontsize=8)
ax.legend()
fig.tight_layout()
"""),
("md", """
## Checked against the planted truth

In the synthetic twin only some networks carry signal. A coupling to a network that carries
none is a false positive of the whole chain (dictionary, encoding and mapping together).
"""),
("code", """
if truth is not None:
    planted = {p["network"] for p in truth["plant"]}
    on_unplanted = coupled[~coupled.network.isin(planted)]
    n_unplanted_tests = (~table.network.isin(planted)).sum()
    print(f"couplings on planted networks: {len(coupled) - len(on_unplanted)}; "
          f"on unplanted networks: {len(on_unplanted)} of {n_unplanted_tests} tests "
          f"(rate {len(on_unplanted) / max(n_unplanted_tests, 1):.4f})")
    found = sorted(planted & set(coupled.network))
    print(f"planted networks reached by at least one atom: {len(found)} of {len(planted)}: {', '.join(found)}")
""", ["check"]),
("md", "## Coupled atoms on the brain\n\nGroup $t$ maps of the most strongly coupled atoms, with the outline of the network they are coupled to."),
("code", """
best = coupled.sort_values("dice", ascending=False).drop_duplicates("atom").head(4)
if len(best):
    fig, axes = plt.subplots(len(best), 1, figsize=(12, 2.6 * len(best)))
    for ax, row in zip(np.atleast_1d(axes), best.itertuples()):
        d = nplot.plot_stat_map(plotting.to_img(group_t[row.atom], mask), display_mode="z", cut_coords=6,
                                axes=ax, threshold=2.0, title=f"atom {row.atom}: {row.sign} {row.network} (Dice {row.dice:.2f}, q {row.q:.3f})")
        net = atlas.masks[atlas.index(row.network)].astype(np.float32)
        d.add_contours(plotting.to_img(net, mask), levels=[0.5], colors="lime", linewidths=0.8)
    plt.show()
"""),
("md", """
## How much does the answer depend on the threshold?

The number of couplings when the active/deactive parts are the top 5%, 10% or 20% of voxels.
"""),
("code", """
sens = fbn.threshold_sensitivity(group_t, atlas, thresholds=("top5%", "top10%", "top20%"),
                                 n_perm=cfg["fbn_perm"], alpha=cfg["alpha"], seed=cfg["seed"])
print(sens.round(3).to_string(index=False))
""", ["check"]),
("md", """
## Agreement between atlases

The same atoms mapped with a second atlas (Yeo 2011, 7 networks, from the Network Correspondence
Toolbox's data; read from `$LLMBRAIN_ATLAS_DIR`, the `shared/` mirror beside the repository, or
downloaded with checksums). Each cell counts atoms coupled to a network of one atlas (rows) and
a network of the other (columns) with the same sign.
"""),
("code", """
try:
    other = stages.read_couplings(stages.fbn_mapping({**cfg, "atlas": extra["compare_atlas"]}))
except Exception as e:  # no network access and no local copy: say so
    other = None
    print(f"second atlas unavailable here: {e}")
if other is not None:
    agree = fbn.atlas_agreement([table, other])
    fig, ax = plt.subplots(figsize=(6, 4.5))
    plotting.heatmap(ax, agree.to_numpy(), xlabels=list(agree.columns), ylabels=list(agree.index), cmap="viridis", title="atoms coupled under both atlases")
    fig.tight_layout()
    print(f"{extra['compare_atlas']}: {int(other.coupled.sum())} couplings, {other[other.coupled].atom.nunique()} atoms")
"""),
("md", """
## Recovery: does the chain find what was planted?

A second synthetic twin in which 8 of the model's own atoms drive the 8 largest networks (signs
alternating), at several signal-to-noise ratios (the dashed line marks the default data's). The whole chain,
encoding with all 64 atoms then mapping, must recover exactly those (atom, network, sign)
couplings. Target: precision and recall >= 0.9 at the default SNR, false positives at or below
the FDR level.
"""),
("code", """
rec = stages.read_tsv(stages.fbn_recovery(cfg), "recovery.tsv")
print(rec.round(3).to_string(index=False))
fig, ax = plt.subplots(figsize=(5, 3.2))
ax.plot(rec.snr, rec.recall, "o-", label="recall")
ax.plot(rec.snr, rec.precision, "s-", label="precision")
if truth is not None:
    ax.axvline(truth["snr"], color="0.7", ls="--", lw=0.8)
ax.set(xlabel="signal-to-noise (peak voxel)", ylim=(0, 1.05), title="Recovery of planted couplings")
ax.legend()
fig.tight_layout()
""", ["check"]),
])
