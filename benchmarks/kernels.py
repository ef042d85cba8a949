"""Benchmark of the project's other heavy kernels against their necessary work, single-threaded,
at the default run's size (T = 326 TRs, k = 64 regressors, V = 8,700 voxels, S = 8 subjects)
and the real data set's (V = 70,000 voxels at 3 mm), on random data (AR(1) BOLD with a shared
component, smooth random regressors). Modelled on ``benchmarks/ridge_cv.py``.

Run: python benchmarks/kernels.py [--quick] [--sizes default|real|both] [--out PATH]
Writes benchmarks/kernels.json (``--quick``: tiny sizes, not written unless ``--out`` is given)
and prints a table. A run of one size replaces that size's block in an existing JSON and keeps
the other; every size block carries the machine rates measured in its own run.

Every measurement is repeated 3 times (the kernels interleaved in the same process) and the
minimum is reported. The machine's single-thread GEMM rate (2048^3 float32 / float64 numpy
matmul, best of 3, measured at the start and at the end of each size's run, the larger kept)
turns counted FLOPs into an arithmetic bound; the read bandwidth (``x.sum()`` over a float32
array of the size of the S x T x V data, best of 3, start and end, the larger kept; a numpy copy
is reported too) turns necessary bytes into a memory bound. bound ratio = time / bound.

Kernels whose cost is linear in the draws (permutations, surrogates) are timed with fewer draws
where a full measurement would take too long (the real size): the time of all draws is then
the measured time x bound(all draws) / bound(timed draws), i.e. the per-draw cost extrapolated
linearly at the measured ratio to the bound; every such entry says ``extrapolated: true`` with
``n_draws_timed`` and ``n_draws``. Work independent of V (QR / SVD of the regressors, the
surrogate designs, the T x T surrogate operators) is not counted. ``L = log2 T``, ``F = T // 2 +
1``; an FFT of a real series of length T is counted 2.5 T L FLOPs (half the usual 5 N log2 N of
a complex one; T = 326 = 2 x 163 is slower than that in practice).

1. ``encoding.permutation_pvalues(X, Y, P, method="phase", statistic="r2_insample",
   dtype=float32)`` on one subject (Y: T x V float32, as the stage reads it). The in-sample R2
   of a surrogate is |Q_s' y|^2 / |y_c|^2 with Q_s = R_s Q an orthonormal basis of the
   surrogate's centred regressors, so the necessary work is
     products     (P + 1) 2 k T V     Q_s' Y_c for every surrogate and the observed
     statistics   (P + 1) 2 k V + P V squared norms, comparisons with the observed
     centring     4 T V               mean, centring and |y_c|^2 once
   (a Fourier-domain form, Re(Qf_s^H Yf), costs the same 2 k T V per draw). Bound: the
   float32 GEMM rate.
2. ``encoding.group_test.ridge_null_r(X, Y, alphas, null="phase", n_perm=P)`` on the subjects'
   average BOLD (S = 1, z-scored, float64 as group_cv_test passes it; products in float32).
   Fold f has n_f training and m_f test rows. GEMM form (the kernel's own algorithm, a surrogate
   R Y formed through the composite k x T and m_f x T operators U' R_train and centred R_test):
     surrogate projections   P sum_f 2 k T V          U_f' R_train Y
     surrogate test rows     P sum_f 2 m_f T V        centred R_test Y
     observed                sum_f (2 k n_f + 2 m_f) V
     predictions             (P + 1) sum_f 2 m_f k V  (X_test W) (shrunk U' Y)
     scoring                 (P + 1) sum_f (7 m_f + k) V  shrinkage, three sums of products,
                                                           the prediction's sum
   A tighter (FFT) form: rfft of Y once (2.5 T L V); per surrogate the rotation (6 F V) and one
   irfft (2.5 T L V) give R Y, then per fold U' (R Y)_train (2 k n_f V), the centring of the test
   rows (2 m_f V), predictions and scoring as above. ``bound_ratio`` uses the GEMM form (as the
   kernel is designed); ``bound_ratio_fft`` the FFT form (both at the float32 GEMM rate, which
   an FFT does not reach).
3. ``fmri.isc_loo(data)`` (S x T x V float32): bytes-bound: the data read once, 4 S T V bytes
   (a voxel-blocked two-pass algorithm re-reads from cache); FLOPs 9 S T V (mean 1, variance 3,
   z-score 2, the sum over subjects 1, z_s . tot 2). bound = max(bytes / read bandwidth, FLOPs /
   float32 GEMM rate); ``bound_kind`` says which.
4. ``fmri.isc_null(data, P, method="circular")``: every subject pair's circular
   cross-correlation once by FFT, then each surrogate's LOO ISC read from it. Necessary:
     observed        9 S T V              as isc_loo (its first step)
     rfft            S 2.5 T L V          every subject's z-scored series
     cross spectra   n_pairs 6 F V        conj(Z_i) Z_j, n_pairs = S (S - 1) / 2
     irfft           n_pairs 2.5 T L V    the cross-correlations C_ij
     surrogates      P (2 n_pairs + 9 S + 1) V  d_s = n_s + sum of its pairs' C at the lag
                                          difference, |tot|^2, LOO r, mean, comparison
   and the data read once (4 S T V bytes); bound = max(bytes / read bandwidth, FLOPs / float32
   GEMM rate). ``bytes_gathers``: P n_pairs V 4, what the gathers read if C does not stay in
   cache (the kernel keeps one subject's pairs of a block of voxels, ~2 MB, in cache: 110
   voxels for S = 8, 19 for S = 40).
5. ``encoding.fit_ols(X, Y, pvalues=False)`` (one subject, computations in float64 as fit_ols
   does them; as ``encode_subjects`` calls it), with p = k + 1 columns (the intercept):
     projections     2 p T V      Q' Y
     triangular      p^2 V        R^-1 (Q' Y)
     residual sums   3 T V + 2 p V  |y|^2, the mean; rss = |y|^2 - |Q'y|^2, tss = |y|^2 - T m^2
     t values        3 k V
   Bound: the float64 GEMM rate. The p and z values (special functions of k V t values) are not
   FLOPs and the pipeline does not compute them; their time (``encoding.ols._t_to_p_z``) is
   measured separately and reported (``bound_ratio_with_p_z``). fit_ols forms the residuals
   explicitly (a second 2 p T V product, ``X B``: the rss exact where the fit is near perfect,
   where ``|y|^2 - |Q'y|^2`` cancels), so its time is at least twice the bound's projections.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_info, threadpool_limits  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from llmbrain_utils.encoding import contiguous_folds, fit_ols, permutation_pvalues  # noqa: E402
from llmbrain_utils.encoding.group_test import ridge_null_r  # noqa: E402
from llmbrain_utils.encoding.ols import _t_to_p_z  # noqa: E402
from llmbrain_utils.fmri import isc_loo, isc_null  # noqa: E402

REPS = 3
OUT = os.path.join(HERE, "kernels.json")
SCHEMA = 1
KERNELS = ("permutation_pvalues", "ridge_null_r", "isc_loo", "isc_null", "fit_ols")

#: sizes: dimensions, the draws of the default run (n_*) and the draws timed (timed_*)
SIZES = {
    "default": dict(T=326, k=64, V=8700, S=8, n_perm=1000, n_group=100, n_isc=1000,
                    timed_perm=1000, timed_group=100, timed_isc=1000, gemm_n=2048),
    "real": dict(T=326, k=64, V=70000, S=8, n_perm=1000, n_group=100, n_isc=1000,
                 timed_perm=50, timed_group=20, timed_isc=1000, gemm_n=2048),
    "quick": dict(T=40, k=5, V=300, S=3, n_perm=20, n_group=10, n_isc=20,
                  timed_perm=10, timed_group=10, timed_isc=20, gemm_n=256),
}


# ------------------------------------------------------------------------------------------
# necessary work (pure functions of the sizes; tests/test_kernels_benchmark.py checks them)
# ------------------------------------------------------------------------------------------

def _fft_flops(T: int) -> float:
    """FLOPs counted for one real FFT of length T: 2.5 T log2 T."""
    return 2.5 * T * math.log2(T)


def work_permutation(T: int, k: int, V: int, P: int) -> dict:
    parts = {"products": (P + 1) * 2 * k * T * V,
             "statistics": (P + 1) * 2 * k * V + P * V,
             "centring": 4 * T * V}
    return {"flops": sum(parts.values()), "parts": parts}


def work_ridge_null(T: int, k: int, V: int, P: int, folds: list) -> dict:
    """``folds``: (n_train, n_test) per fold. GEMM form and FFT form (see the docstring)."""
    F = T // 2 + 1
    n_tr = [n for n, _ in folds]
    n_te = [m for _, m in folds]
    common = {"predictions": (P + 1) * sum(2 * m * k * V for m in n_te),
              "scoring": (P + 1) * sum((7 * m + k) * V for m in n_te)}
    gemm = {"surrogate_projections": P * len(folds) * 2 * k * T * V,
            "surrogate_test_rows": P * sum(2 * m * T * V for m in n_te),
            "observed": sum((2 * k * n + 2 * m) * V for n, m in folds), **common}
    fft = {"rfft_Y": _fft_flops(T) * V,
           "surrogates_R_Y": P * (6 * F + _fft_flops(T)) * V,
           "projections": (P + 1) * sum(2 * k * n * V for n in n_tr),
           "test_centring": (P + 1) * sum(2 * m * V for m in n_te), **common}
    return {"flops": sum(gemm.values()), "parts": gemm,
            "flops_fft": sum(fft.values()), "parts_fft": fft}


def work_isc_loo(S: int, T: int, V: int, itemsize: int = 4) -> dict:
    return {"flops": 9 * S * T * V, "bytes": itemsize * S * T * V, "parts": {"elementwise": 9 * S * T * V}}


def work_isc_null(S: int, T: int, V: int, P: int, itemsize: int = 4) -> dict:
    pairs = S * (S - 1) // 2
    F = T // 2 + 1
    parts = {"observed": 9 * S * T * V,
             "rfft": S * _fft_flops(T) * V,
             "cross_spectra": pairs * 6 * F * V,
             "irfft": pairs * _fft_flops(T) * V,
             "surrogates": P * (2 * pairs + 9 * S + 1) * V}
    return {"flops": sum(parts.values()), "bytes": itemsize * S * T * V, "parts": parts,
            "bytes_gathers": P * pairs * V * 4}


def work_ols(T: int, k: int, V: int) -> dict:
    p = k + 1
    parts = {"projections": 2 * p * T * V, "triangular": p * p * V,
             "residual_sums": 3 * T * V + 2 * p * V, "t_values": 3 * k * V}
    return {"flops": sum(parts.values()), "parts": parts}


# ------------------------------------------------------------------------------------------
# machine rates
# ------------------------------------------------------------------------------------------

def gemm_rate(dtype, n: int = 2048) -> float:
    """Single-thread GEMM rate (FLOP/s): the ridge benchmark's measurement (best of its REPS)."""
    sys.path.insert(0, HERE)
    from ridge_cv import gemm_rate as ridge_gemm_rate

    return ridge_gemm_rate(dtype, n)


