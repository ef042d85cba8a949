# -*- coding: utf-8 -*-
# %% [markdown]
# # 1. Stimulus: words on the fMRI's clock
#
# **Question.** Which words of the story does a listener hear during each 1.5 s fMRI volume?
#
# Every later stage sees the story through one table: each word of the transcript with its onset
# and offset (seconds of audio) and the TR (fMRI volume, 1.5 s) it belongs to.
#
# **Default story.** The book runs on *The Clock at Harrow Point*, a short story written for this
# project (about 1,150 words), so that no download is needed. It has no recorded audio: its word
# timings come from a stated speech-rate model (each word lasts 0.10 s + 0.15 s per syllable,
# +-10% seeded jitter, 40 ms between words, pauses of 0.25 s at commas, 0.45 s at sentence ends and
# 1.2 s between paragraphs, about 146 words a minute, the pace of the Narratives stories). The
# timings are written as a Gentle `align.json` and read by the same reader as the real data set's
# alignments. Any of the 13 Narratives stories can be used instead (`story`, `narratives_dir`).
#
# **Rule.** A word belongs to the TR in which it *ends*: `tr = floor(offset / 1.5)`. By the end of
# that volume the word has been heard completely. Words the aligner could not place keep their
# position and get times interpolated between their neighbours (flagged `interpolated`).

# %% mystnb={"code_prompt_hide": "Hide the parameters", "code_prompt_show": "Show the parameters of this run"} tags=["parameters"]
# Parameters (papermill overrides these)
runs_dir = None
story = "harrowpoint"
narratives_dir = None
tr_s = 1.5
shuffle_words = False
seed = 0

# %%
import matplotlib.pyplot as plt
import numpy as np
from llmbrain_utils import config, plotting, stages

plotting.style()
cfg = config.collect(globals())
art = stages.stimulus(cfg)
words, trs = stages.read_words(art), stages.read_trs(art)
print("artifact:", art.path.relative_to(art.path.parents[2]))

# %%
# NBVAL_CHECK_OUTPUT
info = art.info
print(f"words: {info['n_words']}, TRs: {info['n_trs']}, interpolated words: {info['n_interpolated']}")
print(f"duration: {info['duration_s']:.1f} s, speech rate: {60 * info['n_words'] / info['duration_s']:.0f} words/min")
inside = trs[trs.n_words > 0]
print(f"words per TR: median {np.median(trs.n_words):.0f}, max {trs.n_words.max()}, "
      f"silent TRs: {(trs.n_words == 0).sum()}")
print(f"sentence ends: {int(words.sentence_end.sum())}")

# %%
words[["word", "onset", "offset", "interpolated", "sentence_end", "tr"]].head(12)

# %%
fig, axes = plt.subplots(1, 3, figsize=(7.2, 2.7))
axes[0].bar(trs.start_s, trs.n_words, width=cfg.tr_s, color="C0")
axes[0].set(xlabel="time (s)", ylabel="words per TR", title="Words per TR")
dur = words.offset - words.onset
axes[1].hist(dur, bins=40, color="C1")
axes[1].set(xlabel="word duration (s)", ylabel="words", title="Word durations")
gaps = words.onset.to_numpy()[1:] - words.offset.to_numpy()[:-1]
axes[2].hist(gaps, bins=40, color="C2")
axes[2].set(xlabel="pause before next word (s)", ylabel="words", title="Pauses")
fig.tight_layout()

# %% [markdown]
# **Figure 1.1.** The story on the fMRI's clock: words per TR (left), the words' durations (middle) and the
# pauses between words (right). The TRs without a word fall in the longest pauses.

# %% [markdown]
# ## Check against a peer
#
# For the Narratives story *Pie Man*, Kumar et al. (2024) published their own assignment of words to
# TRs (`tr_tokens.csv`). The rule above, applied to the same Gentle alignment, reproduces it; the
# test suite requires at least 98% of TRs to hold the same words. This cell runs when the read-only
# mirror `../shared/narratives` sits beside the repository.

# %%
from pathlib import Path
import pandas as pd
from llmbrain_utils import stimuli

mirror = Path("..").resolve() / "shared" / "narratives"
if not mirror.is_dir():
    mirror = Path.cwd().resolve().parent.parent / "shared" / "narratives"
if mirror.is_dir():
    pie = stimuli.assign_trs(stimuli.read_alignment(mirror / "stimuli/pieman/align.csv"))
    ours = pie.groupby("tr")["word"].agg(" ".join)
    peer = pd.read_csv(mirror / "stimuli/pieman/tr_tokens.csv").dropna(subset=["tokens"])
    same = np.mean([ours.get(int(r.tr), "") == r.tokens for r in peer.itertuples()])
    print(f"pieman: {len(pie)} words, {int(pie.interpolated.sum())} interpolated; "
          f"TRs with the same words as the peer: {same:.1%} of {len(peer)}")
else:
    print("the Narratives mirror is not beside the repository: peer check skipped")

# %% tags=["remove-cell"]
from myst_nb import glue

for key, value in {"ans_words": info["n_words"], "ans_trs": info["n_trs"],
                   "ans_median_words": float(np.median(trs.n_words)), "ans_silent": int((trs.n_words == 0).sum()),
                   "ans_minutes": info["duration_s"] / 60}.items():
    glue(key, value, display=False)

# %% [markdown]
# ## Answer
#
# The story's {glue:text}`ans_words` words fall on {glue:text}`ans_trs` TRs
# ({glue:text}`ans_minutes:.1f` minutes); a TR holds a median of {glue:text}`ans_median_words:.0f` words
# and {glue:text}`ans_silent` TRs hold none. Each word sits in the TR in which it ends, the rule that
# reproduces a published assignment of *Pie Man*'s words to TRs (above, when the mirror is at hand).
