"""What chapter 6 (``notebooks/05_fbn_mapping.py``, FBN mapping) shows: which functional
brain networks each atom's group map overlaps beyond chance, with which sign, and whether the
chain recovers couplings that were planted.

Each function draws one figure, prints one table or summary, or states one verdict, from the
artifacts of the ``fbn_mapping``, ``encoding``, ``fmri_data`` and ``fbn_recovery`` stages and
the committed benchmark results (``benchmarks/*.json``). The figures a function draws are
shown by the cell that calls it (``plt.show()``, or the inline backend at the cell's end).
Headline figures are recorded with the notebook's :class:`~llmbrain_utils.headlines.Recorder`
(``hl``) where they are printed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .. import fbn, plotting, stages

#: the committed benchmark results the chapter quotes (spin, null and mismatch calibration)
BENCHMARKS = Path(stages.__file__).resolve().parents[1] / "benchmarks"

#: the recovery target: precision and recall at least this at the default SNR
TARGET = 0.9


# --------------------------------------------------------------------------- the mapping
@dataclass
class Mapping:
    """The mapping the chapter reads: the couplings table of the run's atlas, the atoms' group
    t maps, the atlas on the data's columns and where those live (mask or mesh)."""

    cfg: Any
    art: Any
    table: pd.DataFrame
    coupled: pd.DataFrame
    where: Any
    mesh: str | None
    atlas: Any
    group_t: np.ndarray
    truth: dict | None


def load(cfg) -> Mapping:
    """Read the ``fbn_mapping``, ``encoding`` and ``fmri_data`` artifacts of run ``cfg``."""
    art, enc_art, data = stages.fbn_mapping(cfg), stages.encoding(cfg), stages.fmri_data(cfg)
    table = stages.read_couplings(art)
    where = stages.read_where(data)  # the brain mask, or the cortical mesh (then a "voxel" is a vertex)
    mesh = where if isinstance(where, str) else None
    atlas = stages.load_atlas_on(cfg.atlas, data)
    group_t = np.load(enc_art.file("group_t.npy"))
    coupled = table[table.coupled]
    truth = data.info.get("truth")
    return Mapping(cfg=cfg, art=art, table=table, coupled=coupled, where=where, mesh=mesh,
                   atlas=atlas, group_t=group_t, truth=truth)


def atlas_figure(m: Mapping):
    """The read-out atlas on the data's grid (five axial slices) or mesh, one colour per
    network. Returns the figure."""
    atlas = m.atlas
    return plotting.labels_map(stages.atlas_labels(atlas), m.where, atlas.network_names, ncol=4,
                               colors=plt.cm.tab20(np.arange(atlas.n_networks) % 20),
                               title=f"The read-out atlas: {m.cfg.atlas}, {atlas.n_networks} networks on the data's {m.mesh or 'grid'}")


def print_settings(m: Mapping) -> None:
    """The atlas, threshold and null of the mapping, and the number of tests."""
    cfg = m.cfg
    print(f"atlas: {cfg.atlas} ({m.atlas.n_networks} networks), threshold {cfg.threshold}")
    print(f"null: {cfg.fbn_null}, {cfg.fbn_perm} draws, tail: {cfg.fbn_tail}")
    print(f"tests: {len(m.table)} (atoms x networks x signs)")


def coupling_counts(coupled: pd.DataFrame, network_names) -> pd.DataFrame:
    """Atoms coupled to each network (rows, in the atlas's order), active and deactive."""
    return (coupled.groupby(["network", "sign"]).atom.nunique().unstack(fill_value=0)
            .reindex(index=network_names, columns=["active", "deactive"], fill_value=0))


def coupling_summary(m: Mapping, hl) -> pd.DataFrame:
    """Print how many tests are couplings, atoms and networks involved, and the atoms coupled to
    each network by sign; records them in ``hl``. Returns the per-network counts."""
    coupled, table = m.coupled, m.table
    hl.add("couplings", len(coupled), digits=0); hl.add("atoms_coupled", coupled.atom.nunique(), digits=0)
    hl.add("networks_involved", coupled.network.nunique(), digits=0)
    print(f"couplings: {len(coupled)} of {len(table)} tests; atoms coupled: {coupled.atom.nunique()} of {m.group_t.shape[0]}; "
          f"networks involved: {coupled.network.nunique()}")
    counts = coupling_counts(coupled, m.atlas.network_names)
    print(counts.to_string())
    hl.add_table("atoms_per_network", counts, digits=0)
    return counts


