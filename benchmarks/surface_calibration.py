"""Calibration of the surface spin test (Alexander-Bloch et al. 2018) on maps with no network
signal.

Usage::

    python benchmarks/surface_calibration.py --out benchmarks/surface_calibration.json \
        --into benchmarks/null_calibration.json                                      # ~8 min
    python benchmarks/surface_calibration.py --maps 128 --n-perm 200   # a quick look
    python benchmarks/surface_calibration.py --out benchmarks/surface_calibration.json \
        --into benchmarks/null_calibration.json --merge-only   # only the merge, nothing rerun

Null maps on the cortex of fsaverage5 (both hemispheres, medial wall dropped: the vertex set of
:mod:`llmbrain_utils.surface`), none related to any network. Each starts as white Gaussian noise
on every vertex of both hemispheres, smoothed by ``s`` steps of neighbour averaging over the
mesh's edges (each vertex becomes the mean of itself and its neighbours), cut to the cortex and
standardised:

``uniform``              ``s = 10`` (a kernel of about 2 edges, ~7 mm on the radius-100
                         sphere), the same amplitude everywhere;
``curvature_amplitude``  that noise times ``0.5 + d``, ``d`` the sulcal depth of nilearn's
                         fsaverage5 (``load_fsaverage_data(data_type="sulcal")``) scaled to
                         [0, 1] over the cortex: an amplitude that follows the folding, as the
                         signal of real surface maps follows sulci and gyri (the volume's
                         ``gm_amplitude`` has no meaning on a surface that is all cortex);
``long_range``           noise of two smoothness scales, ``s = 10`` and ``s = 360`` (kernels
                         six times apart, as the volume benchmark's FWHM 1 and 6 voxels),
                         equal variance: an autocorrelation that is not one Gaussian.

The maps are tested in calls of 64 (the stage's k atoms) by :func:`llmbrain_utils.fbn.couple_atoms`
with :func:`llmbrain_utils.surface.surface_spin_permutations` (both medial-wall rules:
``nearest``, the default, and ``refill``), both statistics, at the default threshold, for the
Yeo 7- and 17-network atlases. A valid null gives each test a false-positive rate of at most its
level: ``share_over_alpha`` (share of p <= alpha, divided by alpha) should be about 1; the
target is [0.8, 1.25]. Its interval is a bootstrap over maps (the maps are independent; the
tests of one map are not). ``fdr_false_couplings_per_map``: couplings the stage's
Benjamini-Hochberg rule (q <= 0.05 over a call's 64 maps x networks x signs) declares per map,
every one false; ``..._gpd_tail``: the same with the generalised Pareto tail p values
(``tail="gpd"``). Writes ``{"rows": [...], "settings": ..., "seconds": ...}`` to ``--out``, in
the form of ``benchmarks/null_calibration.json`` (rows add ``atlas``, ``mesh`` and ``wall``).
``--into`` then puts these rows into that file (``null_calibration.merge_space``: its surface
rows replaced, its volume rows, settings and seconds untouched; this run's settings and seconds
under ``settings["surface"]``); with ``--merge-only`` nothing is computed and ``--out``'s
existing result is merged.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from null_calibration import BATCH, level_rows, map_pvalues, merge_space  # noqa: E402  (one test, one row rule)

NOISES = ("uniform", "curvature_amplitude", "long_range")
WALLS = ("nearest", "refill")
SMOOTH = 10
LONG = 360


def sulcal_depth(mesh: str, root: Path | None = None) -> np.ndarray | None:
    """nilearn's fsaverage5 sulcal depth on the cortex columns, scaled to [0, 1]; None when it
    is not shipped for ``mesh`` (fsaverage6)."""
    from nilearn.datasets import load_fsaverage_data

    from llmbrain_utils import surface

    if mesh != "fsaverage5":
        return None
    img = load_fsaverage_data(mesh="fsaverage5", data_type="sulcal")
    left, right = (np.asarray(img.data.parts[h], dtype=np.float64).ravel()
                   for h in surface.HEMISPHERES)
    d = surface.surface_maps(left, right, mesh, root=root)[0]
    return (d - d.min()) / (d.max() - d.min())


def null_maps(kind: str, mesh: str, n: int, rng: np.random.Generator,
              depth: np.ndarray | None = None, root: Path | None = None) -> np.ndarray:
    """(n, V) null maps of one noise model (see the module's docstring)."""
    from llmbrain_utils import surface

    hemi = surface.HEMI_VERTICES[mesh]

    def smooth(steps: int) -> np.ndarray:
        full = surface.smooth_on_mesh(rng.standard_normal((n, 2 * hemi)), mesh, steps)
        x = surface.surface_maps(full[:, :hemi], full[:, hemi:], mesh, root=root)
        return (x - x.mean(1, keepdims=True)) / x.std(1, keepdims=True)

    if kind == "uniform":
        return smooth(SMOOTH)
    if kind == "long_range":
        return (smooth(SMOOTH) + smooth(LONG)) / np.sqrt(2)
    if kind == "curvature_amplitude":
        if depth is None:
            raise ValueError(f"no sulcal depth for {mesh}")
        return smooth(SMOOTH) * (0.5 + depth)
    raise ValueError(f"unknown noise {kind!r}")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--maps", type=int, default=8 * BATCH)
    ap.add_argument("--atlases", nargs="+", default=["TY7", "TY17"])
    ap.add_argument("--mesh", default="fsaverage5", choices=["fsaverage5", "fsaverage6"])
    ap.add_argument("--threshold", default="top10%")
    ap.add_argument("--n-perm", type=int, default=1000)
    ap.add_argument("--alphas", type=float, nargs="+", default=[0.05, 0.01])
    ap.add_argument("--seed", type=int, default=123)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--noises", nargs="+", default=list(NOISES), choices=NOISES)
    ap.add_argument("--walls", nargs="+", default=list(WALLS), choices=WALLS)
    ap.add_argument("--root", type=Path, help="the atlas data (default: fbn.atlas_root())")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--into", type=Path, help="a null_calibration.json to put the surface rows into")
    ap.add_argument("--merge-only", action="store_true",
                    help="compute nothing: merge --out's existing result into --into")
    args = ap.parse_args(argv)
    if args.maps < 1 or args.n_perm < 1 or args.n_boot < 1:
        ap.error("--maps, --n-perm and --n-boot must be >= 1")
    if args.into is not None and not args.into.is_file():
        ap.error(f"--into: {args.into} is not a file (run benchmarks/null_calibration.py first)")
    if args.merge_only:
        if args.into is None or args.out is None or not args.out.is_file():
            ap.error("--merge-only needs --into and an existing --out")
        result = json.loads(args.out.read_text())
        merge_space(args.into, result, "surface")
        return result


    from llmbrain_utils import fbn, surface

    t_all = time.perf_counter()
    atlases = {a: surface.load_surface_atlas(a, args.mesh, root=args.root) for a in args.atlases}
    depth = sulcal_depth(args.mesh, args.root)
    notes = []
    noises = list(args.noises)
    if depth is None and "curvature_amplitude" in noises:
        noises.remove("curvature_amplitude")
        notes.append(f"curvature_amplitude skipped: nilearn ships no sulcal depth for {args.mesh}")
    seconds: dict[str, float] = {}
    perms = {}
    for wall in args.walls:
        t0 = time.perf_counter()
        perms[wall] = surface.surface_spin_permutations(args.n_perm, args.mesh, seed=0, wall=wall,
                                                        root=args.root)
        seconds[f"rotations/{wall}"] = round(time.perf_counter() - t0, 1)
    boot = np.random.default_rng(args.seed + 1)
    rows = []
    for i, noise in enumerate(noises):
        maps = null_maps(noise, args.mesh, args.maps, np.random.default_rng([args.seed, i]), depth,
                         args.root)
        for name, atlas in atlases.items():
            for wall in args.walls:
                for stat in ("dice", "r"):
                    t0 = time.perf_counter()
                    p, coupled, coupled_gpd = map_pvalues(
                        maps, atlas, threshold=args.threshold, n_perm=args.n_perm,
                        statistic=stat, null="spin", perms=perms[wall])
                    key = f"{noise}/{name}/{wall}/{stat}"
                    seconds[key] = round(time.perf_counter() - t0, 1)
                    rows += level_rows(p, args.alphas, boot, args.n_boot, coupled, coupled_gpd,
                                       null="spin", space="surface", mesh=args.mesh, atlas=name,
                                       wall=wall, noise=noise, statistic=stat, legacy=False)
                    print(f"{noise:19s} {name:5s} {wall:7s} {stat:4s} "
                          + "  ".join(f"a={r['alpha']}: {r['share_over_alpha']:.2f} {r['ci']}"
                                      for r in rows[-len(args.alphas):])
                          + f"  fdr/map {coupled / args.maps:.3f}, with the tail "
                          f"{coupled_gpd / args.maps:.3f}  ({seconds[key]} s)", flush=True)
    first = next(iter(atlases.values()))
    result = {"rows": rows,
              "settings": {"mesh": args.mesh, "atlases": list(atlases),
                           "vertices": first.n_voxels, "hemispheres": first.info["hemispheres"],
                           "medial_wall": first.info["medial_wall"], "walls": list(args.walls),
                           "default_wall": "nearest", "threshold": args.threshold,
                           "n_perm": args.n_perm, "maps_per_call": BATCH, "seed": args.seed,
                           "n_boot": args.n_boot, "smoothing_steps": [SMOOTH, LONG],
                           "noises": noises, "target": [0.8, 1.25], "notes": notes},
              "seconds": {"total": round(time.perf_counter() - t_all, 1), **seconds}}
    text = json.dumps(result, indent=1)
    if args.out:
        args.out.write_text(text + "\n")
    if args.into:
        merge_space(args.into, result, "surface")
    return result


if __name__ == "__main__":
    main()
