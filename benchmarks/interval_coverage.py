"""Coverage of the intervals of the cross-model coupling strength (issue #19, item 2).

Usage::

    python benchmarks/interval_coverage.py                  # 250 replications, ~5-7 minutes on one core
    python benchmarks/interval_coverage.py --n-reps 20 --out /tmp/cov.json   # a quick look

Setting (fixed across replications; only the subjects' noise is drawn again): ``--voxels``
voxels on a line, ``--networks`` networks (contiguous blocks, together 60% of the voxels),
``--atoms`` atoms per model. Each atom's true effect map ``mu`` (in units of the noise sd) is
``amp * z(network indicator) + a smooth background`` (fixed), with amplitudes from strong to
zero (pure background: the atoms that couple to no network). Subject s's coefficients are
``mu + e_s``, ``e_s`` spatially smooth Gaussian noise of unit variance, independent across the
S = 8 subjects. A second model B (other networks, weaker amplitudes) shares half of its noise
variance with model A in every subject (the same listeners' data).

Truth: the statistic (:func:`llmbrain_utils.compare.coupling_strength`, mean best-network |r|)
of the noise-free maps ``mu`` (= ``mu / sigma``, sigma = 1), the limit of the statistic of the
group t maps as S grows (``t / sqrt(S) -> mu / sigma``): the parameter for which the estimator
is consistent. For information the report also gives the coverage of ``theta_8``, the mean of
the S = 8 estimate over the replications (what an interval without a bias correction aims at).

Statistics: ``r_corrected`` (:func:`compare.corrected_best_network_r`, the default) and the
plain ``r`` of the group t maps (:func:`compare.coupling_strength`). Variants: subsampling
without replacement (m = 6, 4 or 7 of 8; ``fpc`` or ``sqrt(m/n)`` rescaling; with or without
the bias correction) from :func:`compare.subsample_interval`'s formulas, and the old scheme, 8
subjects resampled with replacement and the percentile interval (1,000 and 20 resamples) of
``r_corrected``, for model A, model B and the paired difference A - B.

Writes ``benchmarks/interval_coverage_r_corrected.json`` (or ``--out``; the book's statistic, the network signal, is checked by ``benchmarks/signal_coverage.py`` into ``interval_coverage.json``); ``main()`` returns the report.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter1d

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmbrain_utils import compare  # noqa: E402

HERE = Path(__file__).resolve().parent
STATS = ("r_corrected", "r")
SUB_VARIANTS = [  # (name, statistic, m, rescale, bias_correct)
    *[(f"r_corrected_subsample_m{m}_{rs}{'_biascorrected' if bc else ''}", "r_corrected", m, rs, bc)
      for m, rs, bc in ((6, "fpc", False), (6, "fpc", True), (6, "sqrt_m_n", False), (4, "fpc", False),
                        (4, "fpc", True), (7, "fpc", False), (7, "fpc", True))],
    *[(f"r_subsample_m{m}_{rs}{'_biascorrected' if bc else ''}", "r", m, rs, bc)
      for m, rs, bc in ((6, "fpc", False), (6, "fpc", True), (4, "fpc", True))],
]
MAIN = "r_corrected_subsample_m4_fpc"
OLD_STATS = ("r_corrected",)  # the old scheme (with replacement, percentile) of the main statistic


def stats_of_picks(betas, picks, masks):
    """Both statistics of the subjects of every row of ``picks``: {statistic: (R,)}."""
    return {st: compare._strength_of_picks(betas, picks, masks, st) for st in STATS}


def smooth_noise(rng, shape, width):
    e = gaussian_filter1d(rng.standard_normal(shape), width, axis=-1, mode="wrap")
    return e / e.std(-1, keepdims=True).mean()  # unit variance (the same at every voxel)


def setting(V, n_net, k, seed=12345):
    rng = np.random.default_rng(seed)
    masks = np.zeros((n_net, V), bool)
    block = int(0.6 * V / n_net)
    starts = np.linspace(0, V - block, n_net).astype(int)
    for j, s in enumerate(starts):
        masks[j, s:s + block] = True
    z = (masks - masks.mean(1, keepdims=True)) / masks.std(1, keepdims=True)

    def model(amps, shift):
        mu = np.empty((k, V))
        for a in range(k):
            bg = gaussian_filter1d(rng.standard_normal(V), 20, mode="wrap")
            mu[a] = amps[a] * z[(a + shift) % n_net] + 0.25 * bg / bg.std()
        return mu

    amps = np.linspace(0.6, 0.0, k)
    amps[-k // 3:] = 0.0  # a third of the atoms couple to no network
    return masks, model(amps, 0), model(0.7 * amps, 2)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-reps", type=int, default=250)
    ap.add_argument("--subjects", type=int, default=8)
    ap.add_argument("--voxels", type=int, default=3000)
    ap.add_argument("--networks", type=int, default=6)
    ap.add_argument("--atoms", type=int, default=12)
    ap.add_argument("--smooth", type=float, default=2.0, help="sd of the noise's smoothing, voxels")
    ap.add_argument("--n-resamples", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=HERE / "interval_coverage_r_corrected.json")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    S, ci = args.subjects, 0.95
    masks, mu_a, mu_b = setting(args.voxels, args.networks, args.atoms)
    truth = {"A": compare.coupling_strength(mu_a, masks), "B": compare.coupling_strength(mu_b, masks)}
    truth["A-B"] = truth["A"] - truth["B"]
    old = [f"{st}_old_with_replacement_percentile_{nb}" for st in OLD_STATS for nb in (1000, 20)]
    names = [v[0] for v in SUB_VARIANTS] + old
    stat_of = {v[0]: v[1] for v in SUB_VARIANTS} | {o: o.split("_old")[0] for o in old}
    hits = {w: {v: [] for v in names} for w in truth}
    hits8 = {w: {v: [] for v in names} for w in truth}
    widths = {w: {v: [] for v in names} for w in truth}
    ests = {w: {v: [] for v in names} for w in truth}
    full_vals = {st: {w: [] for w in truth} for st in STATS}
    pvals = []
    rng = np.random.default_rng(0)
    per_rep = []
    for rep in range(args.n_reps):
        shared = smooth_noise(rng, (S, args.atoms, args.voxels), args.smooth)
        own = smooth_noise(rng, (S, args.atoms, args.voxels), args.smooth)
        betas = {"A": mu_a[None] + shared, "B": mu_b[None] + np.sqrt(0.5) * shared + np.sqrt(0.5) * own}
        fv = {w: stats_of_picks(b, np.arange(S)[None], masks) for w, b in betas.items()}
        full = {st: {w: float(fv[w][st][0]) for w in betas} for st in STATS}
        for st in STATS:
            full[st]["A-B"] = full[st]["A"] - full[st]["B"]
            for w in truth:
                full_vals[st][w].append(full[st][w])
        res = {}
        sub_vals = {}
        for m in sorted({v[2] for v in SUB_VARIANTS}):
            picks = compare.subsample_picks(S, m, args.n_resamples, seed=rep)
            sv = {w: stats_of_picks(b, picks, masks) for w, b in betas.items()}
            sub_vals[m] = {st: {"A": sv["A"][st], "B": sv["B"][st], "A-B": sv["A"][st] - sv["B"][st]}
                           for st in STATS}
        for name, st, m, rescale, bc in SUB_VARIANTS:
            res[name] = {w: compare._subsample_ci(full[st][w], sub_vals[m][st][w], S, m, ci, bc, rescale)
                         for w in truth}
        pvals.append(res[MAIN]["A-B"]["p"])
        brng = np.random.default_rng(10_000 + rep)
        bpicks = brng.integers(0, S, size=(1000, S))
        bv = {w: {st: compare._strength_of_picks(b, bpicks, masks, st) for st in OLD_STATS}
              for w, b in betas.items()}
        for st in OLD_STATS:
            vals = {"A": bv["A"][st], "B": bv["B"][st], "A-B": bv["A"][st] - bv["B"][st]}
            for nb in (1000, 20):
                lo_hi = {w: np.quantile(vals[w][:nb], [(1 - ci) / 2, 1 - (1 - ci) / 2]) for w in truth}
                res[f"{st}_old_with_replacement_percentile_{nb}"] = {
                    w: {"estimate": full[st][w], "ci_low": float(lo_hi[w][0]), "ci_high": float(lo_hi[w][1])}
                    for w in truth}
        per_rep.append(res)
        if (rep + 1) % 25 == 0:
            print(f"{rep + 1} replications, {time.perf_counter() - t0:.0f} s", flush=True)
    theta8 = {st: {w: float(np.mean(full_vals[st][w])) for w in truth} for st in STATS}
    for res in per_rep:
        for v in names:
            for w in truth:
                r = res[v][w]
                hits[w][v].append(r["ci_low"] <= truth[w] <= r["ci_high"])
                hits8[w][v].append(r["ci_low"] <= theta8[stat_of[v]][w] <= r["ci_high"])
                widths[w][v].append(r["ci_high"] - r["ci_low"])
                ests[w][v].append(r["estimate"])

    def summary(w, v):
        e = np.asarray(ests[w][v])
        return {"coverage": round(float(np.mean(hits[w][v])), 4),
                "coverage_of_theta_8": round(float(np.mean(hits8[w][v])), 4),
                "mean_width": round(float(np.mean(widths[w][v])), 5),
                "estimate_mean": round(float(e.mean()), 5), "estimate_sd": round(float(e.std(ddof=1)), 5),
                "low_misses": int(sum(res[v][w]["ci_high"] < truth[w] for res in per_rep)),
                "high_misses": int(sum(res[v][w]["ci_low"] > truth[w] for res in per_rep))}

    variants = {w: {v: summary(w, v) for v in names} for w in truth}
    main_v = MAIN
    p = np.asarray(pvals)
    report = {
        "coverage": variants["A-B"][main_v]["coverage"], "nominal": ci, "n_reps": args.n_reps,
        "scheme": f"{main_v}: compare.subsample_interval / paired_differences defaults: subsets of 4 of 8 "
                  "subjects without replacement, deviations from the full-sample value rescaled by "
                  "sqrt(m/(n-m)) = 1, basic interval (for m = n/2 the same as with the bias correction); paired difference A - B on the same subsets",
        "statistic": "r_corrected: mean over atoms of the best-network |noise-corrected spatial correlation| "
                     "of the mean coefficient map (compare.corrected_best_network_r)",
        "quantity": "paired difference A - B of the coupling strength; the per-model coverages are "
                    "coverage_model_A/B and variants['A'], variants['B']",
        "coverage_model_A": variants["A"][main_v]["coverage"],
        "coverage_model_B": variants["B"][main_v]["coverage"],
        "coverage_old_scheme_difference": variants["A-B"]["r_corrected_old_with_replacement_percentile_1000"]["coverage"],
        "coverage_old_scheme_model_A": variants["A"]["r_corrected_old_with_replacement_percentile_1000"]["coverage"],
        "n_resamples": args.n_resamples, "n_subjects": S,
        "truth": "statistic of the noise-free effect maps mu/sigma (the S -> infinity limit of the estimator)",
        "true_values": {w: round(float(x), 5) for w, x in truth.items()},
        "theta_8": {st: {w: round(x, 5) for w, x in d.items()} for st, d in theta8.items()},
        "power_difference_p_below_0.05": round(float(np.mean(p < 0.05)), 4),
        "setting": {"voxels": args.voxels, "networks": args.networks, "atoms": args.atoms,
                    "noise_smoothing_sd_voxels": args.smooth, "noise_shared_by_models": 0.5},
        "variants": variants,
        "seconds": round(time.perf_counter() - t0, 1), "python": platform.python_version(),
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("coverage", "coverage_model_A", "coverage_model_B",
                                             "coverage_old_scheme_difference", "coverage_old_scheme_model_A",
                                             "true_values", "theta_8", "seconds")}, indent=1))
    for w in truth:
        for v in names:
            s = variants[w][v]
            print(f"{w:4s} {v:52s} cov {s['coverage']:.3f} (theta8 {s['coverage_of_theta_8']:.3f}) "
                  f"width {s['mean_width']:.4f} est {s['estimate_mean']:.4f}+-{s['estimate_sd']:.4f} "
                  f"miss lo/hi {s['low_misses']}/{s['high_misses']}")
    return report


if __name__ == "__main__":
    main()
