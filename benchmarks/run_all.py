"""Run every stage benchmark and write one JSON report (the book's performance page renders it).

Usage::

    python benchmarks/run_all.py --out benchmarks/report.json --store runs     # ~10 min on 2 cores
    python benchmarks/run_all.py --quick --out /tmp/report.json                # ~2 min smoke run
    python benchmarks/render_performance.py benchmarks/report.json            # -> book/performance.md

In one process, one BLAS/torch thread (as the stages run), the report holds:

* the machine (CPU model, cores, memory, GPU or none), the package versions, the sizes;
* the machine's achieved peak: float32 (and float64) GEMM FLOP/s of a large numpy and torch
  matmul with one thread and with all threads, and the memory bandwidth of a large array copy;
* ``benchmarks/extraction.py`` (extraction vs the plain forward pass over the same windows),
  ``benchmarks/dictionary.py`` (torch solver and scikit-learn vs SPAMS, same lam, iterations
  and batches, the objective of each evaluated by one shared function) and
  ``benchmarks/encoding.py`` (batched OLS vs per-voxel loops and nilearn, permutations, CV),
  each repeated (``--repeats``, default 3; the short extraction passes at least 5 times in the
  full sizes): every time is the median of the repeats, every
  ratio the median of the per-repeat ratios (numerator and reference measured in the same run);
* each stage's achieved FLOP/s as a share of the peak, with the FLOPs counted as stated in
  ``flops.method`` (torch's FlopCounterMode for torch code, closed forms for numpy code);
* with ``--store``: the default run's stage times (``timing.build_s`` in the sidecars).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import dictionary as bench_dictionary  # noqa: E402
import encoding as bench_encoding  # noqa: E402
import extraction as bench_extraction  # noqa: E402

log = logging.getLogger("benchmarks.run_all")

SCHEMA = 1
PACKAGES = ("numpy", "scipy", "torch", "transformers", "tokenizers", "spams-bin", "scikit-learn",
            "himalaya", "nilearn", "statsmodels", "pandas", "dask", "distributed", "threadpoolctl")

#: sizes per mode (the full mode fits a 2-core machine in about 10 minutes)
SIZES = {
    "full": {
        "gemm_n": 2048, "gemm_repeats": 8, "copy_mib": 512, "copy_repeats": 5,
        "extraction": [{"model": "all-MiniLM-L6-v2", "n_words": 1000, "batch_size": 8},
                       {"model": "SmolLM2-135M", "n_words": 300, "batch_size": 8}],
        "extraction_repeats": 5,  # short passes: more repeats
        "dictionary": [{"data": "planted", "n_ans": 20000, "T": 300, "k": 64, "n_iter": 300},
                       {"data": "anlike", "n_ans": 20000, "T": 300, "k": 64, "n_iter": 300}],
        "dictionary_solvers": "spams,torch",
        "dictionary_real_solvers": "spams,torch,sklearn",  # scikit-learn on the real responses only
        "encoding": {"voxels": 8000, "subjects": 2, "T": 300, "k": 64, "perms": 1000,
                     "loop_voxels": 300, "cv": True},
    },
    "quick": {
        "gemm_n": 1024, "gemm_repeats": 3, "copy_mib": 128, "copy_repeats": 3,
        "extraction": [{"model": "all-MiniLM-L6-v2", "n_words": 200, "batch_size": 8}],
        "extraction_repeats": 3,
        "dictionary": [{"data": "planted", "n_ans": 4000, "T": 200, "k": 32, "n_iter": 100}],
        "dictionary_solvers": "spams,torch",
        "dictionary_real_solvers": "spams,torch",
        "encoding": {"voxels": 1000, "subjects": 1, "T": 200, "k": 32, "perms": 100,
                     "loop_voxels": 100, "cv": False},
    },
}


def summary(values: list[float]) -> dict:
    """Median, min, max and every repeat of a measurement."""
    vals = [float(v) for v in values]
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "values": vals}


# --------------------------------------------------------------------------- machine
def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else the platform's machine type."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    cpu = cpu_model()
    mem = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = int(line.split()[1]) / 2**20  # KiB -> GiB
    except OSError:
        pass
    import torch

    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    return {"cpu_model": cpu, "cores": os.cpu_count(), "memory_gib": round(mem, 1) if mem else None,
            "gpu": gpu, "platform": platform.platform(), "python": platform.python_version()}


def versions() -> dict:
    from importlib import metadata

    from llmbrain_utils.store import package_versions

    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    out["llmbrain_utils"] = package_versions(["llmbrain_utils"])["llmbrain_utils"]
    return out


# --------------------------------------------------------------------------- peaks
def _gemm_rates(fn, n: int, repeats: int) -> dict:
    fn()  # warm-up
    secs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        secs.append(time.perf_counter() - t0)
    flops = 2.0 * n**3
    rates = [flops / s / 1e9 for s in secs]
    return {"gflops": summary(rates), "best_gflops": max(rates), "flops_per_call": flops}


def peaks(n: int, repeats: int, copy_mib: int, copy_repeats: int) -> dict:
    """Achieved GEMM FLOP/s (numpy and torch, float32 and float64, 1 and all threads) and copy
    bandwidth; the peak of each (thread count, dtype) is the best of the libraries' best runs."""
    import torch
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    out = {"gemm_n": n, "repeats": repeats, "gemm": {}}
    torch_threads = torch.get_num_threads()
    for threads in sorted({1, os.cpu_count() or 1}):
        for dtype in ("float32", "float64"):
            a = rng.standard_normal((n, n)).astype(dtype)
            b = rng.standard_normal((n, n)).astype(dtype)
            ta, tb = torch.from_numpy(a), torch.from_numpy(b)
            with threadpool_limits(limits=threads):
                r_np = _gemm_rates(lambda: a @ b, n, repeats)
            torch.set_num_threads(threads)
            try:
                r_t = _gemm_rates(lambda: ta @ tb, n, repeats)
            finally:
                torch.set_num_threads(torch_threads)
            out["gemm"][f"{dtype}_{threads}thread"] = {
                "threads": threads, "dtype": dtype, "numpy": r_np, "torch": r_t,
                "peak_gflops": max(r_np["best_gflops"], r_t["best_gflops"])}
    # memory bandwidth: a large copy reads and writes every byte once
    src = np.ones(copy_mib * 2**20 // 8, dtype=np.float64)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    rates = []
    for _ in range(copy_repeats):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        rates.append(2 * src.nbytes / (time.perf_counter() - t0) / 1e9)
    out["copy"] = {"mib": copy_mib, "gbs": summary(rates), "best_gbs": max(rates),
                   "method": "numpy.copyto of a float64 array; bytes moved = 2 x its size "
                             "(read + write; write-allocate traffic not counted)"}
    del src, dst
    return out


# --------------------------------------------------------------------------- extraction
def _quiet(fn, *args, **kwargs):
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args, **kwargs)


