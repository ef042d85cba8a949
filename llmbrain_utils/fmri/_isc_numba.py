"""Compiled (numba) kernels of :mod:`llmbrain_utils.fmri.isc`: the leave-one-out ISC of
:func:`~llmbrain_utils.fmri.isc.isc_loo`, and the circular-shift null's observed ISC, pair sums
and surrogate statistics (:func:`~llmbrain_utils.fmri.isc._isc_null_circular`).

They give the numpy code's numbers bit for bit: every operation is the one numpy performs, on
the same precision, in the same order.

- numpy reduces an ``S x T x W`` block (``W >= 2`` voxels, the voxels contiguous) over T or
  over S with the voxels in the inner loop, so every voxel's sum runs sequentially: the first
  term, then ``+`` each next one. The kernels' loops do the same (over t or s outside, the
  voxels inside: the voxels' independent sums vectorise).
- ``np.einsum("tv,tv->v", a, b)`` (and ``"stv,stv->sv"``) starts from 0 and adds each rounded
  product ``a_t * b_t`` (no fused multiply-add on this path); numba without ``fastmath`` does
  not fuse either.
- float32 stays float32 (numba types ``float32 op float32`` as float32); the float32 arrays'
  comparison with a Python float (the ``1e-12 T^2`` threshold) happens in float32 under NumPy 2's
  weak scalars, so the threshold comes as float32 there; numpy scalars compare in float64.
- The sign of a zero may differ where numpy starts a sum from 0.0 rather than its first term;
  ``-0.0 == 0.0``, so no number differs.

A single voxel (``W = 1``) is reduced by numpy along T in its pairwise order: the callers leave
such blocks to the numpy code. No ``fastmath`` (it would reorder), no ``parallel`` (the pipeline
parallelises over processes). ``cache=True``: compiled once, loaded from ``__pycache__`` by later
processes. Every kernel is called with one set of types per data dtype (float32 or float64).

The data come as rows: ``xf``, a read-only 1-D view from the array's first element to its last,
the row of subject s and TR t (V contiguous voxels) starting at ``s * st_s + t * st_t``: a memory
map's block ``x[:, :, a:b]`` is read in place, and the inner loops run over contiguous voxels.
"""

from __future__ import annotations

import numba
import numpy as np

#: voxels per block of :func:`isc_loo`: its float64 z-scores (``T x S x BLOCK``, 1.3 MB at 8
#: subjects x 326 TRs) stay in cache; wider blocks read longer runs but spill at 40 subjects
BLOCK = 64


@numba.njit(cache=True, error_model="numpy")
def _sums(xf, o, st_t, T, w, acc):
    """``acc[v] = x[0, v] + x[1, v] + ... + x[T-1, v]`` (float64, sequential over t: numpy's
    ``add.reduce`` over time) of the T rows of ``w`` voxels at ``xf[o]``, ``st_t`` apart. Four
    rows per step, each voxel's running sum in a register: the same additions in the same
    order, with four rows read at once (rows are short runs far apart in memory)."""
    row = xf[o:o + w]
    for v in range(w):
        acc[v] = row[v]
    t = 1
    while t + 4 <= T:
        p = o + t * st_t
        r0, r1 = xf[p:p + w], xf[p + st_t:p + st_t + w]
        r2, r3 = xf[p + 2 * st_t:p + 2 * st_t + w], xf[p + 3 * st_t:p + 3 * st_t + w]
        for v in range(w):
            acc[v] = (((acc[v] + r0[v]) + r1[v]) + r2[v]) + r3[v]
        t += 4
    for t in range(t, T):
        row = xf[o + t * st_t:o + t * st_t + w]
        for v in range(w):
            acc[v] += row[v]


