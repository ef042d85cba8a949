"""The synthetic twin: a Narratives-shaped data set with planted couplings between story
features and networks (:func:`make_synthetic_dataset`, :func:`read_truth`; its scans in memory:
:func:`synthetic_clean_series`), its EPI baseline
(:func:`epi_baseline`) and its kinds (:func:`twin_options`, :data:`REALISTIC_TWIN`)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError, ParameterError
from .deform import JITTER_FWHM_VOX, DEFORM_MODEL, _deform_index, _dice_masks, mismatched_labels
from .features import FEATURES, sentence_ends, stimulus_features
from .io import SPACE, TR_S
from .masks import _gm_on_grid, _load_mask
from .plants import DEFAULT_PLANT, DEFAULT_SNR, _validate_plant, check_plants

log = logging.getLogger(__name__.rpartition(".")[0])  # "llmbrain_utils.fmri", as before the split


def _array_sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes() + str(a.shape).encode()).hexdigest()[:16]


def _bids_label(name: str, value) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9]+", value):
        raise ParameterError(name, f"{value!r}", expected="a BIDS label (letters and digits)")
    return value


#: Model of the synthetic twin's baseline (see :func:`epi_baseline`).
EPI_BASELINE = {"mean": (600.0, 600.0), "tsnr": (45.0, 75.0), "dropout_z_mm": (-10.0, -40.0),
                "dropout_min": 0.5}


def epi_baseline(mask_img, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean intensity and temporal SNR per mask voxel, as in a preprocessed 3 T EPI run.

    The synthetic twin's ``preproc`` volumes (as fMRIPrep's ``desc-preproc_bold``: no confound
    regression, the signal on its baseline) are ``c_s * mean_v * (1 + clean_v(t) / tsnr_v)``,
    with ``c_s`` a subject's scanner gain (0.9-1.1); the clean series have SD ~1 (the subject's
    noise level, 0.85-1.15), so the volumes' tSNR is ~``tsnr_v``:

    - ``mean_v = 600 + 600 * p_GM(v)`` (arbitrary scanner units; grey matter is brighter than
      white matter in T2*-weighted EPI; ``p_GM`` from nilearn's MNI152 2009 grey-matter
      template on the mask's grid);
    - ``tsnr_v = (45 + 75 * r_v) * d_v``: ``r_v`` in [0, 1] is the voxel's ellipsoidal distance
      from the mask's centre (receive-coil arrays: SNR highest near the cortex, lowest in the
      centre of the head), ``d_v`` a susceptibility loss below MNI z = -10 mm, linear down to
      0.5 at z <= -40 mm (orbitofrontal and inferior temporal dropout).

    On the 6 mm grid this gives a median of ~100 in dorsal (z > 40 mm) and ~110 in lateral
    cortex, ~60 in the centre of the head and ~57 (49-66) below z = -30 mm; 46-120 overall
    (median 93): the range of tSNR of preprocessed Narratives scans (~50-150 in cortex).

    Parameters
    ----------
    mask_img : image or path
        The grid's mask.
    mask : bool array, optional
        The mask's voxels (default: ``mask_img > 0``).

    Returns
    -------
    mean, tsnr : numpy.ndarray, (V,) each
        In the mask's C order.
    """
    mimg, m = _load_mask(mask_img)
    if mask is not None:
        m = np.asarray(mask, bool)
    aff = np.asarray(mimg.affine, dtype=float)
    gm = _gm_on_grid(tuple(int(n) for n in m.shape), tuple(map(tuple, np.round(aff, 6))))[m]
    ijk = np.argwhere(m)
    xyz = ijk @ aff[:3, :3].T + aff[:3, 3]
    centre = xyz.mean(axis=0)
    half = np.maximum(np.abs(xyz - centre).max(axis=0), 1e-6)
    r = np.clip(np.sqrt((((xyz - centre) / half) ** 2).sum(axis=1)), 0.0, 1.0)
    (m0, m1), (t0, t1) = EPI_BASELINE["mean"], EPI_BASELINE["tsnr"]
    z_hi, z_lo = EPI_BASELINE["dropout_z_mm"]
    drop = 1.0 - (1.0 - EPI_BASELINE["dropout_min"]) * np.clip((z_hi - xyz[:, 2]) / (z_hi - z_lo), 0.0, 1.0)
    return m0 + m1 * gm, (t0 + t1 * r) * drop


#: the realistic twin (``twin: realistic``): planting networks at this mean Dice with the
#: read-out atlas, and this per-subject boundary jitter (mm RMS)
REALISTIC_TWIN = {"tissue": True, "planting_dice": 0.8, "jitter_mm": 3.0}


def twin_options(twin: str, label_img, mask_img, voxel_mm: float, seed: int) -> tuple[dict, dict]:
    """Keyword arguments of :func:`make_synthetic_dataset` for a twin kind, and what was done.

    ``"ideal"``: none (uniform tissue, planted on the read-out atlas itself, no jitter: the
    positive control, an upper bound of what real data allow). ``"realistic"``
    (:data:`REALISTIC_TWIN`): signal and noise follow grey matter (``tissue=True``), the signals
    are planted on the read-out atlas deformed (:func:`mismatched_labels`, seed ``seed``) to a
    mean network Dice of 0.8 with it, and every subject's planted networks are moved again by
    3 mm RMS (``jitter_mm``). Returns ``(kwargs, info)``; ``info`` states the achieved Dice and
    displacement."""
    import nibabel as nib

    if twin == "ideal":
        return {}, {"twin": "ideal"}
    if twin != "realistic":
        raise ParameterError("twin", f"{twin!r}", expected="'ideal' or 'realistic'")
    mask = np.asarray(mask_img.dataobj) > 0
    readout = np.asarray(label_img.dataobj).astype(np.int64)
    lab, rms, dice = mismatched_labels(readout, mask, REALISTIC_TWIN["planting_dice"], voxel_mm, seed)
    planting = nib.Nifti1Image(lab.astype(np.int16), mask_img.affine)
    kw = {"tissue": REALISTIC_TWIN["tissue"], "jitter_mm": REALISTIC_TWIN["jitter_mm"],
          "planting_img": planting}
    return kw, {"twin": "realistic", **REALISTIC_TWIN, "planting_dice_achieved": round(dice, 4),
                "planting_rms_mm": round(rms, 3)}


