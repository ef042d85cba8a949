"""Stage 3, dictionary learning: planted-atom recovery by every solver, solver agreement,
validation, dead ANs, determinism, chunking, sub-groups, matching and sweeps."""

import math

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.utils.estimator_checks import parametrize_with_checks

from llmbrain_utils import dictionary as dl
from llmbrain_utils.errors import InputError, ParameterError

T, N, K0, LAM = 200, 2000, 12, 0.1


@pytest.fixture(scope="module")
def planted():
    X, D0, A0 = dl.planted_responses(T, N, K0, nnz=3, noise=0.3, smooth=2.0, seed=0)
    return X, D0, A0


@pytest.fixture(scope="module")
def fit_spams(planted):
    return dl.learn_dictionary(planted[0], K0, LAM, solver="spams", seed=0, n_threads=1)


@pytest.fixture(scope="module")
def fit_torch(planted):
    return dl.learn_dictionary(planted[0], K0, LAM, solver="torch", seed=0, device="cpu",
                               n_threads=1)


def an_table(n_layers, units):
    return pd.DataFrame({"layer": np.repeat(np.arange(n_layers), units),
                         "unit": np.tile(np.arange(units), n_layers)})


# --------------------------------------------------------------------------- planted atoms
def test_spams_recovers_planted_atoms(planted, fit_spams):
    m = dl.match_atoms(planted[1], fit_spams.D)
    assert m.median >= 0.95 and m.r.min() >= 0.9
    assert fit_spams.r2_overall > 0.8  # noise 0.3 x signal: R2 ceiling ~0.92
    # ~3 true loadings per AN of 12 atoms: sparse, but not absurdly so
    assert 0.6 < fit_spams.sparsity < 0.85


def test_torch_matches_spams_objective_and_recovers(planted, fit_spams, fit_torch):
    assert fit_torch.objective <= 1.01 * fit_spams.objective
    assert fit_torch.objective >= 0.97 * fit_spams.objective  # same problem, not a different one
    assert dl.match_atoms(planted[1], fit_torch.D).median >= 0.95
    assert dl.match_atoms(fit_spams.D, fit_torch.D).median >= 0.98
    assert fit_torch.info["device"] == "cpu"


def test_sklearn_sanity(planted, fit_spams):
    res = dl.learn_dictionary(planted[0], K0, LAM, solver="sklearn", seed=0, n_iter=150)
    assert res.objective <= 1.10 * fit_spams.objective
    assert dl.match_atoms(planted[1], res.D).median >= 0.9
    ev = dl.evaluate(planted[0], res.D, res.A, LAM)
    assert ev["objective"] == pytest.approx(res.objective, rel=1e-5)


def test_objective_r2_and_shared_evaluation(planted, fit_spams, fit_torch):
    X = planted[0]
    for res in (fit_spams, fit_torch):
        ev = dl.evaluate(X, res.D, res.A, LAM)
        assert ev["objective"] == pytest.approx(res.objective, rel=1e-5)
        assert ev["r2_overall"] == pytest.approx(res.r2_overall, abs=1e-6)
        np.testing.assert_allclose(ev["r2_per_an"], res.r2_per_an, atol=1e-6)
        # the formula, by hand, on unit-norm columns
        Xn = X.astype(np.float64) / np.linalg.norm(X, axis=0)
        An = res.A.toarray() / np.linalg.norm(X, axis=0)
        R = Xn - res.D.astype(np.float64) @ An
        obj = np.mean(0.5 * (R ** 2).sum(0) + LAM * np.abs(An).sum(0))
        assert res.objective == pytest.approx(obj, rel=1e-4)
        assert res.r2_overall == pytest.approx(1 - (R ** 2).sum() / (Xn ** 2).sum(), abs=1e-4)


def test_lam_scaling_convention(planted, fit_spams):
    """normalize=True with lam equals the raw z-scored problem with lam * sqrt(T)."""
    raw = dl.learn_dictionary(planted[0], K0, LAM * math.sqrt(T), solver="spams", seed=0,
                              n_threads=1, normalize=False)
    assert raw.objective / T == pytest.approx(fit_spams.objective, rel=2e-3)
    assert dl.match_atoms(raw.D, fit_spams.D).median > 0.999
    assert raw.r2_overall == pytest.approx(fit_spams.r2_overall, abs=2e-3)


