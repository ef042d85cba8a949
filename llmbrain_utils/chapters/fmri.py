"""What chapter ``fmri`` (``notebooks/03_fmri_data.py``) shows: the listeners' data as the
loader reads it, the inter-subject correlation (the noise ceiling), tSNR, a carpet plot and, for
the synthetic twin, the planted truth.

Every function reads the fMRI stage's artifact (``art``) or what :func:`load` took from it, and
prints one summary, prints one table or draws one figure. Both sources (the synthetic twin and
real data: ``data.truth is None``) and both spaces (a volume and a cortical mesh: ``data.mesh``)
are handled.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .. import fetch, fmri, plotting, stages


@dataclass
class FmriData:
    """What the chapter reads from the fMRI stage's artifact: the listeners' BOLD (S x T x V),
    where it lies (the brain mask image, or the name of the cortical mesh), the leave-one-out
    ISC with its p values and FDR mask, and the twin's planted truth (None for real data)."""

    bold: Any
    where: Any
    isc: np.ndarray
    isc_p: np.ndarray
    keep: np.ndarray
    truth: dict | None

    @property
    def mesh(self) -> str | None:
        """The cortical mesh's name, or None on a volume."""
        return self.where if isinstance(self.where, str) else None

    @property
    def unit(self) -> str:
        """What a column of the data is: ``"vertices"`` on a mesh, ``"voxels"`` in a volume."""
        return "vertices" if self.mesh else "voxels"

    @property
    def shape(self) -> tuple[int, int, int]:
        """(subjects, TRs, voxels or vertices)."""
        return self.bold.shape


def load(art, cfg) -> FmriData:
    """Read the fMRI stage's artifact ``art``: the BOLD (in memory), the mask or mesh, the ISC
    and its FDR mask at ``cfg.alpha``, the planted truth."""
    bold = stages.read_bold(art, mmap=False)
    where = stages.read_where(art)  # the brain mask, or the name of the cortical mesh
    isc, isc_p = np.load(art.file("isc.npy")), np.load(art.file("isc_p.npy"))
    keep = fmri.isc_mask(isc_p, cfg.alpha)
    return FmriData(bold=bold, where=where, isc=isc, isc_p=isc_p, keep=keep,
                    truth=art.info.get("truth"))


def summary(data: FmriData, cfg) -> None:
    """Print the data's size and grid, the ISC's median and maximum, and how many voxels (or
    vertices) have an ISC above its null at FDR ``cfg.alpha``."""
    S, T, V = data.shape
    isc, keep, unit = data.isc, data.keep, data.unit
    grid = f"{data.mesh} cortex" if data.mesh else f"{cfg.resolution_mm:g} mm grid"
    print(f"subjects: {S}, TRs: {T}, {unit}: {V} ({grid})")
    print(f"ISC (leave-one-out r): median {np.median(isc):.3f}, max {isc.max():.2f}")
    print(f"{unit} with significant ISC (FDR {cfg.alpha}): {keep.sum()} ({keep.mean():.1%})")


