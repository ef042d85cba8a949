"""Progress bars inside the stages (#20): on in a notebook's kernel and on a terminal, off in
logs and pipes, forced by LLMBRAIN_PROGRESS; the stages that compute show them, a cache hit
shows none, and no bar changes a result."""

import sys

import numpy as np
import pytest

from llmbrain_utils import encoding as enc, progress, stages

TINY = dict(n_subjects=2, resolution_mm=12, k=8, n_perm=10, fbn_perm=100, dict_iter=30, group_perm=10)


@pytest.mark.parametrize("flag, want", [("0", False), ("false", False), ("off", False), ("", False),
                                        ("1", True), ("yes", True)])
def test_the_switch_forces_bars_on_or_off(monkeypatch, flag, want):
    monkeypatch.setenv("LLMBRAIN_PROGRESS", flag)
    assert progress.enabled() is want


def test_bars_show_in_a_kernel_and_on_a_terminal_not_in_a_pipe(monkeypatch):
    monkeypatch.delenv("LLMBRAIN_PROGRESS", raising=False)

    class Pipe:
        def isatty(self):
            return False

        def write(self, s):
            pass

        def flush(self):
            pass

    class Terminal(Pipe):
        def isatty(self):
            return True

    Kernel = type("OutStream", (Pipe,), {"__module__": "ipykernel.iostream"})
    for stream, want in ((Pipe(), False), (Terminal(), True), (Kernel(), True)):
        monkeypatch.setattr(sys, "stderr", stream)
        assert progress.enabled() is want, type(stream).__name__


def test_a_bar_writes_to_stderr_only_when_shown(capsys):
    assert list(progress.bar(range(3), "steps", show=True)) == [0, 1, 2]
    err = capsys.readouterr().err
    assert "steps" in err and "3/3" in err
    assert list(progress.bar(range(3), "steps", show=False)) == [0, 1, 2]
    assert capsys.readouterr().err == ""


def test_the_encoding_bar_leaves_the_result_unchanged(capsys):
    rng = np.random.default_rng(0)
    D = rng.standard_normal((60, 3))
    Y = rng.standard_normal((2, 60, 5))
    a = enc.encode_subjects(D, Y, cv_model="ridge", n_folds=3, trim=1, progress=True)
    assert "encoding subjects" in capsys.readouterr().err
    b = enc.encode_subjects(D, Y, cv_model="ridge", n_folds=3, trim=1, progress=False)
    assert capsys.readouterr().err == ""
    for name in ("beta", "t", "r2", "cv_r"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name


def test_stages_that_compute_show_their_bars_and_a_cache_hit_shows_none(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("LLMBRAIN_PROGRESS", "1")
    cfg = {**TINY, "runs_dir": str(tmp_path / "runs")}
    stages.encoding_tests(cfg)
    err = capfd.readouterr().err
    for desc in ("extract", "dictionary loadings", "encoding blocks", "permutation tests", "group test"):
        assert desc in err, f"no {desc!r} bar in: {err[-2000:]}"
    stages.encoding_tests(cfg)
    assert "%|" not in capfd.readouterr().err  # everything reused: nothing to show