def _check_numbers(n_trs, n_subjects, seed, snr, tr_s, ar_phi, smooth_fwhm_vox, drift_amp,
                   profile_fwhm_vox, start_offset_s, tissue, jitter_mm, sentence_pause_s) -> float:
    """The twin's numeric arguments checked in this order (ParameterError on the first bad one);
    returns ``snr``, :data:`DEFAULT_SNR` when None."""
    for name, v, lo in (("n_trs", n_trs, 20), ("n_subjects", n_subjects, 2)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise ParameterError(name, f"{v!r}", expected=f"an int >= {lo}")
    if n_subjects > 999:
        raise ParameterError("n_subjects", f"{n_subjects}", expected="<= 999 (3-digit labels)")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ParameterError("seed", f"{seed!r}", expected="an int >= 0")
    snr = DEFAULT_SNR if snr is None else snr
    for name, v, ok, exp in (("snr", snr, lambda x: x > 0, "> 0"), ("tr_s", tr_s, lambda x: x > 0, "> 0"),
                             ("ar_phi", ar_phi, lambda x: 0 <= x <= 0.85, "in [0, 0.85]"),
                             ("smooth_fwhm_vox", smooth_fwhm_vox, lambda x: x >= 0, ">= 0"),
                             ("drift_amp", drift_amp, lambda x: x >= 0, ">= 0"),
                             ("profile_fwhm_vox", profile_fwhm_vox, lambda x: x >= 0, ">= 0"),
                             ("start_offset_s", start_offset_s, lambda x: x >= 0, ">= 0")):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.floating)) or not ok(v):
            raise ParameterError(name, f"{v!r}", expected=exp)
    if not isinstance(tissue, (bool, np.bool_)):
        raise ParameterError("tissue", f"{tissue!r}", expected="True or False")
    if isinstance(jitter_mm, bool) or not isinstance(jitter_mm, (int, float, np.integer, np.floating)) \
            or not (np.isfinite(jitter_mm) and jitter_mm >= 0):
        raise ParameterError("jitter_mm", f"{jitter_mm!r}", expected="a finite number of mm >= 0")
    if sentence_pause_s is not None and (
            isinstance(sentence_pause_s, bool) or not isinstance(sentence_pause_s, (int, float))
            or not sentence_pause_s >= 0):
        raise ParameterError("sentence_pause_s", f"{sentence_pause_s!r}",
                             expected="None or a number of seconds >= 0")
    return snr


def _label_grid(img, name: str, mimg, mask: np.ndarray) -> np.ndarray:
    """Integer labels (0 = none) of an image or path on the grid of the mask ``mimg``/``mask``."""
    import nibabel as nib

    aimg = img
    if isinstance(img, (str, os.PathLike)):
        if not Path(img).is_file():
            raise InputError(img, "atlas file not found" if name == "atlas_img"
                             else f"{name} file not found")
        aimg = nib.load(img)
    if not hasattr(aimg, "affine"):
        raise ParameterError(name, f"{type(img).__name__}", expected="a NIfTI image or a path")
    lab = np.asarray(aimg.dataobj)
    if lab.shape != mask.shape or not np.allclose(aimg.affine, mimg.affine, atol=1e-3):
        raise InputError(name, f"grid {lab.shape} differs from the mask's {mask.shape}",
                         field="shape/affine", expected="the mask's grid (resample it with nearest)")
    if not np.allclose(lab, np.round(lab)) or lab.min() < 0:
        raise InputError(name, "labels are not non-negative integers", expected="0 = none, 1..N")
    return np.round(lab).astype(int)


def _check_timecourses(timecourses, n_trs) -> np.ndarray | None:
    """The extra sources as a float ``n_trs x m`` array (None: none), finite and non-constant."""
    tc = None
    if timecourses is not None:
        tc = np.asarray(timecourses, dtype=float)
        tc = tc[:, None] if tc.ndim == 1 else tc
        if tc.ndim != 2 or tc.shape[0] != n_trs or not np.isfinite(tc).all():
            raise ParameterError("timecourses", f"shape {tc.shape}", expected=f"finite ({n_trs}, m)")
        if (tc.std(axis=0) == 0).any():
            raise ParameterError("timecourses", "a constant column", expected="non-constant columns")
    return tc


def _spatial_profiles(networks: list[str], names: list[str], mask: np.ndarray,
                      plant_in_mask: np.ndarray, rng0: np.random.Generator,
                      profile_fwhm_vox: float) -> dict[str, np.ndarray]:
    """Each planted network's spatial profile ``g_v`` over the mask's voxels (0.25-1 inside the
    network, 1 at its peak; 0 outside): one smoothed white-noise field per network, drawn from
    ``rng0`` in the order of ``networks``."""
    from scipy.ndimage import gaussian_filter

    n_vox = int(plant_in_mask.size)
    profiles: dict[str, np.ndarray] = {}
    for net in networks:
        field = rng0.standard_normal(mask.shape)
        if profile_fwhm_vox > 0:
            field = gaussian_filter(field, profile_fwhm_vox / 2.3548, mode="nearest")
        inside = plant_in_mask == names.index(net) + 1
        vals = field[mask][inside]
        g = np.ones_like(vals) if vals.size == 1 or np.ptp(vals) == 0 else \
            0.25 + 0.75 * (vals - vals.min()) / np.ptp(vals)
        prof = np.zeros(n_vox)
        prof[inside] = g
        profiles[net] = prof
    return profiles


