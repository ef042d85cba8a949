"""Benchmark of the voxel-wise encoding solvers (llmbrain_utils.encoding).

Times, in one run on the same synthetic data:

* the batched OLS solver (``fit_ols``: all voxels at once, chunked) on every subject;
* a per-voxel loop with statsmodels OLS and one with numpy ``lstsq`` (+ t statistics), timed
  on a subset of voxels (``--loop-voxels``) and extrapolated linearly to all voxels and
  subjects (the report says so);
* nilearn's GLM (``nilearn.glm.OLSModel``: fit and one t per regressor) on every subject;
* the permutation test (``permutation_pvalues``, in-sample R2, circular shifts and block
  permutations) and the cross-validated scores (``cv_scores``, ridge and OLS).

Usage::

    python benchmarks/encoding.py --voxels 8000 --subjects 2 --T 300 --k 64 --perms 1000
    python benchmarks/encoding.py ... --device cuda     # torch on the GPU where there is one

Prints a table of wall times and the loop/nilearn-to-batched ratios; ``--json PATH`` also
writes them, ``--print-json`` prints them as one JSON object; ``main()`` returns them.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmbrain_utils import encoding as E  # noqa: E402

log = logging.getLogger("benchmarks.encoding")


def _data(T: int, k: int, V: int, S: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Smooth unit-norm atoms and z-scored float32 BOLD with a planted share of voxels."""
    from scipy.ndimage import gaussian_filter1d
    rng = np.random.default_rng(seed)
    X = gaussian_filter1d(rng.standard_normal((T, k)), 2.0, axis=0)
    X /= np.linalg.norm(X, axis=0)
    Y = np.empty((S, T, V), dtype=np.float32)
    for s in range(S):
        W = rng.standard_normal((k, V)) * (rng.random((k, V)) < 0.05)
        W[:, V // 2:] = 0.0  # half the voxels carry no signal
        noise = gaussian_filter1d(rng.standard_normal((T, V)), 1.5, axis=0)
        y = X @ W * 10 + noise
        Y[s] = (y - y.mean(0)) / y.std(0)
    return X, Y


def _timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


def _loop_statsmodels(X, Y):
    import statsmodels.api as sm
    Xd = sm.add_constant(X)
    t = np.empty((X.shape[1], Y.shape[1]))
    for v in range(Y.shape[1]):
        res = sm.OLS(Y[:, v].astype(np.float64), Xd).fit()
        t[:, v] = res.tvalues[1:]
        _ = res.pvalues, res.rsquared
    return t


def _loop_lstsq(X, Y):
    Xd = np.column_stack([np.ones(len(X)), X])
    dof = Xd.shape[0] - Xd.shape[1]
    diag = np.diag(np.linalg.inv(Xd.T @ Xd))
    t = np.empty((X.shape[1], Y.shape[1]))
    for v in range(Y.shape[1]):
        y = Y[:, v].astype(np.float64)
        b, rss, *_ = np.linalg.lstsq(Xd, y, rcond=None)
        t[:, v] = (b / np.sqrt(rss[0] / dof * diag))[1:]
    return t


def _nilearn(X, Y):
    from nilearn.glm import OLSModel
    Xd = np.column_stack([np.ones(len(X)), X])
    out = []
    for y in Y:
        res = OLSModel(Xd).fit(y.astype(np.float64))
        out.append(np.stack([res.t(column=j + 1) for j in range(X.shape[1])]))
    return np.stack(out)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--voxels", type=int, default=8000)
    ap.add_argument("--subjects", type=int, default=1)
    ap.add_argument("--T", type=int, default=300)
    ap.add_argument("--k", type=int, default=64)
    ap.add_argument("--perms", type=int, default=1000)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--loop-voxels", type=int, default=300,
                    help="voxels timed in the per-voxel loops (then extrapolated)")
    ap.add_argument("--skip-cv", action="store_true", help="skip the cross-validation timings")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    ap.add_argument("--print-json", action="store_true",
                    help="also print the results as one JSON object (main() returns it)")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    X, Y = _data(a.T, a.k, a.voxels, a.subjects, a.seed)
    S, V = a.subjects, a.voxels
    n_loop = min(a.loop_voxels, V)
    total = S * V
    rows: dict[str, dict] = {}

    E.fit_ols(X, Y[0][:, :10], device=a.device)  # warm-up (imports, GPU context)
    t_batched, ols = _timed(E.fit_ols, X, Y, device=a.device)
    rows["batched OLS (fit_ols)"] = dict(seconds=t_batched, note=f"{S} x {V} voxels, {a.device}")

    t_sm, t_ref = _timed(_loop_statsmodels, X, Y[0][:, :n_loop])
    rows["per-voxel statsmodels OLS"] = dict(
        seconds=t_sm * total / n_loop, note=f"timed on {n_loop} voxels ({t_sm:.2f} s), "
        f"extrapolated x{total / n_loop:.0f}")
    t_ls, t_ls_ref = _timed(_loop_lstsq, X, Y[0][:, :n_loop])
    rows["per-voxel numpy lstsq"] = dict(
        seconds=t_ls * total / n_loop, note=f"timed on {n_loop} voxels ({t_ls:.2f} s), "
        f"extrapolated x{total / n_loop:.0f}")
    t_nl, t_nl_ref = _timed(_nilearn, X, Y)
    rows["nilearn OLSModel (+ t per atom)"] = dict(seconds=t_nl, note=f"{S} x {V} voxels")

    ols_t = ols.t  # (S, k, V): Y is a stack
    agreement = dict(
        max_abs_t_diff_vs_statsmodels=float(np.abs(ols_t[0][:, :n_loop] - t_ref).max()),
        max_abs_t_diff_vs_nilearn=float(np.abs(ols_t - t_nl_ref).max()),
        max_abs_t_diff_vs_lstsq=float(np.abs(ols_t[0][:, :n_loop] - t_ls_ref).max()))

    for method in ("circular", "block"):
        t_p, p = _timed(E.permutation_pvalues, X, Y, n_perm=a.perms, method=method,
                        device=a.device)
        n_used = min(a.perms, a.T - 2 * int(np.ceil(0.1 * a.T)) + 1) if method == "circular" \
            else a.perms
        rows[f"permutations, in-sample R2, {method}"] = dict(
            seconds=t_p, note=f"{n_used} permutations x {S} x {V} voxels, float32")
    if not a.skip_cv:
        t_cv, cv = _timed(E.cv_scores, X, Y, model="ridge", device=a.device)
        rows["cv_scores ridge (himalaya RidgeCV)"] = dict(
            seconds=t_cv, note=f"5 folds x 3 inner x 15 alphas, {S} x {V} voxels, float32 solver")
        t_cv64, cv64 = _timed(E.cv_scores, X, Y, model="ridge", device=a.device, solver_dtype="float64")
        rows["cv_scores ridge, float64 solver"] = dict(
            seconds=t_cv64, note=f"the same, float64 ({t_cv64 / t_cv:.2f}x the float32 time)")
        agreement["max_abs_cv_r_diff_float32_vs_float64"] = float(np.nanmax(np.abs(cv.r - cv64.r)))
        agreement["share_voxels_other_alpha_float32_vs_float64"] = float(
            np.mean(cv.best_alphas != cv64.best_alphas))
        t_cvo, _ = _timed(E.cv_scores, X, Y, model="ols", device=a.device)
        rows["cv_scores OLS"] = dict(seconds=t_cvo, note=f"5 folds, {S} x {V} voxels")

    print(f"\nencoding benchmark: T={a.T}, k={a.k}, voxels={V}, subjects={S}, "
          f"device={a.device}, {platform.processor() or platform.machine()}")
    print(f"{'solver':42s} {'seconds':>10s} {'x batched':>10s}  note")
    for name, row in rows.items():
        ratio = row["seconds"] / t_batched
        row["ratio_to_batched"] = ratio
        print(f"{name:42s} {row['seconds']:10.3f} {ratio:10.1f}  {row['note']}")
    print("agreement of t with the batched solver: "
          + ", ".join(f"{k_} {v:.2e}" for k_, v in agreement.items()))
    result = dict(params=vars(a) | {"json": str(a.json) if a.json else None},
                  timings=rows, agreement=agreement)
    if a.json:
        a.json.write_text(json.dumps(result, indent=2))
    if a.print_json:
        print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
