"""Parity of the project's ridge kernel (``encoding.ridge.ridge_fold_svd``, what
``cv_scores`` uses on the CPU) with its reference, himalaya's ``RidgeCV`` (per-voxel alpha,
inner CV; ``encoding.cv._ridge_fold(..., solver="himalaya")``), in float32 and float64.

``pytest -s`` prints the parity numbers; PARITY_JSON=path also writes them as JSON.

Criteria
--------
* float64: the same alpha in every voxel, predictions within 1e-9 x the prediction SD
  + 1e-12 x |training mean|.
* float32: alphas identical except near-ties. At every voxel where they differ, the two
  alphas' exact (float64, brute-force) mean inner-CV scores differ by less than 1e-5 x the
  voxel's mean inner-test MSE (float32 rounding of himalaya's SSE is ~1e-7..1e-5 relative to
  it, measured), and ridge_fold_svd's alpha is the exact float64 argmax there.
  Predictions (voxels with equal alphas): max |diff| <= 1e-4 x prediction SD
  + 2e-5 x |training mean|: himalaya's float32 intercept ``Y_offset - X_offset @ W`` (a float32
  mean over T_train rows) is rounded at up to ~T_train x eps32 / 2 x |mean|, which dominates
  when a large alpha leaves a tiny prediction SD; and himalaya's own float32 predictions are
  ~1-2e-4 x prediction SD away from the exact (float64) ones even for zero-mean data.
  ridge_fold_svd(float32) against the float64 solution: max |diff| / prediction SD < 1e-4.

Measured (see parity.json): realistic data, 2 seeds x 5 outer folds x 7,500 voxels: float64
0 alphas differ, predictions <= 4e-13 x SD; float32 2 of 75,000 alphas differ (exact score
gaps 6e-8 and 1.4e-7 of the MSE; ridge_fold_svd's is the exact argmax at both, himalaya's at
neither); predictions ours vs himalaya <= 1.9e-4 x SD (2.4e-5 after removing each voxel's
mean), ours vs exact <= 5e-6 x SD, himalaya vs exact <= 1.9e-4 x SD.
"""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest

from llmbrain_utils.encoding import _inner_splits, contiguous_folds, cv_scores
from llmbrain_utils.encoding.cv import DEFAULT_ALPHAS, _fold_design, _ridge_fold
from llmbrain_utils.encoding.ridge import ridge_fold_svd

REPORT: dict = {}


def _him(Xtr, Xte, Ytr, alphas, inner, dtype):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*n_samples < n_features.*")
        return _ridge_fold(Xtr, Xte, Ytr, alphas, inner, dtype, solver="himalaya")


def exact_cv_scores(Xtr, Ytr, alphas, inner):
    """Brute-force float64 himalaya scores: mean over inner splits of -SSE/n_test
    (n_alpha x V), fit_intercept=True, direct ridge predictions for every alpha."""
    Xc, Yc = Xtr - Xtr.mean(0), Ytr - Ytr.mean(0)
    out = np.zeros((len(alphas), Ytr.shape[1]))
    for tr, te in inner:
        m, ym = Xc[tr].mean(0), Yc[tr].mean(0)
        Xa, Xb, ya, yb = Xc[tr] - m, Xc[te] - m, Yc[tr] - ym, Yc[te] - ym
        U, s, Vt = np.linalg.svd(Xa, full_matrices=False)
        Ub, Bb = Xb @ Vt.T, U.T @ ya
        for i, a in enumerate(alphas):
            pred = Ub @ (Bb * (s / (s * s + a))[:, None])
            out[i] -= ((yb - pred) ** 2).sum(0) / len(te)
    return out / len(inner)


# ---------------------------------------------------------------------------- data
def ar1(rng, T, n, rho):
    e = rng.standard_normal((T, n))
    out = np.empty_like(e)
    out[0] = e[0]
    for t in range(1, T):
        out[t] = rho * out[t - 1] + np.sqrt(1 - rho * rho) * e[t]
    return out


