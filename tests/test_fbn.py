"""Stage 5, FBN mapping: atlases, overlap criterion, permutation nulls, planted recovery."""

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy.ndimage import gaussian_filter

from llmbrain_utils import fbn
from llmbrain_utils.errors import InputError, ParameterError

SHARED = Path(__file__).resolve().parents[2] / "shared"
NCT = SHARED / "atlases" / "nct"


@pytest.fixture(scope="module")
def mask6():
    from nilearn.datasets import load_mni152_brain_mask

    return load_mni152_brain_mask(resolution=6)


@pytest.fixture(scope="module")
def grid(mask6) -> np.ndarray:
    return np.asarray(mask6.dataobj) != 0


@pytest.fixture(scope="module")
def seitz(mask6) -> fbn.NetworkAtlas:
    return fbn.seitzman_atlas(mask6)


@pytest.fixture(scope="module")
def ty7(nct, mask6) -> fbn.NetworkAtlas:
    return fbn.load_atlas("TY7", mask6, root=nct, download=False)


def smooth_noise(rng, grid, k, sigma=1.5):
    """k random smooth maps on the mask's voxels, each z-scored."""
    x = np.array([gaussian_filter(rng.standard_normal(grid.shape), sigma)[grid] for _ in range(k)])
    return (x - x.mean(1, keepdims=True)) / x.std(1, keepdims=True)


def planted(atlas, grid, k, rng, noise=1.0):
    """Maps = smoothed network masks (+/-), some with a second network of opposite sign,
    plus smooth noise; and the planted couplings {atom: [(network, sign)]}."""
    vols = np.zeros((atlas.n_networks,) + grid.shape)
    vols[:, grid] = atlas.masks
    sizes = atlas.masks.sum(1)
    usable = [j for j in np.argsort(-sizes) if sizes[j] >= 60]
    maps, truth = [], {}
    for a in range(k):
        j = usable[a % len(usable)]
        s = 1.0 if a % 2 == 0 else -1.0
        sig = s * gaussian_filter(vols[j], 1.0)[grid]
        truth[a] = [(atlas.network_names[j], "active" if s > 0 else "deactive")]
        if a % 4 == 3:
            j2 = usable[(a + 3) % len(usable)]
            sig -= s * gaussian_filter(vols[j2], 1.0)[grid]
            truth[a].append((atlas.network_names[j2], "deactive" if s > 0 else "active"))
        nz = gaussian_filter(rng.standard_normal(grid.shape), 1.5)[grid]
        maps.append(sig / sig.std() + noise * nz / nz.std())
    return np.array(maps), truth


# ------------------------------------------------------------------------------------ atlases


def test_manifest_matches_the_mirror(nct):
    doc = fbn.atlas_manifest()
    short = (nct / "atlas_list").read_text().split()
    full = (nct / "atlas_list_fullname").read_text().split()
    assert list(doc["atlases"]) == short and len(short) == 23
    assert doc["source"]["commit"] in (nct / "README.md").read_text()
    assert "{commit}" in doc["source"]["url_pattern"] and "{path}" in doc["source"]["url_pattern"]
    lines = (nct / "SHA256SUMS").read_text().splitlines()
    sums = {p.strip().removeprefix("./"): h for h, p in (line.split(None, 1) for line in lines)}
    for (name, entry), fname in zip(doc["atlases"].items(), full):
        assert entry["full_name"] == fname
        assert entry["kind"] in ("Hard", "Soft", "Metric")
        names = [n for n in (nct / "network_names" / name).read_text().splitlines() if n.strip()]
        assert entry["networks"] == names, name
        for f in entry["files"]:
            assert sums[f["path"]] == f["sha256"], f["path"]
        if entry["kind"] != "Hard":
            assert len(entry["files"]) == len(names)
    assert sums[doc["cortical_mask"]["path"]] == doc["cortical_mask"]["sha256"]
    assert fbn.available_atlases()[-1] == "Seitzman2018"


@pytest.mark.parametrize("name, kind", [("TY7", "Hard"), ("WS90_14", "Hard"), ("DU15NET", "Hard"),
                                        ("MG360J12", "Hard"), ("UKBICA", "Soft"),
                                        ("TW_TASK_NETS", "Metric")])