def counts_figure(counts: pd.DataFrame, *, atlas_name: str, truth: dict | None = None):
    """Bars of the atoms coupled to each network, active (red) and deactive (blue); with the
    twin's ``truth``, the networks with planted signal in bold. Returns the figure."""
    fig, ax = plt.subplots(figsize=(7.2, 3.6))
    x = np.arange(len(counts))
    ax.bar(x - 0.2, counts["active"], 0.4, label="active", color="C3")
    ax.bar(x + 0.2, counts["deactive"], 0.4, label="deactive", color="C0")
    ax.set_xticks(x, counts.index, rotation=45, ha="right")
    ax.set(ylabel="atoms coupled", title=f"Atoms coupled to each network ({atlas_name})")
    if truth is not None:
        planted = {p["network"] for p in truth["plant"]}
        for lab in ax.get_xticklabels():
            if lab.get_text() in planted:
                lab.set_fontweight("bold")
        ax.text(0.99, 0.95, "bold: networks with planted signal", transform=ax.transAxes, ha="right", va="top", fontsize=9)
    ax.legend()
    fig.tight_layout()
    return fig


def truth_check(coupled: pd.DataFrame, table: pd.DataFrame, truth: dict | None) -> dict | None:
    """The couplings against the twin's planted networks (None without a planted truth):
    ``planted`` (set), ``on_planted`` and ``on_unplanted`` (couplings), ``unplanted_tests``
    (tests on networks without signal), ``found`` (planted networks reached, sorted)."""
    if truth is None:
        return None
    planted = {p["network"] for p in truth["plant"]}
    on_unplanted = coupled[~coupled.network.isin(planted)]
    return {"planted": planted, "on_planted": len(coupled) - len(on_unplanted),
            "on_unplanted": len(on_unplanted),
            "unplanted_tests": (~table.network.isin(planted)).sum(),
            "found": sorted(planted & set(coupled.network))}


def truth_summary(m: Mapping, hl) -> None:
    """Print the couplings on planted and on unplanted networks (the chain's false positives)
    and the planted networks reached; records them in ``hl``. Nothing on real data."""
    t = truth_check(m.coupled, m.table, m.truth)
    if t is not None:
        print(f"couplings on planted networks: {t['on_planted']}; "
              f"on unplanted networks: {t['on_unplanted']} of {t['unplanted_tests']} tests "
              f"(rate {t['on_unplanted'] / max(t['unplanted_tests'], 1):.4f})")
        found = t["found"]
        print(f"planted networks reached by at least one atom: {len(found)} of {len(t['planted'])}:")
        print("    " + ", ".join(found))
        hl.add("couplings_planted", t["on_planted"], digits=0)
        hl.add("couplings_unplanted", t["on_unplanted"], digits=0)
        hl.add("planted_reached", len(found), digits=0)


def coupled_maps(m: Mapping, *, n: int = 4) -> pd.DataFrame:
    """Draw the group t maps (|t| > 2) of the ``n`` most strongly coupled atoms (largest Dice),
    each with the outline of its network, one figure each. Returns those couplings."""
    best = m.coupled.sort_values("dice", ascending=False).drop_duplicates("atom").head(n)
    for row in best.itertuples():
        plotting.slices(m.group_t[row.atom], m.where, threshold=2.0, label="t",
                        outline=m.atlas.masks[m.atlas.index(row.network)],
                        title=f"atom {row.atom}: {row.sign} {row.network} (Dice {row.dice:.2f}, q {row.q:.3f}); "
                              "group t, |t| > 2")
    return best


