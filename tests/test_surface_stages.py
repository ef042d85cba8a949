"""The mapping chain on the cortical surface (``space: fsaverage5 / fsaverage6``): the
synthetic twin on a mesh through fmri -> encoding -> recovery -> mapping, and Narratives'
fsaverage6 GIfTI read by the fMRI stage (a fixture in the real layout)."""
from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from llmbrain_utils import fetch, fmri, stages, surface
from llmbrain_utils.errors import InputError, ParameterError

SURF = dict(space="fsaverage5", atlas="TY17", plant_atlas="TY17", compare_atlas="TY7",
            fbn_null="spin", fbn_tail="gpd", n_subjects=4, k=12, dict_iter=40, n_perm=100,
            group_perm=20, fbn_perm=200, recovery_snrs=[0.6])


@pytest.fixture(scope="module")
def surface_run(tmp_path_factory):
    cfg = {**SURF, "runs_dir": str(tmp_path_factory.mktemp("runs"))}
    return cfg, stages.fmri_data(cfg)


def test_twin_on_the_mesh_is_read_back_as_data(surface_run):
    cfg, data = surface_run
    truth = data.info["truth"]
    atlas = surface.load_surface_atlas("TY17", "fsaverage5")
    bold = stages.read_bold(data, mmap=False)
    assert bold.shape == (4, stages.stimulus(cfg).info["n_trs"], atlas.n_voxels)
    assert stages.read_space(data) == "fsaverage5" and data.info["mesh"]["n_vertices"] == 18715
    with pytest.raises(InputError, match="mesh fsaverage5 has no brain mask"):
        stages.read_mask(data)
    # the files are in the Narratives layout, one GIfTI per hemisphere, the wall 0
    f = data.path / "dataset" / surface.TWIN_PATH.format(sub="001", task="harrowpoint", run="",
                                                         mesh="fsaverage5", hemi="L")
    g = nib.load(f)
    assert len(g.darrays) == bold.shape[1] and g.darrays[0].data.shape == (10242,)
    wall_l, _ = surface.medial_wall("fsaverage5")
    assert np.all(g.darrays[5].data[wall_l] == 0) and np.all(g.darrays[5].data[~wall_l] != 0)
    # the planted roles on Yeo 17's networks; every plant live (the story has sentence ends)
    assert [p["network"] for p in truth["plant"]] == [
        "SomatomotorB", "Sal/VenAttnA", "DefaultA", "Sal/VenAttnB", "VisualA"]
    assert all(truth["networks"][p["network"]]["planted"] for p in truth["plant"])
    # the signal is where it was planted: ISC of planted vertices above the rest
    isc = np.load(data.file("isc.npy"))
    labels = stages.atlas_labels(atlas)
    planted = np.isin(labels, [p["label"] for p in fmri.live_plants(truth)])
    assert np.median(isc[planted]) > np.median(isc[~planted]) + 0.05
    assert data.info["tsnr"]["kind"] is None and "surface" in data.info["tsnr"]["reason"]


def test_chain_on_the_mesh_finds_the_planted_networks(surface_run):
    cfg, data = surface_run
    enc = stages.encoding(cfg)
    assert np.load(enc.file("group_t.npy")).shape == (12, 18715)
    rec = stages.read_tsv(stages.encoding_recovery(cfg), "recovery.tsv")
    assert set(rec.snr) == {data.info["truth"]["snr"], 0.6}
    fbn_art = stages.fbn_mapping(cfg)
    table = stages.read_couplings(fbn_art)
    assert len(table) == 12 * 17 * 2
    coupled = table[table.coupled]
    planted = {p["network"] for p in data.info["truth"]["plant"]}
    assert len(coupled) > 0
    # precision on the networks: coupled networks are planted ones
    assert coupled.network.isin(planted).mean() >= 0.9
    # the same test as surface.couple_surface (the sphere's rotations, same seed)
    atlas = surface.load_surface_atlas("TY17", "fsaverage5")
    direct = surface.couple_surface(np.load(enc.file("group_t.npy")), atlas, n_perm=200, seed=0,
                                    threshold="top10%", alpha=0.05, tail="gpd")
    assert np.allclose(direct.p.to_numpy(), table.p.to_numpy())
    # the atom explorer draws glass brains: refused on a mesh, before any work
    with pytest.raises(ParameterError, match=r"parameter 'space'.*glass brains"):
        stages.explorer_figures(cfg)


