"""The stages as cached artifacts: each function takes the run parameters, returns an Artifact.

A stage asks for its inputs by calling the stage before it with the same parameters (a cache
hit when that stage already ran), so every notebook can run on its own, and a changed
parameter recomputes exactly the stages that depend on it.

Every stage is declared once in :data:`TABLE` (:class:`Stage`: store name, build function,
parameters, upstream stages with their overrides, files, chapter); the sweep's graph, the
runner's chapters and the tests' stage lists are read from it, and so is the table of artifact
contracts below (each stage's files; its build function's docstring says what they hold).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from pathlib import Path
from typing import Callable

import pandas as pd

from . import config
from .progress import bar, enabled as _progress
from .store import Artifact, Store, sha256_file


def _store(cfg: Mapping) -> Store:
    return Store(config.validate(cfg).runs_dir)


def _pick(cfg: Mapping, names: tuple[str, ...]) -> dict:
    return {k: cfg[k] for k in names}


# --------------------------------------------------------------------------- 1. stimulus
STIMULUS_PARAMS = ("story", "narratives_dir", "tr_s", "shuffle_words", "seed")


def stimulus(cfg: Mapping) -> Artifact:
    """Word table on the TR grid (``words.tsv``) and the TR table (``trs.tsv``)."""
    from . import stimuli

    cfg = config.validate(cfg)
    params = _pick(cfg, STIMULUS_PARAMS)
    if cfg.story == stimuli.EMBEDDED_STORY:
        params["story_sha256"] = sha256_file(stimuli.STORY_FILE)
    elif cfg.narratives_dir:
        params["narratives_dir"] = str(Path(cfg.narratives_dir).resolve())
        # the alignment's content, not only its folder: an edited file is never reused
        params["alignment_sha256"] = sha256_file(stimuli.alignment_path(cfg.story, cfg.narratives_dir))
    scan_trs = _scan_trs_after_audio(cfg.story, cfg.tr_s)

    def build(out: Path) -> dict:
        words, trs, n_trs = stimuli.build_stimulus(
            cfg.story, tr_s=cfg.tr_s, narratives_dir=cfg.narratives_dir,
            shuffle_seed=cfg.seed if cfg.shuffle_words else None)
        info = {}
        if scan_trs is not None and n_trs > scan_trs:
            # the 10-TR tail after the last word runs past the end of the story's scan: the grid
            # stops with the scan (words after it, if any, stay as context, TR index >= n_trs)
            info["n_trs_uncapped"] = n_trs
            words, trs, n_trs = stimuli.build_stimulus(
                cfg.story, tr_s=cfg.tr_s, n_trs=scan_trs, narratives_dir=cfg.narratives_dir,
                shuffle_seed=cfg.seed if cfg.shuffle_words else None)
        words.to_csv(out / "words.tsv", sep="\t", index=False)
        trs.to_csv(out / "trs.tsv", sep="\t", index=False)
        return {"n_words": len(words), "n_trs": n_trs,
                "n_interpolated": int(words["interpolated"].sum()),
                "duration_s": float(words["offset"].max()), **info}

    return _store(cfg).get_or_create("stimulus", params, build, packages=("llmbrain_utils", "pandas"))


def _scan_trs_after_audio(story: str, tr_s: float) -> int | None:
    """Volumes of a Narratives story's scan from its audio onset on (the manifest's ``n_trs``
    and ``audio_onset_s``), or None for a story the manifest does not know or times it lacks."""
    from . import fetch, stimuli
    from .errors import ParameterError

    if story == stimuli.EMBEDDED_STORY:
        return None
    try:
        info = fetch._story_info(story)
    except ParameterError:
        return None
    if info.get("n_trs") is None or info.get("audio_onset_s") is None:
        return None
    return int(info["n_trs"]) - int(round(info["audio_onset_s"] / tr_s))


def read_words(art: Artifact) -> pd.DataFrame:
    return pd.read_csv(art.file("words.tsv"), sep="\t", keep_default_na=False,
                       dtype={"word": str, "norm": str})


def read_trs(art: Artifact) -> pd.DataFrame:
    return pd.read_csv(art.file("trs.tsv"), sep="\t", keep_default_na=False, dtype={"words": str})




# --------------------------------------------------------------------------- 2. extraction
EXTRACTION_PARAMS = ("model", "untrained", "seed", "units", "context", "context_tokens",
                     "word_pool", "tr_pool", "hrf", "tr_s")


def load_model(cfg: Mapping):
    from transformers.utils import logging as hf_logging

    from . import models

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()

    cfg = config.validate(cfg)
    return models.load_model(cfg.model, untrained=cfg.untrained, seed=cfg.seed)


def extraction(cfg: Mapping, loaded=None) -> Artifact:
    """Every AN's response per TR (``responses.npy``, T x N) and the AN table."""
    from . import extract, models
    from .errors import InputError

    cfg = config.validate(cfg)
    stim = stimulus(cfg)
    params = _pick(cfg, EXTRACTION_PARAMS)
    # the key needs only the model's fingerprint (hashes of its files, remembered by path, size
    # and mtime), so a cache hit never loads the model
    if loaded is not None:
        prints = {k: loaded.info[k] for k in ("weights_sha256", "files_sha256")}
    else:
        prints = models.fingerprint(cfg.model, untrained=cfg.untrained, seed=cfg.seed)
    params.update(prints)

    def build(out: Path) -> dict:
        nonlocal loaded
        loaded = loaded or load_model(cfg)
        if loaded.info["weights_sha256"] != prints["weights_sha256"]:
            raise InputError(f"model '{cfg.model}'", "its weight files changed after the run began",
                             field="weights_sha256", expected=prints["weights_sha256"])
        words = read_words(stim)
        res = extract.extract_responses(
            loaded, words, stim.info["n_trs"], tr_s=cfg.tr_s, units=cfg.units,
            context=None if cfg.context == "auto" else cfg.context, context_tokens=cfg.context_tokens,
            word_pool=cfg.word_pool, tr_pool=cfg.tr_pool, hrf=cfg.hrf,
            responses_out=out / "responses.npy", progress=_progress())
        res["an_table"].to_csv(out / "an_table.tsv", sep="\t", index=False)
        stats = dict(res["stats"])
        # seconds differ run to run: they go to the sidecar, so the files of two runs are identical
        timing = {k: stats.pop(k) for k in sorted(stats)
                  if k.endswith("_s") and k not in ("tr_s",)}  # forward_s, total_s, tokens_per_s...
        (out / "stats.json").write_text(_json(stats))
        return {"timing": timing,
                "n_trs": int(res["responses"].shape[0]), "n_ans": int(res["responses"].shape[1]),
                "n_constant": int(res["constant"].sum()), "n_silent_trs": int(res["silent"].sum()),
                "n_params": int(sum(p.numel() for p in loaded.model.parameters())),
                "model": {k: v for k, v in loaded.info.items() if k != "ffn_modules"}}

    return _store(cfg).get_or_create("extraction", params, build, inputs=[stim],
                                     packages=("llmbrain_utils", "numpy", "torch", "transformers",
                                               "tokenizers", "nilearn"))


def read_responses(art: Artifact, mmap: bool = True):
    import numpy as np

    return np.load(art.file("responses.npy"), mmap_mode="r" if mmap else None)


def read_an_table(art: Artifact) -> pd.DataFrame:
    return pd.read_csv(art.file("an_table.tsv"), sep="\t")


# --------------------------------------------------------------------------- 3. dictionary
DICTIONARY_PARAMS = ("k", "lam", "solver", "seed", "dict_iter")


def dictionary(cfg: Mapping) -> Artifact:
    """Sparse dictionary of all AN responses: ``D.npy`` (T x k), ``loadings.npz`` (k x N)."""
    from . import dictionary as dl

    cfg = config.validate(cfg)
    ext = extraction(cfg)

    def build(out: Path) -> dict:
        X = read_responses(ext)
        res = dl.learn_dictionary(X, k=cfg.k, lam=cfg.lam, solver=cfg.solver,
                                  seed=cfg.seed, n_iter=cfg.dict_iter,
                                  an_table=read_an_table(ext), n_threads=1, progress=_progress())
        summary = {k: v for k, v in res.summary().items() if k not in ("info",)}
        res.timings = {}  # seconds differ run to run: in the sidecar (summary), not in the files
        res.save(out)
        return summary

    return _store(cfg).get_or_create("dictionary", _pick(cfg, DICTIONARY_PARAMS), build,
                                     inputs=[ext], packages=("llmbrain_utils", "numpy", "scipy",
                                                             "spams-bin", "scikit-learn", "torch"))


def read_dictionary(art: Artifact, ext: Artifact | None = None):
    from . import dictionary as dl

    return dl.load_result(art.path, read_an_table(ext) if ext is not None else None)


