# -*- coding: utf-8 -*-
# %% [markdown]
# # 4. fMRI data: listeners, noise ceiling, and the synthetic twin
#
# **Question.** Do the listeners share a response to the story, where, and how much of it could any
# model predict?
#
# The method needs fMRI of people listening to the story. **The default run uses a synthetic twin
# of the Narratives data set**: the same layout and file names, TR (1.5 s), MNI grid (here 6 mm)
# and brain mask, read back by the same loader that reads the real data. Signals are planted in
# chosen networks of the Seitzman et al. (2020) templates, each driven by a property of the story
# with a sign; the other networks carry only noise. Noise is spatially smooth, AR(1) in time, with
# slow drift and subject-specific gain. The truth is saved (`truth.json`), so that every later
# answer can be checked. With `fmri_source="narratives"` the same notebook reads the real data
# set (OpenNeuro ds002345; `python -m llmbrain_utils fetch --story pieman --subjects 001-082`).
#
# **On the cortical surface** (`space: fsaverage5` or `fsaverage6`; `params/surface.yaml`) the twin
# is made on the mesh instead: the same story properties planted on networks of a surface atlas
# (Yeo 17 by default), noise smoothed along the cortex, one GIfTI file per hemisphere in the
# layout of Narratives' own `fsaverage6` derivatives, read back without the medial wall. For real
# data, `fmri_source: narratives` with `space: fsaverage6` reads those files (fetch them with
# `--kind fsaverage6`); `fsaverage5` takes their first 10,242 vertices per hemisphere, which are
# fsaverage5's. On a mesh every "voxel" below is a cortex vertex, and there is no tSNR (the data
# set's surface files are already cleaned).
#
# The **noise ceiling** is the leave-one-subject-out inter-subject correlation (ISC): how well
# the average of the other listeners predicts each listener, per voxel. A circular-shift null
# (every subject shifted independently) gives p values; FDR gives the mask of reliable voxels in
# which encoding scores are reported.

# %% mystnb={"code_prompt_hide": "Hide the parameters", "code_prompt_show": "Show the parameters of this run"} tags=["parameters"]
# Parameters (papermill overrides these)
runs_dir = None
story = "harrowpoint"
narratives_dir = None
tr_s = 1.5
shuffle_words = False
seed = 0
fmri_source = "synthetic"
space = "volume"
twin = "ideal"
n_subjects = 8
resolution_mm = 6.0
snr = None
plant_atlas = "Seitzman2018"
n_perm = 1000
alpha = 0.05

# %%
import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from llmbrain_utils import config, fmri, headlines, plotting, stages

plotting.style()
cfg = config.collect(globals())
art = stages.fmri_data(cfg)
bold = stages.read_bold(art, mmap=False)
where = stages.read_where(art)  # the brain mask, or the name of the cortical mesh
mesh = where if isinstance(where, str) else None
unit = "vertices" if mesh else "voxels"
isc, isc_p = np.load(art.file("isc.npy")), np.load(art.file("isc_p.npy"))
keep = fmri.isc_mask(isc_p, cfg.alpha)
truth = art.info.get("truth")

# %%
# NBVAL_CHECK_OUTPUT
S, T, V = bold.shape
grid = f"{mesh} cortex" if mesh else f"{cfg.resolution_mm:g} mm grid"
print(f"subjects: {S}, TRs: {T}, {unit}: {V} ({grid})")
print(f"ISC (leave-one-out r): median {np.median(isc):.3f}, max {isc.max():.2f}")
print(f"{unit} with significant ISC (FDR {cfg.alpha}): {keep.sum()} ({keep.mean():.1%})")

# %%
hl = headlines.Recorder("03_fmri_data", cfg)  # recorded too: these do not move with the kernel
for name, value in headlines.fmri_figures(art, cfg.alpha).items():
    hl.add(name, value, digits=4)

