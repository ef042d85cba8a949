"""Narratives manifest and fetcher, against a real HTTP server on 127.0.0.1 (no internet)."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import logging
import threading
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from llmbrain_utils import fetch, fmri
from llmbrain_utils.errors import InputError, ParameterError

CLEAN = ("derivatives/afni-nosmooth/sub-{sub}/func/sub-{sub}_task-pieman{run}_space-"
         "MNI152NLin2009cAsym_res-native_desc-clean_bold.nii.gz")


# --------------------------------------------------------------------------- manifest
def test_parse_subjects():
    assert fetch.parse_subjects("001-003") == ["001", "002", "003"]
    assert fetch.parse_subjects("1,3, sub-010") == ["001", "003", "010"]
    assert fetch.parse_subjects("sub-008-sub-010,9") == ["008", "009", "010"]
    assert fetch.parse_subjects([2, "002", 5]) == ["002", "005"]
    assert fetch.parse_subjects(7) == ["007"]
    with pytest.raises(ParameterError, match="participants.tsv"):
        fetch.parse_subjects(None)
    for bad in ("010-001", "abc", "1,,2", "0", "1234"):
        with pytest.raises(ParameterError, match="subjects"):
            fetch.parse_subjects(bad)


def test_manifest_is_consistent():
    m = fetch.load_manifest()
    assert m["tr_s"] == 1.5 and "ds002345" in m["base_url"]
    for task, t in m["tasks"].items():
        for name in t["exclude"]:
            assert name.startswith("sub-") and f"_task-{task}" in name, (task, name)
        if t["events"] == "per-scan":
            continue
        stories = [e for e in t["events"] if e["trial_type"] == "story"]
        onsets = sorted(round(e["onset"] / 1.5) for e in stories)
        for s in t["stories"].values():  # each story window starts at an event's onset TR
            assert s["onset_tr"] in onsets, task
        if t["n_trs"]:
            ends = [round((e["onset"] + e["duration"]) / 1.5) for e in stories]
            assert t["n_trs"] >= max(ends), task
    assert m["tasks"]["pieman"]["n_trs"] == 300 and m["tasks"]["pieman"]["n_trs_verified"]
    for kind, spec in m["kinds"].items():
        assert "{task}" in spec["path"] or kind in ("participants", "scan_exclude"), kind


def test_story_info_and_paths():
    info = fetch.story_info("slumlord")
    assert (info["task"], info["onset_tr"], info["duration_tr"]) == ("slumlordreach", 20, 602)
    assert fetch.story_info("reach")["onset_tr"] == 646
    assert fetch.story_info("milkywayvodka")["condition"] == "vodka"
    assert fetch.story_info("notthefallshortscram")["scrambled"]
    with pytest.raises(ParameterError, match="story"):
        fetch.story_info("lordoftherings")
    # sub-013 heard pieman in two runs; the authors exclude run 2
    assert fetch.relative_paths("pieman", "13") == [CLEAN.format(sub="013", run="_run-1")]
    assert len(fetch.relative_paths("pieman", "13", include_excluded=True)) == 2
    assert fetch.relative_paths("pieman", "001") == []  # both runs excluded
    surf = fetch.relative_paths("black", "300", ["fsaverage6", "mask"])
    assert [Path(p).name for p in surf] == [
        "sub-300_task-black_space-fsaverage6_hemi-L_desc-clean.func.gii",
        "sub-300_task-black_space-fsaverage6_hemi-R_desc-clean.func.gii",
        "tpl-MNI152NLin2009cAsym_res-black_desc-brain_mask.nii.gz"]
    with pytest.raises(ParameterError, match="kinds"):
        fetch.relative_paths("pieman", "2", ["raw"])


def test_list_subjects(tmp_path):
    tsv = tmp_path / "participants.tsv"
    tsv.write_text("participant_id\tage\tsex\ttask\tcondition\tcomprehension\n"
                   "sub-001\t22,23\tF,F\tpieman,tunnel\tn/a,n/a\tn/a,n/a\n"
                   "sub-002\t20\tM\tpieman\tn/a\tn/a\n"
                   "sub-023\t27,28,28\tF,F,F\tpieman,prettymouth,milkyway\tn/a,affair,vodka\tn/a,n/a,n/a\n"
                   "sub-034\t18,19\tM,M\tprettymouth,milkyway\taffair,original\tn/a,n/a\n")
    assert fetch.list_subjects("pieman", tsv) == ["002", "023"]  # sub-001's runs are excluded
    assert fetch.list_subjects("pieman", tsv, drop_excluded=False) == ["001", "002", "023"]
    assert fetch.list_subjects("milkywayvodka", tsv) == ["023"]
    assert fetch.list_subjects("milkyway", tsv) == ["023", "034"]
    assert fetch.story_info("milkywayvodka", participants_tsv=tsv)["subjects"] == ["023"]
    assert fetch.story_info("pieman", participants_tsv=tmp_path / "none.tsv")["subjects"] is None


def test_check_gzip(tmp_path):
    p = tmp_path / "a.gz"
    p.write_bytes(gzip.compress(np.random.default_rng(0).bytes(50000))[:20000])
    with pytest.raises(InputError, match="a.gz.*truncated"):
        fetch.check_gzip(p)


# --------------------------------------------------------------------------- local server
class _Handler(http.server.SimpleHTTPRequestHandler):
    hits: tuple | list = ()  # each server gets its own list (see the fixture)

    def log_message(self, *args):  # keep the test output clean
        pass

    def do_GET(self):
        type(self).hits.append(self.path)
        super().do_GET()


@pytest.fixture()
def server(tmp_path):
    """A real HTTP server on 127.0.0.1 serving a tiny data set in the Narratives layout."""
    root = tmp_path / "remote"
    rng = np.random.default_rng(0)
    aff = np.diag([4.0, 4.0, 4.0, 1.0])
    files = {}
    for sub in ("002", "003", "021"):
        rel = CLEAN.format(sub=sub, run="")
        img = nib.Nifti1Image(rng.standard_normal((4, 4, 3, 30)).astype(np.float32), aff)
        img.header.set_xyzt_units("mm", "sec")
        img.header.set_zooms((4.0, 4.0, 4.0, 1.5))
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        img.to_filename(root / rel)
        files[sub] = root / rel
    (root / "participants.tsv").write_text(
        "participant_id\tage\tsex\ttask\tcondition\tcomprehension\n"
        "sub-002\t20\tM\tpieman\tn/a\tn/a\n"
        "sub-003\t21,21\tF,F\ttunnel,pieman\tn/a,n/a\tn/a,n/a\n"
        "sub-021\t22\tF\tpieman\tn/a\tn/a\n"
        "sub-099\t23\tM\tlucy\tn/a\tn/a\n")
    # sub-005: a file cut in the middle of its gzip stream
    cut = root / CLEAN.format(sub="005", run="")
    cut.parent.mkdir(parents=True)
    data = files["002"].read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    handler = type("H", (_Handler,), {"hits": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                            functools.partial(handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield {"url": f"http://127.0.0.1:{httpd.server_address[1]}", "files": files, "hits": handler.hits,
           "mask": nib.Nifti1Image(np.ones((4, 4, 3), np.uint8), aff)}
    httpd.shutdown()
    httpd.server_close()


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_fetch_good_files(server, tmp_path):
    dest = tmp_path / "cache"
    rel2 = CLEAN.format(sub="002", run="")
    paths = fetch.fetch("pieman", "002-003", dest=dest, base_url=server["url"], progress=False,
                        known_hashes={rel2: "sha256:" + _sha(server["files"]["002"])})
    assert paths == [dest / rel2, dest / CLEAN.format(sub="003", run="")]
    for p, sub in zip(paths, ("002", "003"), strict=True):
        assert p.read_bytes() == server["files"][sub].read_bytes()
    n_hits = len(server["hits"])
    assert n_hits == 2
    # a second call reuses the files (the unhashed one against its recorded sha256)
    assert fetch.fetch("pieman", "2-3", dest=dest, base_url=server["url"], progress=False) == paths
    assert len(server["hits"]) == n_hits
    # the cache is a data set in the real layout: the loader reads it
    data, subs = fmri.load_dataset(dest, "pieman", "002-003", server["mask"])
    assert subs == ["002", "003"] and data.shape == (2, 30, 48)
    # a local file damaged later fails its recorded hash and is downloaded again
    paths[1].write_bytes(b"damaged")
    fetch.fetch("pieman", "3", dest=dest, base_url=server["url"], progress=False)
    assert paths[1].read_bytes() == server["files"]["003"].read_bytes()
    assert len(server["hits"]) == n_hits + 1


def test_fetch_all_subjects(server, tmp_path, monkeypatch):
    dest = tmp_path / "cache"
    paths = fetch.fetch("pieman", "all", dest=dest, base_url=server["url"], progress=False)
    assert [p.name.split("_")[0] for p in paths] == ["sub-002", "sub-003"]  # 021 is excluded
    assert (dest / "participants.tsv").is_file()
    monkeypatch.setenv("LLMBRAIN_DATA", str(dest))
    assert fetch.story_info("pieman")["subjects"] == ["002", "003"]


def test_fetch_checksum_mismatch(server, tmp_path):
    dest = tmp_path / "cache"
    rel = CLEAN.format(sub="002", run="")
    with pytest.raises(InputError, match=r"sub-002_task-pieman.*checksum mismatch"):
        fetch.fetch("pieman", "002", dest=dest, base_url=server["url"], progress=False,
                    known_hashes={rel: "sha256:" + "0" * 64})
    func = (dest / rel).parent
    assert not (dest / rel).exists()
    assert not func.exists() or list(func.iterdir()) == []  # no temporary file left behind


def test_fetch_missing_file(server, tmp_path):
    with pytest.raises(InputError, match=r"sub-004_task-pieman.*HTTP 404"):
        fetch.fetch("pieman", "004", dest=tmp_path / "c", base_url=server["url"], progress=False)
    assert len(server["hits"]) == 1  # a 404 is not retried


def test_fetch_truncated_without_hash(server, tmp_path):
    dest = tmp_path / "cache"
    with pytest.raises(InputError, match=r"sub-005_task-pieman.*truncated"):
        fetch.fetch("pieman", "005", dest=dest, base_url=server["url"], progress=False)
    assert not (dest / CLEAN.format(sub="005", run="")).exists()


def test_fetch_excluded_and_bad_parameters(server, tmp_path, caplog):
    dest = tmp_path / "cache"
    with caplog.at_level(logging.WARNING):
        assert fetch.fetch("pieman", "021", dest=dest, base_url=server["url"], progress=False) == []
    assert "excluded" in caplog.text
    got = fetch.fetch("pieman", "021", dest=dest, base_url=server["url"], progress=False,
                      include_excluded=True)
    assert got == [dest / CLEAN.format(sub="021", run="")]
    n = len(server["hits"])
    with pytest.raises(ParameterError, match="kinds"):
        fetch.fetch("pieman", "002", dest=dest, kinds=["clean", "nope"], base_url=server["url"])
    with pytest.raises(ParameterError, match="story"):
        fetch.fetch("piemann", "002", dest=dest, base_url=server["url"])
    with pytest.raises(ParameterError, match="retries"):
        fetch.fetch("pieman", "002", dest=dest, base_url=server["url"], retries=-1)
    assert len(server["hits"]) == n  # nothing requested before the parameters were checked


def test_data_home(monkeypatch, tmp_path):
    monkeypatch.setenv("LLMBRAIN_DATA", str(tmp_path / "d"))
    assert fetch.data_home() == tmp_path / "d"
    monkeypatch.delenv("LLMBRAIN_DATA")
    assert fetch.data_home() == Path.home() / ".cache" / "llmbrain" / "narratives"


# --------------------------------------------------------------------------- the real-data stage
PREPROC = ("derivatives/fmriprep/sub-{sub}/func/sub-{sub}_task-{task}_space-"
           "MNI152NLin2009cAsym_res-native_desc-preproc_bold.nii.gz")


def write_scan(path: Path, data: np.ndarray, affine: np.ndarray, tr: float = 1.5) -> None:
    img = nib.Nifti1Image(data.astype(np.float32), affine)
    img.header.set_xyzt_units("mm", "sec")
    img.header.set_zooms((*np.abs(np.diag(affine))[:3], tr))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.to_filename(path)


def narratives_fixture(root: Path, task: str, subjects, n_vol: int, mask_img, *, seed: int = 0,
                       preproc: bool = True) -> dict:
    """A small data set in the real layout: clean (and preproc) scans on the mask's grid.

    Voxels in the upper half of the brain (z > 0 mm) share one story-driven time course
    across subjects; the others hold independent noise. Every scan's first volumes (before the
    audio) hold a large offset, so a wrong cut shows.
    """
    rng = np.random.default_rng(seed)
    mask = np.asarray(mask_img.dataobj) > 0
    xyz = np.argwhere(mask) @ mask_img.affine[:3, :3].T + mask_img.affine[:3, 3]
    shared = xyz[:, 2] > 0
    story = np.convolve(rng.standard_normal(n_vol + 9), np.ones(10) / 10, mode="valid")
    story = (story - story.mean()) / story.std()
    clean, raw = {}, {}
    for sub in subjects:
        x = rng.standard_normal((n_vol, mask.sum()))
        x[:, shared] += 1.5 * story[:, None]
        x[:8] += 50.0
        vol = np.zeros((*mask.shape, n_vol), np.float32)
        vol[mask] = x.T
        write_scan(root / CLEAN.replace("pieman", task).format(sub=sub, run=""), vol, mask_img.affine)
        clean[sub] = x
        if preproc:
            y = 900.0 + 9.0 * x
            vol[mask] = y.T
            write_scan(root / PREPROC.format(sub=sub, task=task), vol, mask_img.affine)
            raw[sub] = y
    rows = [f"sub-{s}\t25\tF\t{task}\tn/a\tn/a" for s in subjects] + ["sub-099\t30\tM\tlucy\tn/a\tn/a"]
    (root / "participants.tsv").write_text(
        "participant_id\tage\tsex\ttask\tcondition\tcomprehension\n" + "\n".join(rows) + "\n")
    return {"clean": clean, "raw": raw, "shared": shared}


def test_stage_reads_real_layout(narratives, tmp_path, monkeypatch):
    """stages.fmri_data with fmri_source='narratives' on a fixture in the real layout."""
    from llmbrain_utils import stages

    mask = fmri.brain_mask(12)
    root = tmp_path / "narratives"
    n_vol = fetch.story_info("forgot")["n_trs"]  # 574 volumes; the audio starts at 12 s = TR 8
    fx = narratives_fixture(root, "forgot", ["001", "002", "003"], n_vol, mask)
    monkeypatch.setenv("LLMBRAIN_DATA", str(root))
    cfg = {"runs_dir": str(tmp_path / "runs"), "story": "forgot", "narratives_dir": str(narratives),
           "fmri_source": "narratives", "resolution_mm": 12, "n_perm": 100}
    art = stages.fmri_data(cfg)
    T = stages.stimulus(cfg).info["n_trs"]
    win = art.info["scan_window"]
    assert (win["onset_tr"], win["n_trs"], win["audio_onset_s"]) == (8, T, 12.0)
    bold = stages.read_bold(art, mmap=False)
    V = int(np.asarray(mask.dataobj).sum())
    assert bold.shape == (3, T, V) and art.info["n_subjects"] == 3  # sub-099 heard another story
    assert pd.read_csv(art.file("subjects.tsv"), sep="\t", dtype=str)["subject"].tolist() == ["001", "002", "003"]
    # the scan's TRs 8 .. 8+T-1, z-scored, in the mask's voxel order
    for s, sub in enumerate(["001", "002", "003"]):
        x = fx["clean"][sub][8:8 + T]
        assert np.allclose(bold[s], (x - x.mean(0)) / x.std(0), atol=1e-4)
    got = stages.read_mask(art)
    assert np.array_equal(np.asarray(got.dataobj), np.asarray(mask.dataobj))
    assert np.allclose(got.affine, mask.affine)
    isc = np.load(art.file("isc.npy"))
    sh = fx["shared"]
    assert np.median(isc[sh]) > 0.5 and np.abs(np.median(isc[~sh])) < 0.05
    keep = fmri.isc_mask(np.load(art.file("isc_p.npy")))
    assert keep[sh].mean() > 0.95 and keep[~sh].mean() < 0.1
    assert art.info["isc_mask_voxels"] == int(keep.sum())
    # tSNR from the preproc volumes over the same TRs
    ts = np.load(art.file("tsnr.npy"))
    raw = np.stack([fx["raw"][s][8:8 + T] for s in ("001", "002", "003")])
    assert ts.shape == (3, V) and np.allclose(ts, raw.mean(1) / raw.std(1), rtol=1e-4)
    assert art.info["tsnr"]["kind"] == "preproc"

    # new files, new artifact: a listed subject without a scan is named with the way to fetch it
    tsv = root / "participants.tsv"
    tsv.write_text(tsv.read_text() + "sub-004\t26\tM\tforgot\tn/a\tn/a\n")
    with pytest.raises(InputError, match=r"sub-004_task-forgot.*not found.*fetch"):
        stages.fmri_data(cfg)


def test_stage_real_layout_errors(narratives, tmp_path, monkeypatch):
    from llmbrain_utils import stages

    mask = fmri.brain_mask(12)
    root = tmp_path / "narratives"
    monkeypatch.setenv("LLMBRAIN_DATA", str(root))
    cfg = {"runs_dir": str(tmp_path / "runs"), "story": "black", "narratives_dir": str(narratives),
           "fmri_source": "narratives", "resolution_mm": 12, "n_perm": 10}
    with pytest.raises(InputError, match=r"participants.tsv.*not found.*fetch --story black"):
        stages.fmri_data(cfg)
    # black: words + 10 TRs for the response would run 2 TRs past the scan's end, so the
    # stimulus grid stops with the scan (audio onset 12 s = 8 TRs into it) and the data fit
    n_vol = fetch.story_info("black")["n_trs"]
    stim = stages.stimulus(cfg)
    T = stim.info["n_trs"]
    assert T == n_vol - 8 and stim.info["n_trs_uncapped"] == T + 2
    assert stages.read_words(stim)["tr"].max() < T  # every word inside the grid
    # a scan shorter than the story: an error naming the file and the counts
    narratives_fixture(root, "black", ["001", "002"], n_vol - 5, mask, preproc=False)
    with pytest.raises(InputError, match=rf"sub-001_task-black.*{n_vol - 5} volumes, fewer than the {8 + T}"):
        stages.fmri_data(cfg)
    # a story whose audio onset in the scan is unknown is refused before anything is read
    with pytest.raises(InputError, match=r"narratives.yaml.*audio_onset_s.bronx"):
        stages.fmri_data({**cfg, "story": "bronx"})
    # pieman: the audio (music, then the story at 15 s) starts with the scan, so the cut is at
    # TR 0, not at the story's onset TR 10 (the word times count from the audio's start);
    # without preproc scans there is no tSNR, and the artifact says why
    root2 = tmp_path / "pieman"
    narratives_fixture(root2, "pieman", ["002", "003"], fetch.story_info("pieman")["n_trs"], mask,
                       preproc=False)
    monkeypatch.setenv("LLMBRAIN_DATA", str(root2))
    art = stages.fmri_data({**cfg, "story": "pieman"})
    win = art.info["scan_window"]
    assert (win["onset_tr"], win["story_onset_tr"], art.info["n_trs"]) == (0, 10, 297)
    assert art.info["tsnr"]["kind"] is None and "preproc" in art.info["tsnr"]["reason"]
    assert not (art.path / "tsnr.npy").exists()


def test_audio_onsets_match_the_alignments(narratives):
    """Each verified audio onset puts the story's aligned words inside its story event."""
    from llmbrain_utils import stimuli

    m = fetch.load_manifest()
    checked = 0
    for story, entry in m["audio_onset_s"].items():
        info = fetch.story_info(story)
        assert (info["audio_onset_s"], info["audio_onset_verified"]) == (entry["value"], entry["verified"])
        if not entry["verified"]:
            continue
        words = stimuli.load_story(story, narratives_dir=narratives)
        first = float(words["onset"].min()) + entry["value"]
        last = float(words["offset"].max()) + entry["value"]
        events = [e for e in m["tasks"][info["task"]]["events"] if e["trial_type"] == "story"]
        assert min(abs(first - e["onset"]) for e in events) < 1.0, story
        assert last <= events[-1]["onset"] + events[-1]["duration"] + 1.0, story
        assert info["audio_onset_s"] / m["tr_s"] == round(info["audio_onset_s"] / m["tr_s"]), story
        checked += 1
    assert checked >= 8
    assert fetch.story_info("tunnel")["audio_onset_s"] is None  # no entry: unknown


