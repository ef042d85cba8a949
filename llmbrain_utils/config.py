"""Every parameter of a run, declared once: its default, type, check, reason and section.

:data:`PARAMS` is the one declaration (a :class:`Param` each). From it come the checks
(:func:`validate` turns a dict into an immutable, typed :class:`Params`, read as ``p.k``), the
notebooks' ``parameters`` cells (:func:`parameters_cell`; papermill overrides their values),
the book's parameter table (:func:`parameter_table`) and the check that ``params/default.yaml``
states only declared names with their declared defaults.
"""

from __future__ import annotations

import copy
import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._validation import STORY_NAME, STORY_WORDS
from ._io import read_text, read_yaml  # noqa: F401 (the parameter files' readers)
from .errors import InputError, ParameterError

REPO_RUNS = Path(__file__).resolve().parents[1] / "runs"



class Check:
    """A parameter's check and its allowed values in words (what an error message says)."""

    def __init__(self, fn, words: str, problem: str = "is out of range"):
        self.fn, self.words, self.problem = fn, words, problem

    def __call__(self, value) -> bool:
        return bool(self.fn(value))

    def __repr__(self):
        return f"Check({self.words!r})"


_c = Check


@dataclass(frozen=True)
class Param:
    """One run parameter: its default, allowed type(s), check (a :class:`Check`, whose words
    are the allowed values, or a tuple of choices, or None), the reason for the default, and
    its section (the stage whose chapter declares it; a parameter file's section)."""

    default: Any
    types: Any
    check: Any
    reason: str
    section: str = "common"

    def __iter__(self):  # (default, types, check, reason), as the table's rows used to be
        return iter((self.default, self.types, self.check, self.reason))


def _section(section: str, rows: dict) -> dict[str, Param]:
    return {name: Param(*row, section=section) for name, row in rows.items()}


#: the cross-model chapter's variants: each a name and the parameters it changes
DEFAULT_VARIANTS = [
    {"name": "MiniLM-L6", "model": "all-MiniLM-L6-v2"},
    {"name": "MiniLM-L6 32 tokens", "model": "all-MiniLM-L6-v2", "context_tokens": 32},
    {"name": "MiniLM-L6 causal", "model": "all-MiniLM-L6-v2", "context": "causal", "context_tokens": 32},
    {"name": "MiniLM-L6 shuffled words", "model": "all-MiniLM-L6-v2", "shuffle_words": True},
    {"name": "MiniLM-L6 untrained", "model": "all-MiniLM-L6-v2", "untrained": True},
    {"name": "MPNet", "model": "all-mpnet-base-v2"},
    {"name": "MPNet 32 tokens", "model": "all-mpnet-base-v2", "context_tokens": 32},
    {"name": "MPNet causal", "model": "all-mpnet-base-v2", "context": "causal", "context_tokens": 32},
    {"name": "MPNet untrained", "model": "all-mpnet-base-v2", "untrained": True},
    {"name": "SmolLM2-135M", "model": "SmolLM2-135M"},
    {"name": "SmolLM2-135M untrained", "model": "SmolLM2-135M", "untrained": True},
    {"name": "Gemma-3-270M", "model": "gemma-3-270m"},
    {"name": "Gemma-3-270M untrained", "model": "gemma-3-270m", "untrained": True},
]