# %% [markdown]
# ## What is loaded
#
# The files the loader read, in the data set's layout: one cleaned volume per subject (AFNI's
# confound regression of fMRIPrep's output, MNI152NLin2009cAsym, unsmoothed), cut to the
# story's TRs, resampled onto the analysis grid, inside the brain mask, z-scored per voxel; and,
# for tSNR, the same subjects' volumes before confound regression (fMRIPrep's `desc-preproc`).

# %%
from llmbrain_utils import fetch

kinds = fetch.load_manifest()["kinds"]
if truth is not None:
    root = art.path / "dataset"
    print(f"source: synthetic twin (seed {truth['seed']}), written to the artifact's dataset/ folder")
    window = f"TRs 0-{T - 1} of {truth['n_trs']} (the twin's scans hold exactly the story's grid)"
else:
    root = fetch.data_home()
    w = art.info["scan_window"]
    print(f"source: Narratives (ds002345) under {root}")
    window = (f"TRs {w['onset_tr']}-{w['onset_tr'] + T - 1} of the scan (the audio starts at "
              f"{w['audio_onset_s']:g} s; the story itself at TR {w['story_onset_tr']})")
subs = pd.read_csv(art.file("subjects.tsv"), sep="	", dtype=str)["subject"].tolist()
print("subjects:", ", ".join(subs))
task = cfg.story if truth is not None else fetch.story_info(cfg.story)["task"]
for kind in ("clean", "preproc") if not mesh else ("fsaverage6",):
    path = Path(kinds[kind]["path"].format(sub=subs[0], task=task, run="", hemi="L"))
    if mesh and truth is not None:  # the twin on its mesh, named as Narratives' fsaverage6 files
        path = Path(str(path).replace("space-fsaverage6", f"space-{mesh}"))
    head, cut, tail = path.name.partition("_space-")  # BIDS names are long: two lines
    print(f"{kind}: {path.parent}/")
    print(f"  {head}{cut}")
    print(f"    {tail} ...")
print("window:", window)
if mesh:
    print(f"mesh: {mesh} (hemi-L and hemi-R), {V} cortex vertices (the medial wall left out)")
else:
    print(f"grid: {cfg.resolution_mm:g} mm, shape {where.shape}, {V} brain voxels (nilearn's MNI152 mask)")

# %% [markdown]
# ## Inter-subject correlation: the ceiling of any model

# %%
plotting.overview(np.where(keep, isc, 0), where, cmap="hot", symmetric=False, label="ISC (r)")
plt.show()

# %% [markdown]
# **Figure 4.1.** Inter-subject correlation (leave-one-out r) in the voxels whose ISC passes the circular-shift
# null at FDR 0.05; the colour scale is r.

# %% [markdown]
# ## Temporal signal-to-noise
#
# tSNR is each voxel's mean over its standard deviation across the story's TRs, from the volumes
# *before* confound regression (the cleaned volumes are regression residuals with mean ~0, whose
# tSNR means nothing). Preprocessed 3 T Narratives scans reach ~50-150 in cortex, less in
# ventral temporal and orbitofrontal cortex (susceptibility) and in the centre of the head. The
# synthetic twin writes such volumes on a stated baseline (`fmri.epi_baseline`: intensity from
# the MNI grey-matter map, tSNR rising towards the cortex, falling below z = -10 mm); for real
# data, fetch them with `--kind preproc`.

# %%
# NBVAL_CHECK_OUTPUT
tsnr_info = art.info.get("tsnr") or {}
if tsnr_info.get("kind"):
    tsnr = np.load(art.file("tsnr.npy"))  # S x V
    t_mean = tsnr.mean(axis=0)
    print(f"tSNR (mean over {tsnr.shape[0]} subjects): median {np.median(t_mean):.0f}, "
          f"5-95% {np.percentile(t_mean, 5):.0f}-{np.percentile(t_mean, 95):.0f};")
    print(f"    per-subject medians {np.round(np.median(tsnr, axis=1)).astype(int).tolist()}")
else:
    tsnr = None
    print("no tSNR:", tsnr_info.get("reason", "not computed"))