def _count_cpu_attention() -> None:
    """Let FlopCounterMode count the CPU kernel of scaled dot-product attention (torch counts
    only its GPU kernels), with torch's own formula (QK^T and AV: 4 B H L_q L_k d_head)."""
    import torch
    from torch.utils.flop_counter import register_flop_formula, sdpa_flop_count

    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if op is None:
        return

    def formula(q, k, v, *args, out_shape=None, **kwargs):
        return sdpa_flop_count(q, k, v)

    try:
        register_flop_formula(op)(formula)
    except RuntimeError:  # already registered
        pass


def extraction(sizes: list[dict], repeats: int) -> list[dict]:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from llmbrain_utils import models as M

    out = []
    for sz in sizes:
        argv = ["--model", sz["model"], "--n-words", str(sz["n_words"]),
                "--batch-size", str(sz["batch_size"]), "--repeat", "1"]
        runs = [_quiet(bench_extraction.main, argv) for _ in range(repeats)]
        # FLOPs of the plain forward over the same windows, counted by torch's FlopCounterMode
        loaded = M.load_model(sz["model"])
        words = bench_extraction.story_words(sz["n_words"])
        kw = dict(context=None, context_tokens=128, window_tokens=None, batch_size=sz["batch_size"])
        _count_cpu_attention()
        with FlopCounterMode(display=False) as fc:
            bench_extraction.plain_forward(loaded, words, **kw)
        counts = {str(op): float(n) for op, n in fc.get_flop_counts()["Global"].items()}
        flops = float(fc.get_total_flops())
        attention = sum(n for op, n in counts.items() if "attention" in op)
        linear = flops - attention
        plain_s = summary([r["plain_forward"]["seconds"] for r in runs])
        ext_s = summary([r["extraction"]["seconds"] for r in runs])
        n_ans = runs[0]["extraction"]["shape"][1]
        tokens = runs[0]["extraction"]["tokens"]
        # the extraction's extra memory traffic: every hooked output (tokens x ANs, float32)
        # read once, the word activations (words x ANs) written once
        hook_bytes = 4.0 * (tokens + sz["n_words"]) * n_ans
        # the extraction's extra time, per repeat (both passes timed in the same repeat)
        extra = summary([r["extraction"]["seconds"] - r["plain_forward"]["seconds"] for r in runs])
        out.append({
            "model": runs[0]["model"], "n_words": sz["n_words"], "n_layers": runs[0]["n_layers"],
            "n_ans": n_ans, "units": runs[0]["units"], "context": runs[0]["context"],
            "context_tokens": runs[0]["context_tokens"], "window_tokens": runs[0]["window_tokens"],
            "windows": runs[0]["windows"], "batch_size": sz["batch_size"], "tokens": tokens,
            "threads": torch.get_num_threads(), "repeats": repeats,
            "plain_forward_s": plain_s, "extraction_s": ext_s,
            "overhead_ratio": summary([r["overhead_ratio"] for r in runs]),
            "tokens_per_s": summary([r["extraction"]["tokens_per_s"] for r in runs]),
            "flops": {"linear": linear, "attention": attention, "total": flops, "by_op": counts,
                      "method": "every matrix product of the plain forward over the same windows, "
                                "counted by torch.utils.flop_counter.FlopCounterMode (attention on "
                                "the CPU with torch's own formula for scaled dot-product attention, "
                                "registered for its CPU kernel)"},
            "plain_gflops": flops / plain_s["median"] / 1e9,
            "extraction_gflops": flops / ext_s["median"] / 1e9,
            "extra_s": extra, "hook_bytes": hook_bytes,
            "hook_gbs": hook_bytes / extra["median"] / 1e9 if extra["median"] > 0 else None,
        })
        del loaded
    return out