def loaded_files(art, data: FmriData, cfg) -> None:
    """Print what the loader read: the source, the subjects, the first subject's files in the
    data set's layout (cleaned and preprocessed volumes, or the surface files), the window of
    TRs cut to the story, and the grid or mesh."""
    S, T, V = data.shape
    truth, mesh, where = data.truth, data.mesh, data.where
    kinds = fetch.load_manifest()["kinds"]
    if truth is not None:
        root = art.path / "dataset"
        print(f"source: synthetic twin (seed {truth['seed']}), written to the artifact's dataset/ folder")
        window = f"TRs 0-{T - 1} of {truth['n_trs']} (the twin's scans hold exactly the story's grid)"
    else:
        root = fetch.data_home()
        w = art.info["scan_window"]
        print(f"source: Narratives (ds002345) under {root}")
        window = (f"TRs {w['onset_tr']}-{w['onset_tr'] + T - 1} of the scan (the audio starts at "
                  f"{w['audio_onset_s']:g} s; the story itself at TR {w['story_onset_tr']})")
    subs = pd.read_csv(art.file("subjects.tsv"), sep="\t", dtype=str)["subject"].tolist()
    print("subjects:", ", ".join(subs))
    task = cfg.story if truth is not None else fetch.story_info(cfg.story)["task"]
    for kind in ("clean", "preproc") if not mesh else ("fsaverage6",):
        path = Path(kinds[kind]["path"].format(sub=subs[0], task=task, run="", hemi="L"))
        if mesh and truth is not None:  # the twin on its mesh, named as Narratives' fsaverage6 files
            path = Path(str(path).replace("space-fsaverage6", f"space-{mesh}"))
        head, cut, tail = path.name.partition("_space-")  # BIDS names are long: two lines
        print(f"{kind}: {path.parent}/")
        print(f"  {head}{cut}")
        print(f"    {tail} ...")
    print("window:", window)
    if mesh:
        print(f"mesh: {mesh} (hemi-L and hemi-R), {V} cortex vertices (the medial wall left out)")
    else:
        print(f"grid: {cfg.resolution_mm:g} mm, shape {where.shape}, {V} brain voxels (nilearn's MNI152 mask)")


def isc_figure(data: FmriData):
    """Figure: the leave-one-out ISC (r) where it passes its null at FDR (elsewhere 0), on a
    glass brain (or the inflated cortex)."""
    return plotting.overview(np.where(data.keep, data.isc, 0), data.where, cmap="hot",
                             symmetric=False, label="ISC (r)")


def tsnr_summary(art) -> np.ndarray | None:
    """Print the tSNR (mean over subjects: median and 5-95% range; each subject's median), or
    why there is none; return the tSNR (subjects x voxels) or None."""
    tsnr_info = art.info.get("tsnr") or {}
    if tsnr_info.get("kind"):
        tsnr = np.load(art.file("tsnr.npy"))  # S x V
        t_mean = tsnr.mean(axis=0)
        print(f"tSNR (mean over {tsnr.shape[0]} subjects): median {np.median(t_mean):.0f}, "
              f"5-95% {np.percentile(t_mean, 5):.0f}-{np.percentile(t_mean, 95):.0f};")
        print(f"    per-subject medians {np.round(np.median(tsnr, axis=1)).astype(int).tolist()}")
    else:
        tsnr = None
        print("no tSNR:", tsnr_info.get("reason", "not computed"))
    return tsnr


def tsnr_map(tsnr: np.ndarray, where):
    """Figure: the tSNR, mean over subjects (``tsnr``: subjects x voxels), on five axial slices
    of the volume ``where`` (the brain mask), coloured 0-150."""
    from nilearn import plotting as nplot

    t_mean = tsnr.mean(axis=0)
    fig = plt.figure(figsize=(6.7, 2.0))
    d = nplot.plot_img(plotting.to_img(t_mean, where), display_mode="z", cut_coords=[-18, 0, 18, 36, 54],
                       figure=fig, cmap="viridis", vmin=0, vmax=150, threshold=1, colorbar=True,
                       cbar_tick_format="%.0f", black_bg=False, annotate=True)
    plotting.label_colorbar(d, "tSNR")
    fig.suptitle("tSNR, mean over subjects (colour: tSNR)", y=1.02)
    return fig


def tsnr_histogram(tsnr: np.ndarray):
    """Figure: the distribution of tSNR over voxels, per subject (grey) and for the mean over
    subjects (blue), with the range typical of cortex (50-150) shaded."""
    t_mean = tsnr.mean(axis=0)
    fig, ax_h = plt.subplots(figsize=(5.4, 3.0))
    for s in range(tsnr.shape[0]):
        ax_h.hist(tsnr[s], bins=40, range=(0, 200), histtype="step", lw=0.8, color="0.5", alpha=0.6)
    ax_h.hist(t_mean, bins=40, range=(0, 200), histtype="step", lw=1.8, color="C0", label="mean")
    ax_h.axvspan(50, 150, color="C2", alpha=0.08, label="typical cortex")
    ax_h.set(xlabel="tSNR", ylabel="voxels", title="Distribution (grey: each subject)")
    ax_h.legend(fontsize=9)
    return fig