# --------------------------------------------------------------------------- 4. fMRI data
FMRI_PARAMS = ("fmri_source", "space", "n_subjects", "resolution_mm", "snr", "plant_atlas", "seed",
               "n_perm", "tr_s")


def _twin_dataset(cfg: Mapping, stim: Artifact, out_dir: Path, *, snr, preproc: bool = True
                  ) -> tuple[Path, dict, dict]:
    """The synthetic twin of ``cfg`` (its ``space``, ``twin`` and ``plant_atlas``) written to
    ``out_dir`` at ``snr``: ``(root, twin info, load_dataset keywords)``."""
    cfg = config.validate(cfg)
    from . import fbn, fmri, surface

    n_trs, words = stim.info["n_trs"], read_words(stim)
    if cfg.space == "volume":
        mask = fmri.brain_mask(cfg.resolution_mm)
        atlas = fbn.load_atlas(cfg.plant_atlas, mask)
        twin_kw, info = fmri.twin_options(cfg.twin, atlas.label_img, mask,
                                          cfg.resolution_mm, cfg.seed)
        root = fmri.make_synthetic_dataset(
            out_dir, task=cfg.story, words=words, n_trs=n_trs, mask_img=mask,
            atlas_img=atlas.label_img, network_names=atlas.network_names,
            n_subjects=cfg.n_subjects, snr=snr, seed=cfg.seed, tr_s=cfg.tr_s,
            preproc=preproc, **twin_kw)
        return root, info, {"mask_img": mask, "resample": True}
    atlas = surface.load_surface_atlas(cfg.plant_atlas, cfg.space)
    twin_kw, info = surface.twin_planting(cfg.twin, atlas, cfg.seed)
    root = surface.make_surface_dataset(
        out_dir, task=cfg.story, words=words, n_trs=n_trs, atlas=atlas,
        n_subjects=cfg.n_subjects, snr=snr, seed=cfg.seed, tr_s=cfg.tr_s, **twin_kw)
    return root, info, {"kind": f"twin-{cfg.space}",
                        "columns": surface.mesh_columns(cfg.space, surface.HEMI_VERTICES[cfg.space]),
                        "manifest": surface.twin_manifest(cfg.space)}


# ------------------------------------------------------- the heavy stages' blocks (fan-out)
VOXEL_BLOCK = 16384
"""Voxels per block of the heavy stages' fan-out (:func:`parallel.map_blocks`). It is fixed,
so the numbers do not depend on how many workers run the blocks; the blocks' own inner chunks
(2,048 voxels of the ISC null, 8,192 of the permutations) divide it, so a stage's numbers are
those of one pass over all voxels."""


def _voxel_blocks(n_voxels: int) -> list[slice]:
    from .parallel import blocks_of

    return blocks_of(n_voxels, VOXEL_BLOCK)


def _isc_block(task: tuple) -> tuple:
    """ISC and its circular-shift null's p of one block of voxels of ``bold.npy``."""
    import numpy as np

    from . import fmri

    path, sl, n_perm, seed = task
    x = np.load(path, mmap_mode="r")[:, :, sl]  # read here: the block is all a worker holds
    return fmri.isc_loo(x)[0], fmri.isc_null(x, n_perm=n_perm, method="circular", seed=seed)


def _group_block(task: tuple):
    """The group test's values (:func:`encoding.group_null_block`: held-out r of the subjects'
    average BOLD, observed and on every surrogate) of one block of voxels of ``bold.npy``."""
    import numpy as np

    from . import encoding as enc

    D, path, sl, alphas, kw = task
    y = np.load(path, mmap_mode="r")[:, :, sl]
    return enc.group_null_block(D, y, alphas, statistic="average_bold", **kw)


ATOM_BLOCK = 8
"""Atoms per block of the mapping's surrogate null (:func:`parallel.map_blocks`); each atom's
surrogates are its own arithmetic, so any partition gives the same counts."""


def _surrogate_block(task: tuple):
    """The surrogate null's counts (and values) of one block of atoms
    (:func:`fbn.surrogate_counts_block`); the worker loads the atlas and draws the fields
    itself (once per process: the fields are kept)."""
    import numpy as np

    from . import fbn

    atlas_name, data, group_file, atoms, kw = task
    return fbn.surrogate_counts_block(np.load(group_file), load_atlas_on(atlas_name, data), atoms,
                                      **kw)


SPIN_BLOCK = 256
"""Rotations per block of the mapping's spin null: a multiple of the counts' chunks (64), so
the blocks' counts and values are those of one pass bit for bit."""


def _spin_block(task: tuple):
    """The spin null's counts (and values) over one block of rotations
    (:func:`fbn.spin_counts_block`); the rotations come as an array (in-process) or as the path
    of a ``.npy`` the block reads its rows from."""
    import numpy as np

    from . import fbn

    source, atlas_name, data, group_file, sl, kw = task
    perms = np.load(source, mmap_mode="r") if isinstance(source, str) else source
    return fbn.spin_counts_block(np.load(group_file), load_atlas_on(atlas_name, data), sl,
                                 perms=perms, **kw)


def _encode_block(task: tuple) -> dict:
    """The encoding of one subject's block of voxels: OLS maps, ridge CV scores and penalties."""
    import numpy as np

    from . import encoding as enc

    D, path, s, sl, kw = task
    y = np.load(path, mmap_mode="r")[s, :, sl]
    res = enc.encode_subjects(D, np.asarray(y), cv_model="ridge", **kw)
    return {"beta": res.beta[0], "t": res.t[0], "r2": res.r2[0], "cv_r": res.cv_r[0],
            "cv_alphas": res.cv_alphas[0], "dof": res.dof}


def _permutation_block(task: tuple) -> tuple:
    """One subject's block of voxels: in-sample R2's p against phase surrogates of the atoms
    (the surrogates depend on the seed only, not on the block)."""
    import numpy as np

    from . import encoding as enc

    D, path, s, sl, n_perm, seed, stop = task
    y = np.load(path, mmap_mode="r")[s, :, sl]
    return enc.permutation_pvalues(D, np.asarray(y), n_perm=n_perm, method="phase",
                                   statistic="r2_insample", seed=seed, return_n_null=True,
                                   stop_after=stop, return_draws=True)


def _subject_blocks(fn, path: str, shape: tuple, make, label: str) -> list[list]:
    """``fn`` over every (subject, voxel block) of ``bold.npy``; results per subject, in order."""
    from . import parallel

    S, _, V = shape
    sls = _voxel_blocks(V)
    tasks = [make(s, sl) for s in range(S) for sl in sls]
    out = parallel.map_blocks(fn, tasks, label=label, unit="block", progress=_progress())
    return [out[s * len(sls):(s + 1) * len(sls)] for s in range(S)]


def _scan_block(task: tuple):
    """One subject's scan of ``fmri_data``: written into its row of ``bold.npy`` (one
    ``os.pwrite`` of the row's bytes, not a shared memory map: blocks on other hosts of a
    shared file system write only their own bytes, never a page they share with a
    neighbouring row), or, with no ``bold.npy`` named, its tSNR (float32, V) returned. The
    load options come from a pickle that the stage wrote beside: a mask image or a mesh's
    columns are too big to send with every block."""
    import os
    import pickle

    import numpy as np

    from . import fmri

    options_file, scans, row, first, bold = task
    with open(options_file, "rb") as f:
        options = pickle.load(f)
    x = fmri.io.load_scan(scans, **options)
    if bold is None:
        return fmri.tsnr(x).astype(np.float32)
    rows = np.load(bold, mmap_mode="r")  # the header: the rows' shape and where they start
    fmri.io.check_row(rows.shape, x, Path(scans[0]), first)
    data = memoryview(np.ascontiguousarray(x, dtype=rows.dtype)).cast("B")
    fd = os.open(bold, os.O_WRONLY)
    try:  # close() flushes to a shared file system (close-to-open consistency)
        done = 0
        while done < len(data):
            done += os.pwrite(fd, data[done:], rows.offset + row * len(data) + done)
    finally:
        os.close(fd)
    return None


def _scan_blocks(out: Path, tasks: list[tuple], options: dict, label: str) -> list:
    """``_scan_block`` over ``(scans, row, first, bold)`` tasks, as blocks
    (:func:`parallel.map_blocks`), with ``options`` shipped in a file of the build folder
    (removed after)."""
    import pickle

    from . import parallel

    options_file = out / f".{label.replace(' ', '_')}_options.pkl"
    options_file.write_bytes(pickle.dumps(options, protocol=pickle.HIGHEST_PROTOCOL))
    try:
        return parallel.map_blocks(_scan_block, [(str(options_file), [str(q) for q in scans], row,
                                                  first, bold) for scans, row, first, bold in tasks],
                                   label=label, unit="subject", progress=_progress())
    finally:
        options_file.unlink(missing_ok=True)


