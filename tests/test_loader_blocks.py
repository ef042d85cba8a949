"""The fMRI loader a subject at a time: load_bold reads only the mask's voxels of each volume
(the numbers of nibabel's whole 4-D read, bit for bit, whatever the file's encoding),
load_dataset(out=) fills a memory map row by row, and fmri_data loads its subjects as blocks
into bold.npy, the in-memory loader's array bit for bit; a subject of another shape names its
file and leaves no artifact."""

from __future__ import annotations

import gzip
import shutil
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from llmbrain_utils import config, fmri, stages
from llmbrain_utils.errors import InputError
from llmbrain_utils.fmri import io as fio

TINY = dict(n_subjects=3, resolution_mm=12, n_perm=20)


# ------------------------------------------------------------------ load_bold's masked reader
def _scan(tmp: Path, name: str, *, dtype=np.float32, big_endian=False, n_t=17, seed=0):
    """A scan on a 7 x 6 x 5 grid and an irregular mask (the voxels' order matters)."""
    rng = np.random.default_rng(seed)
    aff = np.diag([4.0, 4.0, 4.0, 1.0])
    keep = rng.random((7, 6, 5)) < 0.6
    data = (rng.standard_normal((7, 6, 5, n_t)) * 50 + 500).astype(np.float32)
    data[2, 3, 1] = 7.0  # a constant voxel
    img = nib.Nifti1Image(data, aff, dtype=dtype)
    if big_endian:
        img = nib.Nifti1Image(data, aff, img.header.as_byteswapped(">"), dtype=dtype)
    img.header.set_xyzt_units("mm", "sec")
    img.header.set_zooms((4.0, 4.0, 4.0, 1.5))
    path = tmp / name
    img.to_filename(path)
    return path, nib.Nifti1Image(keep.astype(np.uint8), aff)


def _nibabel_read(path, mask_img, start_tr, n_trs):
    """The reference: nibabel's whole 4-D read of the window, then the mask."""
    data = np.asarray(nib.load(path).dataobj[..., start_tr:start_tr + n_trs], dtype=np.float32)
    return np.ascontiguousarray(data[np.asarray(mask_img.dataobj) > 0].T)


@pytest.mark.parametrize("name, kw", [
    ("f32_bold.nii.gz", {}),
    ("f32_bold.nii", {}),
    ("be_bold.nii.gz", {"big_endian": True}),
    ("i16_bold.nii.gz", {"dtype": np.int16}),  # scaled by nibabel: slope and intercept
    ("u8_bold.nii", {"dtype": np.uint8, "big_endian": True}),
])
def test_masked_reader_gives_nibabels_numbers(tmp_path, name, kw):
    path, mask = _scan(tmp_path, name, **kw)
    img = nib.load(path)
    assert fio._mask_columns(img, np.asarray(mask.dataobj) > 0) is not None  # the fast path
    for start_tr, n_trs in ((0, 17), (3, 9), (5, 12)):
        ref = _nibabel_read(path, mask, start_tr, n_trs)
        got = fmri.load_bold(path, mask, start_tr=start_tr, n_trs=n_trs, zscore=False)
        assert got.dtype == np.float32 and got.tobytes() == ref.tobytes()
        z = fmri.load_bold(path, mask, start_tr=start_tr, n_trs=n_trs)
        assert z.tobytes() == fio._standardize(ref, path, detrend=False, zscore=True)[0].tobytes()


def _inflaters():
    out = [("zlib", lambda: (zlib, (zlib.error,)))]
    try:
        from isal import isal_zlib
    except ImportError:
        return out
    return out + [("isal", lambda: (isal_zlib, (zlib.error, isal_zlib.error)))]