def bandwidth(x: np.ndarray) -> tuple[float, float]:
    """(read, copy) bandwidth in bytes/s over ``x``: ``x.sum()`` (bytes read) and a numpy copy
    (bytes read + written), best of REPS each."""
    dst = np.empty_like(x)
    best_r = best_c = np.inf
    for _ in range(REPS):
        t = time.perf_counter()
        x.sum()
        best_r = min(best_r, time.perf_counter() - t)
        t = time.perf_counter()
        np.copyto(dst, x)
        best_c = min(best_c, time.perf_counter() - t)
    return x.nbytes / best_r, 2 * x.nbytes / best_c


# ------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------

def ar1(rng, T: int, n: int, rho: float, dtype=np.float64) -> np.ndarray:
    e = rng.standard_normal((T, n)).astype(dtype, copy=False)
    c = np.sqrt(1 - rho * rho)
    for t in range(1, T):
        e[t] = rho * e[t - 1] + c * e[t]
    return e


def make_data(T: int, k: int, V: int, S: int, seed: int = 0):
    """Smooth random regressors (T x k, standardised) and S x T x V float32 BOLD: a shared AR(1)
    component (the stimulus-driven part) plus each subject's AR(1) noise."""
    rng = np.random.default_rng(seed)
    X = ar1(rng, T, k, 0.7) + 0.5 * ar1(rng, T, 1, 0.9)
    X = (X - X.mean(0)) / X.std(0)
    shared = ar1(rng, T, V, 0.5, np.float32)
    data = np.empty((S, T, V), dtype=np.float32)
    for s in range(S):
        data[s] = ar1(rng, T, V, 0.4, np.float32)
        data[s] += 0.5 * shared
    del shared
    return X, data


