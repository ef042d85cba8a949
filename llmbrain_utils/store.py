"""The artifact store: every stage reads its inputs from, and writes its outputs to, one directory.

Layout: ``ROOT/<stage>/<key>/`` holds the artifact's files and ``artifact.json``, its sidecar
(stage, parameters, input artifacts' keys, package versions, file sizes and SHA-256, timing).
The key is a hash of the stage name, its canonical parameters, the keys of its input artifacts
and the versions of the packages that change its result: a rerun with the same inputs reuses
the artifact, any change makes a new one.

Writes are atomic: an artifact is built in a temporary sibling directory, every file is
fsynced, the sidecar is written last, and the directory is renamed into place. A reader takes
an artifact only when its sidecar exists and its files match the sidecar (sizes always, SHA-256
on request), so a killed run never leaves something that looks complete. A per-key file lock
makes two processes building the same artifact wait for each other; the second reuses the
first's result, and the holder of the lock removes what a killed build of the same key left.
A store that cannot be written (full disk, read-only, a path that is a file) raises
:class:`~llmbrain_utils.errors.StoreError` naming the store and the reason, and keeps nothing.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from collections.abc import Mapping
from typing import Any, Callable, Iterable

import numpy as np

from .errors import ArtifactError, LLMBrainError, StoreError

log = logging.getLogger(__name__)

SIDECAR = "artifact.json"
#: OS errors that always mean the store cannot be written (whatever file they name)
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}
DEFAULT_PACKAGES = ("llmbrain_utils", "numpy", "scipy")


def default_root() -> Path:
    """The store directory: ``$LLMBRAIN_RUNS`` or ``./runs``."""
    return Path(os.environ.get("LLMBRAIN_RUNS", "runs")).resolve()


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):  # a dict or a run's config.Params
        return {str(k): _jsonable(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, float) and obj != obj:  # NaN
        return "NaN"
    return obj


def canonical_json(obj: Any) -> str:
    """Deterministic JSON of parameters (sorted keys, no whitespace)."""
    return json.dumps(_jsonable(obj), sort_keys=True, separators=(",", ":"))


def hash_params(obj: Any, n: int = 16) -> str:
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:n]


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes (``hashlib.file_digest``): the package's one file hash."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


#: (path, device, inode, size, mtime_ns, ctime_ns) -> SHA-256 of the files this process has
#: hashed: an artifact opened again (every stage opens its inputs, and theirs) is not hashed again
#: while its files are untouched. A file changed less than _RACY_NS before it was hashed is not
#: remembered (file times tick coarsely; git's "racy" rule), so a write right after a hash is
#: still seen.
_VERIFIED: dict[tuple, str] = {}
_RACY_NS = 2_000_000_000


def sha256_verified(path: str | os.PathLike) -> str:
    """:func:`sha256_file`, remembered per process while the file's identity, size and times
    are unchanged."""
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    digest = _VERIFIED.get(key)
    if digest is None:
        digest = sha256_file(path)
        if time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) > _RACY_NS:
            _VERIFIED[key] = digest
    return digest


_SOURCE_HASH: str | None = None
#: the modules whose code decides what an artifact holds (not plotting, the CLI or the runner)
_RESULT_MODULES = ("config", "stimuli", "models", "extract", "dictionary", "fmri", "fetch", "compare",
                   "encoding", "fbn", "explorer", "stages", "store", "surface", "stats", "devices",
                   "_io", "_validation")


def _module_files(pkg: Path, name: str) -> list[Path]:
    """The source files of package module ``name``: ``name.py``, or every ``.py`` under the
    subpackage ``name/`` (sorted), so a module split into a subpackage stays in the key whole."""
    if (pkg / name).is_dir():
        return sorted((pkg / name).rglob("*.py"))
    return [pkg / f"{name}.py"]


def source_hash() -> str:
    """SHA-256 (16 hex) of the sources that compute artifacts, and of the manifests: a code
    change that may change results changes every artifact's key, so a cache is never reused
    across it."""
    global _SOURCE_HASH
    if _SOURCE_HASH is None:
        pkg = Path(__file__).resolve().parent
        h = hashlib.sha256()
        files = [f for m in _RESULT_MODULES for f in _module_files(pkg, m)] + sorted(
            (pkg.parent / "data_manifests").glob("*.yaml"))
        for p in files:
            h.update(p.relative_to(pkg.parent).as_posix().encode())
            h.update(p.read_bytes())
        _SOURCE_HASH = h.hexdigest()[:16]
    return _SOURCE_HASH


def package_versions(names: Iterable[str]) -> dict[str, str]:
    out = {}
    for name in names:
        if name == "llmbrain_utils":
            from . import __version__
            out[name] = f"{__version__}+src.{source_hash()}"
            continue
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def _fsync_dir(path: Path) -> None:
    dir_fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _fsync_tree(path: Path) -> None:
    for p in sorted(path.rglob("*")):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
    dir_fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_atomic(path: Path, write: Callable[[Any], None], *, newline: str | None = None) -> None:
    """Write ``path`` through a temporary sibling: ``write(file)`` fills it, then fsync and
    rename; on any failure the temporary file is removed and ``path`` is untouched."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline=newline) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON to ``path`` through a temporary file, fsync and rename."""
    write_atomic(path, lambda f: json.dump(_jsonable(obj), f, indent=2, sort_keys=True))