def test_cli_fetch_all_subjects(server, tmp_path, capsys):
    """``--subjects all`` (the fMRI stage's hint) reads participants.tsv and takes every subject."""
    from llmbrain_utils import cli

    dest = tmp_path / "cache"
    rc = cli.main(["fetch", "--story", "pieman", "--subjects", "all", "--dest", str(dest),
                   "--base-url", server["url"]])
    assert rc == 0
    printed = capsys.readouterr().out.split()
    assert [Path(p).name.split("_")[0] for p in printed] == ["sub-002", "sub-003"]
    assert (dest / "participants.tsv").is_file()


def _closed_port() -> int:
    import socket

    with socket.socket() as s:  # bound, then closed: nobody listens there (loopback only)
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("subjects", ["002-003", "all"])
def test_offline_fetch_leaves_nothing_behind(tmp_path, subjects):
    dest = tmp_path / "new" / "cache"
    with pytest.raises(InputError, match="download failed after 1 attempt"):
        fetch.fetch("pieman", subjects, dest=dest, base_url=f"http://127.0.0.1:{_closed_port()}",
                    retries=0, progress=False)
    assert not (tmp_path / "new").exists()
    assert sorted(tmp_path.rglob("*")) == []  # no empty tree, no temporary or lock file


def test_failed_fetch_keeps_what_it_got(server, tmp_path):
    """A fetch that fails on its second file keeps the first (and its recorded hash), and
    removes only the folders it made that are empty."""
    dest = tmp_path / "cache"
    with pytest.raises(InputError, match="HTTP 404"):
        fetch.fetch("pieman", "002,004", dest=dest, base_url=server["url"], progress=False)
    assert (dest / CLEAN.format(sub="002", run="")).is_file()
    assert (dest / fetch.HASH_DB).is_file()
    assert not (dest / "derivatives" / "afni-nosmooth" / "sub-004").exists()
    assert [p.name for p in dest.rglob("*.tmp-*")] == []
