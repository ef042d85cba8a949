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


# --------------------------------------------------------------------------- 2. extraction
EXTRACTION_PARAMS = ("model", "untrained", "seed", "units", "context", "context_tokens",
                     "word_pool", "tr_pool", "hrf", "tr_s")


def load_model(cfg: dict):
    from transformers.utils import logging as hf_logging

    from . import models

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()

    return models.load_model(cfg["model"], untrained=cfg["untrained"], seed=cfg["seed"])


def extraction(cfg: dict, loaded=None) -> Artifact:
    """Every AN's response per TR (``responses.npy``, T x N) and the AN table."""
    from . import extract

    cfg = config.validate(cfg)
    stim = stimulus(cfg)
    loaded = loaded or load_model(cfg)
    params = _pick(cfg, EXTRACTION_PARAMS)
    params["weights_sha256"] = loaded.info["weights_sha256"]
    params["architecture"] = {k: loaded.info[k] for k in ("family", "n_layers", "d_model", "d_ffn")}

    def build(out: Path) -> dict:
        words = read_words(stim)
        res = extract.extract_responses(
            loaded, words, stim.info["n_trs"], tr_s=cfg["tr_s"], units=cfg["units"],
            context=None if cfg["context"] == "auto" else cfg["context"], context_tokens=cfg["context_tokens"],
            word_pool=cfg["word_pool"], tr_pool=cfg["tr_pool"], hrf=cfg["hrf"],
            responses_out=out / "responses.npy", progress=False)
        res["an_table"].to_csv(out / "an_table.tsv", sep="\t", index=False)
        stats = res["stats"]
        (out / "stats.json").write_text(_json(stats))
        return {"n_trs": int(res["responses"].shape[0]), "n_ans": int(res["responses"].shape[1]),
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


def dictionary(cfg: dict) -> Artifact:
    """Sparse dictionary of all AN responses: ``D.npy`` (T x k), ``loadings.npz`` (k x N)."""
    from . import dictionary as dl

    cfg = config.validate(cfg)
    ext = extraction(cfg)

    def build(out: Path) -> dict:
        X = read_responses(ext)
        res = dl.learn_dictionary(X, k=cfg["k"], lam=cfg["lam"], solver=cfg["solver"],
                                  seed=cfg["seed"], n_iter=cfg["dict_iter"],
                                  an_table=read_an_table(ext), n_threads=1)
        res.save(out)
        return {k: v for k, v in res.summary().items() if k not in ("info",)}

    return _store(cfg).get_or_create("dictionary", _pick(cfg, DICTIONARY_PARAMS), build,
                                     inputs=[ext], packages=("llmbrain_utils", "numpy", "scipy",
                                                             "spams-bin", "scikit-learn", "torch"))


def read_dictionary(art: Artifact, ext: Artifact | None = None):
    from . import dictionary as dl

    return dl.load_result(art.path, read_an_table(ext) if ext is not None else None)


# --------------------------------------------------------------------------- 4. fMRI data
FMRI_PARAMS = ("fmri_source", "n_subjects", "resolution_mm", "snr", "plant_atlas", "seed",
               "n_perm", "tr_s")


def fmri_data(cfg: dict) -> Artifact:
    """Every subject's masked BOLD (``bold.npy``, S x T x V), the mask, and the ISC ceiling.

    ``fmri_source: synthetic`` writes the synthetic twin (``dataset/``, Narratives layout, with
    ``truth.json``) and reads it back through the real loader; ``narratives`` reads the real
    data set from ``$LLMBRAIN_DATA`` (see ``python -m llmbrain_utils fetch``).
    """
    import numpy as np

    from . import fbn, fmri

    cfg = config.validate(cfg)
    stim = stimulus({**cfg, "shuffle_words": False})  # listeners heard the story in order
    params = _pick(cfg, FMRI_PARAMS)
    if cfg["fmri_source"] == "synthetic":
        params["plant"] = [dict(p) for p in fmri.DEFAULT_PLANT]

    def build(out: Path) -> dict:
        mask = fmri.brain_mask(cfg["resolution_mm"])
        n_trs = stim.info["n_trs"]
        info, start_tr = {}, 0
        if cfg["fmri_source"] == "synthetic":
            atlas = fbn.load_atlas(cfg["plant_atlas"], mask)
            root = fmri.make_synthetic_dataset(
                out / "dataset", task=cfg["story"], words=read_words(stim), n_trs=n_trs,
                mask_img=mask, atlas_img=atlas.label_img, network_names=atlas.network_names,
                n_subjects=cfg["n_subjects"], snr=cfg["snr"], seed=cfg["seed"], tr_s=cfg["tr_s"])
            subjects = [f"{i:03d}" for i in range(1, cfg["n_subjects"] + 1)]
            info["truth"] = fmri.read_truth(root)
        else:
            from . import fetch

            root = fetch.data_home()
            story = fetch.story_info(cfg["story"], participants_tsv=root / "participants.tsv"
                                     if (root / "participants.tsv").is_file() else None)
            subjects = story["subjects"] or "all"
            start_tr = story.get("onset_tr") or 0
            info["scan_window"] = {"onset_tr": start_tr, "duration_tr": story.get("duration_tr")}
        bold, subjects = fmri.load_dataset(root, cfg["story"], subjects, mask, tr_s=cfg["tr_s"],
                                           start_tr=start_tr, n_trs=n_trs, resample=True)
        np.save(out / "bold.npy", bold.astype(np.float32))
        mask.to_filename(out / "mask.nii.gz")
        pd.DataFrame({"subject": subjects}).to_csv(out / "subjects.tsv", sep="\t", index=False)
        isc, _ = fmri.isc_loo(bold)
        p = fmri.isc_null(bold, n_perm=cfg["n_perm"], method="circular", seed=cfg["seed"])
        np.save(out / "isc.npy", isc.astype(np.float32))
        np.save(out / "isc_p.npy", p.astype(np.float32))
        keep = fmri.isc_mask(p)
        info.update(n_subjects=len(subjects), n_trs=int(bold.shape[1]), n_voxels=int(bold.shape[2]),
                    isc_median=float(np.median(isc)), isc_max=float(np.max(isc)),
                    isc_mask_voxels=int(keep.sum()))
        return info

    return _store(cfg).get_or_create("fmri", params, build, inputs=[stim],
                                     packages=("llmbrain_utils", "numpy", "scipy", "nilearn", "nibabel"))


def read_bold(art: Artifact, mmap: bool = True):
    import numpy as np

    return np.load(art.file("bold.npy"), mmap_mode="r" if mmap else None)


def read_mask(art: Artifact):
    import nibabel as nib

    return nib.load(art.file("mask.nii.gz"))


# --------------------------------------------------------------------------- 5. encoding
ENCODING_PARAMS = ("n_folds", "trim", "n_perm", "seed", "alpha")


def encoding(cfg: dict) -> Artifact:
    """Atoms as regressors of every voxel of every subject: maps, scores, nulls, group maps."""
    import numpy as np

    from . import encoding as enc

    cfg = config.validate(cfg)
    dic, data = dictionary(cfg), fmri_data(cfg)

    def build(out: Path) -> dict:
        D = np.load(dic.file("D.npy"))
        bold = read_bold(data, mmap=False)
        res = enc.encode_subjects(D, bold, cv_model="ridge", n_folds=cfg["n_folds"], trim=cfg["trim"])
        np.save(out / "beta.npy", res.beta)
        np.save(out / "t.npy", res.t)
        np.save(out / "r2.npy", res.r2)
        np.save(out / "cv_r.npy", res.cv_r)
        p = np.stack([enc.permutation_pvalues(D, bold[s], n_perm=cfg["n_perm"], method="circular",
                                              statistic="r2_insample", seed=cfg["seed"] + s)
                      for s in range(bold.shape[0])]).astype(np.float32)
        np.save(out / "p_r2.npy", p)
        g = enc.group_maps(res.beta)
        np.save(out / "group_t.npy", g.t.astype(np.float32))
        np.save(out / "group_mean.npy", g.mean.astype(np.float32))
        np.save(out / "sign_agreement.npy", g.sign_agreement.astype(np.float32))
        np.save(out / "consistency.npy", np.asarray(g.consistency, np.float32))
        isc = np.load(data.file("isc.npy"))
        isc_keep = enc.fdr(np.load(data.file("isc_p.npy")), cfg["alpha"])[0]
        sig = np.stack([enc.fdr(p[s], cfg["alpha"])[0] for s in range(p.shape[0])])
        mean_cv = res.cv_r.mean(0)
        # random-effects test of held-out r across subjects (Fisher z, one-sided), FDR over voxels
        from scipy.stats import ttest_1samp

        z = np.arctanh(np.clip(res.cv_r.astype(np.float64), -0.999, 0.999))
        p_group = ttest_1samp(z, 0.0, axis=0, alternative="greater").pvalue
        np.save(out / "p_group_cv.npy", p_group.astype(np.float32))
        group_sig = enc.fdr(p_group, cfg["alpha"])[0]
        return {"dof": int(res.dof),
                "median_r2": float(np.median(res.r2)), "max_group_r2": float(res.r2.mean(0).max()),
                "mean_cv_r_in_isc_mask": float(mean_cv[isc_keep].mean()) if isc_keep.any() else None,
                "mean_cv_r_whole_brain": float(mean_cv.mean()),
                "ceiling_normalised_in_isc_mask":
                    float(np.nanmean(enc.normalise_by_ceiling(mean_cv, isc)[isc_keep]))
                    if isc_keep.any() else None,
                "share_significant_voxels": float(sig.mean()),
                "group_significant_cv_voxels": int(group_sig.sum())}

    return _store(cfg).get_or_create("encoding", _pick(cfg, ENCODING_PARAMS), build,
                                     inputs=[dic, data],
                                     packages=("llmbrain_utils", "numpy", "scipy", "himalaya"))


# --------------------------------------------------------------------------- 6. FBN mapping
FBN_PARAMS = ("atlas", "threshold", "fbn_perm", "alpha", "seed")


def fbn_mapping(cfg: dict) -> Artifact:
    """Each atom's group t map against the networks of an atlas: ``couplings.tsv``."""
    import numpy as np

    from . import fbn

    cfg = config.validate(cfg)
    enc_art, data = encoding(cfg), fmri_data(cfg)

    def build(out: Path) -> dict:
        atlas = fbn.load_atlas(cfg["atlas"], read_mask(data))
        table = fbn.couple_atoms(np.load(enc_art.file("group_t.npy")), atlas,
                                 threshold=cfg["threshold"], n_perm=cfg["fbn_perm"],
                                 alpha=cfg["alpha"], seed=cfg["seed"])
        table.to_csv(out / "couplings.tsv", sep="\t", index=False)
        c = table[table.coupled]
        return {"n_couplings": int(len(c)), "n_atoms_coupled": int(c.atom.nunique()),
                "n_networks_involved": int(c.network.nunique()),
                "networks": atlas.network_names}

    return _store(cfg).get_or_create("fbn", _pick(cfg, FBN_PARAMS), build, inputs=[enc_art, data],
                                     packages=("llmbrain_utils", "numpy", "scipy", "nilearn"))


def read_couplings(art: Artifact) -> pd.DataFrame:
    return pd.read_csv(art.file("couplings.tsv"), sep="\t")


def _json(obj) -> str:
    import json

    from .store import _jsonable

    return json.dumps(_jsonable(obj), indent=1, sort_keys=True)


def dictionary_sweep(cfg: dict, ks=(16, 32, 64, 128), lams=(0.05, 0.1, 0.2), seeds=(0, 1)) -> Artifact:
    """R2, sparsity and stability (two seeds, two halves of the ANs) over k x lambda."""
    from . import dictionary as dl

    cfg = config.validate(cfg)
    ext = extraction(cfg)
    params = dict(_pick(cfg, ("solver", "dict_iter")), ks=list(ks), lams=list(lams), seeds=list(seeds))

    def build(out: Path) -> dict:
        table = dl.sweep(read_responses(ext), ks=ks, lams=lams, solver=cfg["solver"], seeds=seeds,
                         n_iter=cfg["dict_iter"], n_threads=1)
        table.to_csv(out / "sweep.tsv", sep="\t", index=False)
        return {"n_fits": int(len(table))}

    return _store(cfg).get_or_create("dictionary_sweep", params, build, inputs=[ext],
                                     packages=("llmbrain_utils", "numpy", "scipy", "spams-bin"))


def read_tsv(art: Artifact, name: str) -> pd.DataFrame:
    return pd.read_csv(art.file(name), sep="\t")


def baseline(cfg: dict) -> Artifact:
    """Do atoms beat layers? Held-out ridge scores in the ISC mask, same folds for every set:
    the k atoms, each layer's first k principal components, and all ANs' first k components."""
    import numpy as np

    from . import encoding as enc, fmri

    cfg = config.validate(cfg)
    ext, dic, data = extraction(cfg), dictionary(cfg), fmri_data(cfg)

    def build(out: Path) -> dict:
        bold = read_bold(data, mmap=False)
        keep = fmri.isc_mask(np.load(data.file("isc_p.npy")), cfg["alpha"])
        if not keep.any():
            keep = np.ones(bold.shape[2], bool)
        Y = np.ascontiguousarray(bold[:, :, keep])
        folds = enc.contiguous_folds(bold.shape[1], cfg["n_folds"], cfg["trim"])
        R = np.asarray(read_responses(ext))
        layers = read_an_table(ext)["layer"].to_numpy()
        k = int(np.load(dic.file("D.npy")).shape[1])
        tables = [enc.score_regressors(np.load(dic.file("D.npy")), Y, name="atoms", folds=folds),
                  enc.score_regressors(R, Y, name="all ANs (PCs)", n_components=k, folds=folds),
                  enc.layerwise_baseline(R, layers, Y, n_components=k, folds=folds)]
        table = pd.concat(tables, ignore_index=True)
        table.to_csv(out / "baseline.tsv", sep="\t", index=False)
        return {"n_voxels": int(keep.sum()), "k": k}

    return _store(cfg).get_or_create("baseline", _pick(cfg, ("n_folds", "trim", "alpha")), build,
                                     inputs=[ext, dic, data],
                                     packages=("llmbrain_utils", "numpy", "scipy", "himalaya",
                                               "scikit-learn"))


def fbn_recovery(cfg: dict, snrs=(0.2, 0.3, 0.36, 0.42, 0.6), n_planted: int = 8) -> Artifact:
    """Measured recovery of the whole encoding + mapping chain on planted atom couplings.

    A synthetic twin (same story, grid, noise model and subjects as the default data) in which
    ``n_planted`` of the model's own atoms drive ``n_planted`` networks of the mapping atlas,
    with alternating signs; the data are then encoded with all k atoms and mapped exactly as the
    real chain does. Precision, recall and false-positive rate of the recovered (atom, network,
    sign) couplings, at several signal-to-noise ratios (the default data's, fmri.DEFAULT_SNR, is among them).
    """
    import shutil
    import tempfile

    import numpy as np

    from . import encoding as enc, fbn, fmri

    cfg = config.validate(cfg)
    dic, stim = dictionary(cfg), stimulus({**cfg, "shuffle_words": False})
    params = dict(_pick(cfg, ("atlas", "threshold", "fbn_perm", "alpha", "seed", "n_subjects",
                              "resolution_mm", "tr_s")), snrs=list(snrs), n_planted=n_planted)

    def build(out: Path) -> dict:
        D = np.load(dic.file("D.npy"))
        mask = fmri.brain_mask(cfg["resolution_mm"])
        atlas = fbn.load_atlas(cfg["atlas"], mask)
        sizes = atlas.sizes()
        nets = sorted(sizes, key=lambda n: -sizes[n])[:n_planted]
        atoms = list(range(min(n_planted, D.shape[1], len(nets))))
        signs = [1 if i % 2 == 0 else -1 for i in atoms]
        plant = [{"network": nets[i], "source": f"timecourse:{i}", "sign": signs[i], "weight": 1.0}
                 for i in atoms]
        truth = [(a, nets[a], "active" if signs[a] > 0 else "deactive") for a in atoms]
        rows, tables = [], []
        for snr in snrs:
            tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=".recovery-"))
            try:
                root = fmri.make_synthetic_dataset(
                    tmp / "ds", task=cfg["story"], words=read_words(stim), n_trs=stim.info["n_trs"],
                    mask_img=mask, atlas_img=atlas.label_img, network_names=atlas.network_names,
                    n_subjects=cfg["n_subjects"], plant=plant, timecourses=D[:, atoms], snr=snr,
                    seed=cfg["seed"] + 1, tr_s=cfg["tr_s"])
                bold, _ = fmri.load_dataset(root, cfg["story"],
                                            [f"{i:03d}" for i in range(1, cfg["n_subjects"] + 1)],
                                            mask, n_trs=stim.info["n_trs"], tr_s=cfg["tr_s"])
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            res = enc.encode_subjects(D, bold, cv_model=None)
            table = fbn.couple_atoms(enc.group_maps(res.beta).t, atlas, threshold=cfg["threshold"],
                                     n_perm=cfg["fbn_perm"], alpha=cfg["alpha"], seed=cfg["seed"])
            rec = fbn.recovery(table, truth)
            rows.append({"snr": snr, **{k: rec[k] for k in ("precision", "recall", "fpr", "tp", "fp", "fn")}})
            tables.append(table.assign(snr=snr))
        pd.DataFrame(rows).to_csv(out / "recovery.tsv", sep="\t", index=False)
        pd.concat(tables).to_csv(out / "couplings.tsv", sep="\t", index=False)
        pd.DataFrame(truth, columns=["atom", "network", "sign"]).to_csv(out / "truth.tsv", sep="\t", index=False)
        return {"truth": truth}

    return _store(cfg).get_or_create("fbn_recovery", params, build, inputs=[dic, stim],
                                     packages=("llmbrain_utils", "numpy", "scipy", "nilearn"))