def test_load_nct_atlas(nct, mask6, grid, name, kind):
    atlas = fbn.load_atlas(name, mask6, root=nct, download=False)
    names = [n for n in (nct / "network_names" / name).read_text().splitlines() if n.strip()]
    expected = [n for n in names if n != "NONE"]  # DU15NET's "NONE" label is dropped
    assert atlas.kind == kind and atlas.network_names == tuple(expected)
    assert atlas.masks.shape == (len(expected), grid.sum())
    assert atlas.masks.sum(1).min() > 0, atlas.sizes()
    labels = np.asarray(atlas.label_img.dataobj)
    assert labels.shape == grid.shape and not labels[~grid].any()
    covered = atlas.masks.any(0)
    assert np.array_equal(labels[grid] > 0, covered)
    rows = labels[grid][covered] - 1
    assert atlas.masks[rows, np.flatnonzero(covered)].all()  # the label is one of its networks
    if kind == "Hard":
        assert atlas.masks.sum(0).max() == 1  # a hard atlas's networks do not overlap
        assert 1000 < covered.sum() < 6000  # within the cortex of a 6 mm mask (8.7k voxels)


def test_soft_threshold_sets_network_extent(nct, mask6):
    loose = fbn.load_atlas("UKBICA", mask6, root=nct, soft_threshold=1.0, download=False)
    strict = fbn.load_atlas("UKBICA", mask6, root=nct, soft_threshold=5.0, download=False)
    assert (strict.masks <= loose.masks).all() and strict.masks.sum() < loose.masks.sum()


def test_checksum_is_verified(nct, mask6, tmp_path):
    doc = fbn.atlas_manifest()
    root = tmp_path / "nct"
    cm = root / doc["cortical_mask"]["path"]
    cm.parent.mkdir(parents=True)
    cm.symlink_to(nct / doc["cortical_mask"]["path"])
    rel = doc["atlases"]["TY7"]["files"][0]["path"]
    bad = root / rel
    bad.parent.mkdir(parents=True)
    bad.write_bytes((nct / rel).read_bytes() + b"\0")  # a tampered copy, outside the repo
    with pytest.raises(InputError, match="sha256"):
        fbn.load_atlas("TY7", mask6, root=root, download=False)
    bad.unlink()
    with pytest.raises(InputError, match="download=False"):
        fbn.load_atlas("TY7", mask6, root=root, download=False)


def test_parcel_atlas_needs_its_network_assignment(nct, mask6, tmp_path):
    # a mirror without the parcel-to-network file: offline, a clear error, no download (the
    # shared mirror has had these files since 2026-12-06, so the test builds one that lacks it)
    root = tmp_path / "nct"
    root.mkdir()
    for entry in nct.iterdir():
        if entry.name != "network_assignment":
            (root / entry.name).symlink_to(entry)
    (root / "network_assignment").mkdir()
    with pytest.raises(InputError, match="network_assignment/AS200K17.mat"):
        fbn.load_atlas("AS200K17", mask6, root=root, download=False)
    if (nct / "network_assignment" / "AS200K17.mat").is_file():  # with it, the atlas loads
        atlas = fbn.load_atlas("AS200K17", mask6, root=nct, download=False)
        assert atlas.n_networks == 17 and atlas.masks.any(1).all()


def test_seitzman_offline_atlas(mask6, grid, seitz):
    assert seitz.name == "Seitzman2018" and 13 <= seitz.n_networks <= 14
    assert all(isinstance(n, str) for n in seitz.network_names)
    assert not any("unassigned" in n.lower() for n in seitz.network_names)
    assert seitz.masks.shape[1] == grid.sum() and seitz.masks.sum(1).min() > 0
    assert seitz.masks.sum(0).max() == 1
    wider = fbn.seitzman_atlas(mask6, radius_mm=15)
    assert wider.masks.any(0).sum() > seitz.masks.any(0).sum()


def test_unknown_atlas_or_network_lists_valid_names(mask6, seitz):
    with pytest.raises(ParameterError, match="TY7") as err:
        fbn.load_atlas("Yeo99", mask6)
    assert "Seitzman2018" in str(err.value)
    with pytest.raises(InputError, match="DefaultMode"):
        seitz.index("Language")
    sub = seitz.select(["Visual", "DefaultMode"])
    assert sub.network_names == ("Visual", "DefaultMode")
    assert np.array_equal(sub.masks[1], seitz.masks[seitz.index("DefaultMode")])
    with pytest.raises(ParameterError, match="radius_mm"):
        fbn.seitzman_atlas(mask6, radius_mm=0)
    with pytest.raises(ParameterError, match="mask_img"):
        fbn.seitzman_atlas(np.zeros(3))


