import copy

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from llmbrain_utils import compare
from llmbrain_utils.errors import ParameterError


def table(rows):
    return pd.DataFrame(rows, columns=["atom", "network", "sign", "coupled"])


def test_diversity_and_offdiag():
    rng = np.random.default_rng(0)
    D = rng.standard_normal((300, 10))
    assert compare.diversity(D) < 0.1
    same = np.repeat(D[:, :1], 5, axis=1)
    assert compare.diversity(same) == pytest.approx(1.0)
    assert np.isnan(compare.mean_abs_offdiag(np.ones((1, 1))))


def test_network_consistency_against_size_matched_null():
    rng = np.random.default_rng(1)
    base = rng.standard_normal((400, 1))
    D = rng.standard_normal((400, 20))
    D[:, :4] = base + 0.3 * rng.standard_normal((400, 4))  # four similar atoms
    t = table([(a, "Auditory", "active", True) for a in range(4)]
              + [(a, "Visual", "active", True) for a in (10, 11, 12, 13)]
              + [(5, "Visual", "deactive", True), (6, "Reward", "active", False)])
    cons = compare.network_consistency(D, t, n_null=500)
    aud = cons[cons.network == "Auditory"].iloc[0]
    vis = cons[(cons.network == "Visual") & (cons.sign == "active")].iloc[0]
    assert aud.consistency > 0.8 and aud.p < 0.01
    assert vis.consistency < 0.2 and vis.p > 0.05
    assert set(cons.n_atoms) == {4}  # single-atom and uncoupled rows are left out


def test_network_consistency_null_is_the_loops_bit_for_bit():
    """The size-matched null computed for all sets at once equals the per-set loop it replaced
    (the same draws, the same pairs, each set's mean summed as one row), for set sizes from 2
    to all atoms."""
    rng = np.random.default_rng(3)
    D = rng.standard_normal((120, 40))
    C = np.abs(np.corrcoef(D.T))
    for n in (2, 3, 5, 9, 17, 40):
        r = np.random.default_rng(n)
        sets = np.array([r.choice(40, n, replace=False) for _ in range(300)])
        loop = np.array([compare.mean_abs_offdiag(C[np.ix_(s, s)]) for s in sets])
        assert np.array_equal(compare._subset_mean_abs(C, sets), loop), n
    atoms = np.repeat(np.arange(12), 2)
    table = pd.DataFrame({"atom": atoms, "network": np.where(atoms < 7, "A", "B"),
                          "sign": "active", "coupled": True})
    got = compare.network_consistency(D, table, n_null=500, seed=4)
    r = np.random.default_rng(4)
    for _, row in got.iterrows():  # the reference: the loop, drawing in the same order
        null = np.array([compare.mean_abs_offdiag(C[np.ix_(s, s)]) for s in
                         (r.choice(40, row.n_atoms, replace=False) for _ in range(500))])
        assert row.null_mean == float(null.mean())
        assert row.p == float((1 + (null >= row.consistency).sum()) / 501)
    again = compare.network_consistency(D, table, n_null=500, seed=4)  # kept: the same, a copy
    assert again.equals(got) and again is not got
    fewer = table.assign(coupled=table.atom != 0)
    assert not compare.network_consistency(D, fewer, n_null=500, seed=4).equals(got)
    assert not compare.network_consistency(D, table, n_null=500, seed=5).equals(got)


def test_couplings_per_network_and_layers():
    t = table([(0, "A", "active", True), (1, "A", "active", True), (1, "B", "deactive", True),
               (2, "B", "active", False)])
    c = compare.couplings_per_network(t, ["A", "B", "C"])
    assert c.loc["A", "active"] == 2 and c.loc["B", "deactive"] == 1 and c.loc["C"].sum() == 0
    A = sp.csr_matrix(np.array([[1, 0, 1, 0], [0, 1, 0, 0]], float))
    dist = compare.layer_distribution(A, np.array([0, 0, 1, 1]), atoms=[0])
    assert dist.to_dict() == {0: 0.5, 1: 0.5}


def test_bootstrap_interval_contains_mean():
    m, lo, hi = compare.bootstrap_mean(np.array([0.1, 0.2, 0.3, 0.15, 0.25]), seed=0)
    assert lo <= m <= hi and m == pytest.approx(0.2)


