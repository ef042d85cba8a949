"""Stage 1, stimulus: word alignments -> a word table on the fMRI's TR grid.

A *word table* is a pandas DataFrame, one row per word of the transcript, in spoken order:

=============== =====================================================================
column          meaning
=============== =====================================================================
``word``        the word as in the transcript (may carry punctuation)
``norm``        the aligner's normalised word (``<unk>`` when out of its vocabulary)
``onset``       seconds from the start of the audio
``offset``      seconds from the start of the audio
``interpolated`` True when the aligner could not place the word and its times were
                interpolated from its neighbours (see :func:`fill_missing_times`)
``sentence_end`` True for the last word of a sentence (from punctuation, when known)
``tr``          index of the TR the word is assigned to (see :func:`assign_trs`)
=============== =====================================================================

Readers accept Gentle's ``align.json`` (as in the Narratives data set,
``stimuli/gentle/STORY/align.json``) and the headerless four-column CSV form (word, aligned word,
onset, offset). The project's own story (``llmbrain_utils/data/story.txt``) gets timings from a
stated speech-rate model (:func:`synthesize_alignment`) and is read through the same JSON path.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ._io import read_text
from ._validation import STORY_NAME, STORY_WORDS
from .errors import InputError, ParameterError

log = logging.getLogger(__name__)

TR_S = 1.5
STORY_FILE = Path(__file__).with_name("data") / "story.txt"
EMBEDDED_STORY = "harrowpoint"
_SENT_END = re.compile(r"[.!?][\"')\]]*$")
_VOWELS = re.compile(r"[aeiouy]+")


# --------------------------------------------------------------------------- readers
def _finish(rows: list[dict], source) -> pd.DataFrame:
    if not rows:
        raise InputError(source, "no words", expected="at least one aligned word")
    df = pd.DataFrame(rows, columns=["word", "norm", "onset", "offset", "sentence_end", "line"])
    df = fill_missing_times(df, source)
    check_plausible(df, source)
    return df.reset_index(drop=True)


#: the longest story an alignment may hold, and the longest median word, in seconds: times past
#: these are not seconds (milliseconds, most likely); the Narratives stories last 3-56 minutes
#: and a spoken word ~0.3 s
MAX_STORY_S = 4 * 3600.0
MAX_MEDIAN_WORD_S = 5.0


def check_plausible(words: pd.DataFrame, source="<alignment>") -> None:
    """Refuse timings that cannot be seconds: a story longer than :data:`MAX_STORY_S` or a median
    word longer than :data:`MAX_MEDIAN_WORD_S` (an alignment in milliseconds gives both)."""
    placed = words[~words["interpolated"]] if "interpolated" in words else words
    end = float(words["offset"].max())
    median = float((placed["offset"] - placed["onset"]).median())
    if end > MAX_STORY_S or median > MAX_MEDIAN_WORD_S:
        raise InputError(source, f"implausible times: the story would last {end / 3600:.1f} hours "
                         f"and its median word {median:.1f} s; the times look like milliseconds",
                         field="onset/offset", expected=f"seconds: a story under "
                         f"{MAX_STORY_S / 3600:.0f} hours, words under {MAX_MEDIAN_WORD_S:.0f} s "
                         "(divide millisecond times by 1000)")


def _time(value, source, line, field):
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return math.nan
    try:
        t = float(value)
    except (TypeError, ValueError):
        raise InputError(source, f"non-numeric time {value!r}", line=line, field=field,
                         expected="seconds as a number") from None
    if not math.isfinite(t) or t < 0:
        raise InputError(source, f"invalid time {value!r}", line=line, field=field,
                         expected="a finite, non-negative number of seconds")
    return t


def _check_pair(on, off, source, line):
    if math.isnan(on) != math.isnan(off):
        raise InputError(source, "only one of onset/offset is given", line=line,
                         field="onset/offset", expected="both or neither")
    if not math.isnan(on) and off < on:
        raise InputError(source, f"offset {off} before onset {on}", line=line, field="offset",
                         expected="offset >= onset")


def read_alignment_csv(path: str | Path) -> pd.DataFrame:
    """Read the headerless CSV form: word, aligned word, onset, offset (empty when unaligned)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    rows = []
    text = read_text(path, what="alignment")  # UTF-8; a byte-order mark is not part of a word
    for i, rec in enumerate(csv.reader(io.StringIO(text, newline="")), start=1):
        if not rec or all(not c.strip() for c in rec):
            continue
        if len(rec) != 4:
            raise InputError(path, f"{len(rec)} columns", line=i,
                             expected="4 columns: word, aligned word, onset, offset")
        word, norm, on, off = rec
        if not word.strip():
            raise InputError(path, "empty word", line=i, field="word")
        on, off = _time(on, path, i, "onset"), _time(off, path, i, "offset")
        _check_pair(on, off, path, i)
        rows.append(dict(word=word.strip(), norm=norm.strip() or "<unk>", onset=on,
                         offset=off, sentence_end=bool(_SENT_END.search(word)), line=i))
    return _finish(rows, path)