def _subject_jitter(mask: np.ndarray, plant_in_mask: np.ndarray, names: list[str], live_nets: list[str],
                    jitter_mm: float, zooms_mm: np.ndarray, seed: int,
                    n_subjects: int) -> tuple[list[np.ndarray], list[float]]:
    """Every subject's planting networks deformed (:func:`_deform_index`, generator
    ``SeedSequence([seed, 7919])``, child s): per subject, the mask voxel whose label and profile
    each mask voxel takes (-1: a position outside the mask), and the mean Dice over the live
    networks between the deformed and the undeformed planting networks."""
    n_vox = int(plant_in_mask.size)
    jit_dice: list[float] = []
    mask_pos = np.full(mask.size, -1, dtype=np.int64)
    mask_pos[np.flatnonzero(mask.ravel())] = np.arange(n_vox)
    flat_in_mask = np.flatnonzero(mask.ravel())
    jit_children = np.random.SeedSequence([int(seed), 7919]).spawn(int(n_subjects))
    jit_src: list[np.ndarray] = []
    for s in range(int(n_subjects)):
        src = _deform_index(mask, float(jitter_mm), zooms_mm, np.random.default_rng(jit_children[s]),
                            JITTER_FWHM_VOX)
        sv = mask_pos[src.ravel()[flat_in_mask]]
        jit_src.append(sv)
        moved = np.where(sv >= 0, plant_in_mask[np.maximum(sv, 0)], 0)
        jit_dice.append(float(np.mean([_dice_masks(moved == names.index(n) + 1,
                                                   plant_in_mask == names.index(n) + 1)
                                       for n in live_nets])))
    return jit_src, jit_dice


def _drift_basis(T: int, tr_s: float) -> tuple[int, np.ndarray]:
    """The drift basis: the ``k`` cosines (T x k, SD 1 each) with period >= 128 s (as SPM's
    high-pass cut-off); returns ``(k, basis)``."""
    k_drift = max(1, int(np.floor(2 * T * tr_s / 128.0)))
    tt = np.arange(T)
    dct = np.column_stack([np.cos(np.pi * (tt + 0.5) * k / T) for k in range(1, k_drift + 1)])
    dct /= dct.std(axis=0)
    return k_drift, dct


@dataclass
class _TwinModel:
    """A synthetic twin checked and built up to its subjects' series (:func:`_twin_model`):
    everything that :func:`make_synthetic_dataset` writes and records, and each subject's clean
    series (:meth:`subject`), which that function writes and :func:`synthetic_clean_series`
    keeps in memory."""

    snr: float
    mimg: object
    mask: np.ndarray
    atlas: np.ndarray
    planting: np.ndarray | None
    names: list
    entries: list
    labels_in_mask: np.ndarray
    plant_in_mask: np.ndarray
    src_names: list
    sources: np.ndarray  # T x m
    live: list
    dead_plants: list
    n_ends: int
    ends_inferred: bool
    children: list  # SeedSequence(seed).spawn(n_subjects + 1): 0 the profiles, s + 1 subject s
    vox: np.ndarray
    n_vox: int
    profiles: dict
    weights: np.ndarray
    signal: np.ndarray  # T x V
    amp: np.ndarray | None
    amp_noise: np.ndarray | None
    jit_src: list | None
    jit_dice: list
    live_nets: list
    T: int
    k_drift: int
    dct: np.ndarray
    ar_phi: float
    smooth_fwhm_vox: float
    drift_amp: float

    def subject_signal(self, s: int) -> np.ndarray:
        """Subject s's planted signal (T x V), on its deformed networks under jitter."""
        if self.jit_src is None:
            return self.signal
        sv = self.jit_src[s]
        return self.sources @ np.where(sv >= 0, self.weights[:, np.maximum(sv, 0)], 0.0)

    def subject(self, s: int) -> tuple[np.ndarray, float, float, float, float]:
        """Subject s's (0-based) clean series, ``T x V`` float32 in the mask's C order, and its
        gain ``a``, noise level ``b``, AR coefficient ``phi`` and scanner gain ``c``, all drawn
        from its own generator (``children[s + 1]``): the same numbers in any order of subjects
        and from any thread."""
        from scipy.ndimage import gaussian_filter
        from scipy.signal import lfilter

        T, mask, n_vox, ar_phi, drift_amp = self.T, self.mask, self.n_vox, self.ar_phi, self.drift_amp
        sigma_s = self.smooth_fwhm_vox / 2.3548
        rng = np.random.default_rng(self.children[s + 1])
        a = float(rng.uniform(0.75, 1.25))
        b = float(rng.uniform(0.85, 1.15))
        phi = float(np.clip(rng.uniform(ar_phi - 0.1, ar_phi + 0.1), 0.0, 0.9))
        e = rng.standard_normal((T, *mask.shape), dtype=np.float32)
        if sigma_s > 0:
            e = gaussian_filter(e, sigma=(0, sigma_s, sigma_s, sigma_s), mode="nearest")
        e = e[:, mask]
        e = (e - e.mean(axis=0)) / e.std(axis=0)
        # stationary AR(1): x_0 = e_0, x_t = phi x_{t-1} + sqrt(1 - phi^2) e_t
        noise = np.empty((T, n_vox))
        noise[0] = e[0]
        noise[1:] = lfilter([np.sqrt(1 - phi ** 2)], [1.0, -phi], e[1:], axis=0, zi=phi * e[:1])[0]
        del e
        noise = (noise - noise.mean(axis=0)) / noise.std(axis=0)
        if drift_amp > 0:
            coef = rng.standard_normal((self.k_drift, n_vox)) / np.sqrt(self.k_drift)
            noise = (noise + drift_amp * (self.dct @ coef)) / np.sqrt(1 + drift_amp ** 2)
        if self.amp is None:
            x = a * self.snr * self.subject_signal(s) + b * noise
        else:
            x = a * self.snr * self.subject_signal(s) * self.amp + b * noise * self.amp_noise
        x = x.astype(np.float32)
        del noise
        # drawn after every draw above, so the clean series do not depend on it
        c = float(rng.uniform(0.9, 1.1))  # the subject's scanner gain (intensity units)
        return x, a, b, phi, c


