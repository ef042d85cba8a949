"""Coverage of the cross-model chapter's intervals: the network signal and its paired
differences (:mod:`llmbrain_utils.netsignal`; issue #19, item 2).

Usage::

    python benchmarks/signal_coverage.py                    # 300 replications, a few minutes
    python benchmarks/signal_coverage.py --n-reps 20 --out /tmp/cov.json   # a quick look

Twins with a known truth, built from the default run itself (its store must hold the encoding
of the two models, or it is computed):

* **Truth.** Model A (the default, MiniLM-L6) and model B (MPNet): each atom's true mean
  coefficient map ``mu_a`` is the default run's mean over its 8 subjects, and the true noise sd
  map of each atom is the across-subject sd of the run's coefficients at every voxel
  (heteroscedastic: it follows the twin's tissue and the atom's regressor). ``theta`` of each
  model is computed from ``mu`` and the true noise variance; the truth of a difference is
  ``theta_A - theta_B``. A third model A' has A's maps and its own noise: the truth of A - A' is 0.
* **Subjects.** Each simulated listener's coefficients are ``mu + sd * e``, ``e`` Gaussian noise
  smoothed on the brain's 3-D grid, unit variance. The first ``--smooth`` (0.8 voxel sd) gives
  the noise the spatial correlation of the run's own residual maps (the correlation of
  neighbouring voxels, reported as ``lag1_real_residuals`` and ``lag1_simulated``); further
  values (2 voxels: much smoother noise, as in maps smoothed more heavily) are run with
  ``--n-reps-extra`` replications and reported under ``by_smoothness``. The two models' noise shares half its variance in each
  listener (the same person's data); A' shares none with A.
* **Intervals.** Those of the book: subsets of m = 4 of 8 subjects without replacement (1,000
  per replication, finite-population rescaling, basic interval), and for comparison the
  delete-one jackknife with a t interval.

Writes ``benchmarks/interval_coverage.json`` (or ``--out``): ``coverage`` is that of the book's
scheme for the paired difference A - B; every other coverage is listed too.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from llmbrain_utils import config, fbn, netsignal, pipeline, stages  # noqa: E402

HERE = Path(__file__).resolve().parent
MODELS = {"A": "all-MiniLM-L6-v2", "B": "all-mpnet-base-v2"}


def run_betas(model: str, runs_dir: str | None = None):
    """The default run's configuration with ``model``: its encoding's betas and its fMRI data."""
    params = pipeline.load_params(None)
    if runs_dir:
        params.setdefault("common", {})["runs_dir"] = runs_dir
    cfg = config.validate(dict(pipeline.stage_parameters("fbn", params), model=model))
    enc = stages.encoding(cfg)
    return np.load(enc.file("beta.npy")), stages.fmri_data(cfg), cfg


def truth(mu: np.ndarray, sd: np.ndarray, groups: np.ndarray) -> float:
    """theta of the population: mean coefficient maps ``mu`` (k, V), noise sd maps ``sd``."""
    sigma = np.sqrt((sd ** 2).mean(1))
    X = mu / sigma[:, None]
    n_g = groups.sum(1)
    means = X @ groups.T.astype(float) / n_g
    c = (means - X.mean(1, keepdims=True)) * np.sqrt(n_g / X.shape[1])
    return float((c ** 2).sum() / X.shape[0])


def smooth_fields(rng, n: int, k: int, inside: np.ndarray, width: float) -> np.ndarray:
    """(n, k, V) unit-variance Gaussian fields smoothed on the mask's grid (V voxels inside)."""
    raw = rng.standard_normal((n, k) + inside.shape)
    if width > 0:
        raw = gaussian_filter(raw, (0, 0, width, width, width), mode="constant")
    e = raw[..., inside]
    return e / e.std(-1, keepdims=True)


