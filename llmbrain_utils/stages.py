"""The stages as cached artifacts: each function takes the run parameters, returns an Artifact.

A stage asks for its inputs by calling the stage before it with the same parameters (a cache
hit when that stage already ran), so every notebook can run on its own, and a changed
parameter recomputes exactly the stages that depend on it. The artifact contracts:

============ ==================================================================================
stage        files
============ ==================================================================================
stimulus     ``words.tsv`` (word table with ``tr``), ``trs.tsv`` (one row per TR)
extraction   ``responses.npy`` (T x N float32, z-scored), ``an_table.tsv`` (layer, unit,
             constant), ``stats.json``
dictionary   ``D.npy`` (T x k), ``loadings.npz`` (sparse k x N), ``r2_per_an.npy``
fmri         ``bold.npy`` (S x T x V float32), ``mask.nii.gz``, ``subjects.tsv``, ``isc.npy``,
             ``isc_p.npy``; synthetic: ``dataset/`` (Narratives layout) and ``truth.json``
encoding     ``beta.npy`` / ``t.npy`` (S x k x V), ``r2.npy`` / ``cv_r.npy`` (S x V),
             ``group_t.npy`` (k x V), ``p_cv.npy``
fbn          ``couplings.tsv`` (atom, network, sign, dice, r, p, q, coupled)
============ ==================================================================================
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import config
from .store import Artifact, Store


def _store(cfg: dict) -> Store:
    return Store(cfg["runs_dir"])


def _pick(cfg: dict, names: tuple[str, ...]) -> dict:
    return {k: cfg[k] for k in names}


# --------------------------------------------------------------------------- 1. stimulus
STIMULUS_PARAMS = ("story", "narratives_dir", "tr_s", "shuffle_words", "seed")


def stimulus(cfg: dict) -> Artifact:
    """Word table on the TR grid (``words.tsv``) and the TR table (``trs.tsv``)."""
    from . import stimuli

    cfg = config.validate(cfg)
    params = _pick(cfg, STIMULUS_PARAMS)
    if cfg["story"] == stimuli.EMBEDDED_STORY:
        params["story_sha256"] = _sha(stimuli.STORY_FILE)
    elif cfg["narratives_dir"]:
        params["narratives_dir"] = str(Path(cfg["narratives_dir"]).resolve())

    def build(out: Path) -> dict:
        words, trs, n_trs = stimuli.build_stimulus(
            cfg["story"], tr_s=cfg["tr_s"], narratives_dir=cfg["narratives_dir"],
            shuffle_seed=cfg["seed"] if cfg["shuffle_words"] else None)
        words.to_csv(out / "words.tsv", sep="\t", index=False)
        trs.to_csv(out / "trs.tsv", sep="\t", index=False)
        return {"n_words": len(words), "n_trs": n_trs,
                "n_interpolated": int(words["interpolated"].sum()),
                "duration_s": float(words["offset"].max())}

    return _store(cfg).get_or_create("stimulus", params, build, packages=("llmbrain_utils", "pandas"))


def read_words(art: Artifact) -> pd.DataFrame:
    return pd.read_csv(art.file("words.tsv"), sep="\t", keep_default_na=False,
                       dtype={"word": str, "norm": str})


def read_trs(art: Artifact) -> pd.DataFrame:
    return pd.read_csv(art.file("trs.tsv"), sep="\t", keep_default_na=False, dtype={"words": str})


def _sha(path: Path) -> str:
    from .store import sha256_file

    return sha256_file(path)
