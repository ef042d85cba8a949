"""Download Narratives (OpenNeuro ds002345) files per story and subject, with checksums.

What exists and where is described by ``data_manifests/narratives.yaml`` (tasks, stories,
excluded scans, the relative path of every derivative *kind*). :func:`fetch` mirrors the
data set's real layout under a cache directory, so :func:`llmbrain_utils.fmri.load_dataset`
reads the cache as it would read a full copy of the data set.

Integrity rules:

* a download goes to a temporary file first (pooch) and only a complete file is renamed into
  place, so an interrupted download never looks complete;
* a file with a known sha256 (the manifest's ``checksums``, ``known_hashes=`` or the hash
  recorded at its first download in ``DEST/.llmbrain-sha256.json``) that fails the check is
  deleted and reported, never returned;
* a gzip file without a known hash is decompressed once after download (its CRC checked), so a
  truncated file is caught before anyone uses it.
"""

from __future__ import annotations

import functools
import gzip
import json
import logging
import os
import re
import time
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path

from ._io import read_yaml
from .store import sha256_file
from .errors import InputError, ParameterError

log = logging.getLogger(__name__)

MANIFEST = Path(__file__).resolve().parents[1] / "data_manifests" / "narratives.yaml"
DEFAULT_BASE_URL = "https://s3.amazonaws.com/openneuro.org/ds002345"
HASH_DB = ".llmbrain-sha256.json"
_SUB = re.compile(r"^(?:sub-)?(\d{1,3})$")


# --------------------------------------------------------------------------- manifest
@functools.lru_cache(maxsize=4)
def _load_manifest(path: str) -> dict:

    p = Path(path)
    data = read_yaml(p, what="manifest", expected="data_manifests/narratives.yaml")
    for key in ("kinds", "tasks"):
        if not isinstance(data, dict) or not isinstance(data.get(key), dict):
            raise InputError(p, f"missing section '{key}'", field=key, expected="a mapping")
    return data


def load_manifest(path: str | Path | None = None) -> dict:
    """Read the Narratives manifest (``data_manifests/narratives.yaml`` by default).

    Parameters
    ----------
    path : str or Path, optional
        Another manifest with the same sections (``kinds``, ``tasks``, ``checksums``).

    Returns
    -------
    dict
        The parsed manifest (cached; do not modify it).
    """
    return _load_manifest(str(Path(path or MANIFEST).resolve()))


def data_home(dest: str | Path | None = None) -> Path:
    """The local data directory: ``dest``, else ``$LLMBRAIN_DATA``, else ``~/.cache/llmbrain/narratives``."""
    if dest is not None:
        return Path(dest).expanduser()
    env = os.environ.get("LLMBRAIN_DATA")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "llmbrain" / "narratives"


def story_info(story: str, manifest: dict | None = None, *,
               participants_tsv: str | Path | None = None) -> dict:
    """Task, window, quirks and subjects of a story name (a task name or a story inside a task).

    Parameters
    ----------
    story : str
        ``pieman``, ``slumlord`` (inside task ``slumlordreach``), ``milkywayvodka`` (a condition
        of task ``milkyway``), ...
    manifest : dict, optional
        A parsed manifest (default: the project's).
    participants_tsv : str or Path, optional
        The data set's ``participants.tsv`` (default: ``data_home()/participants.tsv`` when it
        exists; ``fetch(story, "all")`` or kind ``participants`` downloads it).

    Returns
    -------
    dict
        ``task``, ``story``, ``n_trs`` (scan length, may be None), ``n_trs_verified``,
        ``onset_tr`` and ``duration_tr`` (the story's window in the scan), ``condition`` (or
        None), ``exclude`` (scan names), ``multi_run``, ``scrambled``, ``audio_onset_s`` (where
        the audio file, whose times the word alignment gives, starts in the scan; None when
        unknown) and ``audio_onset_verified``, and ``subjects``: the
        subjects with a usable scan of the story (:func:`list_subjects`), or None when no
        ``participants.tsv`` is at hand.
    """
    info = _story_info(story, manifest)
    tsv = Path(participants_tsv) if participants_tsv is not None else data_home() / "participants.tsv"
    info["subjects"] = list_subjects(story, tsv, manifest=manifest) if tsv.is_file() else None
    return info