def _write_bold(out: Path, scans: dict, options: dict) -> tuple:
    """Every subject's scan into its row of ``out/bold.npy`` (S x T x V float32), never more
    than a subject in memory: the first subject here (its T x V sizes the file, a memory map),
    the others one block each. An error (a subject of another T x V names its file) leaves a
    half-written file in the build folder, which the store removes: no artifact."""
    import numpy as np

    from . import fmri

    subs = list(scans)
    x = fmri.io.load_scan(scans[subs[0]], **options)
    path = out / "bold.npy"
    bold = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(len(subs), *x.shape))
    bold[0] = x
    bold.flush()
    shape = bold.shape
    del bold, x
    _scan_blocks(out, [(scans[s], i, subs[0], str(path)) for i, s in enumerate(subs) if i], options,
                 "BOLD")
    return shape


def fmri_data(cfg: Mapping) -> Artifact:
    """Every subject's masked BOLD (``bold.npy``, S x T x V), the mask, the ISC ceiling, tSNR.

    ``fmri_source: synthetic`` writes the synthetic twin (``dataset/``, Narratives layout, with
    ``truth.json``) and reads it back through the real loader; ``narratives`` reads the real
    data set from ``$LLMBRAIN_DATA`` (see ``python -m llmbrain_utils fetch``): every subject of
    the story in its ``participants.tsv`` whose scan the authors do not exclude, the scan cut
    where the story's audio starts (the manifest's ``audio_onset_s``: the word times are
    seconds from the audio's start) for as many TRs as the stimulus grid has.

    ``tsnr.npy`` (S x V, mean / SD over the same TRs) comes from the volumes before confound
    regression (kind ``preproc``; the cleaned volumes are residuals with mean ~0): always for
    the twin, for real data when those files are at hand (``fetch --kind preproc``); else it is
    absent and ``info["tsnr"]["reason"]`` says why.
    """
    import logging

    import numpy as np

    from . import fmri, surface
    from .errors import InputError

    log = logging.getLogger(__name__)
    cfg = config.validate(cfg)
    stim = stimulus(cfg.replace(shuffle_words=False))  # listeners heard the story in order
    params = _pick(cfg, FMRI_PARAMS)
    real: dict = {}
    mesh = None if cfg.space == "volume" else cfg.space
    if cfg.fmri_source == "synthetic":
        params["plant"] = [dict(p) for p in fmri.DEFAULT_PLANT]
        if cfg.twin != "ideal":  # the ideal twin's key is as before the parameter existed
            params["twin"] = cfg.twin
    else:
        import hashlib

        from . import fetch

        root = fetch.data_home()
        tsv = root / "participants.tsv"
        hint = (f"python -m llmbrain_utils fetch --story {cfg.story} --subjects all "
                f"(into $LLMBRAIN_DATA={root})")
        story = fetch.story_info(cfg.story, participants_tsv=tsv)
        onset_s = story["audio_onset_s"]
        if onset_s is None:
            raise InputError(fetch.MANIFEST, f"where the audio of {cfg.story!r} starts in the "
                             "scan is unknown", field=f"audio_onset_s.{cfg.story}",
                             expected="seconds from the first volume (check it on the data "
                                      "first, e.g. ISC with a word-rate regressor over lags)")
        if not tsv.is_file():
            raise InputError(tsv, "the data set's participants.tsv not found",
                             expected=f"the Narratives data set; {hint}")
        if not story["subjects"]:
            raise InputError(tsv, f"no subject with a usable scan of {cfg.story!r}",
                             field="task", expected="participants who heard the story")
        if not story["audio_onset_verified"]:
            log.warning("%s: audio_onset_s of %r is not verified", fetch.MANIFEST, cfg.story)
        start_tr = int(round(onset_s / cfg.tr_s))
        if abs(start_tr * cfg.tr_s - onset_s) > 1e-6:
            log.warning("%r: the audio starts %.3f s into the scan, %.3f s off the TR grid",
                        cfg.story, onset_s, onset_s - start_tr * cfg.tr_s)
        # the data's identity is part of the key: other files, another artifact
        ident = hashlib.sha256(tsv.read_bytes())
        for kind in ("fsaverage6",) if mesh else ("clean", "preproc"):
            for sub, ps in fmri.dataset_paths(root, cfg.story, story["subjects"], kind=kind).items():
                for q in ps:
                    st = q.stat() if q.is_file() else None
                    ident.update(f"{q.relative_to(root)}:{st and st.st_size}:{st and st.st_mtime_ns};".encode())
        params["data"] = {"home": str(root.resolve()), "files_sha256": ident.hexdigest()[:16]}
        real = {"root": root, "subjects": story["subjects"], "start_tr": start_tr,
                "scan_window": {"onset_tr": start_tr, "n_trs": stim.info["n_trs"],
                                "audio_onset_s": onset_s, "duration_tr": story.get("duration_tr"),
                                "story_onset_tr": story.get("onset_tr")}}

    def build(out: Path) -> dict:
        mask = None if mesh else fmri.brain_mask(cfg.resolution_mm)
        n_trs = stim.info["n_trs"]
        info, start_tr = {"space": cfg.space}, 0
        if cfg.fmri_source == "synthetic":
            root, info["twin"], load_kw = _twin_dataset(cfg, stim, out / "dataset", snr=cfg.snr)
            subjects = [f"{i:03d}" for i in range(1, cfg.n_subjects + 1)]
            info["truth"] = fmri.read_truth(root)
        else:
            root, subjects, start_tr = real["root"], real["subjects"], real["start_tr"]
            info["scan_window"] = real["scan_window"]
            load_kw = ({"kind": "fsaverage6",
                        "columns": surface.mesh_columns(mesh, surface.HEMI_VERTICES["fsaverage6"])}
                       if mesh else {"mask_img": mask, "resample": True})
        scans, options = fmri.io.dataset_scans(root, cfg.story, subjects, tr_s=cfg.tr_s,
                                               start_tr=start_tr, n_trs=n_trs, **load_kw)
        subjects = list(scans)
        shape = _write_bold(out, scans, options)  # a subject in memory at a time
        if mesh:
            info["mesh"] = {"name": mesh, "n_vertices": int(shape[2]),
                            "columns": "cortex vertices (no medial wall), left then right, as "
                                       "llmbrain_utils.surface's maps"}
        else:
            mask.to_filename(out / "mask.nii.gz")
        pd.DataFrame({"subject": subjects}).to_csv(out / "subjects.tsv", sep="\t", index=False)
        # from here on the blocks read bold.npy: memory bounded by a block
        from . import parallel

        done = parallel.map_blocks(_isc_block, [(str(out / "bold.npy"), sl, cfg.n_perm, cfg.seed)
                                                for sl in _voxel_blocks(shape[2])],
                                   label="ISC null", unit="block", progress=_progress())
        isc = np.concatenate([d[0] for d in done])
        p = np.concatenate([d[1] for d in done])
        np.save(out / "isc.npy", isc.astype(np.float32))
        np.save(out / "isc_p.npy", p.astype(np.float32))
        keep = fmri.isc_mask(p)
        info.update(n_subjects=len(subjects), n_trs=int(shape[1]), n_voxels=int(shape[2]),
                    isc_median=float(np.median(isc)), isc_max=float(np.max(isc)),
                    isc_mask_voxels=int(keep.sum()))
        if mesh:
            info["tsnr"] = {"kind": None, "reason": "no surface series before confound "
                            "regression (Narratives' surface kinds are cleaned; the surface "
                            "twin writes only those)"}
            return info
        # tSNR from the volumes before confound regression, same subjects, TRs and grid
        raw_paths = fmri.dataset_paths(root, cfg.story, subjects, kind="preproc")
        missing = [q for sub in subjects for q in raw_paths.get(sub, [None]) if q is None or not q.is_file()]
        if missing:
            info["tsnr"] = {"kind": None, "reason": f"{len(missing)} of {len(subjects)} preproc "
                            f"scan(s) not at hand (first: {missing[0]}); fetch them with --kind preproc"}
        else:
            raw_scans, raw_options = fmri.io.dataset_scans(
                root, cfg.story, subjects, mask, kind="preproc", tr_s=cfg.tr_s, start_tr=start_tr,
                n_trs=n_trs, zscore=False, resample=True)
            ts = np.stack(_scan_blocks(out, [(raw_scans[sub], None, None, None) for sub in subjects],
                                       raw_options, "tSNR"))  # a subject per block (memory)
            np.save(out / "tsnr.npy", ts)
            brain = ts.mean(axis=0)
            info["tsnr"] = {"kind": "preproc", "file": "tsnr.npy", "shape": list(ts.shape),
                            "median": float(np.median(brain)),
                            "p5": float(np.percentile(brain, 5)), "p95": float(np.percentile(brain, 95))}
        return info

    return _store(cfg).get_or_create("fmri", params, build, inputs=[stim],
                                     packages=("llmbrain_utils", "numpy", "scipy", "nilearn", "nibabel"))