# --------------------------------------------------------------------------- outputs
def test_shapes_sparse_output_and_canonical_form(planted, fit_torch):
    res = fit_torch
    assert res.D.shape == (T, K0) and res.D.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(res.D, axis=0), 1.0, atol=1e-5)
    assert sp.isspmatrix_csr(res.A) and res.A.shape == (K0, N) and res.A.dtype == np.float32
    assert res.r2_per_an.shape == (N,) and not np.isnan(res.r2_per_an).any()
    assert res.sparsity == pytest.approx(1 - res.A.nnz / (K0 * N))
    # loadings in the units of X: X ~ D A
    recon = res.D @ res.A.toarray()
    assert 1 - ((planted[0] - recon) ** 2).sum() / (planted[0] ** 2).sum() == pytest.approx(
        res.r2_overall, abs=1e-4)
    # canonical: every atom's loadings sum positive, atoms sorted by L1 mass
    assert (np.asarray(res.A.sum(axis=1)).ravel() > 0).all()
    mass = np.asarray(abs(res.A).sum(axis=1)).ravel()
    assert (np.diff(mass) <= 1e-6).all()
    assert set(res.timings) == {"validate", "learn", "encode", "total"}


def test_dead_ans_excluded_counted_and_mapped(planted):
    X = planted[0][:, :400].copy()
    X[:, [3, 50, 399]] = 0.0
    X[:, 77] = 5.0  # constant, not zero: dead all the same
    res = dl.learn_dictionary(X, 8, LAM, solver="spams", n_iter=100, n_threads=1)
    dead = np.zeros(400, bool)
    dead[[3, 50, 77, 399]] = True
    np.testing.assert_array_equal(res.excluded, dead)
    assert res.n_excluded == 4 and res.info["n_kept"] == 396
    assert np.isnan(res.r2_per_an[dead]).all() and not np.isnan(res.r2_per_an[~dead]).any()
    assert res.A.shape == (8, 400)
    assert np.diff(res.A.tocsc().indptr)[dead].sum() == 0
    assert (res.scale[dead] == 0).all()
    np.testing.assert_array_equal(dl.validate(X, 8, LAM), dead)
    # the kept ANs are fit exactly as if the dead ones were never there
    alone = dl.learn_dictionary(X[:, ~dead], 8, LAM, solver="spams", n_iter=100, n_threads=1)
    np.testing.assert_allclose(alone.D, res.D, atol=1e-6)


def test_memmap_and_chunking_give_the_same_result(planted, tmp_path, fit_torch):
    X = planted[0]
    mm = np.lib.format.open_memmap(tmp_path / "X.npy", mode="w+", dtype=np.float32,
                                   shape=X.shape)
    mm[:] = X
    mm.flush()
    mm = np.load(tmp_path / "X.npy", mmap_mode="r")
    res = dl.learn_dictionary(mm, K0, LAM, solver="torch", seed=0, device="cpu", n_threads=1,
                              chunk_mb=0.2)  # ~60-column chunks
    np.testing.assert_array_equal(res.D, fit_torch.D)
    # codes are per column, but BLAS may round a narrower product differently
    np.testing.assert_allclose(res.A.toarray(), fit_torch.A.toarray(), atol=1e-5)
    assert res.objective == pytest.approx(fit_torch.objective, rel=1e-6)


def test_save_and_load(tmp_path, fit_spams):
    fit_spams.save(tmp_path / "d")
    back = dl.load_result(tmp_path / "d")
    np.testing.assert_array_equal(back.D, fit_spams.D)
    assert (back.A != fit_spams.A).nnz == 0
    np.testing.assert_array_equal(back.r2_per_an, fit_spams.r2_per_an)
    assert back.objective == fit_spams.objective and back.solver == "spams"
    with pytest.raises(InputError, match="loadings.npz"):
        (tmp_path / "d" / "loadings.npz").unlink()
        dl.load_result(tmp_path / "d")


