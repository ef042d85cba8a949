"""Tests of llmbrain_utils.encoding: parity with reference libraries, recovery, nulls, inputs."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.ndimage import gaussian_filter1d

from llmbrain_utils import encoding as E
from llmbrain_utils.errors import InputError, ParameterError


def _atoms(T: int, k: int, rng: np.random.Generator, sigma: float = 2.0) -> np.ndarray:
    """Smooth, unit-norm regressors like an HRF-convolved dictionary."""
    X = gaussian_filter1d(rng.standard_normal((T, k)), sigma, axis=0)
    return X / np.linalg.norm(X, axis=0)


def _zscore(Y: np.ndarray) -> np.ndarray:
    return (Y - Y.mean(0)) / Y.std(0)


def _smooth_noise(shape, rng, sigma=1.5):
    return gaussian_filter1d(rng.standard_normal(shape), sigma, axis=0)


@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(0)
    T, k, V = 120, 6, 40
    X = _atoms(T, k, rng)
    W = rng.standard_normal((k, V)) * (rng.random((k, V)) < 0.5) * 3
    Y = _zscore(X @ W + rng.standard_normal((T, V)))
    return X, Y


# ------------------------------------------------------------------ OLS


def test_fit_ols_matches_statsmodels(small):
    sm = pytest.importorskip("statsmodels.api")
    X, Y = small
    res = E.fit_ols(X, Y)
    assert res.beta.shape == (X.shape[1], Y.shape[1]) and res.dof == X.shape[0] - X.shape[1] - 1
    for v in (0, 7, 19, 33):
        ref = sm.OLS(Y[:, v], sm.add_constant(X)).fit()
        np.testing.assert_allclose(res.beta[:, v], ref.params[1:], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(res.intercept[v], ref.params[0], atol=1e-6)
        np.testing.assert_allclose(res.t[:, v], ref.tvalues[1:], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(res.p[:, v], ref.pvalues[1:], rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(res.r2[v], ref.rsquared, atol=1e-8)
        # z has the same two-sided tail probability as t
        np.testing.assert_allclose(res.z[:, v], np.sign(ref.tvalues[1:])
                                   * stats.norm.isf(ref.pvalues[1:] / 2), rtol=1e-6, atol=1e-6)
    # without intercept: uncentred R2, like statsmodels
    res0 = E.fit_ols(X, Y, intercept=False)
    ref0 = sm.OLS(Y[:, 3], X).fit()
    np.testing.assert_allclose(res0.t[:, 3], ref0.tvalues, rtol=1e-6)
    np.testing.assert_allclose(res0.r2[3], ref0.rsquared, atol=1e-8)
    assert res0.intercept is None and res0.dof == X.shape[0] - X.shape[1]


def test_fit_ols_matches_nilearn_olsmodel(small):
    from nilearn.glm import OLSModel
    X, Y = small
    res = E.fit_ols(X, Y)
    ref = OLSModel(np.column_stack([np.ones(len(X)), X])).fit(Y)
    np.testing.assert_allclose(res.beta, ref.theta[1:], atol=1e-8)
    for j in range(X.shape[1]):
        np.testing.assert_allclose(res.t[j], ref.t(column=j + 1), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(res.r2, ref.r_square, atol=1e-8)


def test_fit_ols_chunks_stack_device_and_extremes(small):
    X, Y = small
    full = E.fit_ols(X, Y)
    chunked = E.fit_ols(X, Y, chunk_voxels=7)
    np.testing.assert_allclose(full.t, chunked.t, rtol=1e-12, atol=1e-12)
    stack = E.fit_ols(X, np.stack([Y, Y[::-1].copy()]))
    assert stack.beta.shape == (2,) + full.beta.shape and stack.r2.shape == (2, Y.shape[1])
    np.testing.assert_allclose(stack.beta[0], full.beta, atol=1e-12)
    np.testing.assert_allclose(stack.t[1], E.fit_ols(X, Y[::-1].copy()).t, atol=1e-10)
    # GPU path (or its CPU fallback here) gives the same numbers
    np.testing.assert_allclose(E.fit_ols(X, Y, device="cuda").t, full.t, rtol=1e-6, atol=1e-8)
    # near-perfect fit: p underflows to 0 but z stays finite and large
    y = X @ np.arange(1.0, X.shape[1] + 1) + 1e-9 * np.random.default_rng(1).standard_normal(len(X))
    ext = E.fit_ols(X, y[:, None])
    assert np.all(np.isfinite(ext.z)) and np.all(ext.z > 30)
    # a constant voxel gets NaN R2, not an error
    const = E.fit_ols(X, np.column_stack([Y[:, 0], np.zeros(len(X))]))
    assert np.isfinite(const.r2[0]) and np.isnan(const.r2[1])
    # float32 memory-mapped-like input is accepted
    np.testing.assert_allclose(E.fit_ols(X, Y.astype(np.float32)).beta, full.beta, atol=1e-5)


def test_fit_ols_cpu_block_is_the_generic_block_bit_for_bit():
    """The CPU path (temporaries in one reused buffer) does _ols_block's operations in the same
    order: the same numbers bit for bit, for blocks of any width through the same buffer."""
    from llmbrain_utils.encoding import ols
    from llmbrain_utils.encoding._common import _design
    rng = np.random.default_rng(3)
    T, k = 90, 5
    X = _atoms(T, k, rng)
    for intercept in (True, False):
        Xd = np.ascontiguousarray(_design(X, intercept))
        Q, R = np.linalg.qr(Xd)
        Q = np.ascontiguousarray(Q)
        Rinv = np.ascontiguousarray(np.linalg.inv(R))
        diag = (Rinv ** 2).sum(1)
        dof = T - Xd.shape[1]
        work = np.empty((2, T * 64))
        for w in (64, 1, 7, 33):                          # one buffer, narrower blocks after
            y = rng.standard_normal((T, w)).astype(np.float32) + 0.3
            ref = ols._ols_block(Xd, Rinv, Q, diag, np.ascontiguousarray(y, dtype=np.float64),
                                 intercept, dof)
            got = ols._ols_block_cpu(Xd, Rinv, Q, diag, y, intercept, dof, work)
            for a, b in zip(ref, got):
                assert np.array_equal(a, b), (intercept, w)


def test_fit_lasso_matches_sklearn(small):
    from sklearn.linear_model import Lasso
    X, Y = small
    T = X.shape[0]
    Xs = X * np.sqrt(T)  # unit-variance scale, so that lam is comparable across voxels
    lam = 15.0
    res = E.fit_lasso(Xs, Y, lam)
    assert res.beta.shape == (X.shape[1], Y.shape[1])
    assert 0 < np.mean(res.beta == 0) < 1  # sparse, not empty
    for v in (0, 5, 21):
        ref = Lasso(alpha=lam / T, tol=1e-12, max_iter=100_000).fit(Xs, Y[:, v])
        np.testing.assert_allclose(res.beta[:, v], ref.coef_, atol=1e-6)
        np.testing.assert_allclose(res.intercept[v], ref.intercept_, atol=1e-6)
    ols = E.fit_ols(Xs, Y)
    assert np.all(res.r2 <= ols.r2 + 1e-12)
    lam_max = np.abs((Xs - Xs.mean(0)).T @ (Y - Y.mean(0))).max()
    assert np.all(E.fit_lasso(Xs, Y, lam_max * 1.01).beta == 0)
    stacked = E.fit_lasso(Xs, np.stack([Y, Y]), lam, chunk_voxels=9)
    np.testing.assert_allclose(stacked.beta[1], res.beta, atol=1e-10)


# ------------------------------------------------------------------ folds


def test_contiguous_folds_are_contiguous_and_trimmed():
    T, n_folds, trim = 103, 5, 4
    folds = E.contiguous_folds(T, n_folds, trim)
    assert len(folds) == n_folds
    np.testing.assert_array_equal(np.concatenate([te for _, te in folds]), np.arange(T))
    sizes = [te.size for _, te in folds]
    assert max(sizes) - min(sizes) <= 1
    for train, test in folds:
        assert np.all(np.diff(test) == 1)  # contiguous, in order
        gap = np.arange(max(0, test[0] - trim), min(T, test[-1] + trim + 1))
        np.testing.assert_array_equal(np.sort(np.concatenate([train, gap])), np.arange(T))
        assert np.abs(train[:, None] - test[None, :]).min() == trim + 1
    no_trim = E.contiguous_folds(T, n_folds, 0)
    assert all(tr.size + te.size == T for tr, te in no_trim)
    # inner folds of a training set: contiguous in position, trimmed in time
    train = folds[2][0]
    for itr, ite in E._inner_splits(train, 3, trim):
        assert np.all(np.diff(ite) == 1)
        assert np.abs(train[itr][:, None] - train[ite][None, :]).min() > trim
        assert np.intersect1d(itr, ite).size == 0


@pytest.mark.parametrize("args, name", [
    ((10, 11, 0), "n_folds"), ((10, 1, 0), "n_folds"), ((10, 2, 10), "trim"),
    ((10, 2, -1), "trim"), ((10, 2.5, 0), "n_folds")])
def test_contiguous_folds_bad_parameters(args, name):
    with pytest.raises(ParameterError, match=name):
        E.contiguous_folds(*args)


@pytest.mark.parametrize("T, n_splits, trim", [(103, 5, 4), (30, 3, 0), (326, 5, 5), (12, 2, 1),
                                               (7, 7, 0)])
def test_contiguous_kfold_splits_like_contiguous_folds(T, n_splits, trim):
    from sklearn.model_selection import BaseCrossValidator
    cv = E.ContiguousKFold(n_splits=n_splits, trim=trim)
    assert isinstance(cv, BaseCrossValidator)
    assert cv.get_n_splits() == cv.get_n_splits(np.zeros((T, 2))) == n_splits
    assert repr(cv) == f"ContiguousKFold(n_splits={n_splits}, trim={trim})"
    ref = E.contiguous_folds(T, n_splits, trim)
    for X in (np.zeros((T, 3)), [[0.0]] * T):  # an array (its shape) or a list (its length)
        got = list(cv.split(X))
        assert len(got) == len(ref)
        for (tr, te), (rtr, rte) in zip(got, ref):
            assert tr.dtype == rtr.dtype == np.intp
            np.testing.assert_array_equal(tr, rtr)
            np.testing.assert_array_equal(te, rte)


def test_contiguous_kfold_bad_parameters():
    with pytest.raises(ParameterError, match="n_splits"):
        E.ContiguousKFold(n_splits=1)
    with pytest.raises(ParameterError, match="n_splits"):
        E.ContiguousKFold(n_splits=2.5)
    with pytest.raises(ParameterError, match="trim"):
        E.ContiguousKFold(trim=-1)
    with pytest.raises(ParameterError, match="n_splits.*4 samples"):
        list(E.ContiguousKFold(n_splits=5, trim=0).split(np.zeros((4, 1))))
    with pytest.raises(ParameterError, match="trim"):
        list(E.ContiguousKFold(n_splits=2, trim=10).split(np.zeros((10, 1))))


def test_contiguous_kfold_in_cross_val_score(small):
    from sklearn.linear_model import Ridge
    from sklearn.metrics import r2_score
    from sklearn.model_selection import cross_val_score
    X, Y = small
    y = Y[:, 3]
    scores = cross_val_score(Ridge(alpha=1.0), X, y, cv=E.ContiguousKFold(4, trim=3),
                             scoring="r2")
    ref = [r2_score(y[te], Ridge(alpha=1.0).fit(X[tr], y[tr]).predict(X[te]))
           for tr, te in E.contiguous_folds(X.shape[0], 4, 3)]
    np.testing.assert_array_equal(scores, ref)


def test_contiguous_kfold_in_himalaya_ridgecv(small):
    from himalaya.ridge import RidgeCV
    X, Y = small
    T, trim = X.shape[0], 3
    Xf, Yf = X.astype(np.float32), Y.astype(np.float32)
    with E.cv._himalaya_backend("cpu"):
        est = RidgeCV(alphas=E.DEFAULT_ALPHAS, cv=E.ContiguousKFold(3, trim)).fit(Xf, Yf)
        ref = RidgeCV(alphas=E.DEFAULT_ALPHAS, cv=E.contiguous_folds(T, 3, trim)).fit(Xf, Yf)
        np.testing.assert_array_equal(est.best_alphas_, ref.best_alphas_)
        np.testing.assert_array_equal(est.predict(Xf), ref.predict(Xf))
    # cv_scores keeps its own inner folds: over an outer fold's training TRs they equal
    # ContiguousKFold over the positions when those TRs are contiguous (first and last fold),
    # but not when an inner block ends at the jump over the outer test block
    def same(train, n_inner, t):
        inner = E._inner_splits(train, n_inner, t)
        ckf = list(E.ContiguousKFold(n_inner, t).split(train))
        return all(np.array_equal(a, c) and np.array_equal(b, d)
                   for (a, b), (c, d) in zip(inner, ckf))
    folds = E.contiguous_folds(30, 3, 1)
    assert same(folds[0][0], 2, 1) and same(folds[2][0], 2, 1)
    assert not same(folds[1][0], 2, 1)  # TRs 0-8 | 21-29: inner block 0-8 ends at the jump


# ------------------------------------------------------------------ cross-validation


def _reference_ridge_cv(X, Y, folds, alphas, n_inner, trim):
    """Per-voxel scikit-learn reference of cv_scores(model='ridge')."""
    from sklearn.linear_model import Ridge
    pred = np.zeros_like(Y)
    chosen = np.zeros((len(folds), Y.shape[1]))
    for f, (train, test) in enumerate(folds):
        mu, sd = X[train].mean(0), X[train].std(0)
        Xtr, Xte = (X[train] - mu) / sd, (X[test] - mu) / sd
        inner = []
        for pos in np.array_split(np.arange(train.size), n_inner):
            t0, t1 = train[pos[0]] - trim, train[pos[-1]] + trim
            inner.append((np.flatnonzero((train < t0) | (train > t1)), pos))
        for v in range(Y.shape[1]):
            y = Y[train, v]
            mse = [np.mean([np.mean((Ridge(alpha=a).fit(Xtr[i], y[i]).predict(Xtr[o]) - y[o]) ** 2)
                            for i, o in inner]) for a in alphas]
            a = alphas[int(np.argmin(mse))]
            chosen[f, v] = a
            pred[test, v] = Ridge(alpha=a).fit(Xtr, y).predict(Xte)
    return pred, chosen


def test_cv_ridge_matches_sklearn_reference():
    rng = np.random.default_rng(3)
    T, k, V = 150, 5, 6
    X = _atoms(T, k, rng)
    W = rng.standard_normal((k, V)) * np.array([4, 2, 1, 0.5, 0, 0])
    Y = _zscore(X @ W + _smooth_noise((T, V), rng))
    alphas = np.logspace(-1, 4, 7)
    trim, n_inner = 3, 3
    res = E.cv_scores(X, Y, n_folds=4, trim=trim, alphas=alphas, inner_folds=n_inner,
                      scoring="concatenated", return_predictions=True)
    ref, chosen = _reference_ridge_cv(X, Y, res.folds, alphas, n_inner, trim)
    np.testing.assert_allclose(res.best_alphas, chosen, rtol=1e-10)
    np.testing.assert_allclose(res.predictions, ref, atol=2e-5)  # the solver runs in float32
    # in float64 the solver is scikit-learn's to rounding (predictions are stored in float32)
    r64 = E.cv_scores(X, Y, n_folds=4, trim=trim, alphas=alphas, inner_folds=n_inner,
                      scoring="concatenated", return_predictions=True, solver_dtype="float64")
    np.testing.assert_allclose(r64.best_alphas, chosen, rtol=1e-10)
    np.testing.assert_allclose(r64.predictions, ref, atol=1e-6)
    with pytest.raises(ParameterError, match="solver_dtype"):
        E.cv_scores(X, Y, solver_dtype="float16")
    # the scores are exactly those of the predictions: concatenated, centred within each block
    pred = res.predictions.astype(np.float64)
    P, Yc = pred.copy(), Y.copy()
    for _, te in res.folds:
        P[te] -= P[te].mean(0)
        Yc[te] -= Yc[te].mean(0)
    r_ref = np.array([np.corrcoef(P[:, v], Yc[:, v])[0, 1] for v in range(V)])
    np.testing.assert_allclose(res.r, r_ref, atol=1e-10)
    np.testing.assert_allclose(res.r2, 1 - ((Yc - P) ** 2).sum(0) / (Yc ** 2).sum(0), atol=1e-10)
    assert res.r[0] > 0.5 and res.r[0] > res.r[-1]
    # per-block scoring is the mean of the blocks' correlations
    fm = E.cv_scores(X, Y, n_folds=4, trim=trim, alphas=alphas, inner_folds=n_inner)
    r_blocks = [[np.corrcoef(pred[te, v], Y[te, v])[0, 1] for v in range(V)] for _, te in res.folds]
    np.testing.assert_allclose(fm.r, np.mean(r_blocks, 0), atol=1e-10)
    r2_blocks = [[1 - ((pred[te, v] - Y[te, v]) ** 2).sum()
                  / ((Y[te, v] - Y[te, v].mean()) ** 2).sum() for v in range(V)]
                 for _, te in res.folds]
    np.testing.assert_allclose(fm.r2, np.mean(r2_blocks, 0), atol=1e-10)


def test_cv_ols_matches_lstsq_and_stack(small):
    X, Y = small
    res = E.cv_scores(X, Y, model="ols", n_folds=4, trim=2, return_predictions=True)
    assert res.best_alphas is None
    pred = np.zeros_like(Y)
    for train, test in res.folds:
        A = np.column_stack([np.ones(train.size), X[train]])
        b = np.linalg.lstsq(A, Y[train], rcond=None)[0]
        pred[test] = np.column_stack([np.ones(test.size), X[test]]) @ b
    np.testing.assert_allclose(res.predictions, pred, atol=1e-5)
    stack = E.cv_scores(X, np.stack([Y, Y]), model="ols", n_folds=4, trim=2, chunk_voxels=11)
    assert stack.r.shape == (2, Y.shape[1])
    np.testing.assert_allclose(stack.r[1], res.r, atol=1e-12)


def test_cv_null_bias_is_documented():
    """White-noise data: OLS and per-block ridge scores centre on 0."""
    rng = np.random.default_rng(4)
    T, k, V = 200, 8, 1500
    X = _atoms(T, k, rng)
    Y = rng.standard_normal((T, V))
    ols = E.cv_scores(X, Y, model="ols")
    ridge_blocks = E.cv_scores(X, Y, alphas=np.logspace(-2, 5, 8))  # fold_mean
    ridge_concat = E.cv_scores(X, Y, scoring="concatenated", alphas=np.logspace(-2, 5, 8))
    ridge_uncentred = E.cv_scores(X, Y, scoring="concatenated", center="none",
                                  alphas=np.logspace(-2, 5, 8))
    assert abs(ols.r.mean()) < 0.01
    assert abs(ridge_blocks.r.mean()) < 0.01
    # the documented biases of concatenated ridge scores, with and without centring
    assert ridge_uncentred.r.mean() < ridge_concat.r.mean() < -0.01


class _RecordingPCA:
    """A scikit-learn-style transformer that records how many rows it was fitted on."""

    fitted_rows: list = []

    def __init__(self, n_components=2):
        self.n_components = n_components

    def get_params(self, deep=True):
        return {"n_components": self.n_components}

    def set_params(self, **params):
        self.__dict__.update(params)
        return self

    def fit_transform(self, X):
        from sklearn.decomposition import PCA
        _RecordingPCA.fitted_rows.append(X.shape[0])
        self._pca = PCA(self.n_components).fit(X)
        return self._pca.transform(X)

    def transform(self, X):
        return self._pca.transform(X)


def test_transformer_is_fitted_on_training_rows_only(small):
    X, Y = small
    _RecordingPCA.fitted_rows = []
    res = E.cv_scores(X, Y, transformer=_RecordingPCA(3), n_folds=4, trim=3)
    assert _RecordingPCA.fitted_rows == [tr.size for tr, _ in res.folds]
    assert all(n < X.shape[0] for n in _RecordingPCA.fitted_rows)


# ------------------------------------------------------------------ recovery, permutations, FDR


def test_recovery_of_planted_voxels_with_fdr():
    rng = np.random.default_rng(5)
    T, k, V, n_planted = 300, 16, 400, 80
    X = _atoms(T, k, rng)
    W = np.zeros((k, V))
    W[:, :n_planted] = rng.standard_normal((k, n_planted)) * (rng.random((k, n_planted)) < 0.3)
    W[0, :n_planted] += 1.0  # every planted voxel loads on atom 0
    signal = X @ W
    noise = _smooth_noise((T, V), rng)
    planted = np.arange(V) < n_planted
    scale = np.where(planted, signal.std(0) / noise.std(0) / 1.5, 1.0)
    Y = _zscore(signal + noise * scale)  # planted voxels: SNR 1.5 (held-out r about 0.75)

    cv = E.cv_scores(X, Y)
    assert cv.r[planted].mean() > 0.6 and abs(cv.r[~planted].mean()) < 0.03
    for statistic in ("cv_r", "r2_insample"):
        p = E.permutation_pvalues(X, Y, n_perm=1000, statistic=statistic, seed=1)
        assert p.min() >= 1 / 242  # all 241 allowed circular shifts (T=300, min shift 30)
        reject, q = E.fdr(p, 0.05)
        power = reject[planted].mean()
        fp_rate = reject[~planted].mean()
        fdp = reject[~planted].sum() / max(1, reject.sum())
        assert power >= 0.95, (statistic, power)
        # smooth noise and 241 shifts: about the FDR level (0.05), a little above (docstring)
        assert fp_rate <= 0.05 and fdp <= 0.15, (statistic, fp_rate, fdp)


@pytest.mark.parametrize("method", ["circular", "block"])
def test_permutation_pvalues_uniform_under_null(method):
    rng = np.random.default_rng(6)
    T, k, V = 200, 4, 3000
    X = _atoms(T, k, rng)
    Y = _zscore(rng.standard_normal((T, V)))  # independent TRs: the test is exact
    p = E.permutation_pvalues(X, Y, n_perm=300, method=method, seed=2)
    assert p.shape == (V,) and np.all((p > 0) & (p <= 1))
    assert 0.035 <= np.mean(p <= 0.05) <= 0.065
    assert 0.08 <= np.mean(p <= 0.1) <= 0.12
    assert stats.kstest(p, "uniform").statistic < 0.04
    # autocorrelated BOLD: approximately valid, slightly liberal (see the docstring)
    Ys = _zscore(_smooth_noise((T, V), rng))
    ps = E.permutation_pvalues(X, Ys, n_perm=300, method=method, seed=2)
    assert 0.035 <= np.mean(ps <= 0.05) <= 0.08
    # float64 products give the same p-values, a stack gives one row per subject
    p64 = E.permutation_pvalues(X, Y[:, :200], n_perm=300, method=method, seed=2,
                                dtype=np.float64)
    np.testing.assert_allclose(p64, p[:200], atol=2 / 301)
    ps = E.permutation_pvalues(X, np.stack([Y[:, :50], Y[:, 50:100]]), n_perm=300,
                               method=method, seed=2)
    np.testing.assert_array_equal(ps, p[:100].reshape(2, 50))


def test_fdr_matches_statsmodels():
    from statsmodels.stats.multitest import multipletests
    rng = np.random.default_rng(7)
    p = np.concatenate([rng.random(500), rng.random(50) * 1e-3])
    reject, q = E.fdr(p, 0.05)
    ref_reject, ref_q, *_ = multipletests(p, 0.05, method="fdr_bh")
    np.testing.assert_array_equal(reject, ref_reject)
    np.testing.assert_allclose(q, ref_q, atol=1e-12)
    p_nan = p.copy()
    p_nan[3] = np.nan
    r2, q2 = E.fdr(p_nan, 0.05)
    assert not r2[3] and np.isnan(q2[3]) and r2.sum() >= 40
    with pytest.raises(ParameterError, match="alpha"):
        E.fdr(p, 1.5)
    with pytest.raises(ParameterError, match="'p'"):
        E.fdr(p + 1, 0.05)


# ------------------------------------------------------------------ ceiling and group maps


def test_normalise_by_ceiling():
    score = np.array([0.1, 0.2, 0.05, 0.3])
    ceiling = np.array([0.2, 0.04, np.nan, 0.6])
    out = E.normalise_by_ceiling(score, ceiling, min_ceiling=0.05)
    np.testing.assert_allclose(out, [0.5, np.nan, np.nan, 0.5])
    stacked = E.normalise_by_ceiling(np.stack([score, 2 * score]), ceiling)
    np.testing.assert_allclose(stacked[1], [1.0, np.nan, np.nan, 1.0])
    with pytest.raises(ParameterError, match="ceiling"):
        E.normalise_by_ceiling(score, ceiling[:3])
    with pytest.raises(ParameterError, match="min_ceiling"):
        E.normalise_by_ceiling(score, ceiling, min_ceiling=0)


def _loo_isc_expected(rho, S):
    """LOO ISC of S subjects with pairwise ISC rho: r^2 = (S - 1) rho^2 / (1 + (S - 2) rho)."""
    return rho * np.sqrt((S - 1) / (1 + (S - 2) * rho))


def test_noise_ceiling_closed_form():
    rho = np.array([0.01, 0.05, 0.1, 0.3, 0.6, 0.9, 1.0])
    for S in (2, 3, 8, 30):
        r = _loo_isc_expected(rho, S)
        np.testing.assert_allclose(E.noise_ceiling(r, S), np.sqrt(rho), rtol=1e-12)
        # float32 input, 2-D shape kept
        out = E.noise_ceiling(r.astype(np.float32).reshape(1, -1), np.int64(S))
        assert out.shape == (1, rho.size) and out.dtype == np.float64
        np.testing.assert_allclose(out[0], np.sqrt(rho), rtol=1e-6)
    # two subjects: the LOO ISC is the pairwise one, the ceiling its square root
    np.testing.assert_allclose(E.noise_ceiling([0.04, 0.25], 2), [0.2, 0.5])
    # the ceiling is above the LOO ISC (which also carries the others' noise), equal at 1
    r = _loo_isc_expected(rho, 8)
    c = E.noise_ceiling(r, 8)
    assert np.all(c[:-1] > r[:-1]) and c[-1] == pytest.approx(1.0)
    # no ceiling where the ISC is not positive or not finite
    out = E.noise_ceiling([0.0, -0.1, np.nan, np.inf, 0.2], 8)
    assert np.isnan(out[:4]).all() and np.isfinite(out[4])
    assert E.noise_ceiling(0.5, 8).shape == ()


def test_noise_ceiling_perfect_model_scores_one():
    """A model that predicts with the true shared signal scores 1 after normalisation (the LOO
    ISC as the ceiling gave it well above 1); benchmarks/ceiling_calibration.py at full size."""
    from llmbrain_utils import fmri

    rng = np.random.default_rng(21)
    S, T, V = 8, 300, 600
    rho = np.array([0.1, 0.2, 0.4])[np.arange(V) % 3]
    sig = _zscore(_smooth_noise((T, V), rng))
    noise = np.stack([_zscore(_smooth_noise((T, V), rng)) for _ in range(S)])
    data = np.sqrt(rho) * sig + np.sqrt(1 - rho) * noise
    isc, _ = fmri.isc_loo(data)
    perfect = np.mean([(_zscore(sig) * _zscore(d)).mean(0) for d in data], axis=0)
    new = E.normalise_by_ceiling(perfect, E.noise_ceiling(isc, S))
    old = E.normalise_by_ceiling(perfect, isc)
    for level in (0.1, 0.2, 0.4):
        cols = rho == level
        assert abs(np.nanmedian(new[cols]) - 1) <= 0.05, (level, np.nanmedian(new[cols]))
        want_old = np.sqrt(level) / _loo_isc_expected(level, S)   # 1.51, 1.25, 1.11
        assert np.nanmedian(old[cols]) == pytest.approx(want_old, rel=0.05)
    assert abs(np.nanmedian(new) - 1) <= 0.03


@pytest.mark.parametrize("args, name", [
    (([0.2], 1), "n_subjects"), (([0.2], 2.0), "n_subjects"), (([0.2], True), "n_subjects"),
    (([0.2], None), "n_subjects"), (([0.2, 1.5], 8), "isc_loo"), ((["a"], 8), "isc_loo"),
    (([[0.1], [0.2, 0.3]], 8), "isc_loo"),
])
def test_noise_ceiling_bad_inputs(args, name):
    with pytest.raises(ParameterError, match=f"'{name}'"):
        E.noise_ceiling(*args)


def test_group_maps_match_scipy():
    rng = np.random.default_rng(8)
    S, k, V = 9, 3, 400
    shared = rng.standard_normal(V)
    betas = rng.standard_normal((S, k, V))
    betas[:, 0] += 2 * shared  # atom 0: the same map in every subject
    g = E.group_maps(betas)
    ref = stats.ttest_1samp(betas, 0.0, axis=0)
    np.testing.assert_allclose(g.t, ref.statistic, rtol=1e-10)
    np.testing.assert_allclose(g.p, ref.pvalue, rtol=1e-10)
    np.testing.assert_allclose(g.mean, betas.mean(0))
    np.testing.assert_allclose(g.sign_agreement,
                               (np.sign(betas) == np.sign(betas.mean(0))).mean(0))
    assert g.n_subjects == S and g.consistency.shape == (k,)
    expected = np.mean([np.corrcoef(betas[a, 0], betas[b, 0])[0, 1]
                        for a in range(S) for b in range(a + 1, S)])
    np.testing.assert_allclose(g.consistency[0], expected, rtol=1e-10)
    assert g.consistency[0] > 0.7 and np.all(np.abs(g.consistency[1:]) < 0.05)
    with pytest.raises(ParameterError, match="at least 2 subjects"):
        E.group_maps(betas[:1])


# ------------------------------------------------------------------ baselines and the stage


def test_layerwise_baseline_and_score_regressors():
    rng = np.random.default_rng(9)
    T, V, per_layer = 200, 30, 20
    sources = _atoms(T, 3, rng)
    noise_layers = [_zscore(_smooth_noise((T, per_layer), rng)) for _ in range(2)]
    informative = _zscore(sources @ rng.standard_normal((3, per_layer))
                          + 0.3 * rng.standard_normal((T, per_layer)) / np.sqrt(T))
    responses = np.column_stack(noise_layers + [informative])
    layers = np.repeat([0, 1, 2], per_layer)
    Ys = [_zscore(sources @ rng.standard_normal((3, V)) + 0.05 * _smooth_noise((T, V), rng))
          for _ in range(2)]
    mask = np.arange(V) < 25
    df = E.layerwise_baseline(responses, layers, Ys, n_components=5, mask=mask,
                              subjects=["a", "b"], alphas=np.logspace(-2, 4, 7))
    assert list(df.columns[:3]) == ["layer", "regressors", "subject"]
    assert len(df) == 6 and set(df["subject"]) == {"a", "b"}
    assert (df["n_components"] == 5).all() and (df["n_voxels"] == 25).all()
    by_layer = df.groupby("layer")["mean_r"].mean()
    assert by_layer.idxmax() == 2 and by_layer[2] > 0.5 and by_layer[2] > by_layer[0] + 0.3
    # score_regressors: the same folds give the same numbers as cv_scores
    folds = E.contiguous_folds(T, 5, 5)
    atoms = E.score_regressors(sources, Ys, name="atoms", folds=folds, mask=mask,
                               alphas=np.logspace(-2, 4, 7))
    direct = E.cv_scores(sources, Ys[1], folds=folds, alphas=np.logspace(-2, 4, 7))
    np.testing.assert_allclose(atoms.loc[1, "mean_r"], direct.r[mask].mean(), rtol=1e-12)
    assert atoms.loc[0, "regressors"] == "atoms" and atoms.loc[0, "n_components"] == 3


def test_encode_subjects_matches_parts(small):
    X, Y = small
    Ys = [Y, _zscore(Y[::-1] + 0.1)]
    out = E.encode_subjects(X, Ys, n_folds=4, trim=2, alphas=np.logspace(-1, 3, 5))
    S, k, V = 2, X.shape[1], Y.shape[1]
    assert out.beta.shape == (S, k, V) and out.t.shape == (S, k, V) and out.beta.dtype == np.float32
    assert out.r2.shape == (S, V) and out.cv_r.shape == (S, V) and out.cv_alphas.shape == (S, 4, V)
    ols = E.fit_ols(X, Ys[1])
    np.testing.assert_allclose(out.t[1], ols.t, rtol=1e-5, atol=1e-5)
    cv = E.cv_scores(X, Ys[1], n_folds=4, trim=2, alphas=np.logspace(-1, 3, 5))
    np.testing.assert_allclose(out.cv_r[1], cv.r, atol=1e-6)
    p, z = out.p_z()
    np.testing.assert_allclose(p[1], ols.p, rtol=1e-4, atol=1e-7)
    no_cv = E.encode_subjects(X, Y, cv_model=None)
    assert no_cv.cv_r is None and no_cv.beta.shape == (1, k, V)


# ------------------------------------------------------------------ bad inputs


def test_bad_inputs_are_named_before_work(small):
    X, Y = small
    with pytest.raises(ParameterError, match=r"'Y'.*119 time points.*X has 120"):
        E.fit_ols(X, Y[:-1])
    with pytest.raises(ParameterError, match=r"subject 1: has 119 time points"):
        E.cv_scores(X, [Y, Y[:-1]])
    bad = Y.copy()
    bad[17, 5] = np.nan
    with pytest.raises(ParameterError, match=r"'Y'.*nan at TR 17, voxel 5"):
        E.fit_ols(X, bad)
    with pytest.raises(ParameterError, match=r"subject 1: value nan at TR 17, voxel 5"):
        E.encode_subjects(X, np.stack([Y, bad]))
    badx = X.copy()
    badx[3, 2] = np.inf
    with pytest.raises(ParameterError, match=r"'X'.*TR 3, regressor 2"):
        E.permutation_pvalues(badx, Y)
    with pytest.raises(ParameterError, match="n_folds"):
        E.cv_scores(X, Y, n_folds=500)
    with pytest.raises(ParameterError, match=r"fold 0 has 25 training TRs for 30 regressors"):
        E.cv_scores(_atoms(120, 30, np.random.default_rng(0)), Y, model="ols", n_folds=2,
                    trim=35)
    with pytest.raises(ParameterError, match="alphas"):
        E.cv_scores(X, Y, alphas=[-1.0, 1.0])
    with pytest.raises(ParameterError, match="model"):
        E.cv_scores(X, Y, model="lasso")
    with pytest.raises(ParameterError, match="method"):
        E.permutation_pvalues(X, Y, method="shuffle")
    with pytest.raises(ParameterError, match="statistic"):
        E.permutation_pvalues(X, Y, statistic="r")
    with pytest.raises(ParameterError, match="min_shift"):
        E.permutation_pvalues(X, Y, min_shift=100)
    with pytest.raises(ParameterError, match="lam"):
        E.fit_lasso(X, Y, -1)
    with pytest.raises(ParameterError, match="linearly dependent"):
        E.fit_ols(np.column_stack([X, X[:, 0] * 2]), Y)
    with pytest.raises(ParameterError, match="degrees of freedom"):
        E.fit_ols(X[:6], Y[:6])
    with pytest.raises(ParameterError, match="dimensions"):
        E.fit_ols(X, Y[None, None])
    with pytest.raises(ParameterError, match="layers"):
        E.layerwise_baseline(np.zeros((120, 4)), [0, 1], Y)
    with pytest.raises(ParameterError, match="mask"):
        E.score_regressors(X, Y, mask=np.ones(3, bool))
    with pytest.raises(ParameterError, match="device"):
        E.fit_ols(X, Y, device="tpu")
    assert issubclass(ParameterError, InputError)


# ------------------------------------------------------------------ group test of held-out r


def _twin(rng, T=200, k=6, S=4, V=300, n_planted=60, snr=0.0, phi=0.4):
    """Smooth regressors; AR(1) noise per subject; planted voxels share ``snr * X w`` in every
    subject (the stimulus-locked part listeners share)."""
    from scipy.signal import lfilter
    X = _atoms(T, k, rng)
    w = rng.standard_normal((k, n_planted))
    shared = _zscore(X @ w)
    Ys = []
    for _ in range(S):
        e = _zscore(lfilter([1.0], [1.0, -phi], rng.standard_normal((T, V)), axis=0))
        e[:, :n_planted] += snr * shared
        Ys.append(_zscore(e))
    return X, np.stack(Ys), np.arange(V) < n_planted


@pytest.mark.parametrize("null", ["phase", "shift_bold", "shift_regressors"])
def test_ridge_null_r_observed_row_and_shifts_match_cv_scores(null):
    rng = np.random.default_rng(11)
    X, Y, _ = _twin(rng, T=120, k=4, S=2, V=25, n_planted=10, snr=1.0)
    folds = E.contiguous_folds(120, 4, 3)
    a = np.array([10.0])  # one penalty: cv_scores' choice is known
    ref = E.cv_scores(X, Y, folds=folds, alphas=a)
    vals = E.ridge_null_r(X, Y, np.full((2, 4, 25), 10.0), null=null, n_perm=12, seed=3,
                          folds=folds, batch=5)
    assert vals.shape == (13, 2, 25)
    np.testing.assert_allclose(vals[0], ref.r, atol=1e-5)  # row 0: the observed alignment
    # per-voxel penalties as cv_scores chose them reproduce its r as well
    cv = E.cv_scores(X, Y, folds=folds, alphas=np.logspace(-1, 3, 5))
    obs = E.ridge_null_r(X, Y, cv.best_alphas, null=null, n_perm=0, folds=folds)
    np.testing.assert_allclose(obs[0], cv.r, atol=1e-5)
    if null == "phase":
        assert np.all(np.isfinite(vals)) and np.abs(vals[1:]).mean() < np.abs(vals[0]).mean()
        return
    shifts = E._shift_list(120, 12, None, 3)
    for i in (0, 7):
        s = shifts[i]
        if null == "shift_regressors":
            want = E.cv_scores(np.roll(X, s, axis=0), Y, folds=folds, alphas=a).r
        else:
            want = E.cv_scores(X, np.roll(Y, -s, axis=1), folds=folds, alphas=a).r
        np.testing.assert_allclose(vals[1 + i], want, atol=1e-5)


def test_group_cv_test_is_valid_on_null_data():
    rng = np.random.default_rng(12)
    X, Y, _ = _twin(rng, T=200, k=6, S=4, V=1500, snr=0.0)  # no signal anywhere
    for statistic in ("average_bold", "mean_r"):
        g = E.group_cv_test(X, Y, statistic=statistic, n_perm=40, seed=1)
        assert g.n_null == 40 and g.p.shape == (1500,) and np.all((g.p > 0) & (g.p <= 1))
        rate = np.mean(g.p <= 0.05)
        assert 0.03 <= rate <= 0.07, (statistic, rate)  # calibrated (uncorrected)
        assert 0.9 <= np.std(g.z) <= 1.1, (statistic, np.std(g.z))
        reject = E.fdr(g.p, 0.05)[0]
        assert reject.mean() <= 0.01, (statistic, reject.mean())  # FDR: hardly any discovery
    # the voxel's own null and the normal tail are valid too (coarse / parametric)
    for tail in ("voxel", "gaussian"):
        assert 0.03 <= np.mean(g.pvalues(tail=tail) <= 0.05) <= 0.07


def _loo_z_with_observed(values):
    """The pooled tail's standardisation before issue #19, kept as the reference of what went
    wrong: each null row standardised by the other rows *including the observed row 0*."""
    n = values.shape[0]
    s1, s2 = values.sum(0), (values * values).sum(0)
    m = (s1 - values) / (n - 1)
    var = (s2 - values * values - (n - 1) * m * m) / (n - 2)
    return (values - m) / np.sqrt(np.maximum(var, 0.0))


def test_pooled_tail_is_calibrated_when_most_voxels_carry_signal():
    """90% of the voxels with an observed value 8 SD above their null: the other voxels' pooled
    p must still be uniform. With the observed row in every null row's reference (the old
    standardisation) the strong voxels' standardised null shrank and the null voxels reached
    p <= 0.05 about 3 times as often (50 surrogates; about twice with 100)."""
    rng = np.random.default_rng(19)
    n_null, V, n_fam = 50, 25_000, 16          # 16 families, 40,000 null voxels in all
    new, old = [], []
    for _ in range(n_fam):
        # voxels differ in the centre and spread of their null
        loc, sd = rng.normal(0, 0.05, V), rng.uniform(0.02, 0.1, V)
        values = loc + sd * rng.standard_normal((1 + n_null, V))
        signal = np.arange(V) % 10 != 0
        values[0, signal] = loc[signal] + 8 * sd[signal]
        p, z = E._group_p(values, "pooled")
        # the observed z: standardised by the voxel's null values only
        np.testing.assert_allclose(z, (values[0] - values[1:].mean(0)) / values[1:].std(0, ddof=1),
                                   rtol=1e-9)
        new.append(p[~signal])
        zz = _loo_z_with_observed(values)
        pool = np.sort(zz[1:].ravel())
        old.append((1.0 + pool.size - np.searchsorted(pool, zz[0] - 1e-9, side="left"))
                   / (1.0 + pool.size))
        old[-1] = old[-1][~signal]
    new, old = np.concatenate(new), np.concatenate(old)
    assert np.all((new > 0) & (new <= 1))
    for alpha in (0.05, 0.01):
        assert 0.8 * alpha <= np.mean(new <= alpha) <= 1.25 * alpha, (alpha, np.mean(new <= alpha))
        assert np.mean(old <= alpha) >= 1.8 * alpha, (alpha, np.mean(old <= alpha))  # the bug
    # the GroupTest's re-computation for a mask uses the same standardisation
    g = E.GroupTest(observed=values[0], p=p, z=z, null_mean=values[1:].mean(0),
                    null_sd=values[1:].std(0, ddof=1), values=values, subject_r=values[:1],
                    alphas=np.ones((1, 1, V)), n_null=n_null, statistic="mean_r", null="phase",
                    tail="pooled")
    np.testing.assert_array_equal(g.pvalues(), p)


def test_group_cv_test_finds_planted_voxels():
    rng = np.random.default_rng(13)
    X, Y, planted = _twin(rng, T=200, k=6, S=4, V=400, n_planted=80, snr=0.35)
    rates = {}
    for statistic in ("average_bold", "mean_r"):
        g = E.group_cv_test(X, Y, statistic=statistic, n_perm=40, seed=2)
        reject = E.fdr(g.p, 0.05)[0]
        rates[statistic] = E.recovery_rates(reject, planted, g.p, 0.05)
        assert rates[statistic]["fpr"] <= 0.05 and rates[statistic]["fdp"] <= 0.2, rates
    # the average BOLD: the shared signal with sqrt(S) less noise (0.89 here; the pooled tail
    # before issue #19 found 0.91 with a null too narrow: 6.6% of null voxels at p <= 0.05)
    assert rates["average_bold"]["sensitivity"] >= 0.85, rates
    assert rates["average_bold"]["sensitivity"] >= rates["mean_r"]["sensitivity"], rates
    # observed statistic: the held-out r of the average BOLD, as cv_scores computes it
    g = E.group_cv_test(X, Y, n_perm=10, seed=2, mask=np.arange(400) < 100)
    avg = Y.mean(0)
    cv = E.cv_scores(X, _zscore(avg[:, :100]))
    np.testing.assert_allclose(g.observed[:100], cv.r, atol=1e-5)
    assert np.isnan(g.p[100:]).all() and np.isfinite(g.p[:100]).all()
    # a family restricted to a mask: fewer tests, p-values from that family's pool
    sub = g.pvalues(np.arange(400) < 50)
    assert np.isfinite(sub[:50]).all() and np.isnan(sub[50:]).all()


def test_group_test_in_blocks_of_voxels_is_the_test_bit_for_bit():
    """group_null_block over blocks whose widths are multiples of the kernel's chunk, side by
    side, then group_test_result: group_cv_test's numbers bit for bit (the stage's fan-out)."""
    rng = np.random.default_rng(5)
    X, Y, _ = _twin(rng, T=120, k=5, S=3, V=700, n_planted=60, snr=0.3)
    Y = Y.astype(np.float32)
    folds = E.contiguous_folds(120, 4, 3)
    kw = dict(null="phase", n_perm=12, seed=4, folds=folds, chunk_voxels=64)
    for statistic in ("average_bold", "mean_r"):
        S_ = 1 if statistic == "average_bold" else 3
        alphas = 10.0 ** rng.uniform(-1, 3, size=(S_, len(folds), 700))
        ref = E.group_cv_test(X, Y, statistic=statistic, alphas=alphas[0] if S_ == 1 else alphas,
                              **kw)
        vals = np.concatenate([E.group_null_block(X, Y[:, :, v0:v0 + 192],
                                                  alphas[..., v0:v0 + 192][0] if S_ == 1
                                                  else alphas[..., v0:v0 + 192],
                                                  statistic=statistic, **kw)
                               for v0 in range(0, 700, 192)], axis=-1)
        got = E.group_test_result(vals, alphas, np.arange(700), 700, statistic=statistic,
                                  null="phase", tail="pooled")
        for f in ("observed", "p", "z", "null_mean", "null_sd", "values", "subject_r", "alphas"):
            assert np.array_equal(getattr(ref, f), getattr(got, f), equal_nan=True), (statistic, f)
        assert got.n_null == ref.n_null == 12
    with pytest.raises(ParameterError, match="'Y'.*1 subject"):
        E.group_null_block(X, Y[0], alphas[0])


def test_recovery_rates_counts():
    reject = np.array([1, 1, 0, 0, 1, 0], bool)
    planted = np.array([1, 1, 1, 0, 0, 0], bool)
    r = E.recovery_rates(reject, planted)
    assert r["sensitivity"] == pytest.approx(2 / 3) and r["fpr"] == pytest.approx(1 / 3)
    assert r["fdp"] == pytest.approx(1 / 3) and r["discoveries"] == 3
    p = np.array([0.01, 0.01, 0.5, 0.04, 0.001, np.nan])  # the last voxel is not tested
    r = E.recovery_rates(reject, planted, p, alpha=0.05)
    assert r["tested_outside"] == 2 and r["uncorrected_rate_outside"] == 1.0
    assert r["fpr"] == 0.5
    with pytest.raises(ParameterError, match="reject/planted"):
        E.recovery_rates(reject.astype(int), planted)


def test_group_test_bad_inputs(small):
    X, Y = small
    Ys = np.stack([Y, Y[::-1]])
    with pytest.raises(ParameterError, match="'Y'.*1 subject"):
        E.group_cv_test(X, Y)
    with pytest.raises(ParameterError, match="statistic"):
        E.group_cv_test(X, Ys, statistic="median_r")
    with pytest.raises(ParameterError, match="null"):
        E.group_cv_test(X, Ys, null="bootstrap")
    with pytest.raises(ParameterError, match="tail"):
        E.group_cv_test(X, Ys, tail="two-sided")
    with pytest.raises(ParameterError, match="n_perm"):
        E.group_cv_test(X, Ys, n_perm=5)
    with pytest.raises(ParameterError, match=r"'alphas'.*shape \(3,\)"):
        E.group_cv_test(X, Ys, alphas=np.ones(3))
    with pytest.raises(ParameterError, match="alphas"):
        E.ridge_null_r(X, Ys, -np.ones((2, 5, Y.shape[1])))


def test_encoding_recovery_needs_the_synthetic_twin(tmp_path):
    from llmbrain_utils import stages
    with pytest.raises(ParameterError, match="fmri_source.*no planted truth"):
        stages.encoding_recovery({"fmri_source": "narratives", "runs_dir": str(tmp_path)})
    assert not any(tmp_path.iterdir())  # refused before any work


# ------------------------------------------------------------------ resolution of the encoding nulls


def test_circular_null_reports_its_real_number_of_shifts():
    rng = np.random.default_rng(30)
    T, k = 326, 16
    X = _atoms(T, k, rng)
    Y = _zscore(_smooth_noise((T, 50), rng))
    assert E.n_circular_shifts(T) == T - 2 * 33 + 1 == 261  # min shift ceil(0.1 T) = 33
    with pytest.warns(RuntimeWarning, match="only 261 distinct shifts"):
        p, n = E.permutation_pvalues(X, Y, n_perm=1000, seed=0, return_n_null=True)
    assert n == 261 and p.min() >= 1 / 262
    p2, n2 = E.permutation_pvalues(X, Y, n_perm=100, seed=0, return_n_null=True)
    assert n2 == 100 and p2.min() >= 1 / 101
    p3, n3 = E.permutation_pvalues(X, Y, n_perm=1000, method="phase", seed=0, return_n_null=True)
    assert n3 == 1000 and p3.shape == (50,) and np.all((p3 >= 1 / 1001) & (p3 <= 1))


def test_phase_null_equals_refit_on_surrogates():
    # the same phases for all regressors: X'X is kept, and the fast path (R Q) is the OLS R2
    # of the surrogate regressors themselves
    from scipy import fft as sfft
    rng = np.random.default_rng(31)
    T, k, V = 101, 5, 30
    X = _atoms(T, k, rng)
    Y = _zscore(_smooth_noise((T, V), rng))
    rot = E._phase_rotations(T, 3, np.random.default_rng(0))
    Xs = sfft.irfft(rot[:, :, None] * sfft.rfft(X, axis=0)[None], n=T, axis=1)
    Xc, Xsc = X - X.mean(0), Xs - Xs.mean(1, keepdims=True)
    np.testing.assert_allclose(Xsc[0].T @ Xsc[0], Xc.T @ Xc, atol=1e-12)
    np.testing.assert_allclose(Xs.mean(1), np.broadcast_to(X.mean(0), (3, k)), atol=1e-12)
    # p from 3 draws, float64, checked against explicit OLS fits of the surrogates
    p = E.permutation_pvalues(X, Y, n_perm=3, method="phase", seed=0, dtype=np.float64)
    r2 = lambda A: E.fit_ols(A, Y).r2  # noqa: E731
    null = np.stack([r2(Xs[b]) for b in range(3)])
    np.testing.assert_allclose(p, (1 + (null >= r2(X) - 1e-10).sum(0)) / 4)
    p_cv = E.permutation_pvalues(X, Y, n_perm=3, method="phase", statistic="cv_r", seed=0,
                                 n_folds=3)
    assert p_cv.shape == (V,) and np.all((p_cv >= 0.25) & (p_cv <= 1))


def test_phase_null_calibrated_and_resolves_fdr():
    # null data like the stage's: T = 326, 16 smooth regressors, smooth-noise BOLD; pooled over
    # 8 independent data sets (each with its own draws: one set of 1,000 draws shares its Monte
    # Carlo error across voxels, SD about 0.003 at alpha = 0.01)
    T, k, V = 326, 16, 2000
    rates = []
    for seed in range(8):
        rng = np.random.default_rng(200 + seed)
        X = _atoms(T, k, rng)
        Y = _zscore(_smooth_noise((T, V), rng))
        p = E.permutation_pvalues(X, Y, n_perm=1000, method="phase", seed=seed)
        rates.append([np.mean(p <= 0.05), np.mean(p <= 0.01)])
    r05, r01 = np.mean(rates, axis=0)
    assert 0.8 * 0.05 <= r05 <= 1.25 * 0.05, r05
    assert 0.8 * 0.01 <= r01 <= 1.25 * 0.01, r01
    # a strong planted signal in 100 of 2,100 voxels: every one at the floor 1/(1 + n_perm);
    # BH at 0.05 needs p <= 0.05 * 100 / 2100 = 0.0024 for them: the phase null (floor 1/1001)
    # finds them, the circular null (261 shifts, floor 1/262 = 0.0038) cannot
    rng = np.random.default_rng(210)
    X = _atoms(T, k, rng)
    n_planted = 100
    noise = _smooth_noise((T, V + n_planted), rng)
    W = np.zeros((k, V + n_planted))
    W[:, :n_planted] = rng.standard_normal((k, n_planted))
    signal = X @ W
    planted = np.arange(V + n_planted) < n_planted
    scale = np.where(planted, signal.std(0) / noise.std(0), 1.0)  # planted: SNR 1
    Y = _zscore(signal + noise * scale)
    p, n = E.permutation_pvalues(X, Y, n_perm=1000, method="phase", seed=1, return_n_null=True)
    assert n == 1000 and p.min() == pytest.approx(1 / 1001)
    reject = E.fdr(p, 0.05)[0]
    assert reject[planted].mean() >= 0.95
    assert reject[~planted].sum() / max(1, reject.sum()) <= 0.1
    with pytest.warns(RuntimeWarning):
        pc = E.permutation_pvalues(X, Y, n_perm=1000, method="circular", seed=1)
    assert pc.min() >= 1 / 262
    assert E.fdr(pc, 0.05)[0][planted].mean() < reject[planted].mean()