# ------------------------------------------------------------------------------------ criterion


def test_threshold_rules():
    rng = np.random.default_rng(0)
    maps = rng.standard_normal((3, 1000))
    pos, neg = fbn.threshold_maps(maps, "top10%")
    assert ((pos | neg).sum(1) == 100).all() and not (pos & neg).any()
    assert (maps[pos] > 0).all() and (maps[neg] < 0).all()
    kept = np.abs(maps[0][pos[0] | neg[0]]).min()
    assert kept >= np.abs(maps[0][~(pos[0] | neg[0])]).max()
    pos, neg = fbn.threshold_maps(maps, 1.5)
    assert np.array_equal(pos, maps > 1.5) and np.array_equal(neg, maps < -1.5)
    assert fbn.parse_threshold(" top 2.5 % ") == ("top", 0.025)
    for bad in ["top0%", "top100%", "10%", "top-5%", -1, 0, float("nan"), True, None, [3]]:
        with pytest.raises(ParameterError, match="threshold"):
            fbn.threshold_maps(maps, bad)


def test_overlap_table(seitz):
    maps = seitz.masks[:3].astype(float) - 0.5 * seitz.masks[3:6]
    tab = fbn.overlap(maps, seitz, threshold=0.25)
    assert list(tab.columns) == ["atom", "network", "sign", "dice", "r"]
    assert len(tab) == 3 * seitz.n_networks * 2
    for a in range(3):
        act = tab[(tab.atom == a) & (tab.sign == "active")].set_index("network")
        de = tab[(tab.atom == a) & (tab.sign == "deactive")].set_index("network")
        assert act.loc[seitz.network_names[a], "dice"] == pytest.approx(1.0)
        assert de.loc[seitz.network_names[a + 3], "dice"] == pytest.approx(1.0)
        assert act["dice"].idxmax() == seitz.network_names[a]
        np.testing.assert_allclose(act["r"], -de["r"])
        assert act.loc[seitz.network_names[a], "r"] > 0.3
        assert de.loc[seitz.network_names[a + 3], "r"] > 0.1


def test_map_equal_to_a_network_is_dice_one_and_significant(seitz):
    maps = seitz.masks.astype(float)
    # 13 true couplings among 13 x 13 x 2 tests: BH needs p <= 0.05 * 13 / 338, so n_perm > 520
    tab = fbn.couple_atoms(maps, seitz, threshold=0.5, n_perm=600, seed=1)
    assert list(tab.columns) == fbn.TABLE_COLUMNS
    own = tab.atom.map(dict(enumerate(seitz.network_names)))
    diag = tab[(tab.sign == "active") & (tab.network == own)]
    assert len(diag) == seitz.n_networks
    np.testing.assert_allclose(diag.dice, 1.0)
    np.testing.assert_allclose(diag.r, 1.0)
    assert (diag.p == 1 / 601).all() and diag.coupled.all()
    assert tab.coupled.sum() == seitz.n_networks  # disjoint networks and empty negative parts


def test_random_smooth_maps_are_not_coupled(mask6, grid, seitz):
    maps = smooth_noise(np.random.default_rng(3), grid, 64)
    tab = fbn.couple_atoms(maps, seitz, n_perm=300, seed=2)
    fpr = (tab.p < 0.05).mean()  # 64 x 13 x 2 tests; about 0.05 when calibrated
    assert 0.02 <= fpr <= 0.09, fpr
    assert tab.coupled.sum() <= 2


def test_planted_couplings_are_recovered(grid, seitz):
    maps, truth = planted(seitz, grid, 16, np.random.default_rng(4))
    tab = fbn.couple_atoms(maps, seitz, n_perm=1000, seed=0)
    rec = fbn.recovery(tab, truth)
    assert rec["precision"] >= 0.9 and rec["recall"] >= 0.9, rec
    assert rec["n_planted"] == 20 and rec["fpr"] < 0.01
    pairs = {p for v in truth.values() for p in v}
    glob = fbn.recovery(tab, sorted(pairs))
    assert glob["recall"] >= 0.9 and glob["n_planted"] == len(pairs)


