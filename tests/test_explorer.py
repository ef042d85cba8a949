"""The atom explorer: widget structure, client-side links, PNG pages, input checks, book JS."""

from __future__ import annotations

import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

ipywidgets = pytest.importorskip("ipywidgets")

from llmbrain_utils.errors import InputError, ParameterError  # noqa: E402
from llmbrain_utils.explorer import atom_explorer, atom_figure, atom_pngs  # noqa: E402
from ipywidgets.widgets.widget_link import Link  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _mask() -> nib.Nifti1Image:
    shape = (12, 14, 12)
    ijk = np.indices(shape).reshape(3, -1).T
    centre = (np.array(shape) - 1) / 2
    inside = (((ijk - centre) / (np.array(shape) / 2.2)) ** 2).sum(1) <= 1
    affine = np.diag([8.0, 8.0, 8.0, 1.0])
    affine[:3, 3] = [-44, -60, -40]
    return nib.Nifti1Image(inside.reshape(shape).astype(np.uint8), affine)


def _model(k: int, seed: int, mask: nib.Nifti1Image, n_layers: int = 4, per_layer: int = 10):
    rng = np.random.default_rng(seed)
    n_vox = int(mask.get_fdata().sum())
    n_an = n_layers * per_layer
    loadings = sp.random(k, n_an, density=0.3, random_state=seed, format="csr",
                         data_rvs=rng.standard_normal)
    rows = [{"atom": j, "network": net, "sign": sign, "dice": 0.2, "q": 0.01 if j == 0 else 0.5,
             "coupled": bool(j == 0 and net == "Default" and sign == "active")}
            for j in range(k) for net in ("Default", "Language") for sign in ("active", "deactive")]
    return {"D": rng.standard_normal((30, k)), "group_t": 4 * rng.standard_normal((k, n_vox)),
            "mask_img": mask, "loadings": loadings,
            "layers": np.repeat(np.arange(n_layers), per_layer), "couplings": pd.DataFrame(rows)}


@pytest.fixture(scope="module")
def models():
    mask = _mask()
    return {"bert": _model(3, 0, mask), "llama": _model(2, 1, mask, n_layers=6)}


@pytest.fixture(scope="module")
def explorer(models):
    return atom_explorer(models, tr_s=1.5, dpi=40, figsize=(5, 3))


def _link_pairs(box):
    return {((l.source[0].model_id, l.source[1]), (l.target[0].model_id, l.target[1]))
            for l in box.links}


def test_structure_and_pages(explorer, models):
    pickers, outer = explorer.children
    model_pick, atom_pick, slider = pickers.children
    assert isinstance(outer, ipywidgets.Stack)
    assert list(model_pick.options) == ["bert", "llama"]
    assert [v for _, v in atom_pick.options] == [0, 1, 2]  # padded to the largest k
    assert (slider.min, slider.max) == (0, 2)
    assert len(outer.children) == 2
    for (name, model), inner in zip(models.items(), outer.children):
        assert isinstance(inner, ipywidgets.Stack)
        assert len(inner.children) == 3
        k = model["D"].shape[1]
        for j, page in enumerate(inner.children):
            if j >= k:  # llama has 2 atoms: its third page says so
                assert isinstance(page, ipywidgets.HTML) and "no atom 2" in page.value
                continue
            caption, image = page.children
            assert f"atom {j}" in caption.value and name in caption.value
            assert isinstance(image, ipywidgets.Image) and image.format == "png"
            assert bytes(image.value).startswith(PNG_MAGIC)
    # atom 0 of each model is coupled to Default (active), the others to nothing
    assert "+ Default" in outer.children[0].children[0].children[0].value
    assert "coupled networks: none" in outer.children[0].children[1].children[0].value


def test_pickers_are_jslinked_to_the_stacks(explorer):
    pickers, outer = explorer.children
    model_pick, atom_pick, slider = pickers.children
    assert all(isinstance(l, Link) for l in explorer.links)
    pairs = _link_pairs(explorer)
    expected = {((model_pick.model_id, "index"), (outer.model_id, "selected_index")),
                ((slider.model_id, "value"), (atom_pick.model_id, "index"))}
    expected |= {((atom_pick.model_id, "index"), (inner.model_id, "selected_index"))
                 for inner in outer.children}
    assert pairs == expected
    # the Dropdown's index is synced to the browser (jslink needs a synced trait)
    assert atom_pick.trait_metadata("index", "sync") and model_pick.trait_metadata("index", "sync")


def test_widget_state_is_embeddable(explorer):
    state = ipywidgets.Widget.get_manager_state(widgets=None)["state"]
    ids = {l.model_id for l in explorer.links}
    assert ids <= set(state)
    for mid in ids:
        assert state[mid]["model_name"] == "LinkModel"


def test_png_size_and_figure(models):
    pngs = atom_pngs(models["bert"], name="bert", dpi=90)
    assert len(pngs) == 3 and all(p.startswith(PNG_MAGIC) for p in pngs)
    assert max(map(len, pngs)) < 60_000
    width = int.from_bytes(pngs[0][16:20], "big")
    assert width == round(7.2 * 90)  # default figsize at 90 dpi
    fig = atom_figure(models["llama"], 1, name="llama")
    # legible in the book: drawn for the 730 px column at 100 dpi, no text under 9 pt
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from llmbrain_utils import plotting

    FigureCanvasAgg(fig)
    fonts = plotting.figure_fonts(fig)
    assert fonts["min_font_pt"] >= plotting.MIN_FONT_PT and fonts["width_in"] * 100 <= plotting.PAGE_WIDTH_PX
    titles = [ax.get_title(loc="left") for ax in fig.axes]
    assert "AN sub-group" in " ".join(titles) and "time course" in titles
    # the histogram has one bar per layer and sign: 6 layers x 2
    hist = next(ax for ax in fig.axes if ax.get_title(loc="left").startswith("AN sub-group"))
    assert len(hist.patches) == 12
    n_an = int(np.count_nonzero(models["llama"]["loadings"].toarray()[1]))
    assert sum(p.get_height() for p in hist.patches) == n_an