# --------------------------------------------------------------------------- determinism
@pytest.mark.parametrize("solver", ["torch", "spams"])
def test_same_seed_same_dictionary(planted, solver):
    X = planted[0][:, :600]
    kw = dict(solver=solver, n_iter=60, n_threads=1, device="cpu")
    a = dl.learn_dictionary(X, 8, LAM, seed=3, **kw)
    b = dl.learn_dictionary(X, 8, LAM, seed=3, **kw)
    c = dl.learn_dictionary(X, 8, LAM, seed=4, **kw)
    np.testing.assert_array_equal(a.D, b.D)
    assert (a.A != b.A).nnz == 0
    assert not np.array_equal(a.D, c.D)


def test_torch_falls_back_to_cpu(planted):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: nothing to fall back from")
    res = dl.learn_dictionary(planted[0][:, :300], 4, LAM, solver="torch", device="cuda",
                              n_iter=5)
    assert res.info["device"] == "cpu"


def test_fista_lasso_matches_spams_lasso(planted, fit_spams):
    import spams
    import torch

    Xn = planted[0][:, :500] / np.linalg.norm(planted[0][:, :500], axis=0)
    D = fit_spams.D
    ref = spams.lasso(np.asfortranarray(Xn), D=np.asfortranarray(D), lambda1=LAM, mode=2,
                      numThreads=1).toarray()
    Dt = torch.tensor(D)
    a, _ = dl.fista_lasso(Dt.T @ Dt, Dt.T @ torch.tensor(Xn), LAM, tol=1e-6, max_iter=5000)
    np.testing.assert_allclose(a.numpy(), ref, atol=2e-4)
    assert ((np.abs(a.numpy()) > 1e-3) == (np.abs(ref) > 1e-3)).mean() > 0.999


# --------------------------------------------------------------------------- validation
def test_validation_errors_name_the_problem(planted):
    X = planted[0][:, :100].copy()
    with pytest.raises(ParameterError, match="'k'.*expected k >= 1"):
        dl.validate(X, 0, LAM)
    with pytest.raises(ParameterError, match=f"exceed the {T} TRs"):
        dl.validate(X, T + 1, LAM)
    with pytest.raises(ParameterError, match="'k'.*not an integer"):
        dl.validate(X, 8.0, LAM)
    for bad in (0, -0.1, float("nan"), float("inf")):
        with pytest.raises(ParameterError, match="'lam'"):
            dl.validate(X, 8, bad)
    Y = X.copy()
    Y[17, 42] = np.nan
    with pytest.raises(InputError, match="column 42, row 17.*nan") as e:
        dl.validate(Y, 8, LAM)
    assert e.value.field == "column 42, row 17"
    Y = X.copy()
    Y[3, 5] = np.inf
    tab = an_table(2, 50)
    with pytest.raises(InputError, match="column 5, row 3.*layer 0, unit 5"):
        dl.validate(Y, 8, LAM, an_table=tab)
    Y = X[:, :10].copy()
    Y[:, :4] = 1.0
    with pytest.raises(InputError, match="only 6 usable ANs.*4 of 10 are constant"):
        dl.validate(Y, 8, LAM)
    with pytest.raises(InputError, match="not a 2-D array"):
        dl.validate(X[:, 0], 8, LAM)
    with pytest.raises(InputError, match="an_table.*3 rows but X has 100"):
        dl.validate(X, 8, LAM, an_table=an_table(1, 3))
    with pytest.raises(InputError, match="field 'layer'"):
        dl.validate(X, 8, LAM, an_table=tab.drop(columns="layer"))
    with pytest.raises(InputError, match="field 'unit'"):
        dl.validate(X, 8, LAM, an_table=tab.assign(unit=tab["unit"] * 1.0))
    with pytest.raises(ParameterError, match="'solver'"):
        dl.learn_dictionary(X, 8, LAM, solver="lars")
    with pytest.raises(ParameterError, match="'n_iter'"):
        dl.learn_dictionary(X, 8, LAM, n_iter=0)
    with pytest.raises(ParameterError, match="'batch_size'"):
        dl.learn_dictionary(X, 8, LAM, batch_size=-1)


