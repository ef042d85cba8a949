"""The surrogate null: tissue-conditioned, autocorrelation-matched surrogate maps
(:func:`tissue_model`, :func:`surrogate_fields`, :class:`SurrogateNull`; see Nulls in
:mod:`llmbrain_utils.fbn`)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._validation import check_int
from ..errors import ParameterError
from ..stats import bh_reject
from .atlases import NetworkAtlas
from .images import _mask
from .overlaps import _check_maps, _corr, _corr_reference
from .tail import GPD_MIN_EXCEED
from .thresholds import parse_threshold, threshold_maps


def grey_matter(mask_img: Any) -> np.ndarray:
    """MNI152 grey-matter probability (nilearn's 2009 template) of every mask voxel, in [0, 1]."""
    from .. import fmri

    img, mask = _mask(mask_img)
    aff = tuple(map(tuple, np.round(np.asarray(img.affine, dtype=float), 6)))
    return fmri._gm_on_grid(tuple(int(n) for n in mask.shape), aff)[mask]


def tissue_model(maps: np.ndarray, gm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``maps = mu + s * z`` per map (k, V): ``mu`` and ``s`` linear in grey matter ``gm``.

    ``mu`` is the least-squares line of the map on ``gm``; ``s`` that of ``|map - mu|`` times
    sqrt(pi / 2) (the SD of a Gaussian), floored at 5% of its median. Returns ``mu, s, z``,
    each (k, V)."""
    x = np.atleast_2d(np.asarray(maps, dtype=np.float64))
    g = np.column_stack([np.ones_like(gm), gm])
    gp = np.linalg.pinv(g)
    mu = (x @ gp.T) @ g.T
    e = x - mu
    sd = (np.abs(e) @ gp.T) @ g.T * math.sqrt(math.pi / 2)
    floor = 0.05 * np.median(sd, axis=1, keepdims=True)
    sd = np.maximum(sd, np.maximum(floor, 1e-12))
    return mu, sd, e / sd


def _pooled_acf(rows: np.ndarray, bm: np.ndarray, grid: tuple, pairs: np.ndarray,
                ok: np.ndarray) -> np.ndarray:
    """Pooled autocorrelation of the (standardised) rows on the box mask ``bm``: the zero-filled
    product at every lag divided by the number of voxel pairs at that lag (0 where too few)."""
    rows = rows / np.maximum(rows.std(1, keepdims=True), 1e-12)
    power = np.zeros(grid[:2] + (grid[2] // 2 + 1,))
    vol = np.zeros(bm.shape)
    for row in rows:
        vol[bm] = row
        power += np.abs(np.fft.rfftn(vol, s=grid, axes=(0, 1, 2))) ** 2
    acf = np.fft.irfftn(power / len(rows), s=grid, axes=(0, 1, 2))
    return np.where(ok, acf / np.maximum(pairs, 1.0), 0.0)


def _synthesise(amp: np.ndarray, bm: np.ndarray, grid: tuple, m: int,
                rng: np.random.Generator, work: dict | None = None) -> np.ndarray:
    """``m`` Gaussian fields with amplitude spectrum ``amp``, on the box mask's voxels (m, V).

    The steps of ``np.fft.rfftn`` / ``irfftn`` over axes (1, 2, 3), one axis at a time and in
    place, with the inverse's second and third transforms run only on the lines that reach the
    box (the grid's first half along each axis): the same numbers as the full transforms
    (:func:`_synthesise_reference`), in about two thirds of the time. ``work``: a dict in which
    the white noise and the transforms' arrays are kept and reused by the next call of the
    same size (no new pages to fault in per chunk; the numbers are the same)."""
    nx, ny, _ = bm.shape
    half = grid[2] // 2 + 1
    w = _buffer(work, "white", (m, *grid), np.float64)
    rng.standard_normal(out=w)  # the same draws as rng.standard_normal((m, *grid))
    a = _buffer(work, "spectrum", (m, grid[0], grid[1], half), np.complex128)
    np.fft.rfft(w, axis=3, out=a)  # rfftn: last axis first
    np.fft.fft(a, axis=2, out=a)
    np.fft.fft(a, axis=1, out=a)
    a *= amp
    np.fft.ifft(a, axis=1, out=a)  # irfftn: first axis first
    b = _buffer(work, "lines", (m, nx, grid[1], half), np.complex128)
    np.fft.ifft(a[:, :nx], axis=2, out=b)
    f = _buffer(work, "field", (m, nx, ny, grid[2]), np.float64)
    np.fft.irfft(b[:, :, :ny], grid[2], axis=3, out=f)
    return f[:, :, :, :bm.shape[2]][:, bm]


def _buffer(work: dict | None, name: str, shape: tuple, dtype) -> np.ndarray:
    """An array of ``shape`` kept in ``work`` under ``name`` (a new one when ``work`` is None,
    or the kept one's size differs): its contents are undefined."""
    if work is None:
        return np.empty(shape, dtype=dtype)
    buf = work.get(name)
    if buf is None or buf.shape != shape or buf.dtype != dtype:
        buf = work[name] = np.empty(shape, dtype=dtype)
    return buf


def _synthesise_reference(amp: np.ndarray, bm: np.ndarray, grid: tuple, m: int,
                          rng: np.random.Generator) -> np.ndarray:
    """:func:`_synthesise` with the full n-d transforms (the tests' reference)."""
    white = np.fft.rfftn(rng.standard_normal((m, *grid)), axes=(1, 2, 3))
    f = np.fft.irfftn(white * amp[None], s=grid, axes=(1, 2, 3))
    return f[:, :bm.shape[0], :bm.shape[1], :bm.shape[2]][:, bm]


#: fields drawn to correct the autocorrelation estimate's bias (see :func:`surrogate_fields`)
N_BIAS_FIELDS = 32


def _acf_spectrum(z: np.ndarray, mask: np.ndarray, design: np.ndarray | None,
                  rng: np.random.Generator) -> tuple[np.ndarray, tuple, tuple]:
    """Amplitude spectrum of the pooled, pair-count-corrected, bias-corrected, tapered
    autocorrelation of the rows of ``z`` (k, V) on ``mask``; and the bounding box and padded
    grid it lives on."""
    ijk = np.argwhere(mask)
    lo, hi = ijk.min(0), ijk.max(0) + 1
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    bm = mask[box]
    grid = tuple(2 * int(n) for n in bm.shape)
    pairs = np.fft.irfftn(np.abs(np.fft.rfftn(bm.astype(float), s=grid, axes=(0, 1, 2))) ** 2,
                          s=grid, axes=(0, 1, 2))
    ok = pairs > 20  # lags with enough voxel pairs
    acf = _pooled_acf(z, bm, grid, pairs, ok)
    axes = np.meshgrid(*[np.minimum(np.arange(n), n - np.arange(n)).astype(float) for n in grid],
                       indexing="ij")
    dist = np.sqrt(sum(a ** 2 for a in axes))
    bins = np.rint(dist).astype(np.int64).ravel()
    radial = np.bincount(bins, (acf * ok).ravel()) / np.maximum(np.bincount(bins, ok.ravel()), 1)
    below = np.nonzero(radial < 0.02)[0]
    h0 = max(2.0, float(below[0]) if below.size else 2.0)
    taper = np.clip((2 * h0 - dist) / h0, 0.0, 1.0)
    taper = np.where(dist <= h0, 1.0, 0.5 * (1 - np.cos(np.pi * taper)))

    def amplitude(a: np.ndarray) -> np.ndarray:
        return np.sqrt(np.maximum(np.fft.rfftn(a * taper, axes=(0, 1, 2)).real, 0.0))

    # The estimate from maps whose mean (and grey-matter trend) was removed is biased low at
    # every lag, and the synthesis adds its own loss: fields drawn from the estimate and treated
    # as the maps were show the combined bias, which is added back once.
    sims = _synthesise(amplitude(acf), bm, grid, N_BIAS_FIELDS, rng)
    if design is None:
        sims -= sims.mean(1, keepdims=True)
    else:
        sims -= (sims @ np.linalg.pinv(design).T) @ design.T
    acf = acf + (acf - _pooled_acf(sims, bm, grid, pairs, ok))
    return amplitude(acf), box, grid


#: the fields of the last (maps, mask, n_perm, seed, grey matter) drawn in this process
#: (:func:`surrogate_fields`): a chapter tests the same maps' fields again (thresholds, nulls)
_FIELDS: dict[str, np.ndarray] = {}
_FIELDS_KEPT = 1


def surrogate_fields(z: np.ndarray, mask_img: Any, n_perm: int, *, seed: int = 0,
                     gm: np.ndarray | None = None, chunk: int = 50) -> np.ndarray:
    """``n_perm`` stationary Gaussian fields on the mask (n_perm, V; float32, each standardised)
    with the pooled spatial autocorrelation of the rows of ``z`` (see the package's Nulls).
    ``gm``: the grey matter the rows of ``z`` were detrended on (:func:`tissue_model`), so that
    the estimate's bias is measured on fields detrended the same way (default: centred only).

    The fields depend on nothing else: the last set drawn in this process is kept (keyed by the
    bytes of every input) and returned again, read-only, when asked for with the same inputs
    (a chapter maps the same maps on a second atlas, at other thresholds, with other nulls)."""
    import hashlib

    check_int("n_perm", n_perm, 1)
    check_int("seed", seed, 0)
    img, mask = _mask(mask_img)
    z = np.atleast_2d(np.asarray(z, dtype=np.float64))
    if z.shape[1] != int(mask.sum()):
        raise ParameterError("z", f"{z.shape[1]} voxels", expected=f"{int(mask.sum())}, the mask's")
    h = hashlib.sha256(repr((z.shape, mask.shape, int(n_perm), int(seed), int(chunk),
                             gm is None)).encode())
    for part in (z, mask, np.asarray(img.affine, dtype=np.float64),
                 np.zeros(0) if gm is None else np.asarray(gm, dtype=np.float64)):
        h.update(np.ascontiguousarray(part).tobytes())
    key = h.hexdigest()
    if key in _FIELDS:
        return _FIELDS[key]
    out = _draw_fields(z, mask, n_perm, seed, gm, chunk)
    out.flags.writeable = False
    _FIELDS[key] = out
    while len(_FIELDS) > _FIELDS_KEPT:
        _FIELDS.pop(next(iter(_FIELDS)))
    return out


def _draw_fields(z: np.ndarray, mask: np.ndarray, n_perm: int, seed: int,
                 gm: np.ndarray | None, chunk: int) -> np.ndarray:
    design = None if gm is None else np.column_stack([np.ones(z.shape[1]), np.asarray(gm, float)])
    rng = np.random.default_rng(seed)
    amp, box, grid = _acf_spectrum(z, mask, design, np.random.default_rng([seed, 1]))
    bm = mask[box]
    out = np.empty((n_perm, int(bm.sum())), dtype=np.float32)
    work: dict = {}
    for start in range(0, n_perm, chunk):
        m = min(chunk, n_perm - start)
        f = _synthesise(amp, bm, grid, m, rng, work)
        f -= f.mean(1, keepdims=True)
        f /= np.maximum(f.std(1, keepdims=True), 1e-12)
        out[start:start + m] = f
    return out


class SurrogateNull:
    """The surrogate null of one set of maps, prepared once and reused (see the package's Nulls).

    Holds the grey matter of the atlas's mask and ``n_perm`` fields (:func:`surrogate_fields`)
    drawn from the pooled autocorrelation of ``maps`` (with ``seed``, as :func:`couple_atoms`
    draws them). :meth:`counts` turns the fields into each map's surrogates and counts; it is
    used by :func:`couple_atoms` for every statistic and threshold of one call, by
    :func:`threshold_sensitivity`, and by the coupling bootstrap
    (:func:`llmbrain_utils.compare.bootstrap_couplings`), whose resamples reuse the full
    sample's fields (their tissue model is their own).
    """

    def __init__(self, atlas: NetworkAtlas, maps: np.ndarray, n_perm: int, seed: int = 0,
                 *, gm: np.ndarray | None = None) -> None:
        if not isinstance(atlas, NetworkAtlas):
            raise ParameterError("atlas", f"{type(atlas).__name__} is not a NetworkAtlas",
                                 expected="load_atlas(...) or seitzman_atlas(...)")
        if atlas.mask_img is None:
            raise ParameterError("null", "'surrogate' on an atlas without a volume mask "
                                 f"({atlas.name})", expected="a volumetric atlas (load_atlas); "
                                 "on the surface use the spin test (surface.couple_surface)")
        maps = _check_maps(maps, atlas)
        self.atlas, self.n_perm, self.seed = atlas, int(n_perm), int(seed)
        self.gm = grey_matter(atlas.mask_img) if gm is None else np.asarray(gm, dtype=np.float64)
        self._maps, self._tissue = maps, tissue_model(maps, self.gm)
        self.fields = surrogate_fields(self._tissue[2], atlas.mask_img, n_perm, seed=seed, gm=self.gm)
        self.nets32 = atlas.masks.astype(np.float32)
        self.net_sizes = self.nets32.sum(1, dtype=np.float64)
        self._nets_and_ones = np.vstack([self.nets32, np.ones((1, self.nets32.shape[1]), np.float32)])

    def values(self, mu: np.ndarray, scale: np.ndarray, rows: slice, threshold: str | float,
               statistic: str) -> np.ndarray:
        """The null statistic of one map's surrogates ``mu + scale * field`` for the fields
        ``rows``: (2, m, n), active then deactive. The working arrays are kept on the object
        and reused by the next call (the numbers are those of :meth:`_values_reference`)."""
        fields = self.fields[rows]
        m, v = fields.shape
        work = self.__dict__.setdefault("_work", {})
        x = _buffer(work, "x", (m, v), np.float32)
        np.multiply(fields, scale, out=x)
        x += mu
        if statistic != "dice":
            x64 = _buffer(work, "x64", (m, v), np.float64)
            np.copyto(x64, x)
            r = np.nan_to_num(_corr(x64, self.atlas.masks, overwrite=True,
                                    square=_buffer(work, "square", (m, v), np.float64)))
            return np.stack([r, -r])
        rule, value = parse_threshold(threshold)
        # the parts, active rows first, as 0/1 float32 (the product's operand; no bool copy)
        both = _buffer(work, "parts", (2 * m, v), np.float32)
        if rule == "top":  # threshold_maps' parts, computed without its copies
            a = _buffer(work, "abs", (m, v), np.float32)
            np.abs(x, out=a)
            kk = v - max(1, int(math.ceil(value * v)))
            a.partition(kk, axis=1)  # in place: the value at kk is np.partition's
            cut = np.maximum(a[:, kk:kk + 1], np.float32(np.nextafter(np.float32(0), np.float32(1))))
            np.greater_equal(x, cut, out=both[:m], casting="unsafe")
            np.less_equal(x, -cut, out=both[m:], casting="unsafe")
        else:
            pos, neg = threshold_maps(x, threshold)
            np.copyto(both[:m], pos)
            np.copyto(both[m:], neg)
            del pos, neg
        # one product gives the intersections and, against a row of ones, the parts' sizes:
        # sums of 0/1 below 2^24, exact in float32 whatever the order
        prod = both @ self._nets_and_ones.T
        sizes = prod[:, -1].astype(np.float64)
        inter = prod[:, :-1].astype(np.float64)
        den = sizes[:, None] + self.net_sizes[None, :]
        dice = np.divide(2.0 * inter, den, out=np.zeros_like(inter), where=den > 0)
        return dice.reshape(2, m, -1)

    def _values_reference(self, mu: np.ndarray, scale: np.ndarray, rows: slice,
                          threshold: str | float, statistic: str) -> np.ndarray:
        """:meth:`values` as first written (the tests' reference)."""
        x = self.fields[rows] * scale
        x += mu
        if statistic == "dice":
            rule, value = parse_threshold(threshold)
            if rule == "top":
                a = np.abs(x)
                kk = x.shape[1] - max(1, int(math.ceil(value * x.shape[1])))
                cut = np.partition(a, kk, axis=1)[:, kk:kk + 1]
                del a
                cut = np.maximum(cut, np.float32(np.nextafter(np.float32(0), np.float32(1))))
                pos, neg = x >= cut, x <= -cut
            else:
                pos, neg = threshold_maps(x, threshold)
            del x
            m = pos.shape[0]
            both = np.concatenate([pos, neg])
            sizes = np.count_nonzero(both, axis=1).astype(np.float64)
            inter = (both.astype(np.float32) @ self.nets32.T).astype(np.float64)
            den = sizes[:, None] + self.net_sizes[None, :]
            dice = np.divide(2.0 * inter, den, out=np.zeros_like(inter), where=den > 0)
            return dice.reshape(2, m, -1)
        r = np.nan_to_num(_corr_reference(x.astype(np.float64), self.atlas.masks))
        return np.stack([r, -r])

    def counts(self, maps: np.ndarray, observed: np.ndarray, threshold: str | float,
               statistic: str, *, keep: list | None = None,
               alpha: float | None = None, tail: str = "none", n_screen: int = 200,
               growth: int = 5, chunk: int = 500,
               atoms: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """How often each map's surrogates reach ``observed`` (2k, n; active rows first).

        ``alpha=None``: every test meets all fields (the mapping stage's exact counts).
        ``alpha`` given: the fields are met in stages (``n_screen``, then ``growth`` times as
        many, ...) and an atom stops when none of its tests can still pass Benjamini-Hochberg
        at ``alpha`` (as :meth:`llmbrain_utils.compare.SpinNull.counts`: ``(1 + count) /
        (1 + n_perm)`` is a lower bound of a test's p; with ``tail="gpd"`` a test that fewer
        than ``GPD_MIN_EXCEED`` values reach has the bound 0, since its tail p can be smaller),
        so the decisions are those of all fields; a stopped test's count is scaled to
        ``n_perm``. ``keep``: a list that receives the null values (2k, n_perm, n) float32 (complete for
        every test counted in full). ``atoms`` (with ``alpha=None``): count only these maps
        (the others' rows stay 0): each map's surrogates are its own arithmetic, so blocks of
        maps give its rows bit for bit (the mapping stage's fan-out). Returns ``(counts,
        complete)``."""
        maps = np.asarray(maps, dtype=np.float64)
        same = maps.shape == self._maps.shape and np.array_equal(maps, self._maps)
        mu, sd, z = self._tissue if same else tissue_model(maps, self.gm)
        k, n, P = maps.shape[0], self.atlas.n_networks, self.n_perm
        null = np.zeros((2, k, P, n), np.float32) if keep is not None else None
        counts = np.zeros((2, k, n), dtype=np.int64)
        seen = np.zeros((2, k, n), dtype=np.int64)

        if atoms is None:
            active = np.ones((2, k, n), dtype=bool)
        elif alpha is not None:
            raise ParameterError("atoms", "with alpha", expected="atoms only for exact counts "
                                 "(alpha=None): the stopping rule needs every test")
        else:
            active = np.zeros((2, k, n), dtype=bool)
            active[:, np.asarray(atoms, dtype=np.intp)] = True
        obs = observed.reshape(2, k, n) - 1e-9
        scale = [(sd[a] * z[a].std()).astype(np.float32) for a in range(k)]
        mu32 = mu.astype(np.float32)
        done, stop = 0, (P if alpha is None else min(int(n_screen), P))
        while True:
            for a in np.flatnonzero(active.any((0, 2))):
                for start in range(done, stop, chunk):
                    rows = slice(start, min(start + chunk, stop))
                    v = self.values(mu32[a], scale[a], rows, threshold, statistic)
                    counts[:, a] += ((v >= obs[:, a][:, None, :]) & active[:, a][:, None, :]).sum(1)
                    if null is not None:
                        null[:, a, rows] = v
            seen[active] = stop
            done = stop
            if done == P:
                break
            bound = (1.0 + counts) / (1.0 + P)
            if tail == "gpd":
                bound = np.where(counts < GPD_MIN_EXCEED, 0.0, bound)
            rej = bh_reject(bound.ravel(), alpha)
            cut = alpha * rej.sum() / rej.size
            active &= bound <= cut
            if not active.any():
                break
            stop = min(done * int(growth), P)
        complete = (seen == P).reshape(2 * k, n)
        counts = counts.reshape(2 * k, n)
        if null is not None:
            keep.append(null.reshape(2 * k, P, n))
        scaled = np.where(complete, counts, counts * (P / np.maximum(seen.reshape(2 * k, n), 1)))
        return scaled, complete