# --------------------------------------------------------------------------- coupling bootstrap
@pytest.fixture(scope="module")
def boot_setup():
    """8 subjects' maps of 6 atoms on an 8 mm grid with 4 Seitzman networks: atom 0 active on
    network 0 in every subject, atom 1 deactive on network 1 in every subject, atom 2 active on
    network 2 in half of the subjects only, atoms 3-5 noise."""
    from nilearn.datasets import load_mni152_brain_mask
    from scipy.ndimage import gaussian_filter

    from llmbrain_utils import fbn

    mask = load_mni152_brain_mask(resolution=8)
    grid = np.asarray(mask.dataobj) != 0
    full = fbn.seitzman_atlas(mask)
    sizes = full.masks.sum(1)
    atlas = full.select([full.network_names[j] for j in np.argsort(-sizes)[:4]])
    rng = np.random.default_rng(0)
    vols = np.zeros((4,) + grid.shape)
    vols[:, grid] = atlas.masks
    sig = np.array([gaussian_filter(v, 0.8)[grid] for v in vols])
    sig /= sig.std(1, keepdims=True)
    S, k, V = 8, 6, int(grid.sum())
    betas = np.empty((S, k, V))
    for s in range(S):
        for a in range(k):
            noise = gaussian_filter(rng.standard_normal(grid.shape), 1.0)[grid]
            betas[s, a] = 0.6 * noise / noise.std()
        betas[s, 0] += sig[0]
        betas[s, 1] -= sig[1]
        if s < 4:
            betas[s, 2] += 1.2 * sig[2]
    return betas, atlas


@pytest.mark.parametrize("n_screen", [50, 10, 500])
def test_bootstrap_decisions_are_the_mapping_stages(boot_setup, n_screen):
    """Full sample and every resample: the same couplings as fbn.couple_atoms with all rotations,
    however few rotations the first stage of the sequential count meets (10 of 500: a test's
    early exceedances say little about its p; all 500: no sequential stage)."""
    from llmbrain_utils import fbn

    betas, atlas = boot_setup
    null = compare.SpinNull(atlas, n_perm=500, seed=0)
    b = compare.bootstrap_couplings(betas, atlas, n_perm=500, n_boot=8, seed=0, null=null,
                                    n_screen=n_screen)
    ref = fbn.couple_atoms(fbn.group_t(betas), atlas, n_perm=500, seed=0)
    got = b.observed_table
    cols = ["atom", "network", "sign"]
    assert got[cols].values.tolist() == ref[cols].values.tolist()
    np.testing.assert_allclose(got.dice.to_numpy(), ref.dice.to_numpy())
    assert got.coupled.tolist() == ref.coupled.tolist() and ref.coupled.sum() >= 2
    sure = ref.coupled.to_numpy()
    np.testing.assert_allclose(got.p.to_numpy()[sure], ref.p.to_numpy()[sure])  # counted in full
    picks = np.random.default_rng(0).integers(0, betas.shape[0], size=(8, betas.shape[0]))
    for i, pick in enumerate(picks):
        r = fbn.couple_atoms(fbn.group_t(betas[pick]), atlas, n_perm=500, seed=0)
        c = r[r.coupled]
        assert b.draws["couplings"][i] == len(c)
        assert b.draws["networks_involved"][i] == c.network.nunique()
        per = c.groupby(["network", "sign"]).atom.nunique()
        for (net, sign), v in per.items():
            assert b.draws["per_network"][i, atlas.index(net), fbn.SIGNS.index(sign)] == v
    assert 0 < b.info["share_counted_in_full"] <= 1


@pytest.mark.parametrize("tail,n_screen", [("none", 50), ("gpd", 50), ("gpd", 500)])
def test_surrogate_bootstrap_decisions_are_the_mapping_stages(boot_setup, tail, n_screen):
    """The surrogate null (the default): the full sample's decisions are couple_atoms' with all
    surrogates (and its fitted tail), and every resample's are couple_atoms' on the resample's
    maps with the full sample's fields, however early the staged count stops an atom."""
    from llmbrain_utils import fbn

    betas, atlas = boot_setup
    full = fbn.group_t(betas)
    null = fbn.SurrogateNull(atlas, full, 500, 0)
    b = compare.bootstrap_couplings(betas, atlas, n_perm=500, n_boot=6, seed=0, null=null,
                                    n_screen=n_screen, tail=tail)
    ref = fbn.couple_atoms(full, atlas, n_perm=500, seed=0, null="surrogate", tail=tail)
    assert b.observed_table.coupled.tolist() == ref.coupled.tolist() and ref.coupled.sum() >= 2
    sure = ref.coupled.to_numpy()
    np.testing.assert_allclose(b.observed_table.p.to_numpy()[sure], ref.p.to_numpy()[sure])
    picks = np.random.default_rng(0).integers(0, betas.shape[0], size=(6, betas.shape[0]))
    for i, pick in enumerate(picks):
        r = fbn.couple_atoms(fbn.group_t(betas[pick]), atlas, n_perm=500, seed=0,
                             null="surrogate", tail=tail, surrogates=null)
        c = r[r.coupled]
        assert b.draws["couplings"][i] == len(c)
        per = c.groupby(["network", "sign"]).atom.nunique()
        for (net, sign), v in per.items():
            assert b.draws["per_network"][i, atlas.index(net), fbn.SIGNS.index(sign)] == v
    assert b.info["null"] == "surrogate" and b.info["tail"] == tail
    if n_screen < 500:
        assert b.info["share_counted_in_full"] < 1


