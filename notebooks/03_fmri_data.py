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
import matplotlib.pyplot as plt
from llmbrain_utils import config, headlines, plotting, stages
from llmbrain_utils.chapters import fmri as chapter

plotting.style()
cfg = config.collect(globals())
art = stages.fmri_data(cfg)
data = chapter.load(art, cfg)  # the BOLD, the brain mask (or the mesh's name), the ISC, the truth

# %%
# NBVAL_CHECK_OUTPUT
chapter.summary(data, cfg)

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
chapter.loaded_files(art, data, cfg)

# %% [markdown]
# ## Inter-subject correlation: the ceiling of any model

# %%
chapter.isc_figure(data)
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
tsnr = chapter.tsnr_summary(art)  # subjects x voxels, or None

# %%
if tsnr is not None:
    chapter.tsnr_map(tsnr, data.where)
    plt.show()
    chapter.tsnr_histogram(tsnr)
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
chapter.carpet_plot(data, atlas, tr_s=cfg.tr_s)
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
chapter.planted_table(data.truth)

# %%
if data.truth is not None:
    chapter.planted_map(data, cfg, art)
    plt.show()

# %% [markdown]
# **Figure 4.4.** The synthetic twin's planted networks on five axial slices (on a mesh: the inflated cortex), coloured by network; the legend
# names the story property that drives each one and its sign. (No figure for real data.)

# %%
if data.truth is not None:
    chapter.sources_and_network_isc(art, data, atlas, tr_s=cfg.tr_s)
    plt.show()

# %% [markdown]
# **Figure 4.5.** The planted sources, story properties convolved with the HRF (top), and the ISC of every
# network's voxels (bottom; * planted).

# %%
# NBVAL_CHECK_OUTPUT
if data.truth is not None:
    # single-subject calibration: r of each planted network's peak voxel with its source
    chapter.calibration_table(art, data)

# %% tags=["remove-cell"]
hl.glue_all()  # every headline figure, for the book's pages

# %% tags=["remove-cell"]
from myst_nb import glue

answer = chapter.answer(data, cfg, atlas=atlas, tsnr=tsnr)
glue("answer", answer, display=False)
print(answer)

# %% [markdown]
# ## Answer
#
# {glue:text}`answer:s`