def read_bold(art: Artifact, mmap: bool = True):
    import numpy as np

    return np.load(art.file("bold.npy"), mmap_mode="r" if mmap else None)


def read_isc_mask(art: Artifact, alpha: float):
    """The fMRI artifact's voxels with significant ISC at FDR ``alpha`` (bool, V)."""
    import numpy as np

    from . import fmri

    return fmri.isc_mask(np.load(art.file("isc_p.npy")), alpha)


def read_space(art: Artifact) -> str:
    """``"volume"`` or the mesh of an fMRI artifact's columns."""
    return art.info.get("space", "volume")


def read_mask(art: Artifact):
    """The brain mask of a volume run's fMRI artifact (its columns are the mask's voxels)."""
    import nibabel as nib

    from .errors import InputError

    if read_space(art) != "volume":
        raise InputError(art.path, f"a run on the mesh {read_space(art)} has no brain mask",
                         field="space", expected="stages.read_space(art) and "
                         "surface.load_surface_atlas for a mesh")
    return nib.load(art.file("mask.nii.gz"))


def read_where(art: Artifact):
    """Where an fMRI artifact's columns live: its brain mask image, or its mesh's name (what
    the plotting functions take as ``where``)."""
    return read_mask(art) if read_space(art) == "volume" else read_space(art)


def load_atlas_on(name: str, data: Artifact):
    """Atlas ``name`` on the columns of an fMRI artifact: its voxels or its mesh's vertices."""
    from . import fbn, surface

    space = read_space(data)
    if space == "volume":
        return fbn.load_atlas(name, read_mask(data))
    return surface.load_surface_atlas(name, space)


def planting_labels(cfg: Mapping, data: Artifact):
    """Each column's label in the synthetic twin's planting atlas: ``plant_atlas`` itself (the
    ideal twin) or its deformed copy (``twin: realistic``), as the fMRI stage planted it."""
    import numpy as np

    from . import fmri, surface

    cfg = config.validate(cfg)
    atlas = load_atlas_on(cfg.plant_atlas, data)
    if read_space(data) != "volume":
        kw, _ = surface.twin_planting(cfg.twin, atlas, cfg.seed)
        return np.asarray(kw.get("planting_labels", atlas.info["labels"]))
    mask = read_mask(data)
    kw, _ = fmri.twin_options(cfg.twin, atlas.label_img, mask, cfg.resolution_mm, cfg.seed)
    return np.asarray(kw.get("planting_img", atlas.label_img).dataobj)[np.asarray(mask.dataobj) > 0]


def atlas_labels(atlas):
    """Each column's network label (1..n, 0 = none; the largest z for soft atlases)."""
    import numpy as np

    from . import surface

    if surface.is_surface_atlas(atlas):
        return np.asarray(atlas.info["labels"])
    return np.asarray(atlas.label_img.dataobj)[np.asarray(atlas.mask_img.dataobj) > 0]


# --------------------------------------------------------------------------- 5. encoding
ENCODING_PARAMS = ("n_folds", "trim", "alpha")


def encoding(cfg: Mapping) -> Artifact:
    """Atoms as regressors of every voxel of every subject: maps, held-out scores, group maps.

    The permutation tests of the fits are their own stage (:func:`encoding_tests`): the
    mapping and the model comparison need only the maps and the scores."""
    import numpy as np

    from . import encoding as enc

    cfg = config.validate(cfg)
    dic, data = dictionary(cfg), fmri_data(cfg)

    def build(out: Path) -> dict:
        D = np.load(dic.file("D.npy"))
        path, shape = str(data.file("bold.npy")), read_bold(data).shape
        kw = dict(n_folds=cfg.n_folds, trim=cfg.trim)
        parts = _subject_blocks(_encode_block, path, shape,
                                lambda s, sl: (D, path, s, sl, kw), "encoding blocks")
        res = SimpleNamespace(**{name: np.stack([np.concatenate([b[name] for b in subj], axis=-1)
                                                 for subj in parts])
                                 for name in ("beta", "t", "r2", "cv_r", "cv_alphas")},
                              dof=parts[0][0]["dof"])
        np.save(out / "beta.npy", res.beta)
        np.save(out / "t.npy", res.t)
        np.save(out / "r2.npy", res.r2)
        np.save(out / "cv_r.npy", res.cv_r)
        np.save(out / "cv_alphas.npy", np.asarray(res.cv_alphas, np.float32))
        g = enc.group_maps(res.beta)
        np.save(out / "group_t.npy", g.t.astype(np.float32))
        np.save(out / "group_mean.npy", g.mean.astype(np.float32))
        np.save(out / "sign_agreement.npy", g.sign_agreement.astype(np.float32))
        np.save(out / "consistency.npy", np.asarray(g.consistency, np.float32))
        isc = np.load(data.file("isc.npy"))
        isc_keep = read_isc_mask(data, cfg.alpha)
        mean_cv = res.cv_r.mean(0)
        # random-effects test of held-out r across subjects (Fisher z, one-sided), FDR over voxels
        from scipy.stats import ttest_1samp

        z = np.arctanh(np.clip(res.cv_r.astype(np.float64), -0.999, 0.999))
        p_group = ttest_1samp(z, 0.0, axis=0, alternative="greater").pvalue
        np.save(out / "p_group_cv.npy", p_group.astype(np.float32))
        group_sig = enc.fdr(p_group, cfg.alpha)[0]
        return {"dof": int(res.dof),
                "median_r2": float(np.median(res.r2)), "max_group_r2": float(res.r2.mean(0).max()),
                "mean_cv_r_in_isc_mask": float(mean_cv[isc_keep].mean()) if isc_keep.any() else None,
                "mean_cv_r_whole_brain": float(mean_cv.mean()),
                "ceiling_normalised_in_isc_mask":
                    float(np.nanmean(enc.normalise_by_ceiling(
                        mean_cv, enc.noise_ceiling(isc, res.cv_r.shape[0]))[isc_keep]))
                    if isc_keep.any() else None,
                "group_significant_cv_voxels": int(group_sig.sum())}

    return _store(cfg).get_or_create("encoding", _pick(cfg, ENCODING_PARAMS), build,
                                     inputs=[dic, data],
                                     packages=("llmbrain_utils", "numpy", "scipy", "himalaya"))


ENCODING_TEST_PARAMS = ("n_perm", "group_perm", "alpha", "seed")