# ------------------------------------------------------------------------------------------
# the run
# ------------------------------------------------------------------------------------------

def _bound(work: dict, r32: float, r64: float, bw: float, kind: str) -> tuple[float, str]:
    """Bound seconds and which limit gives it."""
    if kind == "flops_f64":
        return work["flops"] / r64, "flops_f64"
    if "bytes" in work:
        tb, tf = work["bytes"] / bw, work["flops"] / r32
        return (tb, "bytes_read") if tb >= tf else (tf, "flops_f32")
    return work["flops"] / r32, "flops_f32"


def run_size(name: str, cfg: dict, reps: int = REPS, log=print) -> dict:
    """Measure every kernel at one size; returns the size's block of the JSON."""
    T, k, V, S = cfg["T"], cfg["k"], cfg["V"], cfg["S"]
    load0 = os.getloadavg()
    r32, r64 = gemm_rate(np.float32, cfg["gemm_n"]), gemm_rate(np.float64, cfg["gemm_n"])
    X, data = make_data(T, k, V, S)
    bw_r0, bw_c0 = bandwidth(data)
    Y = data[0]                                          # one subject, T x V float32
    avg = data.mean(0, dtype=np.float64)                 # the subjects' average, as group_cv_test
    avg = (avg - avg.mean(0)) / avg.std(0)
    folds = contiguous_folds(T, 5, 5)
    rng = np.random.default_rng(1)
    alphas = 10.0 ** rng.uniform(-1, 4, size=(len(folds), V))   # fixed per-voxel penalties
    fold_sizes = [[int(tr.size), int(te.size)] for tr, te in folds]

    P, G, I = cfg["timed_perm"], cfg["timed_group"], cfg["timed_isc"]
    calls = {
        "permutation_pvalues": lambda: permutation_pvalues(
            X, Y, n_perm=P, method="phase", statistic="r2_insample", dtype=np.float32),
        "ridge_null_r": lambda: ridge_null_r(X, avg, alphas, null="phase", n_perm=G, folds=folds),
        "isc_loo": lambda: isc_loo(data),
        "isc_null": lambda: isc_null(data, n_perm=I, method="circular"),
        "fit_ols": lambda: fit_ols(X, Y, pvalues=False),   # as encode_subjects calls it
    }
    times = {m: [] for m in calls}
    times_pz = []
    for rep in range(reps):
        for m, fn in calls.items():                      # interleaved
            t = time.perf_counter()
            res = fn()
            times[m].append(time.perf_counter() - t)
            if m == "fit_ols":
                t = time.perf_counter()
                _t_to_p_z(res.t, res.dof)
                times_pz.append(time.perf_counter() - t)
            del res
        log(f"  {name}: repeat {rep + 1}/{reps}: "
            + ", ".join(f"{m} {times[m][-1]:.2f} s" for m in calls))

    bw_r1, bw_c1 = bandwidth(data)
    r32b, r64b = gemm_rate(np.float32, cfg["gemm_n"]), gemm_rate(np.float64, cfg["gemm_n"])
    load1 = os.getloadavg()
    r32m, r64m, bw = max(r32, r32b), max(r64, r64b), max(bw_r0, bw_r1)

    spec = {
        "permutation_pvalues": dict(
            call="permutation_pvalues(X, Y, n_perm, method='phase', statistic='r2_insample', "
                 "dtype=float32), one subject (Y: T x V float32)",
            n=cfg["n_perm"], timed=P, work=lambda p: work_permutation(T, k, V, p), kind="flops_f32"),
        "ridge_null_r": dict(
            call="group_test.ridge_null_r(X, avg, alphas, null='phase', n_perm), the subjects' "
                 "average BOLD (S = 1, float64 z-scored; products float32), 5 folds, trim 5",
            n=cfg["n_group"], timed=G, work=lambda p: work_ridge_null(T, k, V, p, fold_sizes),
            kind="flops_f32"),
        "isc_loo": dict(call="fmri.isc_loo(data), data S x T x V float32", n=None, timed=None,
                        work=lambda p: work_isc_loo(S, T, V), kind="max"),
        "isc_null": dict(call="fmri.isc_null(data, n_perm, method='circular'), S x T x V float32",
                         n=cfg["n_isc"], timed=I, work=lambda p: work_isc_null(S, T, V, p),
                         kind="max"),
        "fit_ols": dict(call="encoding.fit_ols(X, Y, pvalues=False), one subject (Y float32; "
                             "float64 inside), as encode_subjects calls it",
                        n=None, timed=None, work=lambda p: work_ols(T, k, V), kind="flops_f64"),
    }
    kernels = {}
    for m, sp in spec.items():
        w_t, w_n = sp["work"](sp["timed"]), sp["work"](sp["n"])
        b_t, kind = _bound(w_t, r32m, r64m, bw, sp["kind"])
        b_n, kind_n = _bound(w_n, r32m, r64m, bw, sp["kind"])
        best = min(times[m])
        extrap = sp["n"] is not None and sp["timed"] != sp["n"]
        t_full = best * b_n / b_t if extrap else best
        e = {"call": sp["call"], "n_draws": sp["n"], "n_draws_timed": sp["timed"],
             "extrapolated": extrap, "times_s": times[m], "best_s": best, "time_s": t_full,
             "flops_necessary_timed": w_t["flops"], "flops_necessary": w_n["flops"],
             "flops_parts": w_n["parts"], "bound_kind": kind_n, "bound_s": b_n,
             "bound_ratio": t_full / b_n, "gflops_achieved": w_n["flops"] / t_full / 1e9}
        if "bytes" in w_n:
            e["bytes_necessary"] = w_n["bytes"]
            e["bound_bytes_s"] = w_n["bytes"] / bw
            e["bound_flops_s"] = w_n["flops"] / r32m
        if m == "ridge_null_r":
            e["flops_necessary_fft"] = w_n["flops_fft"]
            e["flops_parts_fft"] = w_n["parts_fft"]
            e["bound_fft_s"] = w_n["flops_fft"] / r32m
            e["bound_ratio_fft"] = t_full / e["bound_fft_s"]
            e["bound_used"] = "bound_ratio: the GEMM form; bound_ratio_fft: the FFT form"
        if m == "isc_null":
            e["bytes_gathers"] = w_n["bytes_gathers"]
            e["bound_gathers_from_memory_s"] = w_n["bytes_gathers"] / bw
        if m == "fit_ols":
            e["times_t_to_p_z_s"] = times_pz
            e["time_t_to_p_z_s"] = min(times_pz)
            e["bound_ratio_with_p_z"] = (best + min(times_pz)) / b_n
        kernels[m] = e
    return {"created": time.strftime("%Y-%m-%d %H:%M:%S"), "T": T, "k": k, "V": V, "S": S,
            "folds": fold_sizes, "reps": reps,
            "gemm_n": cfg["gemm_n"],
            "gemm_gflops_f32": r32m / 1e9, "gemm_gflops_f64": r64m / 1e9,
            "gemm_gflops_f32_start_end": [r32 / 1e9, r32b / 1e9],
            "gemm_gflops_f64_start_end": [r64 / 1e9, r64b / 1e9],
            "read_gbs": bw / 1e9, "read_gbs_start_end": [bw_r0 / 1e9, bw_r1 / 1e9],
            "copy_gbs": max(bw_c0, bw_c1) / 1e9, "copy_gbs_start_end": [bw_c0 / 1e9, bw_c1 / 1e9],
            "bandwidth_array": f"the S x T x V float32 data, {data.nbytes / 2 ** 20:.0f} MiB",
            "load_average_start": list(load0), "load_average_end": list(load1),
            "kernels": kernels}


