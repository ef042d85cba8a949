"""Network signal: a continuous coupling statistic per model whose subject intervals can be
trusted (issue #19, item 2).

The count of FDR-coupled atoms is a step function of noisy p values, and every statistic built
on a maximum over networks or on a ratio of noisy map variances (:func:`compare.model_coupling`)
changes its expectation with the number of subjects, so subsets of subjects do not target the
full-sample value. This module measures coupling by a quantity with an *unbiased* estimator at
every number of subjects:

**Network signal** ``theta``. For atom ``a`` let ``mu_a`` be its population mean coefficient map
(over listeners) and ``sigma_a`` the sd of one listener's coefficients around it (the mean over
voxels of the across-subject variance, square-rooted), so that ``mu_a / sigma_a`` is the atom's
effect-size map. The networks of the atlas and the voxels outside every network ("rest")
partition the brain mask into groups ``g`` of ``n_g`` voxels (``V`` in all). Then

    theta_g = (1 / k) sum_a (n_g / V) (mean_g(mu_a) - mean(mu_a))^2 / sigma_a^2

is the share of the atoms' effect-size variance over voxels that lies between group ``g`` and
the rest of the brain, and ``theta = sum_g theta_g`` is the between-network variance of the
atoms' effect-size maps (the part of each map that the network partition explains, in units of
one listener's noise variance, averaged over the k atoms). It is 0 when the atoms carry no
network-level signal, and grows with both how strongly the atoms are encoded and how well their
maps follow the networks.

**Estimator.** With subject ``s``'s contrasts ``c_sag = sqrt(n_g / V) (mean_g(x_sa) -
mean(x_sa)) / sigma_a``, ``theta_g`` is a quadratic form of the mean map, and the U statistic

    U_g = sum_{s != t} <c_sg, c_tg> / (k m (m - 1))

over m subjects is unbiased for it for every m >= 2 (the noise of one subject never multiplies
itself). Subsets of subjects therefore target the same value as the full sample (the mean of
``U`` over all subsets of any size is exactly the full-sample ``U``), which is what the
subsampling interval needs. ``sigma_a`` is estimated once from all subjects and held fixed.

**Intervals** (:func:`network_signal`): subsets of m = n / 2 of the n subjects drawn without
replacement (:func:`compare.subsample_picks`, 1,000 by default), deviations rescaled by the
finite-population factor ``sqrt(m / (n - m))`` (exact for a mean), basic interval
(:func:`compare._subsample_ci`); or the delete-one jackknife with a t interval on n - 1 degrees
of freedom. **Paired differences** (:func:`paired_signal_differences`): every model on the same
subsets, the difference resampled as one statistic. Coverage, on simulations built from the
default run's own coefficient maps and its subjects' residual patterns (heteroscedastic,
spatially smooth, correlated across models as the same listeners' data are):
``benchmarks/interval_coverage.py``.

What it cannot show: ``theta`` is an amount of network-structured signal, not a count of
coupled atoms or networks; it depends on the atlas (coarser networks explain less of a map) and
on the brain mask; and like the encoding it measures the stimulus-driven signal a model's atoms
carry, so a model with more atoms, or atoms of larger variance, can score higher for that alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .errors import ParameterError

SCHEMES = ("subsample", "jackknife")


def _check_betas(betas, name: str = "betas") -> np.ndarray:
    from .compare import _check_betas as check

    return check(betas, name, min_subjects=3)


def groups_of(masks, V: int | None = None) -> tuple[np.ndarray, list[str] | None]:
    """The partition of the voxels by a set of disjoint network masks: ``(G, names)`` with ``G``
    (n_networks + 1, V) bool, the last row the voxels outside every network ("rest", dropped
    when empty). Overlapping masks are refused: a voxel must belong to one group."""
    from . import fbn
    from .compare import _check_masks

    names = None
    if isinstance(masks, fbn.NetworkAtlas):
        names = list(masks.network_names)
    M = _check_masks(masks, V)
    if names is not None and len(names) != M.shape[0]:
        names = None
    overlap = M.sum(0) > 1
    if overlap.any():
        raise ParameterError("masks", f"{int(overlap.sum())} voxels in more than one network",
                             expected="disjoint network masks (a hard parcellation), so that the "
                             "networks partition the brain")
    rest = ~M.any(0)
    if rest.any():
        M = np.vstack([M, rest[None, :]])
        names = None if names is None else names + ["(rest)"]
    return M, names


def atom_scale(betas) -> np.ndarray:
    """``sigma_a`` (k,): per atom, the root of the mean over voxels of the across-subject
    variance (ddof 1) of its coefficients; atoms whose coefficients do not vary get 1."""
    return _scale(_check_betas(betas))


def _scale(B: np.ndarray) -> np.ndarray:
    s = np.sqrt(B.var(0, ddof=1).mean(1))
    return np.where(s > 0, s, 1.0)


def subject_grams(betas, masks) -> tuple[np.ndarray, list[str] | None]:
    """Per group, the subjects' Gram matrix of their scaled network contrasts:
    ``G[g, s, t] = sum_a c_sag c_tag / k`` (groups, S, S), and the groups' names. Every U
    statistic of :func:`u_statistics` is a sum over its entries."""
    return _grams(_check_betas(betas), masks)


def _grams(B: np.ndarray, masks) -> tuple[np.ndarray, list[str] | None]:
    """:func:`subject_grams` of checked betas."""
    S, k, V = B.shape
    G, names = groups_of(masks, V)
    n_g = G.sum(1).astype(np.float64)
    X = B / _scale(B)[None, :, None]
    means = X @ G.T.astype(np.float64) / n_g  # (S, k, groups)
    c = (means - X.mean(2, keepdims=True)) * np.sqrt(n_g / V)
    return np.einsum("sag,tag->gst", c, c) / k, names


def u_statistics(grams: np.ndarray, picks: np.ndarray) -> np.ndarray:
    """The U statistic of every group for the subjects of every row of ``picks`` (R, m):
    (R, groups). Rows must not repeat a subject."""
    P = np.asarray(picks)
    R, m = P.shape
    if m < 2:
        raise ParameterError("picks", f"{m} subjects per subset", expected="at least 2")
    if (np.diff(np.sort(P, 1), axis=1) == 0).any():
        raise ParameterError("picks", "a subject twice in a subset", expected="subsets without replacement")
    W = np.zeros((R, grams.shape[1]))
    np.put_along_axis(W, P, 1.0, axis=1)
    total = np.einsum("rs,gst,rt->rg", W, grams, W)
    diag = W @ np.diagonal(grams, axis1=1, axis2=2).T
    return (total - diag) / (m * (m - 1))


def _interval(grams, n, scheme, m, n_resamples, seed, ci):
    """Per group and in all: estimate, interval and p of H0 theta = 0 (a dict of arrays over
    groups + 1, the last entry the total), and the resampled values."""
    from .compare import _subsample_ci, subsample_picks

    full = u_statistics(grams, np.arange(n)[None, :])[0]
    full = np.append(full, full.sum())
    if scheme == "jackknife":
        picks = np.array([[j for j in range(n) if j != i] for i in range(n)])
        vals = u_statistics(grams, picks)
        vals = np.hstack([vals, vals.sum(1, keepdims=True)])
        from scipy.stats import t as tdist

        se = np.sqrt((n - 1) / n * ((vals - vals.mean(0)) ** 2).sum(0))
        q = tdist.ppf(0.5 + ci / 2, n - 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            p = np.where(se > 0, 2 * tdist.sf(np.abs(full) / se, n - 1), 1.0)
        return {"estimate": full, "ci_low": full - q * se, "ci_high": full + q * se, "p": p, "se": se}, vals, picks
    picks = subsample_picks(n, m, n_resamples, seed)
    vals = u_statistics(grams, picks)
    vals = np.hstack([vals, vals.sum(1, keepdims=True)])
    res = [_subsample_ci(float(f), vals[:, j], n, m, ci, False, "fpc") for j, f in enumerate(full)]
    out = {key: np.array([r[key] for r in res]) for key in ("estimate", "ci_low", "ci_high", "p")}
    out["se"] = math.sqrt(m / (n - m)) * vals.std(0, ddof=1)
    return out, vals, picks


def _check_args(n, scheme, m, n_resamples, seed, ci) -> int:
    from .compare import STATISTICS, _check_interval_args

    if scheme not in SCHEMES:
        raise ParameterError("scheme", f"{scheme!r}", expected=f"one of {list(SCHEMES)}")
    # the checks of m, n_resamples, seed and ci are compare's (the same subsets, the same rules)
    return _check_interval_args(n, m, n_resamples, seed, ci, "fpc", STATISTICS[0])


@dataclass
class NetworkSignal:
    """Result of :func:`network_signal`.

    Attributes
    ----------
    estimate, lo, hi, p : float
        ``theta`` (all groups), its interval and the p value of H0 ``theta = 0`` (two-sided).
    per_network : pandas.DataFrame
        One row per group (the atlas's networks and "(rest)"): ``estimate``, ``ci_low``,
        ``ci_high``, ``se``, ``p``.
    values : numpy.ndarray
        The total's value on every subset (or leave-one-out sample), (R,).
    picks : numpy.ndarray
        The subsets (R, m).
    info : dict
        Settings.
    """

    estimate: float
    lo: float
    hi: float
    p: float
    per_network: pd.DataFrame
    values: np.ndarray
    picks: np.ndarray
    info: dict = field(default_factory=dict)


def network_signal(betas, masks, *, scheme: str = "subsample", m: int | None = None,
                   n_resamples: int = 1000, seed: int = 0, ci: float = 0.95) -> NetworkSignal:
    """The network signal ``theta`` of one model (module docstring) with its interval across
    subjects.

    Parameters
    ----------
    betas : array (S, k, V)
        Per-subject coefficients of every atom (the encoding stage's ``beta.npy``), S >= 3.
    masks : fbn.NetworkAtlas or bool array (networks, V)
        Disjoint networks; voxels in none form the group "(rest)".
    scheme : {"subsample", "jackknife"}
        Subsets of ``m`` subjects without replacement (default m = S // 2, ``n_resamples`` of
        them, seeded: the same seed and S give the same subsets for every model), or the
        delete-one jackknife with a t interval.
    ci : float
        Interval level.
    """
    B = _check_betas(betas)
    n = B.shape[0]
    m = _check_args(n, scheme, m, n_resamples, seed, ci)
    grams, names = _grams(B, masks)
    res, vals, picks = _interval(grams, n, scheme, m, int(n_resamples), int(seed), ci)
    names = names or [f"network {j}" for j in range(grams.shape[0])]
    per = pd.DataFrame({key: res[key][:-1] for key in ("estimate", "ci_low", "ci_high", "se", "p")},
                       index=pd.Index(names, name="network"))
    info = {"scheme": scheme, "n_subjects": n, "m": n - 1 if scheme == "jackknife" else m,
            "n_resamples": n if scheme == "jackknife" else int(n_resamples), "seed": int(seed), "ci": ci,
            "n_atoms": int(B.shape[1])}
    return NetworkSignal(float(res["estimate"][-1]), float(res["ci_low"][-1]), float(res["ci_high"][-1]),
                         float(res["p"][-1]), per, vals[:, -1], picks, info)


def paired_signal_differences(betas_by_model: dict, masks, *, pairs=None, scheme: str = "subsample",
                              m: int | None = None, n_resamples: int = 1000, seed: int = 0,
                              ci: float = 0.95) -> pd.DataFrame:
    """Differences of network signal between models, on the same subsets of the same subjects.

    ``betas_by_model``: name -> (S, k_model, V), the same S listeners in the same order and the
    same voxels for every model. ``pairs``: a list of (a, b) names (default: every pair in the
    dict's order). The difference ``U(a) - U(b)`` of each subset is resampled as one statistic
    (what the subjects share across models cancels in it), with the scheme of
    :func:`network_signal`; ``p`` is two-sided for H0 "no difference".

    Returns one row per pair: ``model_a``, ``model_b``, ``theta_a``, ``theta_b``,
    ``difference``, ``ci_low``, ``ci_high``, ``p``, ``n_subjects``, ``m``, ``n_resamples``.
    """
    if not isinstance(betas_by_model, dict) or len(betas_by_model) < 2:
        raise ParameterError("betas_by_model", f"{type(betas_by_model).__name__}",
                             expected="a dict of at least two models' betas (S, k, V)")
    Bs = {str(k): _check_betas(v, f"betas_by_model[{k!r}]") for k, v in betas_by_model.items()}
    first = next(iter(Bs.values())).shape
    for name, b in Bs.items():
        if b.shape[0] != first[0] or b.shape[2] != first[2]:
            raise ParameterError(f"betas_by_model[{name!r}]", f"shape {b.shape}",
                                 expected=f"the same subjects and voxels as the others: ({first[0]}, k, {first[2]})")
    n = first[0]
    m = _check_args(n, scheme, m, n_resamples, seed, ci)
    names = list(Bs)
    if pairs is None:
        pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    for a, b in pairs:
        for x in (a, b):
            if x not in Bs:
                raise ParameterError("pairs", f"{x!r}", expected=f"models of betas_by_model: {names}")
    used = {x for pair in pairs for x in pair}
    grams = {name: _grams(B, masks)[0].sum(0, keepdims=True) for name, B in Bs.items() if name in used}
    everyone = np.arange(n)[None, :]
    theta = {name: float(u_statistics(g, everyone)[0, 0]) for name, g in grams.items()}
    rows = []
    for a, b in pairs:
        d = _interval(grams[a] - grams[b], n, scheme, m, int(n_resamples), int(seed), ci)[0]
        rows.append({"model_a": a, "model_b": b, "theta_a": theta[a], "theta_b": theta[b],
                     "difference": d["estimate"][-1], "ci_low": d["ci_low"][-1], "ci_high": d["ci_high"][-1],
                     "p": d["p"][-1], "n_subjects": n, "m": n - 1 if scheme == "jackknife" else m,
                     "n_resamples": n if scheme == "jackknife" else int(n_resamples)})
    out = pd.DataFrame(rows, columns=["model_a", "model_b", "theta_a", "theta_b", "difference", "ci_low",
                                      "ci_high", "p", "n_subjects", "m", "n_resamples"])
    out.attrs.update({"scheme": scheme, "ci": ci, "seed": int(seed)})
    return out
