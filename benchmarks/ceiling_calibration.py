"""Calibration of the noise ceiling: a perfect model should score 1 after normalisation.

Usage::

    python benchmarks/ceiling_calibration.py        # 8 subjects, 326 TRs, 200 sims x 300 voxels, ~11 s
    python benchmarks/ceiling_calibration.py --n-sims 20 --out /tmp/ceiling.json   # a quick look

Each simulation makes ``--subjects`` subjects x ``--T`` TRs x ``--voxels`` voxels: one shared
signal per voxel (smooth in time, as an HRF-convolved response) plus independent noise per
subject (AR(1)), with the voxels spread evenly over ``--levels`` of the pairwise ISC ``rho``
(the share of a subject's variance that is shared). The leave-one-subject-out ISC is computed
as the fMRI stage does (:func:`llmbrain_utils.fmri.isc_loo`, mean over subjects). A perfect model
predicts with the true shared signal: its score is the mean over subjects of
``corr(signal, subject's data)`` per voxel (the shape of the stage's mean held-out r), whose
expectation is ``sqrt(rho)``. It is normalised with
:func:`llmbrain_utils.encoding.normalise_by_ceiling` by

* the new ceiling, :func:`llmbrain_utils.encoding.noise_ceiling` of the LOO ISC (Spearman-Brown:
  ``r_loo^2 = (S - 1) rho^2 / (1 + (S - 2) rho)`` solved for ``rho``, ceiling ``sqrt(rho)``);
* the old ceiling, the LOO ISC itself (what the stage divided by before);
* for reference, the inversion written in issue #19, ``rho = r^2 / ((S - 1) - (S - 2) r^2)``,
  which follows from ``r_loo^2 = rho (S - 1) / (1 + (S - 2) rho)`` (the Spearman-Brown
  reliability of the mean of S - 1 subjects, not the squared correlation of one subject with
  that mean, which carries one more factor ``rho``).

Writes ``benchmarks/ceiling_calibration.json`` (or ``--out``): the median over voxels and
simulations of the normalised perfect-model score for each ceiling (target 1 within
[0.95, 1.05]), the same per ISC level, and the share of voxels left without a ceiling (NaN).
``main()`` returns the report as a dict.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmbrain_utils import encoding as enc  # noqa: E402
from llmbrain_utils import fmri  # noqa: E402

HERE = Path(__file__).resolve().parent
LEVELS = (0.05, 0.1, 0.2, 0.3, 0.5)


def _unit(x: np.ndarray, axis: int) -> np.ndarray:
    x = x - x.mean(axis=axis, keepdims=True)
    return x / x.std(axis=axis, keepdims=True)


def simulate(S: int, T: int, rho: np.ndarray, rng: np.random.Generator, *, smooth: float = 1.5,
             ar: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """(signal T x V, data S x T x V): ``sqrt(rho) * signal + sqrt(1 - rho) * noise``, both of
    unit variance over time, the signal Gaussian-smoothed, the noise AR(1)."""
    from scipy.ndimage import gaussian_filter1d
    from scipy.signal import lfilter

    V = rho.size
    sig = rng.standard_normal((T, V))
    if smooth > 0:
        sig = gaussian_filter1d(sig, smooth, axis=0, mode="wrap")
    sig = _unit(sig, 0)
    noise = rng.standard_normal((S, T, V))
    if ar:
        noise = lfilter([1.0], [1.0, -ar], noise, axis=1)
    noise = _unit(noise, 1)
    data = np.sqrt(rho) * sig[None] + np.sqrt(1.0 - rho) * noise
    return sig, data


def perfect_score(sig: np.ndarray, data: np.ndarray) -> np.ndarray:
    """Mean over subjects of corr(signal, subject's data) per voxel."""
    zs = _unit(sig, 0)
    zd = _unit(data, 1)
    return (zs[None] * zd).mean(1).mean(0)


def issue_ceiling(isc: np.ndarray, S: int) -> np.ndarray:
    """The inversion written in issue #19 (kept for comparison only)."""
    r2 = np.where(isc > 0, isc, np.nan) ** 2
    return np.sqrt(r2 / ((S - 1) - (S - 2) * r2))


def _summary(x: np.ndarray) -> dict:
    x = x[np.isfinite(x)]
    q = np.percentile(x, [25, 50, 75]) if x.size else [np.nan] * 3
    return {"median": round(float(q[1]), 4), "q25": round(float(q[0]), 4),
            "q75": round(float(q[2]), 4)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--subjects", type=int, default=8)
    ap.add_argument("--T", type=int, default=326)
    ap.add_argument("--voxels", type=int, default=300, help="voxels per simulation")
    ap.add_argument("--n-sims", type=int, default=200)
    ap.add_argument("--levels", type=float, nargs="+", default=list(LEVELS),
                    help="pairwise ISC levels rho (share of shared variance), each in (0, 1)")
    ap.add_argument("--smooth", type=float, default=1.5, help="Gaussian SD (TRs) of the signal")
    ap.add_argument("--ar", type=float, default=0.5, help="AR(1) coefficient of the noise")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=HERE / "ceiling_calibration.json")
    ap.add_argument("--print-json", action="store_true")
    args = ap.parse_args(argv)
    if args.subjects < 2 or args.T < 10 or args.voxels < len(args.levels) or args.n_sims < 1:
        ap.error("need --subjects >= 2, --T >= 10, --voxels >= number of levels, --n-sims >= 1")
    if not all(0 < r < 1 for r in args.levels):
        ap.error("--levels must lie in (0, 1)")

    S, T, V = args.subjects, args.T, args.voxels
    levels = np.asarray(args.levels, dtype=np.float64)
    rho = levels[np.arange(V) % levels.size]
    rng = np.random.default_rng(args.seed)
    new, old, issue, isc_all, perf = [], [], [], [], []
    t0 = time.perf_counter()
    for _ in range(args.n_sims):
        sig, data = simulate(S, T, rho, rng, smooth=args.smooth, ar=args.ar)
        isc, _ = fmri.isc_loo(data.astype(np.float32))
        score = perfect_score(sig, data)
        new.append(enc.normalise_by_ceiling(score, enc.noise_ceiling(isc, S)))
        old.append(enc.normalise_by_ceiling(score, isc))
        issue.append(enc.normalise_by_ceiling(score, issue_ceiling(isc, S)))
        isc_all.append(isc)
        perf.append(score)
    elapsed = time.perf_counter() - t0
    new, old, issue = np.stack(new), np.stack(old), np.stack(issue)
    isc_all, perf = np.stack(isc_all), np.stack(perf)

    per_level = []
    for i, r in enumerate(levels):
        cols = np.arange(V) % levels.size == i
        per_level.append({
            "rho": float(r),
            "loo_isc_median": round(float(np.median(isc_all[:, cols])), 4),
            "loo_isc_expected": round(float(r * np.sqrt((S - 1) / (1 + (S - 2) * r))), 4),
            "perfect_r_median": round(float(np.median(perf[:, cols])), 4),
            "perfect_r_expected": round(float(np.sqrt(r)), 4),
            "new": _summary(new[:, cols]), "old_loo": _summary(old[:, cols]),
            "issue_formula": _summary(issue[:, cols]),
            "nan_share_new": round(float(np.isnan(new[:, cols]).mean()), 4),
        })
    report = {
        "perfect_model_normalised": round(float(np.nanmedian(new)), 4),
        "n_subjects": S,
        "n_sims": args.n_sims,
        "old_loo_normalised": round(float(np.nanmedian(old)), 4),
        "issue_formula_normalised": round(float(np.nanmedian(issue)), 4),
        "target": [0.95, 1.05],
        "within_target": bool(0.95 <= np.nanmedian(new) <= 1.05),
        "n_trs": T, "voxels_per_sim": V, "levels_rho": [float(x) for x in levels],
        "signal_smooth_sd_trs": args.smooth, "noise_ar1": args.ar, "seed": args.seed,
        "nan_share_new": round(float(np.isnan(new).mean()), 4),
        "nan_share_old": round(float(np.isnan(old).mean()), 4),
        "per_level": per_level,
        "seconds": round(elapsed, 2),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    if args.print_json or not args.out:
        print(text)
    else:
        print(f"perfect model, normalised: new {report['perfect_model_normalised']}, old "
              f"{report['old_loo_normalised']}, issue formula {report['issue_formula_normalised']} "
              f"({args.n_sims} simulations, {elapsed:.1f} s) -> {args.out}")
    return report


if __name__ == "__main__":
    main()
