"""Stage 7: models side by side: couplings per network, consistency, diversity, layers, scores.

Every measure takes the artifacts of one model's run (dictionary, encoding, FBN table); the
cross-model notebook gathers them into one table per measure.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


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
        "cv_r_isc_mask": mean, "cv_r_ci_low": lo, "cv_r_ci_high": hi,
    }
