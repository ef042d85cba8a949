"""The surrogate null's faster paths give the same numbers, bit for bit, as the code they
replaced (kept as ``_name_reference``): the field synthesis, the null statistics of every
atlas layout and threshold rule, the correlation, and whole mappings."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from llmbrain_utils import fbn, fmri
from llmbrain_utils.fbn import overlaps, surrogate


@pytest.fixture(scope="module")
def grid():
    mask_img = fmri.brain_mask(12.0)
    mask = np.asarray(mask_img.dataobj) > 0
    return mask_img, mask, fbn.load_atlas("TY7", mask_img)


def _maps(mask, atlas, k=6, seed=0):
    rng = np.random.default_rng(seed)
    e = gaussian_filter(rng.standard_normal((k, *mask.shape)), (0, 1.0, 1.0, 1.0))[:, mask]
    e = np.ascontiguousarray(e / e.std(1, keepdims=True))  # rows in memory order, as the stage's
    for a in range(k):
        e[a] += (2.0 if a % 2 else -2.0) * atlas.masks[a % atlas.n_networks]
    return e


def _atlases(atlas):
    """The hard atlas, one with an empty network and every voxel in a network, and one whose
    networks overlap."""
    m = atlas.masks.copy()
    full = m.copy()
    full[0] |= ~m.any(0)  # no voxel of no network
    full[1] = False  # an empty network
    over = m.copy()
    over[0] |= m[1]
    return [atlas,
            dataclasses.replace(atlas, name="full", masks=full),
            dataclasses.replace(atlas, name="overlapping", masks=over)]


def test_synthesis_matches_the_full_transforms(grid):
    _, mask, _ = grid
    z = _maps(mask, grid[2], 4)
    amp, box, g = surrogate._acf_spectrum(z, mask, None, np.random.default_rng([0, 1]))
    bm = mask[box]
    for m in (1, 7):
        new = surrogate._synthesise(amp, bm, g, m, np.random.default_rng(m))
        ref = surrogate._synthesise_reference(amp, bm, g, m, np.random.default_rng(m))
        assert new.shape == ref.shape == (m, int(bm.sum()))
        assert np.array_equal(new, ref)


def test_synthesis_with_kept_arrays_matches(grid):
    """The kept working arrays (reused across chunks, resized when a chunk's size changes)
    leave every field as the full transforms give it, and surrogate_fields' chunks too."""
    _, mask, _ = grid
    z = _maps(mask, grid[2], 4)
    amp, box, g = surrogate._acf_spectrum(z, mask, None, np.random.default_rng([0, 1]))
    bm = mask[box]
    work: dict = {}
    rng, rng_ref = np.random.default_rng(5), np.random.default_rng(5)
    for m in (7, 7, 3, 7):
        new = surrogate._synthesise(amp, bm, g, m, rng, work)
        assert np.array_equal(new, surrogate._synthesise_reference(amp, bm, g, m, rng_ref))
    fields = fbn.surrogate_fields(z, grid[2].mask_img, 17, seed=2, chunk=7)
    rng = np.random.default_rng(2)
    amp, box, g = surrogate._acf_spectrum(z, mask, None, np.random.default_rng([2, 1]))
    for start in range(0, 17, 7):
        f = surrogate._synthesise_reference(amp, bm, g, min(7, 17 - start), rng)
        f -= f.mean(1, keepdims=True)
        f /= np.maximum(f.std(1, keepdims=True), 1e-12)
        assert np.array_equal(fields[start:start + 7], f.astype(np.float32))


def test_fields_are_kept_for_the_same_inputs(grid):
    _, mask, atlas = grid
    z = _maps(mask, atlas, 3)
    a = fbn.surrogate_fields(z, atlas.mask_img, 11, seed=4)
    assert not a.flags.writeable
    assert fbn.surrogate_fields(z.copy(), atlas.mask_img, 11, seed=4) is a
    b = fbn.surrogate_fields(z, atlas.mask_img, 11, seed=5)  # any input differs: drawn anew
    z2 = z.copy()
    z2[0, 0] += 1e-12
    c = fbn.surrogate_fields(z2, atlas.mask_img, 11, seed=4)
    assert b is not a and c is not a and not np.array_equal(b, a)
    d = fbn.surrogate_fields(z, atlas.mask_img, 11, seed=4)  # the one kept now is c's
    assert d is not a and np.array_equal(d, a)


def test_corr_matches_the_reference(grid):
    _, mask, atlas = grid
    x = _maps(mask, atlas, 5)
    ref = overlaps._corr_reference(x, atlas.masks)
    assert np.array_equal(overlaps._corr(x, atlas.masks), ref, equal_nan=True)
    y = x.copy()
    assert np.array_equal(overlaps._corr(y, atlas.masks, overwrite=True), ref, equal_nan=True)
    y, sq = x.copy(), np.empty_like(x)
    assert np.array_equal(overlaps._corr(y, atlas.masks, overwrite=True, square=sq), ref,
                          equal_nan=True)


@pytest.mark.parametrize("threshold", ["top10%", "top30%", "top2%", 1.5])
def test_null_values_match_the_reference(grid, threshold):
    _, mask, atlas = grid
    maps = _maps(mask, atlas)
    gm = fbn.grey_matter(atlas.mask_img)
    for at in _atlases(atlas):
        null = fbn.SurrogateNull(at, maps, 120, seed=3, gm=gm)
        assert np.array_equal(null.fields,
                              fbn.surrogate_fields(null._tissue[2], at.mask_img, 120, seed=3, gm=gm))
        mu, sd, z = null._tissue
        for a in (0, 3):
            scale = (sd[a] * z[a].std()).astype(np.float32)
            mu32 = mu[a].astype(np.float32)
            for rows in (slice(0, 120), slice(7, 50)):
                for stat in ("dice", "r"):
                    new = null.values(mu32, scale, rows, threshold, stat)
                    ref = null._values_reference(mu32, scale, rows, threshold, stat)
                    assert new.dtype == ref.dtype and np.array_equal(new, ref), (at.name, stat)


def _reference_paths(monkeypatch):
    monkeypatch.setattr(surrogate, "_synthesise",
                        lambda amp, bm, grid, m, rng, work=None:
                        surrogate._synthesise_reference(amp, bm, grid, m, rng))
    monkeypatch.setattr(surrogate.SurrogateNull, "values", surrogate.SurrogateNull._values_reference)
    monkeypatch.setattr(surrogate, "_corr", overlaps._corr_reference)
    monkeypatch.setattr(fbn.coupling, "_corr", overlaps._corr_reference)


def test_couplings_match_the_reference(grid, monkeypatch):
    _, mask, atlas = grid
    maps = _maps(mask, atlas, 8, seed=1)
    kw = dict(n_perm=200, seed=0, null="surrogate", tail="gpd", alpha=0.1)
    new = {s: fbn.couple_atoms(maps, atlas, statistic=s, **kw) for s in ("dice", "r")}
    null = fbn.SurrogateNull(atlas, maps, 200, 0)
    screened = null.counts(maps, new["dice"].dice.to_numpy().reshape(8, -1, 2).transpose(2, 0, 1)
                           .reshape(16, -1), "top10%", "dice", alpha=0.1, n_screen=50)
    with monkeypatch.context() as mp:
        _reference_paths(mp)
        ref = {s: fbn.couple_atoms(maps, atlas, statistic=s, **kw) for s in ("dice", "r")}
        null = fbn.SurrogateNull(atlas, maps, 200, 0)
        screened_ref = null.counts(maps, new["dice"].dice.to_numpy().reshape(8, -1, 2)
                                   .transpose(2, 0, 1).reshape(16, -1), "top10%", "dice",
                                   alpha=0.1, n_screen=50)
    for s in ("dice", "r"):
        assert new[s].equals(ref[s]), s
        assert np.array_equal(new[s].attrs["p_count"], ref[s].attrs["p_count"])
    for x, y in zip(screened, screened_ref):
        assert np.array_equal(x, y)


def test_the_surrogate_null_in_blocks_of_atoms_is_couple_atoms_bit_for_bit(grid):
    """surrogate_counts_block over blocks of atoms, put side by side and passed as
    null_counts: couple_atoms' table bit for bit (the mapping stage's fan-out), for both
    statistics, with and without the tail fit; a bad null_counts is named."""
    from llmbrain_utils.errors import ParameterError

    _, mask, atlas = grid
    maps = _maps(mask, atlas, 7, seed=2)
    n = atlas.n_networks
    for statistic in ("dice", "r"):
        for tail in ("none", "gpd"):
            kw = dict(threshold="top10%", n_perm=120, seed=1, statistic=statistic, tail=tail)
            ref = fbn.couple_atoms(maps, atlas, null="surrogate", alpha=0.1, **kw)
            counts = np.zeros((2, 7, n))
            values = np.zeros((2, 7, 120, n), np.float32)
            for b in (slice(0, 3), slice(3, 6), slice(6, 7)):
                c, v = fbn.surrogate_counts_block(maps, atlas, np.arange(7)[b], **kw)
                counts[:, b] = c
                if tail == "gpd":
                    values[:, b] = v
                else:
                    assert v is None
            got = fbn.couple_atoms(maps, atlas, null="surrogate", alpha=0.1, null_counts=(
                counts.reshape(14, n), values.reshape(14, 120, n) if tail == "gpd" else None),
                **kw)
            assert got.equals(ref), (statistic, tail)
            assert np.array_equal(got.attrs["p_count"], ref.attrs["p_count"])
    with pytest.raises(ParameterError, match="null_counts"):
        fbn.couple_atoms(maps, atlas, null="spin", n_perm=120, null_counts=(counts, None))
    with pytest.raises(ParameterError, match="atoms"):
        fbn.surrogate_counts_block(maps, atlas, [7])


def test_the_spin_null_in_blocks_of_rotations_is_couple_atoms_bit_for_bit(grid):
    """spin_counts_block over blocks of rotations starting at multiples of 64, summed and side
    by side, passed as null_counts: couple_atoms' table bit for bit (the mapping stage's
    fan-out of the spin null), for both statistics, with and without the tail fit."""
    from llmbrain_utils.errors import ParameterError

    _, mask, atlas = grid
    maps = _maps(mask, atlas, 5, seed=4)
    perms = atlas.spin_permutations(150, 2)
    for statistic in ("dice", "r"):
        for tail in ("none", "gpd"):
            kw = dict(threshold="top10%", n_perm=150, seed=2, statistic=statistic, tail=tail)
            ref = fbn.couple_atoms(maps, atlas, null="spin", alpha=0.1, perms=perms, **kw)
            parts = [fbn.spin_counts_block(maps, atlas, sl, perms=perms, **kw)
                     for sl in (slice(0, 64), slice(64, 128), slice(128, 150))]
            counts = np.sum([c for c, _ in parts], axis=0)
            values = np.concatenate([v for _, v in parts], axis=1) if tail == "gpd" else None
            got = fbn.couple_atoms(maps, atlas, null="spin", alpha=0.1, perms=perms,
                                   null_counts=(counts, values), **kw)
            assert got.equals(ref), (statistic, tail)
            assert np.array_equal(got.attrs["p_count"], ref.attrs["p_count"])
    with pytest.raises(ParameterError, match="draws"):
        fbn.spin_counts_block(maps, atlas, slice(150, 160), perms=perms, n_perm=150)