# --------------------------------------------------------------------------- sub-groups
def test_atom_subgroups_and_layer_histogram(planted):
    X = planted[0][:, :600]
    tab = an_table(3, 200)
    X = X.copy()
    X[:, 5] = 0  # a dead AN in layer 0
    res = dl.learn_dictionary(X, 6, LAM, solver="spams", n_iter=80, n_threads=1, an_table=tab)
    sub = dl.atom_subgroups(res)
    A = res.A.toarray()
    for i in range(6):
        np.testing.assert_array_equal(sub.members[i], np.flatnonzero(A[i]))
        np.testing.assert_array_equal(sub.positive[i], np.flatnonzero(A[i] > 0))
        np.testing.assert_array_equal(sub.negative[i], np.flatnonzero(A[i] < 0))
    assert sub.layer_counts.shape == (6, 3)
    assert list(sub.layer_counts.columns) == [0, 1, 2]
    np.testing.assert_array_equal(sub.layer_counts.sum(axis=1).to_numpy(), sub.sizes)
    np.testing.assert_array_equal(sub.layer_counts[1].to_numpy(),
                                  (A[:, 200:400] != 0).sum(axis=1))
    assert 5 not in np.concatenate(sub.members)
    by = dl.reconstruction_r2_by_layer(res)
    assert list(by["layer"]) == [0, 1, 2]
    assert list(by["n_ans"]) == [200, 200, 200] and list(by["n_excluded"]) == [1, 0, 0]
    # pooled over layers, the layer R2s give back the overall R2
    sst = res.sst_per_an
    w = np.array([sst[tab["layer"].to_numpy() == L].sum() for L in range(3)])
    pooled = 1 - ((1 - by["r2"].to_numpy()) * w).sum() / w.sum()
    assert pooled == pytest.approx(res.r2_overall, abs=1e-9)
    assert dl.atom_subgroups(res, an_table=None).layer_counts is not None  # result's own table
    with pytest.raises(InputError, match="an_table"):
        dl.reconstruction_r2_by_layer(dl.learn_dictionary(X, 6, LAM, n_iter=5, n_threads=1))


def test_match_atoms_and_correlations():
    rng = np.random.default_rng(0)
    D1 = rng.standard_normal((50, 6))
    perm = np.array([3, 0, 5, 1, 4, 2])
    D2 = D1[:, perm] * np.array([1, -1, 1, -1, 1, 1]) * 3.0 + 0.5  # permuted, flipped, scaled
    m = dl.match_atoms(D1, D2)
    np.testing.assert_allclose(m.r, 1.0, atol=1e-12)
    assert m.median == pytest.approx(1.0)
    for a, b in m.pairs:
        assert perm[b] == a
    m2 = dl.match_atoms(D1, rng.standard_normal((50, 9)))
    assert m2.r.shape == (6,) and m2.median < 0.6
    C = dl.atom_correlations(D1)
    assert C.shape == (6, 6)
    np.testing.assert_allclose(C, np.corrcoef(D1.T), atol=1e-12)
    with pytest.raises(InputError, match="same T"):
        dl.match_atoms(D1, D1[:40])


# --------------------------------------------------------------------------- sweep
def test_sweep_tiny(caplog):
    X, D0, _ = dl.planted_responses(60, 400, 6, nnz=2, noise=0.2, seed=1)
    with caplog.at_level("INFO", logger="llmbrain_utils.dictionary"):
        df = dl.sweep(X, ks=(6, 12, 100), lams=(0.05, 0.3), solver="spams", seeds=(0, 1),
                      n_iter=200, n_threads=1)
    assert "k = 100 skipped" in caplog.text
    assert list(zip(df["k"], df["lam"])) == [(6, 0.05), (6, 0.3), (12, 0.05), (12, 0.3)]
    assert {"r2", "sparsity", "stability_seed", "stability_half"} <= set(df.columns)
    for k in (6, 12):  # a larger penalty explains less and loads fewer ANs
        a, b = df[df.k == k].iloc[0], df[df.k == k].iloc[1]
        assert a.r2 > b.r2 and a.sparsity < b.sparsity
    row = df[(df.k == 6) & (df.lam == 0.05)].iloc[0]
    assert row.stability_seed > 0.95 and row.stability_half > 0.95  # planted k: stable
    assert df[["stability_seed", "stability_half"]].le(1 + 1e-9).all().all()