def realistic(seed, T=326, k=64, n_per_snr=1500, snrs=(0.0, 0.02, 0.1, 0.5, 2.0)):
    """Smooth, correlated regressors (AR(1) 0.7 + a shared component), Y = X W + AR(1)(0.4)
    noise, with signal/noise variance ratios ``snrs`` (n_per_snr voxels each)."""
    rng = np.random.default_rng(seed)
    X = ar1(rng, T, k, 0.7) + 0.5 * ar1(rng, T, 1, 0.9)
    X = (X - X.mean(0)) / X.std(0)
    Ys = []
    for snr in snrs:
        W = rng.standard_normal((k, n_per_snr)) * (rng.random(n_per_snr) < 0.3)  # sparse
        S = X @ W
        S /= S.std(0) + 1e-12
        Ys.append(np.sqrt(snr) * S + ar1(rng, T, n_per_snr, 0.4))
    return X, np.concatenate(Ys, 1)


# ---------------------------------------------------------------------------- checks
def compare(name, Xtr, Xte, Ytr, inner, alphas=DEFAULT_ALPHAS):
    """Run both methods in both precisions; assert the criteria; return the numbers."""
    res = {}
    p64h, a64h = _him(Xtr, Xte, Ytr, alphas, inner, np.float64)
    p64, a64 = ridge_fold_svd(Xtr, Xte, Ytr, alphas, inner, np.float64)
    sd = p64.std(0)
    mean_abs = np.abs(Ytr.mean(0))
    # reported ratios use the prediction SD, floored for (near-)constant predictions
    sd_safe = np.maximum(sd, 1e-6 * (mean_abs + Ytr.std(0)) + 1e-300)
    res["f64_alpha_differ"] = int((a64 != a64h).sum())
    same = a64 == a64h
    res["f64_max_pred_diff_over_sd"] = float((np.abs(p64 - p64h)[:, same].max(0)
                                              / sd_safe[same]).max()) if same.any() else 0.0
    tol64 = 1e-9 * sd + 1e-12 * mean_abs + 1e-300
    res["f64_max_pred_diff_over_tol"] = float((np.abs(p64 - p64h).max(0) / tol64)[same].max())

    p32h, a32h = _him(Xtr, Xte, Ytr, alphas, inner, np.float32)
    p32, a32 = ridge_fold_svd(Xtr, Xte, Ytr, alphas, inner, np.float32)
    differ = np.flatnonzero(a32 != a32h)
    res["V"] = int(Ytr.shape[1])
    res["f32_alpha_differ"] = int(differ.size)
    if differ.size:
        sc = exact_cv_scores(Xtr, Ytr[:, differ], alphas, inner)
        grid = np.asarray(alphas)
        io = np.searchsorted(grid, a32[differ])
        ih = np.searchsorted(grid, a32h[differ])
        cols = np.arange(differ.size)
        gap = np.abs(sc[io, cols] - sc[ih, cols]) / np.abs(sc.max(0))
        res["f32_differ_max_rel_score_gap"] = float(gap.max())
        res["f32_differ_rel_score_gaps"] = [float(g) for g in np.sort(gap)[::-1][:10]]
        # ours is the exact float64 argmax wherever the exact gap is resolvable
        exact_best = sc.argmax(0)
        ours_exact = (io == exact_best) | (np.abs(sc[io, cols] - sc.max(0))
                                           <= 1e-12 * np.abs(sc.max(0)))
        res["f32_differ_ours_is_exact_argmax"] = int(ours_exact.sum())
        res["f32_differ_himalaya_is_exact_argmax"] = int((ih == exact_best).sum())
        assert gap.max() < 1e-5, (name, gap.max())
        assert ours_exact.all(), name
    same = a32 == a32h
    diff = np.abs(p32 - p32h)
    res["f32_max_pred_diff_over_sd"] = float((diff[:, same].max(0) / sd_safe[same]).max())
    res["f32_max_pred_diff_over_sd_centred"] = float(
        (np.abs((p32 - p32.mean(0)) - (p32h - p32h.mean(0)))[:, same].max(0)
         / sd_safe[same]).max())
    tol = 1e-4 * sd + 2e-5 * mean_abs + 1e-300
    res["f32_max_pred_diff_over_tol"] = float((diff.max(0) / np.where(tol > 0, tol, 1))[same]
                                              .max())
    res["f32_ours_vs_f64_max_pred_diff_over_sd"] = float(
        (np.abs(p32 - p64).max(0) / sd_safe)[a32 == a64].max())
    res["f32_himalaya_vs_f64_max_pred_diff_over_sd"] = float(
        (np.abs(p32h - p64).max(0) / sd_safe)[a32h == a64].max())
    REPORT[name] = res
    print(f"\n{name}: {json.dumps(res)}")

    assert res["f64_alpha_differ"] == 0, name
    assert res["f64_max_pred_diff_over_tol"] <= 1.0, name
    assert res["f32_max_pred_diff_over_tol"] <= 1.0, name
    assert res["f32_ours_vs_f64_max_pred_diff_over_sd"] < 1e-4, name
    return res


