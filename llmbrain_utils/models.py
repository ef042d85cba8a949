"""Stage 2a, models: the registry of language models, loading, and finding each layer's FFN.

A model is named by a registry entry (``data_manifests/models.yaml``), a Hugging Face id, or a
local path (a folder with ``config.json`` and weights, or a ``.gguf`` file).
:func:`load_model` returns a :class:`LoadedModel` whose ``.model`` is the *base* transformer
(no language-model head: the ANs live in the blocks, and a 128k-word head would cost more than
a block), ``.tokenizer`` a tokenizer, and ``.info`` a description with a hash of the weights.

Offline, four real pretrained models come from Python packages that carry their weights
(see :func:`offline_models`): all-MiniLM-L6-v2 (BERT), SmolLM2-135M (Llama, GGUF),
all-mpnet-base-v2 (MPNet, a split zip) and gemma-3-270m (Gemma 3, split GGUF). Archives and
GGUF files are joined, checked, dequantised once and cached as a plain safetensors checkpoint
under ``$LLMBRAIN_CACHE`` (default ``~/.cache/llmbrain``); every cache write goes through a
temporary folder and a rename, under a file lock.

:func:`find_ffn` finds, in every block, the FFN's second linear layer: its *output* units are
the method's artificial neurons (ANs), its *input* units the FFN's hidden units.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

from ._io import read_yaml
from .devices import resolve_device, resolve_dtype  # noqa: F401 (models.resolve_device)
from .errors import InputError, ParameterError

log = logging.getLogger(__name__)

REGISTRY_FILE = Path(__file__).resolve().parents[1] / "data_manifests" / "models.yaml"
_FORMATS = ("folder", "gguf", "split-zip", "split-gguf")
_REQUIRED = {"source": dict, "family": str, "n_layers": int, "d_model": int, "d_ffn": int,
             "causal": bool, "licence": str}
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")

#: (family, regex over module names; group 1 = layer index) in the order they are tried.
FFN_PATTERNS: list[tuple[str, str]] = [
    ("bert", r"(?:^|\.)(?:encoder\.)?layer\.(\d+)\.output\.dense$"),          # BERT/RoBERTa/MPNet/DeBERTa/ELECTRA
    ("distilbert", r"(?:^|\.)transformer\.layer\.(\d+)\.ffn\.lin2$"),
    ("llama", r"(?:^|\.)layers\.(\d+)\.mlp\.down_proj$"),                     # Llama/Mistral/Qwen/Gemma/Phi-3
    ("gpt2", r"(?:^|\.)h\.(\d+)\.mlp\.c_proj$"),                              # GPT-2 (Conv1D)
    ("gptj", r"(?:^|\.)h\.(\d+)\.mlp\.fc_out$"),
    ("gpt-neox", r"(?:^|\.)layers\.(\d+)\.mlp\.dense_4h_to_h$"),
    ("falcon", r"(?:^|\.)h\.(\d+)\.mlp\.dense_4h_to_h$"),
    ("opt", r"(?:^|\.)layers\.(\d+)\.fc2$"),
    ("phi", r"(?:^|\.)layers\.(\d+)\.mlp\.fc2$"),
    ("t5", r"(?:^|\.)block\.(\d+)\.layer\.\d+\.DenseReluDense\.wo$"),
]


# --------------------------------------------------------------------------- registry
def read_registry(path: str | os.PathLike | None = None) -> dict[str, dict]:
    """Read and check the model registry.

    Parameters
    ----------
    path : path-like, optional
        A registry YAML; default ``data_manifests/models.yaml`` of the repository.

    Returns
    -------
    dict
        Model name -> entry (``source``, ``hf_id``, ``family``, ``n_layers``, ``d_model``,
        ``d_ffn``, ``causal``, ``licence``, ``notes``).

    Raises
    ------
    InputError
        The file is missing, not YAML, or an entry lacks a field or has a wrong type.
    """

    path = Path(path) if path is not None else REGISTRY_FILE
    doc = read_yaml(path, what="model registry", expected="a YAML file with a 'models' mapping")
    if not isinstance(doc, dict) or not isinstance(doc.get("models"), dict):
        raise InputError(path, "no 'models' mapping", field="models", expected="models: {name: entry}")
    out = {}
    for name, entry in doc["models"].items():
        if not isinstance(entry, dict):
            raise InputError(path, "entry is not a mapping", field=f"models.{name}")
        for key, typ in _REQUIRED.items():
            if key not in entry:
                raise InputError(path, "missing field", field=f"models.{name}.{key}",
                                 expected=typ.__name__)
            if not isinstance(entry[key], typ) or (typ is int and isinstance(entry[key], bool)):
                raise InputError(path, f"{entry[key]!r} has type {type(entry[key]).__name__}",
                                 field=f"models.{name}.{key}", expected=typ.__name__)
        src = entry["source"]
        kinds = [k for k in ("package", "hf_id", "path") if k in src]
        if not kinds:
            raise InputError(path, "source names no package, hf_id or path",
                             field=f"models.{name}.source", expected="one of package/hf_id/path")
        if "package" in src:
            fmt = src.get("format")
            if fmt not in _FORMATS:
                raise InputError(path, f"unknown format {fmt!r}", field=f"models.{name}.source.format",
                                 expected=" | ".join(_FORMATS))
            if fmt.startswith("split-") and not (src.get("parts") and src.get("sha256")):
                raise InputError(path, "split archive without parts or sha256",
                                 field=f"models.{name}.source.parts", expected="parts: [{package, file}], sha256")
            if not fmt.startswith("split-") and not src.get("file"):
                raise InputError(path, "package source without file", field=f"models.{name}.source.file",
                                 expected="path inside the installed distribution")
        out[str(name)] = dict(entry, name=str(name))
    return out


def _dist_file(package: str, rel: str) -> Path | None:
    """The path of ``rel`` inside an installed distribution (not imported), or None."""
    try:
        dist = metadata.distribution(package)
    except metadata.PackageNotFoundError:
        return None
    p = Path(dist.locate_file(rel))
    return p if p.exists() else None


def _package_files(entry: dict) -> list[Path] | None:
    """The files a package source needs (one, or the ordered parts); None when not installed."""
    src = entry["source"]
    if "package" not in src:
        return None
    specs = src["parts"] if src["format"].startswith("split-") else [{"package": src["package"],
                                                                      "file": src["file"]}]
    paths = [_dist_file(s["package"], s["file"]) for s in specs]
    return None if any(p is None for p in paths) else paths


def offline_models(registry: dict | None = None) -> dict[str, bool]:
    """Registry models whose weights a package carries -> whether that package is installed."""
    registry = registry if registry is not None else read_registry()
    return {name: _package_files(e) is not None
            for name, e in registry.items() if "package" in e["source"]}


def _lookup(name: str, registry: dict) -> dict | None:
    low = name.lower()
    for key, entry in registry.items():
        hub = entry.get("hf_id") or entry["source"].get("hf_id")
        if key.lower() == low or (hub and hub.lower() == low):
            return entry
    return None


# --------------------------------------------------------------------------- cache and hashes
def cache_dir() -> Path:
    """``$LLMBRAIN_CACHE`` or ``~/.cache/llmbrain`` (created)."""
    root = Path(os.environ.get("LLMBRAIN_CACHE") or Path.home() / ".cache" / "llmbrain").expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def sha256_of(path: str | os.PathLike) -> str:
    """SHA-256 of a file, remembered in the cache by (path, size, mtime) so big weights hash once."""
    from .store import sha256_file, write_json_atomic

    path = Path(path).resolve()
    st = path.stat()
    key = f"{path}|{st.st_size}|{st.st_mtime_ns}"
    book = cache_dir() / "sha256.json"
    known: dict = {}
    if book.is_file():
        try:
            known = json.loads(book.read_text())
        except (OSError, ValueError):
            known = {}
    if key in known:
        return known[key]
    digest = sha256_file(path)
    known[key] = digest
    try:
        write_json_atomic(book, known)
    except OSError:  # a read-only cache only costs a re-hash
        log.debug("could not record the hash of %s", path)
    return digest


def weights_sha256(files: Sequence[str | os.PathLike]) -> str:
    """One hash of several weight files: SHA-256 of their sorted ``name:sha256`` lines."""
    files = sorted(Path(f) for f in files)
    if len(files) == 1:
        return sha256_of(files[0])
    lines = "\n".join(f"{f.name}:{sha256_of(f)}" for f in files)
    return hashlib.sha256(lines.encode()).hexdigest()


def _weight_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in _WEIGHT_SUFFIXES
                  and not p.name.startswith("training_args"))


def _atomic_build(final: Path, build) -> Path:
    """Run ``build(tmp_dir)`` and rename the result to ``final``; a no-op when ``final`` exists."""
    from filelock import FileLock

    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(final) + ".lock"):
        if final.is_dir():
            return final
        tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
        try:
            build(tmp)
            os.chmod(tmp, 0o755)  # mkdtemp makes it private
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final


def _join_parts(parts: list[Path], target: Path, expected_sha: str, what: str) -> None:
    h = hashlib.sha256()
    with open(target, "wb") as out:
        for part in parts:
            with open(part, "rb") as f:
                for block in iter(lambda: f.read(1 << 22), b""):
                    h.update(block)
                    out.write(block)
    if h.hexdigest() != expected_sha:
        raise InputError(what, f"joined parts have sha256 {h.hexdigest()}", field="source.sha256",
                         expected=expected_sha)


# --------------------------------------------------------------------------- loading
@dataclass
class LoadedModel:
    """A model ready for extraction.

    Attributes
    ----------
    model : torch.nn.Module
        The base transformer (no LM head), in eval mode, on ``device``.
    tokenizer : transformers tokenizer
    info : dict
        ``name, family, n_layers, d_model, d_ffn, causal, weights_sha256, files_sha256,
        gguf_sha256, source`` (see :func:`fingerprint`) and
        ``untrained, seed, dtype, device, max_tokens, ffn_modules`` (module names).
    ffn : list of torch.nn.Module
        Per layer, the FFN's second linear layer (see :func:`find_ffn`).
    """

    model: Any
    tokenizer: Any
    info: dict
    ffn: list = field(default_factory=list)

    @property
    def device(self):
        return next(self.model.parameters()).device


def _offline_help(registry: dict) -> str:
    avail = offline_models(registry)
    lines = [f"{n} ({'installed' if ok else 'install: ' + registry[n]['source'].get('install', '')})"
             for n, ok in avail.items()]
    return ("offline models: " + "; ".join(lines) +
            ". Or pass a local folder with config.json and weights, or a .gguf file, as name_or_path.")


def _hub_folder(hf_id: str, registry: dict) -> Path:
    """A local snapshot of a hub model (top-level config, tokenizer and weights only)."""
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HFValidationError
    except ImportError as e:  # pragma: no cover - transformers depends on it
        raise InputError(f"model '{hf_id}'", "huggingface_hub is not installed") from e
    base = ["*.json", "*.txt", "*.model", "*.tiktoken", "tokenizer*"]
    try:
        folder = Path(snapshot_download(hf_id, allow_patterns=base + ["*.safetensors"],
                                        ignore_patterns=["*/*"]))
        if not _weight_files(folder):
            folder = Path(snapshot_download(hf_id, allow_patterns=base + ["*.bin"],
                                            ignore_patterns=["*/*"]))
    except HFValidationError:
        raise InputError(f"model '{hf_id}'", "not a registry name, local path or Hugging Face id",
                         expected=_offline_help(registry)) from None
    except Exception as e:  # offline, unknown repo, gated repo, network error
        raise InputError(f"model '{hf_id}'",
                         f"no reachable weights ({type(e).__name__}: {str(e).splitlines()[0][:200]})",
                         expected=_offline_help(registry)) from None
    if not _weight_files(folder) or not (folder / "config.json").is_file():
        raise InputError(f"model '{hf_id}'", "the hub snapshot has no config.json or weights",
                         expected=_offline_help(registry))
    return folder


def _gguf_cache(name: str, sha: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    return cache_dir() / "models" / f"{safe}-{sha[:16]}"


def _dequantise_gguf(gguf: Path, name: str, sha: str, origin: str | None = None) -> Path:
    """Dequantise a GGUF file once into a cached safetensors checkpoint; return its folder."""
    from transformers import AutoModel, AutoTokenizer

    final = _gguf_cache(name, sha)

    def build(tmp: Path) -> None:
        log.info("dequantising %s once (cached in %s)", gguf, final)
        q = AutoModel.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype="float32")
        # GGUF-loaded models refuse save_pretrained: copy the weights into a plain model
        plain = AutoModel.from_config(q.config, dtype="float32")
        missing, unexpected = plain.load_state_dict(q.state_dict(), strict=False)
        if unexpected or [m for m in missing if "rotary" not in m]:
            raise InputError(gguf, f"GGUF weights do not fit the config (missing {missing[:3]}, "
                             f"unexpected {unexpected[:3]})")
        plain.save_pretrained(tmp)
        AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(tmp)
        (tmp / "llmbrain_source.json").write_text(json.dumps(
            {"gguf": origin or str(gguf), "gguf_sha256": sha, "name": name}, indent=2))
        del q, plain

    return _atomic_build(final, build)


def _materialise_package(entry: dict, files: list[Path]) -> tuple[Path, str | None, str]:
    """(folder with config+weights, sha256 of the GGUF it comes from or None, description)."""
    src, name = entry["source"], entry["name"]
    fmt = src["format"]
    if fmt == "folder":
        folder = files[0]
        return folder, None, f"package {src['package']}: {folder}"
    if fmt == "gguf":
        sha = sha256_of(files[0])
        return _dequantise_gguf(files[0], name, sha), sha, f"package {src['package']}: {files[0]}"
    sha = src["sha256"]
    what = f"model '{name}' ({', '.join(p['package'] for p in src['parts'])})"
    if fmt == "split-zip":
        final = cache_dir() / "models" / f"{name}-{sha[:16]}"

        def build(tmp: Path) -> None:
            archive = tmp / "joined.zip"
            _join_parts(files, archive, sha, what)
            member = src.get("member", "").strip("/")
            with zipfile.ZipFile(archive) as z:
                for info in z.infolist():
                    rel = info.filename
                    if member:
                        if not rel.startswith(member + "/"):
                            continue
                        rel = rel[len(member) + 1:]
                    # top-level files only: config, tokenizer, weights
                    if not rel or "/" in rel.rstrip("/") or info.is_dir() or ".." in rel:
                        continue
                    with z.open(info) as fin, open(tmp / rel, "wb") as fout:
                        shutil.copyfileobj(fin, fout, 1 << 22)
            archive.unlink()

        folder = _atomic_build(final, build)
        return folder, None, f"{what} -> {folder}"
    # split-gguf: join into a temporary file, dequantise, keep only the plain checkpoint
    folder = _gguf_cache(name, sha)
    if not folder.is_dir():
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".gguf.tmp"))
        try:
            _join_parts(files, tmp / "model.gguf", sha, what)
            _dequantise_gguf(tmp / "model.gguf", name, sha, origin=what)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return folder, sha, f"{what} -> {folder}"


def _max_tokens(config, tokenizer) -> int:
    n = None
    for key in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length"):
        v = getattr(config, key, None)
        if isinstance(v, int) and v > 0:
            n = v
            break
    if n is None:
        n = 512
    if getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert", "mpnet",
                                              "longformer", "data2vec-text"):
        n -= 2  # positions start after the padding index
    tm = getattr(tokenizer, "model_max_length", None)
    if isinstance(tm, int) and 0 < tm < 10 ** 6:
        n = min(n, tm)
    return int(n)


def _resolve(name_or_path: str | os.PathLike, registry: dict) -> tuple[str, Path, str | None, str, dict | None]:
    """Find (and on first use materialise) a model's files without loading the model.

    Returns ``(name, folder, sha, source, entry)``: the folder holds ``config.json``, the
    tokenizer and the weights that :func:`load_model` reads; ``sha`` is the SHA-256 of the
    GGUF file (or of the joined GGUF parts) the folder was dequantised from, None for other
    sources; ``entry`` is the registry entry (None for paths and hub ids).
    """
    raw = str(name_or_path)
    local = Path(raw).expanduser()
    entry = None
    sha = None
    if local.exists():
        name = local.stem if local.is_file() else local.name
        if local.is_file() and local.suffix == ".gguf":
            sha = sha256_of(local)
            folder, source = _dequantise_gguf(local.resolve(), name, sha), f"path {local.resolve()}"
        elif local.is_dir():
            ggufs = sorted(local.glob("*.gguf"))
            if not (local / "config.json").is_file() and len(ggufs) == 1:
                sha = sha256_of(ggufs[0])
                folder = _dequantise_gguf(ggufs[0].resolve(), name, sha)
            elif (local / "config.json").is_file() and _weight_files(local):
                folder = local
            else:
                raise InputError(local, "folder has no config.json with weights and no single .gguf file",
                                 expected="a Hugging Face model folder or a .gguf file")
            source = f"path {local.resolve()}"
        else:
            raise InputError(local, "not a model folder or .gguf file",
                             expected="a folder with config.json and weights, or a .gguf file")
    else:
        entry = _lookup(raw, registry)
        if entry is not None:
            name = entry["name"]
            files = _package_files(entry)
            src = entry["source"]
            if files is not None:
                folder, sha, source = _materialise_package(entry, files)
            elif "path" in src and Path(src["path"]).expanduser().exists():
                return _resolve(Path(src["path"]).expanduser(), registry)
            else:
                hub = src.get("hf_id") or entry.get("hf_id")
                if not hub:
                    raise InputError(f"model '{raw}'", "its package is not installed and no hub id is known",
                                     expected=src.get("install") or _offline_help(registry))
                try:
                    folder = _hub_folder(hub, registry)
                except InputError as e:
                    hint = f"; or install its package: {src['install']}" if src.get("install") else ""
                    raise InputError(f"model '{raw}'", e.problem + hint, expected=e.expected) from None
                source = f"hub {hub}: {folder}"
        else:
            if "/" not in raw and not re.fullmatch(r"[\w.-]+", raw):
                raise InputError(f"model '{raw}'", "not a registry name, local path or Hugging Face id",
                                 expected=_offline_help(registry))
            name = raw
            folder = _hub_folder(raw, registry)
            source = f"hub {raw}: {folder}"

    return name, Path(folder), sha, source, entry


#: files besides the weights that decide what a model computes: its config and its tokenizer
_MODEL_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                "added_tokens.json", "vocab.txt", "vocab.json", "merges.txt", "spiece.model",
                "tokenizer.model", "sentencepiece.bpe.model")


def _check_model_args(name_or_path, untrained, seed) -> None:
    """The arguments :func:`fingerprint` and :func:`load_model` share: ParameterError naming the bad one."""
    if not isinstance(untrained, bool):
        raise ParameterError("untrained", f"{untrained!r}", expected="True or False")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ParameterError("seed", f"{seed!r}", expected="an integer >= 0")
    if not isinstance(name_or_path, (str, os.PathLike)) or not str(name_or_path).strip():
        raise ParameterError("name_or_path", f"{name_or_path!r}",
                             expected="a registry name, a Hugging Face id or a local path")


def _fingerprint(folder: Path, config, untrained: bool, seed: int) -> dict[str, str]:
    """``weights_sha256`` and ``files_sha256`` of a resolved model folder (see :func:`fingerprint`)."""
    if untrained:
        cfg_json = json.dumps(config.to_dict(), sort_keys=True, default=str)
        weights = hashlib.sha256(f"{cfg_json}\nseed={seed}".encode()).hexdigest()
    else:
        files = _weight_files(folder)
        if not files:
            raise InputError(folder, "no weight files", expected=", ".join(_WEIGHT_SUFFIXES))
        weights = weights_sha256(files)
    others = sorted(p for p in folder.iterdir() if p.is_file() and p.name in _MODEL_FILES)
    return {"weights_sha256": weights, "files_sha256": weights_sha256(others) if others else ""}


def fingerprint(name_or_path: str | os.PathLike, *, untrained: bool = False, seed: int = 0,
                registry: dict | str | os.PathLike | None = None) -> dict[str, str]:
    """What identifies a model's computation, without loading the model (a cache key).

    ``weights_sha256`` is the SHA-256 of the weight files :func:`load_model` reads (several
    files: of their sorted ``name:sha256`` lines; for a GGUF source, the cached dequantised
    checkpoint), each file hashed once and remembered in ``$LLMBRAIN_CACHE/sha256.json`` by
    (path, size, mtime), so a changed file is hashed again and changes the key; for an untrained
    control, the SHA-256 of the config and the seed. ``files_sha256`` hashes the config and
    tokenizer files the same way. Both equal the ``info`` of :func:`load_model` for the same
    arguments. The first call for a packaged archive or GGUF file materialises its cached
    checkpoint (as :func:`load_model` would); later calls read only file metadata and hashes.

    Parameters
    ----------
    name_or_path, untrained, seed, registry
        As :func:`load_model`.

    Returns
    -------
    dict
        ``{"weights_sha256": str, "files_sha256": str}``.
    """
    from transformers import AutoConfig

    _check_model_args(name_or_path, untrained, seed)
    if not isinstance(registry, dict):
        registry = read_registry(registry)
    folder = _resolve(name_or_path, registry)[1]
    config = AutoConfig.from_pretrained(folder) if untrained else None
    return _fingerprint(folder, config, untrained, seed)


def load_model(name_or_path: str | os.PathLike, *, untrained: bool = False, seed: int = 0,
               device: str | None = None, dtype=None, registry: dict | str | os.PathLike | None = None,
               ffn_module: str | None = None) -> LoadedModel:
    """Load a language model for extraction.

    Parameters
    ----------
    name_or_path : str or path-like
        A registry name (``all-MiniLM-L6-v2``, ``SmolLM2-135M``, ``bert-base-uncased``,
        ``Llama-3-8B``, ...), a Hugging Face id, a local folder (``config.json`` + weights) or
        a ``.gguf`` file.
    untrained : bool
        Control: the same architecture and tokenizer with fresh random weights drawn with
        ``seed`` (transformers' own initialisation).
    seed : int
        Seed of the untrained control's weights.
    device : {None, "cpu", "auto", "cuda", "cuda:N"}
        None = CPU; "auto" = CUDA when available; CUDA asked for but absent falls back to CPU.
    dtype : {None, "float32", "bf16", "fp16"} or torch.dtype
        Half types only on a GPU; float32 on CPU.
    registry : dict or path, optional
        A registry (from :func:`read_registry`) or its YAML path; default the repository's.
    ffn_module : str, optional
        Regex of the FFN's second linear layer's module name for architectures
        :func:`find_ffn` does not know (group 1 = layer index).

    Returns
    -------
    LoadedModel

    Raises
    ------
    InputError
        Unknown model with no reachable weights (the message lists the offline models), or a
        package archive that fails its checksum.
    ParameterError
        Bad ``seed``, ``device`` or ``dtype``.
    """
    import torch
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    _check_model_args(name_or_path, untrained, seed)
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    if not isinstance(registry, dict):
        registry = read_registry(registry)

    name, folder, origin_sha, source, entry = _resolve(name_or_path, registry)

    tokenizer = AutoTokenizer.from_pretrained(folder)
    config = AutoConfig.from_pretrained(folder)
    prints = _fingerprint(folder, config, untrained, seed)
    load_kw: dict = {"dtype": dt}
    if untrained:
        torch.manual_seed(seed)
        model = AutoModel.from_config(config, dtype=dt)
    else:
        if dev.startswith("cuda"):
            load_kw["device_map"] = {"": dev}
        model = AutoModel.from_pretrained(folder, **load_kw)
    model = model.to(dev).eval()
    names, modules, family = _match_ffn(model, ffn_module)
    d_model, d_ffn = _linear_shape(modules[0])
    family = (entry or {}).get("family") or family
    causal = bool((entry or {}).get("causal", _is_causal(config)))
    info = {
        "name": name, "family": family, "n_layers": len(modules), "d_model": d_model, "d_ffn": d_ffn,
        "causal": causal, **prints, "gguf_sha256": origin_sha, "source": source, "untrained": untrained,
        "seed": seed if untrained else None, "dtype": str(dt).replace("torch.", ""), "device": dev,
        "max_tokens": _max_tokens(config, tokenizer), "model_type": getattr(config, "model_type", ""),
        "ffn_modules": names, "licence": (entry or {}).get("licence", "see the model's card"),
    }
    if entry is not None and (entry["n_layers"], entry["d_model"], entry["d_ffn"]) != (len(modules), d_model, d_ffn):
        log.warning("registry shapes of %s (%s x %s/%s) differ from the loaded model's (%s x %s/%s)",
                    name, entry["n_layers"], entry["d_model"], entry["d_ffn"], len(modules), d_model, d_ffn)
    return LoadedModel(model=model, tokenizer=tokenizer, info=info, ffn=modules)


def _is_causal(config) -> bool:
    if getattr(config, "is_decoder", False):
        return True
    archs = " ".join(getattr(config, "architectures", None) or [])
    return "CausalLM" in archs or getattr(config, "model_type", "") in (
        "llama", "mistral", "mixtral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "gemma3_text",
        "gpt2", "gpt_neox", "gptj", "opt", "falcon", "phi", "phi3", "olmo", "olmo2", "smollm3")


# --------------------------------------------------------------------------- FFN modules
def _linear_shape(module) -> tuple[int, int]:
    """(output units, input units) of a Linear or a GPT-2 Conv1D."""
    if hasattr(module, "out_features") and hasattr(module, "in_features"):
        return int(module.out_features), int(module.in_features)
    if hasattr(module, "nf") and hasattr(module, "weight"):  # transformers Conv1D: weight (in, out)
        return int(module.nf), int(module.weight.shape[0])
    w = getattr(module, "weight", None)
    if w is not None and w.dim() == 2:
        return int(w.shape[0]), int(w.shape[1])
    raise InputError(type(module).__name__, "FFN module has no 2-D weight",
                     expected="a Linear or Conv1D module")


def _match_ffn(model, ffn_module: str | None = None) -> tuple[list[str], list, str]:
    named = list(model.named_modules())
    if ffn_module is not None:
        try:
            pats = [("custom", re.compile(ffn_module))]
        except (re.error, TypeError) as e:
            raise ParameterError("ffn_module", f"{ffn_module!r} is not a regex ({e})",
                                 expected="a regex over module names, group 1 = layer index") from None
    else:
        pats = [(fam, re.compile(p)) for fam, p in FFN_PATTERNS]
    for family, pat in pats:
        hits = []
        for order, (n, m) in enumerate(named):
            mt = pat.search(n)
            if mt:
                idx = int(mt.group(1)) if mt.groups() and mt.group(1) is not None else order
                hits.append((idx, n, m))
        if not hits:
            continue
        hits.sort(key=lambda h: h[0])
        idxs = [h[0] for h in hits]
        if family != "custom" and idxs != list(range(len(hits))):
            raise InputError(f"model {type(model).__name__}",
                             f"FFN modules matched by {pat.pattern!r} are not one per layer ({idxs[:8]}...)",
                             field="ffn_module", expected="pass ffn_module= a regex matching exactly one module per layer")
        if len(set(idxs)) != len(idxs):
            raise ParameterError("ffn_module", f"{pat.pattern!r} matches several modules in one layer",
                                 expected="a regex matching exactly one module per layer")
        mods = [h[2] for h in hits]
        for n, m in zip([h[1] for h in hits], mods):
            _linear_shape(m)
        return [h[1] for h in hits], mods, family
    examples = [n for n, _ in named if re.search(r"(mlp|ffn|fc|dense|proj|output)", n)][:6]
    raise InputError(f"model {type(model).__name__}",
                     "unknown architecture: no FFN second linear layer found by module name",
                     field="ffn_module",
                     expected=("pass ffn_module= a regex over module names with the layer index as "
                               r"group 1, e.g. r'layers\.(\d+)\.mlp\.down_proj$'; modules like: "
                               + ", ".join(examples)))


def find_ffn(model, ffn_module: str | None = None) -> list:
    """Per layer, the FFN's second linear layer.

    Its *output* units are the ANs (BERT ``layer.i.output.dense``, before dropout, residual and
    LayerNorm; Llama ``layers.i.mlp.down_proj``); its *input* units are the FFN's hidden units
    (BERT: the ``intermediate`` activation; Llama: ``act(gate(x)) * up(x)``).

    Parameters
    ----------
    model : torch.nn.Module
        A transformers model (base or with a head).
    ffn_module : str, optional
        Regex over module names for other architectures; group 1 is the layer index.

    Returns
    -------
    list of torch.nn.Module
        One module per layer, in layer order.

    Raises
    ------
    InputError
        Unknown architecture (the message says how to pass ``ffn_module``).
    """
    return _match_ffn(model, ffn_module)[1]


def check_available(name_or_path: str | os.PathLike, registry: dict | str | os.PathLike | None = None
                    ) -> None:
    """Raise the error :func:`load_model` would raise for a model whose weights are not at hand,
    without loading it: a local path must exist, a registry model must have its package installed
    (or a local path or a reachable hub id), anything else must be a reachable hub id. Used to
    refuse a run before any work starts."""
    if not isinstance(registry, dict):
        registry = read_registry(registry)
    raw = str(name_or_path)
    if Path(raw).expanduser().exists():
        return
    entry = _lookup(raw, registry)
    if entry is not None:
        src = entry["source"]
        if _package_files(entry) is not None:
            return
        if "path" in src and Path(src["path"]).expanduser().exists():
            return
        hub = src.get("hf_id") or entry.get("hf_id")
        if not hub:
            raise InputError(f"model '{raw}'", "its package is not installed and no hub id is known",
                             expected=src.get("install") or _offline_help(registry))
        raw_hub = hub
    else:
        if "/" not in raw and not re.fullmatch(r"[\w.-]+", raw):
            raise InputError(f"model '{raw}'", "not a registry name, local path or Hugging Face id",
                             expected=_offline_help(registry))
        raw_hub = raw
    _hub_folder(raw_hub, registry)