# --------------------------------------------------------------------------- threshold and statistic
def null_options(m: Mapping) -> dict:
    """The keywords of the mapping's tests with one draw of the null for every threshold and
    statistic: the rotations (spin null, of the grid or of the sphere on a mesh) or the
    surrogate fields (surrogate null)."""
    cfg = m.cfg
    null_kw = dict(n_perm=cfg.fbn_perm, alpha=cfg.alpha, seed=cfg.seed, null=cfg.fbn_null,
                   tail=cfg.fbn_tail)
    if cfg.fbn_null == "spin":
        null_kw["perms"] = m.atlas.spin_permutations(cfg.fbn_perm, cfg.seed)
    elif cfg.fbn_null == "surrogate":
        null_kw["surrogates"] = fbn.SurrogateNull(m.atlas, m.group_t, cfg.fbn_perm, cfg.seed)
    return null_kw


def threshold_table(m: Mapping, null_kw: dict, hl) -> pd.DataFrame:
    """Print the couplings when the parts are the top 5%, 10% or 20% of voxels (Dice); records
    the table in ``hl``. Returns it."""
    sens = fbn.threshold_sensitivity(m.group_t, m.atlas, thresholds=("top5%", "top10%", "top20%"), **null_kw)
    print(sens.round(3).to_string(index=False))
    hl.add_table("threshold", sens.set_index("threshold"))
    return sens


def r_statistic(m: Mapping, null_kw: dict, hl) -> pd.DataFrame:
    """Print the couplings found by the threshold-free spatial correlation r, and how many of
    them the Dice test also finds; records both in ``hl``. Returns the r table."""
    coupled = m.coupled
    by_r = fbn.couple_atoms(m.group_t, m.atlas, threshold=m.cfg.threshold, statistic="r", **null_kw)
    key = ["atom", "network", "sign"]
    both = coupled[key].merge(by_r[by_r.coupled][key])
    print(f"tested on r: {int(by_r.coupled.sum())} couplings, {by_r[by_r.coupled].atom.nunique()} atoms; "
          f"{len(both)} of them also coupled by Dice ({len(coupled)})")
    hl.add("r_couplings", by_r.coupled.sum(), digits=0)
    hl.add("r_and_dice_couplings", len(both), digits=0)
    return by_r


# --------------------------------------------------------------------------- a second atlas
def other_atlas(cfg, compare_atlas: str) -> pd.DataFrame | None:
    """The couplings of the same atoms under atlas ``compare_atlas``, or None (said) where that
    atlas is unavailable (no network access and no local copy)."""
    try:
        return stages.read_couplings(stages.fbn_mapping({**cfg, "atlas": compare_atlas}))
    except Exception as e:  # no network access and no local copy: say so
        print(f"second atlas unavailable here: {e}")
        return None


