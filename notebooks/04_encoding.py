# -*- coding: utf-8 -*-
# %% [markdown]
# # 5. Encoding: the atoms as regressors of every voxel
#
# **Question.** Do the atoms predict the listeners' held-out brain activity, where, and better than
# the model's layers or its controls?
#
# For every subject and voxel, the BOLD series is regressed on the $k$ atoms (fixed regressors,
# already HRF-convolved):
#
# * **Ordinary least squares** gives each atom's coefficient and $t$ value per voxel (one brain map
#   per atom and subject; parity with statsmodels to $10^{-6}$ is tested) and the in-sample $R^2$
#   that the paper reports.
# * **Held-out scores**: ridge regression with a per-voxel penalty chosen by inner
#   cross-validation, on 5 contiguous folds, with the 5 TRs on each side of a test fold removed
#   from training (BOLD is autocorrelated: shuffled folds would leak). The score is the correlation
#   of held-out predictions with the data, averaged over folds, and divided by the noise
#   ceiling of a single subject's prediction: the leave-one-subject-out ISC corrected for the
#   noise left in the other subjects' mean (Spearman-Brown), under which a model that predicted
#   the shared signal perfectly scores 1 (checked by simulation:
#   `benchmarks/ceiling_calibration.json`; the uncorrected ISC would let it score 1.25).
# * **Significance**: the in-sample $R^2$ against 1,000 phase-randomised surrogates of the
#   regressors (the same random phases for every atom: each surrogate keeps the atoms'
#   autocorrelation and their correlations), FDR over voxels (circular shifts would give only 261
#   distinct surrogates for 326 TRs, too coarse for FDR); held-out prediction at the group level (below) against
#   phase-randomised surrogates of the BOLD, FDR over voxels.
# * **Group maps**: the one-sample $t$ of the subjects' coefficients, per atom and voxel; the share
#   of subjects agreeing in sign.

# %% mystnb={"code_prompt_hide": "Hide the parameters", "code_prompt_show": "Show the parameters of this run"} tags=["parameters"]
# Parameters (papermill overrides these)
runs_dir = None
story = "harrowpoint"
narratives_dir = None
tr_s = 1.5
shuffle_words = False
seed = 0
model = "all-MiniLM-L6-v2"
untrained = False
units = "output"
context = "auto"
context_tokens = 128
word_pool = "mean"
tr_pool = "mean"
hrf = "spm"
k = 64
lam = 0.1
solver = "spams"
dict_iter = 300
fmri_source = "synthetic"
space = "volume"
twin = "ideal"
n_subjects = 8
resolution_mm = 6.0
snr = None
plant_atlas = "Seitzman2018"
n_perm = 1000
alpha = 0.05
n_folds = 5
trim = 5
perm_stop = None
group_perm = 100
recovery_snrs = [0.2, 0.6]

# %%
import matplotlib.pyplot as plt
from llmbrain_utils import config, headlines, plotting
from llmbrain_utils.chapters import encoding as chapter

plotting.style()
cfg = config.collect(globals())
fits = chapter.load(cfg)  # the fits, their permutation tests, the fMRI data, the ISC mask
hl = headlines.Recorder("04_encoding", cfg)  # numbers that move with the BLAS kernel

# %%
# NBVAL_CHECK_OUTPUT
chapter.dimensions(fits)

# %%
chapter.headline_summary(fits, alpha=cfg.alpha, hl=hl)

# %% [markdown]
# The in-sample $R^2$ is large everywhere, also where no signal was planted: with 64 regressors
# and ~300 autocorrelated TRs, least squares fits noise (an $R^2$ of about $k/T = 0.2$ for white
# noise, more for smooth noise), and phase surrogates of the regressors, which keep their
# autocorrelation, reach the same values. That is why this book scores models by held-out
# prediction and tests it across subjects.
#
# The $t$ test of the subjects' held-out $r$ is valid but weak: $S - 1$ degrees of freedom (7 in the default run), and each
# subject's $r$ is noisy (about 0.1 SD under the null: short, smooth test blocks). The **group test**
# scores the held-out $r$ of the subjects' *average* BOLD, whose stimulus-locked part is what the
# listeners share, with $\sqrt{S}$ less noise, and compares it with the same statistic on 100
# surrogates of the BOLD whose Fourier phases are randomised (the same phases for every subject
# and voxel: each surrogate keeps the data's autocorrelation and its correlations across voxels and
# subjects). The ridge penalties are those the nested cross-validation chose, held fixed for the
# surrogates. Each voxel's value is standardised by the mean and SD of its null, and its $p$ is the
# share of all voxels' standardised null values above it (fine $p$-values from few surrogates).
# Surrogates, not circular shifts: neighbouring shifts give nearly the same value, so a shift null
# is too narrow (7% instead of 5% of null voxels at $p \le 0.05$, measured on white noise with these
# atoms); phase surrogates are independent draws.
#
# ## Held-out prediction, raw and ceiling-normalised
#
# Mean over subjects.