# --------------------------------------------------------------------------- dictionary
def dictionary(sizes: list[dict], solvers: str, repeats: int) -> list[dict]:
    from torch.utils.flop_counter import FlopCounterMode

    from llmbrain_utils import dictionary as dl

    out = []
    for sz in sizes:
        argv = ["--k", str(sz["k"]), "--n-iter", str(sz["n_iter"]), "--solvers", sz.get("solvers", solvers),
                "--threads", "1"]
        if "x" in sz:  # a (T, N) array of real AN responses
            argv += ["--x", sz["x"]]
        else:
            argv += ["--data", sz["data"], "--n-ans", str(sz["n_ans"]), "--T", str(sz["T"])]
        runs = [bench_dictionary.measure(argv) for _ in range(repeats)]
        by = {}
        for name in [r["solver"] for r in runs[0]["results"]]:
            rows = [next(x for x in run["results"] if x["solver"] == name) for run in runs]
            by[name] = {"total_s": summary([r["total_s"] for r in rows]),
                        "learn_s": summary([r["learn_s"] for r in rows]),
                        "encode_s": summary([r["encode_s"] for r in rows]),
                        "objective": summary([r["objective"] for r in rows]),
                        "r2": statistics.median(r["r2"] for r in rows),
                        "sparsity": statistics.median(r["sparsity"] for r in rows),
                        "planted_match": statistics.median(r["planted_match"] for r in rows)
                        if rows[0].get("planted_match") is not None else None,
                        "time_vs_spams": summary([r["time_vs_spams"] for r in rows]),
                        "objective_vs_spams": summary([r["objective_vs_spams"] for r in rows])}
        T, N, k = runs[0]["T"], runs[0]["N"], runs[0]["k"]
        n_iter, b = runs[0]["n_iter"], runs[0]["batch_size"]
        flops = {"method": "torch: every matmul its solver ran, counted by torch.utils."
                           "flop_counter.FlopCounterMode in one extra (untimed) run; SPAMS: a lower "
                           "bound, the correlations $D^\\top X$ it must form, $2\\,T k\\,(n_\\mathrm{iter} b + N)$ for batch size $b$"}
        if "torch" in by:
            args = bench_dictionary._args(argv)
            with tempfile.TemporaryDirectory() as tmp:
                X, _ = bench_dictionary.make_data(args, Path(tmp))
                with FlopCounterMode(display=False) as fc:
                    dl.learn_dictionary(X, k, args.lam, solver="torch", seed=args.seed,
                                        n_iter=n_iter, batch_size=b, n_threads=1)
                del X
            flops["torch"] = float(fc.get_total_flops())
            by["torch"]["gflops"] = flops["torch"] / by["torch"]["total_s"]["median"] / 1e9
        flops["spams_lower_bound"] = 2.0 * T * k * (n_iter * b + N)
        if "spams" in by:
            by["spams"]["gflops_lower_bound"] = (flops["spams_lower_bound"]
                                                 / by["spams"]["total_s"]["median"] / 1e9)
        out.append({"data": sz["data"], "source": runs[0]["data"], "T": T, "N": N, "k": k, "lam": runs[0]["lam"],
                    "n_iter": n_iter, "batch_size": b, "threads": 1, "repeats": repeats,
                    "solvers": by, "flops": flops})
    return out