# %%
if tsnr is not None:
    from nilearn import plotting as nplot

    fig = plt.figure(figsize=(6.7, 2.0))
    d = nplot.plot_img(plotting.to_img(t_mean, where), display_mode="z", cut_coords=[-18, 0, 18, 36, 54],
                       figure=fig, cmap="viridis", vmin=0, vmax=150, threshold=1, colorbar=True,
                       cbar_tick_format="%.0f", black_bg=False, annotate=True)
    plotting.label_colorbar(d, "tSNR")
    fig.suptitle("tSNR, mean over subjects (colour: tSNR)", y=1.02)
    plt.show()
    fig, ax_h = plt.subplots(figsize=(5.4, 3.0))
    for s in range(tsnr.shape[0]):
        ax_h.hist(tsnr[s], bins=40, range=(0, 200), histtype="step", lw=0.8, color="0.5", alpha=0.6)
    ax_h.hist(t_mean, bins=40, range=(0, 200), histtype="step", lw=1.8, color="C0", label="mean")
    ax_h.axvspan(50, 150, color="C2", alpha=0.08, label="typical cortex")
    ax_h.set(xlabel="tSNR", ylabel="voxels", title="Distribution (grey: each subject)")
    ax_h.legend(fontsize=9)
    plt.show()

# %% [markdown]
# **Figure 4.2.** Temporal signal-to-noise of the volumes before confound regression: the mean over subjects on
# five axial slices (top), and its distribution per subject (grey) and for the mean (blue).

# %% [markdown]
# ## A carpet plot
#
# One subject's voxels (rows, grouped by network) over time.

# %%
atlas = stages.load_atlas_on(cfg.plant_atlas, art)
labels = np.zeros(V, int)
for i, m in enumerate(atlas.masks):
    labels[m] = i + 1
img, lab = fmri.carpet_array(bold[0], labels, max_voxels=1500)
fig, ax = plt.subplots(figsize=(6.8, 4.2))
im = ax.imshow(img, aspect="auto", cmap="gray", vmin=-2.5, vmax=2.5, extent=[0, T * cfg.tr_s, len(lab), 0])
ax.set(xlabel="time (s)", ylabel=f"{unit} by network", title="Carpet plot, subject 001")
fig.colorbar(im, ax=ax, label="BOLD (z)", orientation="horizontal", fraction=0.05, pad=0.16, aspect=40)
bounds = np.flatnonzero(np.diff(lab)) + 1
for b in bounds:
    ax.axhline(b, color="C1", lw=0.6)
ax.set_yticks([])
edges = np.concatenate([[0], bounds, [len(lab)]])
ax2 = ax.secondary_yaxis("right")  # each block's network, where it is tall enough to name
mids = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:]) if b - a >= 0.035 * len(lab)]
names = [atlas.network_names[lab[a] - 1] if lab[a] > 0 else "(none)"
         for a, b in zip(edges[:-1], edges[1:]) if b - a >= 0.035 * len(lab)]
ax2.set_yticks(mids, names, fontsize=9)
plt.show()

# %% [markdown]
# **Figure 4.3.** A carpet plot: one subject's voxels (rows, grouped by network, names at the right) over the
# story's TRs, z-scored.

# %% [markdown]
# ## The planted truth (synthetic twin only)
#
# Which networks carry which story property, with which sign; and the calibration: the
# correlation of single voxels with their planted signal. Published single-subject encoding and
# ISC values in auditory and language cortex peak around r = 0.3-0.45, with most voxels near 0;
# the default signal-to-noise is set to land there.

# %%
# NBVAL_CHECK_OUTPUT
if truth is not None:
    plant = pd.DataFrame(truth["plant"])[["network", "source", "sign", "weight", "n_voxels"]]
    print(plant.to_string(index=False))
    print(textwrap.fill("unplanted networks: " + ", ".join(truth["unplanted"]), 88, subsequent_indent="    "))
    print(f"snr = {truth['snr']}; expected peak single-subject r per subject:")
    print(f"    {np.round(truth['expected_peak_r'], 2).tolist()}")