def test_surrogate_null_refuses_other_settings(boot_setup):
    from llmbrain_utils import fbn

    betas, atlas = boot_setup
    full = fbn.group_t(betas)
    null = fbn.SurrogateNull(atlas, full, 200, 0)
    with pytest.raises(ParameterError, match="surrogates"):
        fbn.couple_atoms(full, atlas, n_perm=200, seed=1, null="surrogate", surrogates=null)
    with pytest.raises(ParameterError, match="surrogates"):
        fbn.couple_atoms(full, atlas, n_perm=200, seed=0, null="spin", surrogates=null)
    with pytest.raises(ParameterError, match="tail"):
        compare.bootstrap_couplings(betas, atlas, n_perm=200, n_boot=2, tail="gpd",
                                    null=compare.SpinNull(atlas, 200, 0))


def test_bootstrap_decisions_exact_with_many_tests_near_the_cut_off(boot_setup):
    """Forty atoms of graded strength: many p values near the BH cut-off, where a test's first
    rotations can show several exceedances by chance although its full p passes. The
    sequential count must still give the decisions of all rotations."""
    from scipy.ndimage import gaussian_filter

    from llmbrain_utils import fbn

    betas0, atlas = boot_setup
    S, _, V = betas0.shape
    k = 40
    rng = np.random.default_rng(3)
    mask = atlas.mask_img
    grid = np.asarray(mask.dataobj) != 0
    betas = np.empty((S, k, V))
    for s in range(S):
        for a in range(k):
            noise = gaussian_filter(rng.standard_normal(grid.shape), 1.0)[grid]
            sig = atlas.masks[a % 4].astype(float)
            betas[s, a] = noise / noise.std() + 0.5 * (a / k) * sig * (1 if a % 2 else -1)
    null = compare.SpinNull(atlas, n_perm=500, seed=0)
    for n_screen in (10, 30):
        b = compare.bootstrap_couplings(betas, atlas, n_perm=500, n_boot=6, seed=0, null=null,
                                        n_screen=n_screen)
        ref = fbn.couple_atoms(fbn.group_t(betas), atlas, n_perm=500, seed=0)
        assert b.observed_table.coupled.tolist() == ref.coupled.tolist()
        assert 5 <= ref.coupled.sum()
        assert ((ref.p > 0.005) & (ref.p < 0.1)).sum() >= 10  # tests near the cut-off
        picks = np.random.default_rng(0).integers(0, S, size=(6, S))
        for i, pick in enumerate(picks):
            r = fbn.couple_atoms(fbn.group_t(betas[pick]), atlas, n_perm=500, seed=0)
            assert b.draws["couplings"][i] == int(r.coupled.sum()), (n_screen, i)