def _story_info(story: str, manifest: dict | None = None) -> dict:
    m = manifest or load_manifest()
    for task, t in m["tasks"].items():
        stories = t.get("stories") or {}
        if story in stories or story == task:
            s = stories.get(story) or {}
            audio = (m.get("audio_onset_s") or {}).get(story) or {}
            return {
                "task": str(task), "story": story, "n_trs": t.get("n_trs"),
                "n_trs_verified": bool(t.get("n_trs_verified", False)),
                "onset_tr": s.get("onset_tr"), "duration_tr": s.get("duration_tr"),
                "condition": s.get("condition"), "exclude": list(t.get("exclude") or []),
                "multi_run": {str(k): list(v) for k, v in (t.get("multi_run") or {}).items()},
                "scrambled": bool(t.get("scrambled", False)),
                "audio_onset_s": audio.get("value"),
                "audio_onset_verified": bool(audio.get("verified", False)),
            }
    known = sorted(set(m["tasks"]) | {s for t in m["tasks"].values() for s in (t.get("stories") or {})})
    raise ParameterError("story", f"unknown Narratives story {story!r}", expected=f"one of {known}")


# --------------------------------------------------------------------------- subjects
def parse_subjects(spec: str | int | Iterable) -> list[str]:
    """Subject labels from a compact spec: ``"001-010"``, ``"1,3,5"``, ``"sub-004"``, ``[1, 2]``.

    Parameters
    ----------
    spec : str, int or iterable
        Ranges (inclusive) and single labels separated by commas; ``sub-`` prefixes allowed.

    Returns
    -------
    list of str
        Zero-padded 3-digit labels, in the order given, without duplicates.
    """
    if spec is None:
        raise ParameterError("subjects", "None", expected="labels such as '001-010'; to use every "
                             "subject of a story, fetch its participants.tsv first: "
                             "fetch(story, 'all') or the CLI's --subjects all")
    if isinstance(spec, int) and not isinstance(spec, bool):
        items: list = [str(spec)]
    elif isinstance(spec, str):
        items = [x.strip() for x in spec.split(",")]
    elif isinstance(spec, Iterable):
        items = [str(x).strip() for x in spec]
    else:
        raise ParameterError("subjects", f"{spec!r}", expected="'001-010', '1,3' or a list of labels")
    out: list[str] = []
    for item in items:
        if not item:
            raise ParameterError("subjects", f"empty item in {spec!r}", expected="'001-010' or '1,3'")
        if "-" in item.replace("sub-", ""):
            lo, _, hi = item.replace("sub-", "").partition("-")
            a, b = _sub_label(lo, spec), _sub_label(hi, spec)
            if int(b) < int(a):
                raise ParameterError("subjects", f"range {item!r} runs backwards", expected="low-high")
            labels = [f"{i:03d}" for i in range(int(a), int(b) + 1)]
        else:
            labels = [_sub_label(item, spec)]
        out.extend(x for x in labels if x not in out)
    return out


def _sub_label(item: str, spec) -> str:
    m = _SUB.match(item.strip())
    if not m or int(m.group(1)) < 1:
        raise ParameterError("subjects", f"bad subject label {item!r} in {spec!r}",
                             expected="1-3 digit label >= 1, optionally 'sub-' prefixed")
    return f"{int(m.group(1)):03d}"