def test_planted_couplings_on_an_nct_atlas(grid, ty7):
    maps, truth = planted(ty7, grid, 14, np.random.default_rng(5))
    tab = fbn.couple_atoms(maps, ty7, n_perm=1000, seed=0)
    rec = fbn.recovery(tab, truth)
    assert rec["precision"] >= 0.9 and rec["recall"] >= 0.9, rec


def test_signflip_null(grid, seitz):
    rng = np.random.default_rng(6)
    maps, truth = planted(seitz, grid, 6, rng, noise=0.5)
    subj = 0.4 * maps[None] + np.stack([smooth_noise(rng, grid, 6) for _ in range(12)])
    tab = fbn.couple_atoms(None, seitz, subject_maps=subj, null="signflip", n_perm=1000)
    rec = fbn.recovery(tab, truth)
    assert rec["recall"] >= 0.9 and rec["precision"] >= 0.7, rec
    t = fbn.group_t(subj)
    same = fbn.couple_atoms(t, seitz, subject_maps=subj, null="signflip", n_perm=1000)
    pd.testing.assert_frame_equal(tab, same)
    with pytest.raises(InputError, match="group t"):
        fbn.couple_atoms(t + 1.0, seitz, subject_maps=subj, null="signflip", n_perm=10)
    noise = np.stack([smooth_noise(rng, grid, 6) for _ in range(12)])
    null_tab = fbn.couple_atoms(None, seitz, subject_maps=noise, null="signflip", n_perm=200)
    assert (null_tab.p < 0.05).mean() <= 0.12 and null_tab.coupled.sum() <= 2


def test_spin_permutations_rotate_and_keep_smoothness(mask6, grid):
    perms = fbn.spin_permutations(mask6, 50, seed=0)
    assert perms.shape == (50, grid.sum()) and perms.min() >= 0 and perms.max() < grid.sum()
    assert np.array_equal(perms, fbn.spin_permutations(mask6, 50, seed=0))
    assert not np.array_equal(perms, fbn.spin_permutations(mask6, 50, seed=1))
    spinner = fbn._Spinner(mask6)
    assert np.array_equal(spinner.indices(np.eye(3)[None])[0], np.arange(grid.sum()))
    # a smooth map stays smooth: correlation with the neighbour voxel along x, before / after
    x = smooth_noise(np.random.default_rng(7), grid, 1, sigma=2.0)[0]
    vol = np.zeros(grid.shape)

    def neighbour_r(v):
        vol[grid] = v
        both = grid[1:] & grid[:-1]
        return np.corrcoef(vol[1:][both], vol[:-1][both])[0, 1]

    r0 = neighbour_r(x)
    rs = np.array([neighbour_r(x[p]) for p in perms[:20]])
    assert r0 > 0.8 and np.all(np.abs(rs - r0) < 0.1), (r0, rs)
    # rotations move the map: spun copies are nearly uncorrelated with the original
    assert np.median([abs(np.corrcoef(x, x[p])[0, 1]) for p in perms]) < 0.3


def test_batched_speed_k64_14_networks_1000_perms(grid, seitz, mask6):
    atlas = fbn.NetworkAtlas("Seitzman14", seitz.network_names + ("Extra",),
                             np.vstack([seitz.masks, seitz.masks[:1]]), seitz.label_img, mask6)
    maps = smooth_noise(np.random.default_rng(8), grid, 64)
    start = time.perf_counter()
    tab = fbn.couple_atoms(maps, atlas, n_perm=1000, seed=11)
    elapsed = time.perf_counter() - start
    assert len(tab) == 64 * 14 * 2 and elapsed < 30, elapsed


# ------------------------------------------------------------------------------------ evaluation


def fake_table(atlas, rows):
    """A couple_atoms-shaped table: rows = (atom, network, sign, coupled)."""
    return pd.DataFrame([{"atom": a, "atlas": atlas, "network": n, "sign": s, "dice": 0.5,
                          "r": 0.1, "p": 0.01, "q": 0.01, "coupled": c} for a, n, s, c in rows])