def test_sequential_counts_give_the_bh_decisions_of_all_rotations(boot_setup):
    """Observed Dice chosen adversarially: tests whose few exceedances over 3,000 rotations
    (p <= 0.005, they pass BH) fall 3 or more in the first 200 rotations, so that they look
    like p > 0.01 early (a rule that stopped such tests dropped real couplings), among sure
    couplings (one exceedance) and null tests (1,500). The sequential count must give the
    decisions of all rotations."""
    from scipy.ndimage import gaussian_filter

    from llmbrain_utils import fbn

    _, atlas = boot_setup
    P, alpha = 3000, 0.05
    null = compare.SpinNull(atlas, n_perm=P, seed=0)
    grid = np.asarray(atlas.mask_img.dataobj) != 0
    rng = np.random.default_rng(5)
    maps = np.array([gaussian_filter(rng.standard_normal(grid.shape), 1.0)[grid] for _ in range(120)])
    parts, _ = fbn.threshold_maps(maps, "top10%")
    inter = np.stack([null._overlaps(np.flatnonzero(row), slice(0, P)) for row in parts])
    dice_null = 2 * inter / (parts.sum(1)[:, None, None] + null.rot_sizes[None])  # (m, P, n)
    order = np.argsort(-dice_null, axis=1, kind="stable")
    ranked = np.take_along_axis(dice_null, order, axis=1)
    j3 = (np.cumsum(order < 200, axis=1) >= 3).argmax(1)  # rank where 3 early rotations are in
    rank = np.full(j3.shape, 1500)
    rank[j3 < 12] = j3[j3 < 12]  # adversarial: <= 12 exceedances, 3 of them early
    rank.ravel()[np.flatnonzero(j3.ravel() >= 12)[:30]] = 0  # sure couplings
    observed = np.take_along_axis(ranked, rank[:, None, :], axis=1)[:, 0]
    truth = (dice_null >= observed[:, None] - 1e-9).sum(1)  # the counts over all rotations
    early = (dice_null[:, :200] >= observed[:, None] - 1e-9).sum(1)
    p_true = (1.0 + truth) / (1.0 + P)
    want = compare.bh_reject(p_true.ravel(), alpha).reshape(p_true.shape)
    hard = (early >= 3) & want
    assert want.sum() >= 40 and hard.sum() >= 5
    # what stopping after 200 rotations at more than 2 exceedances would have decided
    screened = np.where(early <= 2, truth, early * P / 200)
    assert compare.bh_reject(((1.0 + screened) / (1.0 + P)).ravel(), alpha).sum() < want.sum()
    for n_screen, growth in ((200, 5), (50, 2), (P, 5)):
        counts, complete = null.counts(parts, observed, alpha=alpha, n_screen=n_screen, growth=growth)
        p = (1.0 + counts) / (1.0 + P)
        assert np.array_equal(compare.bh_reject(p.ravel(), alpha).reshape(p.shape), want)
        assert np.array_equal(counts[complete], truth[complete]) and complete[want].all()
        if n_screen < P:
            assert complete.mean() < 0.5  # and it saved work
    generic = copy.copy(null)  # the path for atlases whose networks overlap (no label per voxel)
    generic.labels_t = None
    assert all(np.array_equal(a, b) for a, b in zip(
        generic.counts(parts, observed, alpha=alpha), null.counts(parts, observed, alpha=alpha)))


def test_bootstrap_intervals_follow_the_subjects(boot_setup):
    betas, atlas = boot_setup
    b = compare.bootstrap_couplings(betas, atlas, n_perm=500, n_boot=60, seed=0, n_screen=50)
    net = b.per_network.set_index(["network", "sign"])
    names = atlas.network_names
    steady = [net.loc[(names[0], "active")], net.loc[(names[1], "deactive")]]
    for row in steady:  # a coupling in every subject: in (nearly) every resample
        assert row.observed == 1 and row.ci_low == 1 and row.boot_mean > 0.95
    half = b.draws["per_network"][:, 2, 0]  # network 2, active: carried by half of the subjects
    assert 0 < half.mean() < 1
    for sign in ("active", "deactive"):  # nothing planted there: rare chance couplings only
        assert net.loc[(names[3], sign)].observed == 0 and net.loc[(names[3], sign)].boot_mean <= 0.1
    for m in ("networks_involved", "atoms_coupled", "couplings"):
        obs, lo, hi = b.interval(m)
        assert lo <= hi and b.draws[m].shape == (60,)
    assert b.interval("networks_involved")[1] >= 2
    again = compare.bootstrap_couplings(betas, atlas, n_perm=500, n_boot=60, seed=0, n_screen=50)
    assert again.per_network.equals(b.per_network)


