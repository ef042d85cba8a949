"""Story features per TR from a word table (:func:`stimulus_features`) and its sentence ends
(:func:`sentence_ends`, inferred from pauses in a table without any)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from ..errors import InputError, ParameterError
from .io import TR_S

log = logging.getLogger(__name__.rpartition(".")[0])  # "llmbrain_utils.fmri", as before the split


FEATURES = ("word_rate", "word_length", "sentence_end", "pause", "drift")


def _letters(word: str) -> int:
    n = sum(ch.isalpha() for ch in str(word))
    return n if n else len(str(word).strip())


def _check_words(words) -> pd.DataFrame:
    if not isinstance(words, pd.DataFrame):
        raise ParameterError("words", f"{type(words).__name__}", expected="a pandas DataFrame (word table)")
    for col in ("word", "onset", "offset", "sentence_end"):
        if col not in words.columns:
            raise InputError("words", "missing column", field=col,
                             expected="columns word, onset, offset, sentence_end (, tr)")
    w = words.reset_index(drop=True)
    on = pd.to_numeric(w["onset"], errors="coerce").to_numpy(float)
    off = pd.to_numeric(w["offset"], errors="coerce").to_numpy(float)
    bad = np.isnan(on) | np.isnan(off)
    if bad.all():
        raise InputError("words", "no word has a time", field="onset", expected="seconds")
    if bad.any():
        log.warning("words: %d word(s) without onset/offset left out of the features", int(bad.sum()))
    neg = np.flatnonzero(~bad & ((on < 0) | (off < on)))
    if neg.size:
        i = int(neg[0])
        raise InputError("words", f"onset {on[i]} / offset {off[i]}", line=i, field="offset",
                         expected="0 <= onset <= offset")
    w = w.loc[~bad].copy()
    w["onset"], w["offset"] = on[~bad], off[~bad]
    w["sentence_end"] = w["sentence_end"].astype(str).str.lower().isin(["true", "1", "yes"]) \
        if w["sentence_end"].dtype == object else w["sentence_end"].astype(bool)
    return w.sort_values("onset", kind="stable").reset_index(drop=True)


def _pause_sentence_ends(on: np.ndarray, off: np.ndarray, pause_s: float) -> np.ndarray:
    """Sentence ends of words sorted by onset: silence after the word >= pause_s; the last word."""
    after = np.r_[on[1:] - off[:-1], np.inf]
    return after >= pause_s


def stimulus_features(words: pd.DataFrame, n_trs: int, tr_s: float = TR_S, *,
                      start_offset_s: float = 0.0, hrf_model: str = "spm", pause_s: float = 0.3,
                      drift_sigma_s: float = 20.0,
                      sentence_pause_s: float | None = 0.5) -> pd.DataFrame:
    """Interpretable story features per TR, HRF-convolved (nilearn) and z-scored.

    ============== ===================================================================
    feature        events (scan time = word time + ``start_offset_s``)
    ============== ===================================================================
    word_rate      an impulse at every word onset
    word_length    an impulse at every onset, weighted by the word's letters minus the mean
    sentence_end   an impulse at the offset of every sentence-final word
    pause          a boxcar over every silence of at least ``pause_s`` between words
    drift          slow narrative drift: each sentence's length in words (centred) as a
                   boxcar over the sentence, convolved, then Gaussian-smoothed
                   (``drift_sigma_s``)
    ============== ===================================================================

    Sentence ends come from the word table's ``sentence_end``. A table with none at all (real
    Narratives transcripts carry no punctuation) and more than one word gets them from pauses:

    ================== ===============================================================
    sentence_pause_s   a word ends a sentence when the silence after it (next onset
                       minus its offset) is at least this many seconds (default 0.5);
                       the last word always ends one. None: no inference (then
                       ``sentence_end`` and ``drift`` of such a table are constant)
    ================== ===============================================================

    A table with at least one sentence end is used as it is.

    Parameters
    ----------
    words : pandas.DataFrame
        Word table with ``word``, ``onset``, ``offset`` (s), ``sentence_end`` (bool).
    n_trs : int
        Length of the scan in TRs (frame times ``i * tr_s``).
    tr_s : float
    start_offset_s : float
        Scan time at which the word times' zero lies (the audio onset).
    hrf_model : str
        nilearn HRF model ('spm', 'glover', ...).
    pause_s, drift_sigma_s : float
    sentence_pause_s : float or None
        See above: the pause that ends a sentence in a table without sentence ends.

    Returns
    -------
    pandas.DataFrame
        ``n_trs x 5`` (columns :data:`FEATURES`), float64; a constant feature (e.g. no sentence
        end in a short excerpt) is all zeros, with a warning.
    """
    from nilearn.glm.first_level.hemodynamic_models import compute_regressor
    from scipy.ndimage import gaussian_filter1d

    if isinstance(n_trs, bool) or not isinstance(n_trs, (int, np.integer)) or n_trs < 2:
        raise ParameterError("n_trs", f"{n_trs!r}", expected="an int >= 2")
    if not isinstance(tr_s, (int, float)) or tr_s <= 0:
        raise ParameterError("tr_s", f"{tr_s!r}", expected="a positive number of seconds")
    if sentence_pause_s is not None and (
            isinstance(sentence_pause_s, bool) or not isinstance(sentence_pause_s, (int, float))
            or not sentence_pause_s >= 0):
        raise ParameterError("sentence_pause_s", f"{sentence_pause_s!r}",
                             expected="None or a number of seconds >= 0")
    w = _check_words(words)
    on = w["onset"].to_numpy() + start_offset_s
    off = w["offset"].to_numpy() + start_offset_s
    frame_times = np.arange(n_trs) * float(tr_s)

    def reg(onsets, durations, amps) -> np.ndarray:
        if len(onsets) == 0 or not np.any(amps):
            return np.zeros(n_trs)
        cond = np.vstack([onsets, durations, amps]).astype(float)
        return compute_regressor(cond, hrf_model, frame_times, oversampling=16)[0][:, 0]

    ones = np.ones(len(w))
    lengths = np.array([_letters(x) for x in w["word"]], dtype=float)
    ends = w["sentence_end"].to_numpy(bool)
    if not ends.any() and len(w) > 1 and sentence_pause_s is not None:
        ends = _pause_sentence_ends(on, off, sentence_pause_s)
        log.info("words: no sentence end in the table; %d inferred from pauses >= %g s "
                 "(the last word ends one)", int(ends.sum()), sentence_pause_s)
    gaps_start, gaps_len = off[:-1], on[1:] - off[:-1]
    keep = gaps_len >= pause_s
    # sentences: runs of words closed by a sentence end
    sent_id = np.concatenate([[0], np.cumsum(ends)[:-1]])
    sent = pd.DataFrame({"id": sent_id, "on": on, "off": off}).groupby("id").agg(
        on=("on", "min"), off=("off", "max"), n=("on", "size"))
    feats = {
        "word_rate": reg(on, np.zeros(len(w)), ones),
        "word_length": reg(on, np.zeros(len(w)), lengths - lengths.mean()),
        "sentence_end": reg(off[ends], np.zeros(int(ends.sum())), np.ones(int(ends.sum()))),
        "pause": reg(gaps_start[keep], gaps_len[keep], np.ones(int(keep.sum()))),
        "drift": gaussian_filter1d(
            reg(sent["on"].to_numpy(), (sent["off"] - sent["on"]).to_numpy(),
                (sent["n"] - sent["n"].mean()).to_numpy(float)),
            sigma=drift_sigma_s / tr_s, mode="nearest"),
    }
    out = {}
    for name, v in feats.items():
        sd = v.std()
        if sd <= 1e-12 * max(1.0, np.abs(v).max()):
            log.warning("stimulus feature %r is constant over the %d TRs; set to 0", name, n_trs)
            out[name] = np.zeros(n_trs)
        else:
            out[name] = (v - v.mean()) / sd
    return pd.DataFrame(out, index=pd.RangeIndex(n_trs, name="tr"))[list(FEATURES)]


def sentence_ends(words, sentence_pause_s: float | None) -> tuple[int, bool]:
    """How many sentence ends the word table has, and whether they were inferred from pauses
    of at least ``sentence_pause_s`` (a table without any marked)."""
    wt = _check_words(words)
    n_ends = int(wt["sentence_end"].sum())
    if n_ends == 0 and len(wt) > 1 and sentence_pause_s is not None:
        on_w, off_w = wt["onset"].to_numpy(float), wt["offset"].to_numpy(float)
        return int(_pause_sentence_ends(on_w, off_w, sentence_pause_s).sum()), True
    return n_ends, False