_SECTIONS: dict[str, dict[str, tuple]] = {  # section -> name -> (default, types, check, reason)
    "stimulus": {
        "runs_dir": (None, (str, type(None)), None, "artifact store; None = $LLMBRAIN_RUNS or ./runs"),
        "story": ("harrowpoint", str, _c(lambda v: bool(STORY_NAME.fullmatch(v)), STORY_WORDS,
                                           "is not a plain name"),
                  "the project's own story (no download); any Narratives story by name with narratives_dir"),
        "narratives_dir": (None, (str, type(None)), None,
                           "folder with stimuli/STORY/align.csv or stimuli/gentle/STORY/align.json"),
        "tr_s": (1.5, (int, float), _c(lambda v: v > 0, "a number of seconds > 0"), "Narratives' TR"),
        "shuffle_words": (False, bool, None, "control: the story's words in random order, same timings"),
        "seed": (0, int, _c(lambda v: v >= 0, "an integer >= 0"), "every random choice is seeded"),
    },
    "extraction": {
        "model": ("all-MiniLM-L6-v2", str, None, "a real BERT-architecture model a package carries"),
        "untrained": (False, bool, None, "control: same architecture, fresh random weights"),
        "units": ("output", str, ("output", "hidden"),
                  "the method's AN: an output unit of the FFN's second linear layer"),
        "context": ("auto", str, ("auto", "bidirectional", "causal"),
                    "auto: encoders read a window around the word, decoders the past; causal = only "
                    "the past, like a listener"),
        "context_tokens": (128, int, _c(lambda v: v >= 1, "an integer >= 1"), "preceding tokens every word sees at least"),
        "word_pool": ("mean", str, ("mean", "last"), "sub-tokens -> word"),
        "tr_pool": ("mean", str, ("mean", "sum", "last"), "words -> TR"),
        "hrf": ("spm", str, ("spm", "glover", "fir"), "canonical SPM HRF, as in most encoding work"),
    },
    "dictionary": {
        "k": (64, int, _c(lambda v: v >= 1, "an integer >= 1"), "the paper's 64 atoms"),
        "lam": (0.1, (int, float), _c(lambda v: v > 0, "a number > 0"),
                "L1 weight on unit-norm AN signals; the paper's dictionary R2 of ~0.5-0.6 at k = 64"),
        "solver": ("spams", str, ("spams", "sklearn", "torch"), "SPAMS trainDL, the paper's tool"),
        "dict_iter": (300, int, _c(lambda v: v >= 1, "an integer >= 1"), "iterations (minibatches) of online learning"),
    },
    "fmri": {
        "fmri_source": ("synthetic", str, ("synthetic", "narratives"),
                        "synthetic twin with planted truth, or the real data set (download)"),
        "space": ("volume", str, ("volume", "fsaverage5", "fsaverage6"),
                  "where the analysis lives: the MNI volume at resolution_mm, or a cortical mesh "
                  "(the twin on the mesh, or Narratives' fsaverage6 GIfTI; fsaverage5 takes its "
                  "nested vertices); on a mesh the atlases are the toolbox's surface versions (TY17, "
                  "compare TY7 unless given) and the mapping's null is the spin of the sphere"),
        "twin": ("ideal", str, ("ideal", "realistic"),
                 "synthetic twin: 'ideal' (uniform tissue, signals planted on the read-out atlas's "
                 "own networks: the positive control, an upper bound) or 'realistic' (signal and noise "
                 "follow grey matter, planted networks at a mean Dice of 0.8 with the read-out atlas "
                 "and moved 3 mm RMS per subject; fmri.REALISTIC_TWIN)"),
        "n_subjects": (8, int, _c(lambda v: v >= 2, "an integer >= 2, as the ISC needs two subjects"), "subjects of the synthetic twin"),
        "resolution_mm": (6.0, (int, float), _c(lambda v: 2 <= v <= 12, "a number of mm from 2 to 12"), "grid of the analysis"),
        "snr": (None, (int, float, type(None)), None, "None = the generator's calibrated default"),
        "plant_atlas": ("Seitzman2018", str, None, "networks that carry the planted signals"),
        "n_perm": (1000, int, _c(lambda v: v >= 10, "an integer >= 10"), "permutations of the encoding and ISC nulls"),
        "alpha": (0.05, (int, float), _c(lambda v: 0 < v < 1, "a number strictly between 0 and 1"), "FDR level"),
    },
    "encoding": {
        "n_folds": (5, int, _c(lambda v: v >= 2, "an integer >= 2"), "contiguous cross-validation folds"),
        "trim": (5, int, _c(lambda v: v >= 0, "an integer >= 0"), "TRs dropped around each test fold (autocorrelation)"),
        "perm_stop": (None, (int, type(None)), _c(lambda v: v is None or v >= 1, "an integer >= 1"),
                      "the per-subject permutation test: stop a voxel's surrogates once this many "
                      "null R2 reach its own (Besag & Clifford 1991; p = h / draws, valid; every "
                      "voxel with p below (h+1)/(n_perm+1) keeps the fixed test's p); 10 costs ~6 % "
                      "of the draws on null voxels; None = all n_perm for every voxel"),
        "group_perm": (100, int, _c(lambda v: v >= 10, "an integer >= 10"),
                       "phase surrogates of the group test of held-out r (independent draws: the "
                       "pooled tail gives fine p-values with ~100)"),
        "recovery_snrs": ([0.2, 0.6], list, _c(lambda v: all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0 for x in v),
            "a list of numbers > 0"),
            "synthetic twin: other SNRs at which encoding_recovery measures the group test's "
            "recovery of the planted networks (each makes the twin again, ~20 s)"),
    },
    "fbn": {
        "atlas": ("Seitzman2018", str, None, "offline network templates (nilearn's Seitzman ROIs)"),
        "threshold": ("top10%", (str, int, float), None,
                      "an atom's active/deactive part: its top 10% |group t| voxels, split by sign"),
        "fbn_perm": (1000, int, _c(lambda v: v >= 100, "an integer >= 100"),
                     "null draws of the mapping (surrogate maps or spin rotations); with the fitted "
                     "tail (fbn_tail: gpd) p goes below 1 / (fbn_perm + 1), so FDR over k x networks "
                     "x 2 signs can pass; the spin without a tail needs ~5000"),
        "fbn_null": ("surrogate", str, ("spin", "surrogate"),
                     "the mapping's null: tissue-conditioned autocorrelation-matched surrogate maps "
                     "(calibrated on grey-matter-weighted maps; benchmarks/null_calibration.json), or "
                     "the volumetric spin of the networks (legacy: anti-conservative on such maps)"),
        "fbn_tail": ("gpd", str, ("none", "gpd"),
                     "p values of the mapping: a generalised Pareto tail fitted where fewer than 10 "
                     "null values reach the observed one (Winkler et al. 2016), so FDR is not held at "
                     "the permutation floor; or plain permutation counts"),
        "compare_atlas": ("TY7", str, None, "second atlas for the agreement analysis (Yeo 2011, 7 networks)"),
    },
    "cross_model": {
        "variants": (DEFAULT_VARIANTS, list, None, "cross-model chapter: list of {name, parameter overrides}"),
        "n_workers": (2, int, _c(lambda v: v >= 1, "an integer >= 1"),
                      "cross-model chapter: variants computed at once, each single-threaded (results "
                      "do not depend on it)"),
        "n_subsets": (1000, int, _c(lambda v: v >= 100, "an integer >= 100"),
                      "cross-model chapter: subsets of half the listeners behind every interval of the "
                      "network signal"),
        "n_boot": (20, int, _c(lambda v: v >= 2, "an integer >= 2"),
                   "cross-model chapter: subject resamples of the coupling-count bootstrap"),
    },
}