def simulate(mu, sd, true, true_diff, inside, groups, n, k, width, n_reps, n_resamples, seed, t0):
    """Replications of the twins at one smoothing: per scheme and quantity, whether each interval
    covered the truth, its width, and the estimates."""
    rng = np.random.default_rng(seed)
    schemes = {"subsample_m%d_fpc" % (n // 2): dict(scheme="subsample", m=n // 2), "jackknife_t": dict(scheme="jackknife")}
    hits = {s: {q: [] for q in ("A", "B", "A-B", "A-A'")} for s in schemes}
    widths = {s: {q: [] for q in ("A", "B", "A-B", "A-A'")} for s in schemes}
    estimates = {q: [] for q in ("A", "B", "A-B", "A-A'")}
    for rep in range(n_reps):
        kmax = max(k.values())
        shared = smooth_fields(rng, n, kmax, inside, width)
        own = {key: smooth_fields(rng, n, k[key], inside, width) for key in ("B", "A'")}
        noise = {"A": shared[:, :k["A"]],
                 "B": np.sqrt(0.5) * shared[:, :k["B"]] + np.sqrt(0.5) * own["B"],
                 "A'": own["A'"]}
        subj = {key: mu[key][None] + sd[key][None] * noise[key] for key in mu}
        for s, kw in schemes.items():
            one = {key: netsignal.network_signal(subj[key], groups, n_resamples=n_resamples,
                                                 seed=rep, **kw) for key in ("A", "B")}
            diffs = netsignal.paired_signal_differences(subj, groups, pairs=[("A", "B"), ("A", "A'")],
                                                        n_resamples=n_resamples, seed=rep, **kw)
            for key, r in one.items():
                hits[s][key].append(r.lo <= true[key] <= r.hi)
                widths[s][key].append(r.hi - r.lo)
                if s.startswith("subsample"):
                    estimates[key].append(r.estimate)
            for _, row in diffs.iterrows():
                q = f"{row.model_a}-{row.model_b}"
                hits[s][q].append(row.ci_low <= true_diff[q] <= row.ci_high)
                widths[s][q].append(row.ci_high - row.ci_low)
                if s.startswith("subsample"):
                    estimates[q].append(row.difference)
        if (rep + 1) % 50 == 0:
            cov = np.mean(hits[next(iter(schemes))]["A-B"])
            print(f"smoothing {width}: {rep + 1} replications, coverage of A - B so far {cov:.3f} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
    return hits, widths, estimates, schemes


def lag1(maps: np.ndarray, inside: np.ndarray) -> float:
    """Mean correlation of neighbouring voxels (along each axis, both inside the mask) of maps
    (n, V): how smooth noise is, in the grid's own terms."""
    vol = np.zeros((maps.shape[0],) + inside.shape)
    vol[:, inside] = maps
    rs = []
    for ax in range(3):
        both = inside & np.roll(inside, -1, axis=ax)
        x = vol[:, both]
        y = np.roll(vol, -1, axis=ax + 1)[:, both]
        x = x - x.mean(1, keepdims=True)
        y = y - y.mean(1, keepdims=True)
        rs.append(np.mean((x * y).sum(1) / np.sqrt((x * x).sum(1) * (y * y).sum(1))))
    return float(np.mean(rs))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-reps", type=int, default=300)
    ap.add_argument("--subjects", type=int, default=8)
    ap.add_argument("--smooth", type=float, nargs="+", default=[0.8, 2.0],
                    help="sd of the noise's smoothing, voxels (the first is the main setting)")
    ap.add_argument("--n-reps-extra", type=int, default=100, help="replications at the other smoothings")
    ap.add_argument("--n-resamples", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--runs-dir", default=None)
    ap.add_argument("--out", type=Path, default=HERE / "interval_coverage.json")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    real = {}
    for key, model in MODELS.items():
        betas, data, cfg = run_betas(model, args.runs_dir)
        real[key] = betas
    mask_img = stages.read_mask(data)
    inside = np.asarray(mask_img.get_fdata()) > 0
    atlas = fbn.load_atlas(cfg["atlas"], mask_img)
    groups, _ = netsignal.groups_of(atlas)
    mu = {k: b.mean(0) for k, b in real.items()}
    sd = {k: b.std(0, ddof=1) for k, b in real.items()}
    mu["A'"], sd["A'"] = mu["A"], sd["A"]
    true = {k: truth(mu[k], sd[k], groups) for k in mu}
    true_diff = {"A-B": true["A"] - true["B"], "A-A'": 0.0}
    n = args.subjects
    k = {key: m.shape[0] for key, m in mu.items()}
    runs = {w: simulate(mu, sd, true, true_diff, inside, groups, n, k, w,
                        args.n_reps if i == 0 else args.n_reps_extra, args.n_resamples, args.seed + i, t0)
            for i, w in enumerate(args.smooth)}
    hits, widths, estimates, schemes = runs[args.smooth[0]]
    main_scheme = next(iter(schemes))
    report = {
        "coverage": round(float(np.mean(hits[main_scheme]["A-B"])), 4),
        "nominal": 0.95,
        "n_reps": args.n_reps,
        "quantity": "paired difference A - B of the network signal theta (netsignal.paired_signal_differences), "
                    "the book's comparison of two models",
        "scheme": f"{main_scheme}: subsets of {n // 2} of {n} subjects without replacement, {args.n_resamples} per "
                  "replication, deviations rescaled by sqrt(m / (n - m)), basic interval",
        "statistic": "network signal theta: between-network variance of the atoms' effect-size maps "
                     "(llmbrain_utils.netsignal), U-statistic estimate",
        "truth": "theta of the population maps: the default run's mean coefficient maps and its across-subject "
                 "sd maps (heteroscedastic), noise smoothed on the brain grid",
        "true_values": {**{k: round(v, 5) for k, v in true.items()}, **{k: round(v, 5) for k, v in true_diff.items()}},
        "coverages": {s: {q: round(float(np.mean(v)), 4) for q, v in h.items()} for s, h in hits.items()},
        "mean_width": {s: {q: round(float(np.mean(v)), 5) for q, v in w.items()} for s, w in widths.items()},
        "mean_estimate": {q: round(float(np.mean(v)), 5) for q, v in estimates.items()},
        "sd_estimate": {q: round(float(np.std(v, ddof=1)), 5) for q, v in estimates.items()},
        "mc_se_of_coverage": round(float(np.sqrt(0.95 * 0.05 / args.n_reps)), 4),
        "n_subjects": n, "n_resamples": args.n_resamples, "smooth_voxels": args.smooth[0], "seed": args.seed,
        "lag1_real_residuals": round(lag1(((real["A"] - mu["A"]) / sd["A"]).reshape(-1, inside.sum())[:256], inside), 3),
        "lag1_simulated": {str(w): round(lag1(smooth_fields(np.random.default_rng(0), 4, 32, inside, w)
                                              .reshape(-1, inside.sum()), inside), 3) for w in args.smooth},
        "by_smoothness": {str(w): {"n_reps": len(next(iter(r[0].values()))["A"]),
                                   "coverages": {s_: {q: round(float(np.mean(v)), 4) for q, v in h.items()}
                                                 for s_, h in r[0].items()}} for w, r in runs.items()},
        "models": MODELS, "n_atoms": k, "n_voxels": int(inside.sum()),
        "machine": platform.machine(), "seconds": round(time.perf_counter() - t0, 1),
    }
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({k: report[k] for k in ("coverage", "coverages", "true_values", "mean_estimate")}, indent=1))
    return report


if __name__ == "__main__":
    main()
