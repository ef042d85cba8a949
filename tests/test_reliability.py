"""Reliability of the artifact store under faults (issue 10).

Real subprocesses killed with SIGKILL in the middle of real stages (extraction, dictionary,
encoding) and of a real download; two processes running the same stage at once; cache reuse and
invalidation (story text, parameters, model weights, package versions); a full disk and an
unwritable store; and determinism: two runs of every stage (stimulus .. fbn) with the same seeds
into two fresh stores give files with the same SHA-256.

The stages run with tiny parameters (2 subjects, 12 mm, k = 8, ...) so the whole module takes
about a minute or two on 2 cores. The generic store (atomic build, lock, a killed toy build) is
tested in test_store.py; bad inputs in test_bad_inputs.py.
"""

from __future__ import annotations

import errno
import functools
import gc
import hashlib
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from llmbrain_utils import stages, stimuli
from llmbrain_utils import store as st
from llmbrain_utils.errors import ArtifactError, InputError, StoreError
from llmbrain_utils.store import SIDECAR, Store, read_artifact

REPO = Path(__file__).resolve().parents[1]
TINY = dict(n_subjects=2, resolution_mm=12, k=8, n_perm=10, fbn_perm=100, dict_iter=30, group_perm=10)
#: the stage functions the children run, in order, and their store names (the stage table's)
_RUN = ("stimulus", "extraction", "dictionary", "fmri", "encoding", "encoding_tests", "fbn")
STAGES = tuple(stages.TABLE[n].build.__name__ for n in _RUN)
STORE_NAMES = {stages.TABLE[n].build.__name__: n for n in _RUN}
#: the code's hash, fixed for every child process of this session, so that a source file edited
#: while the tests run (by a person) does not change the keys between the runs compared
SOURCE = st.source_hash()
#: sidecar fields that differ between two identical runs: seconds, dates, where the inputs lie
VOLATILE = ("timing", "inputs_paths", "host")

# A child process: runs the stages in order into a store; optionally holds (sleeps) inside one
# stage's build after it wrote part of its files, so the parent's SIGKILL lands mid-build.
CHILD = textwrap.dedent("""
    import json, os, sys, time
    from pathlib import Path
    cfg, hold_in, marker = json.loads(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    from llmbrain_utils import store
    store._SOURCE_HASH = sys.argv[5]  # every child of one test session runs "the same code"

    def hold(stage):
        (marker / f"{stage}.held").write_text(str(os.getpid()))
        time.sleep(600)

    if hold_in == "extraction":  # responses.npy written; an_table.tsv, stats.json not yet
        from llmbrain_utils import extract
        _orig = extract.extract_responses
        def _held(*a, **k):
            res = _orig(*a, **k)
            hold("extraction")
        extract.extract_responses = _held
    elif hold_in == "dictionary":  # every file written, the sidecar not yet
        from llmbrain_utils import dictionary as dl
        _orig = dl.learn_dictionary
        def _held(*a, **k):
            res = _orig(*a, **k)
            save = res.save
            def save_then_hold(out):
                save(out)
                hold("dictionary")
            res.save = save_then_hold
            return res
        dl.learn_dictionary = _held
    elif hold_in == "encoding":  # beta/t/r2/cv_r written, group maps not yet
        from llmbrain_utils import encoding as enc
        _orig = enc.group_maps
        def _held(*a, **k):
            hold("encoding")
        enc.group_maps = _held
    elif hold_in == "dictionary-once":  # two processes at once: record who builds, build slowly
        from llmbrain_utils import dictionary as dl
        _orig = dl.learn_dictionary
        def _logged(*a, **k):
            with open(marker / "builds.log", "a") as f:
                f.write(f"{os.getpid()}\\n")
            res = _orig(*a, **k)
            time.sleep(2.0)  # keep the lock long enough for the other process to wait on it
            return res
        dl.learn_dictionary = _logged

    from llmbrain_utils import stages
    keys = {}
    for name in sys.argv[4].split(","):
        art = getattr(stages, name)(cfg)
        keys[art.stage] = art.key
    print("KEYS " + json.dumps(keys), flush=True)
""")


def _env() -> dict:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONHASHSEED="0",
               PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""))
    return env


def _spawn(runs: Path, marker: Path, hold_in: str = "", names=STAGES, **extra) -> subprocess.Popen:
    marker.mkdir(parents=True, exist_ok=True)
    cfg = {**TINY, **extra, "runs_dir": str(runs)}
    return subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(cfg), hold_in, str(marker),
                             ",".join(names), SOURCE], env=_env(), cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen, timeout: float = 240) -> dict:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    line = [x for x in out.splitlines() if x.startswith("KEYS ")][-1]
    return json.loads(line[5:])


