import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from llmbrain_utils.errors import ArtifactError
from llmbrain_utils.store import SIDECAR, Store, read_artifact


def writer(value):
    def build(out):
        np.save(out / "x.npy", np.arange(5) * value)
        return {"value": value}
    return build


def test_reuse_same_inputs_and_recompute_on_change(tmp_path):
    store = Store(tmp_path)
    calls = []

    def build(out):
        calls.append(1)
        np.save(out / "x.npy", np.ones(3))
    a = store.get_or_create("s", {"k": 1}, build)
    b = store.get_or_create("s", {"k": 1}, build)
    assert a.path == b.path and len(calls) == 1
    c = store.get_or_create("s", {"k": 2}, build)
    assert c.path != a.path and len(calls) == 2
    # a changed upstream artifact changes the key downstream
    d1 = store.get_or_create("t", {}, writer(1), inputs=[a])
    d2 = store.get_or_create("t", {}, writer(1), inputs=[c])
    assert d1.key != d2.key
    assert d1.info == {"value": 1}
    side = json.loads((a.path / SIDECAR).read_text())
    assert side["params"] == {"k": 1} and "numpy" in side["versions"] and side["files"]["x.npy"]["sha256"]


def test_failed_build_leaves_nothing(tmp_path):
    store = Store(tmp_path)

    def bad(out):
        np.save(out / "half.npy", np.ones(3))
        raise RuntimeError("boom")
    with pytest.raises(RuntimeError):
        store.get_or_create("s", {"k": 1}, bad)
    assert [p.name for p in (tmp_path / "s").iterdir() if not p.name.endswith(".lock")] == []


def test_damaged_artifact_is_never_reused(tmp_path):
    store = Store(tmp_path)
    a = store.get_or_create("s", {"k": 1}, writer(1))
    (a.path / "x.npy").write_bytes(b"garbage!")
    with pytest.raises(ArtifactError, match="x.npy"):
        read_artifact(a.path, verify_hashes=True)
    b = store.get_or_create("s", {"k": 1}, writer(1))
    np.testing.assert_array_equal(np.load(b.file("x.npy")), np.arange(5))
    (b.path / SIDECAR).unlink()
    with pytest.raises(ArtifactError, match="not a complete artifact"):
        read_artifact(b.path)


def test_sigkill_mid_build_leaves_no_complete_artifact(tmp_path):
    code = textwrap.dedent(f"""
        import time, numpy as np
        from llmbrain_utils.store import Store
        def build(out):
            np.save(out / "x.npy", np.ones(10))
            open("{tmp_path}/started", "w").close()
            time.sleep(60)
        Store("{tmp_path}/runs").get_or_create("s", {{"k": 1}}, build)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code])
    for _ in range(200):
        if (tmp_path / "started").exists():
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    store = Store(tmp_path / "runs")
    key, _ = store.key_for("s", {"k": 1})
    assert store.find("s", key) is None
    art = store.get_or_create("s", {"k": 1}, writer(2))
    np.testing.assert_array_equal(np.load(art.file("x.npy")), np.arange(5) * 2)


def _concurrent(root, value, q):
    def build(out):
        time.sleep(0.5)
        np.save(out / "x.npy", np.full(3, os.getpid()))
    art = Store(root).get_or_create("s", {"k": value}, build)
    q.put(int(np.load(art.file("x.npy"))[0]))


def test_two_processes_same_params_build_once(tmp_path):
    q = mp.get_context("fork").Queue()
    ps = [mp.get_context("fork").Process(target=_concurrent, args=(tmp_path, 1, q)) for _ in range(2)]
    for p in ps:
        p.start()
    for p in ps:
        p.join(30)
    results = [q.get(timeout=5) for _ in ps]
    assert results[0] == results[1]  # the second reused the first's artifact


def test_code_change_changes_every_key(tmp_path, monkeypatch):
    from llmbrain_utils import store as st

    store = Store(tmp_path)
    k1, _ = store.key_for("s", {"k": 1})
    monkeypatch.setattr(st, "_SOURCE_HASH", "0000000000000000")
    k2, spec = store.key_for("s", {"k": 1})
    assert k1 != k2 and spec["versions"]["llmbrain_utils"].endswith("+src.0000000000000000")


def test_verified_hashes_are_remembered_only_while_the_file_is_untouched(tmp_path, monkeypatch):
    """An artifact opened again in one process is not hashed again; any write to a file (even
    one that keeps its size and is given its old mtime back) makes it hashed again, and a file
    changed just before its hash is not remembered at all (coarse file clocks)."""
    import os

    from llmbrain_utils import store as st

    calls = []
    real = st.sha256_file
    monkeypatch.setattr(st, "sha256_file", lambda p, *a: calls.append(str(p)) or real(p, *a))
    monkeypatch.setattr(st, "_VERIFIED", {})
    a = Store(tmp_path).get_or_create("s", {"k": 1}, writer(1))
    f = a.path / "x.npy"
    old = f.stat().st_mtime_ns - 10**10
    os.utime(f, ns=(old, old))  # an old file, as the artifacts a run opens
    # utime itself changes ctime to now: the file is "racy" for _RACY_NS, so wait it out cheaply
    monkeypatch.setattr(st, "_RACY_NS", 0)
    calls.clear()
    for _ in range(3):
        read_artifact(a.path, verify_hashes=True)
    assert calls == [str(f)]  # hashed once, then remembered
    data = f.read_bytes()
    f.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # same size, other content
    os.utime(f, ns=(old, old))
    with pytest.raises(ArtifactError, match="SHA-256 differs"):
        read_artifact(a.path, verify_hashes=True)
    assert len(calls) == 2
    # a file written within _RACY_NS of its hash is hashed every time
    monkeypatch.setattr(st, "_RACY_NS", 10**12)
    f.write_bytes(data)
    calls.clear()
    read_artifact(a.path, verify_hashes=True)
    read_artifact(a.path, verify_hashes=True)
    assert len(calls) == 2
