"""Calibration of the mapping's nulls on realistic maps with no network signal.

Usage::

    python benchmarks/null_calibration.py                       # the committed JSON (~25 min)
    python benchmarks/null_calibration.py --maps 128 --n-perm 200   # a quick look

Null maps on the 6 mm brain mask, none related to any network (each is white Gaussian noise on
the grid, smoothed, masked and standardised; ``g`` is the MNI152 grey-matter probability of the
voxel, nilearn's template):

``uniform``       smooth noise (FWHM 2 voxels, the twin's), the same amplitude everywhere;
``gm_amplitude``  that noise times ``0.25 + g`` (real group maps scale with grey matter);
``gm_shift``      ``gm_amplitude`` plus ``0.5 c g`` with ``c ~ N(0, 1)`` per map: a broad
                  grey-matter effect that belongs to no network;
``long_range``    noise of two smoothness scales (FWHM 1 and 6 voxels, equal variance) times
                  ``0.25 + g``: an autocorrelation that is not Gaussian, as in real maps.

The maps are tested in calls of 64 (the stage's k atoms) by :func:`llmbrain_utils.fbn.couple_atoms`
with every null (``spin``: the legacy volumetric rotation; ``surrogate``: tissue-conditioned,
autocorrelation-matched surrogate maps) and both statistics, at the default threshold. A valid
null gives each test a false-positive rate of at most its level: ``share_over_alpha`` (share of
p <= alpha, divided by alpha) should be about 1; the target is [0.8, 1.25]. Its interval is a
bootstrap over maps (the maps are independent; the tests of one map are not).
``fdr_false_couplings_per_map``: couplings the stage's Benjamini-Hochberg rule (q <= 0.05 over a
call's 64 maps x networks x signs) declares per map, every one false; ``..._gpd_tail``: the same
with the generalised Pareto tail p values (``tail="gpd"``), which go below the permutation floor. Writes ``{"rows": [...], "settings": ..., "seconds": ...}`` to ``--out``.

The committed JSON also holds the surface spin's calibration (rows with ``"space": "surface"``,
settings in ``settings["surface"]``), merged by :func:`merge_space` from
``benchmarks/surface_calibration.py --into benchmarks/null_calibration.json``; a rerun of this
script writes the volume rows only, so run that merge again after it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

NOISES = ("uniform", "gm_amplitude", "gm_shift", "long_range")
NULLS = {"spin": True, "surrogate": False}  # name -> legacy
BATCH = 64


def null_maps(kind: str, mask: np.ndarray, gm: np.ndarray, n: int, rng: np.random.Generator
              ) -> np.ndarray:
    """(n, V) null maps of one noise model (see the module's docstring)."""
    from scipy.ndimage import gaussian_filter

    def smooth(fwhm: float) -> np.ndarray:
        e = rng.standard_normal((n, *mask.shape))
        s = fwhm / np.sqrt(8 * np.log(2))
        e = gaussian_filter(e, sigma=(0, s, s, s), mode="nearest")[:, mask]
        return (e - e.mean(1, keepdims=True)) / e.std(1, keepdims=True)

    if kind == "uniform":
        return smooth(2.0)
    if kind == "long_range":
        return (smooth(1.0) + smooth(6.0)) / np.sqrt(2) * (0.25 + gm)
    x = smooth(2.0) * (0.25 + gm)
    if kind == "gm_shift":
        x = x + 0.5 * rng.standard_normal((n, 1)) * gm
    return x


def map_pvalues(maps: np.ndarray, atlas, *, threshold, n_perm: int, statistic: str, null: str,
              perms=None) -> tuple[np.ndarray, int, int]:
    """Every map tested in calls of ``BATCH`` (the stage's k atoms), with the fitted tail:
    the plain permutation p per map (maps, 2 x networks), and the couplings Benjamini-Hochberg
    declares over each call with the plain p and with the tail p (all false)."""
    from scipy.stats import false_discovery_control

    from llmbrain_utils import fbn

    p_maps, coupled, coupled_gpd = [], 0, 0
    for start in range(0, len(maps), BATCH):
        table = fbn.couple_atoms(maps[start:start + BATCH], atlas, threshold=threshold,
                                 n_perm=n_perm, seed=0, null=null, statistic=statistic,
                                 perms=perms, tail="gpd")
        p_count = table.attrs["p_count"]
        p_maps.append(p_count.reshape(-1, 2 * atlas.n_networks))
        tested = (table["dice"] if statistic == "dice" else table["r"]).to_numpy() > 0
        coupled += int(((false_discovery_control(p_count) <= 0.05) & tested).sum())
        coupled_gpd += int(table.coupled.sum())
    return np.concatenate(p_maps), coupled, coupled_gpd


def level_rows(p: np.ndarray, alphas, boot: np.random.Generator, n_boot: int, coupled: int,
               coupled_gpd: int, **fields) -> list[dict]:
    """One row per level: share of p <= alpha over alpha, its bootstrap interval over maps (the
    maps are independent, the tests of one map are not), and the false couplings per map."""
    n = len(p)
    draws = boot.integers(0, n, size=(n_boot, n))
    rows = []
    for alpha in alphas:
        hit = (p <= alpha).mean(1)
        lo, hi = np.quantile(hit[draws].mean(1), [0.025, 0.975])
        rows.append({**fields, "alpha": alpha,
                     "share_over_alpha": round(float(hit.mean()) / alpha, 4),
                     "ci": [round(float(lo) / alpha, 4), round(float(hi) / alpha, 4)],
                     "fdr_false_couplings_per_map": round(coupled / n, 4),
                     "fdr_false_couplings_per_map_gpd_tail": round(coupled_gpd / n, 4),
                     "n_maps": n})
    return rows


def merge_space(path: Path, result: dict, space: str) -> dict:
    """Put the rows of another space's calibration (``result``, e.g. of
    ``benchmarks/surface_calibration.py``, every row with ``"space": space``) into the
    calibration JSON at ``path`` (this script's), replacing that space's rows there, and return
    what was written.

    The rows of every other space (this script's ``"volume"`` rows) and the top-level
    ``settings`` and ``seconds`` stay exactly as they are; ``result``'s settings and seconds go
    to ``settings[space]`` (``{..., "seconds": ...}``). ``path`` must exist (this script's
    result: the volume run owns the file).
    """
    if space == "volume":
        raise ValueError("the volume rows are this script's own: write them with --out")
    path = Path(path)
    rows = result["rows"]
    wrong = sorted({str(r.get("space")) for r in rows} - {space})
    if wrong:
        raise ValueError(f"rows of space {wrong} in the {space} result")
    doc = json.loads(path.read_text())
    keep = [r for r in doc["rows"] if r.get("space", "volume") != space]
    merged = {**doc, "rows": keep + rows,
              "settings": {**doc["settings"],
                           space: {**result.get("settings", {}), "seconds": result.get("seconds")}}}
    path.write_text(json.dumps(merged, indent=1) + "\n")
    return merged


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--maps", type=int, default=8 * BATCH)
    ap.add_argument("--atlas", default="Seitzman2018")
    ap.add_argument("--resolution-mm", type=float, default=6.0)
    ap.add_argument("--threshold", default="top10%")
    ap.add_argument("--n-perm", type=int, default=1000)
    ap.add_argument("--alphas", type=float, nargs="+", default=[0.05, 0.01])
    ap.add_argument("--seed", type=int, default=123)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--noises", nargs="+", default=list(NOISES), choices=NOISES)
    ap.add_argument("--nulls", nargs="+", default=list(NULLS), choices=list(NULLS))
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    if args.maps < 1 or args.n_perm < 1 or args.n_boot < 1:
        ap.error("--maps, --n-perm and --n-boot must be >= 1")

    from llmbrain_utils import fbn, fmri

    mask_img = fmri.brain_mask(args.resolution_mm)
    mask = np.asarray(mask_img.dataobj) > 0
    atlas = fbn.load_atlas(args.atlas, mask_img)
    gm = fbn.grey_matter(mask_img)
    perms = fbn.spin_permutations(mask_img, args.n_perm, seed=0)
    boot = np.random.default_rng(args.seed + 1)
    rows, seconds = [], {}
    t_all = time.perf_counter()
    for i, noise in enumerate(args.noises):
        maps = null_maps(noise, mask, gm, args.maps, np.random.default_rng([args.seed, i]))
        for null in args.nulls:
            for stat in ("dice", "r"):
                t0 = time.perf_counter()
                p, coupled, coupled_gpd = map_pvalues(
                    maps, atlas, threshold=args.threshold, n_perm=args.n_perm, statistic=stat,
                    null=null, perms=perms if null == "spin" else None)
                seconds[f"{noise}/{null}/{stat}"] = round(time.perf_counter() - t0, 1)
                rows += level_rows(p, args.alphas, boot, args.n_boot, coupled, coupled_gpd,
                                   null=null, space="volume", noise=noise, statistic=stat,
                                   legacy=NULLS[null])
                print(f"{noise:12s} {null:9s} {stat:4s} "
                      + "  ".join(f"a={r['alpha']}: {r['share_over_alpha']:.2f} {r['ci']}"
                                  for r in rows[-len(args.alphas):])
                      + f"  fdr/map {coupled / args.maps:.3f}, with the tail {coupled_gpd / args.maps:.3f}  ({seconds[f'{noise}/{null}/{stat}']} s)",
                      flush=True)
    result = {"rows": rows,
              "settings": {"atlas": atlas.name, "resolution_mm": args.resolution_mm,
                           "voxels": atlas.n_voxels, "threshold": args.threshold,
                           "n_perm": args.n_perm, "maps_per_call": BATCH, "seed": args.seed,
                           "n_boot": args.n_boot, "target": [0.8, 1.25]},
              "seconds": {"total": round(time.perf_counter() - t_all, 1), **seconds}}
    text = json.dumps(result, indent=1)
    if args.out:
        args.out.write_text(text + "\n")
    return result


if __name__ == "__main__":
    main()
