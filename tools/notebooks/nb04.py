import sys; sys.path.insert(0, "tools")
from nbbuild import P_DICTIONARY, P_ENCODING, P_FMRI, build
from nb01 import PARAMS

PARAMS_ENC = PARAMS + P_DICTIONARY + P_FMRI + P_ENCODING

if __name__ == "__main__":
    build("notebooks/04_encoding.ipynb", [
("md", """
# 5. Encoding: the atoms as regressors of every voxel

For every subject and voxel, the BOLD series is regressed on the $k$ atoms (fixed regressors,
already HRF-convolved):

* **Ordinary least squares** gives each atom's coefficient and $t$ value per voxel (one brain map
  per atom and subject; parity with statsmodels to $10^{-6}$ is tested) and the in-sample $R^2$
  that the paper reports.
* **Held-out scores**: ridge regression with a per-voxel penalty chosen by inner
  cross-validation, on 5 contiguous folds, with the 5 TRs on each side of a test fold removed
  from training (BOLD is autocorrelated: shuffled folds would leak). The score is the correlation
  of held-out predictions with the data, averaged over folds, and divided by the ISC noise
  ceiling.
* **Significance**: the in-sample $R^2$ against circular shifts of the regressors' time axis
  (every allowed shift), FDR over voxels.
* **Group maps**: the one-sample $t$ of the subjects' coefficients, per atom and voxel; the share
  of subjects agreeing in sign.
"""),
("params", PARAMS_ENC),
("code", """
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from nilearn import plotting as nplot
from llmbrain_utils import config, encoding as enc, fmri, plotting, stages

plotting.style()
cfg = config.collect(globals())
art, data = stages.encoding(cfg), stages.fmri_data(cfg)
mask = stages.read_mask(data)
r2, cv_r, p = (np.load(art.file(f)) for f in ("r2.npy", "cv_r.npy", "p_r2.npy"))
group_t, agree = np.load(art.file("group_t.npy")), np.load(art.file("sign_agreement.npy"))
isc = np.load(data.file("isc.npy"))
keep = fmri.isc_mask(np.load(data.file("isc_p.npy")), cfg["alpha"])
S, V = r2.shape
"""),
("code", """
info = art.info
print(f"subjects: {S}, voxels: {V}, atoms: {group_t.shape[0]}, residual dof: {info['dof']}")
print(f"in-sample R2 (the paper's score): median {np.median(r2):.3f}, best voxel of the group mean {r2.mean(0).max():.2f}")
print(f"held-out r: whole brain {cv_r.mean():.3f}, in the ISC mask {cv_r.mean(0)[keep].mean():.3f}")
norm = enc.normalise_by_ceiling(cv_r.mean(0), isc)
print(f"ceiling-normalised held-out r in the ISC mask: {np.nanmean(norm[keep]):.2f}")
sig = np.stack([enc.fdr(p[s], cfg["alpha"])[0] for s in range(S)])
print(f"voxels whose in-sample R2 beats circular shifts (FDR {cfg['alpha']}): {sig.mean():.1%} per subject")
p_group = np.load(art.file("p_group_cv.npy"))
print(f"voxels with held-out r > 0 across subjects (t test, FDR {cfg['alpha']}): {enc.fdr(p_group, cfg['alpha'])[0].sum()}")
""", ["check"]),
("md", """
The in-sample $R^2$ is large everywhere, also where no signal was planted: with 64 regressors
and ~300 autocorrelated TRs, least squares fits noise (an $R^2$ of about $k/T = 0.2$ for white
noise, more for smooth noise), and circular shifts of the regressors, which keep their
autocorrelation, reach the same values. That is why this book scores models by held-out
prediction and tests it across subjects.

## Held-out prediction, raw and ceiling-normalised

Mean over subjects.
"""),
("code", """
fig, axes = plt.subplots(2, 1, figsize=(12, 6.4))
plotting.glass(cv_r.mean(0), mask, title="held-out r (mean over subjects)", ax=axes[0], threshold=0.05)
plotting.glass(np.nan_to_num(np.where(keep, norm, 0)), mask, title="held-out r / ISC ceiling (ISC mask)", ax=axes[1], threshold=0.05)
plt.show()
"""),
("code", """
fig, axes = plt.subplots(1, 2, figsize=(12, 3.3))
axes[0].hist(cv_r.mean(0)[~keep], bins=60, alpha=0.7, label="outside ISC mask", density=True)
axes[0].hist(cv_r.mean(0)[keep], bins=60, alpha=0.7, label="ISC mask", density=True)
axes[0].set(xlabel="held-out r", ylabel="density", title="Held-out r per voxel"); axes[0].legend()
axes[1].scatter(isc[keep], cv_r.mean(0)[keep], s=4, alpha=0.5)
lim = [0, max(isc.max(), cv_r.mean(0).max())]
axes[1].plot(lim, lim, color="0.6", lw=0.8)
axes[1].set(xlabel="ISC (noise ceiling)", ylabel="held-out r", title="Prediction against the ceiling")
fig.tight_layout()
"""),
("md", "## Atom maps\n\nThe group $t$ maps of the four atoms with the strongest maps, as slices."),
("code", """
strength = np.abs(group_t).mean(1)
top = np.argsort(strength)[::-1][:4]
fig, axes = plt.subplots(4, 1, figsize=(12, 10))
for ax, a in zip(axes, top):
    nplot.plot_stat_map(plotting.to_img(group_t[a], mask), display_mode="z", cut_coords=6, axes=ax,
                        title=f"atom {a}: group t", threshold=3.0, colorbar=True)
plt.show()
print("atoms with the strongest group maps:", top.tolist())
"""),
("md", "## An interactive brain viewer\n\nHeld-out r, mean over subjects (drag to move through the brain)."),
("code", """
nplot.view_img(plotting.to_img(cv_r.mean(0), mask), threshold=0.05, cmap="cold_hot",
               title="held-out r", symmetric_cmap=True, colorbar=True, black_bg=False)
"""),
("md", """
## Do atoms beat layers?

A reviewer's question. The same ridge model, the same folds, inside the ISC mask, fed (a) the
$k$ atoms, (b) every layer's AN responses reduced to their first $k$ principal components (fitted
on training TRs only), (c) all ANs reduced to $k$ components. If atoms were only a compression,
they should do no better than a layer of the same size.
"""),
("code", """
bl = stages.read_tsv(stages.baseline(cfg), "baseline.tsv")
bl["set"] = np.where(bl["regressors"].astype(str).str.startswith("layer"), bl["regressors"].astype(str), bl["regressors"])
if "layer" in bl:
    bl.loc[bl["layer"].notna(), "set"] = "layer " + bl.loc[bl["layer"].notna(), "layer"].astype(int).astype(str)
summary = bl.groupby("set", sort=False)["mean_r"].agg(["mean", "std"]).round(3)
fig, ax = plt.subplots(figsize=(8, 3.2))
ax.bar(summary.index, summary["mean"], yerr=summary["std"], color=["C3" if s == "atoms" else "C0" for s in summary.index])
ax.set(ylabel="held-out r (ISC mask)", title="Atoms vs layers vs all ANs (mean +- SD over subjects)")
ax.tick_params(axis="x", rotation=45)
fig.tight_layout()
print(summary.to_string())
""", ["check"]),
])
