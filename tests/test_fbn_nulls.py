"""The mapping's nulls on maps whose truth is known: the tissue-conditioned surrogate null, the
generalised Pareto tail of the p values against a brute-force null, and their parameter errors.

Full-size calibration (the 6 mm grid, 512 maps per noise model, every null) is
benchmarks/null_calibration.py; these are small versions on the 12 mm grid."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.ndimage import gaussian_filter

from llmbrain_utils import fbn, fmri
from llmbrain_utils.errors import ParameterError


@pytest.fixture(scope="module")
def grid():
    mask_img = fmri.brain_mask(12.0)
    mask = np.asarray(mask_img.dataobj) > 0
    return mask_img, mask, fbn.load_atlas("TY7", mask_img), fbn.grey_matter(mask_img)


def _noise(mask, n, sigma, seed):
    e = gaussian_filter(np.random.default_rng(seed).standard_normal((n, *mask.shape)),
                        (0, sigma, sigma, sigma), mode="nearest")[:, mask]
    return (e - e.mean(1, keepdims=True)) / e.std(1, keepdims=True)


def _lag1(mask, z):
    """Mean correlation of mask voxels with their +1 neighbour along each axis."""
    ijk = np.argwhere(mask)
    index = -np.ones(mask.shape, int)
    index[mask] = np.arange(mask.sum())
    rs = []
    for ax in range(3):
        nb = ijk.copy()
        nb[:, ax] += 1
        ok = nb[:, ax] < mask.shape[ax]
        j = index[tuple(nb[ok].T)]
        i = np.nonzero(ok)[0][j >= 0]
        j = j[j >= 0]
        rs += [np.corrcoef(row[i], row[j])[0, 1] for row in z]
    return float(np.mean(rs))


def test_grey_matter_is_a_probability_on_the_mask(grid):
    mask_img, mask, _, gm = grid
    assert gm.shape == (mask.sum(),)
    assert gm.min() >= 0 and gm.max() <= 1 and 0.2 < gm.mean() < 0.8


def test_tissue_model_recovers_mean_and_spread(grid):
    _, mask, _, gm = grid
    z = _noise(mask, 8, 1.0, 0)
    x = 2.0 + 3.0 * gm + (0.5 + 2.0 * gm) * z
    mu, sd, zz = fbn.tissue_model(x, gm)
    np.testing.assert_allclose(mu.mean(1), x.mean(1), rtol=1e-9)
    ratio = sd[:, gm > 0.8].mean() / sd[:, gm < 0.1].mean()
    assert 2.0 < ratio < 5.0  # true ratio (0.5 + 2 * ~0.9) / (0.5 + 2 * ~0.05) ~ 3.8
    assert abs(zz.std() - 1) < 0.2


@pytest.mark.parametrize("sigma", [0.8, 1.5])
def test_surrogate_fields_keep_the_maps_smoothness(grid, sigma):
    _, mask, atlas, gm = grid
    z = _noise(mask, 32, sigma, 1)
    fields = fbn.surrogate_fields(z, atlas.mask_img, 64, seed=0)
    assert fields.shape == (64, mask.sum()) and fields.dtype == np.float32
    np.testing.assert_allclose(fields.std(1), 1, atol=1e-4)
    assert abs(_lag1(mask, fields) - _lag1(mask, z)) < 0.05
    again = fbn.surrogate_fields(z, atlas.mask_img, 64, seed=0)
    np.testing.assert_array_equal(fields, again)


def test_surrogate_null_valid_on_grey_matter_weighted_maps(grid):
    """Null maps whose spread and mean follow grey matter: the surrogate null keeps the share of
    p <= 0.05 near 0.05 (the full-size measurement is benchmarks/null_calibration.json)."""
    _, mask, atlas, gm = grid
    rng = np.random.default_rng(7)
    x = _noise(mask, 192, 0.85, 2) * (0.25 + gm) + 0.5 * rng.standard_normal((192, 1)) * gm
    p = np.concatenate([fbn.couple_atoms(x[i:i + 64], atlas, n_perm=200, null="surrogate",
                                         statistic="r").p.to_numpy() for i in range(0, 192, 64)])
    share = float((p <= 0.05).mean())
    assert 0.6 * 0.05 < share < 1.4 * 0.05, share


def test_surrogate_null_finds_a_planted_network(grid):
    _, mask, atlas, gm = grid
    x = _noise(mask, 4, 0.85, 3) * (0.25 + gm)
    x[0] += 1.0 * atlas.masks[0]
    t = fbn.couple_atoms(x, atlas, n_perm=200, null="surrogate", statistic="r")
    row = t[(t.atom == 0) & (t.network == atlas.network_names[0]) & (t.sign == "active")]
    assert float(row.p.iloc[0]) <= 2 / 201
    assert t.attrs["null"] == "surrogate"


def test_gpd_tail_of_a_known_distribution():
    rng = np.random.default_rng(0)
    null = rng.exponential(1.0, 5000)
    for true_p in (1e-4, 1e-5):
        p = fbn.gpd_tail_p(null, -np.log(true_p))
        assert true_p / 3 < p < true_p * 3, (true_p, p)
    # a bounded null (uniform) beyond its end: never p = 0, never above the tail's share
    p = fbn.gpd_tail_p(rng.uniform(size=2000), 1.2)
    assert 0 < p <= 250 / 2000


def test_gpd_tail_against_brute_force(grid):
    """Tests at the floor of 1,000 rotations: the tail p is within a factor of ~3 of the p of
    40,000 rotations (where that is resolvable) and never more than 5x below it."""
    _, mask, atlas, _ = grid
    n = 48
    amp = np.linspace(0.1, 0.5, n) * np.where(np.arange(n) % 2, 1, -1)
    e = _noise(mask, n, 1.0, 0)
    maps = e + amp[:, None] * atlas.masks[np.arange(n) % atlas.n_networks]
    big = fbn.couple_atoms(maps, atlas, n_perm=40000, statistic="dice")
    tail = fbn.couple_atoms(maps, atlas, n_perm=1000, statistic="dice", seed=3, tail="gpd")
    plain = fbn.couple_atoms(maps, atlas, n_perm=1000, statistic="dice", seed=3)
    assert (tail.p <= plain.p).all()
    sel = ((plain.p <= 5 / 1001) & (big.p >= 5 / 40001) & (big.p < 0.01)).to_numpy()
    assert sel.sum() >= 3
    d = np.log10(tail.p.to_numpy()[sel] / big.p.to_numpy()[sel])
    assert abs(np.median(d)) < 0.3 and d.min() > -0.7, d
    # below the floor of 1,000 rotations where the brute force is too
    deep = ((plain.p <= 1 / 1001) & (big.p <= 1 / 40001)).to_numpy()
    if deep.any():
        assert (tail.p.to_numpy()[deep] < 1 / 1001).all()


def test_tail_and_null_errors(grid):
    _, mask, atlas, _ = grid
    x = _noise(mask, 2, 1.0, 4)
    with pytest.raises(ParameterError, match="tail"):
        fbn.couple_atoms(x, atlas, n_perm=100, tail="pareto")
    with pytest.raises(ParameterError, match="tail"):
        fbn.couple_atoms(None, atlas, subject_maps=np.stack([x, x + 1]), null="signflip",
                         n_perm=100, tail="gpd")
    with pytest.raises(ParameterError, match="null"):
        fbn.couple_atoms(x, atlas, n_perm=100, null="rotate")
    with pytest.raises(ParameterError, match="null values"):
        fbn.gpd_tail_p(np.arange(10.0), 20.0)


def test_a_surface_atlas_brings_the_sphere_s_rotations():
    """A surface atlas draws the sphere's spin itself (NetworkAtlas.spin_permutations), so
    couple_atoms and threshold_sensitivity need no perms for it and agree with couple_surface;
    select keeps the rotations and drops the label image. An atlas with neither a volume mask
    nor rotations, and the surrogate null on a surface, are refused with the way out."""
    from llmbrain_utils import surface as S

    atlas = S.load_surface_atlas("TY7", "fsaverage5")
    sub = atlas.select(list(atlas.network_names[:3]))
    assert sub.label_img is None and sub.masks.shape == (3, atlas.n_voxels)
    np.testing.assert_array_equal(sub.spin_permutations(20, 1), S.surface_spin_permutations(20, seed=1))
    maps = np.random.default_rng(0).standard_normal((2, atlas.n_voxels))
    direct = fbn.couple_atoms(maps, atlas, n_perm=100, seed=3)
    via_surface = S.couple_surface(maps, atlas, n_perm=100, seed=3)
    pd.testing.assert_frame_equal(direct, via_surface, check_like=True)
    sens = fbn.threshold_sensitivity(maps, atlas, thresholds=["top10%"], n_perm=100, seed=3)
    assert sens.n_coupled[0] == direct.coupled.sum()
    bare = fbn.NetworkAtlas(atlas.name, atlas.network_names, atlas.masks, None, None)
    with pytest.raises(ParameterError, match="surface_spin_permutations"):
        fbn.couple_atoms(maps, bare, n_perm=100)
    with pytest.raises(ParameterError, match="surface"):
        fbn.couple_atoms(maps, atlas, n_perm=100, null="surrogate")