def read_alignment_json(path: str | Path | None = None, *, data: dict | None = None) -> pd.DataFrame:
    """Read Gentle's ``align.json`` (``{"transcript": ..., "words": [...]}``).

    Words Gentle could not place (``case != "success"``) are kept with interpolated times.
    Sentence ends come from the transcript's punctuation after each word.
    """
    source = path if path is not None else "<alignment>"
    if data is None:
        path = Path(path)
        if not path.is_file():
            raise InputError(path, "file not found")
        try:
            data = json.loads(read_text(path, what="alignment"))
        except json.JSONDecodeError as e:
            raise InputError(path, f"not valid JSON ({e.msg})", line=e.lineno) from None
    if not isinstance(data, dict) or not isinstance(data.get("words"), list):
        raise InputError(source, "no 'words' list", field="words",
                         expected="Gentle align.json with 'transcript' and 'words'")
    transcript = data.get("transcript", "")
    rows = []
    for i, w in enumerate(data["words"]):
        where = f"words[{i}]"
        if not isinstance(w, dict) or not str(w.get("word", "")).strip():
            raise InputError(source, "entry without a word", field=f"{where}.word")
        ok = w.get("case", "success") == "success"
        on = _time(w.get("start") if ok else None, source, None, f"{where}.start")
        off = _time(w.get("end") if ok else None, source, None, f"{where}.end")
        _check_pair(on, off, source, where)
        end = w.get("endOffset")
        tail = transcript[end:end + 3] if isinstance(end, int) and transcript else ""
        sent = bool(re.match(r"[\"')\]]*[.!?]", tail)) or bool(_SENT_END.search(w["word"]))
        rows.append(dict(word=str(w["word"]).strip(),
                         norm=w.get("alignedWord", "<unk>") if ok else "<unk>",
                         onset=on, offset=off, sentence_end=sent, line=i))
    return _finish(rows, source)