def test_recovery_counts():
    rows = [(a, n, s, False) for a in range(2) for n in ("A", "B", "C") for s in fbn.SIGNS]
    tab = fake_table("X", rows)
    on = {(0, "A", "active"), (0, "B", "deactive"), (1, "C", "active")}
    tab["coupled"] = [(a, n, s) in on for a, n, s in zip(tab.atom, tab.network, tab.sign)]
    rec = fbn.recovery(tab, {0: [("A", "active")], 1: [("C", "active"), ("A", "deactive")]})
    assert (rec["tp"], rec["fp"], rec["fn"]) == (2, 1, 1)
    assert rec["precision"] == pytest.approx(2 / 3) and rec["recall"] == pytest.approx(2 / 3)
    assert rec["fpr"] == pytest.approx(1 / 9)
    same = fbn.recovery(tab, [(0, "A", "active"), (1, "C", "active"), (1, "A", "deactive")])
    assert same == rec
    glob = fbn.recovery(tab, [("A", "active"), ("C", "active")])
    assert glob["recall"] == 1.0 and glob["precision"] == pytest.approx(2 / 3)
    with pytest.raises(InputError, match="unknown network 'Z'"):
        fbn.recovery(tab, [("Z", "active")])
    with pytest.raises(InputError, match="unknown sign"):
        fbn.recovery(tab, [("A", "positive")])
    with pytest.raises(InputError, match="unknown atom"):
        fbn.recovery(tab, {7: [("A", "active")]})
    with pytest.raises(ParameterError, match="atlas"):
        fbn.recovery(pd.concat([tab, fake_table("Y", rows)]), [("A", "active")])


def test_atlas_agreement_crosstab():
    a = fake_table("MG360J12", [(0, "Language", "active", True), (0, "Visual1", "active", False),
                                (1, "Visual1", "deactive", True), (2, "Language", "active", True)])
    b = fake_table("TY7", [(0, "Default", "active", True), (1, "Visual", "deactive", True),
                           (1, "Default", "active", True), (2, "Default", "deactive", True)])
    ag = fbn.atlas_agreement([a, b])
    assert ag.index.name == "MG360J12" and ag.columns.name == "TY7"
    assert ag.loc["Language", "Default"] == 1  # atom 2 differs in sign: not counted
    assert ag.loc["Visual1", "Visual"] == 1 and ag.values.sum() == 2
    assert ag.attrs["n_atoms_both"] == 2
    assert fbn.atlas_agreement({"x": b, "y": a}, atlases=("MG360J12", "TY7")).equals(ag)
    with pytest.raises(ParameterError, match="atlases"):
        fbn.atlas_agreement([a, b, fake_table("EG17", [(0, "Default", "active", True)])])


def test_threshold_sensitivity(grid, seitz):
    maps, _ = planted(seitz, grid, 6, np.random.default_rng(9))
    sens = fbn.threshold_sensitivity(maps, seitz, ["top5%", "top20%"], n_perm=1000, seed=3)
    assert list(sens.threshold) == ["top5%", "top20%"]
    direct = fbn.couple_atoms(maps, seitz, threshold="top20%", n_perm=1000, seed=3)
    assert sens.n_coupled.iloc[1] == direct.coupled.sum() > 0
    assert (sens.n_active + sens.n_deactive == sens.n_coupled).all()
    with pytest.raises(ParameterError, match="threshold"):
        fbn.threshold_sensitivity(maps, seitz, ["top5%", "bad"], n_perm=10)


# ------------------------------------------------------------------------------------ bad inputs


def test_bad_inputs_fail_before_work(grid, seitz):
    v = int(grid.sum())
    good = np.zeros((2, v))
    with pytest.raises(InputError, match="field 'V'") as err:
        fbn.couple_atoms(np.zeros((2, v - 1)), seitz)
    assert str(v) in str(err.value)
    nan = good.copy()
    nan[1, 5] = np.nan
    with pytest.raises(InputError, match="atom 1, voxel 5"):
        fbn.overlap(nan, seitz)
    cases = [dict(n_perm=0), dict(n_perm=2.5), dict(alpha=1.5), dict(alpha=0), dict(seed=-1),
             dict(null="bootstrap"), dict(null="signflip"), dict(threshold="top200%")]
    for kw in cases:
        with pytest.raises(ParameterError):
            fbn.couple_atoms(good, seitz, **kw)
    with pytest.raises(ParameterError, match="atlas"):
        fbn.couple_atoms(good, "TY7")
    with pytest.raises(ParameterError, match="subject_maps"):
        fbn.couple_atoms(good, seitz, subject_maps=np.zeros((1, 2, v)))
    with pytest.raises(InputError, match="field 'k'"):
        fbn.couple_atoms(good, seitz, subject_maps=np.zeros((3, 5, v)))
    with pytest.raises(ParameterError, match="group_maps"):
        fbn.couple_atoms(None, seitz)
    with pytest.raises(ParameterError, match="perms"):
        fbn.couple_atoms(good, seitz, n_perm=10, perms=np.zeros((5, v), dtype=int))
    with pytest.raises(ParameterError, match="soft_threshold"):
        fbn.load_atlas("UKBICA", seitz.mask_img, soft_threshold="high")


