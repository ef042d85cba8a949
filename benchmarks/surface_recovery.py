"""Recovery of planted atom couplings on the cortical surface when the read-out atlas is not the
planting one: the surface counterpart of ``benchmarks/recovery_mismatch.py``.

Usage::

    python benchmarks/surface_recovery.py            # adds the surface rows to benchmarks/recovery_mismatch.json
    python benchmarks/surface_recovery.py --seeds 1 --dice 1.0 0.6 --methods spin:gpd:200 --out /tmp/s.json   # a quick look

The same design as the volume benchmark, whose functions it imports (``load_inputs``,
``planting_design``, ``twin_row``, ``summary_rows``, ``write_space``): the default run's
dictionary ``D`` (T x k) and number of TRs; atom i drives the i-th largest network of the
read-out atlas (``--atlas``, default TY17 on ``--mesh`` fsaverage5, :func:`surface.load_surface_atlas`),
signs alternating, for ``--n-planted`` (12) networks; the next largest is driven by a source no
atom captures (``uncapturable_source``); the rest are unplanted. What differs is the space:

* twins: :func:`llmbrain_utils.surface.surface_twin` (signal on the planting networks' vertices
  with a smooth profile, SNR as the volume twin's, noise smoothed on the mesh, AR(1) in time
  with drift; ``--n-subjects`` 8, ``--snr`` ``fmri.DEFAULT_SNR``), every subject's planting
  networks moved by a smooth random displacement of the sphere (``--jitter-mm`` 3 mm RMS);
  no tissue scaling (the cortex is all grey matter). The series are z-scored per vertex, as
  ``fmri.load_dataset`` does, then encoded with all k atoms
  (``enc.encode_subjects(D, data, cv_model=None)``, ``enc.group_maps(...).t``);
* mismatch: the planting labels are the read-out labels moved by
  :func:`llmbrain_utils.surface.mismatched_surface_labels` (the field of seed 1000 + twin seed,
  its RMS found by bisection so that the mean network Dice with the read-out labels is about
  each of ``--dice``: 1.0, 0.8, 0.6; the Dice reached is reported);
* null: the surface spin test (:func:`surface.surface_spin_permutations`, Alexander-Bloch et
  al. 2018, medial-wall rule ``nearest``; the default run's rotation seed), each
  ``--methods`` entry ``spin:tail:n_perm``: plain permutation p (``tail=none``) at 1,000 and
  5,000 rotations and the fitted generalised Pareto tail (``tail=gpd``) at 1,000, the volume
  benchmark's spin tests, mapped with :func:`surface.couple_surface`. As in the volume, BH over
  2 k n_networks tests cannot pass plain p at 1,000 rotations
  (``settings.tests_at_min_p_needed_for_bh``).

Scoring, per twin and in the rows, is the volume benchmark's (``precision``, ``recall``,
``recall_all``, ``precision_all``, ``planted_p_median``, ...). The rows, with ``"space":
"surface"`` and the volume rows' fields (``rms_mm``: RMS displacement in mm on the radius-100
sphere), replace any surface rows of ``--out`` (default ``benchmarks/recovery_mismatch.json``);
the volume rows and top-level settings are left as they are and this run's settings go to
``settings["surface"]``. About 10 minutes with the defaults on one core.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from recovery_mismatch import (T0, check_args, default_cfg, load_inputs, planting_design,  # noqa: E402
                               progress, summary_rows, twin_row, write_space)

from llmbrain_utils import fmri, surface  # noqa: E402
from llmbrain_utils import encoding as enc  # noqa: E402


def zscore(data: np.ndarray) -> np.ndarray:
    """Every subject's series z-scored per vertex over time (``fmri.load_dataset``'s default),
    in place; a constant vertex becomes 0."""
    for s in range(len(data)):
        x = data[s]
        x -= x.mean(0)
        sd = x.std(0)
        x /= np.where(sd > 0, sd, 1.0)
    return data


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--atlas", default="TY17", help="read-out atlas (planting = it, deformed)")
    ap.add_argument("--mesh", default=surface.DEFAULT_MESH, choices=list(surface.MESHES))
    ap.add_argument("--dice", type=float, nargs="+", default=[1.0, 0.8, 0.6],
                    help="targets of the mean network Dice between planting and read-out")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="twin seeds per Dice level")
    ap.add_argument("--n-subjects", type=int, default=8)
    ap.add_argument("--snr", type=float, default=fmri.DEFAULT_SNR)
    ap.add_argument("--methods", nargs="+", default=["spin:none:1000", "spin:none:5000", "spin:gpd:1000"],
                    help="tests as spin:tail:n_perm (surface.couple_surface); rows for each, same twins")
    ap.add_argument("--statistics", nargs="+", default=["dice", "r"])
    ap.add_argument("--jitter-mm", type=float, default=surface.TWIN_JITTER_MM,
                    help="per-subject RMS boundary jitter (mm on the sphere)")
    ap.add_argument("--n-planted", type=int, default=12, help="networks driven by atoms")
    ap.add_argument("--from-run", type=Path, help="an artifact folder with D and the words upstream")
    ap.add_argument("--runs-dir", help="the artifact store (default: the configuration's)")
    ap.add_argument("--root", type=Path, help="the atlas data (default: fbn.atlas_root())")
    ap.add_argument("--out", type=Path, default=HERE / "recovery_mismatch.json")
    args = ap.parse_args(argv)
    methods = check_args(ap, args, nulls=("spin",))  # the surface has the spin null only
    n_perms = sorted({n for _, _, n in methods})

    cfg = default_cfg(args.runs_dir)
    D, _words, n_trs, inputs = load_inputs(cfg, args.from_run)
    progress(f"inputs: D {D.shape} ({inputs['method']}), {n_trs} TRs")
    k = D.shape[1]
    atlas = surface.load_surface_atlas(args.atlas, args.mesh, root=args.root)
    readout = atlas.info["labels"].astype(np.int64)
    design = planting_design(atlas, D, args.n_planted)
    nets, extra = design["nets"], design["extra"]
    perms = {}
    for n in n_perms:
        perms[n] = surface.surface_spin_permutations(n, args.mesh, seed=cfg["seed"], root=args.root)
        progress(f"{n} surface spin rotations ready")

    per_twin = []
    for target in args.dice:
        for twin_seed in args.seeds:
            t0 = time.perf_counter()
            planting, rms, dice = surface.mismatched_surface_labels(
                readout, target, 1000 + twin_seed, args.mesh, root=args.root)
            twin = surface.surface_twin(
                design["tcs"], planting, design["plant"], network_names=atlas.network_names,
                n_subjects=args.n_subjects, snr=args.snr, seed=twin_seed, mesh=args.mesh,
                jitter_mm=args.jitter_mm, tr_s=cfg["tr_s"], root=args.root)
            res = enc.encode_subjects(D, zscore(twin.data), cv_model=None)
            group_t = enc.group_maps(res.beta).t
            truth = twin.truth
            del twin, res
            dice_planted = [surface.mean_network_dice(planting, readout, [atlas.index(n) + 1])
                            for n in nets + [extra]]
            jit = truth["jitter"]["mean_dice"]
            for stat, (null, tail, n_perm) in ((s, m) for s in args.statistics for m in methods):
                table = surface.couple_surface(
                    group_t, atlas, perms=perms[n_perm], n_perm=n_perm, threshold=cfg["threshold"],
                    alpha=cfg["alpha"], seed=cfg["seed"], statistic=stat, tail=tail, root=args.root)
                per_twin.append(twin_row(table, design, target, twin_seed, stat, (null, tail, n_perm),
                                         rms, dice, dice_planted, jit))
            r = [p for p in per_twin if p["dice_target"] == target and p["twin_seed"] == twin_seed]
            progress(f"Dice target {target:.2f} twin {twin_seed}: rms {rms:.2f} mm, Dice {dice:.3f}, "
                     f"jitter Dice {jit:.3f}, " + ", ".join(
                         f"{p['statistic']}/{p['tail']}/{p['n_perm']}: precision {p['precision']:.2f} "
                         f"recall {p['recall']:.2f} p_med {p['planted_p_median']:.3g}" for p in r)
                     + f" ({time.perf_counter() - t0:.0f} s)")
    rows = summary_rows(per_twin, args.dice, args.statistics, methods, args.snr, "surface")
    seconds = round(time.perf_counter() - T0, 1)
    need = {n: math.ceil(2 * k * atlas.n_networks / (cfg["alpha"] * (n + 1))) for n in n_perms}
    u = design["u"]
    settings = {
        "atlas": atlas.name, "n_networks": atlas.n_networks, "mesh": args.mesh,
        "vertices": atlas.n_voxels, "medial_wall": atlas.info["medial_wall"],
        "n_subjects": args.n_subjects, "snr": args.snr, "n_trs": n_trs, "k": k,
        "dice_targets": args.dice, "twin_seeds": args.seeds, "n_perm": n_perms,
        "methods": args.methods, "statistics": args.statistics, "threshold": cfg["threshold"],
        "alpha": cfg["alpha"], "rotation_seed": cfg["seed"], "spin_wall": "nearest",
        "jitter_mm": args.jitter_mm, "tissue": False,
        "twin": {"function": "llmbrain_utils.surface.surface_twin",
                 "smoothing_steps": {kind: v[args.mesh] for kind, v in surface.TWIN_SMOOTHING.items()},
                 "ar1": 0.4, "drift_amp": 0.3, "zscored_per_vertex": True},
        "mismatch": {"model": surface.SURFACE_DEFORM_MODEL,
                     "iterations": surface.TWIN_SMOOTHING["field"][args.mesh],
                     "field_seed": "1000 + twin seed",
                     "search": "bisection of rms_mm on the measured mean Dice over all networks"},
        "planted": [{"atom": a, "network": n, "sign": s} for a, n, s in design["truth"]],
        "uncapturable": {"network": extra, "sign": "active",
                         "source": "white noise smoothed (Gaussian, sigma 2 TRs), orthogonalised "
                                   "against the mean and all k atoms, z-scored (seed 4242)",
                         "max_abs_r_with_atoms": round(float(np.abs(
                             np.corrcoef(np.column_stack([u, D]), rowvar=False)[0, 1:]).max()), 6)},
        "unplanted_networks": design["unplanted"],
        "tests_at_min_p_needed_for_bh": need,
        "inputs": inputs,
        "command": "python benchmarks/surface_recovery.py "
                   + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    result = write_space(args.out, "surface", rows, settings, seconds)
    for r in rows:
        progress(f"{r['statistic']:>4} {r['null']}/{r['tail']}/{r['n_perm']} Dice {r['dice_mismatch']:.3f}: "
                 f"precision {r['precision']:.3f} recall {r['recall']:.3f} "
                 f"recall_all {r['recall_all']:.3f} ({r['n_twins']} twins)")
    progress(f"wrote the surface rows into {args.out} in {seconds} s")
    return result


if __name__ == "__main__":
    main()
