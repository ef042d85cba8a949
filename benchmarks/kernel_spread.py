"""How much the book's headline figures move with the BLAS kernel and with the seed.

Reruns the default run (``params/default.yaml``) in child processes, each with its own artifact
store and executed notebooks, under several OpenBLAS kernels (``OPENBLAS_CORETYPE``, set in the
children only: this process and the tests leave the machine's BLAS settings alone) and several
seeds (``common.seed``). Each notebook records its headline figures
(``llmbrain_utils.headlines``); this script gathers them and writes, per figure, its value
under each kernel and seed and two spreads:

* ``kernel_spread``: the largest difference between kernels at the same seed;
* ``seed_spread``: the largest range over seeds under the same kernel.

The regression's tolerances (``notebooks/headlines.json``) are computed from them, and the
notebooks print each figure with its range over all the runs.

Cost: the cross-model chapter (11 models and controls) dominates, so it runs for the seeds in
``--full-seeds`` only (default: seed 0); the other chapters run for every seed. Extraction
artifacts of the main store are copied into each child's store first (torch's kernels do not
read ``OPENBLAS_CORETYPE``, and the extraction does not depend on the seed for trained models);
``--no-share-extraction`` recomputes them too.

    python benchmarks/kernel_spread.py                      # two kernels x seeds 0, 1, 2
    python benchmarks/kernel_spread.py --include-default    # reuse ./runs for this machine's kernel, seed 0
    # add a finished default run made under another kernel (e.g. SkylakeX, on a machine with
    # AVX-512: OpenBLAS's own choice there) to the committed spread, seed 0, every chapter
    python benchmarks/kernel_spread.py --add-run SkylakeX 0 /path/to/its/runs
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_all import cpu_model as _cpu_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CORE_STAGES = ["stimulus", "extraction", "dictionary", "fmri", "encoding", "fbn"]
PROBE = ("import json, numpy, threadpoolctl; "
         "print(json.dumps([{k: i.get(k) for k in ('internal_api', 'version', 'architecture', 'filepath')} "
         "for i in threadpoolctl.threadpool_info()]))")


#: OpenBLAS x86-64 core types and the CPU flag each needs (a kernel the CPU lacks crashes)
KERNEL_FLAGS = {"SkylakeX": "avx512f", "Haswell": "avx2", "Sandybridge": "avx"}


def supported_kernels() -> list[str]:
    try:
        flags = set()
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        return ["Haswell", "Sandybridge"]
    return [k for k, f in KERNEL_FLAGS.items() if f in flags]


def child_env(kernel: str | None) -> dict:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = "1"
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONHASHSEED="0", MPLBACKEND="Agg")
    if kernel is not None:
        env["OPENBLAS_CORETYPE"] = kernel
        env.pop("OPENBLAS_L2_SIZE", None)
    return env


def blas_kernel(kernel: str | None) -> list[dict]:
    """What threadpoolctl reports in a child started with this kernel (checks it took effect)."""
    out = subprocess.run([sys.executable, "-c", PROBE], env=child_env(kernel), capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout)


def run_folder(work: Path, kernel: str, seed: int) -> Path:
    """A child run's own folder: its store (``runs/``), executed notebooks and log."""
    return work / f"{kernel}-seed{seed}"


def one_run(kernel: str, seed: int, work: Path, full: bool, share_from: Path | None) -> dict:
    import yaml

    folder = run_folder(work, kernel, seed)
    tag = folder.name
    runs = folder / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    if share_from is not None and (share_from / "extraction").is_dir() and not (runs / "extraction").exists():
        shutil.copytree(share_from / "extraction", runs / "extraction")
    params = yaml.safe_load((REPO / "params" / "default.yaml").read_text()) or {}
    params.setdefault("common", {})["seed"] = seed
    pfile = folder / "params.yaml"
    pfile.write_text(yaml.safe_dump(params))
    cmd = [sys.executable, "-m", "llmbrain_utils", "run", "--params", str(pfile), "--runs-dir", str(runs),
           "--executed-dir", str(folder / "executed")]
    if not full:
        for s in CORE_STAGES:
            cmd += ["--only", s]
    t0 = time.perf_counter()
    with open(folder / "log.txt", "w") as log:
        rc = subprocess.run(cmd, env=child_env(kernel), cwd=REPO, stdout=log, stderr=subprocess.STDOUT).returncode
    secs = time.perf_counter() - t0
    print(f"{tag}: exit {rc} in {secs / 60:.1f} min", flush=True)
    if rc != 0:
        raise RuntimeError(f"{tag} failed (exit {rc}); see {folder / 'log.txt'}")
    return {"kernel": kernel, "seed": seed, "full": full, "runs": str(runs), "seconds": round(secs, 1)}