def encoding_tests(cfg: Mapping) -> Artifact:
    """Permutation tests of the encoding's fits: ``p_r2.npy`` (S x V: each subject's in-sample
    R2 against phase-randomised surrogates of the atoms), and the group test of held-out r with one null for
    all subjects: ``group_avg_r.npy``, ``group_avg_alphas.npy`` (folds x V: the geometric mean of
    the subjects' penalties), ``p_group_avg.npy``, ``p_group_avg_isc.npy`` (V),
    ``group_avg_sig.npy`` / ``group_avg_sig_isc.npy`` (V bool, FDR).

    ``perm_stop`` (h) makes the per-subject test sequential (Besag & Clifford 1991): a voxel's
    surrogates stop once h of them reach its R2, p = h / draws; every voxel with p below
    (h + 1) / (n_perm + 1) keeps the fixed test's p, and ``info["p_r2_null"]`` says how many
    draws were used."""
    import numpy as np

    from . import encoding as enc
    from . import parallel

    cfg = config.validate(cfg)
    enc_art, dic, data = encoding(cfg), dictionary(cfg), fmri_data(cfg)

    def build(out: Path) -> dict:
        D = np.load(dic.file("D.npy"))
        bold = read_bold(data)  # a memory map: the blocks and the group test read what they need
        path = str(data.file("bold.npy"))
        # phase-randomised surrogates of the atoms (the same phases for every atom: their
        # spectra and cross-spectra kept): independent draws, so n_perm really gives n_perm null
        # values and p down to 1 / (1 + n_perm); circular shifts (T = 326: 261 distinct shifts,
        # p >= 1/262) are too coarse for BH over thousands of voxels
        p_null = "phase"
        parts = _subject_blocks(_permutation_block, path, bold.shape,
                                lambda s, sl: (D, path, s, sl, cfg.n_perm, cfg.seed + s,
                                               cfg.perm_stop), "permutation tests")
        p = np.stack([np.concatenate([b[0] for b in subj]) for subj in parts]).astype(np.float32)
        n_null = sorted({int(b[1]) for subj in parts for b in subj})
        draws = np.stack([np.concatenate([b[2] for b in subj]) for subj in parts])
        np.save(out / "p_r2.npy", p)
        sig = np.stack([enc.fdr(p[s], cfg.alpha)[0] for s in range(p.shape[0])])
        isc_keep = read_isc_mask(data, cfg.alpha)
        # group test with one null for all subjects: held-out r of the subjects' average BOLD
        # (ridge; per fold and voxel the geometric mean of the subjects' penalties, chosen by
        # their nested CV, held fixed) against phase surrogates of the BOLD; FDR over the whole
        # brain and, as its own family, over the ISC mask
        folds = enc.contiguous_folds(bold.shape[1], cfg.n_folds, cfg.trim)
        g_alphas = np.exp(np.log(np.load(enc_art.file("cv_alphas.npy")).astype(np.float64)).mean(0))
        # enc.group_cv_test in blocks of voxels (each reads its block of every subject)
        kw = dict(null="phase", n_perm=cfg.group_perm, seed=cfg.seed, folds=folds)
        V = bold.shape[2]
        vals = parallel.map_blocks(_group_block, [(D, path, sl, g_alphas[:, sl], kw)
                                                  for sl in _voxel_blocks(V)],
                                   label="group test", unit="block", progress=_progress())
        gt = enc.group_test_result(np.concatenate(vals, axis=-1), g_alphas[None], np.arange(V), V,
                                   statistic="average_bold", null="phase", tail="pooled")
        p_isc = gt.pvalues(isc_keep) if isc_keep.any() else np.full(gt.p.shape, np.nan)
        gsig, gsig_isc = enc.fdr(gt.p, cfg.alpha)[0], enc.fdr(p_isc, cfg.alpha)[0]
        np.save(out / "group_avg_r.npy", gt.observed.astype(np.float32))
        np.save(out / "group_avg_alphas.npy", g_alphas.astype(np.float32))
        np.save(out / "p_group_avg.npy", gt.p.astype(np.float32))
        np.save(out / "p_group_avg_isc.npy", p_isc.astype(np.float32))
        np.save(out / "group_avg_sig.npy", gsig)
        np.save(out / "group_avg_sig_isc.npy", gsig_isc)
        return {"share_significant_voxels": float(sig.mean()),
                "p_r2_null": {"method": p_null, "statistic": "r2_insample",
                              "description": "phase-randomised surrogates of the atoms (the same "
                                             "random phases for all atoms), per subject",
                              "n_null": n_null[0] if len(n_null) == 1 else n_null,
                              "min_p": 1.0 / (1 + min(n_null)),
                              "stop_after": cfg.perm_stop,
                              "mean_draws": float(draws.mean()),
                              "share_stopped_early": float((draws < max(n_null)).mean())},
                "group_test": {"statistic": "held-out r of the subjects' average BOLD",
                               "null": f"{gt.n_null} phase surrogates of the BOLD, the same for "
                                       "every subject and voxel", "tail": gt.tail,
                               "significant_voxels": int(gsig.sum()),
                               "significant_voxels_isc_mask": int(gsig_isc.sum()),
                               "isc_mask_voxels": int(isc_keep.sum())}}

    params = _pick(cfg, ENCODING_TEST_PARAMS)
    if cfg.perm_stop is not None:  # the fixed test's key is as before the parameter existed
        params["perm_stop"] = cfg.perm_stop
    return _store(cfg).get_or_create("encoding_tests", params, build,
                                     inputs=[enc_art, dic, data],
                                     packages=("llmbrain_utils", "numpy", "scipy", "himalaya"))


def encoding_recovery(cfg: Mapping) -> Artifact:
    """The encoding's group tests against the synthetic twin's planted truth: ``recovery.tsv``.

    Planted voxels are those of the networks that carry a planted signal (``truth.json``); the
    rest (unplanted networks, voxels outside every network) carry noise only. At the twin's SNR:
    the atoms as regressors (the encoding stage's p-values: the group test over the whole brain
    and over the ISC mask, and the t test of the subjects' r), and as the test's positive control
    the planted sources themselves (``truth_sources.tsv``). At ``recovery_snrs``: the atoms'
    group test on the twin made again with the same seed, hence the same noise (about 20 s
    each; the default twin's ISC mask, and its penalties held fixed: chosen without the new
    data, so the test stays valid).
    Real data (``fmri_source: narratives``) have no truth: a ParameterError.
    """
    import shutil
    import tempfile

    import numpy as np

    from . import encoding as enc, fmri
    from .errors import ParameterError

    cfg = config.validate(cfg)
    if cfg.fmri_source != "synthetic":
        raise ParameterError("fmri_source", f"is {cfg.fmri_source!r}: real data have no planted "
                             "truth", expected="'synthetic' for the recovery of the group test")
    enc_art, data, dic = encoding(cfg), fmri_data(cfg), dictionary(cfg)
    tests = encoding_tests(cfg)
    stim = stimulus(cfg.replace(shuffle_words=False))
    params = _pick(cfg, ("recovery_snrs", "group_perm", "alpha", "n_folds", "trim", "seed",
                         "plant_atlas"))
    if cfg.twin != "ideal":  # the other SNRs' twins are made as the default one
        params["twin"] = cfg.twin

    def build(out: Path) -> dict:
        truth = data.info["truth"]
        labels = atlas_labels(load_atlas_on(cfg.plant_atlas, data))
        live = fmri.live_plants(truth)  # a plant on a constant source carries no signal
        planted = np.isin(labels, [p["label"] for p in live])
        nets = list(dict.fromkeys(p["network"] for p in live))
        sources = pd.read_csv(data.file("dataset/truth_sources.tsv"), sep="\t", index_col=0)
        isc_keep = read_isc_mask(data, cfg.alpha)
        D = np.load(dic.file("D.npy"))
        bold = read_bold(data, mmap=False)
        folds = enc.contiguous_folds(bold.shape[1], cfg.n_folds, cfg.trim)
        kw = dict(statistic="average_bold", null="phase", n_perm=cfg.group_perm,
                  seed=cfg.seed, folds=folds, trim=cfg.trim)

        def rows_for(snr, name, tests):
            rows = []
            for test, p in tests:
                rej = enc.fdr(p, cfg.alpha)[0]
                rows.append({"snr": snr, "regressors": name, "test": test,
                             **enc.recovery_rates(rej, planted, p, cfg.alpha),
                             **{f"sensitivity {n}": float(rej[(labels == truth["networks"][n]["label"])
                                                              & np.isfinite(p)].mean()) for n in nets}})
            return rows

        def group(g):
            return [("group average BOLD, whole brain", g.p)] + (
                [("group average BOLD, ISC mask", g.pvalues(isc_keep))] if isc_keep.any() else [])

        snr0 = float(truth["snr"])
        p_t = np.load(enc_art.file("p_group_cv.npy")).astype(np.float64)
        rows = rows_for(snr0, "atoms", [
            ("group average BOLD, whole brain", np.load(tests.file("p_group_avg.npy")).astype(np.float64)),
            ("group average BOLD, ISC mask", np.load(tests.file("p_group_avg_isc.npy")).astype(np.float64)),
            ("t test of subjects' r, whole brain", p_t),
            ("t test of subjects' r, ISC mask", np.where(isc_keep, p_t, np.nan))])
        gs = enc.group_cv_test(sources.to_numpy(), bold, **kw)  # its penalties: nested CV
        rows += rows_for(snr0, "planted sources", group(gs))
        a_atoms = np.load(tests.file("group_avg_alphas.npy")).astype(np.float64)
        for snr in bar(cfg.recovery_snrs, "recovery twins", unit="twin"):
            tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=".recovery-"))
            try:
                root, _, load_kw = _twin_dataset(cfg, stim, tmp / "ds", snr=float(snr),
                                                 preproc=False)
                b, _ = fmri.load_dataset(root, cfg.story, truth["subjects"],
                                         n_trs=stim.info["n_trs"], tr_s=cfg.tr_s, **load_kw)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            rows += rows_for(float(snr), "atoms", group(enc.group_cv_test(D, b, alphas=a_atoms, **kw)))
        table = pd.DataFrame(rows)
        table.to_csv(out / "recovery.tsv", sep="\t", index=False)
        pick = table[(table.snr == snr0) & (table.regressors == "atoms")]
        return {"planted_voxels": int(planted.sum()), "outside_voxels": int((~planted).sum()),
                "snr": snr0, "snrs": sorted({snr0, *map(float, cfg.recovery_snrs)}),
                "atoms_default_snr": {r.test: {"sensitivity": round(r.sensitivity, 4),
                                               "fpr": round(r.fpr, 4)} for r in pick.itertuples()}}

    return _store(cfg).get_or_create("encoding_recovery", params, build,
                                     inputs=[enc_art, tests, data, dic],
                                     packages=("llmbrain_utils", "numpy", "scipy", "himalaya"))


# --------------------------------------------------------------------------- 6. FBN mapping
FBN_PARAMS = ("atlas", "threshold", "fbn_perm", "fbn_null", "fbn_tail", "alpha", "seed")