def _twin_model(*, words: pd.DataFrame, n_trs: int, mask_img, atlas_img,
                network_names: Sequence[str], n_subjects: int, plant, timecourses, snr, seed: int,
                tr_s: float, start_offset_s: float, smooth_fwhm_vox: float, ar_phi: float,
                drift_amp: float, profile_fwhm_vox: float, hrf_model: str,
                sentence_pause_s: float | None, tissue: bool, planting_img,
                jitter_mm: float) -> _TwinModel:
    """The arguments of :func:`make_synthetic_dataset` (less ``out_dir``, ``task``, ``preproc``
    and ``overwrite``) checked, in its order, and the twin built up to its subjects' series:
    sources, spatial profiles (``children[0]``), grey-matter amplitude, every subject's
    jitter, drift basis."""
    snr = _check_numbers(n_trs, n_subjects, seed, snr, tr_s, ar_phi, smooth_fwhm_vox, drift_amp,
                         profile_fwhm_vox, start_offset_s, tissue, jitter_mm, sentence_pause_s)
    mimg, mask = _load_mask(mask_img)
    atlas = _label_grid(atlas_img, "atlas_img", mimg, mask)
    planting = None if planting_img is None else _label_grid(planting_img, "planting_img", mimg, mask)
    if isinstance(network_names, str) or not isinstance(network_names, Iterable):
        raise ParameterError("network_names", f"{network_names!r}", expected="a list of names")
    names = [str(n) for n in network_names]
    if len(set(names)) != len(names) or not names:
        raise ParameterError("network_names", "empty or duplicate names", expected="unique names")
    if atlas.max() > len(names):
        raise InputError("atlas_img", f"label {atlas.max()} but {len(names)} network names",
                         expected="labels 1..len(network_names)")
    if planting is not None and planting.max() > len(names):
        raise InputError("planting_img", f"label {planting.max()} but {len(names)} network names",
                         expected="labels 1..len(network_names), numbered as atlas_img")
    tc = _check_timecourses(timecourses, n_trs)
    entries = _validate_plant(DEFAULT_PLANT if plant is None else plant, names, FEATURES,
                              0 if tc is None else tc.shape[1])
    labels_in_mask = atlas[mask]
    # the networks that carry the signals: planting_img's when given, else the read-out atlas's
    plant_in_mask = labels_in_mask if planting is None else planting[mask]
    for e in entries:
        if not (plant_in_mask == names.index(e["network"]) + 1).any():
            if planting is not None:
                raise ParameterError("plant", f"network {e['network']!r} has no voxel of "
                                     "planting_img inside the mask",
                                     expected="networks present in planting_img within the mask")
            raise ParameterError("plant", f"network {e['network']!r} has no voxel inside the mask",
                                 expected="networks present in atlas_img within the mask")
    features = stimulus_features(words, int(n_trs), tr_s, start_offset_s=start_offset_s, hrf_model=hrf_model,
                                 sentence_pause_s=sentence_pause_s)

    # ---- sources and spatial weights
    def source(name: str) -> np.ndarray:
        if name.startswith("timecourse:"):
            v = tc[:, int(name.split(":")[1])]
            return (v - v.mean()) / v.std()
        return features[name].to_numpy()

    src_names = list(dict.fromkeys(e["source"] for e in entries))
    sources = np.column_stack([source(n) for n in src_names])  # T x m
    live, dead_plants = check_plants(entries, dict(zip(src_names, sources.T)), n_trs, words,
                                     sentence_pause_s)
    n_ends, ends_inferred = sentence_ends(words, sentence_pause_s)
    children = np.random.SeedSequence(int(seed)).spawn(int(n_subjects) + 1)
    rng0 = np.random.default_rng(children[0])
    vox = np.argwhere(mask)  # C order, as data[mask]
    n_vox = len(vox)
    profiles = _spatial_profiles(sorted({e["network"] for e in entries}), names, mask, plant_in_mask,
                                 rng0, profile_fwhm_vox)
    weights = np.zeros((len(src_names), n_vox))
    for e in entries:
        weights[src_names.index(e["source"])] += e["sign"] * e["weight"] * profiles[e["network"]]
    signal = sources @ weights  # T x V, peak amplitude 1 * weight

    zooms_mm = np.sqrt((np.asarray(mimg.affine, dtype=float)[:3, :3] ** 2).sum(axis=0))
    # tissue: signal and noise scaled by grey matter (as epi_baseline reads p_GM)
    amp = amp_noise = None
    if tissue:
        aff6 = tuple(map(tuple, np.round(np.asarray(mimg.affine, dtype=float), 6)))
        gm_v = _gm_on_grid(tuple(int(n) for n in mask.shape), aff6)[mask]
        amp, amp_noise = 0.25 + 0.75 * gm_v, 0.5 + 0.5 * gm_v
    # jitter: each subject's planting networks deformed (own generators: the noise draws of
    # children[...] are those of the twin without jitter); jit_src[s][v] = the mask voxel whose
    # label and profile voxel v takes (-1: a position outside the mask, no signal)
    jit_src: list[np.ndarray] | None = None
    jit_dice: list[float] = []
    live_nets = sorted({e["network"] for e, ok in zip(entries, live) if ok})
    if jitter_mm > 0:
        jit_src, jit_dice = _subject_jitter(mask, plant_in_mask, names, live_nets, jitter_mm, zooms_mm,
                                            seed, n_subjects)

    # drift basis: cosines with period >= 128 s (as SPM's high-pass cut-off)
    T = int(n_trs)
    k_drift, dct = _drift_basis(T, tr_s)
    return _TwinModel(
        snr=snr, mimg=mimg, mask=mask, atlas=atlas, planting=planting, names=names, entries=entries,
        labels_in_mask=labels_in_mask, plant_in_mask=plant_in_mask, src_names=src_names,
        sources=sources, live=live, dead_plants=dead_plants, n_ends=n_ends,
        ends_inferred=ends_inferred, children=children, vox=vox, n_vox=n_vox, profiles=profiles,
        weights=weights, signal=signal, amp=amp, amp_noise=amp_noise, jit_src=jit_src,
        jit_dice=jit_dice, live_nets=live_nets, T=T, k_drift=k_drift, dct=dct, ar_phi=ar_phi,
        smooth_fwhm_vox=smooth_fwhm_vox, drift_amp=drift_amp)