@pytest.mark.parametrize("seed", [0, 1])
def test_realistic_all_outer_folds(seed):
    T = 326
    X, Y = realistic(seed, T)
    for i, (train, test) in enumerate(contiguous_folds(T, 5, 5)):
        Xtr, Xte = _fold_design(X, train, test, None, True)
        inner = _inner_splits(train, 3, 5)
        compare(f"realistic seed={seed} fold={i}", Xtr, Xte, Y[train], inner)


def test_random_white():
    rng = np.random.default_rng(5)
    T, k, V = 200, 64, 3000
    X = rng.standard_normal((T, k))
    Y = X @ (rng.standard_normal((k, V)) * rng.random(V) * 0.3) / 8 + rng.standard_normal((T, V))
    Y += rng.standard_normal(V) * 3  # voxel means
    train, test = contiguous_folds(T, 5, 5)[2]
    Xtr, Xte = _fold_design(X, train, test, None, True)
    compare("random white T=200", Xtr, Xte, Y[train], _inner_splits(train, 3, 5))


def test_random_rank_deficient_and_shuffled_inner():
    """k > inner-training size (rank-deficient inner designs), non-contiguous inner splits,
    a grid not containing 1, V not a multiple of the chunk size."""
    rng = np.random.default_rng(6)
    T, k, V = 90, 64, 1037
    X = rng.standard_normal((T, k))
    Y = X @ rng.standard_normal((k, V)) * 0.05 + rng.standard_normal((T, V))
    perm = rng.permutation(T)
    inner = [(np.sort(np.setdiff1d(perm, perm[i::3])), np.sort(perm[i::3])) for i in range(3)]
    alphas = np.logspace(-1.7, 4.3, 11)
    compare("rank-deficient, shuffled inner", X, rng.standard_normal((7, k)), Y, inner, alphas)


def test_collinear_design():
    """Near-collinear regressors (condition number ~1e3): many close singular-value pairs
    use the explicit-product path."""
    rng = np.random.default_rng(7)
    T, k, V = 326, 64, 2000
    X = rng.standard_normal((T, 8)) @ rng.standard_normal((8, k)) + 0.05 * rng.standard_normal(
        (T, k))
    Y = X @ rng.standard_normal((k, V)) * 0.02 + ar1(rng, T, V, 0.4)
    train, test = contiguous_folds(T, 5, 5)[0]
    Xtr, Xte = _fold_design(X, train, test, None, True)
    compare("collinear", Xtr, Xte, Y[train], _inner_splits(train, 3, 5))


def test_smooth_design():
    """Gaussian-smoothed regressors (ill-conditioned before z-scoring), mixed SNRs."""
    rng = np.random.default_rng(11)
    T, k, V = 326, 64, 4000
    Xr = rng.standard_normal((T + 20, k))
    ker = np.exp(-0.5 * (np.arange(-10, 11) / 3) ** 2)
    X = np.stack([np.convolve(Xr[:, i], ker, "valid") for i in range(k)], 1)[:T]
    S = X @ (rng.standard_normal((k, V)) * (rng.random(V) < 0.5))
    S /= S.std(0) + 1e-12
    Y = S * np.sqrt(rng.choice([0, 0.02, 0.1, 0.5], V)) + ar1(rng, T, V, 0.4)
    train, test = contiguous_folds(T, 5, 5)[2]
    Xtr, Xte = _fold_design(X, train, test, None, True)
    compare("smooth", Xtr, Xte, Y[train], _inner_splits(train, 3, 5))


def test_orthogonal_design_equal_singular_values():
    """All singular values equal (every pair is 'close'): the exact-product path only."""
    rng = np.random.default_rng(8)
    T, k, V = 128, 16, 500
    H = np.linalg.qr(rng.standard_normal((T, k)))[0] * np.sqrt(T)
    Y = H @ rng.standard_normal((k, V)) * 0.1 + rng.standard_normal((T, V))
    inner = [(np.r_[0:40, 86:128], np.arange(43, 86)), (np.arange(43, 128), np.arange(0, 40)),
             (np.arange(0, 80), np.arange(85, 128))]
    compare("orthogonal", H, rng.standard_normal((5, k)), Y, inner)


