import json
import re

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


def test_byte_order_mark_is_dropped_and_other_encodings_are_one_line(tmp_path):
    p = tmp_path / "align.csv"
    p.write_bytes("\ufeffthe,the,1.0,1.2\ncat,cat,1.3,1.6\n".encode("utf-8"))
    assert list(stimuli.read_alignment(p).word) == ["the", "cat"]
    j = tmp_path / "align.json"
    j.write_bytes(b"\xef\xbb\xbf" + json.dumps({"words": [{"word": "hi", "start": 1.0, "end": 1.2}]}).encode())
    assert list(stimuli.read_alignment(j).word) == ["hi"]
    p.write_bytes("the,the,1.0,1.2\ncaf\xe9,cafe,1.3,1.6\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"align\.csv, line 2: alignment is not UTF-8 \(byte 0xe9") as e:
        stimuli.read_alignment(p)
    assert "\n" not in str(e.value)
    j.write_bytes(json.dumps({"words": [{"word": "hi", "start": 1.0, "end": 1.2}]}).encode("utf-16"))
    with pytest.raises(InputError, match=r"align\.json: alignment is UTF-16"):
        stimuli.read_alignment(j)


def test_interpolated_word_stays_between_its_neighbours(tmp_path):
    # a's offset (3.0) is after c's onset (2.0): b must still start before c
    w = stimuli.read_alignment(write(tmp_path, "a,a,1.0,3.0\nb,,,\nc,c,2.0,2.5\n"))
    assert list(w.interpolated) == [False, True, False]
    assert w.onset.is_monotonic_increasing and w.offset[1] <= w.onset[2]
    w = stimuli.read_alignment(write(tmp_path, "a,a,1.0,3.0\nb,,,\nb2,,,\nc,c,2.0,2.5\n"))
    assert w.onset.is_monotonic_increasing and w.offset[2] <= w.onset[3]


@pytest.mark.parametrize("text", [
    "a,a,1000,1300\nb,b,1400,1650\nc,c,1700,2100\n",  # a short story: word durations of minutes
    "".join(f"w{i},w{i},{t},{t + 0.3}\n" for i, t in enumerate(range(1, 600_000, 20_000))),  # days
])
def test_millisecond_times_are_refused(tmp_path, text):
    with pytest.raises(InputError, match=r"implausible times: .*look like milliseconds"):
        stimuli.read_alignment(write(tmp_path, text))


def test_story_name_is_a_plain_label(tmp_path):
    for bad in ("../evil", "/etc", "a/b", "", ".hidden", "-x"):
        with pytest.raises(ParameterError, match="not a plain name"):
            stimuli.alignment_path(bad, tmp_path)


def test_grid_shorter_than_the_words_is_noted(tmp_path, caplog):
    nar = tmp_path / "nar" / "stimuli" / "tale"
    nar.mkdir(parents=True)
    (nar / "align.csv").write_text("a,a,1.0,1.2\nb,b,5.0,5.3\nc,c,9.0,9.4\n")
    with caplog.at_level("INFO", logger="llmbrain_utils.stimuli"):
        words, trs, n_trs = stimuli.build_stimulus("tale", narratives_dir=tmp_path / "nar", n_trs=4)
    assert n_trs == 4 and len(trs) == 4 and words.tr.max() == 6
    assert "the story's words need 7 TRs, more than the grid's 4" in caplog.text
    assert "1 word(s) after its end" in caplog.text  # c (TR 6); b ends in TR 3
    caplog.clear()
    with caplog.at_level("INFO", logger="llmbrain_utils.stimuli"):
        stimuli.build_stimulus("tale", narratives_dir=tmp_path / "nar", n_trs=10)
    assert "the grid stops at 10 TRs" in caplog.text


def test_cli_run_is_quiet(tmp_path):
    """No kernel noise on stderr (ipykernel's TCP note, the shutdown's KeyboardInterrupt) and
    papermill's INFO lines only with --verbose."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    base = [sys.executable, "-m", "llmbrain_utils", "run", "--only", "stimulus", "--force",
            "--runs-dir", str(tmp_path / "runs"), "--executed-dir", str(tmp_path / "executed")]
    r = subprocess.run(base, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stderr.strip() == "", r.stderr
    assert "stimulus: done" in r.stdout
    r = subprocess.run(base + ["--verbose"], capture_output=True, text=True, env=env, cwd=tmp_path,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "INFO papermill: Executing notebook with kernel" in r.stderr
    assert "without encryption" not in r.stderr and "KeyboardInterrupt" not in r.stderr
    # progress over the notebook's cells where someone watches (a terminal; here forced on)
    env1 = {**env, "LLMBRAIN_PROGRESS": "1"}
    r = subprocess.run(base, capture_output=True, text=True, env=env1, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert re.search(r"stimulus: +\d+%.*cell", r.stderr), r.stderr[-500:]
    assert "without encryption" not in r.stderr and "KeyboardInterrupt" not in r.stderr
