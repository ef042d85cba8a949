import json

import numpy as np
import pandas as pd
import pytest

from llmbrain_utils import stimuli
from llmbrain_utils.errors import InputError, ParameterError


def write(tmp_path, text, name="align.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_embedded_story_grid_and_rate():
    words, trs, n_trs = stimuli.build_stimulus()
    assert 1000 <= len(words) <= 1300
    assert (words.offset >= words.onset).all() and words.onset.is_monotonic_increasing
    rate = 60 * len(words) / words.offset.max()
    assert 130 <= rate <= 170  # Narratives' pace
    # every word falls inside the grid, which leaves 10 TRs for the last HRF
    assert words.tr.max() == n_trs - 11
    assert trs.n_words.sum() == len(words)
    assert words.sentence_end.sum() > 50


def test_offset_rule_matches_kumar_et_al_for_pieman(narratives):
    words = stimuli.assign_trs(stimuli.read_alignment(narratives / "stimuli/pieman/align.csv"))
    peer = pd.read_csv(narratives / "stimuli/pieman/tr_tokens.csv").dropna(subset=["tokens"])
    ours = words.groupby("tr")["word"].agg(" ".join)
    same = np.mean([ours.get(int(r.tr), "") == r.tokens for r in peer.itertuples()])
    assert len(peer) > 200
    assert same >= 0.98


@pytest.mark.parametrize("story", ["pieman", "black", "slumlordreach", "milkywayoriginal"])
def test_every_word_kept_and_unplaced_words_interpolated(narratives, story):
    path = narratives / "stimuli" / story / "align.csv"
    raw = pd.read_csv(path, header=None)
    words = stimuli.read_alignment(path)
    assert len(words) == len(raw)
    assert words.interpolated.sum() == raw[2].isna().sum()
    assert words.onset.notna().all() and (words.offset >= words.onset).all()
    assert (np.diff(words.onset) >= -1e-3).all()  # the data set rounds to 1e-6 s


def test_interpolation_between_neighbours(tmp_path):
    p = write(tmp_path, "a,a,1.0,1.5\nb,,,\nc,,,\nd,d,2.5,3.0\ne,,,\n")
    w = stimuli.read_alignment(p)
    assert list(w.interpolated) == [False, True, True, False, True]
    np.testing.assert_allclose(w.onset[1:3], [1.5, 2.0])
    np.testing.assert_allclose(w.offset[1:3], [2.0, 2.5])
    assert w.onset[4] == pytest.approx(3.0)


def test_gentle_json_reader_with_unaligned_word_and_sentence_ends(tmp_path):
    data = {"transcript": "Hello there. Bye now!",
            "words": [{"word": "Hello", "alignedWord": "hello", "case": "success", "start": 0.5,
                       "end": 0.9, "startOffset": 0, "endOffset": 5},
                      {"word": "there", "case": "not-found-in-audio", "startOffset": 6, "endOffset": 11},
                      {"word": "Bye", "alignedWord": "bye", "case": "success", "start": 1.6,
                       "end": 1.9, "startOffset": 13, "endOffset": 16},
                      {"word": "now", "alignedWord": "now", "case": "success", "start": 1.9,
                       "end": 2.2, "startOffset": 17, "endOffset": 20}]}
    p = write(tmp_path, json.dumps(data), "align.json")
    w = stimuli.read_alignment(p)
    assert list(w.word) == ["Hello", "there", "Bye", "now"]
    assert list(w.sentence_end) == [False, True, False, True]
    assert w.interpolated.tolist() == [False, True, False, False]
    assert w.norm[1] == "<unk>"


def test_synthesized_alignment_roundtrip_through_gentle_reader():
    data = stimuli.synthesize_alignment("One, two three.\n\nFour five.")
    w = stimuli.read_alignment_json(data=data)
    assert list(w.word) == ["One", "two", "three", "Four", "five"]
    assert list(w.sentence_end) == [False, False, True, False, True]
    gaps = w.onset.to_numpy()[1:] - w.offset.to_numpy()[:-1]
    # comma pause after "One", plain gap after "two", sentence + paragraph pause after "three"
    np.testing.assert_allclose(gaps[:2], [0.04 + 0.25, 0.04], atol=1e-3)
    np.testing.assert_allclose(gaps[2], 0.04 + 0.45 + 1.2, atol=1e-3)


def test_tr_rules():
    w = pd.DataFrame({"word": ["a", "b"], "onset": [1.4, 2.9], "offset": [1.6, 3.0]})
    assert stimuli.assign_trs(w).tr.tolist() == [1, 2]
    assert stimuli.assign_trs(w, rule="onset").tr.tolist() == [0, 1]
    assert stimuli.assign_trs(w, start_offset_s=1.5).tr.tolist() == [2, 3]
    with pytest.raises(ParameterError, match="rule"):
        stimuli.assign_trs(w, rule="nearest")


def test_shuffled_words_keep_timings():
    words, _, _ = stimuli.build_stimulus()
    sh = stimuli.shuffle_words(words, seed=1)
    assert sorted(sh.word) == sorted(words.word) and list(sh.word) != list(words.word)
    np.testing.assert_array_equal(sh.onset, words.onset)


@pytest.mark.parametrize("text, problem", [
    ("", "no words"),
    ("a,a,1.0\n", "3 columns"),
    ("a,a,x,1.0\n", "non-numeric time"),
    ("a,a,-1,1.0\n", "invalid time"),
    ("a,a,2.0,1.0\n", "offset 1.0 before onset 2.0"),
    ("a,a,1.0,\n", "only one of onset/offset"),
    ("a,a,2.0,2.5\nb,b,1.0,1.2\n", "before the previous word's onset"),
    (",a,1.0,1.2\n", "empty word"),
    ("a,,,\nb,,,\n", "no word has a timing"),
])
def test_malformed_alignment_names_file_line_and_problem(tmp_path, text, problem):
    p = write(tmp_path, text)
    with pytest.raises(InputError) as e:
        stimuli.read_alignment(p)
    assert str(p) in str(e.value) and problem in str(e.value)
    if problem not in ("no words", "no word has a timing"):
        assert "line" in str(e.value)


def test_bad_json_and_missing_file(tmp_path):
    with pytest.raises(InputError, match="not valid JSON"):
        stimuli.read_alignment(write(tmp_path, "{oops", "align.json"))
    with pytest.raises(InputError, match="no 'words' list"):
        stimuli.read_alignment(write(tmp_path, '{"transcript": ""}', "align.json"))
    with pytest.raises(InputError, match="file not found"):
        stimuli.read_alignment(tmp_path / "nope.csv")
    with pytest.raises(InputError, match="unknown alignment format"):
        stimuli.read_alignment(write(tmp_path, "x", "align.txt2"))


def test_unknown_story_without_data_dir():
    with pytest.raises(ParameterError, match="narratives_dir"):
        stimuli.load_story("pieman")