# ------------------------------------------------------------------------------------ download


@pytest.fixture()
def served(nct, tmp_path):
    """The mirror's TY7 files and a toy parcel-to-network mapping, served on 127.0.0.1."""
    import functools
    import http.server
    import threading

    from scipy.io import savemat

    doc = yaml.safe_load(fbn.MANIFEST.read_text())
    commit = doc["source"]["commit"]
    site = tmp_path / "site" / commit
    for rel in (doc["cortical_mask"]["path"], doc["atlases"]["TY7"]["files"][0]["path"]):
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_bytes((nct / rel).read_bytes())
    # a parcel-level toy atlas: TY7's 7 labels as parcels, mapped onto 3 networks
    (site / "network_assignment").mkdir()
    mapping = np.array([[1, 1, 2, 2, 3, 3, 3]])
    savemat(site / "network_assignment" / "TOY3.mat", {"mapping": mapping})
    doc["atlases"] = {"TY7": doc["atlases"]["TY7"], "TOY3": {
        "full_name": "toy", "kind": "Hard", "files": doc["atlases"]["TY7"]["files"],
        "networks": ["N1", "N2", "N3"], "labels": [1, 2, 3],
        "network_assignment": {"path": "network_assignment/TOY3.mat", "sha256": None}}}
    handler = functools.partial(http.server.SimpleHTTPRequestHandler,
                                directory=str(tmp_path / "site"))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    doc["source"]["url_pattern"] = f"http://127.0.0.1:{port}/{{commit}}/{{path}}"
    manifest = tmp_path / "atlases.yaml"
    manifest.write_text(yaml.safe_dump(doc, sort_keys=False))
    yield manifest, site
    server.shutdown()


def test_download_verifies_and_maps_parcels(served, mask6, tmp_path, monkeypatch):
    manifest, site = served
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv(fbn.ATLAS_DIR_ENV, str(cache))
    ty7 = fbn.load_atlas("TY7", mask6, manifest=manifest)
    assert (cache / fbn.atlas_manifest(manifest)["atlases"]["TY7"]["files"][0]["path"]).is_file()
    offline = fbn.load_atlas("TY7", mask6, root=NCT, download=False)
    assert np.array_equal(ty7.masks, offline.masks)
    toy = fbn.load_atlas("TOY3", mask6, manifest=manifest)
    assert toy.network_names == ("N1", "N2", "N3")
    np.testing.assert_array_equal(toy.masks[0], ty7.masks[0] | ty7.masks[1])
    np.testing.assert_array_equal(toy.masks[2], ty7.masks[4:].any(0))
    # a file that changed at the source is refused
    for f in cache.rglob("TY7.nii.gz"):
        f.unlink()
    rel = fbn.atlas_manifest(manifest)["atlases"]["TY7"]["files"][0]["path"]
    (site / rel).write_bytes((site / rel).read_bytes() + b"\0")
    with pytest.raises(InputError, match="sha256"):
        fbn.load_atlas("TY7", mask6, manifest=manifest)


# ------------------------------------------------------------------- the correlation statistic