# --------------------------------------------------------------------------- encoding
def encoding(sz: dict, repeats: int) -> dict:
    argv = ["--voxels", str(sz["voxels"]), "--subjects", str(sz["subjects"]), "--T", str(sz["T"]),
            "--k", str(sz["k"]), "--perms", str(sz["perms"]), "--loop-voxels", str(sz["loop_voxels"])]
    if not sz["cv"]:
        argv.append("--skip-cv")
    runs = [_quiet(bench_encoding.main, argv) for _ in range(repeats)]
    rows = {}
    for name in runs[0]["timings"]:
        rows[name] = {"seconds": summary([r["timings"][name]["seconds"] for r in runs]),
                      "ratio_to_batched": summary([r["timings"][name]["ratio_to_batched"] for r in runs]),
                      "note": runs[0]["timings"][name]["note"]}
    T, k, V, S, P = sz["T"], sz["k"], sz["voxels"], sz["subjects"], sz["perms"]
    p = k + 1
    n_circ = min(P, T - 2 * int(np.ceil(0.1 * T)) + 1)
    ols_flops = S * V * (4.0 * T * p + 2.0 * p * p)
    perm_flops = {"circular": 2.0 * k * T * V * S * (n_circ + 1), "block": 2.0 * k * T * V * S * (P + 1)}
    flops = {"batched OLS (fit_ols)": ols_flops,
             "permutations, in-sample R2, circular": perm_flops["circular"],
             "permutations, in-sample R2, block": perm_flops["block"]}
    for name, f in flops.items():
        if name in rows:
            rows[name]["flops"] = f
            rows[name]["gflops"] = f / rows[name]["seconds"]["median"] / 1e9
    return {"sizes": sz, "repeats": repeats, "rows": rows, "agreement": runs[0]["agreement"],
            "dtypes": {"batched OLS (fit_ols)": "float64", "permutations": "float32"},
            "flops_method": "closed forms of the dominant products: OLS per subject $Q^\\top Y$, "
                            "$R^{-1} (Q^\\top Y)$ and $X B$: $(4T(k+1) + 2(k+1)^2)\\,V$; permutations: "
                            "one $(k \\times T)(T \\times V)$ product per permutation and subject, "
                            "$2kTV$ (+1 for the observed statistic)"}


# --------------------------------------------------------------------------- end to end
def end_to_end(store: Path) -> dict:
    """The default run's stage times from the sidecars: the newest chain stimulus -> ... -> fbn
    in which every artifact's own parameters equal the default (params/default.yaml over
    config.py) and every artifact's inputs are the chain's own (so a control's extraction, with
    default extraction parameters but a shuffled story upstream, is never taken), preferring
    chains built by the current sources."""
    from llmbrain_utils import config, pipeline
    from llmbrain_utils.store import SIDECAR, package_versions

    defaults = config.validate(pipeline.load_params(None).get("common", {}))
    current = package_versions(["llmbrain_utils"])["llmbrain_utils"]
    order = ("stimulus", "extraction", "dictionary", "fmri", "encoding", "fbn")
    metas: dict[str, dict[str, dict]] = {}
    for stage in order:
        metas[stage] = {}
        for side in sorted((store / stage).glob(f"*/{SIDECAR}")):
            try:
                meta = json.loads(side.read_text())
            except (OSError, ValueError):
                continue
            params = meta.get("params", {})
            if all(params[n] == defaults[n] for n in params if n in config.PARAMS):
                metas[stage][meta["key"]] = meta

    def chain(stage: str, key: str) -> dict[str, dict] | None:
        """The artifact and its upstream artifacts, all with default parameters, or None."""
        meta = metas[stage].get(key)
        if meta is None:
            return None
        out = {stage: meta}
        for ref, up_key in meta.get("inputs", {}).items():
            up = chain(ref.split(":")[0], up_key)
            if up is None:
                return None
            for s_, m in up.items():
                if out.setdefault(s_, m)["key"] != m["key"]:
                    return None  # two different artifacts of one stage upstream
        return out

    best = None
    for key, meta in metas["fbn"].items():
        found = chain("fbn", key)
        if found is None or set(found) != set(order):
            continue
        rank = (all(m.get("versions", {}).get("llmbrain_utils") == current for m in found.values()),
                meta.get("timing", {}).get("created", ""))
        if best is None or rank > best[0]:
            best = (rank, found)
    stages = {}
    if best is not None:
        for stage in order:
            meta = best[1][stage]
            stages[stage] = {"key": meta["key"], "build_s": meta["timing"]["build_s"],
                             "created": meta["timing"]["created"],
                             "current_sources": meta.get("versions", {}).get("llmbrain_utils") == current}
    return {"store": str(store), "stages": stages,
            "total_build_s": round(sum(s["build_s"] for s in stages.values()), 3),
            "complete": len(stages) == 6}