def make_synthetic_dataset(out_dir: str | Path, *, task: str, words: pd.DataFrame, n_trs: int,
                           mask_img, atlas_img, network_names: Sequence[str], n_subjects: int = 8,
                           plant: Sequence[dict] | None = None, timecourses=None,
                           snr: float | None = None, seed: int = 0, tr_s: float = TR_S,
                           start_offset_s: float = 0.0, smooth_fwhm_vox: float = 2.0,
                           ar_phi: float = 0.4, drift_amp: float = 0.3, profile_fwhm_vox: float = 3.0,
                           hrf_model: str = "spm", preproc: bool = True,
                           overwrite: bool = False, sentence_pause_s: float | None = 0.5,
                           tissue: bool = False, planting_img=None,
                           jitter_mm: float = 0.0) -> Path:
    """Write a Narratives-shaped synthetic fMRI data set with planted network couplings.

    Every voxel of a planted network carries ``sign * weight * snr * g_v * a_s * source(t)``
    plus noise, where ``source`` is a z-scored story feature (:func:`stimulus_features`) or a
    column of ``timecourses``, ``g_v`` in [0.25, 1] a smooth spatial profile (1 at the network's
    peak voxel) and ``a_s`` a subject gain (0.75-1.25). Voxels of unplanted networks and
    outside every network carry noise only. Noise per subject, scaled by a subject noise level
    (0.85-1.15): Gaussian-smoothed white noise (``smooth_fwhm_vox``), AR(1) in time (phi drawn
    in ``ar_phi`` +- 0.1), plus slow drift (cosines below 1/128 Hz, ``drift_amp`` of the SD).

    Dead plants: a plant whose source is constant over the scan (a stimulus feature that
    :func:`stimulus_features` set to 0, e.g. ``drift`` of a story with one sentence) carries no
    signal. It is kept in ``truth.json`` with ``"live": false`` (every entry then has the key),
    listed in ``dead_plants`` (network, source, reason), and a network with no live plant is
    not ``planted`` and is in ``unplanted``; a warning says so. When every plant is dead,
    :class:`ParameterError` (``plant``). With all plants live, ``truth.json`` is as before (no
    ``live`` keys; :func:`live_plants` reads both).

    A harder twin (all off by default; with the defaults the files are byte for byte those of
    a twin made without these options):

    - ``tissue=True``: the signal at voxel v is multiplied by ``0.25 + 0.75 * p_GM(v)`` and
      the noise by ``0.5 + 0.5 * p_GM(v)`` (p_GM: the MNI152 grey-matter probability on the
      mask's grid, as in :func:`epi_baseline`): white matter and CSF fluctuate less than grey
      matter, and carry less of the neural signal, so a voxel's SNR falls from 1x (p_GM = 1)
      to 0.5x (p_GM = 0) that of the uniform twin; voxel-wise z-scored analyses see that
      SNR, and group maps of the twin then scale with grey matter, as real ones do.
    - ``planting_img``: the signals go on the networks of this label image (same numbering
      as ``atlas_img``) instead of ``atlas_img``'s; ``atlas_img`` stays the read-out atlas of
      ``truth.json`` (names, ``networks[...].n_voxels``, ``atlas_sha256``). Each planted
      network's Dice between the read-out and the planting mask is recorded
      (``networks[name]["dice_readout_vs_planted"]``).
    - ``jitter_mm``: subject-specific boundaries. For subject s the planting labels are moved by
      :func:`deform_labels` (a smooth random displacement field: 3 components of white noise
      smoothed with a Gaussian of FWHM :data:`JITTER_FWHM_VOX` voxels, RMS length ``jitter_mm``
      mm; nearest-neighbour resampling at x + d(x), within the mask), drawn from its own
      generator (``SeedSequence([seed, 7919])``, child s): the noise is that of the same twin
      without jitter. The spatial profile ``g_v`` is drawn once on the undeformed planting
      labels and sampled at the same deformed positions as the labels, so subject s's planted
      voxels are exactly its deformed networks. ``truth["jitter"]`` holds the model and, per
      subject, the mean Dice over the planted networks between its deformed and the
      undeformed planting networks.

    Written (atomically: a temporary folder renamed into place), in the real layout::

        dataset_description.json, participants.tsv, code/scan_exclude.json,
        sub-XXX/func/sub-XXX_task-T_events.tsv,
        derivatives/afni-nosmooth/sub-XXX/func/sub-XXX_task-T_space-MNI152NLin2009cAsym_res-native_desc-clean_bold.nii.gz
        derivatives/afni-nosmooth/tpl-MNI152NLin2009cAsym/tpl-MNI152NLin2009cAsym_res-T_desc-brain_mask.nii.gz
        derivatives/fmriprep/sub-XXX/func/sub-XXX_task-T_space-MNI152NLin2009cAsym_res-native_desc-preproc_bold.nii.gz
            (the same series on a realistic baseline, for tSNR: :func:`epi_baseline`)
        truth.json (planted couplings, gains, noise, grid, seed), truth_sources.tsv (T x sources)

    The ``clean`` scans' series without any file, as :func:`load_dataset` would read them:
    :func:`synthetic_clean_series` (the same code draws them).

    Parameters
    ----------
    out_dir : str or Path
        The data set's root (must not exist unless ``overwrite``).
    task : str
        BIDS task label (the story's name).
    words : pandas.DataFrame
        Word table (``word``, ``onset``, ``offset``, ``sentence_end``).
    n_trs : int
        Scan length in TRs (>= 20).
    mask_img : image or path
        Brain mask; defines the grid (e.g. :func:`brain_mask`).
    atlas_img : image or path
        3-D integer labels on the mask's grid: 0 = none, label i = ``network_names[i-1]``.
    network_names : sequence of str
    n_subjects : int
    plant : list of dict, optional
        ``{"network", "source", "sign": +1/-1, "weight"}``; default :data:`DEFAULT_PLANT`.
    timecourses : array (n_trs x m), optional
        Extra sources, referred to as ``"timecourse:i"`` (z-scored here).
    snr : float, optional
        Signal/noise SD ratio at a peak voxel (default :data:`DEFAULT_SNR`).
    seed : int
        Everything random derives from it: same seed, same bytes.
    tr_s, start_offset_s, hrf_model
        As in :func:`stimulus_features`.
    smooth_fwhm_vox, ar_phi, drift_amp, profile_fwhm_vox : float
        Noise and spatial-profile parameters.
    preproc : bool
        Also write the ``preproc`` volumes (for tSNR; ~1 s per subject at 6 mm); False when
        only the cleaned volumes are needed (e.g. recovery sweeps).
    overwrite : bool
        Replace an existing ``out_dir``.
    sentence_pause_s : float or None
        As in :func:`stimulus_features`: sentence ends of a word table without any, from
        pauses (default 0.5 s; recorded in ``truth["sentence_ends"]`` when used).
    tissue : bool
        Scale signal and noise with grey matter (see above; ``truth["tissue"]`` when True).
    planting_img : image or path, optional
        3-D integer labels on the mask's grid, numbered as ``atlas_img``: the networks that
        carry the signals (default: ``atlas_img``; ``truth["planting"]`` when given).
    jitter_mm : float
        RMS displacement (mm) of every subject's planting networks (default 0: none).

    Returns
    -------
    Path
        ``out_dir``.
    """
    import nibabel as nib

    from .. import __version__, fetch

    # ---- validate everything before any work
    out_dir = Path(out_dir)
    task = _bids_label("task", task)
    if out_dir.exists() and not overwrite:
        raise InputError(out_dir, "already exists", expected="a new folder, or overwrite=True")
    tm = _twin_model(words=words, n_trs=n_trs, mask_img=mask_img, atlas_img=atlas_img,
                     network_names=network_names, n_subjects=n_subjects, plant=plant,
                     timecourses=timecourses, snr=snr, seed=seed, tr_s=tr_s,
                     start_offset_s=start_offset_s, smooth_fwhm_vox=smooth_fwhm_vox, ar_phi=ar_phi,
                     drift_amp=drift_amp, profile_fwhm_vox=profile_fwhm_vox, hrf_model=hrf_model,
                     sentence_pause_s=sentence_pause_s, tissue=tissue, planting_img=planting_img,
                     jitter_mm=jitter_mm)
    kinds = fetch.load_manifest()["kinds"]
    # what the files and truth.json record (the subjects' series: tm.subject)
    snr, mimg, mask, atlas, planting, names = tm.snr, tm.mimg, tm.mask, tm.atlas, tm.planting, tm.names
    entries, live, dead_plants, live_nets = tm.entries, tm.live, tm.dead_plants, tm.live_nets
    labels_in_mask, plant_in_mask, vox, n_vox = tm.labels_in_mask, tm.plant_in_mask, tm.vox, tm.n_vox
    src_names, sources, profiles, amp, jit_dice = tm.src_names, tm.sources, tm.profiles, tm.amp, tm.jit_dice
    n_ends, ends_inferred, T, k_drift = tm.n_ends, tm.ends_inferred, tm.T, tm.k_drift

    # ---- write into a temporary sibling, then rename into place
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}"
    subjects = [f"{i:03d}" for i in range(1, int(n_subjects) + 1)]
    gains, noise_levels, phis, scales = [], [], [], []
    base_mean, base_tsnr = epi_baseline(mimg, mask) if preproc else (None, None)
    try:
        tmp.mkdir()
        zooms = tuple(float(z) for z in np.abs(np.diag(mimg.affine))[:3])
        w_on = float(pd.to_numeric(words["onset"], errors="coerce").min()) + start_offset_s
        w_off = float(pd.to_numeric(words["offset"], errors="coerce").max()) + start_offset_s

        def one_subject(s: int) -> tuple[float, float, float, float]:
            sub = subjects[s]
            x, a, b, phi, c = tm.subject(s)

            def write(kind: str, values: np.ndarray, dtype=np.float32) -> None:
                vol = np.zeros((*mask.shape, T), dtype=np.float32)
                vol[mask] = values.T
                img = nib.Nifti1Image(vol, mimg.affine, dtype=dtype)  # int16: nibabel scales
                img.header.set_xyzt_units("mm", "sec")
                img.header.set_zooms((*zooms, float(tr_s)))
                img.header["descrip"] = b"llmbrain synthetic twin"
                rel = kinds[kind]["path"].format(sub=sub, task=task, run="", hemi=None)
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                img.to_filename(tmp / rel)

            write("clean", x)
            # scanner-like volume before confound regression (int16, scaled): the same series on
            # the voxel's mean intensity, scaled to its tSNR (clean = this, demeaned and rescaled)
            if preproc:
                write("preproc", (c * base_mean * (1.0 + x / base_tsnr)).astype(np.float32), np.int16)
            ev = kinds["events"]["path"].format(sub=sub, task=task, run="")
            (tmp / ev).parent.mkdir(parents=True, exist_ok=True)
            pd.DataFrame([{"onset": round(w_on, 3), "duration": round(w_off - w_on, 3),
                           "trial_type": "story", "stim_file": f"{task}_audio.wav"}]).to_csv(
                tmp / ev, sep="\t", index=False)
            return a, b, phi, c

        # subjects are independent (own seed): threads (numpy, scipy and zlib release the GIL)
        n_workers = max(1, min(int(n_subjects), os.cpu_count() or 1, 4))
        with ThreadPoolExecutor(max_workers=n_workers) as pool:
            for a, b, phi, c in pool.map(one_subject, range(int(n_subjects))):
                gains.append(a)
                noise_levels.append(b)
                phis.append(phi)
                scales.append(c)
        mask_rel = kinds["mask"]["path"].format(task=task)
        (tmp / mask_rel).parent.mkdir(parents=True, exist_ok=True)
        mimg_out = nib.Nifti1Image(mask.astype(np.uint8), mimg.affine)
        mimg_out.header.set_xyzt_units("mm", "sec")
        mimg_out.to_filename(tmp / mask_rel)
        desc = {"Name": f"llmbrain synthetic twin of Narratives ({task})", "BIDSVersion": "1.8.0",
                "DatasetType": "raw", "License": "CC0",
                "GeneratedBy": [{"Name": "llmbrain_utils.fmri.make_synthetic_dataset",
                                 "Version": __version__}]}
        (tmp / "dataset_description.json").write_text(json.dumps(desc, indent=2))
        deriv = tmp / "derivatives" / "afni-nosmooth"
        (deriv / "dataset_description.json").write_text(json.dumps(
            {**desc, "DatasetType": "derivative", "Name": desc["Name"] + ", afni-nosmooth"}, indent=2))
        if preproc:
            (tmp / "derivatives" / "fmriprep" / "dataset_description.json").write_text(json.dumps(
                {**desc, "DatasetType": "derivative", "Name": desc["Name"] + ", fmriprep"}, indent=2))
        pd.DataFrame({"participant_id": [f"sub-{s}" for s in subjects], "age": "n/a", "sex": "n/a",
                      "task": task, "condition": "n/a", "comprehension": "n/a"}).to_csv(
            tmp / "participants.tsv", sep="\t", index=False)
        (tmp / "code").mkdir(exist_ok=True)
        (tmp / "code" / "scan_exclude.json").write_text(json.dumps({task: {}}, indent=2))
        pd.DataFrame(sources, columns=src_names, index=pd.RangeIndex(T, name="tr")).to_csv(
            tmp / "truth_sources.tsv", sep="\t", float_format="%.6f")
        planted = []
        # with a dead plant every entry says whether it is live; else as before (no key)
        flag = (lambda ok: {"live": ok}) if dead_plants else (lambda ok: {})
        for e, ok in zip(entries, live):
            prof = profiles[e["network"]]
            peak = int(np.argmax(prof))
            planted.append({**e, "label": names.index(e["network"]) + 1,
                            "n_voxels": int((prof > 0).sum()), "peak_voxel": peak,
                            "peak_ijk": vox[peak].tolist(),
                            "peak_xyz_mm": (mimg.affine[:3, :3] @ vox[peak] + mimg.affine[:3, 3]).round(2).tolist(),
                            **flag(ok)})
        ratio = np.array(gains) * snr / np.array(noise_levels)
        truth = {
            "generator": "llmbrain_utils.fmri.make_synthetic_dataset", "version": __version__,
            "task": task, "subjects": subjects, "n_subjects": int(n_subjects), "n_trs": T,
            "tr_s": float(tr_s), "seed": int(seed), "snr": float(snr), "start_offset_s": float(start_offset_s),
            "hrf_model": hrf_model, "features": list(FEATURES), "sources": src_names,
            "plant": planted,
            "networks": {n: {"label": i + 1, "n_voxels": int((labels_in_mask == i + 1).sum()),
                             "planted": any(e["network"] == n and ok for e, ok in zip(entries, live)),
                             "couplings": [{"source": e["source"], "sign": e["sign"], "weight": e["weight"],
                                            **flag(ok)}
                                           for e, ok in zip(entries, live) if e["network"] == n]}
                         for i, n in enumerate(names)},
            "unplanted": [n for n in names if not any(e["network"] == n and ok
                                                      for e, ok in zip(entries, live))],
            "subject_gain": [round(g, 6) for g in gains], "subject_noise": [round(b, 6) for b in noise_levels],
            "noise": {"smooth_fwhm_vox": float(smooth_fwhm_vox), "ar_phi": [round(p, 6) for p in phis],
                      "drift_amp": float(drift_amp), "drift_cutoff_s": 128.0, "n_drift": k_drift,
                      "profile_fwhm_vox": float(profile_fwhm_vox), "profile_range": [0.25, 1.0]},
            "expected_peak_r": [round(float(r / np.sqrt(1 + r ** 2)), 4) for r in ratio],
            "grid": {"shape": list(mask.shape), "affine": np.round(mimg.affine, 6).tolist(),
                     "voxel_mm": list(zooms), "n_voxels": n_vox, "space": SPACE},
            "mask_sha256": _array_sha(mask.astype(np.uint8)), "atlas_sha256": _array_sha(atlas),
            "bold": kinds["clean"]["path"].format(sub="{sub}", task=task, run="", hemi=None),
            "preproc": None if not preproc else {
                "bold": kinds["preproc"]["path"].format(sub="{sub}", task=task, run="", hemi=None),
                "model": "preproc = c_s * mean_v * (1 + clean / tsnr_v); see fmri.epi_baseline",
                "subject_scale": [round(c, 6) for c in scales],
                "mean_intensity_median": round(float(np.median(base_mean)), 3),
                "tsnr_v": {"median": round(float(np.median(base_tsnr)), 3),
                           "min": round(float(base_tsnr.min()), 3), "max": round(float(base_tsnr.max()), 3)},
            },
        }
        # what the defaults leave out (their truth.json stays byte for byte as before)
        if dead_plants:
            truth["dead_plants"] = dead_plants
        if ends_inferred:
            truth["sentence_ends"] = {"inferred_from_pauses": True,
                                      "sentence_pause_s": float(sentence_pause_s), "n": n_ends}
        if tissue:
            truth["tissue"] = {"model": "signal x (0.25 + 0.75 p_GM), noise x (0.5 + 0.5 p_GM)",
                               "enabled": True,
                               "p_GM": "nilearn MNI152 grey-matter template on the mask's grid",
                               "applies_to": ["signal", "noise"],
                               "amplitude_median": round(float(np.median(amp)), 4)}
        if planting is not None:
            truth["planting"] = {"source": "planting_img", "sha256": _array_sha(planting),
                                 "n_voxels": {n: int((plant_in_mask == i + 1).sum())
                                              for i, n in enumerate(names)}}
        if planting is not None or jitter_mm > 0:
            for n in live_nets:
                lab = names.index(n) + 1
                truth["networks"][n]["dice_readout_vs_planted"] = round(
                    _dice_masks(labels_in_mask == lab, plant_in_mask == lab), 4)
        if jitter_mm > 0:
            truth["jitter"] = {"rms_mm": float(jitter_mm), "fwhm_vox": JITTER_FWHM_VOX,
                               "model": DEFORM_MODEL.replace("fwhm_vox", f"{JITTER_FWHM_VOX:g}")
                                        .replace("rms_mm", f"{float(jitter_mm):g}"),
                               "seed": [int(seed), 7919],
                               "profile": "drawn on the undeformed planting networks, sampled "
                                          "at the deformed positions",
                               "mean_dice_per_subject": [round(d, 4) for d in jit_dice],
                               "mean_dice": round(float(np.mean(jit_dice)), 4)}
        (tmp / "truth.json").write_text(json.dumps(truth, indent=2))
        old = None
        if out_dir.exists():
            old = out_dir.parent / f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("synthetic data set %s: %d subjects x %d TRs x %d voxels", out_dir, n_subjects, T, n_vox)
    return out_dir