@pytest.mark.parametrize("mutate, field", [
    (lambda m: m.pop("couplings"), None),
    (lambda m: m.update(D=np.zeros((30, 5))), "group_t"),
    (lambda m: m.update(loadings=m["loadings"].toarray()), "loadings"),
    (lambda m: m.update(layers=np.zeros(3, int)), "layers"),
    (lambda m: m.update(couplings=m["couplings"].drop(columns="q")), "couplings"),
    (lambda m: m.update(couplings=m["couplings"].assign(atom=7)), "couplings.atom"),
    (lambda m: m.update(couplings=m["couplings"].assign(sign="up")), "couplings.sign"),
    (lambda m: m.update(mask_img="/nonexistent/mask.nii.gz"), "mask_img"),
])
def test_bad_model_inputs_named(models, mutate, field):
    bad = dict(models["bert"])
    mutate(bad)
    with pytest.raises(InputError) as err:
        atom_explorer({"bert": bad})
    assert "models['bert']" in str(err.value)
    if field is not None:
        assert err.value.field == field


@pytest.mark.parametrize("kwargs, name", [
    ({"tr_s": 0}, "tr_s"), ({"t_threshold": -1}, "t_threshold"), ({"dpi": 5}, "dpi"),
    ({"figsize": (0, 3)}, "figsize"), ({"max_networks": 0}, "max_networks"),
])
def test_bad_options(models, kwargs, name):
    with pytest.raises(ParameterError, match=name):
        atom_explorer(models, **kwargs)
    with pytest.raises(ParameterError, match="models"):
        atom_explorer({})


def test_book_config_points_at_local_widget_js():
    import yaml

    config = yaml.safe_load((ROOT / "_config.yml").read_text())["sphinx"]["config"]
    js = config["nb_ipywidgets_js"]
    assert list(js) == ["require.js", "embed-amd.js"]  # require.js must load first
    assert not any(re.match(r"[a-z]+://", key) for key in js)  # no remote URL
    static = [ROOT / p for p in config["html_static_path"]]
    script = (ROOT / "tools" / "fetch_widget_js.sh").read_text()
    for name in js:
        assert name in script
    fetched = [d / name for d in static for name in js if (d / name).exists()]
    if len(fetched) < len(js):
        pytest.skip("widget JS not fetched yet (run: bash tools/fetch_widget_js.sh)")
    embed = next(p for p in fetched if p.name == "embed-amd.js").read_text()
    # the built-in widgets are bundled: no CDN is needed for Stack, Dropdown, Link, Image
    assert 'define("@jupyter-widgets/controls"' in embed
    assert 'define("@jupyter-widgets/html-manager"' in embed


def test_given_figures_are_used_and_checked(models, monkeypatch):
    """Figures drawn before (a cached artifact) go into the pages as they are; the models
    without them are drawn; figures of the wrong count, kind or model are refused."""
    from llmbrain_utils import explorer as ex

    given = atom_pngs(models["bert"], name="bert", dpi=40, figsize=(5, 3))
    drawn = []
    real = ex.atom_pngs

    def spy(model, **kw):
        drawn.append(kw["name"])
        return real(model, **kw)

    monkeypatch.setattr(ex, "atom_pngs", spy)
    box = ex.atom_explorer(models, dpi=40, figsize=(5, 3), pngs={"bert": given})
    assert drawn == ["llama"]
    bert_pages = box.children[1].children[0].children
    assert [page.children[1].value for page in bert_pages] == given
    with pytest.raises(InputError, match="one PNG per atom"):
        ex.atom_explorer(models, pngs={"bert": given[:2]})
    with pytest.raises(InputError, match="one PNG per atom"):
        ex.atom_explorer(models, pngs={"bert": [b"not a png"] * 3})
    with pytest.raises(ParameterError, match="pngs"):
        ex.atom_explorer(models, pngs={"gpt": given})


def test_explorer_figures_stage_caches_the_figures(tmp_path):
    """stages.explorer_figures draws one PNG per atom of a tiny chain and stores them; a second
    call is a cache hit that reads the same bytes back; the name is part of the key."""
    from llmbrain_utils import config, stages

    cfg = config.validate(dict(n_subjects=2, resolution_mm=12, k=4, n_perm=10, fbn_perm=100,
                               dict_iter=20, runs_dir=str(tmp_path)))
    art = stages.explorer_figures(cfg, "MiniLM")
    figs = stages.read_explorer_figures(art)
    assert len(figs) == 4 and all(f.startswith(PNG_MAGIC) for f in figs)
    assert art.info["n_atoms"] == 4 and art.info["name"] == "MiniLM"
    again = stages.explorer_figures(cfg, "MiniLM")
    assert again.path == art.path and stages.read_explorer_figures(again) == figs
    assert stages.explorer_figures(cfg, "other name").path != art.path
    with pytest.raises(ParameterError, match="name"):
        stages.explorer_figures(cfg, 3)