def fbn_mapping(cfg: Mapping) -> Artifact:
    """Each atom's group t map against the networks of an atlas: ``couplings.tsv``."""
    import numpy as np

    from . import fbn

    cfg = config.validate(cfg)
    enc_art, data = encoding(cfg), fmri_data(cfg)

    def build(out: Path) -> dict:
        atlas = load_atlas_on(cfg.atlas, data)
        perms = (atlas.spin_permutations(cfg.fbn_perm, cfg.seed) if cfg.fbn_null == "spin"
                 else None)
        group = np.load(enc_art.file("group_t.npy"))
        kw = dict(threshold=cfg.threshold, n_perm=cfg.fbn_perm, seed=cfg.seed, tail=cfg.fbn_tail)
        null_counts = _mapping_null(cfg, data, atlas, group, enc_art.file("group_t.npy"), perms,
                                    kw, out.parent)
        table = fbn.couple_atoms(group, atlas, alpha=cfg.alpha, null=cfg.fbn_null, perms=perms,
                                 null_counts=null_counts, **kw)
        table.to_csv(out / "couplings.tsv", sep="\t", index=False)
        c = table[table.coupled]
        return {"n_couplings": int(len(c)), "n_atoms_coupled": int(c.atom.nunique()),
                "n_networks_involved": int(c.network.nunique()),
                "networks": atlas.network_names, "statistic": table.attrs["statistic"]}

    return _store(cfg).get_or_create("fbn", _pick(cfg, FBN_PARAMS), build, inputs=[enc_art, data],
                                     packages=("llmbrain_utils", "numpy", "scipy", "nilearn"))


def _mapping_null(cfg, data: Artifact, atlas, group, group_file: Path, perms, kw: dict,
                  scratch: Path) -> tuple:
    """The mapping's null counted in Dask blocks (:func:`parallel.map_blocks`): the surrogate
    null per block of ``ATOM_BLOCK`` atoms (each worker draws the fields once), the spin null
    per block of ``SPIN_BLOCK`` rotations (the rotations drawn here once; on a cluster the
    blocks read theirs from a memory-mapped copy in a temporary folder under ``scratch``).
    Returns ``couple_atoms``' ``null_counts``: its counts and values bit for bit, whatever the
    partition."""
    import tempfile

    import numpy as np

    from . import parallel

    k, n, P = group.shape[0], atlas.n_networks, cfg.fbn_perm
    gpd = cfg.fbn_tail == "gpd"
    if cfg.fbn_null == "surrogate":
        blocks = parallel.blocks_of(k, ATOM_BLOCK)
        parts = parallel.map_blocks(
            _surrogate_block, [(cfg.atlas, data, group_file, np.arange(k)[b], kw) for b in blocks],
            label="surrogate null", unit="block", progress=_progress())
        counts = np.zeros((2, k, n))
        values = np.zeros((2, k, P, n), np.float32) if gpd else None
        for b, (c, v) in zip(blocks, parts):
            counts[:, b] = c
            if gpd:
                values[:, b] = v
        return counts.reshape(2 * k, n), (values.reshape(2 * k, P, n) if gpd else None)

    def spin(source) -> list:
        return parallel.map_blocks(
            _spin_block, [(source, cfg.atlas, data, group_file, sl, kw)
                          for sl in parallel.blocks_of(P, SPIN_BLOCK)],
            label="spin null", unit="block", progress=_progress())

    if parallel.current() is None:
        parts = spin(perms)
    else:  # the workers read their rotations from a file
        with tempfile.TemporaryDirectory(dir=scratch, prefix=".fbn-") as tmp:
            np.save(Path(tmp) / "perms.npy", perms)
            parts = spin(str(Path(tmp) / "perms.npy"))
    counts = np.sum([c for c, _ in parts], axis=0)
    return counts, (np.concatenate([v for _, v in parts], axis=1) if gpd else None)


def read_couplings(art: Artifact) -> pd.DataFrame:
    return pd.read_csv(art.file("couplings.tsv"), sep="\t")


# --------------------------------------------------------------------------- 7. coupling bootstrap
BOOTSTRAP_PARAMS = (*FBN_PARAMS, "n_boot")
#: the spin null of the last (store, data, atlas, rotations) in this process: every model of a
#: comparison, computed one after another in one worker, reuses it
_SPIN_NULL: dict = {}


def coupling_bootstrap(cfg: Mapping) -> Artifact:
    """Subject-bootstrap intervals of a model's coupling counts (:func:`compare.bootstrap_couplings`,
    the mapping stage's rule and rotations): ``per_network.tsv`` (network, sign, observed,
    boot_mean, ci_low, ci_high), ``per_model.tsv`` (networks_involved, atoms_coupled, couplings),
    ``observed.tsv`` (the rule's full-sample decisions, equal to the mapping stage's),
    ``draws.npz`` (every resample's counts)."""
    import numpy as np

    from . import compare, fbn
    from .errors import InputError, ParameterError

    cfg = config.validate(cfg)
    enc_art, data, mapped = encoding(cfg), fmri_data(cfg), fbn_mapping(cfg)

    def build(out: Path) -> dict:
        if (cfg.fbn_null, cfg.fbn_tail) == ("spin", "gpd"):
            raise ParameterError("fbn_tail", "'gpd' with fbn_null 'spin'",
                                 expected="fbn_tail: none with the spin null for the coupling "
                                 "bootstrap (it repeats the test on every resample and keeps the "
                                 "tail fit for the surrogate null), or fbn_null: surrogate")
        if mapped.info.get("statistic", "dice") != "dice":
            raise InputError(mapped.path / "couplings.tsv", f"statistic {mapped.info['statistic']!r}",
                             field="statistic", expected="'dice': the coupling bootstrap repeats the Dice test")
        group = np.load(enc_art.file("group_t.npy"))
        if cfg.fbn_null == "surrogate":  # this model's own fields, as the mapping stage drew them
            null = fbn.SurrogateNull(load_atlas_on(cfg.atlas, data), group,
                                     cfg.fbn_perm, cfg.seed)
        else:
            ck = (cfg.runs_dir, data.key, cfg.atlas, cfg.fbn_perm, cfg.seed)
            if ck not in _SPIN_NULL:
                _SPIN_NULL.clear()
                atlas = load_atlas_on(cfg.atlas, data)
                _SPIN_NULL[ck] = compare.SpinNull(atlas, cfg.fbn_perm, cfg.seed,
                                                  perms=atlas.spin_permutations(cfg.fbn_perm,
                                                                                cfg.seed))
            null = _SPIN_NULL[ck]
        boot = compare.bootstrap_couplings(
            np.load(enc_art.file("beta.npy")), null.atlas, threshold=cfg.threshold,
            n_perm=cfg.fbn_perm, alpha=cfg.alpha, seed=cfg.seed, n_boot=cfg.n_boot,
            null=null, group_maps=group, tail=cfg.fbn_tail)
        if boot.observed_table.coupled.tolist() != read_couplings(mapped).coupled.tolist():
            raise RuntimeError(f"the bootstrap's full-sample decisions differ from {mapped.path}")
        boot.per_network.to_csv(out / "per_network.tsv", sep="\t", index=False)
        boot.per_model.to_csv(out / "per_model.tsv", sep="\t")
        boot.observed_table.to_csv(out / "observed.tsv", sep="\t", index=False)
        np.savez(out / "draws.npz", **boot.draws)
        intervals = {f"{m}_{c}": float(boot.per_model.loc[m, c]) for m in boot.per_model.index
                     for c in ("ci_low", "ci_high")}
        return {**intervals, "settings": boot.info}

    return _store(cfg).get_or_create("coupling_bootstrap", _pick(cfg, BOOTSTRAP_PARAMS), build,
                                     inputs=[enc_art, data, mapped],
                                     packages=("llmbrain_utils", "numpy", "scipy", "nilearn"))


def read_bootstrap(art: Artifact):
    """The :class:`compare.CouplingBootstrap` of a ``coupling_bootstrap`` artifact."""
    import numpy as np

    from .compare import CouplingBootstrap

    with np.load(art.file("draws.npz")) as z:
        draws = {k: z[k] for k in z.files}
    return CouplingBootstrap(per_network=pd.read_csv(art.file("per_network.tsv"), sep="\t"),
                             per_model=pd.read_csv(art.file("per_model.tsv"), sep="\t", index_col=0),
                             draws=draws, observed_table=pd.read_csv(art.file("observed.tsv"), sep="\t"),
                             info=dict(art.info.get("settings", {})))