def _fmt_work(e: dict) -> str:
    s = f"{e['flops_necessary'] / 1e9:.3g} GFLOP"
    if "bytes_necessary" in e:
        s += f", {e['bytes_necessary'] / 1e6:.3g} MB"
    return s


def print_table(out: dict) -> None:
    for size, blk in out["sizes"].items():
        print(f"\n{size}: T={blk['T']} k={blk['k']} V={blk['V']:,} S={blk['S']}; single-thread GEMM "
              f"float32 {blk['gemm_gflops_f32']:.1f}, float64 {blk['gemm_gflops_f64']:.1f} GFLOP/s; "
              f"read {blk['read_gbs']:.1f} GB/s, copy {blk['copy_gbs']:.1f} GB/s; load "
              f"{blk['load_average_start'][0]:.1f} -> {blk['load_average_end'][0]:.1f}")
        hdr = (f"{'kernel':20s} {'draws':>11s} {'best s':>8s} {'time s':>8s} {'necessary':>22s} "
               f"{'bound s':>8s} {'bound':>10s} {'ratio':>7s}")
        print(hdr)
        print("-" * len(hdr))
        for m, e in blk["kernels"].items():
            dr = "" if e["n_draws"] is None else (
                f"{e['n_draws_timed']}/{e['n_draws']}" if e["extrapolated"] else f"{e['n_draws']}")
            print(f"{m:20s} {dr:>11s} {e['best_s']:8.3f} {e['time_s']:8.3f} {_fmt_work(e):>22s} "
                  f"{e['bound_s']:8.3f} {e['bound_kind']:>10s} {e['bound_ratio']:7.2f}")
            if "bound_ratio_fft" in e:
                print(f"{'':20s} (FFT form: {e['flops_necessary_fft'] / 1e9:.3g} GFLOP, bound "
                      f"{e['bound_fft_s']:.3f} s, ratio {e['bound_ratio_fft']:.2f})")
            if "time_t_to_p_z_s" in e:
                print(f"{'':20s} (p and z apart: {e['time_t_to_p_z_s']:.3f} s; ratio with them "
                      f"{e['bound_ratio_with_p_z']:.2f})")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes; the JSON is not written")
    ap.add_argument("--sizes", choices=("default", "real", "both"), default="default")
    ap.add_argument("--out", default=None,
                    help=f"JSON to write (default {OUT}; with --quick only when given)")
    a = ap.parse_args(argv)
    names = ["quick"] if a.quick else (["default", "real"] if a.sizes == "both" else [a.sizes])
    with threadpool_limits(1):
        info = [dict(api=d.get("internal_api"), threads=d.get("num_threads"),
                     arch=d.get("architecture")) for d in threadpool_info()]
        sizes = {}
        for n in names:
            print(f"size {n}: {SIZES[n]}", flush=True)
            sizes[n] = run_size(n, SIZES[n], log=lambda s: print(s, flush=True))
    out = {"schema": SCHEMA, "script": "benchmarks/kernels.py",
           "machine": platform.processor() or platform.machine(), "cpu_model": _cpu_model(),
           "numpy": np.__version__, "blas": info, "threads": 1, "reps": REPS,
           "extrapolation": "entries with extrapolated = true timed n_draws_timed of n_draws "
                            "draws; time_s = best_s x bound(n_draws) / bound(n_draws_timed): the "
                            "per-draw cost extrapolated linearly (at the measured bound ratio)",
           "method": {m: _method(m) for m in KERNELS}, "sizes": sizes}
    path = a.out if a.out is not None else (None if a.quick else OUT)
    if path is not None and os.path.exists(path) and not a.quick:
        try:
            old = json.loads(open(path).read())
            if old.get("schema") == SCHEMA:
                merged = dict(old.get("sizes", {}))
                merged.update(sizes)
                out["sizes"] = {n: merged[n] for n in ("default", "real") if n in merged}
        except (OSError, ValueError):
            pass
    print_table(out)
    if path is not None:
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(out, f, indent=1)
        os.replace(tmp, path)
        print("wrote", path)
    return out


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _method(m: str) -> str:
    """One line per kernel: what is counted (the module docstring has the details)."""
    return {
        "permutation_pvalues": "necessary FLOPs: (P+1) 2kTV products Q_s' Y + (P+1) 2kV + PV "
                               "statistics + 4TV centring; bound at the float32 GEMM rate",
        "ridge_null_r": "GEMM form per surrogate and fold 2kTV + 2 m_f T V, observed sum_f (2k n_f "
                        "+ 2 m_f) V, predictions (P+1) sum_f 2 m_f k V, scoring (P+1) sum_f "
                        "(7 m_f + k) V; FFT form: R Y by rfft/irfft (2.5 T log2 T V per surrogate "
                        "+ 6FV) then sum_f 2k n_f V; bound_ratio uses the GEMM form, both at the "
                        "float32 GEMM rate",
        "isc_loo": "data read once (4STV bytes) at the read bandwidth (x.sum() over the same "
                   "array) vs 9STV FLOPs at the float32 GEMM rate; the larger is the bound",
        "isc_null": "observed 9STV + S rfft + pairs 6FV cross spectra + pairs irfft (2.5 T log2 T "
                    "V each) + P (2 pairs + 9S + 1) V per surrogate, at the float32 GEMM rate, vs "
                    "the data read once (4STV bytes); the larger is the bound",
        "fit_ols": "2pTV Q'Y + p^2 V triangular + 3TV + 2pV residual sums + 3kV t (p = k+1), at "
                   "the float64 GEMM rate (fit_ols computes in float64); timed as the pipeline "
                   "calls it (pvalues=False); p and z (_t_to_p_z of its t) timed apart",
    }[m]


if __name__ == "__main__":
    main()