def list_subjects(story: str, participants_tsv: str | Path, *, manifest: dict | None = None,
                  drop_excluded: bool = True) -> list[str]:
    """Subjects that heard a story, from the data set's ``participants.tsv``.

    Parameters
    ----------
    story : str
        Story or task name (a condition story such as ``milkywayvodka`` keeps only that condition).
    participants_tsv : str or Path
        The data set's ``participants.tsv`` (columns ``participant_id``, ``task`` and
        ``condition``, the last two comma-joined per task).
    drop_excluded : bool
        Leave out subjects whose every scan of the task the authors exclude.

    Returns
    -------
    list of str
        3-digit labels, sorted.
    """
    import pandas as pd

    info = _story_info(story, manifest)
    path = Path(participants_tsv)
    if not path.is_file():
        raise InputError(path, "file not found", expected="the data set's participants.tsv")
    df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    for col in ("participant_id", "task"):
        if col not in df.columns:
            raise InputError(path, "missing column", field=col, expected="participant_id, task, condition")
    out = []
    for _, row in df.iterrows():
        tasks = [t.strip() for t in row["task"].split(",")]
        if info["task"] not in tasks:
            continue
        if info["condition"] is not None and "condition" in df.columns:
            conds = [c.strip() for c in row["condition"].split(",")]
            i = tasks.index(info["task"])
            if i >= len(conds) or conds[i] != info["condition"]:
                continue
        sub = _sub_label(row["participant_id"], path)
        if drop_excluded and not scans_for(info, sub):
            continue
        out.append(sub)
    return sorted(out)


def scans_for(info: dict, sub: str, *, include_excluded: bool = False) -> list[str]:
    """The ``{run}`` fillers of a subject's usable scans of a task (``[""]`` or ``["_run-1", ...]``)."""
    runs = info["multi_run"].get(sub)
    fillers = [f"_run-{r}" for r in runs] if runs else [""]
    if include_excluded:
        return fillers
    excluded = set(info["exclude"])
    return [f for f in fillers if f"sub-{sub}_task-{info['task']}{f}" not in excluded]


def relative_paths(story: str, subject: str, kinds: Sequence[str] = ("clean",), *,
                   manifest: dict | None = None, include_excluded: bool = False) -> list[str]:
    """Relative paths (real layout) of a subject's files of the given kinds for a story.

    Subject-free kinds (``mask``, ``participants``, ``scan_exclude``) are included once per call.
    Excluded scans are left out unless ``include_excluded``.
    """
    m = manifest or load_manifest()
    info = _story_info(story, m)
    sub = _sub_label(subject, "subject")
    out: list[str] = []
    for kind in kinds:
        if kind not in m["kinds"]:
            raise ParameterError("kinds", f"unknown kind {kind!r}", expected=f"one of {sorted(m['kinds'])}")
        pattern = m["kinds"][kind]["path"]
        hemis = m["kinds"][kind].get("hemis") or [None]
        if "{sub}" not in pattern:
            paths = [pattern.format(task=info["task"])]
        else:
            paths = [pattern.format(sub=sub, task=info["task"], run=run, hemi=h)
                     for run in scans_for(info, sub, include_excluded=include_excluded) for h in hemis]
        out.extend(p for p in paths if p not in out)
    return out


# --------------------------------------------------------------------------- download
def sha256(path: str | Path) -> str:
    """Hex sha256 of a file (:func:`llmbrain_utils.store.sha256_file`)."""
    return sha256_file(path)


def check_gzip(path: str | Path) -> None:
    """Decompress a gzip file fully (CRC and length checked); InputError naming it if broken."""
    try:
        with gzip.open(path, "rb") as f:
            while f.read(1 << 22):
                pass
    except (OSError, EOFError, zlib.error) as e:
        raise InputError(path, f"corrupt or truncated gzip data ({e})",
                         expected="a complete .gz file; delete it and download again") from None


def _read_db(dest: Path) -> dict:
    p = dest / HASH_DB
    if not p.is_file():
        return {}
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError:
        log.warning("%s is not valid JSON; ignoring recorded hashes", p)
        return {}


def _write_db(dest: Path, db: dict) -> None:
    tmp = dest / f"{HASH_DB}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(db, indent=1, sort_keys=True))
    os.replace(tmp, dest / HASH_DB)


def _norm_hash(h: str | None) -> str | None:
    if not h:
        return None
    h = h.strip().lower()
    if ":" in h:
        alg, _, val = h.partition(":")
        if alg != "sha256":
            raise ParameterError("known_hashes", f"unsupported algorithm {alg!r}", expected="sha256")
        h = val
    if not re.fullmatch(r"[0-9a-f]{64}", h):
        raise ParameterError("known_hashes", f"not a sha256 digest: {h!r}", expected="64 hex digits")
    return h