def network_labels(atlas, n: int) -> np.ndarray:
    """Each of ``n`` voxels' network in ``atlas``: 1 + the index of its mask, 0 outside every
    mask (a later mask wins where masks overlap)."""
    labels = np.zeros(n, int)
    for i, m in enumerate(atlas.masks):
        labels[m] = i + 1
    return labels


def carpet_plot(data: FmriData, atlas, *, tr_s: float):
    """Figure: a carpet plot of the first subject (rows: voxels grouped by ``atlas``'s networks, named
    at the right where a block is tall enough; columns: the story's TRs), z-scored."""
    S, T, V = data.shape
    labels = network_labels(atlas, V)
    img, lab = fmri.carpet_array(data.bold[0], labels, max_voxels=1500)
    fig, ax = plt.subplots(figsize=(6.8, 4.2))
    im = ax.imshow(img, aspect="auto", cmap="gray", vmin=-2.5, vmax=2.5, extent=[0, T * tr_s, len(lab), 0])
    ax.set(xlabel="time (s)", ylabel=f"{data.unit} by network", title="Carpet plot, subject 001")
    fig.colorbar(im, ax=ax, label="BOLD (z)", orientation="horizontal", fraction=0.05, pad=0.16, aspect=40)
    bounds = np.flatnonzero(np.diff(lab)) + 1
    for b in bounds:
        ax.axhline(b, color="C1", lw=0.6)
    ax.set_yticks([])
    edges = np.concatenate([[0], bounds, [len(lab)]])
    ax2 = ax.secondary_yaxis("right")  # each block's network, where it is tall enough to name
    mids = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:]) if b - a >= 0.035 * len(lab)]
    names = [atlas.network_names[lab[a] - 1] if lab[a] > 0 else "(none)"
             for a, b in zip(edges[:-1], edges[1:]) if b - a >= 0.035 * len(lab)]
    ax2.set_yticks(mids, names, fontsize=9)
    return fig


def planted_table(truth: dict | None) -> None:
    """Print the twin's plan: each planted network with its story property, sign, weight and
    size; the unplanted networks; the SNR and the expected peak single-subject r (for real data,
    that there is no planted truth)."""
    if truth is not None:
        plant = pd.DataFrame(truth["plant"])[["network", "source", "sign", "weight", "n_voxels"]]
        print(plant.to_string(index=False))
        print(textwrap.fill("unplanted networks: " + ", ".join(truth["unplanted"]), 88, subsequent_indent="    "))
        print(f"snr = {truth['snr']}; expected peak single-subject r per subject:")
        print(f"    {np.round(truth['expected_peak_r'], 2).tolist()}")
    else:
        print("real data: no planted truth")


def planted_map(data: FmriData, cfg, art):
    """Figure: where the twin's live signals are planted (the atlas, or the atlas deformed for
    the realistic twin), one colour per network, the legend naming its story property and sign."""
    truth, where = data.truth, data.where
    S, T, V = data.shape
    lab_v = stages.planting_labels(cfg, art)  # the atlas (ideal twin) or the atlas deformed (realistic)
    live = fmri.live_plants(truth)
    roi = np.zeros(V)
    for i, p in enumerate(live):
        roi[lab_v == p["label"]] = i + 1
    return plotting.labels_map(roi, where, [f"{p['network']}: {p['source']} ({'+' if p['sign'] > 0 else '-'})" for p in live],
                               colors=plt.cm.tab10(np.arange(len(live))),
                               title="Where the twin's signals are planted (network: story property, sign)")


def planted_sources(art) -> pd.DataFrame:
    """The twin's planted sources (story properties convolved with the HRF), one column each,
    over the story's TRs."""
    return pd.read_csv(art.path / "dataset" / "truth_sources.tsv", sep="\t")