# --------------------------------------------------------------------------- main
def run(mode: str, repeats: int, store: Path | None, note: str | None) -> dict:
    sz = SIZES[mode]
    t0 = time.perf_counter()
    report = {"schema": SCHEMA, "mode": mode,
              "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
              "note": note, "load_average_start": list(os.getloadavg()),
              "machine": machine(), "versions": versions(),
              "env_threads": {v: os.environ.get(v) for v in
                              ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")},
              "sizes": sz, "repeats": repeats}
    e2e = end_to_end(store) if store is not None else None
    dict_sizes = list(sz["dictionary"])
    if e2e and "extraction" in e2e["stages"]:  # real AN responses: the default run's extraction
        x = store / "extraction" / e2e["stages"]["extraction"]["key"] / "responses.npy"
        dict_sizes.append({"data": "real", "x": str(x), "k": 64, "n_iter": 300,
                           "solvers": sz["dictionary_real_solvers"]})
    steps = [("peak", lambda: peaks(sz["gemm_n"], sz["gemm_repeats"], sz["copy_mib"], sz["copy_repeats"])),
             ("extraction", lambda: extraction(sz["extraction"], max(repeats, sz["extraction_repeats"]))),
             ("dictionary", lambda: dictionary(dict_sizes, sz["dictionary_solvers"], repeats)),
             ("encoding", lambda: encoding(sz["encoding"], repeats))]
    steps.append(("peak_end", lambda: peaks(sz["gemm_n"], sz["gemm_repeats"], sz["copy_mib"], sz["copy_repeats"])))
    seconds = {}
    for name, fn in steps:
        log.info("%s ...", name)
        t1 = time.perf_counter()
        report[name] = fn()
        seconds[name] = round(time.perf_counter() - t1, 1)
        log.info("%s done in %.1f s", name, seconds[name])
    # the machine's peak: the best of the measurements at the start and at the end of the run
    # (other load on the machine lowers either)
    end = report.pop("peak_end")
    for name, g in report["peak"]["gemm"].items():
        g["peak_gflops_start"], g["peak_gflops_end"] = g["peak_gflops"], end["gemm"][name]["peak_gflops"]
        g["peak_gflops"] = max(g["peak_gflops"], end["gemm"][name]["peak_gflops"])
    c = report["peak"]["copy"]
    c["best_gbs_start"], c["best_gbs_end"] = c["best_gbs"], end["copy"]["best_gbs"]
    c["best_gbs"] = max(c["best_gbs"], end["copy"]["best_gbs"])
    report["end_to_end"] = e2e
    report["load_average_end"] = list(os.getloadavg())
    report["seconds"] = seconds
    report["wall_s"] = round(time.perf_counter() - t0, 1)
    return report


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: a ~2 minute smoke run")
    ap.add_argument("--repeats", type=int, default=3, help="repeats of every measurement (>= 1)")
    ap.add_argument("--store", type=Path, default=None,
                    help="artifact store of a default run: report its stage times")
    ap.add_argument("--note", default=None, help="a sentence about the conditions of this run")
    ap.add_argument("--out", type=Path, default=None, help="write the JSON report here")
    a = ap.parse_args(argv)
    if a.repeats < 1:
        ap.error("--repeats: expected at least 1")
    if a.store is not None and not a.store.is_dir():
        ap.error(f"--store {a.store}: not a directory")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("benchmarks.dictionary", "benchmarks.encoding", "llmbrain_utils"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    report = run("quick" if a.quick else "full", a.repeats, a.store, a.note)
    text = json.dumps(report, indent=1, sort_keys=True)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = a.out.with_name(f".{a.out.name}.tmp")
        tmp.write_text(text + "\n")
        os.replace(tmp, a.out)
        log.info("report: %s", a.out)
    else:
        print(text)
    return report


if __name__ == "__main__":
    main()