def read_alignment(path: str | Path) -> pd.DataFrame:
    """Read an alignment by its suffix: ``.json`` (Gentle) or ``.csv`` (headerless 4 columns)."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        return read_alignment_json(path)
    if path.suffix.lower() in (".csv", ".txt"):
        return read_alignment_csv(path)
    raise InputError(path, f"unknown alignment format '{path.suffix}'", expected=".json or .csv")


def fill_missing_times(df: pd.DataFrame, source="<alignment>") -> pd.DataFrame:
    """Give words without timings interpolated times, and flag them.

    A run of unplaced words between two placed ones shares the gap evenly; leading or trailing
    runs take the story's median word duration. Placed words must not go backwards in time.
    """
    df = df.copy()
    on = df["onset"].to_numpy(float, copy=True)
    off = df["offset"].to_numpy(float, copy=True)
    missing = np.isnan(on)
    if missing.all():
        raise InputError(source, "no word has a timing", expected="at least one aligned word")
    placed = np.flatnonzero(~missing)
    back = np.flatnonzero(np.diff(on[placed]) < -1e-6)
    if back.size:
        j = placed[back[0] + 1]
        raise InputError(source, f"word '{df['word'].iat[j]}' starts at {on[j]}, before the "
                         f"previous word's onset {on[placed[back[0]]]}", line=df["line"].iat[j],
                         field="onset", expected="onsets in spoken order")
    dur = float(np.median(off[placed] - on[placed])) or 0.3
    i = 0
    n = len(df)
    while i < n:
        if not missing[i]:
            i += 1
            continue
        j = i
        while j < n and missing[j]:
            j += 1
        m = j - i
        if i == 0:
            t1 = on[j]
            start = max(0.0, t1 - m * dur)
            step = (t1 - start) / m
        elif j == n:
            start, step = off[i - 1], dur
        else:  # between its neighbours: never after the next word starts (in spoken order)
            start = max(on[i - 1], min(off[i - 1], on[j]))
            step = (on[j] - start) / m
        for q in range(m):
            on[i + q] = start + q * step
            off[i + q] = start + (q + 1) * step
        i = j
    df["onset"], df["offset"], df["interpolated"] = on, off, missing
    return df


# --------------------------------------------------------------------------- TR grid
def n_trs_for(words: pd.DataFrame, tr_s: float = TR_S, start_offset_s: float = 0.0) -> int:
    """Smallest number of TRs that covers every word (audio time + ``start_offset_s``)."""
    return int(math.floor((words["offset"].max() + start_offset_s) / tr_s)) + 1


def assign_trs(words: pd.DataFrame, *, tr_s: float = TR_S, n_trs: int | None = None,
               start_offset_s: float = 0.0, rule: str = "offset") -> pd.DataFrame:
    """Assign each word to a TR.

    Rule ``offset`` (default): a word belongs to the TR in which it *ends*,
    ``tr = floor((offset + start_offset_s) / tr_s)``: the word has been heard completely by the
    end of that TR (the rule of Kumar et al. 2024's ``tr_tokens``). ``onset``: the TR in which it
    starts; ``midpoint``: the TR of its temporal centre. ``start_offset_s`` is the scan time at
    which the audio starts. Words beyond ``n_trs`` keep their index (>= n_trs) and are only context.
    """
    if tr_s <= 0:
        raise ParameterError("tr_s", f"{tr_s}", expected="a positive TR in seconds")
    times = {"offset": words["offset"], "onset": words["onset"],
             "midpoint": (words["onset"] + words["offset"]) / 2}
    if rule not in times:
        raise ParameterError("rule", f"unknown rule {rule!r}", expected="offset, onset or midpoint")
    out = words.copy()
    # the tiny epsilon keeps a word ending exactly on a TR boundary in the earlier TR's arithmetic
    out["tr"] = np.floor((times[rule].to_numpy() + start_offset_s) / tr_s + 1e-9).astype(int)
    if n_trs is not None and n_trs < 1:
        raise ParameterError("n_trs", f"{n_trs}", expected=">= 1")
    return out


def tr_table(words: pd.DataFrame, n_trs: int, tr_s: float = TR_S) -> pd.DataFrame:
    """One row per TR: start and end times, number of words and the words themselves."""
    inside = words[(words["tr"] >= 0) & (words["tr"] < n_trs)]
    groups = inside.groupby("tr")["word"]
    idx = np.arange(n_trs)
    return pd.DataFrame({
        "tr": idx, "start_s": idx * tr_s, "end_s": (idx + 1) * tr_s,
        "n_words": groups.size().reindex(idx, fill_value=0).to_numpy(),
        "words": groups.agg(" ".join).reindex(idx, fill_value="").to_numpy(),
    })


def shuffle_words(words: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Control stimulus: the same timings, the words in a random order (seeded)."""
    rng = np.random.default_rng(seed)
    out = words.copy()
    perm = rng.permutation(len(words))
    for col in ("word", "norm"):
        out[col] = words[col].to_numpy()[perm]
    out["sentence_end"] = False
    return out


# --------------------------------------------------------------------------- embedded story
def syllables(word: str) -> int:
    """A rough English syllable count (vowel groups, silent final e), at least 1."""
    w = re.sub(r"[^a-z]", "", word.lower())
    if not w:
        return 1
    n = len(_VOWELS.findall(w))
    if w.endswith("e") and not w.endswith(("le", "ee")) and n > 1:
        n -= 1
    return max(n, 1)


def synthesize_alignment(text: str, *, start_s: float = 2.0, base_s: float = 0.10,
                         per_syllable_s: float = 0.15, gap_s: float = 0.04,
                         comma_pause_s: float = 0.25, sentence_pause_s: float = 0.45,
                         paragraph_pause_s: float = 1.2, seed: int = 0,
                         jitter: float = 0.1) -> dict:
    """Word timings for a text from a stated speech-rate model, as a Gentle ``align.json`` dict.

    Each word lasts ``base_s + per_syllable_s * syllables`` (times a seeded jitter of +-10%),
    words are separated by ``gap_s``, and pauses follow commas, sentence ends and paragraph ends.
    With the defaults an average narrative runs at about 150-160 words a minute, the pace of the
    Narratives stories. Paragraphs are separated by blank lines.
    """
    rng = np.random.default_rng(seed)
    words, t, pos = [], start_s, 0
    for para in re.split(r"\n\s*\n", text.strip()):
        for m in re.finditer(r"\S+", para):
            token = m.group(0)
            bare = token.strip(".,;:!?\"'()[]-")
            if not bare:
                continue
            dur = (base_s + per_syllable_s * syllables(bare)) * (1 + jitter * rng.uniform(-1, 1))
            s0 = pos + m.start() + token.find(bare)
            words.append({"word": bare, "alignedWord": bare.lower(), "case": "success",
                          "start": round(t, 3), "end": round(t + dur, 3),
                          "startOffset": s0, "endOffset": s0 + len(bare)})
            t += dur + gap_s
            if _SENT_END.search(token):
                t += sentence_pause_s
            elif token.endswith((",", ";", ":")):
                t += comma_pause_s
        t += paragraph_pause_s
        pos += len(para) + 2
    transcript = "\n\n".join(p for p in re.split(r"\n\s*\n", text.strip()))
    return {"transcript": transcript, "words": words}


def embedded_story_text() -> tuple[str, str]:
    """The project's own story: (title, text to be spoken). Its header paragraph is not spoken."""
    raw = STORY_FILE.read_text(encoding="utf-8")
    header, body = raw.strip().split("\n\n", 1)
    return header.splitlines()[0].strip(), body


def load_story(story: str = EMBEDDED_STORY, *, narratives_dir: str | Path | None = None,
               alignment: str | Path | None = None) -> pd.DataFrame:
    """Word table of a story: the embedded one, an alignment file, or a Narratives story by name.

    ``narratives_dir`` is a folder holding ``stimuli/STORY/align.csv`` or
    ``stimuli/gentle/STORY/align.json`` (the data set's layout).
    """
    if alignment is not None:
        return read_alignment(alignment)
    if story == EMBEDDED_STORY:
        _, body = embedded_story_text()
        return read_alignment_json(data=synthesize_alignment(body))
    if narratives_dir is None:
        raise ParameterError("story", f"{story!r} is not the embedded story and no "
                             "narratives_dir was given",
                             expected=f"'{EMBEDDED_STORY}' or a narratives_dir with the story")
    return read_alignment(alignment_path(story, narratives_dir))


def alignment_path(story: str, narratives_dir: str | Path) -> Path:
    """The alignment file of a Narratives story in ``narratives_dir`` (Gentle JSON first, then
    the CSV); InputError naming the folder when there is none."""
    if not isinstance(story, str) or not STORY_NAME.fullmatch(story):
        raise ParameterError("story", f"{story!r} is not a plain name", expected=STORY_WORDS)
    root = Path(narratives_dir)
    for cand in (root / "stimuli" / "gentle" / story / "align.json",
                 root / "stimuli" / story / "align.json",
                 root / "stimuli" / story / "align.csv"):
        if cand.is_file():
            return cand
    raise InputError(root, f"no alignment for story {story!r}",
                     expected=f"stimuli/gentle/{story}/align.json or stimuli/{story}/align.csv")


def build_stimulus(story: str = EMBEDDED_STORY, *, tr_s: float = TR_S, n_trs: int | None = None,
                   start_offset_s: float = 0.0, rule: str = "offset",
                   narratives_dir: str | Path | None = None,
                   shuffle_seed: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """Word table with TR indices, TR table and the number of TRs (the grid's length).

    ``n_trs`` defaults to the smallest grid that covers every word plus 10 TRs (15 s) for the
    hemodynamic response of the last words to unfold.
    """
    words = load_story(story, narratives_dir=narratives_dir)
    if shuffle_seed is not None:
        words = shuffle_words(words, shuffle_seed)
    needed = n_trs_for(words, tr_s, start_offset_s)
    if n_trs is None:
        n_trs = needed + 10
    elif needed > n_trs:  # the words run past the grid (the scan): they are only context there
        late = int((np.floor((words["offset"].to_numpy() + start_offset_s) / tr_s + 1e-9)
                    >= n_trs).sum())
        log.warning("the story's words need %d TRs, more than the grid's %d (the scan's length): "
                    "%d word(s) after its end are only context", needed, n_trs, late)
    elif needed + 10 > n_trs:
        log.info("the grid stops at %d TRs (the scan's end), %d TR(s) after the last word's TR "
                 "instead of 10", n_trs, n_trs - needed)
    words = assign_trs(words, tr_s=tr_s, n_trs=n_trs, start_offset_s=start_offset_s, rule=rule)
    return words, tr_table(words, n_trs, tr_s), n_trs
