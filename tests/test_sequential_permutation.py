"""Sequential Monte Carlo p-values of the encoding's permutation test (``stop_after``,
Besag & Clifford 1991): checked against the fixed test on the same draws and against the
truth of null data (uniform p), at the real run's shapes (T = 326, 1,000 phase surrogates)."""

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter1d

from llmbrain_utils import encoding as E
from llmbrain_utils.errors import ParameterError

T, K, P, H = 326, 16, 1000, 10
N_SIGNAL = 400


@pytest.fixture(scope="module")
def data():
    """Smooth regressors; BOLD: the first N_SIGNAL voxels carry a weak linear mixture of them
    (true effects of graded size), the rest are autocorrelated noise (the null is true)."""
    rng = np.random.default_rng(7)
    X = gaussian_filter1d(rng.standard_normal((T, K)), 2, axis=0)
    Y = gaussian_filter1d(rng.standard_normal((T, 4000)), 1.5, axis=0)
    gain = np.linspace(0.1, 0.6, N_SIGNAL)
    Y[:, :N_SIGNAL] += gain * (X @ rng.standard_normal((K, N_SIGNAL))) / np.sqrt(K)
    fixed = E.permutation_pvalues(X, Y, P, "phase", seed=3)
    seq, draws = E.permutation_pvalues(X, Y, P, "phase", seed=3, stop_after=H, return_draws=True)
    return X, Y, fixed, seq, draws


def test_voxels_near_significance_keep_the_fixed_tests_p(data):
    _, _, fixed, seq, draws = data
    never = draws == P
    # a voxel whose fixed count stays below h never stops: the same draws, the same p
    assert np.array_equal(seq[never], fixed[never])
    assert np.all(fixed[fixed < (1 + H) / (1 + P)] == seq[fixed < (1 + H) / (1 + P)])
    # a stopped voxel had at least h exceedances in the fixed test too, and p = h / L
    stopped = ~never
    assert stopped.sum() > 3000
    assert np.all(fixed[stopped] >= (1 + H) / (1 + P) - 1e-12)
    assert np.allclose(seq[stopped], H / draws[stopped])
    # BH at 5 % over these voxels: discoveries need p below ~0.01 here, so the verdicts agree
    assert np.array_equal(E.fdr(seq, 0.05)[0], E.fdr(fixed, 0.05)[0])


def test_valid_under_the_null_and_far_fewer_draws(data):
    _, _, fixed, seq, draws = data
    null_p, null_d = seq[N_SIGNAL:], draws[N_SIGNAL:]
    n = null_p.size
    for a in (0.01, 0.05, 0.1, 0.25, 0.5):
        se = np.sqrt(a * (1 - a) / n)
        assert (null_p <= a).mean() <= a + 4 * se, a             # valid (not liberal)
        assert abs((null_p <= a).mean() - (fixed[N_SIGNAL:] <= a).mean()) <= 4 * se
    # expected draws of a null voxel: ~ h (1 + ln(P / h)) = 56 for h = 10, P = 1000
    expect = H * (1 + np.log(P / H))
    assert 0.8 * expect <= null_d.mean() <= 1.2 * expect
    # the planted voxels draw longer (the significant ones all P: the first test)
    assert draws[:N_SIGNAL].mean() > 3 * null_d.mean()


def test_blocks_subjects_and_arguments(data):
    X, Y, _, seq, draws = data
    # per voxel block (as the pipeline's blocks run it) and per subject: the same p and draws
    parts = [E.permutation_pvalues(X, Y[:, sl], P, "phase", seed=3, stop_after=H, return_draws=True)
             for sl in (slice(0, 1500), slice(1500, 4000))]
    assert np.array_equal(np.concatenate([p for p, _ in parts]), seq)
    assert np.array_equal(np.concatenate([d for _, d in parts]), draws)
    ps, n, ds = E.permutation_pvalues(X, np.stack([Y[:, :300], Y[:, 300:600]]), P, "phase", seed=3,
                                      stop_after=H, return_n_null=True, return_draws=True)
    assert ps.shape == ds.shape == (2, 300) and n == P
    assert np.array_equal(ps.ravel(), seq[:600]) and np.array_equal(ds.ravel(), draws[:600])
    # without stop_after every voxel uses every draw
    _, d_all = E.permutation_pvalues(X, Y[:, :50], 20, "phase", seed=3, return_draws=True)
    assert np.all(d_all == 20)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ParameterError, match="stop_after"):
            E.permutation_pvalues(X, Y[:, :10], 20, "phase", stop_after=bad)


def test_the_stage_stops_early_and_keeps_every_significant_voxel(tmp_path):
    """``perm_stop`` in the pipeline (a tiny twin, 200 surrogates): the fixed test's artifact
    keeps its key; the sequential one keeps every p below (h+1)/(n_perm+1) and says how many
    draws it used."""
    from llmbrain_utils import stages

    tiny = dict(n_subjects=3, resolution_mm=12, k=8, n_perm=200, fbn_perm=100, dict_iter=30,
                group_perm=10, runs_dir=str(tmp_path / "runs"))
    fixed = stages.encoding_tests(tiny)
    seq = stages.encoding_tests({**tiny, "perm_stop": 5})
    assert "perm_stop" not in fixed.params and seq.params["perm_stop"] == 5
    pf, ps = np.load(fixed.file("p_r2.npy")), np.load(seq.file("p_r2.npy"))
    low = pf < (1 + 5) / (1 + 200)
    assert low.sum() > 50 and np.array_equal(pf[low], ps[low])
    assert np.all(ps[~low] >= 5 / 200 - 1e-7)
    info = seq.info["p_r2_null"]
    assert info["stop_after"] == 5 and 5 <= info["mean_draws"] < 200
    assert 0 < info["share_stopped_early"] < 1
    assert fixed.info["p_r2_null"]["mean_draws"] == 200
    for f in ("p_group_avg.npy", "group_avg_r.npy"):   # the group test is not touched
        assert np.array_equal(np.load(fixed.file(f)), np.load(seq.file(f)), equal_nan=True)