#: name -> Param, in sections (the order of the notebooks' parameters cells)
PARAMS: dict[str, Param] = {name: param for section, rows in _SECTIONS.items()
                            for name, param in _section(section, rows).items()}
del _SECTIONS


_TYPE_WORDS = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
               list: "a list", dict: "a mapping", type(None): "null"}


def type_words(types) -> str:
    """A type or tuple of types in words: ``(int, float)`` -> ``a number``."""
    types = types if isinstance(types, tuple) else (types,)
    words = [_TYPE_WORDS.get(t, t.__name__) for t in types if not (t is int and float in types)]
    return " or ".join(words)


def allowed(name: str) -> str:
    """A parameter's allowed values in words: its check's words, its choices, or its type."""
    _, types, check, _ = PARAMS[name]
    if isinstance(check, Check):
        words = check.words
        if type(None) in (types if isinstance(types, tuple) else (types,)):
            words += " or null"
        return words
    if isinstance(check, tuple):
        return "one of " + ", ".join(repr(c) for c in check)
    return type_words(types)


def suggest(name: str, candidates) -> str:
    """``"; did you mean 'story'?"`` for a close match among ``candidates``, else ``""``."""
    close = difflib.get_close_matches(str(name), [str(c) for c in candidates], n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def defaults() -> dict:
    return {k: copy.deepcopy(v.default) for k, v in PARAMS.items()}


class Params(Mapping):
    """A validated run parameter set: immutable, typed, read as ``p.k`` (or ``p["k"]``).

    Made by :func:`validate` only, so holding one means its values passed every check; passing
    one to :func:`validate` again returns it as it is (the stages validate what they are given,
    and a stage calling its upstream stages does not re-check). ``p.replace(k=32)`` is a new,
    checked set; ``dict(p)`` a plain copy."""

    __slots__ = ("_values",)

    def __init__(self, values: Mapping, *, _token=None):
        if _token is not _VALIDATED:
            raise TypeError("Params are made by config.validate(dict), which checks them")
        object.__setattr__(self, "_values", dict(values))

    def __getattr__(self, name: str):
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"no run parameter {name!r}{suggest(name, self._values)}") from None

    def __setattr__(self, name, value):
        raise AttributeError(f"run parameters are immutable: use p.replace({name}=...)")

    def __getitem__(self, name: str):
        return self._values[name]

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        changed = {k: v for k, v in self._values.items()
                   if k != "runs_dir" and v != PARAMS[k].default}
        return f"Params({', '.join(f'{k}={v!r}' for k, v in changed.items())})"

    def __reduce__(self):  # pickled for the sweep's workers: re-made without a second check
        return (_restore, (self._values,))

    def replace(self, **changes) -> "Params":
        """A new parameter set with ``changes``, checked."""
        return validate({**self._values, **changes})