def explorer_figures(cfg: Mapping, name: str = "") -> Artifact:
    """The atom explorer's figures of one model (:func:`explorer.atom_pngs`, default options;
    ``name`` is written on them): ``figures/atom_000.png`` ... one per atom. Drawing them takes
    about a second per atom; :func:`read_explorer_figures` gives them back for
    ``explorer.atom_explorer(..., pngs=...)``."""
    import numpy as np

    from . import explorer

    cfg = config.validate(cfg)
    if not isinstance(name, str):
        from .errors import ParameterError

        raise ParameterError("name", f"{name!r}", expected="a string (the model's display name)")
    if cfg.space != "volume":
        from .errors import ParameterError

        raise ParameterError("space", f"{cfg.space!r}: the atom explorer draws glass brains "
                             "of the volume", expected="'volume' (on a mesh the mapping "
                             "chapter's surface figures show each atom)")
    ext, dic, enc_art = extraction(cfg), dictionary(cfg), encoding(cfg)
    data, mapped = fmri_data(cfg), fbn_mapping(cfg)

    def build(out: Path) -> dict:
        res = read_dictionary(dic, ext)
        model = dict(D=res.D, group_t=np.load(enc_art.file("group_t.npy")), mask_img=read_mask(data),
                     loadings=res.A, layers=read_an_table(ext).layer.to_numpy(),
                     couplings=read_couplings(mapped))
        pngs = explorer.atom_pngs(model, name=name, tr_s=cfg.tr_s)
        (out / "figures").mkdir()
        for i, png in enumerate(pngs):
            (out / "figures" / f"atom_{i:03d}.png").write_bytes(png)
        return {"n_atoms": len(pngs), "name": name}

    return _store(cfg).get_or_create("explorer_figures", {**_pick(cfg, ("tr_s",)), "name": name},
                                     build, inputs=[ext, dic, enc_art, data, mapped],
                                     packages=("llmbrain_utils", "numpy", "matplotlib", "nilearn"))


def read_explorer_figures(art: Artifact) -> list[bytes]:
    """The PNGs of an ``explorer_figures`` artifact, in atom order."""
    return [art.file(f"figures/atom_{i:03d}.png").read_bytes() for i in range(art.info["n_atoms"])]


def _json(obj) -> str:
    import json

    from .store import _jsonable

    return json.dumps(_jsonable(obj), indent=1, sort_keys=True)


def dictionary_sweep(cfg: Mapping, ks=(16, 32, 64, 128), lams=(0.05, 0.1, 0.2), seeds=(0, 1)) -> Artifact:
    """R2, sparsity and stability (two seeds, two halves of the ANs) over k x lambda."""
    from . import dictionary as dl

    cfg = config.validate(cfg)
    ext = extraction(cfg)
    params = dict(_pick(cfg, ("solver", "dict_iter")), ks=list(ks), lams=list(lams), seeds=list(seeds))

    def build(out: Path) -> dict:
        table = dl.sweep(read_responses(ext), ks=ks, lams=lams, solver=cfg.solver, seeds=seeds,
                         n_iter=cfg.dict_iter, n_threads=1)
        table.to_csv(out / "sweep.tsv", sep="\t", index=False)
        return {"n_fits": int(len(table))}

    return _store(cfg).get_or_create("dictionary_sweep", params, build, inputs=[ext],
                                     packages=("llmbrain_utils", "numpy", "scipy", "spams-bin"))


def dictionary_chance(cfg: Mapping, n_draws: int = 5) -> Artifact:
    """Chance levels of the dictionary's R2 and atom stability (``chance.tsv``, one row per
    chance model of :func:`llmbrain_utils.dictionary.chance_levels`: random HRF-smoothed atoms,
    random bases of the responses' k-PC subspace, random ANs) at the run's k and lam."""
    from . import dictionary as dl

    cfg = config.validate(cfg)
    ext = extraction(cfg)
    hrf = None if cfg.hrf == "fir" else cfg.hrf  # FIR responses are not HRF-smoothed
    params = dict(_pick(cfg, ("k", "lam", "solver", "seed", "tr_s")), hrf=hrf, n_draws=int(n_draws))

    def build(out: Path) -> dict:
        table = dl.chance_levels(read_responses(ext), k=cfg.k, lam=cfg.lam, seed=cfg.seed,
                                 n_draws=n_draws, tr_s=cfg.tr_s, hrf=hrf, solver=cfg.solver,
                                 n_threads=1)
        table.to_csv(out / "chance.tsv", sep="\t", index=False)
        return {"models": list(table["model"])}

    return _store(cfg).get_or_create("dictionary_chance", params, build, inputs=[ext],
                                     packages=("llmbrain_utils", "numpy", "scipy", "spams-bin"))


def read_tsv(art: Artifact, name: str) -> pd.DataFrame:
    return pd.read_csv(art.file(name), sep="\t")


#: The controls of the atoms-vs-layers comparison: their own extraction and dictionary.
BASELINE_CONTROLS = (("atoms, untrained model", {"untrained": True}),
                     ("atoms, shuffled words", {"shuffle_words": True}))


def baseline(cfg: Mapping) -> Artifact:
    """Do atoms beat layers? Held-out ridge scores in the ISC mask, same folds for every set:
    the k atoms, each layer's first k principal components, all ANs' first k components, and
    the atoms of the controls (the same model with untrained weights; the story's words
    shuffled), each from its own extraction and dictionary."""
    import numpy as np

    from . import encoding as enc

    cfg = config.validate(cfg)
    ext, dic, data = extraction(cfg), dictionary(cfg), fmri_data(cfg)
    controls = [(name, dictionary(cfg.replace(**over))) for name, over in BASELINE_CONTROLS
                if any(cfg[key] != v for key, v in over.items())]

    def build(out: Path) -> dict:
        bold = read_bold(data, mmap=False)
        keep = read_isc_mask(data, cfg.alpha)
        if not keep.any():
            keep = np.ones(bold.shape[2], bool)
        Y = np.ascontiguousarray(bold[:, :, keep])
        folds = enc.contiguous_folds(bold.shape[1], cfg.n_folds, cfg.trim)
        R = np.asarray(read_responses(ext))
        layers = read_an_table(ext)["layer"].to_numpy()
        k = int(np.load(dic.file("D.npy")).shape[1])
        tables = [enc.score_regressors(np.load(dic.file("D.npy")), Y, name="atoms", folds=folds),
                  enc.score_regressors(R, Y, name="all ANs (PCs)", n_components=k, folds=folds),
                  enc.layerwise_baseline(R, layers, Y, n_components=k, folds=folds)]
        tables += [enc.score_regressors(np.load(c.file("D.npy")), Y, name=name, folds=folds)
                   for name, c in controls]
        table = pd.concat(tables, ignore_index=True)
        table.to_csv(out / "baseline.tsv", sep="\t", index=False)
        return {"n_voxels": int(keep.sum()), "k": k, "controls": [name for name, _ in controls]}

    return _store(cfg).get_or_create("baseline", _pick(cfg, ("n_folds", "trim", "alpha")), build,
                                     inputs=[ext, dic, data, *(c for _, c in controls)],
                                     packages=("llmbrain_utils", "numpy", "scipy", "himalaya",
                                               "scikit-learn"))