def synthetic_clean_series(*, words: pd.DataFrame, n_trs: int, mask_img, atlas_img,
                           network_names: Sequence[str], n_subjects: int = 8,
                           plant: Sequence[dict] | None = None, timecourses=None,
                           snr: float | None = None, seed: int = 0, tr_s: float = TR_S,
                           start_offset_s: float = 0.0, smooth_fwhm_vox: float = 2.0,
                           ar_phi: float = 0.4, drift_amp: float = 0.3,
                           profile_fwhm_vox: float = 3.0, hrf_model: str = "spm",
                           sentence_pause_s: float | None = 0.5, tissue: bool = False,
                           planting_img=None, jitter_mm: float = 0.0, subjects=None,
                           detrend: bool = False, zscore: bool = False) -> np.ndarray:
    """The subjects' scans of a synthetic twin in memory: no file written, none read.

    The twin is the one :func:`make_synthetic_dataset` writes with the same arguments (the
    same code draws the same numbers: its ``clean`` volumes hold exactly these float32 series),
    and each subject's series goes through the loader's own standardisation
    (:func:`~llmbrain_utils.fmri.io._standardize`, as :func:`load_bold` after reading a scan):
    the array is, bit for bit, ``load_dataset(root, task, subjects, mask_img, n_trs=n_trs,
    tr_s=tr_s, detrend=detrend, zscore=zscore)[0]`` of that written twin (``root``), for
    subjects that the loader does not leave out (a task named after a Narratives story
    carries its authors' exclusions: pick the subjects with :func:`dataset_paths`). For a
    caller that would only write a twin to read it back (recovery sweeps): no gzip, no files.

    Parameters
    ----------
    words, n_trs, mask_img, atlas_img, network_names, n_subjects, plant, timecourses, snr, \
seed, tr_s, start_offset_s, smooth_fwhm_vox, ar_phi, drift_amp, profile_fwhm_vox, hrf_model, \
sentence_pause_s, tissue, planting_img, jitter_mm
        As in :func:`make_synthetic_dataset` (same checks and errors).
    subjects : str, int or iterable, optional
        The subjects to return, in this order (labels ``"001"``, ``"001-003"``, ``[1, 3]``...,
        as :func:`llmbrain_utils.fetch.parse_subjects`; each in ``1..n_subjects``); default
        all ``n_subjects``. Each subject has its own generator: a subject's series does not
        depend on which others are made.
    detrend, zscore : bool
        As in :func:`load_bold` (default neither: the clean series as written).

    Returns
    -------
    numpy.ndarray
        ``S x T x V`` float32 (the mask's voxels in C order, as ``data[mask]``).
    """
    from .. import fetch
    from .io import _standardize

    tm = _twin_model(words=words, n_trs=n_trs, mask_img=mask_img, atlas_img=atlas_img,
                     network_names=network_names, n_subjects=n_subjects, plant=plant,
                     timecourses=timecourses, snr=snr, seed=seed, tr_s=tr_s,
                     start_offset_s=start_offset_s, smooth_fwhm_vox=smooth_fwhm_vox, ar_phi=ar_phi,
                     drift_amp=drift_amp, profile_fwhm_vox=profile_fwhm_vox, hrf_model=hrf_model,
                     sentence_pause_s=sentence_pause_s, tissue=tissue, planting_img=planting_img,
                     jitter_mm=jitter_mm)
    labels = [f"{i:03d}" for i in range(1, int(n_subjects) + 1)] if subjects is None \
        else fetch.parse_subjects(subjects)
    if not labels or any(int(sub) not in range(1, int(n_subjects) + 1) for sub in labels):
        raise ParameterError("subjects", f"{subjects!r}",
                             expected=f"subjects of the twin, in 1..{int(n_subjects)}")
    out = np.empty((len(labels), tm.T, tm.n_vox), dtype=np.float32)

    def one_subject(i: int) -> None:
        x = tm.subject(int(labels[i]) - 1)[0]
        out[i] = _standardize(x, f"synthetic twin (seed {seed}), sub-{labels[i]}",
                              detrend=detrend, zscore=zscore)[0]

    # as make_synthetic_dataset: subjects are independent (own seed), numpy and scipy release
    # the GIL
    n_workers = max(1, min(len(labels), os.cpu_count() or 1, 4))
    with ThreadPoolExecutor(max_workers=n_workers) as pool:
        list(pool.map(one_subject, range(len(labels))))
    return out


def read_truth(root: str | Path) -> dict:
    """The ``truth.json`` of a synthetic data set."""
    p = Path(root) / "truth.json"
    if not p.is_file():
        raise InputError(p, "file not found", expected="a data set made by make_synthetic_dataset")
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise InputError(p, f"not valid JSON ({e})") from None
