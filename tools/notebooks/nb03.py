import sys; sys.path.insert(0, "tools")
from nbbuild import P_FMRI, P_STIMULUS, build

PARAMS_FMRI = P_STIMULUS + P_FMRI

if __name__ == "__main__":
    build("notebooks/03_fmri_data.ipynb", [
("md", """
# 4. fMRI data: listeners, noise ceiling, and the synthetic twin

The method needs fMRI of people listening to the story. **The default run uses a synthetic twin
of the Narratives data set**: the same layout and file names, TR (1.5 s), MNI grid (here 6 mm)
and brain mask, read back by the same loader that reads the real data. Signals are planted in
chosen networks of the Seitzman et al. (2018) templates, each driven by a property of the story
with a sign; the other networks carry only noise. Noise is spatially smooth, AR(1) in time, with
slow drift and subject-specific gain. The truth is saved (`truth.json`), so that every later
answer can be checked. With `fmri_source="narratives"` the same notebook reads the real data
set (OpenNeuro ds002345; `python -m llmbrain_utils fetch --story pieman --subjects 001-082`).

The **noise ceiling** is the leave-one-subject-out inter-subject correlation (ISC): how well
the average of the other listeners predicts each listener, per voxel. A circular-shift null
(every subject shifted independently) gives p values; FDR gives the mask of reliable voxels in
which encoding scores are reported.
"""),
("params", PARAMS_FMRI),
("code", """
import json
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from llmbrain_utils import config, fbn, fmri, plotting, stages

plotting.style()
cfg = config.collect(globals())
art = stages.fmri_data(cfg)
bold = stages.read_bold(art, mmap=False)
mask = stages.read_mask(art)
isc, isc_p = np.load(art.file("isc.npy")), np.load(art.file("isc_p.npy"))
keep = fmri.isc_mask(isc_p, cfg["alpha"])
truth = art.info.get("truth")
"""),
("code", """
S, T, V = bold.shape
print(f"subjects: {S}, TRs: {T}, voxels: {V} ({cfg['resolution_mm']:g} mm grid)")
print(f"ISC (leave-one-out r): median {np.median(isc):.3f}, max {isc.max():.2f}")
print(f"voxels with significant ISC (FDR {cfg['alpha']}): {keep.sum()} ({keep.mean():.1%})")
""", ["check"]),
("md", "## Inter-subject correlation: the ceiling of any model"),
("code", """
plotting.glass(np.where(keep, isc, 0), mask, title="ISC (FDR-significant voxels)", cmap="hot", symmetric=False)
plt.show()
"""),
("md", "## A carpet plot\n\nOne subject's voxels (rows, grouped by network) over time."),
("code", """
atlas = fbn.load_atlas(cfg["plant_atlas"], mask)
labels = np.zeros(V, int)
for i, m in enumerate(atlas.masks):
    labels[m] = i + 1
img, lab = fmri.carpet_array(bold[0], labels, max_voxels=1500)
fig, ax = plt.subplots(figsize=(12, 4))
ax.imshow(img, aspect="auto", cmap="gray", vmin=-2.5, vmax=2.5, extent=[0, T * cfg["tr_s"], len(lab), 0])
ax.set(xlabel="time (s)", ylabel="voxels by network", title="Carpet plot, subject 001")
bounds = np.flatnonzero(np.diff(lab)) + 1
for b in bounds:
    ax.axhline(b, color="C1", lw=0.6)
"""),
("md", """
## The planted truth (synthetic twin only)

Which networks carry which story property, with which sign; and the calibration: the
correlation of single voxels with their planted signal. Published single-subject encoding and
ISC values in auditory and language cortex peak around r = 0.3-0.45, with most voxels near 0;
the default signal-to-noise is set to land there.
"""),
("code", """
if truth is not None:
    plant = pd.DataFrame(truth["plant"])[["network", "source", "sign", "weight", "n_voxels"]]
    print(plant.to_string(index=False))
    print("unplanted networks:", ", ".join(truth["unplanted"]))
    print(f"snr = {truth['snr']}; expected peak single-subject r per subject: "
          f"{np.round(truth['expected_peak_r'], 2).tolist()}")
else:
    print("real data: no planted truth")
""", ["check"]),
("code", """
if truth is not None:
    src = pd.read_csv(art.path / "dataset" / "truth_sources.tsv", sep="\\t")
    names = list(dict.fromkeys(p["source"] for p in truth["plant"]))
    fig, axes = plt.subplots(1, 2, figsize=(13, 3.8), gridspec_kw={"width_ratios": [1.4, 1]})
    plotting.time_courses(axes[0], src[names].to_numpy(), tr_s=cfg["tr_s"], labels=names)
    axes[0].set_title("Planted sources (HRF-convolved story properties)")
    groups = {n: isc[atlas.masks[atlas.index(n)]] for n in atlas.network_names}
    planted = {p["network"] for p in truth["plant"]}
    order = sorted(groups, key=lambda n: (n not in planted, n))
    axes[1].boxplot([groups[n] for n in order], orientation="horizontal", showfliers=False)
    axes[1].set_yticks(range(1, len(order) + 1), [n + (" *" if n in planted else "") for n in order], fontsize=8)
    axes[1].axvline(0, color="0.6", lw=0.8)
    axes[1].set(xlabel="ISC", title="ISC by network (* planted)")
    fig.tight_layout()
    ins = np.concatenate([groups[n] for n in planted]); out = np.concatenate([groups[n] for n in groups if n not in planted])
    print(f"median ISC in planted networks {np.median(ins):.3f}, in unplanted networks {np.median(out):.3f}")
"""),
("code", """
if truth is not None:
    # single-subject calibration: r of each planted network's peak voxel with its source
    rows = []
    for p in truth["plant"]:
        v = p["peak_voxel"]
        rs = [np.corrcoef(bold[s][:, v], p["sign"] * src[p["source"]].to_numpy())[0, 1] for s in range(S)]
        rows.append({"network": p["network"], "source": p["source"], "median r": np.median(rs), "max r": np.max(rs)})
    print(pd.DataFrame(rows).round(2).to_string(index=False))
""", ["check"]),
])