def fbn_recovery(cfg: Mapping, snrs=(0.2, 0.3, 0.36, 0.6), n_planted: int = 12, n_seeds: int = 3,
                 statistics=("dice", "r"), subject_counts=(12, 16),
                 levels=(0.001, 0.005, 0.01, 0.05, 0.1)) -> Artifact:
    """Measured recovery of the whole encoding + mapping chain on planted atom couplings
    (:func:`fbn.mapping_recovery`, which documents the measurement).

    Synthetic twins (same story, grid, noise model and subjects as the default data) in which
    one of the model's own atoms drives each of the ``n_planted`` largest networks of the
    mapping atlas, encoded with all k atoms and mapped exactly as the real chain does, once per
    overlap statistic (``statistics``): at the default data's SNR (``cfg.snr`` or
    fmri.DEFAULT_SNR) on ``n_seeds`` twins (seeds ``seed + 1 ... seed + n_seeds``), against SNR
    (``snrs``) on the first of them, and against the number of subjects (``subject_counts``,
    besides ``cfg.n_subjects``). The unplanted atoms' p values at each of ``levels`` give
    the calibration of the null.

    Files: ``recovery.tsv`` (one row per twin seed, SNR, number of subjects and statistic),
    ``calibration.tsv`` (statistic, n_subjects, level, n_tests, share, ratio = share / level;
    the default SNR, all twins of that size), ``planted.tsv`` (each planted coupling: network
    size, the atom's variance inflation factor among the k atoms, and whether each statistic
    found it on each twin at the default SNR and number of subjects), ``couplings.tsv`` (every
    table), ``truth.tsv``.
    """
    import numpy as np

    from . import fbn, fmri
    from .errors import InputError
    from .fmri.synthetic import synthetic_clean_series

    cfg = config.validate(cfg)
    design = fbn.recovery_design(
        snrs=snrs, default_snr=float(cfg.snr if cfg.snr is not None else fmri.DEFAULT_SNR),
        n_subjects=cfg.n_subjects, subject_counts=subject_counts, n_planted=n_planted,
        n_seeds=n_seeds, statistics=statistics, levels=levels)
    dic, stim = dictionary(cfg), stimulus(cfg.replace(shuffle_words=False))
    params = dict(_pick(cfg, ("atlas", "threshold", "fbn_perm", "fbn_null", "fbn_tail", "alpha",
                              "seed", "n_subjects", "resolution_mm", "tr_s", "snr", "twin",
                              "space")), snrs=design["snrs"], n_planted=n_planted,
                  n_seeds=n_seeds, statistics=design["statistics"],
                  subject_counts=design["subject_counts"], levels=design["levels"])

    def build(out: Path) -> dict:
        from . import surface

        mesh = None if cfg.space == "volume" else cfg.space
        if mesh:
            atlas = surface.load_surface_atlas(cfg.atlas, mesh)
            twin_kw, twin_info = surface.twin_planting(cfg.twin, atlas, cfg.seed)

            def twin(timecourses, plant, *, seed, snr, n_subjects):
                # in memory, z-scored per vertex by load_dataset's own function
                bold = surface.surface_twin(
                    timecourses, twin_kw.get("planting_labels", atlas), plant,
                    network_names=atlas.network_names, n_subjects=n_subjects, snr=snr,
                    seed=seed, mesh=mesh, jitter_mm=twin_kw.get("jitter_mm", 0.0),
                    tr_s=cfg.tr_s).data
                return np.stack([fmri._standardize(b, f"recovery twin {seed}, subject {i + 1}",
                                                   detrend=False, zscore=True)[0]
                                 for i, b in enumerate(bold)])
        else:
            mask = fmri.brain_mask(cfg.resolution_mm)
            atlas = fbn.load_atlas(cfg.atlas, mask)
            twin_kw, twin_info = fmri.twin_options(cfg.twin, atlas.label_img, mask,
                                                   cfg.resolution_mm, cfg.seed)

            words = read_words(stim)

            def twin(timecourses, plant, *, seed, snr, n_subjects):
                # in memory, bit for bit what load_dataset reads of the twin that
                # make_synthetic_dataset writes under the story's name (no NIfTI written or
                # read): its subjects less those the loader leaves out (the exclusions of a
                # Narratives story; none of the project's own), z-scored per voxel by
                # load_dataset's own function
                subjects = list(fmri.dataset_paths(
                    out, cfg.story, [f"{i:03d}" for i in range(1, n_subjects + 1)]))
                if not subjects:
                    raise InputError(cfg.story, f"every one of the recovery twin's "
                                     f"{n_subjects} subjects is excluded by the story's authors",
                                     expected="more subjects (n_subjects)")
                return synthetic_clean_series(
                    words=words, n_trs=stim.info["n_trs"], mask_img=mask,
                    atlas_img=atlas.label_img, network_names=atlas.network_names,
                    n_subjects=n_subjects, plant=plant, timecourses=timecourses, snr=snr,
                    seed=seed, tr_s=cfg.tr_s, subjects=subjects, zscore=True, **twin_kw)

        res = fbn.mapping_recovery(
            np.load(dic.file("D.npy")), atlas, twin, **design, threshold=cfg.threshold,
            n_perm=cfg.fbn_perm, alpha=cfg.alpha, seed=cfg.seed, null=cfg.fbn_null,
            tail=cfg.fbn_tail)
        for name in ("recovery", "calibration", "couplings", "planted"):
            getattr(res, name).to_csv(out / f"{name}.tsv", sep="\t", index=False)
        res.planted[["atom", "network", "sign"]].to_csv(out / "truth.tsv", sep="\t", index=False)
        return {"truth": res.truth, "default_snr": res.default_snr, "twin_seeds": res.twin_seeds,
                "twin": twin_info, "n_subjects": res.n_subjects,
                "subject_counts": res.subject_counts, "unplanted_networks": res.unplanted_networks,
                "mean_at_default_snr": res.mean_at_default_snr,
                "null_share_at_0.05": res.null_share_at_05}

    return _store(cfg).get_or_create("fbn_recovery", params, build, inputs=[dic, stim],
                                     packages=("llmbrain_utils", "numpy", "scipy", "nilearn"))


# --------------------------------------------------------------------------- the stage table
@dataclass(frozen=True)
class Stage:
    """A stage, declared once: the runner, the sweep, the tests and the docs read it from here.

    ``name`` is the store's folder of its artifacts; ``build(cfg) -> Artifact`` computes (or
    finds) it; ``params`` are the run parameters its artifact's key holds (``None``: the stage
    also keys on its own keyword arguments, e.g. the sweep's grid); ``upstream`` the stages
    whose artifacts it reads, each with the parameter overrides it asks them with (the fMRI
    stage reads the story in order, whatever ``shuffle_words`` says); ``files`` its artifact's
    main files (the module docstring's table); ``chapter`` the notebook that shows it
    (:data:`llmbrain_utils.config.CHAPTERS`)."""

    name: str
    build: Callable[..., Artifact]
    params: tuple[str, ...] | None
    upstream: tuple[tuple[str, dict], ...]
    files: tuple[str, ...]
    chapter: str


def _up(*names: str, **overrides: dict) -> tuple[tuple[str, dict], ...]:
    return tuple((n, dict(overrides.get(n, {}))) for n in names)


#: the chain every run and every sweep point runs, in run order
CHAIN: dict[str, Stage] = {s.name: s for s in (
    Stage("stimulus", stimulus, STIMULUS_PARAMS, (), ("words.tsv", "trs.tsv"), "stimulus"),
    Stage("extraction", extraction, EXTRACTION_PARAMS, _up("stimulus"),
          ("responses.npy", "an_table.tsv", "stats.json"), "extraction"),
    Stage("dictionary", dictionary, DICTIONARY_PARAMS, _up("extraction"),
          ("D.npy", "loadings.npz", "r2_per_an.npy"), "dictionary"),
    Stage("fmri", fmri_data, FMRI_PARAMS, _up("stimulus", stimulus={"shuffle_words": False}),
          ("bold.npy", "mask.nii.gz", "subjects.tsv", "isc.npy", "isc_p.npy"), "fmri"),
    Stage("encoding", encoding, ENCODING_PARAMS, _up("dictionary", "fmri"),
          ("beta.npy", "t.npy", "r2.npy", "cv_r.npy", "cv_alphas.npy", "group_t.npy",
           "p_group_cv.npy"), "encoding"),
    Stage("fbn", fbn_mapping, FBN_PARAMS, _up("encoding", "fmri"), ("couplings.tsv",), "fbn"),
    Stage("coupling_bootstrap", coupling_bootstrap, BOOTSTRAP_PARAMS, _up("encoding", "fmri", "fbn"),
          ("per_network.tsv", "per_model.tsv", "observed.tsv", "draws.npz"), "cross_model"),
)}

#: the analyses the chapters add beside the chain (each reads chain artifacts)
ANALYSES: dict[str, Stage] = {s.name: s for s in (
    Stage("encoding_tests", encoding_tests, ENCODING_TEST_PARAMS,
          _up("encoding", "dictionary", "fmri"),
          ("p_r2.npy", "group_avg_r.npy", "p_group_avg.npy", "p_group_avg_isc.npy",
           "group_avg_sig.npy", "group_avg_sig_isc.npy"), "encoding"),
    Stage("encoding_recovery", encoding_recovery, None,
          _up("encoding", "encoding_tests", "fmri", "dictionary"), ("recovery.tsv",), "encoding"),
    Stage("baseline", baseline, ("n_folds", "trim", "alpha"),
          _up("extraction", "dictionary", "fmri"), ("baseline.tsv",), "encoding"),
    Stage("dictionary_sweep", dictionary_sweep, None, _up("extraction"), ("sweep.tsv",),
          "dictionary"),
    Stage("dictionary_chance", dictionary_chance, None, _up("extraction"), ("chance.tsv",),
          "dictionary"),
    Stage("fbn_recovery", fbn_recovery, None, _up("dictionary", "stimulus"),
          ("recovery.tsv",), "fbn"),
    Stage("explorer_figures", explorer_figures, ("tr_s",),
          _up("extraction", "dictionary", "encoding", "fmri", "fbn"), ("figures/",), "cross_model"),
)}

#: every stage by its store name
TABLE: dict[str, Stage] = {**CHAIN, **ANALYSES}


def contracts() -> str:
    """The artifact contracts, from :data:`TABLE`: each stage's files and what they hold (the
    first sentence of its build function's docstring)."""
    lines = ["The artifact contracts (from :data:`TABLE`):", ""]
    for st in TABLE.values():
        what = " ".join((st.build.__doc__ or "").split()).split(". ")[0].rstrip(".")
        files = ", ".join(f"``{f}``" for f in st.files)
        lines.append(f"* ``{st.name}`` ({st.chapter}): {files}. {what}.")
    return "\n".join(lines)


__doc__ = (__doc__ or "") + "\n" + contracts() + "\n"