def spreads(values: dict[tuple[str, int], float | None]) -> tuple[float | None, float | None]:
    kernels = sorted({k for k, _ in values})
    seeds = sorted({s for _, s in values})
    kd = []
    for s in seeds:
        v = [values[(k, s)] for k in kernels if values.get((k, s)) is not None]
        if len(v) >= 2:
            kd.append(max(v) - min(v))
    sd = []
    for k in kernels:
        v = [values[(k, s)] for s in seeds if values.get((k, s)) is not None]
        if len(v) >= 2:
            sd.append(max(v) - min(v))
    return (max(kd) if kd else None), (max(sd) if sd else None)


def add_run(report: dict, kernel: str, seed: int, runs: str, note: str = "") -> dict:
    """``report`` (this script's JSON) with a finished default run's figures added as
    ``kernel/seedN`` and their spreads recomputed; a figure the report lacks is an error (the
    run's notebooks are not the measured ones), figures the run lacks (those of other seeds'
    runs) are left as they are."""
    from llmbrain_utils import headlines

    figs = {f["name"]: f for f in report["figures"]}
    run = headlines.read_run(runs)
    new = {f"{nb}:{name}": f["value"] for nb, fs in run.items() for name, f in fs.items()}
    unknown = sorted(set(new) - set(figs))
    if unknown:
        raise SystemExit(f"{runs}: {len(unknown)} figure(s) not in the spread, e.g. {unknown[:3]}")
    for name, f in figs.items():  # a figure of another seed's run only keeps its spreads
        if name not in new:
            continue
        f["values"][f"{kernel}/seed{seed}"] = new[name]
        vals = {}
        for key, v in f["values"].items():
            k, s = key.split("/")
            vals[(k, int(s[len("seed"):]))] = v
        f["kernel_spread"], f["seed_spread"] = spreads(vals)
    if kernel not in report["kernels"]:
        report["kernels"] = report["kernels"] + [kernel]
        report["n_kernels"] = len(report["kernels"])
    report["runs"].append({"kernel": kernel, "seed": seed, "full": True, "seconds": None,
                           "note": note or f"added with --add-run from {runs}"})
    return report