def agreement_tables(m: Mapping, other: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``agree``: atoms coupled under both atlases with the same sign (FDR in both), networks
    of this atlas by the other's; ``transfer``: for every coupling of this atlas, the other
    atlas's network with the largest Dice for the same atom and sign (no test)."""
    agree = fbn.atlas_agreement([m.table, other])
    best = other.loc[other.groupby(["atom", "sign"]).dice.idxmax(), ["atom", "sign", "network"]]
    label = m.coupled[["atom", "sign", "network"]].merge(best, on=["atom", "sign"], suffixes=("", "_other"))
    transfer = pd.crosstab(label.network, label.network_other).reindex(
        index=m.atlas.network_names, columns=list(agree.columns), fill_value=0)
    return agree, transfer


def agreement_figure(agree: pd.DataFrame, transfer: pd.DataFrame, *, compare_atlas: str):
    """Two heatmaps: atoms coupled under both atlases (top) and the best network of the second
    atlas for each coupling of the first (bottom). Returns the figure."""
    fig, axes = plt.subplots(2, 1, figsize=(7.2, 9.0))
    plotting.heatmap(axes[0], agree.to_numpy(), xlabels=list(agree.columns), ylabels=list(agree.index), cmap="viridis",
                     title="Atoms coupled under both atlases (FDR)", label="atoms", vmax=max(1, agree.to_numpy().max()))
    if not agree.to_numpy().any():
        axes[0].text(0.5, 0.5, f"none: no test of {compare_atlas} passes the FDR\n(its networks are larger; see below)",
                     transform=axes[0].transAxes, ha="center", va="center", color="white", fontsize=10)
    plotting.heatmap(axes[1], transfer.to_numpy(), xlabels=list(transfer.columns), ylabels=list(transfer.index), cmap="viridis",
                     title=f"Best {compare_atlas} network of each coupling (no test)", label="couplings")
    fig.tight_layout()
    return fig


def agreement_summary(other: pd.DataFrame, agree: pd.DataFrame, transfer: pd.DataFrame, *,
                      atlas_name: str, compare_atlas: str) -> None:
    """Print the second atlas's couplings, its smallest q, the couplings under both atlases and
    the best-matching networks of the first atlas's couplings."""
    print(f"{compare_atlas}: {int(other.coupled.sum())} couplings, {other[other.coupled].atom.nunique()} atoms; "
          f"smallest q {other.q.min():.3f}; couplings under both atlases: {int(agree.to_numpy().sum())}")
    print("best-matching network of the couplings (rows: " + atlas_name + "):")
    print(transfer.loc[transfer.sum(axis=1) > 0].to_string())


# --------------------------------------------------------------------------- recovery
#: the recovery table's columns printed per twin
RECOVERY_COLUMNS = ["statistic", "twin_seed", "precision", "recall", "fdp", "fpr", "fpr_unplanted_networks",
                    "tp", "fp", "fn"]


@dataclass
class Recovery:
    """The ``fbn_recovery`` artifact: every twin's recovery (``table``), the default SNR and
    number of subjects, and the rows at them (``at0``), on the first twin against SNR
    (``first``) and against the number of subjects (``by_n``)."""

    art: Any
    table: pd.DataFrame
    snr0: float
    n0: int
    at0: pd.DataFrame
    first: pd.DataFrame
    by_n: pd.DataFrame


def load_recovery(cfg) -> Recovery:
    """Read (or make) the ``fbn_recovery`` artifact of run ``cfg``."""
    rec_art = stages.fbn_recovery(cfg)
    rec = stages.read_tsv(rec_art, "recovery.tsv")
    snr0, n0 = rec_art.info["default_snr"], rec_art.info["n_subjects"]
    at0 = rec[(rec.snr == snr0) & (rec.n_subjects == n0)]
    seed1 = rec[rec.twin_seed == rec.twin_seed.min()]
    first, by_n = seed1[seed1.n_subjects == n0], seed1[seed1.snr == snr0]
    return Recovery(art=rec_art, table=rec, snr0=snr0, n0=n0, at0=at0, first=first, by_n=by_n)


def recovery_summary(rec: Recovery, hl) -> None:
    """Print precision, recall and false discoveries at the default SNR and number of subjects,
    per twin and their mean; records the per-twin table in ``hl``."""
    cols = RECOVERY_COLUMNS
    print(f"at the default SNR ({rec.snr0}) and {rec.n0} subjects, per twin:")
    print(rec.at0[cols].sort_values(["statistic", "twin_seed"]).round(3).to_string(index=False))
    print("mean over twins:")
    print(rec.at0.groupby("statistic")[["precision", "recall", "fdp", "fpr"]].mean().round(3).to_string())
    hl.add_table("recovery_twin", rec.at0.set_index(["statistic", "twin_seed"])[cols[2:]])


def planted_table(rec: Recovery, hl) -> pd.DataFrame:
    """The planted couplings: network size, the atom's variance inflation factor and whether
    each twin found it; records it in ``hl``. Returns the table (to display)."""
    planted_tab = stages.read_tsv(rec.art, "planted.tsv")
    hl.add_table("planted", planted_tab.set_index(["atom", "network", "sign"]), digits=1)
    return planted_tab


def recovery_figure(rec: Recovery):
    """Precision and recall of the planted couplings on the first twin against SNR (left) and
    the number of subjects (right), for both statistics. Returns the figure."""
    snr0, n0 = rec.snr0, rec.n0
    fig, axes = plt.subplots(1, 2, figsize=(7.2, 3.4), sharey=True)
    for ax, g0, x, label in ((axes[0], rec.first, "snr", "signal-to-noise (peak voxel)"),
                             (axes[1], rec.by_n, "n_subjects", "subjects")):
        for stat, mark in (("dice", "o"), ("r", "s")):
            g = g0[g0.statistic == stat].sort_values(x)
            ax.plot(g[x], g.recall, mark + "-", label=f"recall ({stat})")
            ax.plot(g[x], g.precision, mark + "--", alpha=0.6, label=f"precision ({stat})")
        ax.axvline(snr0 if x == "snr" else n0, color="0.7", ls="--", lw=0.8)
        ax.axhline(TARGET, color="0.85", lw=0.8)
        ax.set(xlabel=label, ylim=(0, 1.05))
    axes[0].set(title=f"Against SNR ({n0} subjects)", ylabel="share of planted couplings")
    axes[1].set(title=f"Against subjects (SNR {snr0})")
    fig.legend(*axes[0].get_legend_handles_labels(), fontsize=9, ncol=2, loc="upper center",
               bbox_to_anchor=(0.5, 0.0), frameon=False)
    fig.tight_layout()
    return fig


def recovery_curves(rec: Recovery, hl) -> None:
    """Print recall against SNR and precision and recall against the number of subjects (the
    first twin); records both in ``hl``."""
    first, by_n = rec.first, rec.by_n
    print("recall against SNR:")
    print(first.pivot(index="snr", columns="statistic", values="recall").round(3).to_string())
    print("precision and recall against the number of subjects:")
    print(by_n.pivot(index="n_subjects", columns="statistic", values=["precision", "recall"]).round(3).to_string())
    hl.add_table("recall_by_snr", first.pivot(index="snr", columns="statistic", values="recall"))
    hl.add_table("by_subjects", by_n.set_index(["n_subjects", "statistic"])[["precision", "recall"]])


def calibration_summary(rec: Recovery, hl) -> None:
    """Print the share of the unplanted atoms' p values at or below each level, over the level
    (valid: at most 1), and the largest excess at the default number of subjects; records the
    ratios in ``hl``."""
    cal = stages.read_tsv(rec.art, "calibration.tsv")
    ratios = cal.pivot_table(index=["statistic", "n_subjects"], columns="level", values="ratio")
    print(ratios.round(2).to_string())
    hl.add_table("calibration", ratios, digits=2)
    worst = cal[cal.n_subjects == rec.n0].sort_values("ratio").iloc[-1]
    print(f"largest excess at {rec.n0} subjects: {worst.statistic} at level {worst.level:g},")
    print(f"    share {worst.share:.4f} ({worst.ratio:.2f} x the level, {worst.n_tests} tests)")


# --------------------------------------------------------------------------- the nulls' calibration
def spin_calibration(path: str | Path | None = None) -> dict:
    """Print the legacy spin null's calibration on smooth Gaussian noise maps
    (``benchmarks/spin_calibration.json``): share over level with its 95% interval, per
    statistic. Returns the result."""
    cal_path = Path(path) if path else BENCHMARKS / "spin_calibration.json"
    grf = json.loads(cal_path.read_text())
    print(f"{grf['maps']} noise maps, FWHM {grf['fwhm_vox']:g} voxels, {grf['atlas']}, {grf['n_perm']} rotations")
    for stat, v in grf["statistics"].items():
        print(f"{stat}: {v['n_tests']} tests; share / level [95% interval over maps]:")
        for row in v["levels"]:
            print(f"  level {row['level']:<7g} {row['ratio']:.2f} [{row['ratio_ci'][0]:.2f}-{row['ratio_ci'][1]:.2f}]")
    return grf


def null_calibration_rows(null_cal: dict) -> pd.DataFrame:
    """The rows of ``benchmarks/null_calibration.json`` as a table, with ``space`` and ``atlas``
    filled and only the surface's default medial-wall rule kept."""
    s = null_cal["settings"]
    nc = pd.DataFrame(null_cal["rows"])
    if "space" not in nc:
        nc["space"] = "volume"
    nc["space"] = nc["space"].fillna("volume")
    nc["atlas"] = nc["atlas"].fillna(s["atlas"]) if "atlas" in nc else s["atlas"]
    if "wall" in nc:  # the surface's medial-wall rule: the default, "nearest", is the null
        nc = nc[nc["wall"].fillna("nearest") == "nearest"]
    return nc


def null_calibration_table(path: str | Path | None = None) -> tuple[dict, pd.DataFrame]:
    """Print the calibration of both nulls on null maps of four kinds
    (``benchmarks/null_calibration.json``): share over alpha per space, atlas, null and noise,
    how many ratios are inside the target, and the largest false FDR couplings per map.
    Returns the result and its rows."""
    null_cal = json.loads((Path(path) if path else BENCHMARKS / "null_calibration.json").read_text())
    s = null_cal["settings"]
    print(f"{s['atlas']}, {s['voxels']} voxels, {s['n_perm']} rotations / surrogates,")
    print(f"{null_cal['rows'][0]['n_maps']} maps per noise model; target {s['target']}")
    nc = null_calibration_rows(null_cal)
    view = nc.pivot_table(index=["space", "atlas", "null", "noise"], columns=["statistic", "alpha"],
                          values="share_over_alpha")
    print(view.round(2).to_string())
    for (space, legacy), g in nc.groupby(["space", "legacy"]):
        name = f"{space}, {'legacy spin' if legacy else ', '.join(sorted(g['null'].unique()))}"
        print(f"{name}: {int(g.share_over_alpha.between(*s['target']).sum())} of {len(g)} ratios inside the target")
    print("false FDR couplings per map, largest (plain p / fitted tail):")
    for (space, null), g in nc.groupby(["space", "null"]):
        print(f"  {space}, {null}: {g.fdr_false_couplings_per_map.max():.3f} / {g.fdr_false_couplings_per_map_gpd_tail.max():.3f}")
    return null_cal, nc


def null_calibration_figures(null_cal: dict, nc: pd.DataFrame) -> None:
    """Show the nulls' calibration figure for the volume and, where the benchmark has surface
    rows, for the fsaverage5 surface (one figure each, shown here)."""
    plotting.null_calibration(null_cal)
    plt.show()
    if (nc.space == "surface").any():
        plotting.null_calibration(null_cal, space="surface", atlas="TY7")
        plt.show()


# --------------------------------------------------------------------------- the verdicts
def min_subjects(by_n: pd.DataFrame, *, target: float = TARGET) -> pd.Series:
    """Per statistic, the fewest subjects with which precision and recall both reach
    ``target`` (statistics that never do are absent)."""
    return by_n[(by_n.precision >= target) & (by_n.recall >= target)].groupby("statistic").n_subjects.min()


def recovery_verdicts(rec: Recovery, hl, *, alpha: float) -> None:
    """Print, per statistic, whether precision and recall reach 0.9 and the false positives
    stay at or below ``alpha`` under every measured seed and BLAS kernel, and the fewest subjects
    with which the first twin meets the target; records every figure and verdict in ``hl``."""
    at0, by_n, n0 = rec.at0, rec.by_n, rec.n0
    print("A verdict holds only if it holds under every measured seed and BLAS kernel.")
    print(hl.legend())
    for stat, g in at0.groupby("statistic"):
        fp, claims = int(g.fp.sum()), int(g.tp.sum() + g.fp.sum())
        hl.add(f"{stat}_precision", g.precision.mean(), digits=2); hl.add(f"{stat}_recall", g.recall.mean(), digits=2)
        hl.add(f"{stat}_fpr_unplanted", g.fpr_unplanted_networks.mean())
        hl.add(f"{stat}_false_share", fp / max(claims, 1))
        print(f"{stat}, {n0} subjects, mean of {g.twin_seed.nunique()} twins:")
        print(f"    precision {hl.fmt(stat + '_precision')}: >= 0.9 "
              f"{hl.holds(stat + '_precision', lambda v: v >= 0.9, label=stat + '_precision')}")
        print(f"    recall {hl.fmt(stat + '_recall')}: >= 0.9 {hl.holds(stat + '_recall', lambda v: v >= 0.9, label=stat + '_recall')}")
        print(f"    false-positive rate on the unplanted network {hl.fmt(stat + '_fpr_unplanted')}:")
        print(f"        <= {alpha:g} {hl.holds(stat + '_fpr_unplanted', lambda v: v <= alpha, label=stat + '_fpr_unplanted')}")
        print(f"    false couplings: {fp} of {claims}, share {hl.fmt(stat + '_false_share')}")
        print(f"        at or below the FDR level {alpha:g}: "
              f"{hl.holds(stat + '_false_share', lambda v: v <= alpha, label=stat + '_false_share')}")
    enough = min_subjects(by_n)
    for stat in sorted(at0.statistic.unique()):
        n_min = enough.get(stat)
        hl.add(f"{stat}_min_subjects_first_twin", n_min, digits=0)
        print(f"{stat}: first twin meets it from {hl.fmt(stat + '_min_subjects_first_twin')} subjects" if n_min is not None
              else f"{stat}: first twin does not meet it with up to {by_n.n_subjects.max()} subjects")


# --------------------------------------------------------------------------- atlas mismatch
def mismatch_table(path: str | Path | None = None) -> tuple[dict, pd.DataFrame]:
    """Print the recovery when the read-out atlas is not the planting one
    (``benchmarks/recovery_mismatch.json``): precision and recall per space, statistic, null,
    tail, rotations and atlas overlap. Returns the result and its rows."""
    mm = json.loads((Path(path) if path else BENCHMARKS / "recovery_mismatch.json").read_text())
    mmr = pd.DataFrame(mm["rows"])
    print(f"{mm['settings']['atlas']} read-out, {mm['settings']['n_subjects']} subjects, SNR {mm['settings']['snr']},")
    print(f"jitter {mm['settings']['jitter_mm']} mm RMS per subject, {mmr.n_twins.max()} twins per point")
    mmr["space"] = mmr["space"].fillna("volume") if "space" in mmr else "volume"
    cols = ["space", "statistic", "null", "tail", "n_perm", "dice_mismatch", "precision", "recall", "recall_all"]
    print(mmr[cols].round(3).to_string(index=False))
    return mm, mmr


def mismatch_figures(mm: dict, mmr: pd.DataFrame) -> None:
    """Show the mismatch recovery (Dice statistic) for each space of the benchmark, one figure
    each, shown here."""
    for space in mmr.space.unique():
        plotting.recovery_mismatch(mm, statistic="dice", space=space)
        plt.show()


# --------------------------------------------------------------------------- the answer
def answer(m: Mapping, rec: Recovery, mmr: pd.DataFrame, *, verdicts: dict) -> str:
    """The chapter's answer in a few sentences: the couplings of this run (and, on the twin,
    how many are on planted networks), the recovery of planted couplings with its verdicts
    (``hl.verdicts``), and recall when the read-out atlas overlaps the planted one at a Dice of
    0.6 (the committed benchmark ``mmr``)."""
    cfg, coupled, table, v = m.cfg, m.coupled, m.table, verdicts
    text = (f"With the {cfg.atlas} atlas, the {cfg.fbn_null} null and FDR {cfg.alpha}, {len(coupled)} of "
            f"{len(table)} tests are couplings: {coupled.atom.nunique()} of {m.group_t.shape[0]} atoms, in "
            f"{coupled.network.nunique()} networks.")
    t = truth_check(coupled, table, m.truth)
    if t is not None:
        text += (f" {t['on_planted']} of the couplings are on networks that carry planted signal, "
                 f"{t['on_unplanted']} on the others.")
    g = rec.at0[rec.at0.statistic == "dice"]
    text += (f" When 12 atoms are planted in 12 networks, the chain finds them with precision {g.precision.mean():.2f} "
             f"and recall {g.recall.mean():.2f} (mean of {g.twin_seed.nunique()} twins; at least 0.9 under every "
             f"measured seed and BLAS kernel: for precision {v.get('dice_precision', 'not measured')}, for recall "
             f"{v.get('dice_recall', 'not measured')}), an upper bound for real data.")
    worst = mmr[(mmr.space == "volume") & (mmr.statistic == "dice") & (mmr.dice_mismatch.round(1) == 0.6)]
    if len(worst):
        text += (f" With a read-out atlas that overlaps the planted networks at a Dice of 0.6, recall is at most "
                 f"{worst.recall.max():.2f} over the tests of the committed benchmark above.")
    return text
