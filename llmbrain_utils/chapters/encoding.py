"""Chapter ``encoding`` (``notebooks/04_encoding.py``): the atoms as regressors of every voxel.

What the chapter shows, one function a figure, a table or a summary: :func:`load` reads the
encoding stage's fits, their permutation tests and the fMRI data they were fitted to;
:func:`dimensions` and :func:`headline_summary` print what was fitted and how well it predicts;
:func:`held_out_maps`, :func:`ceiling_figure`, :func:`atom_maps` and :func:`viewer` draw the
maps; :func:`recovery` / :func:`recovery_summary` / :func:`recovery_figure` score the recovery
of the synthetic twin's planted networks; :func:`baseline_table` / :func:`baseline_figure` /
:func:`baseline_verdicts` compare the atoms with the layers and the controls; :func:`answer`
writes the chapter's answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from .. import encoding as enc, plotting, stages


@dataclass
class Fits:
    """The encoding stage's results for one run, as the chapter reads them.

    ``r2`` and ``cv_r`` (subjects x voxels): in-sample R2 and held-out r; ``p``: each subject's
    p of the R2 against the atoms' phase surrogates; ``group_t``, ``agree`` (atoms x voxels):
    the group t maps and the share of subjects agreeing in sign; ``isc``: the leave-one-out ISC;
    ``keep``: the ISC mask; ``where``: the brain mask, or the cortical mesh (then a "voxel" is a
    vertex, and ``mesh`` names it); ``ceiling``, ``norm``: the single-subject noise ceiling and
    the ceiling-normalised mean held-out r; ``sig``: per subject, the voxels whose R2 beats the
    surrogates (FDR); ``p_group``: p of the t test of the subjects' held-out r; ``gsig``,
    ``gsig_isc``: the voxels the group test (average BOLD vs phase surrogates) finds, over the
    whole brain and in the ISC mask."""

    art: Any
    data: Any
    tests: Any
    where: Any
    mesh: str | None
    r2: np.ndarray
    cv_r: np.ndarray
    p: np.ndarray
    group_t: np.ndarray
    agree: np.ndarray
    isc: np.ndarray
    keep: np.ndarray
    ceiling: np.ndarray
    norm: np.ndarray
    sig: np.ndarray
    p_group: np.ndarray
    gsig: np.ndarray
    gsig_isc: np.ndarray

    @property
    def S(self) -> int:
        """The number of subjects."""
        return self.r2.shape[0]

    @property
    def V(self) -> int:
        """The number of voxels (or vertices)."""
        return self.r2.shape[1]


def load(cfg) -> Fits:
    """Read (or run) the encoding stage, its permutation tests and the fMRI data of ``cfg``,
    with the noise ceiling and the FDR-corrected per-subject tests derived from them."""
    art, data = stages.encoding(cfg), stages.fmri_data(cfg)
    tests = stages.encoding_tests(cfg)  # the permutation tests of the fits
    where = stages.read_where(data)  # the brain mask, or the cortical mesh (then a "voxel" is a vertex)
    mesh = where if isinstance(where, str) else None
    r2, cv_r = np.load(art.file("r2.npy")), np.load(art.file("cv_r.npy"))
    p = np.load(tests.file("p_r2.npy"))
    group_t, agree = np.load(art.file("group_t.npy")), np.load(art.file("sign_agreement.npy"))
    isc = np.load(data.file("isc.npy"))
    keep = stages.read_isc_mask(data, cfg.alpha)
    S = r2.shape[0]
    ceiling = enc.noise_ceiling(isc, S)  # single-subject ceiling from the leave-one-out ISC
    norm = enc.normalise_by_ceiling(cv_r.mean(0), ceiling)
    sig = np.stack([enc.fdr(p[s], cfg.alpha)[0] for s in range(S)])
    p_group = np.load(art.file("p_group_cv.npy"))
    gsig, gsig_isc = np.load(tests.file("group_avg_sig.npy")), np.load(tests.file("group_avg_sig_isc.npy"))
    return Fits(art=art, data=data, tests=tests, where=where, mesh=mesh, r2=r2, cv_r=cv_r, p=p,
                group_t=group_t, agree=agree, isc=isc, keep=keep, ceiling=ceiling, norm=norm,
                sig=sig, p_group=p_group, gsig=gsig, gsig_isc=gsig_isc)


def dimensions(fits: Fits) -> None:
    """Print what was fitted: subjects, voxels, atoms and the residual degrees of freedom."""
    info = fits.art.info
    print(f"subjects: {fits.S}, voxels: {fits.V}, atoms: {fits.group_t.shape[0]}, residual dof: {info['dof']}")


def headline_summary(fits: Fits, *, alpha: float, hl) -> None:
    """Record the chapter's headline figures in ``hl`` (a ``headlines.Recorder``) and print
    them with their spread: in-sample R2, held-out r (raw and ceiling-normalised), and the
    voxels each test finds (R2 vs the atoms' surrogates, t test of the subjects' held-out r,
    group test of the average BOLD) at FDR ``alpha``."""
    r2, cv_r, norm, keep, sig = fits.r2, fits.cv_r, fits.norm, fits.keep, fits.sig
    hl.add("median_r2", np.median(r2)); hl.add("best_group_r2", r2.mean(0).max(), digits=2)
    hl.add("cv_r_whole_brain", cv_r.mean()); hl.add("cv_r_isc_mask", cv_r.mean(0)[keep].mean())
    hl.add("ceiling_normalised_isc_mask", np.nanmean(norm[keep]), digits=2)
    hl.add("r2_beats_shifts_share", sig.mean()); hl.add("t_test_voxels", enc.fdr(fits.p_group, alpha)[0].sum(), digits=0)
    hl.add("group_test_voxels", fits.gsig.sum(), digits=0); hl.add("group_test_voxels_isc", fits.gsig_isc.sum(), digits=0)
    print(hl.legend())
    print(f"in-sample R2 (the paper's score): median {hl.fmt('median_r2')}")
    print(f"    best voxel of the group mean {hl.fmt('best_group_r2')}")
    print(f"held-out r: whole brain {hl.fmt('cv_r_whole_brain')}")
    print(f"    in the ISC mask {hl.fmt('cv_r_isc_mask')}")
    print(f"ceiling-normalised held-out r in the ISC mask: {hl.fmt('ceiling_normalised_isc_mask')}")
    print("share of voxels whose in-sample R2 beats phase surrogates")
    print(f"    of the atoms (FDR {alpha}), per subject:")
    print(f"    {hl.fmt('r2_beats_shifts_share')}")
    print(f"voxels with held-out r > 0 across subjects (t test, FDR {alpha}):")
    print(f"    {hl.fmt('t_test_voxels')}")
    print(f"group test (average BOLD vs phase surrogates, FDR {alpha}), voxels of {fits.V}:")
    print(f"    {hl.fmt('group_test_voxels')}")
    print(f"    of the {keep.sum()} in the ISC mask: {hl.fmt('group_test_voxels_isc')}")


def held_out_maps(fits: Fits) -> None:
    """Draw two whole-brain maps of the held-out r, mean over subjects: where the group test
    finds the voxels, and divided by the noise ceiling inside the ISC mask (Figure 5.1)."""
    cv_r, keep = fits.cv_r, fits.keep
    plotting.overview(np.where(fits.gsig, cv_r.mean(0), 0), fits.where, threshold=0.01, label="r",
                      title="held-out r, mean over subjects, where the group test finds them (FDR)")
    plotting.overview(np.nan_to_num(np.where(keep, fits.norm, 0)), fits.where, threshold=0.05, label="r / ceiling",
                      title="held-out r / noise ceiling, in the ISC mask")


def ceiling_figure(fits: Fits):
    """The held-out r per voxel inside and outside the ISC mask (histograms), and against each
    voxel's noise ceiling in the mask (scatter, grey line: r equal to the ceiling) (Figure 5.2)."""
    cv_r, keep, ceiling = fits.cv_r, fits.keep, fits.ceiling
    fig, axes = plt.subplots(1, 2, figsize=(7.2, 3.1))
    axes[0].hist(cv_r.mean(0)[~keep], bins=60, alpha=0.7, label="outside ISC mask", density=True)
    axes[0].hist(cv_r.mean(0)[keep], bins=60, alpha=0.7, label="ISC mask", density=True)
    axes[0].set(xlabel="held-out r", ylabel="density", title="Held-out r per voxel"); axes[0].legend()
    axes[1].scatter(ceiling[keep], cv_r.mean(0)[keep], s=4, alpha=0.5)
    lim = [0, max(np.nanmax(ceiling[keep]), cv_r.mean(0).max())]
    axes[1].plot(lim, lim, color="0.6", lw=0.8)
    axes[1].set(xlabel="noise ceiling (one subject, r)", ylabel="held-out r", title="Against the ceiling (ISC mask)")
    fig.tight_layout()
    return fig


