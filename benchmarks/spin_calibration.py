"""Calibration of the mapping's spin null on maps with no signal at all.

Usage::

    python benchmarks/spin_calibration.py                 # 1,920 maps, 6 mm, Seitzman, 5,000 rotations
    python benchmarks/spin_calibration.py --maps 64 --resolution-mm 12 --n-perm 200   # a quick look

Each map is white Gaussian noise on the brain mask's grid smoothed with a Gaussian of
``--fwhm-vox`` voxels (2 by default: the noise smoothness of the synthetic twin) and masked:
stationary, with no relation to any network. Every map is tested against every network and sign
by :func:`llmbrain_utils.fbn.couple_atoms` exactly as the mapping stage tests an atom (the
default threshold, the same rotations), for both statistics. A valid null gives each test a
false positive rate at most its level: the share of p values at or below each level, divided by
the level, should be at most 1. The maps are independent, so the interval of each share is a
bootstrap over maps (the tests of one map share its noise and the rotations).

Prints one JSON object (and writes it to ``--out``): per statistic and level, the share, the
ratio share / level and its 95% bootstrap interval.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LEVELS = (0.0005, 0.001, 0.005, 0.01, 0.05, 0.1)
BATCH = 64


def noise_maps(mask: np.ndarray, n: int, fwhm_vox: float, rng: np.random.Generator) -> np.ndarray:
    """(n, V) smooth Gaussian noise maps on the mask's voxels."""
    from scipy.ndimage import gaussian_filter

    e = rng.standard_normal((n, *mask.shape))
    if fwhm_vox > 0:
        sigma = fwhm_vox / np.sqrt(8 * np.log(2))
        e = gaussian_filter(e, sigma=(0, sigma, sigma, sigma), mode="nearest")
    return e[:, mask]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--maps", type=int, default=30 * BATCH)
    ap.add_argument("--fwhm-vox", type=float, default=2.0)
    ap.add_argument("--resolution-mm", type=float, default=6.0)
    ap.add_argument("--atlas", default="Seitzman2018")
    ap.add_argument("--threshold", default="top10%")
    ap.add_argument("--n-perm", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=123, help="seed of the noise maps")
    ap.add_argument("--rotation-seed", type=int, default=0, help="seed of the rotations (the stage's)")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    if args.maps < 1 or args.n_perm < 1 or args.n_boot < 1:
        ap.error("--maps, --n-perm and --n-boot must be >= 1")

    from llmbrain_utils import fbn, fmri

    mask_img = fmri.brain_mask(args.resolution_mm)
    atlas = fbn.load_atlas(args.atlas, mask_img)
    mask = np.asarray(mask_img.dataobj) > 0
    t0 = time.perf_counter()
    perms = fbn.spin_permutations(mask_img, args.n_perm, seed=args.rotation_seed)
    t_rot = time.perf_counter() - t0
    rng = np.random.default_rng(args.seed)
    stats = ("dice", "r")
    per_map = {s: [] for s in stats}  # per map: (n_networks x 2) p values
    t0 = time.perf_counter()
    for start in range(0, args.maps, BATCH):
        maps = noise_maps(mask, min(BATCH, args.maps - start), args.fwhm_vox, rng)
        for s in stats:
            table = fbn.couple_atoms(maps, atlas, threshold=args.threshold, n_perm=args.n_perm,
                                     seed=args.rotation_seed, perms=perms, statistic=s)
            per_map[s].append(table.p.to_numpy().reshape(len(maps), -1))
    t_test = time.perf_counter() - t0

    boot = np.random.default_rng(args.seed + 1)
    result = {"maps": args.maps, "networks": list(atlas.network_names), "atlas": atlas.name,
              "voxels": atlas.n_voxels, "fwhm_vox": args.fwhm_vox,
              "resolution_mm": args.resolution_mm, "n_perm": args.n_perm,
              "threshold": args.threshold, "seconds": {"rotations": round(t_rot, 1),
                                                       "tests": round(t_test, 1)},
              "statistics": {}}
    for s in stats:
        p = np.concatenate(per_map[s])  # (maps, tests per map)
        draws = boot.integers(0, len(p), size=(args.n_boot, len(p)))
        rows = []
        for level in LEVELS:
            hit = (p <= level).mean(1)  # per map: share of its tests at or below the level
            share = float(hit.mean())
            lo, hi = np.quantile(hit[draws].mean(1), [0.025, 0.975])
            rows.append({"level": level, "share": share, "ratio": share / level,
                         "ratio_ci": [float(lo / level), float(hi / level)]})
        result["statistics"][s] = {"n_tests": int(p.size), "levels": rows}
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return result


if __name__ == "__main__":
    main()