def test_planted_generator():
    X, D0, A0 = dl.planted_responses(40, 300, 5, nnz=2, seed=2)
    assert X.shape == (40, 300) and X.dtype == np.float32 and D0.shape == (40, 5)
    np.testing.assert_allclose(X.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(X.std(0), 1, atol=1e-4)
    assert (np.diff(A0.tocsc().indptr) == 2).all()
    with pytest.raises(ParameterError, match="nnz"):
        dl.planted_responses(40, 300, 5, nnz=6)


# --------------------------------------------------------------------------- chance levels
def _hrf_noise(T, N, seed):
    from llmbrain_utils.extract import hrf_convolve, zscore_columns

    rng = np.random.default_rng(seed)
    return zscore_columns(hrf_convolve(rng.standard_normal((T, N)).astype(np.float32)))[0]


@pytest.fixture(scope="module")
def small_planted():
    return dl.planted_responses(80, 600, 8, nnz=2, noise=0.3, seed=3)[0]


def test_chance_levels_planted_structure_beats_chance_noise_does_not(small_planted):
    for X, planted in ((small_planted, True), (_hrf_noise(80, 600, 5), False)):
        ch = dl.chance_levels(X, k=8, lam=LAM, seed=0, n_draws=3, n_threads=1)
        assert list(ch["model"]) == list(dl.CHANCE_MODELS)
        real = dl.sweep(X, ks=(8,), lams=(LAM,), seeds=(0, 1), n_iter=200, n_threads=1).iloc[0]
        best_r2, best_stab = ch["r2_lasso"].max(), ch["stability"].max()
        best_half = ch["stability_half"].max()
        if planted:  # learned atoms: better codes and far more reproducible than any chance
            assert real.r2 > best_r2 + 0.02
            assert real.stability_seed > best_stab + 0.2
            assert real.stability_half > best_half + 0.2
        else:  # nothing to find: the learned dictionary is no better than a random PC basis
            assert real.r2 < best_r2 + 0.02
            assert real.stability_half < best_half + 0.05
            # (stability_seed is no test of structure on its own: two seeds on the *same* noise
            # can converge to similar atoms, e.g. 0.73 here against 0.61 for random PC bases)
        # the k-PC subspace is the best least-squares subspace (Eckart-Young)
        pc = ch.set_index("model").loc["random_pc_basis"]
        assert pc.r2_ls >= ch["r2_ls"].max() - 1e-9 and pc.r2_ls_sd < 1e-6
        assert ((ch["r2_lasso"] <= ch["r2_ls"] + 1e-6) & ch["stability"].between(0, 1)).all()


def test_chance_levels_use_the_dictionarys_own_r2(small_planted):
    X = small_planted
    res = dl.learn_dictionary(X, 8, LAM, solver="spams", seed=0, n_threads=1)
    scan = dl._scan(X, 8, LAM, None, True, dl.DEFAULT_CHUNK_MB)
    data = dl._Columns(X, np.flatnonzero(~scan.excluded), scan.scale)
    r2, sparsity = dl._lasso_r2(data, scan, res.D, LAM, "spams", 0, None, 1, 10_000)
    assert r2 == pytest.approx(res.r2_overall, abs=1e-6)
    assert sparsity == pytest.approx(res.sparsity, abs=1e-9)
    ls = dl.least_squares_r2(X, res.D)
    assert res.r2_overall < ls < 1
    U, s, _ = np.linalg.svd(X.astype(np.float64) / np.linalg.norm(X, axis=0), full_matrices=False)
    assert dl.least_squares_r2(X, U[:, :8]) == pytest.approx((s[:8] ** 2).sum() / (s ** 2).sum())


def test_chance_levels_deterministic_and_seeded(small_planted):
    kw = dict(k=6, lam=LAM, n_draws=2, n_threads=1)
    a = dl.chance_levels(small_planted, seed=1, **kw).drop(columns="seconds")
    b = dl.chance_levels(small_planted, seed=1, **kw).drop(columns="seconds")
    c = dl.chance_levels(small_planted, seed=2, **kw).drop(columns="seconds")
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["stability"], c["stability"])
    one = dl.chance_levels(small_planted, seed=1, k=6, lam=LAM, n_draws=1,
                           models=("random_smooth",), hrf=None)
    assert len(one) == 1 and one["stability_sd"].isna().all() and one["r2_lasso"].notna().all()