_VALIDATED = object()


def _restore(values: dict) -> Params:
    return Params(values, _token=_VALIDATED)


def validate(params: Mapping, *, names: list[str] | None = None) -> Params:
    """Fill defaults and check types and ranges; raise ParameterError naming the first bad one.
    Returns a :class:`Params` (a :class:`Params` given is returned as it is)."""
    if isinstance(params, Params) and names is None:
        return params
    out = defaults()
    unknown = set(params) - set(PARAMS)
    if unknown:
        name = sorted(unknown)[0]
        hint = suggest(name, PARAMS)
        raise ParameterError(name, "unknown parameter" + hint,
                             expected=None if hint else f"one of {sorted(PARAMS)}")
    out.update({k: v for k, v in params.items()})
    for name in names or list(out):
        default, types, check, _ = PARAMS[name]
        v = out[name]
        if isinstance(v, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
            raise ParameterError(name, f"{v!r} is a bool", expected=allowed(name))
        if not isinstance(v, types):
            raise ParameterError(name, f"{v!r} has type {type(v).__name__}", expected=allowed(name))
        if isinstance(check, tuple) and v not in check:
            raise ParameterError(name, f"{v!r} is not allowed", expected=f"one of {check}")
        if callable(check) and not check(v):
            raise ParameterError(name, f"{v!r} {getattr(check, 'problem', 'is out of range')}",
                                 expected=allowed(name))
        if name in _ATLAS_PARAMS or name == "threshold":
            _check_fbn(name, v)
    if out["space"] != "volume":
        _mesh_params(out, set(params), names)
    if out["runs_dir"] is None:
        out["runs_dir"] = os.environ.get("LLMBRAIN_RUNS", str(REPO_RUNS))
    return Params(out, _token=_VALIDATED)


_ATLAS_PARAMS = ("atlas", "plant_atlas", "compare_atlas")


#: on a mesh, the atlases and the null that a parameter set leaves at its default
MESH_DEFAULTS = {"atlas": "TY17", "plant_atlas": "TY17", "compare_atlas": "TY7", "fbn_null": "spin"}


def _mesh_params(cfg: dict, given: set, names: list[str] | None) -> None:
    """On a mesh: surface atlases and the sphere's spin (the surrogate null needs a voxel
    grid; benchmarks/null_calibration.json calibrates the surface spin). What ``given`` leaves
    at its volume default takes :data:`MESH_DEFAULTS`; a volume-only choice given explicitly
    is an error naming it."""
    from . import surface

    mesh = cfg["space"]
    for name, value in MESH_DEFAULTS.items():
        if name not in given:
            cfg[name] = value
    for name in _ATLAS_PARAMS:
        if (names is None or name in names) and cfg[name] not in surface.surface_atlases():
            raise ParameterError(name, f"{cfg[name]!r} exists only in the volume, not on "
                                 f"{mesh}", expected=f"a surface atlas with space: {mesh}, "
                                 f"e.g. 'TY17' or 'TY7' (params/surface.yaml)")
    if (names is None or "fbn_null" in names) and cfg["fbn_null"] != "spin":
        raise ParameterError("fbn_null", f"{cfg['fbn_null']!r} on {mesh}",
                             expected="'spin' on a mesh: the surrogate null needs a voxel grid; "
                             "the spin of the sphere is the calibrated surface null "
                             "(benchmarks/null_calibration.json, space surface)")


def _check_fbn(name: str, value) -> None:
    """An atlas name the mapping knows and a threshold it understands, checked before any
    stage runs (not in the middle of the fMRI or mapping stage)."""
    from . import fbn

    if name == "threshold":
        fbn.parse_threshold(value)  # ParameterError naming 'threshold'
        return
    names = fbn.available_atlases()
    if value not in names:
        raise ParameterError(name, f"unknown atlas {value!r}", expected=f"one of {names}")


def collect(namespace: dict) -> dict:
    """The run parameters among a notebook's variables (its parameters cell), validated.

    On a mesh, a notebook's own volume defaults of the atlases and the null (its parameters
    cell states every default) count as not given, so they take :data:`MESH_DEFAULTS`; a
    value the run sets (papermill's injected cell) is kept, and checked."""
    params = {k: namespace[k] for k in PARAMS if k in namespace}
    if params.get("space", "volume") != "volume":
        params = {k: v for k, v in params.items()
                  if not (k in MESH_DEFAULTS and v == PARAMS[k].default)}
    return validate(params)


#: the parameter set the book runs on
DEFAULT_PARAMS = Path(__file__).resolve().parents[1] / "params" / "default.yaml"

#: the book's chapters: stage name -> notebook, in run order (a parameter file's sections)
CHAPTERS = {
    "stimulus": "00_stimulus.ipynb",
    "extraction": "01_extraction.ipynb",
    "dictionary": "02_dictionary.ipynb",
    "fmri": "03_fmri_data.ipynb",
    "encoding": "04_encoding.ipynb",
    "fbn": "05_fbn_mapping.ipynb",
    "cross_model": "06_cross_model.ipynb",
}


def load_params(path: str | os.PathLike | None) -> dict:
    """Read a parameter set; a missing file or a malformed section is an error naming it."""
    path = Path(path) if path else DEFAULT_PARAMS
    data = read_yaml(path, what="parameter file") or {}
    if not isinstance(data, dict):
        raise InputError(path, "top level is not a mapping", expected="sections: common, stimulus, ...")
    unknown = set(data) - {"common", *CHAPTERS}
    if unknown:
        raise InputError(path, f"unknown section(s) {sorted(unknown)}",
                         expected=f"common or one of {list(CHAPTERS)}")
    for sec, val in data.items():
        if val is not None and not isinstance(val, dict):
            raise InputError(path, "section is not a mapping", field=sec)
    for name in (data.get("common") or {}):  # never ignored: a typo would run the default
        if name not in PARAMS:
            raise unknown_parameter(path, "common", name, PARAMS, "a parameter of any stage")
    return {k: (v or {}) for k, v in data.items()}


def unknown_parameter(path, section: str, name, known, what: str) -> ParameterError:
    """The error for a name in a parameter file's section that is not a parameter there: it
    names the file, the section and the name, with the closest known name when there is one."""
    hint = suggest(name, known)
    return ParameterError(f"{section}.{name}", f"not {what} (in {path}, section '{section}'){hint}",
                          expected=None if hint else f"one of {sorted(known)}")