def download(url: str, target: Path, known: str | None, *, retries: int = 3, progress: bool = False,
             timeout: float = 60.0, hint: str | None = None) -> Path:
    """Download ``url`` to ``target`` (atomic, through pooch), checking the sha256 ``known``
    (None: unverified); transient failures are retried ``retries`` times with backoff, a
    missing file (HTTP 404...) or a checksum mismatch fail at once. The package's one download
    path (Narratives files and atlas files). Returns ``target``; errors are InputErrors
    naming the URL (``hint``: what would help)."""
    import pooch

    target.parent.mkdir(parents=True, exist_ok=True)
    downloader = pooch.HTTPDownloader(progressbar=progress, timeout=timeout)
    plog = pooch.get_logger()
    level = plog.level
    if not progress:  # pooch announces every download at INFO; keep quiet when asked to
        plog.setLevel(logging.WARNING)
    try:
        _retrieve(url, target, known, downloader, retries=retries, progress=progress, hint=hint)
    finally:
        plog.setLevel(level)
    return target


def _retrieve(url: str, target: Path, known: str | None, downloader, *, retries: int,
              progress: bool, hint: str | None = None) -> None:
    """pooch.retrieve with retries of transient failures; 404 and hash mismatch fail at once."""
    import pooch
    import requests

    for attempt in range(retries + 1):
        try:
            pooch.retrieve(url, known_hash=f"sha256:{known}" if known else None, fname=target.name,
                           path=target.parent, downloader=downloader, progressbar=progress)
            return
        except requests.HTTPError as e:
            status = getattr(e.response, "status_code", None)
            if status in (401, 403, 404, 410):
                raise InputError(url, f"not on the server (HTTP {status})",
                                 expected=f"an existing file for {target.name}") from None
            err: Exception = e
        except ValueError as e:  # pooch: hash mismatch; the temporary file is already gone
            if "hash" in str(e).lower():
                _unlink(target)
                raise InputError(target.name, f"checksum mismatch for {url}: {e}",
                                 expected=f"sha256 {known}") from None
            raise
        except (requests.RequestException, OSError) as e:  # connection, timeout, cut stream
            err = e
        if attempt < retries:
            wait = min(2.0 ** attempt, 30.0)
            log.warning("download of %s failed (%s); retry %d/%d in %.0f s", url, err, attempt + 1,
                        retries, wait)
            time.sleep(wait)
    raise InputError(url, f"download failed after {retries + 1} attempt(s): {err}", expected=hint)


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def fetch(story: str, subjects: str | Iterable, *, dest: str | Path | None = None,
          kinds: Sequence[str] = ("clean",), base_url: str | None = None, retries: int = 3,
          progress: bool = True, known_hashes: dict[str, str] | None = None,
          include_excluded: bool = False, timeout: float = 60.0,
          manifest: str | Path | dict | None = None) -> list[Path]:
    """Download (or reuse) a story's files for some subjects; return their local paths.

    Parameters
    ----------
    story : str
        Story or task name from the manifest (``pieman``, ``slumlord``, ``milkywayvodka``...).
    subjects : str or iterable
        Subject labels (see :func:`parse_subjects`), e.g. ``"001-010"``; ``"all"`` downloads
        the data set's ``participants.tsv`` and takes every subject of the story.
    dest : str or Path, optional
        Local root (default ``$LLMBRAIN_DATA`` or ``~/.cache/llmbrain/narratives``); files keep
        the data set's relative paths below it.
    kinds : sequence of str
        Derivative kinds from the manifest: ``clean`` (afni-nosmooth MNI), ``clean-sm6``,
        ``sm6``, ``preproc``, ``fsaverage6``, ``fsaverage6-sm6``, ``confounds``, ``events``,
        ``mask``, ``participants``, ``scan_exclude``.
    base_url : str, optional
        Root of the data set on the server (default: the manifest's public bucket).
    retries : int
        Retries of a transient failure (connection, timeout, server error), with backoff. A
        missing file (HTTP 404) and a checksum mismatch are not retried.
    progress : bool
        Show a progress bar per file (tqdm).
    known_hashes : dict, optional
        Relative path -> ``"sha256:<hex>"``, added to the manifest's ``checksums``.
    include_excluded : bool
        Also fetch scans the authors exclude (``code/scan_exclude.json``).
    timeout : float
        Seconds without data before a connection counts as failed.
    manifest : str, Path or dict, optional
        Another manifest (path or parsed).

    Returns
    -------
    list of Path
        Local paths, in request order (subjects x kinds).

    Raises
    ------
    ParameterError
        Unknown story, kind or bad subject label (before any download).
    InputError
        A file missing on the server, a checksum mismatch, a corrupt gzip or a failed download:
        the message names the file; the bad file is not left behind.
    """
    m = manifest if isinstance(manifest, dict) else load_manifest(manifest)
    root = data_home(dest)
    url_root = (base_url or m.get("base_url") or DEFAULT_BASE_URL).rstrip("/")
    _story_info(story, m)
    if isinstance(subjects, str) and subjects.strip().lower() == "all":
        tsv = fetch(story, "001", dest=root, kinds=("participants",), base_url=url_root, retries=retries,
                    progress=progress, known_hashes=known_hashes, timeout=timeout, manifest=m,
                    include_excluded=True)[0]
        subjects = list_subjects(story, tsv, manifest=m, drop_excluded=not include_excluded)
    subs = parse_subjects(subjects)
    if not subs:
        raise ParameterError("subjects", "no subject given", expected="e.g. '001-010'")
    if isinstance(kinds, str):
        kinds = (kinds,)
    if not isinstance(retries, int) or retries < 0:
        raise ParameterError("retries", f"{retries!r}", expected="an int >= 0")
    hashes = {k: _norm_hash(v) for k, v in {**(m.get("checksums") or {}), **(known_hashes or {})}.items()}
    rels: list[str] = []
    for sub in subs:  # validate everything before the first byte moves
        paths = relative_paths(story, sub, kinds, manifest=m, include_excluded=include_excluded)
        if not paths:
            log.warning("sub-%s: every scan of %s is excluded by the authors; skipped "
                        "(include_excluded=True fetches it)", sub, story)
        rels.extend(p for p in paths if p not in rels)
    # the folders this call creates: a failed call (offline, a missing file) removes those left
    # empty, so it leaves no empty tree behind
    created = sorted({d for rel in rels for d in [(root / rel).parent, *(root / rel).parents]
                      if d == root or root in d.parents} | {root, *root.parents},
                     key=lambda d: len(d.parts), reverse=True)
    created = [d for d in created if not d.exists()]
    root.mkdir(parents=True, exist_ok=True)
    try:
        return _fetch_files(rels, root, url_root, hashes, retries=retries, progress=progress,
                            timeout=timeout)
    except BaseException:
        _clean_up(root, created)
        raise