def test_resampled_group_t_equals_group_maps_of_the_resample(boot_setup):
    from llmbrain_utils import encoding, fbn

    betas, _ = boot_setup
    picks = np.array([[0, 0, 1, 2, 3, 3, 7, 7], [5] * 8, list(range(8))])
    t = compare.resampled_group_t(betas, picks)
    for i in (0, 2):
        np.testing.assert_allclose(t[i], fbn.group_t(betas[picks[i]]), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(t[i], encoding.group_maps(betas[picks[i]]).t, rtol=1e-8, atol=1e-8)
    assert np.all(t[1] == 0)  # one subject repeated: no variance, no t


def test_bootstrap_refuses_bad_input(boot_setup):
    from llmbrain_utils.errors import InputError, ParameterError

    betas, atlas = boot_setup
    with pytest.raises(ParameterError, match="n_boot"):
        compare.bootstrap_couplings(betas, atlas, n_boot=0)
    with pytest.raises(InputError, match="voxels"):
        compare.bootstrap_couplings(betas[:, :, :-1], atlas)
    with pytest.raises(ParameterError, match="betas"):
        compare.bootstrap_couplings(betas[:1], atlas)
    with pytest.raises(ParameterError, match="perms"):
        compare.SpinNull(atlas, n_perm=100, perms=np.zeros((5, 3), int))
    with pytest.raises(ParameterError, match="null"):
        compare.bootstrap_couplings(betas, atlas, n_perm=100, null=compare.SpinNull(atlas, n_perm=50))
    with pytest.raises(ParameterError, match="ci"):
        compare.bootstrap_couplings(betas, atlas, ci=1.5)


def test_run_variants_checks_its_parameters_before_any_work():
    """The variants are a sweep's named points: every one is checked before a cluster starts."""
    from pathlib import Path

    from llmbrain_utils import config, sweep
    from llmbrain_utils.errors import InputError, ParameterError

    base = config.validate({"runs_dir": "/nonexistent-never-written"})
    with pytest.raises(ParameterError, match="n_workers"):
        sweep.run_variants(base, [{"name": "a"}], n_workers=0)
    with pytest.raises(InputError, match=r"points\[1\]\.name"):
        sweep.run_variants(base, [{"name": "a"}, {"name": "a", "k": 8}])
    with pytest.raises(ParameterError, match="'k'.*grid point"):
        sweep.run_variants(base, [{"name": "a", "k": 0}])
    with pytest.raises(InputError, match=r"points\[0\]"):
        sweep.run_variants(base, [{"model": "x"}])
    with pytest.raises(ParameterError, match=r"points\[0\]\.n_workers"):
        sweep.run_variants(base, [{"name": "a", "n_workers": 3}])
    with pytest.raises(InputError, match="no-such-model"):
        sweep.run_variants(base, [{"name": "a", "model": "no-such-model"}])
    assert not Path("/nonexistent-never-written").exists()


# --------------------------------------------------------------------------- coupling strength, subsampling
def _planted(S=8, k=4, V=600, amps=(0.8, 0.6, 0.0, 0.0), seed=0, noise=1.0):
    """Three block networks; atom a's true map is amps[a] times its network's indicator plus
    a fixed weak background; subjects add independent Gaussian noise."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((3, V), bool)
    for j in range(3):
        masks[j, j * V // 4:(j + 1) * V // 4] = True
    mu = 0.2 * np.random.default_rng(99).standard_normal((k, V))
    for a in range(k):
        mu[a] += amps[a] * masks[a % 3]
    return mu[None] + noise * rng.standard_normal((S, k, V)), masks, mu


def test_subsampling_never_duplicates_a_subject_and_is_seeded():
    picks = compare.subsample_picks(8, 6, 1000, seed=3)
    assert picks.shape == (1000, 6) and picks.min() >= 0 and picks.max() <= 7
    assert (np.diff(picks, axis=1) > 0).all()  # sorted rows, no subject twice
    assert len({tuple(r) for r in picks}) == 28  # every subset of 6 of 8 drawn
    betas, masks, _ = _planted()
    a = compare.subsample_interval(betas, masks, m=5, n_resamples=300, seed=7)
    b = compare.subsample_interval(betas, masks, m=5, n_resamples=300, seed=7)
    c = compare.subsample_interval(betas, masks, m=5, n_resamples=300, seed=8)
    assert (np.diff(a.picks, axis=1) > 0).all() and a.picks.shape == (300, 5)
    np.testing.assert_array_equal(a.picks, b.picks)
    np.testing.assert_array_equal(a.values, b.values)
    assert a.as_tuple() == b.as_tuple()
    assert not np.array_equal(a.picks, c.picks)
    assert a.lo <= a.estimate <= a.hi
    assert a.full_sample == pytest.approx(compare.model_coupling(betas, masks))


def test_subsample_values_are_the_statistic_of_each_subset():
    betas, masks, _ = _planted(S=6)
    res = compare.subsample_interval(betas, masks, m=4, n_resamples=20, seed=1)
    for row, v in zip(res.picks[:5], res.values[:5]):
        assert v == pytest.approx(compare.model_coupling(betas[row], masks), abs=1e-12)
    plain = compare.subsample_interval(betas, masks, m=4, n_resamples=20, seed=1, statistic="r")
    from llmbrain_utils import fbn
    assert plain.values[0] == pytest.approx(
        compare.coupling_strength(fbn.group_t(betas[plain.picks[0]]), masks), abs=1e-12)


def test_corrected_statistic_removes_the_attenuation():
    """With noisy subjects the plain |r| of the group t maps is far below the noise-free value;
    the corrected statistic is close to it (average of a few draws)."""
    _, masks, mu = _planted()
    truth = compare.coupling_strength(mu, masks)
    plain, corr = [], []
    for seed in range(5):
        betas, _, _ = _planted(seed=seed, noise=1.0)
        plain.append(compare.model_coupling(betas, masks, statistic="r"))
        corr.append(compare.model_coupling(betas, masks))
    assert abs(np.mean(corr) - truth) < 0.05 < truth - np.mean(plain)
    # noise-free subjects: the corrected statistic is the plain correlation of the true maps
    same = np.repeat(mu[None], 4, axis=0)
    assert compare.model_coupling(same, masks) == pytest.approx(truth, abs=1e-9)


def test_paired_differences_of_a_model_with_itself_are_zero():
    betas, masks, _ = _planted()
    d = compare.paired_differences({"a": betas, "b": betas.copy()}, masks, n_resamples=200)
    row = d.iloc[0]
    assert (row.model_a, row.model_b) == ("a", "b")
    assert row.difference == 0 and row.ci_low == 0 and row.ci_high == 0 and row.p == 1
    assert row.estimate_a == row.estimate_b


def test_paired_differences_find_the_stronger_planted_coupling():
    strong, masks, _ = _planted(amps=(0.8, 0.8, 0.8, 0.0), seed=1)
    weak, _, _ = _planted(amps=(0.3, 0.3, 0.3, 0.0), seed=2)
    d = compare.paired_differences({"weak": weak, "strong": strong, "weak2": weak[:, :3]}, masks,
                                   n_resamples=1000, seed=0)
    assert list(zip(d.model_a, d.model_b)) == [("weak", "strong"), ("weak", "weak2"), ("strong", "weak2")]
    ws = d.iloc[0]
    assert ws.difference < 0 and ws.ci_high < 0 and ws.p < 0.05
    assert ws.estimate_b > ws.estimate_a
    assert d.attrs["picks"].shape == (1000, 4)  # default m = S // 2
    one = compare.subsample_interval(strong, masks, seed=0)
    assert one.estimate == pytest.approx(ws.estimate_b)


def test_subsampling_refuses_bad_input():
    from llmbrain_utils.errors import ParameterError

    betas, masks, _ = _planted()
    bad = [dict(m=8), dict(m=1), dict(m=2.5), dict(n_resamples=0), dict(ci=1.5), dict(rescale="x"),
           dict(statistic="dice"), dict(seed=-1)]
    for kw in bad:
        with pytest.raises(ParameterError, match=next(iter(kw))):
            compare.subsample_interval(betas, masks, **kw)
    with pytest.raises(ParameterError, match="betas"):
        compare.subsample_interval(betas[0], masks)
    with pytest.raises(ParameterError, match="betas"):
        compare.subsample_interval(betas[:2], masks)
    nan = betas.copy()
    nan[0, 0, 0] = np.nan
    with pytest.raises(ParameterError, match="non-finite"):
        compare.subsample_interval(nan, masks)
    with pytest.raises(ParameterError, match="masks"):
        compare.subsample_interval(betas, masks[:, :-1])
    empty = masks.copy()
    empty[1] = False
    with pytest.raises(ParameterError, match="masks"):
        compare.subsample_interval(betas, empty)
    with pytest.raises(ParameterError, match="masks"):
        compare.subsample_interval(betas, masks.astype(int))
    with pytest.raises(ParameterError, match="betas_by_model"):
        compare.paired_differences({"a": betas}, masks)
    with pytest.raises(ParameterError, match="betas_by_model"):
        compare.paired_differences({"a": betas, "b": betas[:7]}, masks)
    with pytest.raises(ParameterError, match="m"):
        compare.paired_differences({"a": betas, "b": betas}, masks, m=8)
    with pytest.raises(ParameterError, match="parameter .m."):
        compare.subsample_picks(8, 8, 10)