@dataclass
class Artifact:
    """A complete artifact in the store: its directory and its sidecar."""

    path: Path
    meta: dict = field(repr=False)

    @property
    def key(self) -> str:
        return self.meta["key"]

    @property
    def stage(self) -> str:
        return self.meta["stage"]

    @property
    def params(self) -> dict:
        return self.meta["params"]

    @property
    def info(self) -> dict:
        """What the build returned (metrics, counts) besides its files."""
        return self.meta.get("info", {})

    def file(self, name: str) -> Path:
        p = self.path / name
        if name not in self.meta["files"]:
            raise ArtifactError(f"{self.path}: artifact has no file '{name}' "
                                f"(it has: {', '.join(sorted(self.meta['files']))})")
        return p

    def verify(self, hashes: bool = True) -> None:
        """Check every file against the sidecar; raise ArtifactError naming the first mismatch."""
        for name, rec in self.meta["files"].items():
            p = self.path / name
            if not p.is_file():
                raise ArtifactError(f"{p}: missing (listed in {self.path / SIDECAR})")
            if p.stat().st_size != rec["size"]:
                raise ArtifactError(f"{p}: size {p.stat().st_size} != {rec['size']} in sidecar")
            if hashes and sha256_verified(p) != rec["sha256"]:
                raise ArtifactError(f"{p}: SHA-256 differs from its sidecar")


def read_artifact(path: str | os.PathLike, *, verify_hashes: bool = False) -> Artifact:
    """Open a complete artifact directory; raise ArtifactError if it is not complete."""
    path = Path(path)
    side = path / SIDECAR
    if not side.is_file():
        raise ArtifactError(f"{path}: no {SIDECAR}; not a complete artifact")
    try:
        meta = json.loads(side.read_text())
    except json.JSONDecodeError as e:
        raise ArtifactError(f"{side}: unreadable sidecar ({e})") from e
    art = Artifact(path, meta)
    art.verify(hashes=verify_hashes)
    return art