@pytest.mark.parametrize("inflater", [f for _, f in _inflaters()], ids=[n for n, _ in _inflaters()])
@pytest.mark.parametrize("small", [False, True], ids=["buffers", "small-buffers"])
def test_masked_reader_gzip_members_and_cuts(tmp_path, monkeypatch, inflater, small):
    path, mask = _scan(tmp_path, "one_bold.nii.gz")
    ref = _nibabel_read(path, mask, 0, 17)
    monkeypatch.setattr(fio, "_inflate_module", inflater)
    if small:  # many batches, input read a few bytes at a time
        monkeypatch.setattr(fio, "_BATCH", 1000)
        monkeypatch.setattr(fio, "_GZ_IN", 333)
    assert fmri.load_bold(path, mask, zscore=False).tobytes() == ref.tobytes()
    # a file of two gzip members (concatenated .gz), read as one stream, as nibabel does
    raw = gzip.decompress(path.read_bytes())
    multi = tmp_path / "multi_bold.nii.gz"
    multi.write_bytes(gzip.compress(raw[:5000]) + gzip.compress(raw[5000:]))
    assert fmri.load_bold(multi, mask, zscore=False).tobytes() == ref.tobytes()
    # cut inside the data, or inside the gzip trailer (its CRC and length), or a wrong CRC
    whole = path.read_bytes()
    bad = bytearray(whole)
    bad[-8] ^= 0xFF
    for name, data in (("half_bold.nii.gz", whole[:len(whole) // 2]),
                       ("tail_bold.nii.gz", whole[:-4]), ("crc_bold.nii.gz", bytes(bad))):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(InputError, match=rf"{name}: truncated or corrupt data"):
            fmri.load_bold(tmp_path / name, mask)


# ----------------------------------------------------------- load_dataset(out=), fmri_data
@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    """fmri_data on a tiny twin (3 subjects, 12 mm), and what the in-memory loader reads from
    the twin it wrote."""
    runs = tmp_path_factory.mktemp("loader") / "runs"
    cfg = config.validate({**TINY, "runs_dir": str(runs)})
    art = stages.fmri_data(cfg)
    mask = fmri.brain_mask(cfg.resolution_mm)
    kw = dict(tr_s=cfg.tr_s, n_trs=art.info["n_trs"], resample=True)
    root = art.path / "dataset"
    ram, subs = fmri.load_dataset(root, cfg.story, "001-003", mask, **kw)
    return {"cfg": cfg, "art": art, "runs": runs, "root": root, "mask": mask, "kw": kw,
            "ram": ram, "subs": subs}


def test_out_memmap_gives_the_in_memory_array(tiny, tmp_path):
    cfg, ram = tiny["cfg"], tiny["ram"]
    mm = np.lib.format.open_memmap(tmp_path / "bold.npy", mode="w+", dtype=np.float32, shape=ram.shape)
    got, subs = fmri.load_dataset(tiny["root"], cfg.story, "001-003", tiny["mask"], out=mm, **tiny["kw"])
    assert got is mm and subs == tiny["subs"] == ["001", "002", "003"]
    mm.flush()
    assert np.load(tmp_path / "bold.npy").tobytes() == ram.tobytes()
    # the per-subject entry point: the plan, then one subject alone
    scans, options = fio.dataset_scans(tiny["root"], cfg.story, "001-003", tiny["mask"], **tiny["kw"])
    assert list(scans) == subs
    assert fio.load_scan(scans["002"], **options).tobytes() == ram[1].tobytes()
    with pytest.raises(InputError, match=r"parameter 'out'.*S = 3"):
        fmri.load_dataset(tiny["root"], cfg.story, "001-003", tiny["mask"],
                          out=np.empty((2, *ram.shape[1:]), np.float32), **tiny["kw"])


def test_fmri_data_bold_and_tsnr_are_the_in_memory_loaders(tiny, tmp_path):
    art, ram = tiny["art"], tiny["ram"]
    np.save(tmp_path / "ram.npy", ram)  # the file fmri_data wrote before, byte for byte
    assert art.file("bold.npy").read_bytes() == (tmp_path / "ram.npy").read_bytes()
    raw, _ = fmri.load_dataset(tiny["root"], tiny["cfg"].story, "001-003", tiny["mask"],
                               kind="preproc", zscore=False, **tiny["kw"])
    ts = np.stack([fmri.tsnr(x) for x in raw]).astype(np.float32)
    assert np.load(art.file("tsnr.npy")).tobytes() == ts.tobytes()
    assert not [p.name for p in art.path.glob(".*")]  # the blocks' options file is gone


def _shorten(path: Path, n_t: int) -> None:
    img = nib.load(path)
    short = nib.Nifti1Image(np.asarray(img.dataobj)[..., :n_t], img.affine, img.header)
    short.to_filename(path)


def test_a_subject_of_another_shape_is_named(tiny, tmp_path):
    cfg = tiny["cfg"]
    root = Path(shutil.copytree(tiny["root"], tmp_path / "ds"))
    bad = next((root / "derivatives" / "afni-nosmooth").rglob("sub-002_*bold.nii.gz"))
    n_t = tiny["kw"]["n_trs"] - 5
    _shorten(bad, n_t)
    kw = {**tiny["kw"], "n_trs": None}  # every volume: the shapes must then agree
    mm = np.lib.format.open_memmap(tmp_path / "b.npy", mode="w+", dtype=np.float32,
                                   shape=tiny["ram"].shape)
    for out in (None, mm):
        with pytest.raises(InputError, match=rf"{bad.name}.*: {n_t} TRs x \d+ voxels; "
                                             rf"sub-001 has {n_t + 5} x \d+"):
            fmri.load_dataset(root, cfg.story, "001-003", tiny["mask"], out=out, **kw)


def test_fmri_data_with_a_short_subject_names_it_and_leaves_no_artifact(tmp_path, monkeypatch):
    write = stages._twin_dataset

    def cut_one(cfg, stim, out_dir, **kw):
        root, info, load_kw = write(cfg, stim, out_dir, **kw)
        _shorten(next(root.rglob("sub-003_*desc-clean_bold.nii.gz")), stim.info["n_trs"] - 3)
        return root, info, load_kw

    monkeypatch.setattr(stages, "_twin_dataset", cut_one)
    runs = tmp_path / "runs"
    with pytest.raises(InputError, match=r"sub-003_task-\w+_space-\w+_res-\w+_desc-clean_bold"
                                         r"\.nii\.gz, field 'volumes': \d+ volumes, fewer than"):
        stages.fmri_data({**TINY, "runs_dir": str(runs)})
    assert not (runs / "fmri").exists() or not [p for p in (runs / "fmri").iterdir()
                                                if not p.name.endswith(".lock")]