@numba.njit(cache=True, error_model="numpy")
def _sq_dev_sums(xf, o, st_t, T, w, mu, acc):
    """``acc[v] = sum_t (x[t, v] - mu[v])^2`` as :func:`_sums` (each square rounded, then
    added: numpy's ``std``, ``x - mean`` squared in place then summed)."""
    row = xf[o:o + w]
    for v in range(w):
        e = row[v] - mu[v]
        acc[v] = e * e
    t = 1
    while t + 4 <= T:
        p = o + t * st_t
        r0, r1 = xf[p:p + w], xf[p + st_t:p + st_t + w]
        r2, r3 = xf[p + 2 * st_t:p + 2 * st_t + w], xf[p + 3 * st_t:p + 3 * st_t + w]
        for v in range(w):
            m = mu[v]
            e0, e1, e2, e3 = r0[v] - m, r1[v] - m, r2[v] - m, r3[v] - m
            acc[v] = (((acc[v] + e0 * e0) + e1 * e1) + e2 * e2) + e3 * e3
        t += 4
    for t in range(t, T):
        row = xf[o + t * st_t:o + t * st_t + w]
        for v in range(w):
            e = row[v] - mu[v]
            acc[v] += e * e


@numba.njit(cache=True, error_model="numpy")
def _loo_r(tt, d, n, w, thr, r, v0):
    """The per-subject LOO r of :func:`~llmbrain_utils.fmri.isc._loo_from_z` into
    ``r[:, v0:v0 + w]`` from ``tt = tot . tot``, ``d_s = z_s . tot`` and ``n_s = z_s . z_s``:
    ``den = n * max(tt - 2 d + n, 0)``, ``r = (d - n) / sqrt(den)`` where ``den > thr`` (``thr =
    1e-12 * T**2``), 0 elsewhere, clipped to [-1, 1]."""
    S = d.shape[0]
    for s in range(S):
        for v in range(w):
            m = tt[v] - 2.0 * d[s, v] + n[s, v]
            if m < 0.0:  # np.maximum(m, 0.0)
                m = 0.0
            den = n[s, v] * m
            c = 0.0
            if den > thr:
                c = (d[s, v] - n[s, v]) / np.sqrt(den)
                if c < -1.0:
                    c = -1.0
                elif c > 1.0:
                    c = 1.0
            r[s, v0 + v] = c


@numba.njit(cache=True, error_model="numpy")
def _loo_from_z(z, tot, n, w, thr, r, v0):
    """:func:`~llmbrain_utils.fmri.isc._loo_from_z` of the z-scores ``z[:, :, :w]`` (T x S x .
    float64), given their sum over subjects ``tot[:, :w]`` (T x .) and ``n_s = z_s . z_s``
    (``n[:, :w]``): the per-subject LOO r into ``r[:, v0:v0 + w]``. ``tt = tot . tot`` and
    ``d_s = z_s . tot`` as einsum computes them: from 0, each product rounded then added,
    sequential over t."""
    T, S = z.shape[0], z.shape[1]
    tt = np.zeros(w)
    d = np.zeros((S, w))
    for t in range(T):
        tr = tot[t]
        for v in range(w):
            tt[v] += tr[v] * tr[v]
        for s in range(S):
            zr = z[t, s]
            ds = d[s]
            for v in range(w):
                ds[v] += zr[v] * tr[v]
    _loo_r(tt, d, n, w, thr, r, v0)


@numba.njit(cache=True, error_model="numpy")
def isc_loo(xf, st_s, st_t, S, T, V, thr, r):
    """Per-subject LOO ISC ``r`` (S x V float64) of the rows ``xf``, as
    ``_loo_from_z(_zscore_t(x))`` computes it, in blocks of :data:`BLOCK` voxels; returns False
    where a series' sum is not finite (a NaN or an inf in the data: the caller then runs the
    finite check, which raises).

    Per subject: mean = (sum over t) / T; sd = sqrt((sum over t of (x - mean)^2) / T)
    (numpy's ``mean`` and ``std``); z = (x - mean) / sd, 0 where sd = 0.
    """
    z = np.empty((T, S, BLOCK))
    tot = np.empty((T, BLOCK))
    n = np.empty((S, BLOCK))  # n_s = z_s . z_s
    acc = np.empty(BLOCK)
    mu = np.empty(BLOCK)
    sd = np.empty(BLOCK)
    finite = True
    for v0 in range(0, V, BLOCK):
        w = min(BLOCK, V - v0)
        for s in range(S):
            o = s * st_s + v0
            _sums(xf, o, st_t, T, w, acc)
            for v in range(w):
                finite = finite and np.isfinite(acc[v])
                mu[v] = acc[v] / T
            _sq_dev_sums(xf, o, st_t, T, w, mu, acc)
            for v in range(w):
                sd[v] = np.sqrt(acc[v] / T)
            ns = n[s]
            ns[:] = 0.0
            for t in range(T):  # z; n_s = z_s . z_s; tot = z.sum(axis=0), subject after subject
                row = xf[o + t * st_t:o + t * st_t + w]
                zr = z[t, s]
                tr = tot[t]
                for v in range(w):
                    c = (row[v] - mu[v]) / sd[v] if sd[v] > 0.0 else 0.0
                    zr[v] = c
                    ns[v] += c * c
                    tr[v] = c if s == 0 else tr[v] + c
        _loo_from_z(z, tot, n, w, thr, r, v0)
    return finite