#: the columns of the recovery table the chapter shows
RECOVERY_COLUMNS = ["snr", "regressors", "test", "sensitivity", "fpr", "fdp", "uncorrected_rate_outside"]


def recovery(cfg):
    """The synthetic twin's recovery table (stage ``encoding_recovery``: per SNR, regressors
    and test, the sensitivity and false positive rates) and the default twin's SNR; ``(None,
    None)`` on real data, which has no planted truth."""
    synthetic = cfg.fmri_source == "synthetic"
    if synthetic:
        rec_art = stages.encoding_recovery(cfg)
        rec, snr0 = stages.read_tsv(rec_art, "recovery.tsv"), rec_art.info["snr"]
        return rec, snr0
    return None, None


def recovery_summary(rec, snr0, *, hl) -> None:
    """Show the recovery table, print the sensitivity per planted network of the group test
    (whole brain, default SNR) and record the table's figures in ``hl``; on real data
    (``rec`` None) say that there is no planted truth."""
    from IPython.display import display

    synthetic = rec is not None
    if synthetic:
        cols = RECOVERY_COLUMNS
        display(rec[cols].round(3))
        nets = [c for c in rec.columns if c.startswith("sensitivity ")]
        at = rec[(rec.snr == snr0) & (rec.test == "group average BOLD, whole brain")]
        print("\nsensitivity per planted network, group test, whole brain, default SNR:")
        print(at.set_index("regressors")[nets].rename(columns=lambda c: c.split(" ", 1)[1]).round(2).to_string())
        hl.add_table("recovery", rec.set_index(["snr", "regressors", "test"])[cols[3:]])
    else:
        print("real data: no planted truth")


