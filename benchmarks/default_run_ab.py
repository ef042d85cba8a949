"""The default run from nothing at two commits, one after the other on this machine (one
sitting): ``python -m llmbrain_utils run --params params/default.yaml`` in a fresh clone of each
commit with an empty store, wall seconds each and their ratio (issue #22's item 4).

    python benchmarks/default_run_ab.py BEFORE AFTER [--workdir DIR] [--out JSON]

The clones use this checkout's ``.venv`` (``python -m`` runs the clone's own package: its folder
comes first on ``sys.path``); the model cache (``$LLMBRAIN_CACHE``) is shared, so run once before
to warm it. Prints and writes ``{"runs": [{"commit", "wall_s"}...], "ratio": before / after}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_at(commit: str, workdir: Path) -> dict:
    clone = workdir / commit[:12]
    if clone.exists():
        subprocess.run(["rm", "-rf", str(clone)], check=True)
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    subprocess.run(["git", "-C", str(clone), "checkout", "-q", commit], check=True)
    shared = REPO.parent / "shared"
    if shared.exists() and not (workdir / "shared").exists():
        (workdir / "shared").symlink_to(shared)   # the atlas mirror at ../shared/atlases
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONHASHSEED="0",
               LLMBRAIN_RUNS=str(clone / "runs"), PYTHONPATH=str(clone))  # every process: the clone's package
    t0 = time.perf_counter()
    proc = subprocess.run([str(REPO / ".venv" / "bin" / "python"), "-m", "llmbrain_utils", "run",
                           "--params", "params/default.yaml"], cwd=clone, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wall = time.perf_counter() - t0
    (workdir / f"{commit[:12]}.log").write_text(proc.stdout)
    if proc.returncode != 0:
        raise SystemExit(f"the default run at {commit} failed (log {workdir}/{commit[:12]}.log)")
    sha = subprocess.run(["git", "-C", str(clone), "rev-parse", "HEAD"], text=True,
                         stdout=subprocess.PIPE, check=True).stdout.strip()
    return {"commit": sha, "wall_s": round(wall, 1), "load_average_after": os.getloadavg()[0]}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--workdir", default="/tmp/llmbrain-default-run-ab")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "default_run_ab.json"))
    ap.add_argument("--note", action="append", default=[],
                    help="a line kept in the JSON's notes (what each commit is; repeatable)")
    a = ap.parse_args(argv)
    work = Path(a.workdir)
    work.mkdir(parents=True, exist_ok=True)
    runs = []
    for c in (a.before, a.after):
        runs.append(run_at(c, work))
        print(f"[default_run_ab] {c}: {runs[-1]['wall_s']:.1f} s", file=sys.stderr, flush=True)
    res = {"created": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": platform.processor() or platform.machine(),
           "cores": os.cpu_count(), "runs": runs, "ratio": round(runs[0]["wall_s"] / runs[1]["wall_s"], 3),
           "basis": "wall seconds of `python -m llmbrain_utils run --params params/default.yaml` from an "
                    "empty store in a fresh clone of each commit, one after the other (one sitting), "
                    "single-threaded BLAS, the model cache warm; ratio = before / after",
           "notes": a.note}
    print(json.dumps(res, indent=1))
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=1) + "\n")
    return res


if __name__ == "__main__":
    main()