def _snapshot(root: Path) -> dict:
    """{stage/key: {file: sha256}} of every complete artifact, hashing the files on disk (not
    trusting the sidecar), and each sidecar without its volatile fields."""
    snap = {}
    for side in sorted(root.glob(f"*/*/{SIDECAR}")):
        art = side.parent
        if art.name.startswith("."):
            continue
        meta = json.loads(side.read_text())
        files = {p.relative_to(art).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                 for p in sorted(art.rglob("*")) if p.is_file() and p.name != SIDECAR}
        assert files == {k: v["sha256"] for k, v in meta["files"].items()}, art
        info = {k: v for k, v in meta["info"].items() if k not in ("timing", "timings")}
        sidecar = {k: v for k, v in meta.items() if k not in VOLATILE and k != "info"}
        snap[f"{art.parent.name}/{art.name}"] = {"files": files, "sidecar": sidecar, "info": info}
    return snap


def _leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob(".tmp-*")) + \
        sorted(str(p.relative_to(root)) for p in root.rglob(".trash-*"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Two uninterrupted runs of every stage into two fresh stores, at the same time."""
    base = tmp_path_factory.mktemp("reference")
    procs = [_spawn(base / f"runs{i}", base / f"m{i}") for i in (1, 2)]
    try:
        keys = [_finish(p) for p in procs]
    finally:
        for p in procs:  # never leave a child behind when one failed
            if p.poll() is None:
                p.kill()
                p.wait()
    return {"roots": [base / "runs1", base / "runs2"], "keys": keys}


# --------------------------------------------------------------------------- determinism
def test_two_runs_with_the_same_seeds_give_identical_artifacts(reference):
    a, b = (_snapshot(r) for r in reference["roots"])
    assert reference["keys"][0] == reference["keys"][1]
    assert sorted(a) == sorted(b) and len(a) == len(STAGES)
    for name in a:
        assert a[name]["files"] == b[name]["files"], name  # every file's SHA-256
        assert a[name]["sidecar"] == b[name]["sidecar"], name  # params, inputs, versions, files
        assert a[name]["info"] == b[name]["info"], name
    n_files = sum(len(v["files"]) for v in a.values())
    assert n_files >= 30  # the twin's NIfTIs, the maps, the tables: not a vacuous comparison


# --------------------------------------------------------------------------- SIGKILL per stage
def _kill_when_held(proc, marker: Path, stage: str, root: Path, store_stage: str) -> Path:
    held = marker / f"{stage}.held"
    t0 = time.time()
    try:
        while not held.exists():
            if proc.poll() is not None:
                raise AssertionError(f"child ended before {stage}: {proc.stderr.read()[-3000:]}")
            assert time.time() - t0 < 240, f"{stage} never started"
            time.sleep(0.02)
        tmps = sorted((root / store_stage).glob(".tmp-*"))
    finally:
        proc.send_signal(signal.SIGKILL)  # the real kill, mid-build (or cleanup on failure)
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    assert len(tmps) == 1 and any(p.is_file() for p in tmps[0].rglob("*")), tmps
    return tmps[0]


def _kill_chain(root: Path, marker: Path, holds: tuple[str, ...], ref_keys: dict,
                names=STAGES) -> dict:
    """Kill a child inside each stage of ``holds`` in turn, checking the store after each
    kill; then rerun the stages ``names`` uninterrupted and return their keys."""
    for stage in holds:
        proc = _spawn(root, marker, hold_in=stage)
        tmp = _kill_when_held(proc, marker, stage, root, stage)
        key = tmp.name.split("-")[1]  # .tmp-<key>-<random>
        assert key == ref_keys[stage]
        # the killed build's files are there, but nothing a reader takes as complete
        assert Store(root).find(stage, key) is None
        assert [p.name for p in (root / stage).iterdir() if not p.name.startswith(".")] == []
        with pytest.raises(ArtifactError, match="not a complete artifact"):
            read_artifact(tmp)
        for name in STAGES[:STAGES.index(stage)]:  # every earlier stage is complete
            s = STORE_NAMES.get(name, name)
            assert Store(root).find(s, ref_keys[s]) is not None, (stage, s)
    return _finish(_spawn(root, marker, names=names))  # the rerun, uninterrupted


def test_sigkill_in_the_middle_of_each_stage_then_rerun_equals_uninterrupted(reference, tmp_path):
    """Extraction killed in one store (rerun: stimulus and extraction); dictionary, then
    encoding, killed in another store that starts from an earlier run's stimulus, extraction and
    fMRI artifacts (rerun: every stage); the two stores at once."""
    from concurrent.futures import ThreadPoolExecutor

    src, ref_keys = reference["roots"][0], reference["keys"][0]
    ref = _snapshot(src)
    one, two = tmp_path / "one", tmp_path / "two"
    for name in ("stimulus", "extraction", "fmri"):
        shutil.copytree(src / name, two / "runs" / name)
    with ThreadPoolExecutor(2) as ex:
        jobs = [ex.submit(_kill_chain, one / "runs", one / "m", ("extraction",), ref_keys,
                          ("stimulus", "extraction")),
                ex.submit(_kill_chain, two / "runs", two / "m", ("dictionary", "encoding"), ref_keys)]
        keys = [j.result() for j in jobs]
    assert keys[0] == {s: ref_keys[s] for s in ("stimulus", "extraction")} and keys[1] == ref_keys
    for root, k in zip((one / "runs", two / "runs"), keys, strict=True):
        mine = _snapshot(root)  # same files (SHA-256), same sidecars as an uninterrupted run
        assert sorted(mine) == sorted(f"{s}/{key}" for s, key in k.items())
        assert mine == {name: ref[name] for name in mine}
        assert _leftovers(root) == []  # the rerun removed what the killed builds left


def test_two_processes_run_the_same_stage_at_once(reference, tmp_path):
    root, marker = tmp_path / "runs", tmp_path / "m"
    src = reference["roots"][0]
    for name in ("stimulus", "extraction", "fmri"):  # the inputs, as if an earlier run made them
        shutil.copytree(src / name, root / name)
    procs = [_spawn(root, marker, hold_in="dictionary-once", names=("dictionary",)) for _ in range(2)]
    keys = [_finish(p) for p in procs]
    builders = (marker / "builds.log").read_text().split()
    assert len(builders) == 1  # one built it, the other waited on the lock and reused it
    assert keys[0] == keys[1] == {"dictionary": reference["keys"][0]["dictionary"]}
    assert [p.name for p in (root / "dictionary").iterdir() if not p.name.startswith(".")] == \
        [keys[0]["dictionary"]]
    assert _leftovers(root) == []
    mine = _snapshot(root)[f"dictionary/{keys[0]['dictionary']}"]
    assert mine == _snapshot(src)[f"dictionary/{keys[0]['dictionary']}"]


# --------------------------------------------------------------------------- SIGKILL mid-download
CLEAN = ("derivatives/afni-nosmooth/sub-002/func/sub-002_task-pieman_space-MNI152NLin2009cAsym_"
         "res-native_desc-clean_bold.nii.gz")


class _SlowHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files; the first GET of a scan sends half of it, then stalls until released."""

    state: dict = {}

    def log_message(self, *args):
        pass

    def do_GET(self):
        s = type(self).state
        if not self.path.endswith(".nii.gz") or s["stalled"]:
            return super().do_GET()
        s["stalled"] = True
        data = (Path(s["root"]) / self.path.lstrip("/")).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.wfile.flush()
        s["half_sent"].set()
        s["release"].wait(60)
        try:
            self.wfile.write(data[len(data) // 2:])
        except OSError:
            pass


@pytest.fixture()
def slow_server(tmp_path):
    root = tmp_path / "remote"
    rng = np.random.default_rng(0)
    img = nib.Nifti1Image(rng.standard_normal((4, 4, 3, 300)).astype(np.float32),
                          np.diag([4.0, 4.0, 4.0, 1.0]))
    img.header.set_xyzt_units("mm", "sec")
    img.header.set_zooms((4.0, 4.0, 4.0, 1.5))
    (root / CLEAN).parent.mkdir(parents=True)
    img.to_filename(root / CLEAN)
    state = {"root": str(root), "stalled": False, "half_sent": threading.Event(),
             "release": threading.Event()}
    handler = type("H", (_SlowHandler,), {"state": state})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                            functools.partial(handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield {"url": f"http://127.0.0.1:{httpd.server_address[1]}", "file": root / CLEAN,
           "state": state, "mask": nib.Nifti1Image(np.ones((4, 4, 3), np.uint8), img.affine)}
    state["release"].set()
    httpd.shutdown()
    httpd.server_close()


def test_sigkill_mid_download_then_rerun_equals_uninterrupted(slow_server, tmp_path):
    from llmbrain_utils import fetch, fmri

    dest = tmp_path / "cache"
    code = (f"from llmbrain_utils import fetch; fetch.fetch('pieman', '002', dest={str(dest)!r}, "
            f"base_url={slow_server['url']!r}, progress=False, retries=0)")
    proc = subprocess.Popen([sys.executable, "-c", code], env=_env(), cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert slow_server["state"]["half_sent"].wait(120), proc.stderr.read() if proc.poll() else ""
    func = (dest / CLEAN).parent
    t0 = time.time()
    while not (func.is_dir() and any(func.iterdir())):  # pooch's temporary file
        assert time.time() - t0 < 30
        time.sleep(0.02)
    time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    slow_server["state"]["release"].set()
    partial = [p for p in func.iterdir()]
    assert partial and not (dest / CLEAN).exists()  # only the temporary file, under another name
    # nothing takes the partial file: the loader does not find the scan, no hash was recorded
    with pytest.raises(InputError, match="sub-002's scan not found"):
        fmri.load_dataset(dest, "pieman", "002", slow_server["mask"])
    db = dest / fetch.HASH_DB
    assert not db.exists() or CLEAN not in json.loads(db.read_text())
    # the rerun downloads the whole file; it equals the server's and an uninterrupted fetch's
    got = fetch.fetch("pieman", "002", dest=dest, base_url=slow_server["url"], progress=False)
    other = fetch.fetch("pieman", "002", dest=tmp_path / "other", base_url=slow_server["url"],
                        progress=False)
    sha = fetch.sha256(slow_server["file"])
    assert got == [dest / CLEAN] and fetch.sha256(got[0]) == fetch.sha256(other[0]) == sha
    assert json.loads(db.read_text())[CLEAN] == sha
    data, subs = fmri.load_dataset(dest, "pieman", "002", slow_server["mask"])
    assert subs == ["002"] and data.shape == (1, 300, 48)


# --------------------------------------------------------------------------- cache keys
def _align(path: Path, words=("the", "cat", "sat")) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{w},{w},{1.0 + i},{1.4 + i}\n" for i, w in enumerate(words)))


def test_story_text_change_makes_a_new_key_and_same_text_reuses(tmp_path):
    nar = tmp_path / "nar"
    align = nar / "stimuli" / "tale" / "align.csv"
    _align(align)
    cfg = {"story": "tale", "narratives_dir": str(nar), "runs_dir": str(tmp_path / "runs")}
    a = stages.stimulus(cfg)
    created = a.meta["timing"]["created"]
    _align(align)  # rewritten with the same text: reused, not rebuilt
    b = stages.stimulus(cfg)
    assert b.path == a.path and b.meta["timing"]["created"] == created
    _align(align, ("the", "dog", "sat"))  # one word changed in place, same folder and name
    c = stages.stimulus(cfg)
    assert c.key != a.key and "dog" in stages.read_words(c).word.tolist()
    # the embedded story: its text's hash is part of the key
    cfg0 = {"runs_dir": str(tmp_path / "runs")}
    k0 = stages.stimulus(cfg0).key
    assert stages.stimulus(cfg0).key == k0
    edited = tmp_path / "story.txt"
    edited.write_text(stimuli.STORY_FILE.read_text(encoding="utf-8").replace(" the ", " a ", 1),
                      encoding="utf-8")
    mp = pytest.MonkeyPatch()
    try:
        mp.setattr(stimuli, "STORY_FILE", edited)
        k1 = stages.stimulus(cfg0).key
    finally:
        mp.undo()
    assert k1 != k0


def test_parameter_and_package_version_changes_make_new_keys(tmp_path, monkeypatch):
    cfg = {"runs_dir": str(tmp_path / "runs")}
    base = stages.stimulus(cfg)
    assert stages.stimulus({**cfg, "tr_s": 2.0}).key != base.key
    assert stages.stimulus({**cfg, "shuffle_words": True}).key != base.key
    assert stages.stimulus({**cfg, "shuffle_words": True, "seed": 1}).key != \
        stages.stimulus({**cfg, "shuffle_words": True}).key
    real = st.package_versions

    def bumped(names):
        v = real(names)
        if "pandas" in v:
            v["pandas"] += ".post1"  # a package release that may change results
        return v

    monkeypatch.setattr(st, "package_versions", bumped)
    again = stages.stimulus(cfg)
    assert again.key != base.key and again.meta["versions"]["pandas"].endswith(".post1")
    monkeypatch.setattr(st, "package_versions", real)
    assert stages.stimulus(cfg).path == base.path  # back to the same versions: reused


class _Key(Exception):
    pass


def test_model_weights_change_the_extraction_key(tmp_path, monkeypatch):
    """Trained vs untrained vs another untrained seed: three keys; the same weights: one key."""
    seen = []
    real = Store.get_or_create

    def spy(self, stage, params, build, **kw):
        if stage != "extraction":
            return real(self, stage, params, build, **kw)
        key, _ = self.key_for(stage, params, kw.get("inputs", ()), kw.get("packages", st.DEFAULT_PACKAGES))
        seen.append((key, params["weights_sha256"]))
        raise _Key  # the key is all we need: no extraction is run

    monkeypatch.setattr(Store, "get_or_create", spy)
    cfg = {"runs_dir": str(tmp_path / "runs")}
    for change in ({}, {}, {"untrained": True}, {"untrained": True, "seed": 1},
                   {"untrained": True}):
        with pytest.raises(_Key):
            stages.extraction({**cfg, **change})
    keys = [k for k, _ in seen]
    weights = [w for _, w in seen]
    assert keys[0] == keys[1] and weights[0] == weights[1]  # unchanged: reused
    assert len({keys[0], keys[2], keys[3]}) == 3 and len({weights[0], weights[2], weights[3]}) == 3
    assert keys[4] == keys[2]  # the same seeded untrained weights again: the same key


# --------------------------------------------------------------------------- full disk, no store
def test_store_under_a_regular_file_is_a_clear_error(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the store's parent folder should be")
    runs = blocker / "runs"
    with pytest.raises(StoreError) as e:
        stages.stimulus({"runs_dir": str(runs)})
    msg = str(e.value)
    assert msg.startswith(f"artifact store {runs}:") and "stimulus/" in msg
    assert "Not a directory" in msg or "File exists" in msg
    assert isinstance(e.value, OSError) and isinstance(e.value, ArtifactError)
    assert blocker.read_text().startswith("a file")  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not-a-folder"]


def test_disk_full_during_a_build_is_a_clear_error_and_leaves_nothing(tmp_path):
    store = Store(tmp_path / "runs")

    def build(out):
        np.save(out / "half.npy", np.ones(10))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(out / "next.npy"))

    with pytest.raises(StoreError, match=r"artifact store .*runs: cannot write the artifact "
                                         r"s/\w+: No space left on device .*next.npy") as e:
        store.get_or_create("s", {"k": 1}, build)
    assert e.value.errno == errno.ENOSPC
    assert [p.name for p in (tmp_path / "runs" / "s").iterdir() if not p.name.endswith(".lock")] == []

    # an OSError about a file outside the store is the build's own error, not the store's
    def bad_input(out):
        open(tmp_path / "no-such-input.txt")

    with pytest.raises(FileNotFoundError) as e2:
        store.get_or_create("s", {"k": 2}, bad_input)
    assert not isinstance(e2.value, StoreError)


@pytest.fixture()
def small_tmpfs():
    import tempfile

    mnt = Path(tempfile.mkdtemp(prefix="llmbrain-tmpfs-"))  # outside tmp_path: pytest cleans that
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        mnt.rmdir()
        pytest.skip(f"cannot mount a 2 MB tmpfs here ({r.stderr.strip() or r.returncode}); the "
                    "injected ENOSPC test covers the same path")
    yield mnt
    gc.collect()
    if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
    shutil.rmtree(mnt, ignore_errors=True)


def test_real_full_disk_on_a_2mb_tmpfs(small_tmpfs):
    runs = small_tmpfs / "runs"
    cfg = {**TINY, "runs_dir": str(runs)}
    stim = stages.stimulus(cfg)  # small: fits
    with pytest.raises(StoreError) as e:
        stages.fmri_data(cfg)  # the twin's NIfTIs and bold.npy need more than 2 MB
    msg, code = str(e.value), e.value.errno
    del e  # its traceback holds the failed writer's open (already unlinked) files
    gc.collect()
    assert msg.startswith(f"artifact store {runs}: cannot write the artifact fmri/")
    assert "No space left on device" in msg and code == errno.ENOSPC
    assert _leftovers(runs) == []
    assert [p.name for p in (runs / "fmri").iterdir() if not p.name.startswith(".")] == []
    used = shutil.disk_usage(small_tmpfs).used
    assert used < 512 * 1024, used  # the partial build's megabytes were removed
    assert Store(runs).find("stimulus", stim.key) is not None  # what was complete stays complete