def recovery_figure(rec, snr0, *, alpha: float):
    """Sensitivity (left) and false positive rate outside the planted networks (right) of each
    group test against the twin's SNR; solid: the atoms, dashed: the planted sources (the
    test's positive control); dotted: the FDR level ``alpha`` (Figure 5.3). None on real data."""
    if rec is None:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(7.2, 3.2))
    for (reg, test), d in rec.groupby(["regressors", "test"], sort=False):
        d = d.sort_values("snr")
        style = "-" if reg == "atoms" else "--"
        axes[0].plot(d.snr, d.sensitivity, style, marker="o", label=f"{reg}: {test}")
        axes[1].plot(d.snr, d.fpr, style, marker="o", label=f"{reg}: {test}")
    axes[1].axhline(alpha, color="0.5", lw=0.8, ls=":")
    axes[0].set(xlabel="SNR of the twin", ylabel="share of planted voxels found", title="Sensitivity")
    axes[1].set(xlabel="SNR of the twin", ylabel="share of other voxels found", title="False positives (dotted: FDR level)")
    axes[0].axvline(snr0, color="0.8", lw=0.8)
    fig.tight_layout()
    fig.legend(*axes[0].get_legend_handles_labels(), fontsize=9, ncol=2, loc="upper center",
               bbox_to_anchor=(0.5, 0.0), frameon=False)
    return fig


def strongest_atoms(group_t, n: int = 4) -> np.ndarray:
    """The ``n`` atoms whose group t maps are strongest (largest mean |t| over voxels), strongest
    first."""
    strength = np.abs(group_t).mean(1)
    return np.argsort(strength)[::-1][:n]


def atom_maps(fits: Fits, *, n: int = 4, threshold: float = 3.0) -> np.ndarray:
    """Draw the group t maps (|t| > ``threshold``) of the ``n`` atoms with the strongest maps,
    one figure each, as axial slices (on a mesh: the inflated cortex) (Figure 5.4); returns
    those atoms."""
    top = strongest_atoms(fits.group_t, n)
    for a in top:
        plotting.slices(fits.group_t[a], fits.where, threshold=threshold, label="t",
                        title=f"atom {a}: group t (|t| > 3)")
    return top


def viewer(fits: Fits) -> None:
    """Show an interactive slice viewer of the held-out r, mean over subjects, where the group
    test finds the voxels (on a mesh: say why there is none)."""
    from IPython.display import display
    from nilearn import plotting as nplot

    if fits.mesh:  # nilearn's surface viewer needs plotly, which the project does not install
        print("no interactive viewer on a mesh: see the held-out r figure above")
    else:
        display(nplot.view_img(plotting.to_img(np.where(fits.gsig, fits.cv_r.mean(0), 0), fits.where), threshold=0.01,
                               cmap="cold_hot", title="held-out r", symmetric_cmap=True, colorbar=True,
                               black_bg=False))


