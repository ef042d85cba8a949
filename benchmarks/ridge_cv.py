"""Benchmark of the ridge CV kernel: himalaya's ``RidgeCV`` (the reference,
``encoding.cv._ridge_fold(..., solver="himalaya")``) against the project's kernel
(``encoding.ridge.ridge_fold_svd``, what ``cv_scores`` uses on the CPU), single-threaded, at the
default run's size (8,700 voxels) and the real data set's (70,000 voxels at 3 mm).

Run: python benchmarks/ridge_cv.py [--quick]
Writes benchmarks/ridge_cv.json (``--quick``: a small case, not written) and prints a table.

Every measurement is repeated 3 times (methods interleaved in the same process) and the
minimum is reported. The machine's single-thread GEMM rate (2048^3 float32 / float64 numpy
matmul, best of 3, measured at the start and at the end, the larger kept) turns the counted
FLOPs into an arithmetic bound: bound ratio = time / (necessary FLOPs / float32 GEMM rate).
Also reported: fast_f32 against the bound of its own precision scheme (the k-space scoring
and the decompositions at the float64 rate, the rest at the float32 rate) and fast_f64
against necessary FLOPs / float64 GEMM rate. fast_f32_k32 is fast_f32 with the k-space
scoring in float32 too (kspace_dtype=np.float32: faster, but no error bound).

Necessary FLOPs of one outer fold (T train rows, Tt test rows, k regressors, V voxels,
n_a alphas; inner split j with n_j training and m_j test rows, r_j = min(n_j, k), r = min(T, k)):

  decompositions sum_j (4 n_j k^2 + 9 k^3) + (4 T k^2 + 9 k^3)
                 (Gram X^T X, X W, and the symmetric eigen-decomposition with vectors)
  U_j^T Y        sum_j 2 r_j n_j V          inner-training projections
  A_j^T Y_te     sum_j 2 r_j m_j V          cross terms (A_j = Xte_j W_j)
  alpha scoring  sum_j (2 r_j^2 + 2 n_a (2 r_j)) V
                 (quadratic form of all alphas through one K_j z product -- partial
                 fractions, see encoding/ridge.py -- then one (n_a x 2r) @ (2r x V) product)
  refit          2 r T V                    U0^T Y of the full-train SVD
  predictions    2 r Tt V                   (Xte W0) @ (shrunk U0^T Y)

Elementwise O(kV) work and reading Y (8 T V bytes) are not counted. For reference the FLOPs of
himalaya's own algorithm are also reported: per split 2 n_a m_j n_j V (predictions for every
alpha) + 3 n_a m_j V (residuals), refit 2 n_used k T V (weights of every used alpha for every
voxel), predictions 2 k Tt V, plus its thin SVDs (6 n k^2 + 20 k^3 each).
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_info, threadpool_limits  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from llmbrain_utils.encoding import _inner_splits, contiguous_folds  # noqa: E402
from llmbrain_utils.encoding.cv import DEFAULT_ALPHAS, _fold_design, _ridge_fold  # noqa: E402
from llmbrain_utils.encoding.ridge import ridge_fold_svd  # noqa: E402


def _himalaya(Xtr, Xte, Ytr, alphas, inner, dtype):
    return _ridge_fold(Xtr, Xte, Ytr, alphas, inner, dtype, solver="himalaya")

REPS = 3


def _fast_k32(Xtr, Xte, Ytr, alphas, inner, dtype):
    """ridge_fold_svd with the k-space scoring in float32 too (faster, no error bound)."""
    return ridge_fold_svd(Xtr, Xte, Ytr, alphas, inner, dtype, kspace_dtype=np.float32)


def gemm_rate(dtype, n=2048):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    best = np.inf
    for _ in range(REPS):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best


def ar1(rng, T, n, rho):
    e = rng.standard_normal((T, n))
    out = np.empty_like(e)
    out[0] = e[0]
    for t in range(1, T):
        out[t] = rho * out[t - 1] + np.sqrt(1 - rho * rho) * e[t]
    return out


def make_data(V, T=326, k=64, seed=0):
    """Smooth correlated regressors; Y = X W + AR(1) noise at mixed SNRs."""
    rng = np.random.default_rng(seed)
    X = ar1(rng, T, k, 0.7) + 0.5 * ar1(rng, T, 1, 0.9)
    X = (X - X.mean(0)) / X.std(0)
    S = X @ (rng.standard_normal((k, V)) * (rng.random(V) < 0.3))
    S /= S.std(0) + 1e-12
    Y = S * np.sqrt(rng.choice([0.0, 0.02, 0.1, 0.5, 2.0], V)) + ar1(rng, T, V, 0.4)
    return X, Y


def fold_flops(T, Tt, k, V, n_a, inner, n_used):
    r = min(T, k)
    dec = sum(4 * len(tr) * k * k + 9 * k ** 3 for tr, _ in inner) + 4 * T * k * k + 9 * k ** 3
    parts = dict(decomp=dec, proj=0, cross=0, scoring=0)
    # himalaya: thin SVDs (Golub-Van Loan R-SVD count)
    him = sum(6 * len(tr) * k * k + 20 * k ** 3 for tr, _ in inner) + 6 * T * k * k + 20 * k ** 3
    for tr, te in inner:
        n, m = len(tr), len(te)
        rj = min(n, k)
        parts["proj"] += 2 * rj * n * V
        parts["cross"] += 2 * rj * m * V
        parts["scoring"] += (2 * rj * rj + 2 * n_a * 2 * rj) * V
        him += 2 * n_a * m * n * V + 3 * n_a * m * V
    parts["refit"] = 2 * r * T * V
    parts["predict"] = 2 * r * Tt * V
    him += 2 * n_used * k * T * V + 2 * k * Tt * V
    return sum(parts.values()), parts, him


def run_case(name, X, Y, fold_ids, rate32, methods, record):
    """Time ``methods`` on the outer folds ``fold_ids`` of Y (all in one timed call)."""
    T = X.shape[0]
    folds = contiguous_folds(T, 5, 5)
    designs = []
    flops = hflops = 0
    for i in fold_ids:
        train, test = folds[i]
        Xtr, Xte = _fold_design(X, train, test, None, True)
        inner = _inner_splits(train, 3, 5)
        Ytr = np.ascontiguousarray(Y[train])
        designs.append((Xtr, Xte, Ytr, inner))
    times = {m: [] for m in methods}
    used = []
    for rep in range(REPS):
        for m in methods:                               # interleaved
            fn, dt = methods[m]
            t = time.perf_counter()
            outs = [fn(Xtr, Xte, Ytr, DEFAULT_ALPHAS, inner, dt)
                    for Xtr, Xte, Ytr, inner in designs]
            times[m].append(time.perf_counter() - t)
            if rep == 0 and m == "himalaya_f32":
                used = [len(np.unique(o[1])) for o in outs]
            del outs
    f64_part = 0
    for j, (Xtr, Xte, Ytr, inner) in enumerate(designs):
        f, parts, h = fold_flops(Xtr.shape[0], Xte.shape[0], Xtr.shape[1], Ytr.shape[1],
                                 len(DEFAULT_ALPHAS), inner, used[j] if used else 15)
        flops += f
        hflops += h
        f64_part += parts["scoring"] + parts["decomp"]   # done in float64 by fast_f32
    bound = flops / rate32
    res = dict(V=int(Y.shape[1]), folds=list(fold_ids), flops_necessary=flops,
               flops_float64_part_of_fast_f32=f64_part,
               flops_himalaya_algorithm=hflops, bound_s=bound,
               flops_parts_last_fold=parts, times_s={m: t for m, t in times.items()},
               best_s={m: min(t) for m, t in times.items()})
    res["speedup_vs_himalaya_f32"] = {m: min(times["himalaya_f32"]) / min(t)
                                      for m, t in times.items()}
    res["bound_ratio"] = {m: min(t) / bound for m, t in times.items()}
    record[name] = res
    return res


def main():
    quick = "--quick" in sys.argv
    warnings.filterwarnings("ignore", message=".*n_samples < n_features.*")
    with threadpool_limits(1):
        info = [dict(api=d.get("internal_api"), threads=d.get("num_threads"),
                     arch=d.get("architecture")) for d in threadpool_info()]
        r32, r64 = gemm_rate(np.float32), gemm_rate(np.float64)
        out = dict(machine=platform.processor() or platform.machine(), blas=info,
                   threads=1, reps=REPS, alphas=list(map(float, DEFAULT_ALPHAS)),
                   inner_folds=3, outer_folds=5, T=326, k=64, cases={})
        methods = {
            "himalaya_f32": (_himalaya, np.float32),
            "fast_f32": (ridge_fold_svd, np.float32),
            "fast_f64": (ridge_fold_svd, np.float64),
            "fast_f32_k32": (_fast_k32, np.float32),
        }
        Vs = (2000,) if quick else (8700, 70000)
        for V in Vs:
            X, Y = make_data(V)
            run_case(f"V={V} one fold", X, Y, [2], r32, methods, out["cases"])
            run_case(f"V={V} 5 outer folds", X, Y, range(5), r32,
                     {m: methods[m] for m in ("himalaya_f32", "fast_f32")}, out["cases"])
            del X, Y
        r32b, r64b = gemm_rate(np.float32), gemm_rate(np.float64)
        out["gemm_gflops_f32"] = max(r32, r32b) / 1e9
        out["gemm_gflops_f64"] = max(r64, r64b) / 1e9
        out["gemm_gflops_f32_start_end"] = [r32 / 1e9, r32b / 1e9]
        out["gemm_gflops_f64_start_end"] = [r64 / 1e9, r64b / 1e9]
        # bound ratios against the better of the two GEMM measurements
        r32, r64 = out["gemm_gflops_f32"] * 1e9, out["gemm_gflops_f64"] * 1e9
        for res in out["cases"].values():
            res["bound_s"] = res["flops_necessary"] / r32
            res["bound_ratio"] = {m: t / res["bound_s"] for m, t in res["best_s"].items()}
            # the bound of fast_f32's own precision scheme: k-space scoring and SVDs in float64
            f64p = res["flops_float64_part_of_fast_f32"]
            res["bound_mixed_s"] = (res["flops_necessary"] - f64p) / r32 + f64p / r64
            res["bound_ratio_mixed_fast_f32"] = res["best_s"]["fast_f32"] / res["bound_mixed_s"]
            if "fast_f64" in res["best_s"]:
                res["bound_f64_s"] = res["flops_necessary"] / r64
                res["bound_ratio_f64_fast_f64"] = res["best_s"]["fast_f64"] / res["bound_f64_s"]

    print(f"single-thread GEMM: float32 {out['gemm_gflops_f32']:.1f} GFLOP/s, "
          f"float64 {out['gemm_gflops_f64']:.1f} GFLOP/s (2048^3, best of {REPS}, start/end)")
    hdr = (f"{'case':24s} {'method':13s} {'best s':>8s} {'speed-up':>9s} {'GFLOP nec.':>10s} "
           f"{'bound s':>8s} {'bound ratio':>11s}")
    print(hdr)
    print("-" * len(hdr))
    for name, res in out["cases"].items():
        for m, t in res["best_s"].items():
            print(f"{name:24s} {m:13s} {t:8.3f} {res['speedup_vs_himalaya_f32'][m]:8.1f}x "
                  f"{res['flops_necessary'] / 1e9:10.2f} {res['bound_s']:8.3f} "
                  f"{res['bound_ratio'][m]:11.2f}")
        print(f"{'':24s} (himalaya's own algorithm: {res['flops_himalaya_algorithm'] / 1e9:.1f}"
              f" GFLOP = {res['flops_himalaya_algorithm'] / res['flops_necessary']:.1f}x "
              "the necessary)")
        extra = f"fast_f32 vs its mixed-precision bound ({res['bound_mixed_s']:.3f} s): " \
                f"{res['bound_ratio_mixed_fast_f32']:.2f}"
        if "bound_f64_s" in res:
            extra += f"; fast_f64 vs the float64 bound ({res['bound_f64_s']:.3f} s): " \
                     f"{res['bound_ratio_f64_fast_f64']:.2f}"
        print(f"{'':24s} ({extra})")
    if quick:
        return out
    path = os.path.join(HERE, "ridge_cv.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print("wrote", path)
    return out


if __name__ == "__main__":
    main()