def test_r_statistic_counts_match_a_direct_spin(grid, seitz, mask6):
    """statistic='r': p counts the rotations whose signed correlation reaches the observed one."""
    rng = np.random.default_rng(21)
    maps, _ = planted(seitz, grid, 3, rng)
    perms = fbn.spin_permutations(mask6, 120, seed=4)
    tab = fbn.couple_atoms(maps, seitz, n_perm=120, seed=4, perms=perms, statistic="r")
    assert list(tab.columns) == fbn.TABLE_COLUMNS and tab.attrs["statistic"] == "r"
    ref = fbn.couple_atoms(maps, seitz, n_perm=120, seed=4, perms=perms)
    np.testing.assert_allclose(tab.r, ref.r)  # same reported columns, other test
    np.testing.assert_allclose(tab.dice, ref.dice)
    for a, j, sign in [(0, 2, "active"), (1, 5, "deactive"), (2, 0, "active")]:
        net = seitz.masks[j]
        s = 1.0 if sign == "active" else -1.0
        obs = s * np.corrcoef(maps[a], net)[0, 1]
        null = np.array([s * np.corrcoef(maps[a], net[idx])[0, 1] for idx in perms])
        want = (1 + (null >= obs - 1e-9).sum()) / 121
        row = tab[(tab.atom == a) & (tab.network == seitz.network_names[j]) & (tab.sign == sign)]
        assert row.p.item() == pytest.approx(want), (a, j, sign)
        assert row.r.item() == pytest.approx(obs, abs=1e-9)


def test_r_statistic_recovers_planted_and_rejects_noise(grid, seitz):
    maps, truth = planted(seitz, grid, 16, np.random.default_rng(4))
    tab = fbn.couple_atoms(maps, seitz, n_perm=1000, seed=0, statistic="r")
    rec = fbn.recovery(tab, truth)
    assert rec["precision"] >= 0.9 and rec["recall"] >= 0.9, rec
    assert (tab.loc[tab.coupled, "r"] > 0).all()
    noise = smooth_noise(np.random.default_rng(3), grid, 64)
    null = fbn.couple_atoms(noise, seitz, n_perm=300, seed=2, statistic="r")
    assert 0.02 <= (null.p < 0.05).mean() <= 0.09 and null.coupled.sum() <= 2


def test_r_statistic_finds_a_weak_effect_spread_over_a_small_network(grid, seitz):
    """The case Dice misses: a weak effect over a whole small network, its top-10% part
    mostly noise elsewhere (the part is several times the network's size)."""
    sizes = seitz.masks.sum(1)
    j = int(np.argsort(sizes)[4])  # a small network (about 130 voxels on the 6 mm mask)
    rng = np.random.default_rng(8)
    noise = smooth_noise(rng, grid, 40, sigma=1.0)
    maps = noise.copy()
    maps[:20] += 1.2 * seitz.masks[j]
    truth = {a: [(seitz.network_names[j], "active")] for a in range(20)}
    tab_r = fbn.couple_atoms(maps, seitz, n_perm=2000, seed=1, statistic="r")
    tab_d = fbn.couple_atoms(maps, seitz, n_perm=2000, seed=1)
    rec_r, rec_d = fbn.recovery(tab_r, truth), fbn.recovery(tab_d, truth)
    assert rec_r["recall"] >= 0.75 and rec_r["precision"] >= 0.9, rec_r
    assert rec_r["recall"] >= rec_d["recall"] + 0.2, (rec_r, rec_d)
    sel = (tab_r.atom < 20) & (tab_r.network == seitz.network_names[j]) & (tab_r.sign == "active")
    p_r, p_d = tab_r.p[sel].to_numpy(), tab_d.p[sel].to_numpy()
    assert np.mean(p_r) < np.mean(p_d) and (p_r <= p_d).mean() >= 0.75


def test_r_statistic_with_the_signflip_null(grid, seitz):
    rng = np.random.default_rng(6)
    maps, truth = planted(seitz, grid, 6, rng, noise=0.5)
    subj = 0.4 * maps[None] + np.stack([smooth_noise(rng, grid, 6) for _ in range(12)])
    tab = fbn.couple_atoms(None, seitz, subject_maps=subj, null="signflip", n_perm=1000,
                           statistic="r")
    rec = fbn.recovery(tab, truth)
    assert rec["recall"] >= 0.9 and rec["precision"] >= 0.7, rec
    noise = np.stack([smooth_noise(rng, grid, 6) for _ in range(12)])
    null_tab = fbn.couple_atoms(None, seitz, subject_maps=noise, null="signflip", n_perm=200,
                                statistic="r")
    assert (null_tab.p < 0.05).mean() <= 0.12 and null_tab.coupled.sum() <= 2