@numba.njit(cache=True, error_model="numpy")
def zscore_nn_loo(xf, st_s, st_t, S, T, v0, w, thr, r, nn, zp):
    """The circular null's block of voxels ``v0 .. v0 + w``: ``z, nn = _zscore_nn(x)`` and the
    observed per-subject LOO r (``_loo_from_z(z)``, into ``r``: S x w), ``nn`` into ``nn``
    (S x w) and z as float32 into ``zp`` (S x nT x w: ``zp[:, :T] = z``, zeros beyond).

    As ``_zscore_nn``: ``z = x - mean`` (mean = (sum over t) / T); ``ss = z . z`` (einsum);
    ``inv = 1 / sqrt(ss / T)`` (0 where ss = 0); ``z * inv``; ``nn = ss * inv * inv``. The z-scores
    are not stored: ``(x - mean) * inv`` is recomputed, the same float64 operations, where
    ``_loo_from_z`` reads them again (``d_s = z_s . tot``).
    """
    tot = np.empty((T, w))
    n = np.empty((S, w))
    mean = np.empty((S, w))
    inv = np.empty((S, w))
    ss = np.empty(w)
    for s in range(S):
        o = s * st_s + v0
        ms, ins, ns = mean[s], inv[s], n[s]
        _sums(xf, o, st_t, T, w, ms)
        for v in range(w):
            ms[v] /= T
        ss[:] = 0.0
        for t in range(T):
            row = xf[o + t * st_t:o + t * st_t + w]
            for v in range(w):
                e = row[v] - ms[v]
                ss[v] += e * e
        for v in range(w):
            ins[v] = 1.0 / np.sqrt(ss[v] / T) if ss[v] > 0.0 else 0.0
            nn[s, v] = ss[v] * ins[v] * ins[v]
        ns[:] = 0.0
        for t in range(T):  # z; n_s = z_s . z_s; tot = z.sum(axis=0), subject after subject
            row = xf[o + t * st_t:o + t * st_t + w]
            pr = zp[s, t]
            tr = tot[t]
            for v in range(w):
                c = (row[v] - ms[v]) * ins[v]
                pr[v] = c
                ns[v] += c * c
                tr[v] = c if s == 0 else tr[v] + c
        zp[s, T:] = 0.0
    tt = np.zeros(w)
    for t in range(T):
        tr = tot[t]
        for v in range(w):
            tt[v] += tr[v] * tr[v]
    d = np.zeros((S, w))
    for s in range(S):
        o = s * st_s + v0
        ms, ins, ds = mean[s], inv[s], d[s]
        for t in range(T):
            row = xf[o + t * st_t:o + t * st_t + w]
            tr = tot[t]
            for v in range(w):
                ds[v] += ((row[v] - ms[v]) * ins[v]) * tr[v]
    _loo_r(tt, d, n, w, thr, r, 0)


@numba.njit(cache=True, error_model="numpy")
def pair_sums(cc, rows, i, a):
    """Subject ``i``'s pairs in the circular null's sums ``a`` (S x n_perm x w float32,
    ``a[s, b] = y_s . (tot - y_s)`` of surrogate b), from ``cc`` (row ``j nT + L``: ``C_{i, i+1+j}``
    at lag L) and ``rows`` (``rows[j, b]``: the row at surrogate b's lag difference): the row
    ``g = cc[rows[j, b]]`` goes to ``a[i + 1 + j, b]`` (set where ``i == 0``, else added) and the
    sum over j of the rows, sequential, to ``a[i, b]`` (set, or added as one term): numpy's
    ``add.reduce(g, axis=0)`` then ``+=``, to the bit.

    Pair after pair (``j``), the surrogates' rows come from that pair's ``nT x w`` block of
    ``cc`` (in cache) and go to ``a[i + 1 + j]`` and the running sums, both read in order.
    """
    n, n_perm = rows.shape
    w = cc.shape[1]
    acc = np.empty((n_perm, w), dtype=np.float32)  # sum over j of the rows, per surrogate
    for j in range(n):
        rj = rows[j]
        dst = a[i + 1 + j]
        for b in range(n_perm):
            r = rj[b]
            for v in range(w):
                g = cc[r, v]
                acc[b, v] = g if j == 0 else acc[b, v] + g
                dst[b, v] = g if i == 0 else dst[b, v] + g
    own = a[i]
    for b in range(n_perm):
        for v in range(w):
            own[b, v] = acc[b, v] if i == 0 else own[b, v] + acc[b, v]