def network_isc(isc: np.ndarray, atlas, truth: dict):
    """The ISC of each of ``atlas``'s networks' voxels ({network: values}) and the set of the
    networks ``truth`` plants."""
    groups = {n: isc[atlas.masks[atlas.index(n)]] for n in atlas.network_names}
    planted = {p["network"] for p in truth["plant"]}
    return groups, planted


def planted_contrast(isc: np.ndarray, atlas, truth: dict) -> tuple[float, float]:
    """The median ISC over the voxels of the planted networks, and over those of the others."""
    groups, planted = network_isc(isc, atlas, truth)
    ins = np.concatenate([groups[n] for n in planted]); out = np.concatenate([groups[n] for n in groups if n not in planted])
    return np.median(ins), np.median(out)


def sources_and_network_isc(art, data: FmriData, atlas, *, tr_s: float):
    """Figure: the twin's planted sources over time (top) and the ISC of every network's voxels
    (bottom, planted networks first, marked *); prints the median ISC in the planted networks
    and in the others."""
    truth, isc = data.truth, data.isc
    src = planted_sources(art)
    names = list(dict.fromkeys(p["source"] for p in truth["plant"]))
    fig, axes = plt.subplots(2, 1, figsize=(7.2, 7.4), gridspec_kw={"height_ratios": [1, 1.3]})
    plotting.time_courses(axes[0], src[names].to_numpy(), tr_s=tr_s, labels=names)
    axes[0].set_title("Planted sources (HRF-convolved story properties)")
    groups, planted = network_isc(isc, atlas, truth)
    order = sorted(groups, key=lambda n: (n not in planted, n))
    axes[1].boxplot([groups[n] for n in order], orientation="horizontal", showfliers=False)
    axes[1].set_yticks(range(1, len(order) + 1), [n + (" *" if n in planted else "") for n in order], fontsize=9)
    axes[1].axvline(0, color="0.6", lw=0.8)
    axes[1].set(xlabel="ISC", title="ISC by network (* planted)")
    fig.tight_layout()
    ins, out = planted_contrast(isc, atlas, truth)
    print(f"median ISC in planted networks {ins:.3f}, in unplanted networks {out:.3f}")
    return fig


def calibration(bold, truth: dict, src: pd.DataFrame) -> pd.DataFrame:
    """Single-subject calibration: for each planted network, the correlation of its peak voxel
    with its signed source, median and max over subjects (``bold``: S x T x V)."""
    S = len(bold)
    rows = []
    for p in truth["plant"]:
        v = p["peak_voxel"]
        rs = [np.corrcoef(bold[s][:, v], p["sign"] * src[p["source"]].to_numpy())[0, 1] for s in range(S)]
        rows.append({"network": p["network"], "source": p["source"], "median r": np.median(rs), "max r": np.max(rs)})
    return pd.DataFrame(rows)


def calibration_table(art, data: FmriData) -> None:
    """Print the single-subject calibration (:func:`calibration`), to two decimals."""
    print(calibration(data.bold, data.truth, planted_sources(art)).round(2).to_string(index=False))


def answer(data: FmriData, cfg, *, atlas=None, tsnr: np.ndarray | None = None) -> str:
    """The chapter's answer in one paragraph: how many voxels the listeners share a response in,
    the ISC's median and maximum; for the twin, the median ISC in and out of the planted
    networks (``atlas``: the planting atlas); the median tSNR where there is one."""
    S, T, V = data.shape
    isc, keep = data.isc, data.keep
    answer = (f"The {S} listeners share a response to the story in {keep.sum()} of {V} {data.unit} (ISC above "
              f"its circular-shift null, FDR {cfg.alpha}); the leave-one-out ISC has a median of "
              f"{np.median(isc):.3f} and reaches {isc.max():.2f}, the ceiling of any model's prediction of one listener.")
    if data.truth is not None:
        ins, out = planted_contrast(isc, atlas, data.truth)
        answer += (f" In the twin's planted networks the median ISC is {ins:.3f}, in the others "
                   f"{out:.3f}: the shared response is where the signals were planted.")
    if tsnr is not None:
        answer += f" The volumes' median tSNR is {np.median(tsnr.mean(axis=0)):.0f}."
    return answer
