"""The network signal (llmbrain_utils.netsignal): its estimator against a brute-force formula,
its unbiasedness at every number of subjects, the coverage of its intervals on a small
simulation with a known truth, paired differences, and refusals of bad input."""

import itertools
from pathlib import Path

import numpy as np
import pytest

from llmbrain_utils import netsignal
from llmbrain_utils.errors import InputError, ParameterError


def _masks(V=120, n_net=4):
    M = np.zeros((n_net, V), bool)
    for j in range(n_net):
        M[j, j * 20:(j + 1) * 20] = True  # 80 voxels in networks, 40 in none
    return M


def _population(k=6, V=120, n_net=4, amp=0.4, seed=0):
    rng = np.random.default_rng(seed)
    M = _masks(V, n_net)
    mu = 0.2 * rng.standard_normal((k, V))
    for a in range(k):
        mu[a] += amp * (a % 3 != 2) * M[a % n_net]  # a third of the atoms follow no network
    sd = 0.5 + rng.random((k, V))  # heteroscedastic noise
    return mu, sd, M


def _theta(mu, sd, M):
    """The population value, written out from its definition."""
    G, _ = netsignal.groups_of(M)
    k, V = mu.shape
    out = 0.0
    for a in range(k):
        sigma2 = (sd[a] ** 2).mean()
        for g in G:
            out += g.sum() / V * (mu[a, g].mean() - mu[a].mean()) ** 2 / sigma2
    return out / k


def test_estimate_is_the_pairwise_formula():
    rng = np.random.default_rng(1)
    S, k, V = 5, 3, 60
    B = rng.standard_normal((S, k, V))
    M = _masks(V, 2)
    G, names = netsignal.groups_of(M)
    assert G.shape == (3, V) and names is None and (G.sum(0) == 1).all()
    sigma = np.sqrt(B.var(0, ddof=1).mean(1))
    brute = 0.0
    for s, t in itertools.permutations(range(S), 2):
        for a in range(k):
            xs, xt = B[s, a] / sigma[a], B[t, a] / sigma[a]
            for g in G:
                w = g.sum() / V
                brute += w * (xs[g].mean() - xs.mean()) * (xt[g].mean() - xt.mean())
    brute /= k * S * (S - 1)
    res = netsignal.network_signal(B, M, n_resamples=50)
    assert res.estimate == pytest.approx(brute, rel=1e-10)
    assert res.per_network.estimate.sum() == pytest.approx(brute, rel=1e-10)


def test_subsets_of_every_size_target_the_full_sample():
    """The mean of the U statistic over all subsets of m subjects is the full-sample value,
    for every m: subsets aim at what the full sample estimates (the corrected best-network |r|
    did not)."""
    rng = np.random.default_rng(2)
    B = rng.standard_normal((7, 4, 50)) + np.linspace(0, 1, 50)
    grams, _ = netsignal.subject_grams(B, _masks(50, 2))
    full = netsignal.u_statistics(grams, np.arange(7)[None, :]).sum()
    for m in (2, 3, 5, 6):
        picks = np.array(list(itertools.combinations(range(7), m)))
        assert netsignal.u_statistics(grams, picks).sum(1).mean() == pytest.approx(full, rel=1e-10)


def test_unbiased_for_the_population_value():
    mu, sd, M = _population()
    truth = _theta(mu, sd, M)
    rng = np.random.default_rng(3)
    est = [netsignal.network_signal(mu + sd * rng.standard_normal((6,) + mu.shape), M, n_resamples=10).estimate
           for _ in range(400)]
    se = np.std(est, ddof=1) / np.sqrt(len(est))
    assert abs(np.mean(est) - truth) < 3 * se + 0.02 * truth  # sigma is estimated: a small ratio bias
    # the plug-in value of the mean map is biased upwards by the noise, the U statistic is not
    plug = [_theta((mu + sd * rng.standard_normal((6,) + mu.shape)).mean(0), sd, M) for _ in range(100)]
    assert np.mean(plug) > truth + 3 * se


@pytest.mark.parametrize("scheme", ["subsample", "jackknife"])
def test_intervals_cover_the_truth(scheme):
    """Coverage of 95% intervals of the total and of a paired difference over 200 small
    simulated studies of 8 subjects (two models whose noise shares half its variance)."""
    mu_a, sd, M = _population(seed=4)
    mu_b = mu_a.copy()
    mu_b[:3] *= 0.6
    truth = {"a": _theta(mu_a, sd, M), "b": _theta(mu_b, sd, M)}
    truth["a-b"] = truth["a"] - truth["b"]
    rng = np.random.default_rng(5)
    hits = {q: 0 for q in truth}
    n_reps = 200
    for rep in range(n_reps):
        shared = rng.standard_normal((8,) + mu_a.shape)
        Ba = mu_a + sd * shared
        Bb = mu_b + sd * (np.sqrt(0.5) * shared + np.sqrt(0.5) * rng.standard_normal(shared.shape))
        for q, B in (("a", Ba), ("b", Bb)):
            r = netsignal.network_signal(B, M, scheme=scheme, n_resamples=300, seed=rep)
            hits[q] += r.lo <= truth[q] <= r.hi
        d = netsignal.paired_signal_differences({"a": Ba, "b": Bb}, M, scheme=scheme, n_resamples=300, seed=rep)
        hits["a-b"] += d.ci_low[0] <= truth["a-b"] <= d.ci_high[0]
    cov = {q: h / n_reps for q, h in hits.items()}
    assert all(0.88 <= c <= 0.995 for c in cov.values()), cov