def baseline_summary(bl):
    """The held-out r in the ISC mask per set of regressors (mean and SD over subjects, rounded
    to 3 decimals), from the baseline stage's table ``bl`` (one row per subject and set;
    layers named ``layer N``), in the table's order."""
    bl = bl.copy()
    bl["set"] = np.where(bl["regressors"].astype(str).str.startswith("layer"), bl["regressors"].astype(str), bl["regressors"])
    if "layer" in bl:
        bl.loc[bl["layer"].notna(), "set"] = "layer " + bl.loc[bl["layer"].notna(), "layer"].astype(int).astype(str)
    return bl.groupby("set", sort=False)["mean_r"].agg(["mean", "std"]).round(3)


def baseline_table(cfg):
    """Read (or run) the baseline stage of ``cfg`` (the same ridge model fed the atoms, each
    layer's and all ANs' principal components, and the controls' atoms) and summarise it with
    :func:`baseline_summary`."""
    return baseline_summary(stages.read_tsv(stages.baseline(cfg), "baseline.tsv"))


def baseline_figure(summary):
    """Bars of the held-out r in the ISC mask (mean and SD over subjects) per set of regressors:
    the atoms (red), layers and all ANs (blue), the controls' atoms (grey) (Figure 5.5)."""
    fig, ax = plt.subplots(figsize=(7.2, 3.6))
    colors = ["C3" if s == "atoms" else "0.6" if s.startswith("atoms, ") else "C0" for s in summary.index]
    ax.bar(summary.index, summary["mean"], yerr=summary["std"], color=colors)
    ax.axhline(0, color="0.3", lw=0.6)
    ax.set(ylabel="held-out r, ISC mask\n(mean ± SD over subjects)", title="Atoms (red), layers and all ANs (blue), controls (grey)")
    ax.tick_params(axis="x", rotation=45)
    plt.setp(ax.get_xticklabels(), ha="right")
    fig.tight_layout()
    return fig


def baseline_verdicts(summary, hl) -> None:
    """Print, and keep in ``hl`` as verdicts, whether the atoms predict worse than the last
    layer, all ANs and the untrained model's atoms, and better than the shuffled story's atoms,
    under every measured seed and BLAS kernel (figures recorded as ``baseline[SET][mean]``)."""
    last = [s for s in summary.index if s.startswith("layer ")][-1]
    for other, label in ((last, "atoms_below_last_layer"), ("all ANs (PCs)", "atoms_below_all_ans"),
                         ("atoms, untrained model", "atoms_below_untrained"), ("atoms, shuffled words", "atoms_above_shuffled")):
        if other in summary.index:
            names = ["baseline[atoms][mean]", f"baseline[{other}][mean]"]
            rel = (lambda x, y: x > y) if label.endswith("above_shuffled") else (lambda x, y: x < y)
            print(f"atoms {'above' if label.endswith('above_shuffled') else 'below'} {other}: "
                  f"{hl.holds_joint(names, rel, label=label)}")


def answer(fits: Fits, rec, snr0, *, verdicts: dict) -> str:
    """The chapter's answer in words: the held-out prediction (raw, ceiling-normalised, whole
    brain), the voxels the group test finds, the recovery of the twin's planted voxels (``rec``,
    at SNR ``snr0``; None on real data) and the ``verdicts`` against the baselines."""
    cv_r, keep, norm, gsig_isc = fits.cv_r, fits.keep, fits.norm, fits.gsig_isc
    v = verdicts
    answer = (f"Held out, the atoms predict the listeners' BOLD weakly: mean r {cv_r.mean(0)[keep].mean():.3f} in "
              f"the ISC mask ({np.nanmean(norm[keep]):.2f} of the single-subject noise ceiling) and "
              f"{cv_r.mean():.3f} over the whole brain; the group test finds {int(gsig_isc.sum())} of the "
              f"{int(keep.sum())} voxels of the ISC mask.")
    synthetic = rec is not None
    if synthetic:
        at = rec[(rec.snr == snr0) & (rec.test == "group average BOLD, ISC mask")].set_index("regressors").sensitivity
        answer += (f" On the twin they find {at.get('atoms', np.nan):.0%} of the planted voxels in the mask, the "
                   f"planted sources themselves {at.get('planted sources', np.nan):.0%}: the atoms carry the "
                   "stimulus-driven signal only partly.")
    if v:
        answer += (" Against the reviewers' baselines, under every measured seed and BLAS kernel: the atoms "
                   f"predict worse than the last layer's components ({v.get('atoms_below_last_layer', 'not run')}), "
                   f"worse than the untrained model's atoms ({v.get('atoms_below_untrained', 'not run')}) and better "
                   f"than the shuffled story's atoms ({v.get('atoms_above_shuffled', 'not run')}).")
    return answer
