"""Benchmark of the dictionary-learning solvers (llmbrain_utils.dictionary).

On the same data, in one run, every solver (SPAMS ``trainDL`` + ``lasso``, scikit-learn
``MiniBatchDictionaryLearning``, the torch online solver on the CPU or a GPU) learns k atoms
with the same lam, iterations and batch size, then codes every AN. Reported per solver: wall
time (learning, final lasso, total), the final objective evaluated by one shared function
(``dictionary.evaluate``) on each solver's D and loadings, R2, sparsity, recovery of the
planted atoms (median matched |r|), and the time and objective ratios to SPAMS.

Data (``--data``):

* ``planted``: ``dictionary.planted_responses`` with k planted atoms, 3 per AN, noise 0.3;
* ``anlike``: harder, closer to real AN responses: 2k smooth planted atoms, 6 per AN,
  noise 0.7 (the dictionary's R2 lands near the paper's 0.5-0.6);
* ``--x PATH``: any (T, N) float32 ``.npy`` (memory-mapped), e.g. a ``responses.npy`` artifact.

``X`` is written to, and read back from, a memory-mapped ``.npy`` in ``--workdir`` (default: a
temporary directory), so N = 131,072 or 458,752 (Llama scale) runs in bounded memory: loadings
are sparse and the final lasso works in chunks; SPAMS alone needs a float32 copy of X.

Usage::

    python benchmarks/dictionary.py --n-ans 20000 --T 300 --k 64 --lam 0.1
    python benchmarks/dictionary.py --n-ans 131072 --T 1000 --solvers spams,torch --device cuda

Prints a table (``--print-json``: one JSON object instead); ``--json PATH`` also writes the
numbers; :func:`measure` returns them.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmbrain_utils import dictionary as dl  # noqa: E402

log = logging.getLogger("benchmarks.dictionary")


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def make_data(args, workdir: Path):
    """The benchmark's X as a read-only memmap, plus the planted atoms (or None)."""
    if args.x:
        X = np.load(args.x, mmap_mode="r")
        if X.ndim != 2:
            raise SystemExit(f"--x {args.x}: expected a 2-D (T, N) array, got shape {X.shape}")
        return X, None
    if args.data == "planted":
        k0, nnz, noise = args.k, 3, 0.3
    else:
        k0, nnz, noise = 2 * args.k, 6, 0.7
    path = workdir / "X.npy"
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32,
                                   shape=(args.T, args.n_ans))
    t0 = time.perf_counter()
    _, D0, _ = dl.planted_responses(args.T, args.n_ans, k0, nnz=nnz, noise=noise, smooth=2.0,
                                    seed=args.seed, out=mm)
    del mm
    log.info("data: %s, T=%d, N=%d, %d planted atoms, written in %.1f s", args.data, args.T,
             args.n_ans, k0, time.perf_counter() - t0)
    return np.load(path, mmap_mode="r"), D0


def run(args) -> dict:
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        X, D0 = make_data(args, Path(tmp))
        T, N = X.shape
        rows = []
        if "torch" in args.solvers:  # import torch and open a CUDA context outside the timings
            import torch

            dev = "cuda" if args.device is None and torch.cuda.is_available() else args.device
            if dev and dev.startswith("cuda") and torch.cuda.is_available():
                torch.zeros(1, device=dev)
        for solver in args.solvers:
            t0 = time.perf_counter()
            res = dl.learn_dictionary(X, args.k, args.lam, solver=solver, seed=args.seed,
                                      n_iter=args.n_iter, batch_size=args.batch_size,
                                      device=args.device, n_threads=args.threads,
                                      progress=args.progress)
            wall = time.perf_counter() - t0
            ev = dl.evaluate(X, res.D, res.A, args.lam)  # the one shared formula
            row = {"solver": solver, "device": res.info.get("device", "cpu"),
                   "learn_s": res.timings["learn"], "encode_s": res.timings["encode"],
                   "total_s": wall, "objective": ev["objective"], "r2": ev["r2_overall"],
                   "sparsity": ev["sparsity"], "nnz_per_an": res.A.nnz / max(N, 1),
                   "peak_rss_gb": _peak_rss_gb()}
            if D0 is not None:
                m = dl.match_atoms(D0, res.D)
                row["planted_match"] = m.median
            if solver == "torch" and row["device"].startswith("cuda"):
                import torch

                row["gpu_peak_gb"] = torch.cuda.max_memory_allocated() / 2**30
            rows.append(row)
            log.info("%s done in %.1f s", solver, wall)
        ref = next((r for r in rows if r["solver"] == "spams"), None)
        for r in rows:
            r["time_vs_spams"] = r["total_s"] / ref["total_s"] if ref else None
            r["objective_vs_spams"] = r["objective"] / ref["objective"] if ref else None
        return {"T": T, "N": N, "k": args.k, "lam": args.lam, "n_iter": args.n_iter,
                "batch_size": args.batch_size, "data": args.x or args.data,
                "threads": args.threads, "machine": platform.platform(),
                "processor": platform.processor(), "results": rows}


def print_table(out: dict) -> None:
    print(f"dictionary benchmark: T={out['T']} N={out['N']} k={out['k']} lam={out['lam']} "
          f"n_iter={out['n_iter']} batch={out['batch_size']} data={out['data']} "
          f"threads={out['threads']}")
    cols = ["solver", "device", "learn_s", "encode_s", "total_s", "objective", "r2",
            "sparsity", "planted_match", "time_vs_spams", "objective_vs_spams", "peak_rss_gb"]
    print(" ".join(f"{c:>18}" for c in cols))
    for r in out["results"]:
        cells = []
        for c in cols:
            v = r.get(c)
            cells.append(f"{v:>18.4f}" if isinstance(v, float) else f"{str(v):>18}")
        print(" ".join(cells))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n-ans", type=int, default=20000, help="N, the number of ANs")
    p.add_argument("--T", type=int, default=300, help="TRs")
    p.add_argument("--k", type=int, default=64)
    p.add_argument("--lam", type=float, default=dl.DEFAULT_LAM)
    p.add_argument("--n-iter", type=int, default=dl.DEFAULT_N_ITER)
    p.add_argument("--batch-size", type=int, default=dl.DEFAULT_BATCH_SIZE)
    p.add_argument("--solvers", default="spams,torch,sklearn")
    p.add_argument("--device", default=None, help="torch device (default: cuda if present)")
    p.add_argument("--threads", type=int, default=None, help="SPAMS and torch CPU threads")
    p.add_argument("--data", choices=("planted", "anlike"), default="planted")
    p.add_argument("--x", default=None, help="a (T, N) .npy to use instead of synthetic data")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", default=None, help="where the memmapped X is written")
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--progress", action="store_true")
    p.add_argument("--print-json", action="store_true",
                   help="print the results as one JSON object instead of the table")
    return p


def _args(argv=None) -> argparse.Namespace:
    p = _parser()
    args = p.parse_args(argv)
    args.solvers = [s.strip() for s in args.solvers.split(",") if s.strip()]
    bad = [s for s in args.solvers if s not in dl.SOLVERS]
    if bad:
        p.error(f"--solvers: unknown {bad}; expected some of {dl.SOLVERS}")
    return args


def _measure(args: argparse.Namespace) -> dict:
    out = run(args)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1))
    return out


def measure(argv=None) -> dict:
    """Parse the command line, run the benchmark and return its results (one dict)."""
    return _measure(_args(argv))


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = _args(argv)
    out = _measure(args)
    if args.print_json:
        print(json.dumps(out, indent=1))
    else:
        print_table(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
