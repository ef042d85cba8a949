"""One story at the real data set's size: the whole chain from BOLD to couplings, timed stage by stage.

Usage::

    # the real data set's size (40 subjects, 3 mm: ~70,000 brain voxels, the default nulls):
    # hours on a small machine, and more memory than 23 GB (see the notes it writes)
    python benchmarks/real_scale.py --out benchmarks/real_scale.json
    # up to the encoding only, keeping the store for a look
    python benchmarks/real_scale.py --until encoding --keep --runs-dir /tmp/rs-store
    # the same code at toy size (a couple of minutes)
    python benchmarks/real_scale.py --subjects 2 --resolution-mm 12 --n-perm 10 \\
        --group-perm 10 --fbn-perm 100 --out /tmp/rs_tiny.json

The stages are the project's own (:mod:`llmbrain_utils.stages`), called in order in a fresh
artifact store (``--runs-dir``, default a new temporary folder under ``/tmp``, removed at the
end unless ``--keep``) with the default run's parameters (``params/default.yaml``) except the
size: ``stimulus``, ``extraction`` and ``dictionary`` are the default run's (small); the fMRI
twin (``fmri_data``), the ``encoding``, its permutation tests (``encoding_tests``) and the
network mapping (``fbn_mapping``) run at ``--subjects`` x ``--resolution-mm`` with the nulls
``--n-perm`` (ISC and per-subject permutation tests), ``--group-perm`` (the group test of
held-out r) and ``--fbn-perm`` (the mapping's null). ``--until`` stops after a stage.

Per stage: wall seconds of the stage call (its upstream stages are cache hits, quick, and
included; the first cache hit of a new artifact hashes its files once), the build seconds the
store's sidecar records for the artifact the stage made, and the peak RSS of this process
during the stage (sampled every 20 ms by a thread, psutil). Sizes: subjects, TRs and voxels
from the fMRI artifact's ``bold.npy``, k from the dictionary's ``D.npy``. Totals: wall seconds
and the whole run's peak RSS. ``bound_ratio`` copies the ridge CV kernel's bound ratio at
70,000 voxels from ``benchmarks/ridge_cv.json`` (when present); ``extrapolation`` scales the
measured per-stage times to Narratives' 345 subjects (its basis is stated in the entry).

Prints one JSON object and writes it to ``--out``. One BLAS / OpenMP / torch thread unless
``--threads`` says more (the stages run as the pipeline runs them: one process).
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: the stages, in run order: (name, the store's folder of its artifact)
STAGES = (("stimulus", "stimulus"), ("extraction", "extraction"), ("dictionary", "dictionary"),
          ("fmri_data", "fmri"), ("encoding", "encoding"), ("encoding_tests", "encoding_tests"),
          ("fbn_mapping", "fbn"))
#: the stages from the BOLD to the couplings (the target's chain)
CHAIN_STAGES = ("fmri_data", "encoding", "encoding_tests", "fbn_mapping")
#: the stages whose work grows with the number of subjects (scaled in the extrapolation)
SUBJECT_STAGES = ("fmri_data", "encoding", "encoding_tests")
#: Narratives' subjects over all stories (the extrapolation's target)
NARRATIVES_SUBJECTS = 345
#: the machines of the extrapolation: name -> cores (one subject per core at most)
FANOUT = {"16_cores": 16, "cluster_10x16_cores": 160}
GIB = 2 ** 30


class Peaks:
    """Peak RSS of this process, sampled every ``interval_s`` by a thread: per stage (the peak
    is reset when a stage starts) and over the whole run."""

    def __init__(self, interval_s: float = 0.02):
        import psutil

        self.proc, self.interval = psutil.Process(), interval_s
        self.stage_peak = self.run_peak = self.proc.memory_info().rss
        self.total_peak = self.stage_total_peak = self.stage_peak
        # anonymous memory (RSS less file-backed and shared pages: what a process really
        # holds; mapped pages of bold.npy are file pages the kernel can drop)
        self.anon_peak = self.stage_anon_peak = self.anon_total_peak = self.stage_anon_total_peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def rss(self) -> int:
        return self.proc.memory_info().rss

    def rss_all(self) -> tuple[int, int]:
        """(largest RSS of one process, sum of RSS) over this process and its children (the
        LocalCluster's nannies and workers)."""
        return self._all()[:2]

    def _all(self) -> tuple[int, int, int, int]:
        """RSS (largest, sum) and anonymous memory (largest, sum: RSS less the shared and
        file-backed pages, psutil's ``rss - shared``) over this process and its children."""
        import psutil

        rss, anon = [], []
        for proc in [self.proc, *self.proc.children(recursive=True)]:
            try:
                m = proc.memory_info()
            except psutil.Error:
                continue
            rss.append(m.rss)
            anon.append(m.rss - getattr(m, "shared", 0))
        return max(rss), sum(rss), max(anon), sum(anon)

    def _sample(self) -> None:
        while not self._stop.is_set():
            one, total, one_anon, total_anon = self._all()
            self._note(one)
            self.total_peak = max(self.total_peak, total)
            self.stage_total_peak = max(self.stage_total_peak, total)
            self.anon_peak = max(self.anon_peak, one_anon)
            self.stage_anon_peak = max(self.stage_anon_peak, one_anon)
            self.anon_total_peak = max(self.anon_total_peak, total_anon)
            self.stage_anon_total_peak = max(self.stage_anon_total_peak, total_anon)
            time.sleep(self.interval)

    def _note(self, rss: int) -> None:
        self.stage_peak = max(self.stage_peak, rss)
        self.run_peak = max(self.run_peak, rss)

    def start_stage(self) -> int:
        rss, total, anon, anon_total = self._all()
        self.stage_peak, self.stage_total_peak = rss, total
        self.stage_anon_peak, self.stage_anon_total_peak = anon, anon_total
        self._note(rss)
        return rss

    def end_stage(self) -> int:
        self._note(self.rss())
        return self.stage_peak

    def close(self) -> None:
        self._stop.set()
        self._thread.join(1)


def machine() -> dict:
    """CPU model, cores, memory (and the load other work puts on it now)."""
    import psutil

    cpu = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    vm = psutil.virtual_memory()
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {"cpu_model": cpu or platform.processor() or platform.machine(),
            "cores": os.cpu_count(), "memory_gib": round(vm.total / GIB, 1),
            "memory_available_gib_at_start": round(vm.available / GIB, 1),
            "load_average_at_start": load, "platform": platform.platform(),
            "python": platform.python_version()}


def base_params(args, runs_dir: Path) -> dict:
    """The default run's parameters (``params/default.yaml``: common, then every section) with
    this run's store and size."""
    from llmbrain_utils import config

    params = config.load_params(None)
    cfg: dict = dict(params.get("common", {}))
    for section, values in params.items():
        if section != "common":
            cfg.update(values or {})
    cfg.update(runs_dir=str(runs_dir), n_subjects=args.subjects, resolution_mm=args.resolution_mm,
               n_perm=args.n_perm, group_perm=args.group_perm, fbn_perm=args.fbn_perm,
               perm_stop=args.perm_stop)
    if args.story:
        cfg["story"] = args.story
    if args.narratives_dir:
        cfg["narratives_dir"] = args.narratives_dir
    return dict(config.validate(cfg))


def ridge_bound_ratio(path: Path) -> dict:
    """``{"ridge_cv": bound ratio of the fast float32 kernel at 70,000 voxels, 5 outer folds}``
    from ``benchmarks/ridge_cv.json``, or ``{}`` when it is absent."""
    try:
        rep = json.loads(path.read_text())
        return {"ridge_cv": rep["cases"]["V=70000 5 outer folds"]["bound_ratio"]["fast_f32"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def kernel_bound_ratios(path: Path) -> dict:
    """``{kernel: bound ratio}`` at the real size (70,000 voxels) from ``benchmarks/kernels.json``
    (the other heavy kernels' benchmark), or ``{}`` when it is absent or has no real size."""
    try:
        real = json.loads(path.read_text())["sizes"]["real"]["kernels"]
        return {name: e["bound_ratio"] for name, e in real.items()}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def artifact_dirs(runs_dir: Path) -> set[str]:
    """Every artifact folder of the store now (to tell a stage's new artifact from a cache hit)."""
    return {str(p) for p in runs_dir.glob("*/*") if p.is_dir() and not p.name.startswith(".")}


def extrapolate(stages: list[dict], subjects: int, sizes: dict, workers: int = 1) -> dict:
    """The measured per-stage times scaled to Narratives' subjects (basis stated in the entry)."""
    walls = {s["stage"]: s["wall_s"] for s in stages}
    grow = [s for s in SUBJECT_STAGES if s in walls]
    fixed = [s for s in walls if s not in SUBJECT_STAGES]
    grow_s = sum(walls[s] for s in grow)
    fixed_s = sum(walls[s] for s in fixed)
    factor = NARRATIVES_SUBJECTS / subjects
    serial = grow_s * workers * factor  # core-seconds: the measured wall times the workers

    def total(cores: int) -> dict:
        workers = min(cores, NARRATIVES_SUBJECTS)
        s = fixed_s + serial / workers
        return {"cores": cores, "workers": workers, "wall_s": round(s, 1), "wall_h": round(s / 3600, 2)}

    out = {
        "basis": (f"measured wall seconds of this run's stages on {workers} worker "
                  f"process(es); the stages whose cost grows with subjects "
                  f"({', '.join(grow) or 'none run'}) turned into core-seconds (wall x workers: "
                  "an upper bound on their work, as if every worker were busy throughout) and "
                  f"scaled linearly from {subjects} to {NARRATIVES_SUBJECTS} subjects "
                  f"(Narratives' total), the rest ({', '.join(fixed)}: fixed size; the mapping "
                  "reads one group map) unchanged. one_process: one core. 16_cores and "
                  "cluster_10x16_cores: those core-seconds spread evenly over the cores (the "
                  "stages fan out per subject and block of 16,384 voxels: 345 x 5 blocks at "
                  "70,000 voxels, more than the cores), this machine's per-core speed, no I/O, "
                  "scheduling or gather cost, and the parts that are one task (the twin, the "
                  "first subject's scan) or few (the mapping's null: one block per 8 atoms) "
                  "counted as if they spread too: a lower bound on the wall time, not a "
                  "measurement"),
        "target_subjects": NARRATIVES_SUBJECTS, "measured_subjects": subjects,
        "scale_factor": round(factor, 3),
        "subject_stages": grow, "subject_stages_wall_s": round(grow_s, 3),
        "per_subject_s": round(grow_s / subjects, 3),
        "fixed_stages": fixed, "fixed_stages_wall_s": round(fixed_s, 3),
        "one_process": {"cores": 1, "workers": 1, "wall_s": round(fixed_s + serial, 1),
                        "wall_h": round((fixed_s + serial) / 3600, 2)},
        **{name: total(cores) for name, cores in FANOUT.items()},
    }
    if sizes.get("trs") and sizes.get("voxels"):
        b = 4 * sizes["trs"] * sizes["voxels"]
        out["bold_array_gib"] = {
            "measured": round(subjects * b / GIB, 3),
            f"at_{NARRATIVES_SUBJECTS}_subjects": round(NARRATIVES_SUBJECTS * b / GIB, 2),
            "basis": "S x T x V float32 (bold.npy) on disk: fmri_data writes it a subject at a "
                     "time and every later block reads its part from a memory map, so no "
                     "process holds it whole"}
    return out


def notes(args, sizes: dict, bound: dict) -> list[str]:
    out = [
        (f"workers = {args.workers}: the heavy stages' blocks (fmri_data's loader and tSNR per "
         "subject, its ISC and ISC null per block of 16,384 voxels; encoding and encoding_tests "
         "per subject and voxel block) ran "
         f"as Dask tasks on a LocalCluster of {args.workers} single-threaded processes "
         "(llmbrain_utils.parallel); the rest of each stage in this process."
         if args.workers > 1 else
         "workers = 1: every stage ran in this one process, its blocks one after another "
         "(llmbrain_utils.parallel in-process)."),
        "not fanned out (one task): the twin's writer (fmri.make_synthetic_dataset, up to "
        "min(4, cores) threads of this process) and the first subject's scan (it sizes "
        "bold.npy). The group test of held-out r on the subjects' average BOLD "
        "(encoding_tests) runs per block of voxels, the mapping's surrogate null (fbn_mapping) "
        "per block of 8 atoms (each worker draws the surrogate fields once).",
        "peak_anon_gib: anonymous memory (RSS less the shared and file-backed pages, psutil's "
        "rss - shared): what a process holds of its own, without the pages of bold.npy it has "
        "mapped, which the kernel can drop.",
        f"threads: BLAS / OpenMP / torch limited to {args.threads} per process (OMP_NUM_THREADS "
        "etc. set to 1 before numpy and torch are imported; --threads raises the limit through "
        "threadpoolctl).",
        "stage wall_s is the stage function's call: its upstream stages are cache hits "
        "(included; the first hit of a new artifact hashes its files once, SHA-256, which is "
        "part of the next stage's time); build_s is the store's sidecar record of the "
        "artifact's own build.",
        "peak_rss_gib: the largest resident memory of one process (this one or a worker), "
        "peak_rss_total_gib: of all of them together (psutil, sampled every 20 ms; a peak "
        "shorter than that can be missed), per stage and over the run.",
        "stimulus, extraction and dictionary are the default run's (the story's words, "
        "all-MiniLM-L6-v2, k = 64); their cost does not depend on the fMRI size.",
        ("bound_ratio: time over the kernel's necessary arithmetic at this machine's "
         "single-thread GEMM rate, from benchmarks/ridge_cv.json and benchmarks/kernels.json "
         "(their own runs, at 70,000 voxels)." if bound else
         "bound_ratio: benchmarks/ridge_cv.json and kernels.json not found; no bound here."),
        "the extrapolation scales linearly in subjects; the ISC null (circular, in fmri_data) "
        "costs S(S-1)/2 subject pairs per surrogate, so it grows faster than linearly, and the "
        "group test in encoding_tests works on the subjects' average BOLD, nearly constant in "
        "S: the linear rule is a first-order estimate.",
        "memory (read from the stages): fmri_data writes bold.npy one subject at a time (a "
        "block per subject writes its row), and from there every block reads its part of "
        "bold.npy through a memory map (isc_loo in blocks of 256 voxels, the blocks of "
        "16,384), so no process holds the S x T x V BOLD. The store also keeps the twin's "
        "NIfTI files (clean and preproc, every subject) besides bold.npy.",
    ]
    if sizes.get("subjects") and sizes.get("trs") and sizes.get("voxels"):
        b = 4 * sizes["subjects"] * sizes["trs"] * sizes["voxels"]
        out.append(f"this run's BOLD: {b / GIB:.3f} GiB float32.")
    return out


def preflight(cfg: dict, n_trs: int) -> dict:
    """Before the fMRI stage: the BOLD array's size from the brain mask and the story's TRs,
    the disk it needs (bold.npy; no process holds it whole: fmri_data writes it a subject at a
    time), and the memory available now."""
    import numpy as np
    import psutil

    from llmbrain_utils import fmri

    V = int(np.asarray(fmri.brain_mask(cfg["resolution_mm"]).dataobj).sum())
    b = 4 * cfg["n_subjects"] * n_trs * V
    need = GIB + 8 * n_trs * V * 4  # a subject's scan and the blocks' arrays, with room
    avail = psutil.virtual_memory().available
    return {"voxels": V, "bold_gib": round(b / GIB, 3),
            "fmri_data_peak_estimate_gib": round(need / GIB, 2),
            "available_gib": round(avail / GIB, 2), "fits": bool(need < avail)}


def block_timings(fmri_art, dic_art, cfg: dict, n_subjects: int, stop: int | None) -> dict:
    """After the run, on its ``bold.npy`` (the first ``n_subjects``, every voxel): the wall
    seconds of the encoding's and the permutation tests' blocks (the stages' own block
    functions) in this process and on the cluster in use (when there is one), and the fixed
    permutation test against the sequential one (``stop``, default 10). One sitting,
    interleaved; every pair of results is compared."""
    import numpy as np

    from llmbrain_utils import parallel, stages as st
    from llmbrain_utils.encoding import fdr

    path = str(fmri_art.file("bold.npy"))
    shape = np.load(path, mmap_mode="r").shape
    S = min(n_subjects, shape[0])
    D = np.load(dic_art.file("D.npy"))
    sls = st._voxel_blocks(shape[2])
    enc_kw = dict(n_folds=cfg["n_folds"], trim=cfg["trim"])
    h = stop or 10
    jobs = {"encoding": (st._encode_block, [(D, path, s, sl, enc_kw) for s in range(S) for sl in sls]),
            "permutation_fixed": (st._permutation_block, [(D, path, s, sl, cfg["n_perm"], cfg["seed"] + s,
                                                           None) for s in range(S) for sl in sls]),
            "permutation_sequential": (st._permutation_block, [
                (D, path, s, sl, cfg["n_perm"], cfg["seed"] + s, h) for s in range(S) for sl in sls])}
    client = parallel.current()
    where = {"in_process": None} | ({"workers": client} if client is not None else {})
    out: dict = {"subjects": S, "voxels": int(shape[2]), "blocks": len(jobs["encoding"][1]),
                 "n_perm": cfg["n_perm"], "stop_after": h}
    results: dict = {}
    for name, (fn, tasks) in jobs.items():
        for label, cl in where.items():
            with parallel.using(cl):
                t0 = time.perf_counter()
                results[name, label] = parallel.map_blocks(fn, tasks)
                out.setdefault(name, {})[f"{label}_s"] = round(time.perf_counter() - t0, 3)
            print(f"[real_scale] blocks of {S} subjects: {name} {label} "
                  f"{out[name][f'{label}_s']:.1f} s", file=sys.stderr, flush=True)

    def same(a, b) -> bool:
        return all(np.array_equal(np.asarray(x), np.asarray(y), equal_nan=True)
                   for ra, rb in zip(a, b)
                   for x, y in (zip(ra.values(), rb.values()) if isinstance(ra, dict) else zip(ra, rb)))
    if client is not None:
        for name in jobs:
            o = out[name]
            o["speedup"] = round(o["in_process_s"] / o["workers_s"], 3)
            o["identical_bit_for_bit"] = same(results[name, "in_process"], results[name, "workers"])
    pf = np.concatenate([b[0] for b in results["permutation_fixed", "in_process"]])
    ps = np.concatenate([b[0] for b in results["permutation_sequential", "in_process"]])
    dr = np.concatenate([b[2] for b in results["permutation_sequential", "in_process"]])
    low = pf < (1 + h) / (1 + cfg["n_perm"])
    per_subject = np.split(np.arange(pf.size), S)
    fdr_same = [bool(np.array_equal(fdr(pf[i], cfg["alpha"])[0], fdr(ps[i], cfg["alpha"])[0]))
                for i in per_subject]
    out["sequential_vs_fixed"] = {
        "speedup_in_process": round(out["permutation_fixed"]["in_process_s"]
                                    / out["permutation_sequential"]["in_process_s"], 3),
        "mean_draws": round(float(dr.mean()), 2),
        "share_stopped_early": round(float((dr < cfg["n_perm"]).mean()), 4),
        "voxels_below_(h+1)/(n_perm+1)": int(low.sum()),
        "their_p_identical": bool(np.array_equal(pf[low], ps[low])),
        "fdr_verdicts_identical_per_subject": sum(fdr_same), "of_subjects": S}
    return out


def fixed_test_chain(chain_s: float | None, blocks: dict | None, subjects: int | None,
                     stop: int | None) -> dict | None:
    """With the sequential test (``--perm-stop``): the chain's wall time had the per-subject
    tests drawn all ``n_perm`` surrogates, from this run's own block timings (the fixed test's
    extra seconds on the workers for ``blocks["subjects"]`` subjects, scaled to all)."""
    if not (chain_s and blocks and subjects and stop):
        return None
    where = "workers_s" if "workers_s" in blocks["permutation_fixed"] else "in_process_s"
    extra = (blocks["permutation_fixed"][where] - blocks["permutation_sequential"][where]) \
        * subjects / blocks["subjects"]
    return {"wall_s": round(chain_s + extra, 1), "extra_s": round(extra, 1),
            "basis": f"the chain's wall seconds plus the fixed test's extra time over the "
                     f"sequential one, measured on {blocks['subjects']} subjects' blocks "
                     f"({where[:-2].replace('_', ' ')}) and scaled linearly to {subjects}: an "
                     "estimate, not a run"}


def run(args) -> dict:
    from llmbrain_utils import stages as st

    created = args.runs_dir is None
    runs_dir = Path(args.runs_dir or tempfile.mkdtemp(prefix="llmbrain-real-scale-", dir="/tmp"))
    runs_dir.mkdir(parents=True, exist_ok=True)
    if not created and any(runs_dir.iterdir()) and not args.reuse_store:
        raise SystemExit(f"{runs_dir} is not empty: the timings need a fresh store (give a new "
                         "folder, or --reuse-store to time cache hits as they come)")
    cfg = base_params(args, runs_dir)
    last = [name for name, _ in STAGES].index(args.until)
    fns = {"stimulus": st.stimulus, "extraction": st.extraction, "dictionary": st.dictionary,
           "fmri_data": st.fmri_data, "encoding": st.encoding,
           "encoding_tests": st.encoding_tests, "fbn_mapping": st.fbn_mapping}
    twin_s: list[float] = []
    write_twin = st._twin_dataset

    def timed_twin(*a, **kw):  # the twin's writer is the data's stand-in, not the analysis
        t0 = time.perf_counter()
        try:
            return write_twin(*a, **kw)
        finally:
            twin_s.append(time.perf_counter() - t0)

    st._twin_dataset = timed_twin
    peaks = Peaks()
    records: list[dict] = []
    arts: dict = {}
    blocks: dict | None = None
    sizes: dict = {}
    check: dict | None = None
    t_all = time.perf_counter()
    try:
        for name, _store_name in STAGES[:last + 1]:
            if name == "fmri_data":
                check = preflight(cfg, sizes["trs"])
                if not check["fits"]:
                    print(f"[real_scale] warning: fmri_data may need ~{check['fmri_data_peak_estimate_gib']} "
                          f"GiB (a subject's scan and the blocks' arrays), "
                          f"{check['available_gib']} GiB available", file=sys.stderr, flush=True)
            before = artifact_dirs(runs_dir)
            rss0 = peaks.start_stage()
            t0 = time.perf_counter()
            art = arts[name] = fns[name](cfg)
            wall = time.perf_counter() - t0
            peak = peaks.end_stage()
            rec = {"stage": name, "wall_s": round(wall, 3), "peak_rss_gib": round(peak / GIB, 3),
                   "peak_rss_total_gib": round(peaks.stage_total_peak / GIB, 3),
                   "peak_anon_gib": round(peaks.stage_anon_peak / GIB, 3),
                   "peak_anon_total_gib": round(peaks.stage_anon_total_peak / GIB, 3),
                   "rss_start_gib": round(rss0 / GIB, 3),
                   "built": str(art.path) not in before,
                   "build_s": art.meta.get("timing", {}).get("build_s"),
                   "artifact": f"{art.stage}/{art.key}"}
            if name == "stimulus":
                sizes.update(words=int(art.info["n_words"]), trs=int(art.info["n_trs"]))
            elif name == "extraction":
                sizes["ans"] = int(art.info["n_ans"])
            elif name == "dictionary":
                import numpy as np

                sizes["k"] = int(np.load(art.file("D.npy"), mmap_mode="r").shape[1])
            elif name == "fmri_data":
                import numpy as np

                S, T, V = np.load(art.file("bold.npy"), mmap_mode="r").shape
                sizes.update(subjects=int(S), trs=int(T), voxels=int(V))
                rec["twin_write_s"] = round(sum(twin_s), 3)
                rec["isc_mask_voxels"] = art.info.get("isc_mask_voxels")
            elif name == "encoding":
                rec["group_significant_cv_voxels"] = art.info.get("group_significant_cv_voxels")
            elif name == "encoding_tests":
                rec["group_test_significant_voxels"] = art.info.get("group_test", {}).get(
                    "significant_voxels")
            elif name == "fbn_mapping":
                rec.update(n_couplings=art.info.get("n_couplings"),
                           n_atoms_coupled=art.info.get("n_atoms_coupled"))
            records.append(rec)
            print(f"[real_scale] {name}: {rec['wall_s']:.1f} s, peak RSS {rec['peak_rss_gib']:.2f} GiB",
                  file=sys.stderr, flush=True)
        if args.block_subjects and "encoding" in arts:
            blocks = block_timings(arts["fmri_data"], arts["dictionary"], cfg, args.block_subjects,
                                   args.perm_stop)
    finally:
        st._twin_dataset = write_twin
        total = time.perf_counter() - t_all
        peaks.close()
        store_gib = sum(p.stat().st_size for p in runs_dir.rglob("*") if p.is_file()) / GIB
        removed = created and not args.keep
        if removed:
            shutil.rmtree(runs_dir, ignore_errors=True)
    bound = {**ridge_bound_ratio(REPO / "benchmarks" / "ridge_cv.json"),
             **kernel_bound_ratios(REPO / "benchmarks" / "kernels.json")}
    chain = [r for r in records if r["stage"] in CHAIN_STAGES]
    chain_s = sum(r["wall_s"] for r in chain) - sum(twin_s)
    return {
        "subjects": sizes.get("subjects"), "voxels": sizes.get("voxels"), "trs": sizes.get("trs"),
        "k": sizes.get("k"), "sizes": sizes,
        "wall_s": round(total, 3), "peak_rss_gib": round(peaks.run_peak / GIB, 3),
        "peak_rss_total_gib": round(peaks.total_peak / GIB, 3),
        "peak_anon_gib": round(peaks.anon_peak / GIB, 3),
        "peak_anon_total_gib": round(peaks.anon_total_peak / GIB, 3),
        "chain_wall_s": round(chain_s, 3) if chain else None,
        "chain_fixed_test_estimate": fixed_test_chain(chain_s if chain else None, blocks,
                                                      sizes.get("subjects"), args.perm_stop),
        "chain": {"stages": [r["stage"] for r in chain], "twin_write_s": round(sum(twin_s), 3),
                  "basis": "from BOLD to couplings: the wall seconds of the stages that read the "
                           "BOLD (fmri_data's ISC and its null, encoding, encoding_tests, "
                           "fbn_mapping) less the synthetic twin's writing inside fmri_data (the "
                           "NIfTI files that stand in for the data set; reading them back through "
                           "the real loader is counted)"},
        "workers": args.workers, "threads": args.threads, "bound_ratio": bound,
        "stages": records, "memory_preflight": check, "block_timings": blocks,
        "extrapolation": extrapolate(records, sizes.get("subjects") or args.subjects, sizes,
                                     args.workers),
        "machine": machine(),
        "parameters": {"asked": {"subjects": args.subjects, "resolution_mm": args.resolution_mm,
                                 "n_perm": args.n_perm, "group_perm": args.group_perm,
                                 "fbn_perm": args.fbn_perm, "perm_stop": args.perm_stop,
                                 "story": cfg["story"],
                                 "until": args.until},
                       "run": {k: v for k, v in cfg.items() if k not in ("variants",)}},
        "store": {"runs_dir": str(runs_dir), "size_gib": round(store_gib, 3),
                  "removed": removed},
        "notes": notes(args, sizes, bound),
    }


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--subjects", type=int, default=40, help="subjects of the fMRI twin (default 40)")
    ap.add_argument("--resolution-mm", type=float, default=3.0,
                    help="grid of the analysis (default 3 mm: about 70,000 brain voxels)")
    ap.add_argument("--n-perm", type=int, default=1000,
                    help="ISC null and per-subject permutation tests (default 1000)")
    ap.add_argument("--group-perm", type=int, default=100,
                    help="phase surrogates of the group test of held-out r (default 100)")
    ap.add_argument("--fbn-perm", type=int, default=1000, help="the mapping's null draws (default 1000)")
    ap.add_argument("--perm-stop", type=int, default=None, metavar="H",
                    help="sequential per-subject permutation tests: a voxel's surrogates stop once "
                         "H null values reach its own (run parameter perm_stop; default: all)")
    ap.add_argument("--block-subjects", type=int, default=8, metavar="N",
                    help="after the run, time the encoding's and the permutation tests' blocks of N "
                         "subjects in-process and on the workers, and the fixed against the "
                         "sequential test (default 8; 0: skip)")
    ap.add_argument("--story", default=None, help="story (default: the default run's)")
    ap.add_argument("--narratives-dir", default=None, help="Narratives stimuli folder, for a Narratives story")
    ap.add_argument("--until", choices=[name for name, _ in STAGES], default="fbn_mapping",
                    help="the last stage to run (default fbn_mapping)")
    ap.add_argument("--runs-dir", default=None,
                    help="artifact store (default: a new temporary folder under /tmp, removed at "
                         "the end unless --keep; a folder given here is never removed)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary store")
    ap.add_argument("--reuse-store", action="store_true",
                    help="allow a non-empty --runs-dir (its cache hits are timed as they come)")
    ap.add_argument("--threads", type=int, default=1, help="BLAS / OpenMP / torch threads (default 1)")
    ap.add_argument("--workers", type=int, default=1,
                    help="the stages' blocks on a LocalCluster of N single-threaded processes "
                         "(llmbrain_utils.parallel; default 1: in this process)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "real_scale.json"),
                    help="write the JSON report here (default benchmarks/real_scale.json)")
    args = ap.parse_args(argv)
    if args.threads < 1:
        ap.error("--threads must be >= 1")
    if args.workers < 1:
        ap.error("--workers must be >= 1")
    return args


def main(argv=None) -> dict:
    args = parse(argv)
    from threadpoolctl import threadpool_limits

    import torch

    torch.set_num_threads(args.threads)
    from llmbrain_utils import parallel

    with threadpool_limits(limits=args.threads), contextlib.ExitStack() as stack:
        if args.workers > 1:
            from distributed import Client

            cluster = stack.enter_context(parallel.local_cluster(args.workers))
            stack.enter_context(parallel.using(stack.enter_context(Client(cluster))))
        res = run(args)
    text = json.dumps(res, indent=1, default=str)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    return res


if __name__ == "__main__":
    main()