def test_unknown_statistic_is_refused(grid, seitz):
    good = smooth_noise(np.random.default_rng(0), grid, 2)
    with pytest.raises(ParameterError, match="statistic"):
        fbn.couple_atoms(good, seitz, n_perm=10, statistic="dice2")
    with pytest.raises(ParameterError, match="statistic"):
        fbn.threshold_sensitivity(good, seitz, ["top5%"], n_perm=10, statistic="t")


# ------------------------------------------------------------------- the recovery stage


TINY = dict(n_subjects=3, resolution_mm=12, k=8, n_perm=10, fbn_perm=100, dict_iter=30)


def test_recovery_stage_tables_are_consistent(tmp_path):
    """fbn_recovery on a tiny chain: one row per (twin, SNR, statistic), the planted table
    agrees with the per-twin counts, and a repeated call is a cache hit."""
    from llmbrain_utils import config, stages

    # 4 planted among 8 x n x 2 tests: BH needs p below 0.05 * 4 / (16 n), so > 1000 rotations
    cfg = config.validate({**TINY, "fbn_perm": 1500, "runs_dir": str(tmp_path)})
    art = stages.fbn_recovery(cfg, snrs=(0.3, 3.0), n_planted=4, n_seeds=2, subject_counts=(4,),
                              levels=(0.05, 0.5))
    rec = stages.read_tsv(art, "recovery.tsv")
    planted = stages.read_tsv(art, "planted.tsv")
    snr0 = art.info["default_snr"]
    assert snr0 == pytest.approx(0.36)
    assert set(art.info["twin_seeds"]) == {1, 2}
    # first twin at every SNR (default included), the second at the default only, the first
    # again with 4 subjects instead of 3; 2 statistics
    want = {(1, s, 3) for s in (0.3, snr0, 3.0)} | {(2, snr0, 3), (1, snr0, 4)}
    assert set(zip(rec.twin_seed, rec.snr, rec.n_subjects)) == want and len(rec) == 2 * len(want)
    assert art.info["subject_counts"] == [3, 4]
    # calibration: the unplanted atoms' tests at the default SNR, per statistic and twin size
    cal = stages.read_tsv(art, "calibration.tsv")
    tables = stages.read_tsv(art, "couplings.tsv")
    null = tables[(tables.snr == snr0) & (tables.atom >= 4)]
    assert len(cal) == 2 * 2 * 2  # statistics x sizes x levels
    for row in cal.itertuples():
        p = null[(null.statistic == row.statistic) & (null.n_subjects == row.n_subjects)].p
        assert row.n_tests == len(p) == row.n_twins * 4 * 2 * tables.network.nunique()
        assert row.share == pytest.approx((p <= row.level).mean())
        assert row.ratio == pytest.approx(row.share / row.level)
    assert set(cal[cal.n_subjects == 3].n_twins) == {2}
    assert len(planted) == 4 and planted.network.is_unique and (planted.vif >= 1).all()
    assert list(planted.sign) == ["active", "deactive", "active", "deactive"]
    assert planted.n_voxels.is_monotonic_decreasing
    for row in rec[rec.snr == snr0].itertuples():
        hits = planted[f"{row.statistic}_seed{row.twin_seed}"]
        assert row.tp == hits.sum() and row.fn == (~hits).sum()
        assert row.recall == pytest.approx(hits.mean())
    strong = rec[rec.snr == 3.0]
    assert (strong.recall == 1.0).all(), strong  # the planted signal at SNR 3 is unmissable
    assert art.info["unplanted_networks"]
    again = stages.fbn_recovery(cfg, snrs=(0.3, 3.0), n_planted=4, n_seeds=2, subject_counts=(4,),
                                levels=(0.5, 0.05))
    assert again.path == art.path


@pytest.mark.parametrize("kw, name", [({"n_planted": 0}, "n_planted"), ({"n_seeds": 1.5}, "n_seeds"),
                                      ({"statistics": ["t"]}, "statistics"),
                                      ({"snrs": ()}, "snrs"), ({"snrs": (0.2, -1)}, "snrs"),
                                      ({"subject_counts": (1,)}, "subject_counts"),
                                      ({"levels": (0.05, 1.0)}, "levels")])
def test_recovery_stage_refuses_bad_arguments_before_work(tmp_path, kw, name):
    from llmbrain_utils import config, stages

    cfg = config.validate({**TINY, "runs_dir": str(tmp_path / "runs")})
    with pytest.raises(ParameterError, match=name):
        stages.fbn_recovery(cfg, **kw)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.json"))