def _clean_up(root: Path, created: list[Path]) -> None:
    """After a failed fetch: this process's temporary hash records and the folders it created
    that are empty (deepest first)."""
    for tmp in root.glob(f"{HASH_DB}.tmp-{os.getpid()}"):
        _unlink(tmp)
    for d in created:
        try:
            d.rmdir()  # only when empty
        except OSError:
            pass


def _fetch_files(rels: list[str], root: Path, url_root: str, hashes: dict, *, retries: int,
                 progress: bool, timeout: float) -> list[Path]:
    db = _read_db(root)
    out: list[Path] = []
    for rel in rels:
        target = root / rel
        known = hashes.get(rel) or _norm_hash(db.get(rel))
        if target.is_file():
            if known is None or sha256(target) == known:
                out.append(target)
                continue
            log.warning("%s fails its recorded sha256; downloading it again", target)
            _unlink(target)
        url = f"{url_root}/{rel}"
        log.info("downloading %s", url)
        download(url, target, known, retries=retries, progress=progress, timeout=timeout)
        if known is None:
            if target.name.endswith(".gz"):
                try:
                    check_gzip(target)
                except InputError as e:
                    _unlink(target)
                    raise InputError(target, f"downloaded from {url} but {e.problem}; removed",
                                     expected="a complete file: retry, or check the server") from None
            db[rel] = sha256(target)
            _write_db(root, db)
        out.append(target)
    return out

