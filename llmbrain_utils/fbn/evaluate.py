"""Evaluation of the couplings: against planted couplings (:func:`recovery`), between two
atlases (:func:`atlas_agreement`), and the measured recovery of the whole encoding + mapping
chain on synthetic twins with planted couplings (:func:`mapping_recovery`, the analysis of the
``fbn_recovery`` stage)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError, ParameterError
from ..progress import bar
from .atlases import NetworkAtlas
from .coupling import STATISTICS, TABLE_COLUMNS, couple_atoms
from .spin import DEFAULT_N_PERM
from .surrogate import SurrogateNull
from .thresholds import DEFAULT_THRESHOLD, SIGNS

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd


def _check_table(table: Any, name: str = "table") -> pd.DataFrame:
    import pandas as pd

    if not isinstance(table, pd.DataFrame):
        raise ParameterError(name, f"{type(table).__name__}", expected="a couple_atoms table")
    missing = [c for c in ("atom", "atlas", "network", "sign", "coupled") if c not in table]
    if missing:
        raise InputError(name, f"missing columns {missing}", field=missing[0],
                         expected=f"the columns {TABLE_COLUMNS}")
    return table


def _parse_truth(truth: Any, networks: Sequence[str], atoms: set[int]
                 ) -> tuple[str, set[tuple]]:
    """('atom', {(atom, network, sign)}) or ('global', {(network, sign)})."""

    def check(net: Any, sign: Any, where: str) -> tuple[str, str]:
        if net not in networks:
            raise InputError("truth", f"unknown network {net!r}", field=where,
                             expected=f"one of {list(networks)}")
        if sign not in SIGNS:
            raise InputError("truth", f"unknown sign {sign!r}", field=where,
                             expected=f"one of {list(SIGNS)}")
        return str(net), str(sign)

    def check_atom(a: Any, where: str) -> int:
        if not isinstance(a, (int, np.integer)) or int(a) not in atoms:
            raise InputError("truth", f"unknown atom {a!r}", field=where,
                             expected=f"an atom of the table (0..{max(atoms)})")
        return int(a)

    if isinstance(truth, Mapping):
        out = set()
        for a, pairs in truth.items():
            a = check_atom(a, f"atom {a!r}")
            for pair in pairs:
                if len(pair) != 2:
                    raise InputError("truth", f"{pair!r}", field=f"atom {a}",
                                     expected="(network, sign) pairs")
                out.add((a, *check(pair[0], pair[1], f"atom {a}")))
        return "atom", out
    items = list(truth)
    if not items:
        raise ParameterError("truth", "empty", expected="(network, sign) pairs or "
                             "(atom, network, sign) triples, or {atom: [(network, sign)]}")
    lengths = {len(t) if isinstance(t, (tuple, list)) else -1 for t in items}
    if lengths == {2}:
        return "global", {check(n, s, f"item {i}") for i, (n, s) in enumerate(items)}
    if lengths == {3}:
        return "atom", {(check_atom(a, f"item {i}"), *check(n, s, f"item {i}"))
                        for i, (a, n, s) in enumerate(items)}
    raise ParameterError("truth", "mixed or malformed items",
                         expected="all (network, sign) or all (atom, network, sign)")


def recovery(table: pd.DataFrame, truth: Any, *, atlas: str | None = None) -> dict[str, float]:
    """Precision, recall and false-positive rate of the couplings against planted ones.

    Parameters
    ----------
    table : DataFrame
        A :func:`couple_atoms` table.
    truth : mapping or iterable
        Planted couplings, per atom: ``{atom: [(network, sign), ...]}`` or
        ``[(atom, network, sign), ...]``; or globally: ``[(network, sign), ...]``.
    atlas : str, optional
        The atlas to score when the table holds several.

    Returns
    -------
    dict
        ``precision`` (coupled rows that are planted / coupled rows; NaN if none coupled),
        ``recall`` (planted couplings found / planted; globally: a planted (network, sign) is
        found when any atom is coupled to it), ``fpr`` (coupled rows among the unplanted
        atom x network x sign rows), and the counts ``tp, fp, fn, n_planted, n_unplanted``.
    """
    table = _check_table(table)
    names = list(dict.fromkeys(table["atlas"]))
    if atlas is None:
        if len(names) != 1:
            raise ParameterError("atlas", f"table holds atlases {names}",
                                 expected="one of them")
    elif atlas not in names:
        raise ParameterError("atlas", f"unknown atlas {atlas!r}", expected=f"one of {names}")
    else:
        table = table[table["atlas"] == atlas]
    networks = list(dict.fromkeys(table["network"]))
    mode, planted = _parse_truth(truth, networks, set(int(a) for a in table["atom"]))
    atoms = table["atom"].astype(int).to_numpy()
    nets = table["network"].astype(str).to_numpy()
    signs = table["sign"].astype(str).to_numpy()
    coupled = table["coupled"].astype(bool).to_numpy()
    if mode == "atom":
        is_planted = np.array([(a, n, s) in planted for a, n, s in zip(atoms, nets, signs)])
        tp = int((coupled & is_planted).sum())
        fn = len(planted) - tp
    else:
        is_planted = np.array([(n, s) in planted for n, s in zip(nets, signs)])
        tp = int((coupled & is_planted).sum())
        found = {(n, s) for n, s, c in zip(nets, signs, coupled) if c and (n, s) in planted}
        fn = len(planted) - len(found)
    fp = int((coupled & ~is_planted).sum())
    n_unplanted = int((~is_planted).sum())
    n_coupled = int(coupled.sum())
    n_pl = len(planted)
    recall = (n_pl - fn) / n_pl if n_pl else float("nan")
    return {"precision": tp / n_coupled if n_coupled else float("nan"),
            "recall": recall,
            "fpr": fp / n_unplanted if n_unplanted else float("nan"),
            "tp": tp, "fp": fp, "fn": fn, "n_planted": n_pl, "n_unplanted": n_unplanted}


def atlas_agreement(tables: Any, *, atlases: Sequence[str] | None = None) -> pd.DataFrame:
    """Cross-tabulate the network labels two atlases give the same atoms.

    Parameters
    ----------
    tables : DataFrame, or sequence / mapping of DataFrames
        :func:`couple_atoms` tables (concatenated here).
    atlases : pair of str, optional
        The two atlases to compare (needed when the tables hold more than two).

    Returns
    -------
    pandas.DataFrame
        Rows: networks of the first atlas; columns: networks of the second; entry: the number
        of (atom, sign) couplings found under both (an atom coupled as active to Language in
        one atlas and active to Default in the other counts once in that cell). ``attrs``
        holds ``n_atoms_both`` (atoms coupled under both atlases) and the atlas names.
    """
    import pandas as pd

    if isinstance(tables, Mapping):
        tables = list(tables.values())
    if isinstance(tables, pd.DataFrame):
        tables = [tables]
    tables = [_check_table(t, f"tables[{i}]") for i, t in enumerate(tables)]
    if not tables:
        raise ParameterError("tables", "empty", expected="couple_atoms tables of two atlases")
    table = pd.concat(tables, ignore_index=True)
    names = list(dict.fromkeys(table["atlas"]))
    if atlases is None:
        if len(names) != 2:
            raise ParameterError("atlases", f"tables hold atlases {names}",
                                 expected="exactly two atlases, or atlases=(a, b)")
        atlases = names
    atlases = list(atlases)
    if len(atlases) != 2 or any(a not in names for a in atlases):
        raise ParameterError("atlases", f"{atlases!r}", expected=f"two of {names}")
    a_name, b_name = atlases
    rows_a = list(dict.fromkeys(table.loc[table["atlas"] == a_name, "network"]))
    cols_b = list(dict.fromkeys(table.loc[table["atlas"] == b_name, "network"]))
    hit = table[table["coupled"].astype(bool)]
    ca = hit[hit["atlas"] == a_name][["atom", "sign", "network"]]
    cb = hit[hit["atlas"] == b_name][["atom", "sign", "network"]]
    pairs = ca.merge(cb, on=["atom", "sign"], suffixes=("_a", "_b"))
    out = pd.crosstab(pairs["network_a"], pairs["network_b"]).reindex(
        index=rows_a, columns=cols_b, fill_value=0).astype(int)
    out.index.name, out.columns.name = a_name, b_name
    out.attrs.update({"atlases": (a_name, b_name),
                      "n_atoms_both": int(pairs["atom"].nunique())})
    return out


# --------------------------------------------------------------------------------------------
# Measured recovery of the encoding + mapping chain


@dataclass(frozen=True, eq=False)
class MappingRecovery:
    """What :func:`mapping_recovery` measured (the ``fbn_recovery`` stage writes it).

    Attributes
    ----------
    recovery : pandas.DataFrame
        One row per twin seed, SNR, number of subjects and statistic: ``twin_seed, snr,
        n_subjects, statistic, precision, recall, fpr, fdp, fpr_unplanted_networks, tp, fp, fn``.
    calibration : pandas.DataFrame
        ``statistic, n_subjects, level, n_tests, n_twins, share, ratio``: the share of the
        unplanted atoms' p values at or below each level (at the default SNR, all twins of
        that number of subjects) and ``ratio = share / level``.
    couplings : pandas.DataFrame
        Every :func:`couple_atoms` table, with the columns ``twin_seed, snr, n_subjects,
        statistic`` added.
    planted : pandas.DataFrame
        Each planted coupling (``atom, network, sign``), its network's size ``n_voxels``, the
        atom's variance inflation factor ``vif`` among the k atoms, and ``{statistic}_seed{s}``:
        whether that statistic found it on twin ``s`` at the default SNR and number of subjects.
    truth : list of (atom, network, sign)
        The planted couplings.
    twin_seeds : list of int
    unplanted_networks : list of str
    default_snr : float
    n_subjects : int
        The default number of subjects.
    subject_counts : list of int
        The default number of subjects, then the others measured.
    mean_at_default_snr : dict
        Per statistic: the mean ``precision, recall, fdp, fpr`` over the twins at the default
        SNR and number of subjects.
    null_share_at_05 : dict
        Per statistic: the share of the null p values at or below 0.05 (default number of
        subjects), rounded to 4 digits.
    """

    recovery: pd.DataFrame
    calibration: pd.DataFrame
    couplings: pd.DataFrame
    planted: pd.DataFrame
    truth: list
    twin_seeds: list
    unplanted_networks: list
    default_snr: float
    n_subjects: int
    subject_counts: list
    mean_at_default_snr: dict
    null_share_at_05: dict


def recovery_design(*, snrs: Sequence[float], default_snr: float, n_subjects: int,
                    subject_counts: Sequence[int], n_planted: int, n_seeds: int,
                    statistics: Sequence[str], levels: Sequence[float]) -> dict[str, Any]:
    """The checked, normalised design of :func:`mapping_recovery`: its keywords ``snrs``
    (sorted, ``default_snr`` among them), ``default_snr``, ``n_subjects``, ``subject_counts``
    (sorted, without ``n_subjects``), ``n_planted``, ``n_seeds``, ``statistics`` (a list) and
    ``levels`` (sorted). Normalising twice gives the same design, so a caller can key a cache on
    it before any work.

    Raises
    ------
    ParameterError
        Naming the first bad argument.
    """
    for name, v in (("n_planted", n_planted), ("n_seeds", n_seeds)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ParameterError(name, f"{v!r}", expected="an integer >= 1")
    statistics = list(statistics)
    if not statistics or any(s not in STATISTICS for s in statistics):
        raise ParameterError("statistics", f"{statistics!r}",
                             expected=f"a non-empty list of {list(STATISTICS)}")
    try:
        snr_list = [float(v) for v in snrs]
    except (TypeError, ValueError):
        snr_list = []
    counts = list(subject_counts)
    if any(isinstance(v, bool) or not isinstance(v, int) or v < 2 for v in counts):
        raise ParameterError("subject_counts", f"{subject_counts!r}",
                             expected="a list of integers >= 2, e.g. (12, 16)")
    try:
        level_list = sorted({float(v) for v in levels})
    except (TypeError, ValueError):
        level_list = []
    if not level_list or not all(0 < v < 1 for v in level_list):
        raise ParameterError("levels", f"{levels!r}", expected="numbers in (0, 1), e.g. (0.01, 0.05)")
    if not snr_list or not all(0 < v < float("inf") for v in snr_list):
        raise ParameterError("snrs", f"{snrs!r}",
                             expected="a non-empty list of positive numbers, e.g. (0.2, 0.36, 0.6)")
    default_snr = float(default_snr)
    return {"snrs": sorted(set(snr_list) | {default_snr}), "default_snr": default_snr,
            "n_subjects": n_subjects, "subject_counts": sorted(set(counts) - {n_subjects}),
            "n_planted": n_planted, "n_seeds": n_seeds, "statistics": statistics,
            "levels": level_list}


def mapping_recovery(D: np.ndarray, atlas: NetworkAtlas, twin: Callable[..., np.ndarray], *,
                     default_snr: float, n_subjects: int,
                     snrs: Sequence[float] = (0.2, 0.3, 0.36, 0.6),
                     subject_counts: Sequence[int] = (12, 16), n_planted: int = 12,
                     n_seeds: int = 3, statistics: Sequence[str] = ("dice", "r"),
                     levels: Sequence[float] = (0.001, 0.005, 0.01, 0.05, 0.1),
                     threshold: str | float = DEFAULT_THRESHOLD, n_perm: int = DEFAULT_N_PERM,
                     alpha: float = 0.05, seed: int = 0, null: str = "spin", tail: str = "none"
                     ) -> MappingRecovery:
    """Measured recovery of the whole encoding + mapping chain on planted atom couplings.

    Synthetic twins in which one of the dictionary's own atoms drives each of the ``n_planted``
    largest networks of ``atlas`` (atom i -> the i-th largest network, signs alternating; at
    most all networks but one, so at least the smallest network carries no signal and the
    false-positive rate on an unplanted network is measured too). The data are encoded with all
    k atoms (:func:`llmbrain_utils.encoding.encode_subjects`, OLS; their group t maps) and
    mapped exactly as the mapping stage does, once per overlap statistic (``statistics``, see
    :func:`couple_atoms`; the same rotations, or surrogate fields of the twin's maps, for all).
    Precision, recall, false discovery proportion and false-positive rate of the recovered
    (atom, network, sign) couplings:

    * at ``default_snr`` on ``n_seeds`` twins (noise and spatial profiles drawn with seeds
      ``seed + 1 ... seed + n_seeds``);
    * against SNR (``snrs``) on the first of those twins;
    * against the number of subjects (``subject_counts``, besides ``n_subjects``) at the
      default SNR on the first twin's seed.

    The calibration of the null: the atoms that drive no network carry no signal anywhere, so
    every test of theirs is a true null; the share of their p values at or below each of
    ``levels``, against the level itself, says whether the p values are valid (share <= level).

    Parameters
    ----------
    D : array (T, k)
        The dictionary's atoms (time courses on the TR grid).
    atlas : NetworkAtlas
        The mapping atlas, on the twins' voxels or vertices; the twins are planted in it.
    twin : callable
        ``twin(timecourses, plant, *, seed, snr, n_subjects) -> (S, T, V)`` BOLD of a synthetic
        twin in which ``plant`` (``{"network", "source": "timecourse:i", "sign", "weight"}``
        per planted atom) drives the networks with the columns of ``timecourses`` (T x
        n_planted), each column of each subject z-scored as the fMRI stage's data (the stage
        builds it: a volume twin, or one on a mesh, which this package layer cannot import).
    default_snr, n_subjects, snrs, subject_counts, n_planted, n_seeds, statistics, levels
        The design, checked and normalised by :func:`recovery_design`.
    threshold, n_perm, alpha, seed, null, tail
        As :func:`couple_atoms` (the mapping stage's ``threshold, fbn_perm, alpha, seed,
        fbn_null, fbn_tail``).

    Returns
    -------
    MappingRecovery
    """
    import pandas as pd

    from .. import encoding as enc

    design = recovery_design(snrs=snrs, default_snr=default_snr, n_subjects=n_subjects,
                             subject_counts=subject_counts, n_planted=n_planted, n_seeds=n_seeds,
                             statistics=statistics, levels=levels)
    snrs, default_snr = design["snrs"], design["default_snr"]
    counts, statistics, level_list = design["subject_counts"], design["statistics"], design["levels"]
    n_sub0 = n_subjects
    D = np.asarray(D)
    sizes = atlas.sizes()
    order = sorted((n for n in sizes if sizes[n] > 0), key=lambda n: -sizes[n])
    n_pl = min(n_planted, D.shape[1], max(1, len(order) - 1))
    nets = order[:n_pl]
    atoms = list(range(n_pl))
    signs = [1 if i % 2 == 0 else -1 for i in atoms]
    plant = [{"network": nets[i], "source": f"timecourse:{i}", "sign": signs[i], "weight": 1.0}
             for i in atoms]
    truth = [(a, nets[a], "active" if signs[a] > 0 else "deactive") for a in atoms]
    unplanted = [n for n in atlas.network_names if n not in set(nets)]
    # variance inflation factor of each atom among all k: 1 / (1 - R2 on the other atoms)
    vif = np.diag(np.linalg.inv(np.corrcoef(D, rowvar=False)))
    perms = atlas.spin_permutations(n_perm, seed) if null == "spin" else None
    seeds = [seed + 1 + i for i in range(n_seeds)]
    runs = ([(seeds[0], s, n_sub0) for s in snrs] + [(sd, default_snr, n_sub0) for sd in seeds[1:]]
            + [(seeds[0], default_snr, n) for n in counts])
    rows, tables, found, null_p = [], [], {}, []
    for twin_seed, snr, n_sub in bar(runs, "recovery twins", unit="twin"):
        bold = twin(D[:, atoms], plant, seed=twin_seed, snr=snr, n_subjects=n_sub)
        group_t = enc.group_maps(enc.encode_subjects(D, bold, cv_model=None).beta).t
        del bold
        surrogates = SurrogateNull(atlas, group_t, n_perm, seed) if null == "surrogate" else None
        for stat in statistics:
            table = couple_atoms(group_t, atlas, threshold=threshold, n_perm=n_perm, alpha=alpha,
                                 seed=seed, perms=perms, statistic=stat, null=null, tail=tail,
                                 surrogates=surrogates)
            rec = recovery(table, truth)
            on_unpl = table.network.isin(unplanted)
            n_coupled = int(table.coupled.sum())
            rows.append({"twin_seed": twin_seed, "snr": snr, "n_subjects": n_sub,
                         "statistic": stat,
                         **{k: rec[k] for k in ("precision", "recall", "fpr")},
                         "fdp": rec["fp"] / n_coupled if n_coupled else 0.0,
                         "fpr_unplanted_networks": float(table.coupled[on_unpl].mean())
                         if on_unpl.any() else float("nan"),
                         **{k: rec[k] for k in ("tp", "fp", "fn")}})
            tables.append(table.assign(twin_seed=twin_seed, snr=snr, n_subjects=n_sub,
                                       statistic=stat))
            if snr == default_snr:
                null_p.append((stat, n_sub, table.p[table.atom >= n_pl].to_numpy()))
            if snr == default_snr and n_sub == n_sub0:
                hit = table.set_index(["atom", "network", "sign"])["coupled"]
                found[(stat, twin_seed)] = [bool(hit.loc[t]) for t in truth]
    recovered = pd.DataFrame(rows)
    cal = []
    for (stat, n_sub), group in pd.DataFrame(null_p, columns=["s", "n", "p"]).groupby(["s", "n"]):
        p = np.concatenate(group.p.tolist())
        for level in level_list:
            share = float((p <= level).mean())
            cal.append({"statistic": stat, "n_subjects": int(n_sub), "level": level,
                        "n_tests": int(p.size), "n_twins": int(len(group)), "share": share,
                        "ratio": share / level})
    calibration = pd.DataFrame(cal)
    planted = pd.DataFrame(truth, columns=["atom", "network", "sign"])
    planted["n_voxels"] = [sizes[n] for n in nets]
    planted["vif"] = vif[atoms].round(1)
    for (stat, sd), hits in found.items():
        planted[f"{stat}_seed{sd}"] = hits
    at_default = recovered[(recovered.snr == default_snr) & (recovered.n_subjects == n_sub0)]
    summary = {stat: {k: float(g[k].mean()) for k in ("precision", "recall", "fdp", "fpr")}
               for stat, g in at_default.groupby("statistic")}
    at_05 = calibration[(calibration.level == 0.05) & (calibration.n_subjects == n_sub0)]
    return MappingRecovery(
        recovery=recovered, calibration=calibration, couplings=pd.concat(tables),
        planted=planted, truth=truth, twin_seeds=seeds, unplanted_networks=unplanted,
        default_snr=default_snr, n_subjects=n_sub0, subject_counts=[n_sub0, *counts],
        mean_at_default_snr=summary,
        null_share_at_05={r.statistic: round(r.share, 4) for r in at_05.itertuples()})
