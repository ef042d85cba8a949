"""Benchmark of the ISC circular-shift null (llmbrain_utils.fmri.isc_null, ``method="circular"``).

Times, in one run on the same data (AR(1) noise plus a shared signal in a tenth of the voxels):

* the pair path the stage uses: every subject pair's circular cross-correlation computed once
  by FFT, then each surrogate's leave-one-out ISC read from it (``fmri._isc_null_circular``);
* the reference: the same surrogates as Fourier rotations of every subject's series, inner
  products by Parseval, one S x F x V pass per surrogate (``fmri._isc_null_fourier``, the
  implementation the fMRI stage used before; the phase null still works this way).

Both get the same lags (``fmri._circular_lags``); the report gives the wall times, their
ratio, the largest difference between the two nulls and whether the p values agree.

Usage::

    python benchmarks/isc_null.py --subjects 12 --T 326 --voxels 8700 --perms 1000   # ~2 min
    python benchmarks/isc_null.py --subjects 4 --T 60 --voxels 300 --perms 50 --print-json

``main()`` returns the report as a dict.
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmbrain_utils import fmri  # noqa: E402


def _data(S: int, T: int, V: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.empty((S, T, V), dtype=np.float32)
    e = rng.standard_normal((S, T, V))
    x[:, 0] = e[:, 0]
    for t in range(1, T):
        x[:, t] = 0.5 * x[:, t - 1] + e[:, t]
    shared = rng.standard_normal((T, V // 10))
    x[:, :, : V // 10] += 0.5 * shared[None]
    return x


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--subjects", type=int, default=12)
    ap.add_argument("--T", type=int, default=326)
    ap.add_argument("--voxels", type=int, default=8700)
    ap.add_argument("--perms", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="also write the report here")
    ap.add_argument("--print-json", action="store_true", help="print the report as JSON only")
    a = ap.parse_args(argv)
    S, T, V, P = a.subjects, a.T, a.voxels, a.perms
    x = _data(S, T, V, a.seed)
    lags = np.stack([fmri._circular_lags(a.seed, i, S, T) for i in range(P)])
    fmri._isc_null_circular(x[:, :, :2], lags[:2], "mean", 2048, False)  # compiles the kernels
    t0 = time.perf_counter()
    c_pair, obs_pair, null_pair = fmri._isc_null_circular(x, lags, "mean", 2048, True)
    t_pair = time.perf_counter() - t0
    rots = [functools.partial(fmri._rotation, a.seed, i, S, T, "circular") for i in range(P)]
    t0 = time.perf_counter()
    c_ref, obs_ref, null_ref = fmri._isc_null_fourier(x, rots, "mean", 2048, True)
    t_ref = time.perf_counter() - t0
    report = {
        "sizes": {"subjects": S, "T": T, "voxels": V, "perms": P},
        "machine": {"processor": platform.processor() or platform.machine(),
                    "python": platform.python_version(), "numpy": np.__version__},
        "seconds": {"pairs": round(t_pair, 6), "fourier_reference": round(t_ref, 6)},
        "speedup_vs_reference": round(t_ref / t_pair, 2),
        "max_abs_null_difference": float(np.abs(null_pair - null_ref).max()),
        "max_abs_observed_difference": float(np.abs(obs_pair - obs_ref).max()),
        "voxels_with_different_counts": int((c_pair != c_ref).sum()),
    }
    if a.json:
        a.json.write_text(json.dumps(report, indent=1) + "\n")
    if a.print_json:
        print(json.dumps(report))
    else:
        print(f"ISC circular null, {S} subjects x {T} TRs x {V} voxels, {P} surrogates")
        print(f"  pairs (stage):        {t_pair:8.2f} s")
        print(f"  Fourier (reference):  {t_ref:8.2f} s   ratio {report['speedup_vs_reference']:.1f}x")
        print(f"  max |null difference| {report['max_abs_null_difference']:.2e}; voxels whose "
              f"count differs: {report['voxels_with_different_counts']}")
    return report


if __name__ == "__main__":
    main()