# --------------------------------------------------------------------------- Narratives fsaverage6
def _gifti(path: Path, x: np.ndarray, tr: float = 1.5) -> None:
    """(T, n) -> one vertices x time array, as some tools write it."""
    img = nib.gifti.GiftiImage(
        darrays=[nib.gifti.GiftiDataArray(np.ascontiguousarray(x.T.astype(np.float32)),
                                          datatype="NIFTI_TYPE_FLOAT32",
                                          encoding="GIFTI_ENCODING_B64BIN")],
        meta=nib.gifti.GiftiMetaData({"TimeStep": f"{tr * 1e3:g}"}))
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, path)


def test_stage_reads_narratives_fsaverage6(narratives, tmp_path, monkeypatch):
    """fmri_source: narratives with space fsaverage6 reads the data set's own GIfTI (both
    hemispheres, the medial wall left out); fsaverage5 takes their nested vertices."""
    root = tmp_path / "narratives"
    n_vol = fetch.story_info("pieman")["n_trs"]
    spec = fetch.load_manifest()["kinds"]["fsaverage6"]
    rng = np.random.default_rng(0)
    n = surface.HEMI_VERTICES["fsaverage6"]
    walls = surface.medial_wall("fsaverage6")
    story = np.convolve(rng.standard_normal(n_vol + 9), np.ones(10) / 10, mode="valid")
    story = (story - story.mean()) / story.std()
    full = {}
    for sub in ("002", "003"):
        for h, hemi in enumerate("LR"):
            x = rng.standard_normal((n_vol, n)).astype(np.float32)
            x[:, : n // 2] += 2.0 * story[:, None]  # a shared response in half of each hemisphere
            x[:, walls[h]] = 0.0  # the wall: constant, as in the data set
            full[sub, hemi] = x
            _gifti(root / spec["path"].format(sub=sub, task="pieman", run="", hemi=hemi), x)
    (root / "participants.tsv").write_text(
        "participant_id\tage\tsex\ttask\tcondition\tcomprehension\n"
        "sub-002\t25\tF\tpieman\tn/a\tn/a\nsub-003\t26\tM\tpieman\tn/a\tn/a\n")
    monkeypatch.setenv("LLMBRAIN_DATA", str(root))
    cfg = {"runs_dir": str(tmp_path / "runs"), "story": "pieman", "narratives_dir": str(narratives),
           "fmri_source": "narratives", "space": "fsaverage6", "atlas": "TY17",
           "plant_atlas": "TY17", "compare_atlas": "TY7", "fbn_null": "spin", "n_perm": 50}
    art = stages.fmri_data(cfg)
    T = art.info["n_trs"]
    bold6 = stages.read_bold(art, mmap=False)
    left, right = surface.cortex_vertices("fsaverage6")
    assert bold6.shape == (2, T, left.size + right.size) == (2, T, 74839)
    for s, sub in enumerate(("002", "003")):
        x = np.concatenate([full[sub, "L"][:T, left], full[sub, "R"][:T, right]], axis=1)
        assert np.allclose(bold6[s], (x - x.mean(0)) / x.std(0), atol=1e-4)
    assert art.info["tsnr"]["kind"] is None
    isc = np.load(art.file("isc.npy"))
    shared = np.concatenate([left < n // 2, right < n // 2])
    assert np.median(isc[shared]) > 0.5 and abs(np.median(isc[~shared])) < 0.05
    # fsaverage5: the first 10,242 vertices of each hemisphere of the same files
    bold5 = stages.read_bold(stages.fmri_data({**cfg, "space": "fsaverage5"}), mmap=False)
    l5, r5 = surface.cortex_vertices("fsaverage5")
    assert bold5.shape == (2, T, 18715)
    cols6 = {v: j for j, v in enumerate(np.concatenate([left, n + right]))}
    idx = [cols6[v] for v in np.concatenate([l5, n + r5])]
    assert np.allclose(bold5, bold6[:, :, idx], atol=1e-5)
    # a hemisphere missing: the error names the file and how to fetch it
    (root / spec["path"].format(sub="003", task="pieman", run="", hemi="R")).unlink()
    with pytest.raises(InputError, match=r"sub-003_task-pieman_space-fsaverage6_hemi-R.*not found.*fetch"):
        stages.fmri_data({**cfg, "n_perm": 60})


# --------------------------------------------------------------------------- the chapters on a mesh
def test_surface_figures_are_page_sized_and_legible():
    import matplotlib

    matplotlib.use("Agg")
    from llmbrain_utils import plotting

    plotting.style()
    atlas = surface.load_surface_atlas("TY7", "fsaverage6")
    x = np.random.default_rng(0).standard_normal(atlas.n_voxels)
    for fig in (plotting.surface_map(x, "fsaverage6", threshold=1.0, label="t", title="a map",
                                     outline=atlas.masks[0]),
                plotting.surface_labels(stages.atlas_labels(atlas), "fsaverage6",
                                        atlas.network_names)):
        w, _ = fig.get_size_inches()
        assert w * fig.dpi <= plotting.PAGE_WIDTH_PX + 1
        assert plotting.figure_fonts(fig)["min_font_pt"] >= plotting.MIN_FONT_PT
    # every network present is in the legend, in the atlas's order
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == list(atlas.network_names)
    with pytest.raises(InputError):  # a volume's voxels are not a mesh's vertices
        plotting.surface_map(np.zeros(100), "fsaverage5")


def test_fmri_chapter_runs_on_a_mesh(tmp_path):
    """Chapter 4's notebook on the surface twin (a tiny run through the pipeline): its mesh
    branches execute and say vertices, not voxels."""
    import yaml

    from llmbrain_utils import pipeline

    p = tmp_path / "surface.yaml"
    p.write_text(yaml.safe_dump({"common": {"space": "fsaverage5", "n_subjects": 3, "n_perm": 50}}))
    res = pipeline.execute(p, only=["fmri"], runs_dir=str(tmp_path / "runs"), name="mesh")
    nb = json.loads(next(res.run.notebooks.glob("03_*.ipynb")).read_text())
    text = "".join(o.get("text", "") if isinstance(o.get("text", ""), str) else "".join(o["text"])
                   for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", []))
    assert "vertices: 18715 (fsaverage5 cortex)" in text
    assert "mesh: fsaverage5 (hemi-L and hemi-R)" in text
    assert "SomatomotorB" in text and "no tSNR" in text
    pngs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])
            if "image/png" in o.get("data", {})]
    assert len(pngs) >= 4  # ISC, carpet, planted networks, sources and ISC by network


def test_brain_figures_take_a_volume_or_a_mesh():
    """plotting.labels_map / overview / slices: one call for both spaces (``where`` = the mask
    image or the mesh's name), page-sized, text of 9 pt or more."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from llmbrain_utils import fbn, plotting

    plotting.style()
    mask = fmri.brain_mask(12)
    vol = fbn.load_atlas("TY7", mask)
    surf = surface.load_surface_atlas("TY7", "fsaverage5")
    for where, atlas in ((mask, vol), ("fsaverage5", surf)):
        labels = stages.atlas_labels(atlas)
        x = np.random.default_rng(1).standard_normal(labels.size)
        figs = [plotting.labels_map(labels, where, atlas.network_names, ncol=4, title="atlas",
                                    colors=plt.cm.tab20(np.arange(atlas.n_networks))),
                plotting.overview(np.where(x > 1, x, 0), where, label="r", title="a map"),
                plotting.slices(x, where, threshold=1.5, label="t", title="atom 0",
                                outline=atlas.masks[0])]
        for fig in figs:
            fig.canvas.draw()
            assert fig.get_size_inches()[0] * fig.dpi <= plotting.PAGE_WIDTH_PX + 1
            assert plotting.figure_fonts(fig)["min_font_pt"] >= plotting.MIN_FONT_PT
        legend = [t.get_text() for t in figs[0].legends[0].get_texts()]
        assert legend == list(atlas.network_names)
        plt.close("all")