@numba.njit(cache=True, error_model="numpy", inline="always")
def _q(tot, nq, a):
    """``(tot + nq) - a - a`` in float32, numpy's order (``_loo_stat``'s ``q``)."""
    q = tot + nq
    q -= a
    q -= a
    return q


@numba.njit(cache=True, error_model="numpy")
def null_mean(a, nq, isn, nn32, lim, thr32, n_batch, floor, count, nulls, v0, keep):
    """``_loo_stat(a[:, batch], nn, 'mean', T, q)`` of every batch of ``n_batch`` surrogates of
    a block (``a``: S x n_perm x w float32, as :func:`pair_sums` leaves it), then
    ``count[v0 + v] += stat >= floor[v]`` and, with ``keep``, ``nulls[b, v0 + v] = stat``.

    Per batch: ``q_s = (sum_s a_s + nq_s) - a_s - a_s`` (float32, the sum sequential over s;
    ``nq = float32(N - nn)``); if ``min q > lim`` (float64 comparison; ``lim = thr / min nn`` over
    nn > 0, inf where there is none) every r is ``(a_s / sqrt(q_s)) * isn_s`` (``isn =
    float32(1 / sqrt(nn))``, 0 where nn = 0), else ``q_s *= nn32_s`` and ``r = a_s / sqrt(q_s)``
    where ``q_s > thr32``, 0 elsewhere; clipped to [-1, 1]; stat = float64 sum over s
    (sequential) / S. The branch is taken per batch, as numpy takes it, on numpy's batches:
    the batch is summed by the first formula (numpy's usual branch) while ``min q`` is found,
    and again by the second where ``min q <= lim``, before any count. Subject after subject,
    each pass reads the batch's sums in order.
    """
    S, n_perm, w = a.shape
    tot = np.empty((n_batch, w), dtype=np.float32)
    low = np.empty(w, dtype=np.float32)
    st = np.empty((n_batch, w))
    cnt = count[v0:v0 + w]
    for b0 in range(0, n_perm, n_batch):
        nb = min(n_batch, n_perm - b0)
        for s in range(S):
            ab = a[s, b0:b0 + nb]
            for b in range(nb):
                for v in range(w):
                    tot[b, v] = ab[b, v] if s == 0 else tot[b, v] + ab[b, v]
        low[:] = np.inf
        for s in range(S):
            ab = a[s, b0:b0 + nb]
            for b in range(nb):
                for v in range(w):
                    q = _q(tot[b, v], nq[s, v], ab[b, v])
                    low[v] = min(low[v], q)
                    c = ab[b, v] / np.sqrt(q)
                    c *= isn[s, v]
                    c = max(np.float32(-1.0), min(np.float32(1.0), c))
                    st[b, v] = c if s == 0 else st[b, v] + c
        if not np.float64(low.min()) > lim:
            for s in range(S):
                ab = a[s, b0:b0 + nb]
                for b in range(nb):
                    for v in range(w):
                        q = _q(tot[b, v], nq[s, v], ab[b, v]) * nn32[s, v]
                        c = ab[b, v] / np.sqrt(q) if q > thr32 else np.float32(0.0)
                        c = max(np.float32(-1.0), min(np.float32(1.0), c))
                        st[b, v] = c if s == 0 else st[b, v] + c
        for b in range(nb):  # branch-free: the comparisons go either way in a null
            sb = st[b]
            for v in range(w):
                sb[v] /= S
                cnt[v] += 1 if sb[v] >= floor[v] else 0
            if keep:
                nulls[b0 + b, v0:v0 + w] = sb