def main(argv=None) -> int:
    from llmbrain_utils import headlines

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kernels", nargs="+", default=None,
                    help="OpenBLAS core types (default: the first two this CPU can run of "
                         "SkylakeX, Haswell, Sandybridge; SkylakeX needs AVX-512)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--full-seeds", nargs="+", type=int, default=[0],
                    help="seeds for which the cross-model chapter runs too")
    ap.add_argument("--jobs", type=int, default=2, help="runs at once (each single-threaded)")
    ap.add_argument("--work", default=str(REPO / "runs" / "kernel_spread"))
    ap.add_argument("--include-default", action="store_true",
                    help="use ./runs (the default run, seed 0) for this machine's own kernel")
    ap.add_argument("--no-share-extraction", action="store_true")
    ap.add_argument("--collect-only", action="store_true",
                    help="run nothing: gather the figures of the runs already in --work")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "kernel_spread.json"))
    ap.add_argument("--add-run", nargs=3, metavar=("KERNEL", "SEED", "RUNS_DIR"),
                    help="add a finished default run (its store) made under KERNEL to --out, "
                         "recompute the spreads, and run nothing")
    ap.add_argument("--note", default="", help="with --add-run: how the run was made")
    args = ap.parse_args(argv)
    if args.add_run:
        kernel, seed, runs = args.add_run
        report = add_run(json.loads(Path(args.out).read_text()), kernel, int(seed), runs, args.note)
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
        moved = sum(1 for f in report["figures"] if (f["kernel_spread"] or 0) > 0)
        print(f"{len(report['figures'])} figures; {moved} move with the kernel -> {args.out}")
        return 0

    if args.kernels is None:
        args.kernels = supported_kernels()[:2]
    unsupported = [k for k in args.kernels if k in KERNEL_FLAGS and k not in supported_kernels()]
    if unsupported:
        raise SystemExit(f"this CPU cannot run the OpenBLAS kernel(s) {unsupported} "
                         f"(they need {[KERNEL_FLAGS[k] for k in unsupported]}); it can run {supported_kernels()}")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    probes = {k: blas_kernel(k) for k in args.kernels}
    native = blas_kernel(None)
    for k, info in probes.items():
        arch = {i.get("architecture") for i in info if i.get("internal_api") == "openblas"}
        print(f"OPENBLAS_CORETYPE={k}: OpenBLAS reports {sorted(a for a in arch if a)}")
    native_arch = sorted({i.get("architecture") for i in native if i.get("internal_api") == "openblas"} - {None})
    print(f"this machine's own choice: {native_arch}")

    jobs, results = [], []
    share = None if args.no_share_extraction else REPO / "runs"
    for k in args.kernels:
        for s in args.seeds:
            if args.include_default and s == 0 and native_arch == [k] and \
                    not os.environ.get("OPENBLAS_CORETYPE"):
                results.append({"kernel": k, "seed": 0, "full": True, "runs": str(REPO / "runs"),
                                "seconds": None, "note": "the default run of ./runs (this machine's kernel)"})
                continue
            jobs.append((k, s, work, s in args.full_seeds, share))
    jobs.sort(key=lambda j: not j[3])  # the long (full) runs first
    t0 = time.perf_counter()
    if args.collect_only:
        results += [{"kernel": k, "seed": s, "full": full, "runs": str(run_folder(w, k, s) / "runs"),
                     "seconds": _logged_seconds(run_folder(w, k, s))} for k, s, w, full, _ in jobs]
    else:
        with cf.ThreadPoolExecutor(max_workers=args.jobs) as pool:
            results += list(pool.map(lambda j: one_run(*j), jobs))
        for r in results:
            if r.get("seconds") is not None:
                (Path(r["runs"]).parent / "seconds.txt").write_text(str(r["seconds"]))
    wall = time.perf_counter() - t0
    expected = {f"0{i}_" for i in range(2, 7)}
    for r in results:
        got = {nb[:3] for nb in headlines.read_run(r["runs"])}
        need = expected if r["full"] else expected - {"06_"}
        if not need <= got:
            raise SystemExit(f"{r['runs']}: figures of {sorted(need - got)} missing (run not finished?)")

    values: dict[str, dict[tuple[str, int], float | None]] = {}
    digits: dict[str, int] = {}
    for r in results:
        for nb, figs in headlines.read_run(r["runs"]).items():
            if not r["full"] and nb == "06_cross_model":
                continue
            for name, f in figs.items():
                values.setdefault(f"{nb}:{name}", {})[(r["kernel"], r["seed"])] = f["value"]
                digits[f"{nb}:{name}"] = f["digits"]
    figures = []
    for name in sorted(values):
        ks, ss = spreads(values[name])
        figures.append({"name": name, "digits": digits[name],
                        "values": {f"{k}/seed{s}": v for (k, s), v in sorted(values[name].items())},
                        "kernel_spread": ks, "seed_spread": ss})
    report = {
        "about": "headline figures under each OpenBLAS kernel and seed (benchmarks/kernel_spread.py)",
        "cpu": _cpu_model(), "machine_kernel": native_arch,
        "kernels": args.kernels, "seeds": args.seeds, "full_seeds": args.full_seeds,
        "n_kernels": len(args.kernels), "n_seeds": len(args.seeds),
        "blas": {k: [i for i in v if i.get("internal_api") == "openblas"] for k, v in probes.items()},
        "runs": [{k: v for k, v in r.items() if k != "runs"} for r in results],
        "wall_s": round(wall, 1),
        "figures": figures,
    }
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    moved = [f for f in figures if (f["kernel_spread"] or 0) > 0]
    print(f"{len(figures)} figures; {len(moved)} move with the kernel; wall {wall / 60:.1f} min -> {args.out}")
    for f in sorted(moved, key=lambda f: -(f["kernel_spread"] or 0))[:15]:
        print(f"  {f['name']}: kernel spread {f['kernel_spread']:.4g}, seed spread {f['seed_spread']}")
    return 0


def _logged_seconds(folder: Path) -> float | None:
    try:
        return float((folder / "seconds.txt").read_text())
    except (OSError, ValueError):
        return None


if __name__ == "__main__":
    sys.exit(main())