class Store:
    """A directory of artifacts keyed by the hash of their inputs.

    Parameters
    ----------
    root : path, optional
        Store directory; default ``$LLMBRAIN_RUNS`` or ``./runs``.
    verify_hashes : bool
        Check SHA-256 of every file when an existing artifact is reused (sizes are always checked).
    """

    def __init__(self, root: str | os.PathLike | None = None, *, verify_hashes: bool = True):
        self.root = Path(root).resolve() if root is not None else default_root()
        self.verify_hashes = verify_hashes

    def key_for(self, stage: str, params: dict, inputs: Iterable[Artifact] = (),
                packages: Iterable[str] = DEFAULT_PACKAGES) -> tuple[str, dict]:
        spec = {
            "stage": stage,
            "params": _jsonable(params),
            "inputs": {a.stage + ":" + a.key: a.key for a in inputs},
            "versions": package_versions(packages),
        }
        return hash_params(spec), spec

    def path_for(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def _is_write_error(self, e: OSError, tmp: Path | None) -> bool:
        """Whether an OSError raised while building is the store's (disk full, read-only, a
        path inside the store), not a bad input the build read."""
        if e.errno in _WRITE_ERRNOS:
            return True
        names = [n for n in (e.filename, getattr(e, "filename2", None)) if n]
        roots = [str(self.root)] + ([str(tmp)] if tmp is not None else [])
        paths = [str(Path(os.fsdecode(n)).absolute()) for n in names]
        return any(q == r or q.startswith(r + os.sep) for q in paths for r in roots)

    def _write_error(self, e: OSError, stage: str, key: str, what: str) -> StoreError:
        reason = e.strerror or str(e)
        where = f" ({os.fsdecode(e.filename)})" if e.filename else ""
        return StoreError(self.root, f"{what} {stage}/{key}: {reason}{where}; nothing was kept",
                          errno=e.errno,
                          expected="a writable folder with free space (runs_dir / $LLMBRAIN_RUNS)")

    @staticmethod
    def _remove_stale(folder: Path, key: str) -> None:
        """Remove what a killed build of ``key`` left (``.tmp-KEY-*``, ``.trash-KEY-*``).

        Called with the key's lock held: every live builder of ``key`` holds that lock, so these
        directories belong to dead processes."""
        for pattern in (f".tmp-{key}-*", f".trash-{key}-*"):
            for p in folder.glob(pattern):
                log.warning("removing %s, left by an interrupted build", p)
                shutil.rmtree(p, ignore_errors=True)

    def find(self, stage: str, key: str) -> Artifact | None:
        path = self.path_for(stage, key)
        if not (path / SIDECAR).is_file():
            return None
        try:
            return read_artifact(path, verify_hashes=self.verify_hashes)
        except ArtifactError as e:
            log.warning("discarding a damaged artifact: %s", e)
            return None

    def get_or_create(self, stage: str, params: dict, build: Callable[[Path], dict | None], *,
                      inputs: Iterable[Artifact] = (), packages: Iterable[str] = DEFAULT_PACKAGES,
                      force: bool = False) -> Artifact:
        """Return the artifact of ``stage`` for these parameters and inputs, building it if needed.

        ``build(tmpdir)`` writes the artifact's files into ``tmpdir`` and may return a dict of
        information (metrics, counts) that goes into the sidecar under ``info``. It runs at most
        once per key at a time across processes (file lock); if it raises, nothing is left.
        """
        from filelock import FileLock

        inputs = list(inputs)
        key, spec = self.key_for(stage, params, inputs, packages)
        final = self.path_for(stage, key)
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            lock = FileLock(str(final.parent / f".{key}.lock"))
            lock.acquire()
        except OSError as e:
            raise self._write_error(e, stage, key, "cannot create its folder or lock") from e
        try:
            if not force:
                found = self.find(stage, key)
                if found is not None:
                    log.info("reusing %s/%s", stage, key)
                    return found
            self._remove_stale(final.parent, key)
            tmp = None
            try:
                tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".tmp-{key}-"))
                t0 = time.perf_counter()
                info = build(tmp) or {}
                elapsed = time.perf_counter() - t0
                files = {}
                for p in sorted(tmp.rglob("*")):
                    if p.is_file():
                        rel = p.relative_to(tmp).as_posix()
                        files[rel] = {"size": p.stat().st_size, "sha256": sha256_file(p)}
                if not files:
                    raise ArtifactError(f"stage '{stage}' wrote no file")
                meta = dict(spec, key=key, files=files, info=_jsonable(info),
                            inputs_paths={a.stage: str(a.path) for a in inputs},
                            timing={"build_s": round(elapsed, 3),
                                    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
                            host={"python": platform.python_version(),
                                  "machine": platform.machine()})
                _fsync_tree(tmp)
                write_json_atomic(tmp / SIDECAR, meta)
                if final.exists():  # damaged or forced: replace
                    trash = final.parent / f".trash-{key}-{os.getpid()}"
                    os.replace(final, trash)
                    shutil.rmtree(trash, ignore_errors=True)
                os.replace(tmp, final)
                _fsync_dir(final.parent)  # the rename itself survives a crash
            except BaseException as e:
                if tmp is not None:
                    shutil.rmtree(tmp, ignore_errors=True)
                if isinstance(e, OSError) and not isinstance(e, LLMBrainError) \
                        and self._is_write_error(e, tmp):
                    raise self._write_error(e, stage, key, "cannot write the artifact") from e
                raise
        finally:
            lock.release()
        return read_artifact(final, verify_hashes=False)