else:
    print("real data: no planted truth")

# %%
if truth is not None:
    lab_v = stages.planting_labels(cfg, art)  # the atlas (ideal twin) or the atlas deformed (realistic)
    live = fmri.live_plants(truth)
    roi = np.zeros(V)
    for i, p in enumerate(live):
        roi[lab_v == p["label"]] = i + 1
    plotting.labels_map(roi, where, [f"{p['network']}: {p['source']} ({'+' if p['sign'] > 0 else '-'})" for p in live],
                        colors=plt.cm.tab10(np.arange(len(live))),
                        title="Where the twin's signals are planted (network: story property, sign)")
    plt.show()

# %% [markdown]
# **Figure 4.4.** The synthetic twin's planted networks on five axial slices (on a mesh: the inflated cortex), coloured by network; the legend
# names the story property that drives each one and its sign. (No figure for real data.)

# %%
if truth is not None:
    src = pd.read_csv(art.path / "dataset" / "truth_sources.tsv", sep="\t")
    names = list(dict.fromkeys(p["source"] for p in truth["plant"]))
    fig, axes = plt.subplots(2, 1, figsize=(7.2, 7.4), gridspec_kw={"height_ratios": [1, 1.3]})
    plotting.time_courses(axes[0], src[names].to_numpy(), tr_s=cfg.tr_s, labels=names)
    axes[0].set_title("Planted sources (HRF-convolved story properties)")
    groups = {n: isc[atlas.masks[atlas.index(n)]] for n in atlas.network_names}
    planted = {p["network"] for p in truth["plant"]}
    order = sorted(groups, key=lambda n: (n not in planted, n))
    axes[1].boxplot([groups[n] for n in order], orientation="horizontal", showfliers=False)
    axes[1].set_yticks(range(1, len(order) + 1), [n + (" *" if n in planted else "") for n in order], fontsize=9)
    axes[1].axvline(0, color="0.6", lw=0.8)
    axes[1].set(xlabel="ISC", title="ISC by network (* planted)")
    fig.tight_layout()
    ins = np.concatenate([groups[n] for n in planted]); out = np.concatenate([groups[n] for n in groups if n not in planted])
    print(f"median ISC in planted networks {np.median(ins):.3f}, in unplanted networks {np.median(out):.3f}")

# %% [markdown]
# **Figure 4.5.** The planted sources, story properties convolved with the HRF (top), and the ISC of every
# network's voxels (bottom; * planted).

# %%
# NBVAL_CHECK_OUTPUT
if truth is not None:
    # single-subject calibration: r of each planted network's peak voxel with its source
    rows = []
    for p in truth["plant"]:
        v = p["peak_voxel"]
        rs = [np.corrcoef(bold[s][:, v], p["sign"] * src[p["source"]].to_numpy())[0, 1] for s in range(S)]
        rows.append({"network": p["network"], "source": p["source"], "median r": np.median(rs), "max r": np.max(rs)})
    print(pd.DataFrame(rows).round(2).to_string(index=False))

# %% tags=["remove-cell"]
hl.glue_all()  # every headline figure, for the book's pages

# %% tags=["remove-cell"]
from myst_nb import glue

answer = (f"The {S} listeners share a response to the story in {keep.sum()} of {V} {unit} (ISC above "
          f"its circular-shift null, FDR {cfg.alpha}); the leave-one-out ISC has a median of "
          f"{np.median(isc):.3f} and reaches {isc.max():.2f}, the ceiling of any model's prediction of one listener.")
if truth is not None:
    answer += (f" In the twin's planted networks the median ISC is {np.median(ins):.3f}, in the others "
               f"{np.median(out):.3f}: the shared response is where the signals were planted.")
if tsnr is not None:
    answer += f" The volumes' median tSNR is {np.median(t_mean):.0f}."
glue("answer", answer, display=False)
print(answer)

# %% [markdown]
# ## Answer
#
# {glue:text}`answer:s`
