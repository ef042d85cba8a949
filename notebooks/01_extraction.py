# -*- coding: utf-8 -*-
# %% [markdown]
# # 2. Extraction: every artificial neuron's response to the story
#
# **Question.** What does each artificial neuron of the model do over the story, TR by TR?
#
# An **artificial neuron (AN)** is, as the method defines it, one output unit of a layer's
# feed-forward network's second linear layer, taken before dropout, the residual addition and
# LayerNorm, in every layer. A forward hook on that module (BERT: `output.dense`; Llama:
# `mlp.down_proj`) records it for every token. Token activations are averaged into words, words
# into TRs (1.5 s), then each AN's series is convolved with the canonical HRF and z-scored.
#
# The default model is **all-MiniLM-L6-v2** (BERT architecture, 6 layers x 384 output units =
# 2,304 ANs; real pretrained weights that a package carries). `units="hidden"` takes the FFN's
# hidden units instead (6 x 1,536); `context="causal"` lets every word see only the past.

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

# %%
import json
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from llmbrain_utils import config, plotting, stages

plotting.style()
cfg = config.collect(globals())
art = stages.extraction(cfg)
R = stages.read_responses(art, mmap=False)
an = stages.read_an_table(art)
stats = json.loads(art.file("stats.json").read_text())
minfo = art.info["model"]

# %%
# NBVAL_CHECK_OUTPUT
print(f"model: {minfo['name']} ({minfo['family']}), untrained: {minfo['untrained']}")
print(f"layers x units: {minfo['n_layers']} x {minfo['d_model'] if cfg.units == 'output' else minfo['d_ffn']} ({cfg.units} units)")
print(f"responses: T = {R.shape[0]} TRs x N = {R.shape[1]} ANs, constant ANs: {art.info['n_constant']}, "
      f"silent TRs: {art.info['n_silent_trs']}")
print(f"context: {cfg.context}, >= {cfg.context_tokens} preceding tokens; pooling: {cfg.word_pool} / {cfg.tr_pool}; HRF: {cfg.hrf}")
print("z-scored:", bool(np.allclose(R.mean(0), 0, atol=1e-4) and np.allclose(R[:, ~an.constant.to_numpy()].std(0), 1, atol=1e-3)))

# %% [markdown]
# ## Per-layer activation statistics
#
# Mean absolute activation (before z-scoring) and the share of ANs that never respond.

# %%
layers = pd.DataFrame(stats["layers"]) if "layers" in stats else pd.DataFrame(stats["per_layer"])
layers.round(3)

# %%
fig, axes = plt.subplots(1, 2, figsize=(7.2, 2.8))
lay = layers.iloc[:, 0] if "layer" not in layers else layers["layer"]
axes[0].bar(lay, layers["mean_abs"], color="C0")
axes[0].set(xlabel="layer", ylabel="mean |activation|", title="Activation size per layer")
axes[1].bar(lay, layers["never_active_share"], color="C3")
axes[1].set(xlabel="layer", ylabel="share of ANs", title="Never-active ANs per layer", ylim=(0, max(0.05, layers["never_active_share"].max() * 1.2)))
if not layers["never_active_share"].any():
    axes[1].text(0.5, 0.5, "none: every AN responds\nto some word of the story", transform=axes[1].transAxes,
                 ha="center", va="center")
fig.tight_layout()

# %% [markdown]
# **Figure 2.1.** Per layer, the mean size of the ANs' activations before z-scoring (left) and the share of
#     ANs that never respond to the story (right).

# %% [markdown]
# ## Sample time courses
#
# One AN from each layer (z-scored, HRF-convolved), and 300 ANs as an image, ordered by layer.

# %%
rng = np.random.default_rng(cfg.seed)
picks = [int(rng.choice(np.flatnonzero(an.layer.to_numpy() == l))) for l in sorted(an.layer.unique())]
fig, axes = plt.subplots(2, 1, figsize=(7.2, 6.4))
plotting.time_courses(axes[0], R[:, picks], tr_s=cfg.tr_s,
                      labels=[f"L{an.layer[j]}:{an.unit[j]}" for j in picks])
axes[0].set_title("One AN per layer")
sub = np.sort(rng.choice(R.shape[1], 300, replace=False))
im = axes[1].imshow(R[:, sub].T, aspect="auto", cmap="RdBu_r", vmin=-3, vmax=3,
                    extent=[0, R.shape[0] * cfg.tr_s, 300, 0])
fig.colorbar(im, ax=axes[1], label="response (z)", fraction=0.04, pad=0.02)
axes[1].set(xlabel="time (s)", ylabel="ANs (by layer)", title="300 ANs, z-scored")
fig.tight_layout()

# %% [markdown]
# **Figure 2.2.** Responses over the story: one AN from each layer (top; labelled by layer and unit, e.g. L0:326 is unit 326 of layer 0) and 300 random
#     ANs ordered by layer (bottom), each z-scored and HRF-convolved.

# %% [markdown]
# ## How similar are the layers' responses?
#
# For every layer, the TR-by-TR correlation matrix of its ANs' responses (a representational
# similarity matrix over time); then the correlation of those matrices between layers.

# %%
# NBVAL_CHECK_OUTPUT
L = sorted(an.layer.unique())
tri = np.triu_indices(R.shape[0], 1)
rsm = np.stack([np.corrcoef(R[:, an.layer.to_numpy() == l])[tri] for l in L])
sim = np.corrcoef(rsm)
fig, ax = plt.subplots(figsize=(4.5, 3.8))
plotting.heatmap(ax, sim, xlabels=L, ylabels=L, cmap="viridis", vmax=1, title="Layer similarity (RSA over TRs)",
                 label="correlation of the layers' RSMs")
ax.set(xlabel="layer", ylabel="layer")
print("similarity of adjacent layers:", np.round(np.diag(sim, 1), 2))

# %% [markdown]
# **Figure 2.3.** How alike the layers respond: the correlation between layers of their TR-by-TR
#     representational similarity matrices.

# %% tags=["remove-cell"]
from myst_nb import glue

adjacent = np.diag(sim, 1)
for key, value in {"ans_ans": R.shape[1], "ans_layers": minfo["n_layers"], "ans_trs": R.shape[0],
                   "ans_constant": art.info["n_constant"], "ans_adjacent_min": float(adjacent.min()),
                   "ans_adjacent_max": float(adjacent.max())}.items():
    glue(key, value, display=False)

# %% [markdown]
# ## Answer
#
# Each of the model's {glue:text}`ans_ans` ANs ({glue:text}`ans_layers` layers) has a response on
# all {glue:text}`ans_trs` TRs of the story; {glue:text}`ans_constant` never vary. Neighbouring
# layers respond alike (correlation of their similarity matrices {glue:text}`ans_adjacent_min:.2f`
# to {glue:text}`ans_adjacent_max:.2f`), so the ANs' responses are highly redundant: the reason a
# dictionary of a few dozen atoms can summarise them (next chapter).