# %%
chapter.held_out_maps(fits)
plt.show()

# %% [markdown]
# **Figure 5.1.** Held-out prediction, mean over subjects: r where the group test finds the voxels (top) and
# r divided by the single-subject noise ceiling inside the ISC mask (bottom). Colour: r and the
# ceiling-normalised r.

# %%
fig = chapter.ceiling_figure(fits)

# %% [markdown]
# **Figure 5.2.** Held-out r per voxel inside and outside the ISC mask (left), and against each voxel's noise
# ceiling in the mask (right; grey line: r equal to the ceiling).

# %% [markdown]
# ## Recovery of the planted networks
#
# On the synthetic twin the truth is known: five networks carry planted signals, driven by
# properties of the story (word rate, word length, sentence ends, a slow drift), not by the atoms;
# the other networks and the voxels outside every network carry noise only. The table gives, per
# test, the share of planted-network voxels found (sensitivity), the share of the others found
# (false positive rate, FDR level 0.05), and the uncorrected rate of $p \le 0.05$ outside the planted
# networks (about 0.05 for a valid test). Two sets of regressors: the atoms, and, as the test's
# positive control, the planted sources themselves. The twin is made again at other SNRs (same
# seed, same noise) and the atoms tested there with the penalties and ISC mask of the default twin.

# %%
rec, snr0 = chapter.recovery(cfg)  # (None, None) on real data
chapter.recovery_summary(rec, snr0, hl=hl)

# %%
fig = chapter.recovery_figure(rec, snr0, alpha=cfg.alpha)

# %% [markdown]
# **Figure 5.3.** Recovery of the planted voxels by the group tests against the twin's SNR: sensitivity (left)
# and false positive rate outside the planted networks (right). Solid: the atoms as regressors;
# dashed: the planted sources themselves (the test's positive control).

# %% [markdown]
# With the planted sources as regressors the group test finds most voxels of the networks whose
# signal follows the words (word rate, word length, sentence ends), and few of the slow drift
# (a circular-stationary null cannot see much in a few cycles of a slow signal); with the atoms it
# finds far fewer: the atoms predict the planted story properties only partly. That is a finding
# about the atoms of this model on this story, not a failure of the test, whose false positive
# rate stays below the FDR level in every row (inside the ISC mask few voxels lie outside the
# planted networks, so that rate moves in large steps there).

# %% [markdown]
# ## Atom maps
#
# The group $t$ maps of the four atoms with the strongest maps, as slices.

# %%
top = chapter.atom_maps(fits)
plt.show()
print("atoms with the strongest group maps:", top.tolist())

# %% [markdown]
# **Figure 5.4.** The group t maps (one-sample t over subjects of each atom's coefficient, |t| > 3) of the four
# atoms with the strongest maps, on five axial slices (on a mesh: the inflated cortex).

# %% [markdown]
# ## An interactive brain viewer
#
# Held-out r, mean over subjects, where the group test finds the voxels (drag to move through the brain).

# %%
chapter.viewer(fits)

# %% [markdown]
# ## Do atoms beat layers?
#
# A reviewer's question. The same ridge model, the same folds, inside the ISC mask, fed (a) the
# $k$ atoms, (b) every layer's AN responses reduced to their first $k$ principal components (fitted
# on training TRs only), (c) all ANs reduced to $k$ components, and two controls, each with its own
# extraction and dictionary: (d) the atoms of the same model with untrained (random) weights, (e)
# the atoms of the model reading the story's words in shuffled order (same timings). If atoms were
# only a compression, they should do no better than a layer of the same size; if they carried
# language, better than the controls' atoms.

# %%
summary = chapter.baseline_table(cfg)
fig = chapter.baseline_figure(summary)
hl.add_table("baseline", summary)
print(summary.to_string())
chapter.baseline_verdicts(summary, hl)

# %% [markdown]
# **Figure 5.5.** Held-out r in the ISC mask (mean and SD over subjects) of the same ridge model fed the atoms
# (red), each layer's or all ANs' first k principal components (blue), and the atoms of the
# untrained model and of the shuffled story (grey).

# %% tags=["remove-cell"]
hl.glue_all()  # every headline figure, for the book's pages

# %% tags=["remove-cell"]
from myst_nb import glue

answer = chapter.answer(fits, rec, snr0, verdicts=hl.verdicts)
glue("answer", answer, display=False)
print(answer)

# %% [markdown]
# ## Answer
#
# {glue:text}`answer:s`
