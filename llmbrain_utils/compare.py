"""Stage 7: models side by side: couplings per network, consistency, diversity, layers, scores.

Every measure takes the artifacts of one model's run (dictionary, encoding, FBN table); the
cross-model notebook gathers them into one table per measure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import InputError, ParameterError


def mean_abs_offdiag(C: np.ndarray) -> float:
    """Mean |r| over the pairs of a correlation matrix (NaN with fewer than two items)."""
    C = np.asarray(C)
    if C.shape[0] < 2:
        return float("nan")
    return float(np.abs(C[np.triu_indices_from(C, 1)]).mean())


def diversity(D: np.ndarray) -> float:
    """Mean pairwise |r| of all atoms: low = diverse computational behaviours."""
    return mean_abs_offdiag(np.corrcoef(np.asarray(D).T))


def network_consistency(D: np.ndarray, table: pd.DataFrame, *, n_null: int = 2000,
                        seed: int = 0) -> pd.DataFrame:
    """Temporal consistency of the atoms coupled to each network, against a size-matched null.

    For each (network, sign) with at least two coupled atoms: the mean pairwise |r| of their
    time courses, and the share of random sets of the *same number* of the model's atoms with a
    mean |r| at least as large (a reviewer showed that fewer atoms alone can raise consistency).
    """
    C = np.abs(np.corrcoef(np.asarray(D).T))
    k = C.shape[0]
    rng = np.random.default_rng(seed)
    rows = []
    coupled = table[table.coupled]
    null_cache: dict[int, np.ndarray] = {}
    for (net, sign), g in coupled.groupby(["network", "sign"]):
        atoms = np.unique(g.atom.to_numpy(int))
        n = atoms.size
        if n < 2:
            continue
        obs = mean_abs_offdiag(C[np.ix_(atoms, atoms)])
        if n not in null_cache:
            null_cache[n] = np.array([mean_abs_offdiag(C[np.ix_(s, s)]) for s in
                                      (rng.choice(k, n, replace=False) for _ in range(n_null))])
        null = null_cache[n]
        rows.append({"network": net, "sign": sign, "n_atoms": n, "consistency": obs,
                     "null_mean": float(null.mean()),
                     "p": float((1 + (null >= obs).sum()) / (1 + n_null))})
    return pd.DataFrame(rows, columns=["network", "sign", "n_atoms", "consistency", "null_mean", "p"])


def couplings_per_network(table: pd.DataFrame, networks: list[str]) -> pd.DataFrame:
    """Number of atoms coupled to each network, active and deactive."""
    c = table[table.coupled]
    out = (c.groupby(["network", "sign"]).atom.nunique().unstack(fill_value=0)
           .reindex(index=networks, columns=["active", "deactive"], fill_value=0))
    return out


def layer_distribution(loadings, layers: np.ndarray, atoms=None) -> pd.Series:
    """Share of the ANs (non-zero loadings) of the given atoms in each layer."""
    A = loadings.tocsr()
    rows = range(A.shape[0]) if atoms is None else atoms
    idx = np.concatenate([A.indices[A.indptr[i]:A.indptr[i + 1]] for i in rows]) if len(rows) else np.array([], int)
    counts = pd.Series(layers[idx]).value_counts().reindex(np.unique(layers), fill_value=0)
    return counts / max(counts.sum(), 1)


def bootstrap_mean(values: np.ndarray, *, n_boot: int = 2000, seed: int = 0, ci: float = 0.95):
    """Mean over subjects with a percentile bootstrap interval (subjects resampled)."""
    v = np.asarray(values, float)
    rng = np.random.default_rng(seed)
    boots = v[rng.integers(0, v.size, size=(n_boot, v.size))].mean(1)
    lo, hi = np.quantile(boots, [(1 - ci) / 2, 1 - (1 - ci) / 2])
    return float(v.mean()), float(lo), float(hi)


def model_summary(name: str, *, D, loadings, layers, table, cv_r, isc_keep, info: dict,
                  seed: int = 0) -> dict:
    """One row of the comparison table for one model (or control)."""
    coupled = table[table.coupled]
    per_subject = np.asarray(cv_r)[:, isc_keep].mean(1) if isc_keep.any() else np.asarray(cv_r).mean(1)
    mean, lo, hi = bootstrap_mean(per_subject, seed=seed)
    cons = network_consistency(D, table, seed=seed)
    return {
        "model": name, "n_layers": info.get("n_layers"), "n_ans": int(loadings.shape[1]),
        "n_params_m": info.get("n_params_m"),
        "atoms_coupled": int(coupled.atom.nunique()), "couplings": int(len(coupled)),
        "networks_involved": int(coupled.network.nunique()),
        "active": int((coupled.sign == "active").sum()), "deactive": int((coupled.sign == "deactive").sum()),
        "diversity_mean_abs_r": diversity(D),
        "consistency_mean_abs_r": float(cons.consistency.mean()) if len(cons) else float("nan"),
        "consistency_above_null": float((cons.consistency - cons.null_mean).mean()) if len(cons) else float("nan"),
        # the balance the paper names: within-network consistency beyond the atoms' overall
        # similarity (positive = networks gather atoms that move together, among diverse atoms)
        "balance": (float(cons.consistency.mean()) - diversity(D)) if len(cons) else float("nan"),
        "cv_r_isc_mask": mean, "cv_r_ci_low": lo, "cv_r_ci_high": hi,
    }


# --------------------------------------------------------------------------- coupling bootstrap
class SpinNull:
    """The mapping stage's spin null, prepared once per atlas and reused for every model.

    Holds the rotations (:func:`fbn.spin_permutations`, the same ``n_perm`` and ``seed`` as the
    mapping stage, so p values are the stage's), their transpose for fast per-part gathers, and
    the size of every rotated network.
    """

    def __init__(self, atlas, n_perm: int = 5000, seed: int = 0, perms=None):
        from . import fbn

        if not isinstance(atlas, fbn.NetworkAtlas):
            raise ParameterError("atlas", f"{type(atlas).__name__} is not a NetworkAtlas",
                                 expected="fbn.load_atlas(...)")
        for name, v, low in (("n_perm", n_perm, 1), ("seed", seed, 0)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
                raise ParameterError(name, f"{v!r}", expected=f"an integer >= {low}")
        if perms is None:
            perms = fbn.spin_permutations(atlas.mask_img, n_perm, seed=seed)
        perms = np.asarray(perms)
        if perms.shape != (n_perm, atlas.n_voxels):
            raise ParameterError("perms", f"shape {perms.shape}",
                                 expected=f"({n_perm}, {atlas.n_voxels}) from fbn.spin_permutations")
        self.atlas, self.n_perm, self.seed = atlas, int(n_perm), int(seed)
        self.perms = perms
        self.perms_t = np.ascontiguousarray(perms.T)  # (V, n_perm)
        self.masks = atlas.masks
        self.masks32 = atlas.masks.astype(np.float32)
        self.net_sizes = atlas.masks.sum(1, dtype=np.float64)
        self.rot_sizes = np.stack([m[perms].sum(1, dtype=np.float64) for m in atlas.masks], 1)  # (P, n)
        n = atlas.n_networks
        # networks that do not overlap (hard atlases, Seitzman's ROIs): one label per voxel, so a
        # part's overlap with every rotated network is one gather and one bincount
        self.labels_t = None
        if n < 127 and atlas.masks.sum(0).max() <= 1:
            labels = np.full(atlas.n_voxels, n, dtype=np.int8)
            for j in range(n):
                labels[atlas.masks[j]] = j
            self.labels_t = labels[self.perms_t]  # (V, n_perm): network of each voxel's source

    def _overlaps(self, vox: np.ndarray, rots: slice, nets: np.ndarray | None = None) -> np.ndarray:
        """|part ∩ rotated network| for the part's voxels ``vox``, rotations ``rots``: (r, n)."""
        n = self.atlas.n_networks
        if self.labels_t is not None:
            lab = self.labels_t[vox, rots]  # (|part|, r)
            r = lab.shape[1]
            if nets is None:  # every network: one bincount
                flat = lab.astype(np.int32) + np.int32(n + 1) * np.arange(r, dtype=np.int32)[None, :]
                return np.bincount(flat.ravel(), minlength=r * (n + 1)).reshape(r, n + 1)[:, :n].astype(np.float64)
            out = np.zeros((r, n))
            for j in nets:
                out[:, j] = np.count_nonzero(lab == j, axis=0)
            return out
        src = self.perms_t[vox, rots]
        out = np.zeros((src.shape[1], n))
        for j in (range(n) if nets is None else nets):
            out[:, j] = self.masks[j][src].sum(0, dtype=np.float64)
        return out

    def counts(self, parts: np.ndarray, observed: np.ndarray, *, alpha: float, n_screen: int = 200,
               growth: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """Exceedance counts of the null Dice over the observed Dice, for every (part, network),
        counted sequentially but with exactly the Benjamini-Hochberg decisions of all rotations.

        Every test meets the first ``n_screen`` rotations, then ``growth`` times as many, and so
        on up to ``n_perm``. After each stage a test's count can only grow, so
        ``(1 + count) / (1 + n_perm)`` is a lower bound of its p; BH at ``alpha`` on these bounds
        (the exact p for the tests already counted in full) rejects at least as many tests as BH
        on the full counts, with a cut-off at least as high. A test whose bound is above that
        cut-off can never be rejected and stops (the cut-off only falls as counts grow); the
        others go on. Decisions on the returned counts are those of the full counts; the
        stopped tests' counts are scaled to ``n_perm`` rotations (a sequential estimate of p).
        Returns ``(counts, complete)``: counts (m, n) and whether each count is complete.
        """
        P = self.n_perm
        m, n = observed.shape
        sp = parts.sum(1, dtype=np.float64)
        tol = observed - 1e-9
        vox = [np.flatnonzero(row) for row in parts]

        def exceed(i, rots, nets=None):
            inter = self._overlaps(vox[i], rots, nets)
            den = sp[i] + self.rot_sizes[rots]
            dice = np.divide(2.0 * inter, den, out=np.zeros_like(inter), where=den > 0)
            return (dice >= tol[i][None, :]).sum(0)

        cnt = np.zeros((m, n), dtype=np.int64)
        seen = np.zeros((m, n), dtype=np.int64)  # rotations each test has met
        active = np.ones((m, n), dtype=bool)
        done = 0
        stop = min(int(n_screen), P)
        while True:
            rots = slice(done, stop)
            if self.labels_t is None and active.all():  # overlapping networks: one product
                p32 = parts.astype(np.float32)
                for start in range(done, stop, 64):
                    idx = self.perms[start:min(start + 64, stop)]
                    c = idx.shape[0]
                    rot = self.masks32[:, idx].transpose(1, 0, 2).reshape(c * n, -1)
                    inter = (p32 @ rot.T).astype(np.float64).reshape(m, c, n)
                    den = sp[:, None, None] + self.rot_sizes[start:start + c][None]
                    dice = np.divide(2.0 * inter, den, out=np.zeros_like(inter), where=den > 0)
                    cnt += (dice >= tol[:, None, :]).sum(1)
            else:
                for i in np.flatnonzero(active.any(1)):
                    nets = np.flatnonzero(active[i])
                    add = exceed(i, rots, None if nets.size == n else nets)
                    cnt[i, nets] += add[nets]
            seen[active] = stop
            done = stop
            if done == P:
                break
            bound = (1.0 + cnt) / (1.0 + P)  # exact where a test is complete (none yet), else lower
            rej = _bh_reject(bound.ravel(), alpha).reshape(m, n)
            cut = alpha * rej.sum() / rej.size
            active &= bound <= cut
            if not active.any():
                break
            stop = min(done * int(growth), P)
        complete = seen == P
        return np.where(complete, cnt, cnt * (P / np.maximum(seen, 1))).astype(np.float64), complete


@dataclass
class CouplingBootstrap:
    """Intervals across subjects for a model's coupling counts (see :func:`bootstrap_couplings`).

    Attributes
    ----------
    per_network : pandas.DataFrame
        One row per (network, sign): ``observed`` atoms coupled (full sample), ``boot_mean``,
        ``ci_low``, ``ci_high`` over the resamples.
    per_model : pandas.DataFrame
        Rows ``networks_involved``, ``atoms_coupled``, ``couplings``; same columns.
    draws : dict of numpy.ndarray
        Per resample: ``per_network`` (n_boot, n_networks, 2) counts and the three model counts.
    observed_table : pandas.DataFrame
        The full-sample decisions (``atom, network, sign, dice, p, coupled``) of the same rule,
        to compare with the mapping stage's table.
    info : dict
        Settings and timings.
    """

    per_network: pd.DataFrame
    per_model: pd.DataFrame
    draws: dict
    observed_table: pd.DataFrame
    info: dict = field(default_factory=dict)

    def interval(self, measure: str) -> tuple[float, float, float]:
        """(observed, ci_low, ci_high) of a per-model measure."""
        row = self.per_model.loc[measure]
        return float(row.observed), float(row.ci_low), float(row.ci_high)


def _bh_reject(p: np.ndarray, alpha: float) -> np.ndarray:
    """Benjamini-Hochberg decisions for a flat array of p values: q <= alpha."""
    m = p.size
    order = np.argsort(p, kind="stable")
    q = p[order] * m / np.arange(1, m + 1)
    q = np.minimum.accumulate(q[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(q, 1.0)
    return out <= alpha


def resampled_group_t(betas: np.ndarray, picks: np.ndarray) -> np.ndarray:
    """One-sample t maps of subject resamples: ``picks`` (r, S) subject indices -> (r, k, V).

    Equal to ``fbn.group_t(betas[picks[i]])`` for every row (0 where the variance is 0),
    computed for all rows at once from multiplicity weights.
    """
    S, k, V = betas.shape
    X = np.asarray(betas, dtype=np.float64).reshape(S, k * V)
    W = np.zeros((picks.shape[0], S))
    np.add.at(W, (np.repeat(np.arange(picks.shape[0]), picks.shape[1]), picks.ravel()), 1.0)
    n = picks.shape[1]
    mean = W @ X / n
    var = (W @ (X * X) - n * mean * mean) / (n - 1)
    sd = np.sqrt(np.maximum(var, 0.0))
    # a variance that is rounding noise (the same subject picked n times) counts as zero
    live = sd > 1e-9 * np.maximum(np.abs(mean), np.finfo(float).tiny)
    t = np.divide(mean, sd / math.sqrt(n), out=np.zeros_like(mean), where=live)
    return t.reshape(-1, k, V)


def bootstrap_couplings(betas, atlas, *, threshold="top10%", n_perm: int = 5000, alpha: float = 0.05,
                        seed: int = 0, n_boot: int = 20, ci: float = 0.95, null: SpinNull | None = None,
                        n_screen: int = 200, growth: int = 5, group_maps=None) -> CouplingBootstrap:
    """Bootstrap intervals across subjects for the atoms coupled per network and the networks
    involved.

    Subjects are resampled with replacement ``n_boot`` times; for each resample the group
    one-sample t maps are recomputed from the per-subject coefficients (``beta.npy`` of the
    encoding stage), thresholded with the mapping stage's rule, overlapped with the networks
    (Dice) and tested as :func:`fbn.couple_atoms` does: spin p values against the stage's own
    rotations (same ``n_perm`` and ``seed``), BH-FDR over atoms x networks x signs, coupled
    when q <= alpha and Dice > 0.

    Cost design: a full spin null per resample costs about 4 s (64 atoms, 13 networks, 5,000
    rotations, 8,721 voxels, one core). Three savings keep it exact where it matters: the
    rotations and rotated network sizes are prepared once per atlas and reused for every
    model and resample (:class:`SpinNull`); the rotations are met in stages (``n_screen``, then
    ``growth`` times as many, ...) and a test stops as soon as the lower bound of its p is above
    the BH cut-off that the bounds of all tests allow (:meth:`SpinNull.counts`), so the
    decisions are exactly those of all rotations while only the couplings and the near misses
    meet all rotations (4-7% of the tests in the default run). A resample costs about
    0.6-0.8 s (8 subjects, 64 atoms, 13 networks), so
    the default is a modest ``n_boot`` of 20 per model, enough for a rough 95% interval; raise
    it when time allows.

    Parameters
    ----------
    betas : array (S, k, V)
        Per-subject maps of every atom on the atlas's mask voxels.
    atlas : fbn.NetworkAtlas
    threshold, n_perm, alpha, seed
        As the mapping stage (:func:`fbn.couple_atoms`).
    n_boot : int
        Subject resamples.
    ci : float
        Interval level (percentile intervals).
    null : SpinNull, optional
        Prepared rotations (reused across models on the same atlas); built when None.
    n_screen, growth : int
        The first stage's rotations and the growth of the stages (the counting's cost only;
        the decisions do not depend on them).
    group_maps : array (k, V), optional
        The full sample's group maps as the mapping stage read them (the encoding stage's
        ``group_t.npy``), so the full-sample decisions are the stage's to the last voxel;
        default ``fbn.group_t(betas)``.

    Returns
    -------
    CouplingBootstrap
    """
    import time

    from . import fbn

    if not isinstance(atlas, fbn.NetworkAtlas):
        raise ParameterError("atlas", f"{type(atlas).__name__} is not a NetworkAtlas",
                             expected="fbn.load_atlas(...)")
    B = np.asarray(betas)
    if B.ndim != 3 or B.shape[0] < 2:
        raise ParameterError("betas", f"shape {B.shape}", expected="(S >= 2 subjects, k atoms, V voxels)")
    if B.shape[2] != atlas.n_voxels:
        raise InputError("betas", f"{B.shape[2]} voxels per map", field="V",
                         expected=f"{atlas.n_voxels}, the voxels of the atlas's mask")
    if not np.all(np.isfinite(B)):
        raise InputError("betas", "non-finite value", expected="finite numbers")
    for name, v, low in (("n_boot", n_boot, 1), ("n_screen", n_screen, 1), ("growth", growth, 2)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
            raise ParameterError(name, f"{v!r}", expected=f"an integer >= {low}")
    for name, v in (("ci", ci), ("alpha", alpha)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < 1:
            raise ParameterError(name, f"{v!r}", expected="a number in (0, 1)")
    fbn.parse_threshold(threshold)
    t0 = time.perf_counter()
    if null is None:
        null = SpinNull(atlas, n_perm, seed)
    elif not isinstance(null, SpinNull) or null.atlas is not atlas or (null.n_perm, null.seed) != (n_perm, seed):
        raise ParameterError("null", "not a SpinNull of this atlas with this n_perm and seed",
                             expected=f"SpinNull(atlas, n_perm={n_perm}, seed={seed})")
    S, k, V = B.shape
    n = atlas.n_networks

    def test(t: np.ndarray):
        """(k, V) t maps -> dice, p, coupled (2k, n), and the share of tests counted in full."""
        pos, neg = fbn.threshold_maps(t, threshold)
        parts = np.concatenate([pos, neg])
        dice = fbn._dice(parts, null.masks, net_sizes=null.net_sizes)
        counts, complete = null.counts(parts, dice, alpha=alpha, n_screen=n_screen, growth=growth)
        p = (1.0 + counts) / (1.0 + n_perm)
        rej = _bh_reject(p.ravel(), alpha).reshape(p.shape)
        return dice, p, rej & (dice > 0), float(complete.mean())

    def counts_of(coupled: np.ndarray) -> dict[str, np.ndarray]:
        c = coupled.reshape(2, k, n)
        any_atom = c.any(0)  # (k, n)
        return {"per_network": c.sum(1).T, "networks_involved": int(any_atom.any(0).sum()),
                "atoms_coupled": int(any_atom.any(1).sum()), "couplings": int(c.sum())}

    if group_maps is None:
        full = fbn.group_t(B)
    else:
        full = np.asarray(group_maps, dtype=np.float64)
        if full.shape != (k, V):
            raise ParameterError("group_maps", f"shape {full.shape}", expected=f"({k}, {V}) as betas")
    d_full, p_full, c_full, full_share = test(full)
    obs = counts_of(c_full)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, S, size=(n_boot, S))
    draws: dict[str, list] = {key: [] for key in obs}
    shares = [full_share]
    for start in range(0, n_boot, 10):
        for t in resampled_group_t(B, picks[start:start + 10]):
            *_, c, share = test(t)
            shares.append(share)
            for key, val in counts_of(c).items():
                draws[key].append(val)
    draws = {key: np.asarray(v) for key, v in draws.items()}
    lo_q, hi_q = (1 - ci) / 2, 1 - (1 - ci) / 2

    def row(observed, x):
        lo, hi = np.quantile(x, [lo_q, hi_q])
        return {"observed": int(observed), "boot_mean": float(np.mean(x)), "ci_low": float(lo),
                "ci_high": float(hi)}

    per_net = pd.DataFrame([{"network": atlas.network_names[j], "sign": fbn.SIGNS[s],
                             **row(obs["per_network"][j, s], draws["per_network"][:, j, s])}
                            for j in range(n) for s in range(2)])
    per_model = pd.DataFrame({m: row(obs[m], draws[m]) for m in
                              ("networks_involved", "atoms_coupled", "couplings")}).T
    per_model.index.name = "measure"
    cols = fbn._rows(atlas, d_full, np.zeros((k, n)))
    table = pd.DataFrame({key: cols[key] for key in ("atom", "network", "sign", "dice")})
    table["p"] = p_full.reshape(2, k, n).transpose(1, 2, 0).ravel()
    table["coupled"] = c_full.reshape(2, k, n).transpose(1, 2, 0).ravel()
    info = {"n_boot": n_boot, "ci": ci, "n_perm": n_perm, "alpha": alpha, "seed": seed,
            "threshold": threshold, "n_screen": n_screen, "growth": growth,
            "share_counted_in_full": round(float(np.mean(shares)), 4), "seconds": round(time.perf_counter() - t0, 2),
            "n_subjects": S}
    return CouplingBootstrap(per_network=per_net, per_model=per_model, draws=draws,
                             observed_table=table, info=info)


# --------------------------------------------------------------------------- running the variants
def variants_spec(base: dict, variants: list[dict]):
    """The sweep spec of a comparison: the run's parameters as ``common``, every variant a named
    point, each run up to its coupling bootstrap (:func:`sweep.parse_spec` checks them)."""
    from . import sweep

    if not isinstance(base, dict):
        raise ParameterError("base", f"{type(base).__name__}", expected="the run's parameters (a dict)")
    # the run's own list of variants and the chapter's settings (sweep.NOT_SWEPT) are dropped
    # by parse_spec
    return sweep.parse_spec({"common": dict(base), "points": variants, "until": "coupling_bootstrap"},
                            source="cross-model variants")


def run_variants(base: dict, variants: list[dict], *, n_workers: int = 2, out=None,
                 client=None) -> tuple[pd.DataFrame, dict]:
    """Run every variant's stages, extraction to coupling bootstrap, as one Dask sweep.

    Parameters
    ----------
    base : dict
        The run's parameters; each variant overrides some of them.
    variants : list of dict
        ``{"name": ..., parameter: value, ...}`` (the sweep's named points).
    n_workers : int
        Worker processes of the local cluster, each single-threaded (results do not depend on
        it: every stage is seeded and single-threaded). Tasks shared by variants (the story,
        the fMRI data, one model's extraction) run once.
    out : path, optional
        The sweep table (default ``<runs_dir>/sweeps/cross_model.tsv``).
    client : distributed.Client, optional
        An existing cluster's client instead of a local cluster.

    Returns
    -------
    (pandas.DataFrame, dict)
        The sweep's table (one row per variant: status, per-stage artifact keys and seconds,
        summary metrics) and, per variant name, ``{"cfg", "artifacts": {stage: Artifact}}``
        opened from the store by the table's keys. A failed variant raises, naming it.
    """
    from . import config, sweep
    from .store import Store

    if isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 1:
        raise ParameterError("n_workers", f"{n_workers!r}", expected="an integer >= 1")
    spec = variants_spec(base, variants)
    runs_dir = Path(spec.sections["common"]["runs_dir"])
    table, _ = sweep.run_sweep(spec, client=client, workers=min(n_workers, len(variants)),
                               out=out or runs_dir / "sweeps" / "cross_model.tsv", progress=False)
    bad = table[~table.status.isin(["done", "cached"])]
    if len(bad):
        raise RuntimeError("; ".join(f"variant {r['name']!r} {r.status}: {r.error}" for _, r in bad.iterrows()))
    store = Store(runs_dir)
    runs = {}
    for (_, row), point in zip(table.iterrows(), spec.points()):
        arts = {}
        for stage in sweep.chain(spec.until):
            art = store.find(stage, row[f"{stage}_key"])
            if art is None:
                raise InputError(runs_dir / stage / row[f"{stage}_key"], "missing after the sweep",
                                 expected=f"the {stage} artifact of variant {row['name']!r}")
            arts[stage] = art
        runs[row["name"]] = {"cfg": config.validate(spec.stage_config(spec.until, point)),
                             "artifacts": arts}
    return table, runs
