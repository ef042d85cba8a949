"""Coupling atoms to networks: the observed overlaps, their null (spin, surrogate or sign
flip), permutation p values, Benjamini-Hochberg q values and the decisions
(:func:`couple_atoms`), and how the couplings change with the threshold
(:func:`threshold_sensitivity`)."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .._validation import check_int
from ..errors import InputError, ParameterError
from ..stats import fdr
from .atlases import NetworkAtlas
from .overlaps import _check_maps, _corr, _dice, _rows
from .signflip import _signflip_counts, group_t
from .spin import DEFAULT_N_PERM, _spin_counts, _spin_counts_r
from .surrogate import SurrogateNull
from .tail import TAILS, _tail_pvalues
from .thresholds import DEFAULT_THRESHOLD, parse_threshold, threshold_maps

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

log = logging.getLogger(__name__)

NULLS = ("spin", "surrogate", "signflip")
STATISTICS = ("dice", "r")
DEFAULT_STATISTIC = "dice"
TABLE_COLUMNS = ["atom", "atlas", "network", "sign", "dice", "r", "p", "q", "coupled"]


def _check_common(n_perm: int, alpha: float, seed: int, null: str,
                  subject_maps: Any, statistic: str = DEFAULT_STATISTIC) -> None:
    if statistic not in STATISTICS:
        raise ParameterError("statistic", f"{statistic!r}", expected=f"one of {list(STATISTICS)}")
    check_int("n_perm", n_perm, 1)
    check_int("seed", seed, 0)
    if (not isinstance(alpha, (int, float)) or isinstance(alpha, bool)
            or not 0 < alpha < 1):
        raise ParameterError("alpha", f"{alpha!r}", expected="a number in (0, 1), e.g. 0.05")
    if null not in NULLS:
        raise ParameterError("null", f"{null!r}", expected=f"one of {list(NULLS)}")
    if null == "signflip" and subject_maps is None:
        raise ParameterError("null", "'signflip' needs subject_maps",
                             expected="subject_maps (S, k, V), or null='spin'")


def _check_subjects(subject_maps: Any, atlas: NetworkAtlas, k: int | None) -> np.ndarray:
    x = np.asarray(subject_maps, dtype=np.float64)
    if x.ndim != 3 or x.shape[0] < 2:
        raise ParameterError("subject_maps", f"shape {x.shape}",
                             expected="(S >= 2 subjects, k atoms, V voxels)")
    if x.shape[2] != atlas.n_voxels:
        raise InputError("subject_maps", f"{x.shape[2]} voxels per map", field="V",
                         expected=f"{atlas.n_voxels}, the voxels of the atlas's mask")
    if k is not None and x.shape[1] != k:
        raise InputError("subject_maps", f"{x.shape[1]} atoms", field="k",
                         expected=f"{k}, as group_maps")
    if not np.all(np.isfinite(x)):
        raise InputError("subject_maps", "non-finite value", expected="finite numbers")
    return x


def couple_atoms(group_maps: np.ndarray | None, atlas: NetworkAtlas, *,
                 subject_maps: np.ndarray | None = None,
                 threshold: str | float = DEFAULT_THRESHOLD, n_perm: int = DEFAULT_N_PERM,
                 alpha: float = 0.05, seed: int = 0, null: str = "spin",
                 perms: np.ndarray | None = None, statistic: str = DEFAULT_STATISTIC,
                 tail: str = "none", surrogates: SurrogateNull | None = None,
                 null_counts: tuple | None = None) -> pd.DataFrame:
    """Couple atoms to networks: Dice, correlation, permutation p, BH q, decision.

    Parameters
    ----------
    group_maps : array (k, V) or None
        Group map of each atom (usually a group t map) on the atlas's mask voxels. None:
        the one-sample t map of ``subject_maps``.
    atlas : NetworkAtlas
    subject_maps : array (S, k, V), optional
        Per-subject maps; needed for ``null="signflip"``. With that null the observed maps are
        the group t maps of ``subject_maps`` (``group_maps``, if given, must equal them).
    threshold : str or float
        See :func:`threshold_maps` (default ``"top10%"``).
    n_perm : int
        Permutations of the null (default 1000). The smallest p is 1 / (n_perm + 1), and BH
        over m = 2 k n tests passes it only when at least m / (alpha (n_perm + 1)) tests reach
        it: with k=64 atoms and 14 networks, 1000 permutations need 36 such couplings, 10000
        need 4 (a spin run of that size takes about a minute on one core).
    alpha : float
        FDR level: coupled when q <= alpha and the tested statistic (Dice, or the signed r) is
        > 0.
    seed : int
        Seed of the rotations / sign flips.
    null : {"spin", "surrogate", "signflip"}
        See the package's Nulls section; "spin" (default) tests network specificity with
        nothing but the group map and is the toolbox's choice; "surrogate" does too, keeping
        the maps' grey-matter structure, and is the one calibrated on tissue-weighted maps
        (``benchmarks/null_calibration.json``) and the mapping stage's default
        (``fbn_null``); the spin is anti-conservative on such maps.
    perms : array (n_perm, V), optional
        Precomputed :func:`spin_permutations` (reused across calls).
    statistic : {"dice", "r"}
        The overlap that is tested (see the package's Statistics section): ``"dice"`` (default)
        of the thresholded part, or the signed spatial correlation ``"r"`` of the unthresholded
        map with the network's indicator. ``p`` and ``q`` are those of this statistic.

    Returns
    -------
    pandas.DataFrame
        Columns ``atom, atlas, network, sign, dice, r, p, q, coupled``; one row per atom,
        network and sign (``"active"``/``"deactive"``; for ``"deactive"``, ``r`` is minus the
        map's correlation). ``attrs`` holds the settings.
    tail : {"none", "gpd"}
        ``"gpd"``: where fewer than ``GPD_MIN_EXCEED`` null values reach the observed one, the p
        value of a generalised Pareto tail fitted to the null (:func:`gpd_tail_p`), so p can go
        below ``1 / (n_perm + 1)`` and FDR is not held at the permutation floor; not with
        ``null="signflip"``.
    surrogates : SurrogateNull, optional
        With ``null="surrogate"``: prepared surrogate fields (reused across statistics and
        thresholds of the same maps); drawn from ``group_maps`` when None.
    null_counts : (counts, values), optional
        With ``null="surrogate"`` or ``"spin"``: the null's counts (2k, n) and, with
        ``tail="gpd"``, its values (2k, n_perm, n; else None), counted elsewhere with these
        settings (:func:`surrogate_counts_block` over blocks of atoms, :func:`spin_counts_block`
        over blocks of rotations, put together: the mapping stage's fan-out); None counts them
        here.
    """
    import pandas as pd

    parse_threshold(threshold)
    _check_common(n_perm, alpha, seed, null, subject_maps, statistic)
    if tail not in TAILS or (tail == "gpd" and null == "signflip"):
        raise ParameterError("tail", f"{tail!r} with null {null!r}",
                             expected=f"one of {list(TAILS)}; 'gpd' with the spin or surrogate null")
    if not isinstance(atlas, NetworkAtlas):
        raise ParameterError("atlas", f"{type(atlas).__name__} is not a NetworkAtlas",
                             expected="load_atlas(...) or seitzman_atlas(...)")
    subj = None
    if group_maps is None:
        if subject_maps is None:
            raise ParameterError("group_maps", "None and no subject_maps",
                                 expected="group maps (k, V) or subject maps (S, k, V)")
        subj = _check_subjects(subject_maps, atlas, None)
        maps = group_t(subj)
    else:
        maps = _check_maps(group_maps, atlas)
        if subject_maps is not None:
            subj = _check_subjects(subject_maps, atlas, maps.shape[0])
    if null == "signflip":
        t = group_t(subj)
        if group_maps is not None and not np.allclose(maps, t, rtol=1e-4, atol=1e-6):
            raise InputError("group_maps", "differ from the group t maps of subject_maps",
                             expected="group_maps=None or group_t(subject_maps) with "
                             "null='signflip'")
        maps = t
        if 2 ** (subj.shape[0] - 1) < n_perm:
            log.warning("%d subjects allow only %d distinct sign flips (< n_perm=%d)",
                        subj.shape[0], 2 ** subj.shape[0], n_perm)
    if surrogates is not None and (
            null != "surrogate" or not isinstance(surrogates, SurrogateNull)
            or surrogates.atlas is not atlas or (surrogates.n_perm, surrogates.seed) != (n_perm, seed)):
        raise ParameterError("surrogates", "not a SurrogateNull of this atlas, n_perm and seed "
                             f"(null {null!r})", expected=f"SurrogateNull(atlas, maps, {n_perm}, "
                             f"{seed}) with null='surrogate'")
    if perms is not None:
        perms = np.asarray(perms)
        if perms.ndim != 2 or perms.shape[1] != atlas.n_voxels or perms.shape[0] != n_perm:
            raise ParameterError("perms", f"shape {perms.shape}",
                                 expected=f"({n_perm}, {atlas.n_voxels}) from spin_permutations")

    k, n = maps.shape[0], atlas.n_networks
    need = math.ceil(2 * k * n / (alpha * (n_perm + 1)))
    if need > 1:
        log.info("n_perm=%d: with %d tests, BH at alpha=%g declares couplings only when at "
                 "least %d reach the smallest p; raise n_perm to detect fewer",
                 n_perm, 2 * k * n, alpha, need)
    if null_counts is not None:
        _check_null_counts(null_counts, null, tail, (2 * k, n_perm, n))
    parts, dice, corr, observed = _observed(maps, atlas, threshold, statistic)
    rng = np.random.default_rng(seed)
    keep = [] if tail == "gpd" else None
    if null_counts is not None:
        counts = null_counts[0]
        if keep is not None:
            keep.append(null_counts[1])
    elif null == "spin":
        if perms is None:
            perms = atlas.spin_permutations(n_perm, seed)
        if statistic == "dice":
            counts = _spin_counts(parts, observed, atlas.masks, perms, keep)
        else:
            counts = _spin_counts_r(maps, observed, atlas.masks, perms, keep)
    elif null == "surrogate":
        if surrogates is None:
            surrogates = SurrogateNull(atlas, maps, n_perm, seed)
        counts, _ = surrogates.counts(maps, observed, threshold, statistic, keep=keep)
    else:
        counts = _signflip_counts(subj, observed, atlas.masks, threshold, n_perm, rng,
                                  statistic)
    pvals = (1.0 + counts) / (1.0 + n_perm)
    p_count = pvals
    if keep is not None:
        pvals = _tail_pvalues(pvals, counts, observed, np.concatenate(keep, axis=1))

    cols = _rows(atlas, dice, corr)
    cols["p"] = pvals.reshape(2, k, n).transpose(1, 2, 0).ravel()
    cols["q"] = fdr(cols["p"], alpha)[1]
    table = pd.DataFrame(cols)
    table.insert(1, "atlas", atlas.name)
    tested = table["dice"] if statistic == "dice" else table["r"]
    table["coupled"] = (table["q"] <= alpha) & (tested > 0)
    table.attrs.update({"threshold": threshold, "null": null, "n_perm": n_perm, "tail": tail,
                        "alpha": alpha, "seed": seed, "atlas": atlas.name,
                        "statistic": statistic,
                        # the plain permutation p (before any tail fit), in the table's row order
                        "p_count": p_count.reshape(2, k, n).transpose(1, 2, 0).ravel()})
    return table[TABLE_COLUMNS]


def _observed(maps: np.ndarray, atlas: NetworkAtlas, threshold: str | float,
              statistic: str) -> tuple:
    """The maps' parts (2k, V), Dice and r with every network, and the tested statistic (2k,
    n; active rows first)."""
    pos, neg = threshold_maps(maps, threshold)
    parts = np.concatenate([pos, neg])
    dice = _dice(parts, atlas.masks)
    corr = _corr(maps, atlas.masks)
    return parts, dice, corr, (dice if statistic == "dice"
                               else np.nan_to_num(np.concatenate([corr, -corr])))


def _check_null_counts(null_counts: Any, null: str, tail: str, shape: tuple) -> None:
    two_k, n_perm, n = shape
    ok = (null in ("surrogate", "spin") and isinstance(null_counts, tuple) and len(null_counts) == 2
          and np.shape(null_counts[0]) == (two_k, n)
          and (null_counts[1] is None if tail != "gpd"
               else np.shape(null_counts[1]) == (two_k, n_perm, n)))
    if not ok:
        raise ParameterError("null_counts", f"not the null's (counts, values) of "
                             f"{two_k // 2} maps, {n} networks (null {null!r}, tail {tail!r})",
                             expected=f"with null 'surrogate' or 'spin': counts ({two_k}, {n}) "
                             f"and values ({two_k}, {n_perm}, {n}) for tail 'gpd', else None")


def surrogate_counts_block(group_maps: np.ndarray, atlas: NetworkAtlas, atoms: Any, *,
                           threshold: str | float = DEFAULT_THRESHOLD,
                           n_perm: int = DEFAULT_N_PERM, seed: int = 0,
                           statistic: str = DEFAULT_STATISTIC,
                           tail: str = "none") -> tuple[np.ndarray, np.ndarray | None]:
    """The surrogate null's counts of the maps ``atoms`` of ``group_maps`` (k, V), as
    :func:`couple_atoms` counts them: ``(counts (2, a, n), values (2, a, n_perm, n) or
    None)``, active rows first, the values with ``tail="gpd"`` only. The fields are drawn from
    all the maps (kept per process: a worker draws them once), each map's surrogates are its own
    arithmetic, so blocks of atoms put side by side are ``couple_atoms``' counts bit for bit
    (pass them as its ``null_counts``)."""
    maps = _check_maps(group_maps, atlas)
    atoms = np.asarray(atoms, dtype=np.intp)
    k = maps.shape[0]
    if atoms.ndim != 1 or atoms.size == 0 or atoms.min() < 0 or atoms.max() >= k:
        raise ParameterError("atoms", f"{atoms.tolist()!r}", expected=f"indices of maps in [0, {k})")
    null = SurrogateNull(atlas, maps, n_perm, seed)
    observed = _observed(maps, atlas, threshold, statistic)[3]
    keep = [] if tail == "gpd" else None
    counts, _ = null.counts(maps, observed, threshold, statistic, keep=keep, atoms=atoms)

    def rows(a: np.ndarray) -> np.ndarray:  # (2k, ...) -> the block's (2, a, ...)
        return a.reshape((2, k) + a.shape[1:])[:, atoms]

    return rows(counts), (rows(keep[0]) if keep is not None else None)


def spin_counts_block(group_maps: np.ndarray, atlas: NetworkAtlas, draws: slice, *,
                      threshold: str | float = DEFAULT_THRESHOLD, n_perm: int = DEFAULT_N_PERM,
                      seed: int = 0, statistic: str = DEFAULT_STATISTIC, tail: str = "none",
                      perms: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """The spin null's counts over the rotations ``draws`` (a slice of ``range(n_perm)``) of
    ``group_maps`` (k, V), as :func:`couple_atoms` counts them: ``(counts (2k, n), values (2k,
    d, n) or None)``, the values with ``tail="gpd"`` only. ``perms``: the atlas's
    :meth:`~NetworkAtlas.spin_permutations` (computed here when None). The rotations are counted
    in chunks of 64 from the block's start, so blocks that start at multiples of 64 give, summed
    and side by side, ``couple_atoms``' counts and values bit for bit (pass them as its
    ``null_counts``)."""
    maps = _check_maps(group_maps, atlas)
    start, stop, step = draws.indices(int(n_perm))
    if step != 1 or stop <= start:
        raise ParameterError("draws", f"{draws!r}", expected=f"a slice of range({n_perm})")
    if perms is None:
        perms = atlas.spin_permutations(n_perm, seed)
    parts, _, _, observed = _observed(maps, atlas, threshold, statistic)
    keep = [] if tail == "gpd" else None
    if statistic == "dice":
        counts = _spin_counts(parts, observed, atlas.masks, perms[start:stop], keep)
    else:
        counts = _spin_counts_r(maps, observed, atlas.masks, perms[start:stop], keep)
    return counts, (np.concatenate(keep, axis=1) if keep is not None else None)


def threshold_sensitivity(group_maps: np.ndarray | None, atlas: NetworkAtlas,
                          thresholds: Sequence[str | float] = ("top5%", "top10%", "top20%"),
                          **kwargs: Any) -> pd.DataFrame:
    """How the couplings change with the threshold.

    Parameters
    ----------
    group_maps, atlas
        As :func:`couple_atoms`.
    thresholds : sequence
        Thresholds to try (see :func:`threshold_maps`); all must share one rule, "topQ%" or
        numbers.
    **kwargs
        Passed to :func:`couple_atoms` (``subject_maps, n_perm, alpha, seed, null, perms,
        surrogates, statistic, tail``; without ``perms`` the spin null draws the atlas's
        rotations once, :meth:`NetworkAtlas.spin_permutations`; with ``statistic="r"`` the decisions do not depend on the threshold,
        only the reported Dice and ``mean_dice`` do); the same rotations or surrogate fields are
        used for every threshold.

    Returns
    -------
    pandas.DataFrame
        One row per threshold: ``threshold, n_coupled, n_active, n_deactive, n_atoms,
        n_networks, mean_dice`` (over coupled rows, NaN if none).
    """
    import pandas as pd

    if "threshold" in kwargs:
        raise ParameterError("threshold", "given twice", expected="thresholds=[...] only")
    thresholds = list(thresholds)
    if not thresholds:
        raise ParameterError("thresholds", "empty", expected="e.g. ['top5%', 'top10%']")
    for t in thresholds:
        parse_threshold(t)
    n_perm = kwargs.get("n_perm", DEFAULT_N_PERM)
    seed = kwargs.get("seed", 0)
    _check_common(n_perm, kwargs.get("alpha", 0.05), seed, kwargs.get("null", "spin"),
                  kwargs.get("subject_maps"), kwargs.get("statistic", DEFAULT_STATISTIC))
    if not isinstance(atlas, NetworkAtlas):
        raise ParameterError("atlas", f"{type(atlas).__name__} is not a NetworkAtlas",
                             expected="load_atlas(...) or seitzman_atlas(...)")
    shared: dict[str, Any] = {}
    if kwargs.get("null", "spin") == "spin" and "perms" not in kwargs:
        shared["perms"] = atlas.spin_permutations(n_perm, seed)
    elif kwargs.get("null") == "surrogate" and group_maps is not None and "surrogates" not in kwargs:
        shared["surrogates"] = SurrogateNull(atlas, group_maps, n_perm, seed)
    rows = []
    for t in thresholds:
        tab = couple_atoms(group_maps, atlas, threshold=t, **shared, **kwargs)
        c = tab[tab["coupled"]]
        rows.append({"threshold": t, "n_coupled": len(c),
                     "n_active": int((c["sign"] == "active").sum()),
                     "n_deactive": int((c["sign"] == "deactive").sum()),
                     "n_atoms": int(c["atom"].nunique()),
                     "n_networks": int(c["network"].nunique()),
                     "mean_dice": float(c["dice"].mean()) if len(c) else float("nan")})
    return pd.DataFrame(rows)