def test_paired_differences_of_a_model_with_itself_and_swapped():
    mu, sd, M = _population()
    rng = np.random.default_rng(6)
    B = mu + sd * rng.standard_normal((8,) + mu.shape)
    B2 = 0.7 * B
    d = netsignal.paired_signal_differences({"x": B, "y": B, "z": B2}, M, n_resamples=200)
    same = d.set_index(["model_a", "model_b"]).loc[("x", "y")]
    assert same.difference == 0 and same.ci_low == 0 and same.ci_high == 0
    # sigma scales with the coefficients: a model that is a multiple of another has the same theta
    xz = d.set_index(["model_a", "model_b"]).loc[("x", "z")]
    assert abs(xz.difference) < 1e-12
    C = mu[::-1] + sd * rng.standard_normal((8,) + mu.shape)
    ab = netsignal.paired_signal_differences({"a": B, "c": C}, M, pairs=[("a", "c"), ("c", "a")], n_resamples=200)
    assert ab.difference[0] == pytest.approx(-ab.difference[1])
    assert ab.ci_low[0] == pytest.approx(-ab.ci_high[1]) and ab.p[0] == pytest.approx(ab.p[1])


def test_no_signal_gives_an_interval_holding_zero_mostly():
    rng = np.random.default_rng(7)
    M = _masks()
    p = [netsignal.network_signal(rng.standard_normal((8, 5, 120)), M, n_resamples=200, seed=i).p for i in range(60)]
    assert np.mean(np.array(p) <= 0.05) <= 0.15


def test_atlas_names_and_rest_group():
    from llmbrain_utils import fbn

    M = _masks()
    atlas = fbn.NetworkAtlas(name="toy", network_names=("A", "B", "C", "D"), masks=M, label_img=None,
                             mask_img=None, kind="Hard", full_name="toy")
    G, names = netsignal.groups_of(atlas)
    assert G.shape == (5, M.shape[1]) and names == ["A", "B", "C", "D", "(rest)"]
    assert (G[-1] == ~M.any(0)).all()
    rng = np.random.default_rng(9)
    res = netsignal.network_signal(rng.standard_normal((6, 3, M.shape[1])), atlas, n_resamples=20)
    assert list(res.per_network.index) == names
    full = _masks(80, 4)  # networks cover every voxel: no rest group
    assert netsignal.groups_of(full)[0].shape == (4, 80)


def test_bad_input_is_refused_with_the_field_named():
    rng = np.random.default_rng(8)
    B = rng.standard_normal((6, 3, 120))
    M = _masks()
    overlap = M.copy()
    overlap[1, :25] = True
    with pytest.raises(ParameterError, match="masks.*more than one network"):
        netsignal.network_signal(B, overlap)
    with pytest.raises(ParameterError, match="scheme"):
        netsignal.network_signal(B, M, scheme="bootstrap")
    with pytest.raises(ParameterError, match="m"):
        netsignal.network_signal(B, M, m=6)
    with pytest.raises(ParameterError, match="ci"):
        netsignal.network_signal(B, M, ci=95)
    with pytest.raises(ParameterError, match="betas"):
        netsignal.network_signal(B[:2], M)
    with pytest.raises(ParameterError, match="masks"):
        netsignal.network_signal(B, M[:, :100])
    with pytest.raises(ParameterError, match=r"betas_by_model\['y'\]"):
        netsignal.paired_signal_differences({"x": B, "y": B[:5]}, M)
    with pytest.raises(ParameterError, match="pairs"):
        netsignal.paired_signal_differences({"x": B, "y": B}, M, pairs=[("x", "w")])
    with pytest.raises(ParameterError, match="betas_by_model"):
        netsignal.paired_signal_differences({"x": B}, M)
    with pytest.raises(ParameterError, match="picks"):
        netsignal.u_statistics(netsignal.subject_grams(B, M)[0], np.array([[0, 0, 1]]))


def test_sweep_run_variants_checks_every_variant_before_any_work():
    from llmbrain_utils import config, sweep

    base = config.validate({"runs_dir": "/nonexistent-never-written"})
    with pytest.raises(ParameterError, match="n_workers"):
        sweep.run_variants(base, [{"name": "a"}], n_workers=0)
    with pytest.raises(InputError, match=r"points\[1\]\.name"):
        sweep.run_variants(base, [{"name": "a"}, {"name": "a", "k": 8}])
    with pytest.raises(InputError, match="no-such-model"):
        sweep.run_variants(base, [{"name": "a", "model": "no-such-model"}])
    with pytest.raises((InputError, ParameterError), match="until"):
        sweep.run_variants(base, [{"name": "a"}], until="no-such-stage")
    assert not Path("/nonexistent-never-written").exists()