def test_special_voxels():
    """Zero, constant, tiny-scale, large-mean voxels; chunk boundaries."""
    rng = np.random.default_rng(9)
    T, k = 326, 64
    X, Y = realistic(3, T, k, n_per_snr=40, snrs=(0.0, 1.0))
    Y[:, 0] = 0.0
    Y[:, 1] = 3.7
    Y[:, 2] = 1e-20 * rng.standard_normal(T)
    Y[:, 3] = 1000.0 + rng.standard_normal(T)
    train, test = contiguous_folds(T, 5, 5)[1]
    Xtr, Xte = _fold_design(X, train, test, None, True)
    inner = _inner_splits(train, 3, 5)
    res = compare("special voxels", Xtr, Xte, Y[train], inner)
    assert res["f32_alpha_differ"] == 0
    for dt in (np.float32, np.float64):
        p, a = ridge_fold_svd(Xtr, Xte, Y[train], DEFAULT_ALPHAS, inner, dt, chunk_voxels=7)
        p2, a2 = ridge_fold_svd(Xtr, Xte, Y[train], DEFAULT_ALPHAS, inner, dt)
        assert np.array_equal(a, a2)
        np.testing.assert_allclose(p, p2, rtol=1e-5, atol=1e-6 * np.abs(p2).max())
        assert a[0] == a[1] == DEFAULT_ALPHAS[-1]  # exact ties: the largest alpha
        assert np.all(p[:, 0] == 0) and np.allclose(p[:, 1], 3.7, rtol=0, atol=1e-12)


def test_kspace_float32_option():
    """kspace_dtype=float32 (faster, no error bound): nearly the same alphas."""
    T = 326
    X, Y = realistic(2, T, n_per_snr=1000)
    train, test = contiguous_folds(T, 5, 5)[3]
    Xtr, Xte = _fold_design(X, train, test, None, True)
    inner = _inner_splits(train, 3, 5)
    p64, a64 = ridge_fold_svd(Xtr, Xte, Y[train], DEFAULT_ALPHAS, inner)
    p32, a32 = ridge_fold_svd(Xtr, Xte, Y[train], DEFAULT_ALPHAS, inner,
                              kspace_dtype=np.float32)
    REPORT["kspace float32 vs float64"] = dict(V=int(Y.shape[1]),
                                               alpha_differ=int((a32 != a64).sum()))
    assert (a32 != a64).mean() < 1e-3
    same = a32 == a64
    assert np.array_equal(p32[:, same], p64[:, same])  # only the alpha choice is affected


def test_nonfinite_raises():
    X, Y = realistic(4, 120, 8, n_per_snr=5, snrs=(1.0,))
    train, test = contiguous_folds(120, 5, 5)[0]
    inner = _inner_splits(train, 3, 5)
    Y[train[3], 2] = np.nan
    with pytest.raises(ValueError):
        ridge_fold_svd(X[train], X[test], Y[train], DEFAULT_ALPHAS, inner)
    with pytest.raises(ValueError):
        _him(X[train], X[test], Y[train], DEFAULT_ALPHAS, inner, np.float32)


def teardown_module(module):
    path = os.environ.get("PARITY_JSON")
    if path and REPORT:
        with open(path, "w") as f:
            json.dump(REPORT, f, indent=1)


def test_cv_scores_uses_the_kernel_on_the_cpu_and_keeps_himalaya_as_reference():
    """cv_scores' scores with the kernel and with himalaya: the same alphas but near-ties,
    held-out r equal to float32 rounding."""
    X, Y = realistic(2, 326, n_per_snr=300)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*n_samples < n_features.*")
        ours = cv_scores(X, Y)
        ref = cv_scores(X, Y, ridge_solver="himalaya")
    same = ours.best_alphas == ref.best_alphas
    assert same.mean() > 0.999
    assert np.abs(ours.r - ref.r).max() < 1e-3
    assert np.abs(ours.r - ref.r)[same.all(0)].max() < 1e-4
    with pytest.raises(Exception, match="ridge_solver"):
        cv_scores(X, Y, ridge_solver="fast")