@pytest.mark.parametrize("kw, name", [
    ({"k": 0}, "k"), ({"k": 81}, "k"), ({"lam": 0.0}, "lam"), ({"n_draws": 0}, "n_draws"),
    ({"n_draws": 1.5}, "n_draws"), ({"models": ("random_walk",)}, "models"),
    ({"models": "random_smooth"}, "models"), ({"models": ()}, "models"), ({"hrf": "fir"}, "hrf"),
    ({"tr_s": 0}, "tr_s"), ({"seed": -1}, "seed"), ({"solver": "lars"}, "solver")])
def test_chance_levels_bad_arguments(small_planted, kw, name):
    with pytest.raises(ParameterError, match=name):
        dl.chance_levels(small_planted, **{"k": 8, "lam": LAM, **kw})


# --------------------------------------------------------------------------- sklearn estimator
# SparseDictionary takes scikit-learn's layout: one row per AN, one column per TR (X.T).
_EST_KW = dict(n_iter=30, batch_size=64, n_threads=1, device="cpu")


@pytest.fixture(scope="module")
def est_data():
    X, _, _ = dl.planted_responses(60, 400, 6, nnz=2, noise=0.3, seed=5)
    X[:, 7] = 0.5  # a dead AN: excluded by the function, zero codes in both
    return X


def _same_result(a, b):
    """Two DictionaryResults equal bit for bit (timings aside)."""
    np.testing.assert_array_equal(a.D, b.D)
    assert a.D.dtype == b.D.dtype and a.A.dtype == b.A.dtype and a.A.shape == b.A.shape
    for name in ("indptr", "indices", "data"):
        np.testing.assert_array_equal(getattr(a.A, name), getattr(b.A, name))
    for name in ("r2_per_an", "sst_per_an", "excluded", "scale"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    for name in ("lam", "k", "solver", "seed", "normalize", "objective", "r2_overall",
                 "sparsity", "info"):
        assert getattr(a, name) == getattr(b, name), name


@pytest.mark.parametrize("solver", ["sklearn", "spams", "torch"])
def test_estimator_is_the_function(est_data, solver):
    X = est_data
    ref = dl.learn_dictionary(X, 6, LAM, solver=solver, seed=2, **_EST_KW)
    est = dl.SparseDictionary(6, LAM, solver=solver, seed=2, **_EST_KW)
    assert est.fit(X.T) is est
    _same_result(est.result_, ref)
    assert est.atoms_ is est.result_.D and est.atoms_.shape == (60, 6)
    np.testing.assert_array_equal(est.components_, ref.D.T)
    assert sp.issparse(est.codes_) and est.codes_.shape == (400, 6)
    assert (est.codes_ != ref.A.T).nnz == 0
    assert est.r2_ == ref.r2_overall and est.objective_ == ref.objective
    assert est.sparsity_ == ref.sparsity and est.n_features_in_ == 60
    np.testing.assert_array_equal(est.r2_per_an_, ref.r2_per_an)
    np.testing.assert_array_equal(est.excluded_, ref.excluded)
    assert est.excluded_[7] and est.codes_[7].nnz == 0
    # fit_transform is the function's loadings, dense; transform re-codes with the same lasso
    codes = dl.SparseDictionary(6, LAM, solver=solver, seed=2, **_EST_KW).fit_transform(X.T)
    assert codes.dtype == np.float32
    np.testing.assert_array_equal(codes, ref.A.T.toarray())
    again = est.transform(X.T)
    assert again.shape == (400, 6) and again.dtype == np.float32
    np.testing.assert_allclose(again, codes, atol=2e-3 * np.abs(codes).max())
    assert not again[7].any()
    # rows are coded independently: a subset gives the same rows (up to float rounding: SPAMS
    # computes on the whole block)
    np.testing.assert_allclose(est.transform(X.T[100:110]), again[100:110], rtol=1e-4,
                               atol=1e-6 * np.abs(again).max())


def test_estimator_fit_from_memmap_and_an_table(est_data, tmp_path):
    X = est_data
    mm = np.lib.format.open_memmap(tmp_path / "X.npy", mode="w+", dtype=np.float32,
                                   shape=X.shape)
    mm[:] = X
    mm.flush()
    tab = an_table(4, 100)
    kw = dict(solver="sklearn", seed=1, **_EST_KW)
    est = dl.SparseDictionary(6, LAM, **kw).fit(
        np.load(tmp_path / "X.npy", mmap_mode="r").T, an_table=tab)
    _same_result(est.result_, dl.learn_dictionary(X, 6, LAM, **kw))
    assert est.result_.an_table is tab
    assert dl.atom_subgroups(est.result_).layer_counts.shape == (6, 4)
    assert list(est.get_feature_names_out()) == [f"sparsedictionary{i}" for i in range(6)]


def test_estimator_params_clone_and_validation(est_data):
    import inspect

    from sklearn.base import clone
    from sklearn.exceptions import NotFittedError

    # the estimator's parameters are the function's (names and defaults), data aside
    fn = inspect.signature(dl.learn_dictionary).parameters
    est = dl.SparseDictionary()
    assert est.get_params() == {n: p.default for n, p in fn.items()
                                if n not in ("X", "an_table")}
    assert est.set_params(k=3, solver="sklearn", n_iter=5) is est
    assert (est.k, est.solver, est.n_iter) == (3, "sklearn", 5)
    c = clone(est)
    assert c is not est and c.get_params() == est.get_params()
    est.fit(est_data.T)
    c2 = clone(est)
    assert not hasattr(c2, "components_") and hasattr(est, "components_")
    with pytest.raises(NotFittedError):
        c2.transform(est_data.T)
    # __init__ stores anything; fit validates (the function's errors)
    for kw, name in (({"k": 0}, "'k'"), ({"k": 61}, "exceed the 60 TRs"), ({"lam": -1}, "'lam'"),
                     ({"solver": "lars"}, "'solver'"), ({"n_iter": 0}, "'n_iter'")):
        bad = dl.SparseDictionary(**{"k": 3, "solver": "sklearn", "n_iter": 5, **kw})
        assert bad.get_params()[next(iter(kw))] == next(iter(kw.values()))
        with pytest.raises(ParameterError, match=name):
            bad.fit(est_data.T)
    with pytest.raises(ValueError, match="3 features, but SparseDictionary is expecting 60"):
        est.transform(est_data.T[:, :3])


def test_estimator_module_stays_light_and_pickles(est_data, tmp_path):
    """Importing the module does not import scikit-learn (the class is built on first use),
    and a fitted estimator unpickles in a fresh interpreter."""
    import pickle
    import subprocess
    import sys

    est = dl.SparseDictionary(4, LAM, solver="sklearn", n_iter=5).fit(est_data.T)
    (tmp_path / "est.pkl").write_bytes(pickle.dumps(est))
    np.save(tmp_path / "want.npy", est.transform(est_data.T[:20]))
    np.save(tmp_path / "X.npy", est_data.T[:20])
    code = (
        "import sys, pickle, numpy as np, llmbrain_utils.dictionary as d\n"
        "assert 'sklearn' not in sys.modules\n"
        f"p = {str(tmp_path)!r}\n"
        "est = pickle.loads(open(p + '/est.pkl', 'rb').read())\n"
        "assert type(est) is d.SparseDictionary\n"
        "np.testing.assert_array_equal(est.transform(np.load(p + '/X.npy')),"
        " np.load(p + '/want.npy'))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def _estimator_for_checks():
    # k = 2 atoms: some checks fit on 2 features (TRs), and k <= T
    return dl.SparseDictionary(k=2, lam=LAM, solver="sklearn", n_iter=5, batch_size=16)


# Every check applies and passes: no expected_failed_checks.
@parametrize_with_checks([_estimator_for_checks()])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)
