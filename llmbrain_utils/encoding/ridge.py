"""The project's ridge kernel: one outer fold of ridge with a per-voxel alpha chosen by an
inner cross-validation, near its arithmetic bound (``benchmarks/ridge_cv.py``).

``ridge_fold_svd`` computes what :func:`llmbrain_utils.encoding.cv.cv_scores` computed with
himalaya's ``RidgeCV(alphas, fit_intercept=True, cv=inner)`` (solver "svd", default
``score_func=l2_neg_loss`` -- the mean squared error, not R2 --, ``local_alpha=True``,
``conservative=False``):

* centre X and Y on the training rows (the intercept);
* for each inner split j = (train_j, test_j): centre X and Y with the inner-training means,
  ridge-fit every alpha on train_j; score_j(alpha) = -SSE_j(alpha) / n_test_j;
* average the scores over the splits, add ``1e-10 * log(alpha)`` (himalaya's tie-break
  towards larger alphas) and take the first argmax over the grid, per voxel;
* refit on all training rows with the chosen alpha and predict the test rows.

Inner split j, with the SVD ``Xtr_j = U diag(s) W^T`` of the centred inner-training design
(obtained as the eigen-decomposition ``Xtr_j^T Xtr_j = W diag(lam) W^T``, lam = s^2, and
``U diag(s) = Xtr_j W``: k is small), ``z = diag(s) U^T y_tr = (Xtr_j W)^T y_tr`` (k values per
voxel), ``A = Xte_j W``, ``G = A^T A``, ``c = A^T y_te`` (y_te centred with the
inner-training mean) and ``p_a = 1 / (lam + alpha)`` (ridge coefficients ``W p_a z``):

    SSE_j(alpha) = ||y_te||^2 - 2 sum_i p_ai c_i z_i + sum_{i,l} p_ai p_al G_il z_i z_l.

``||y_te||^2`` does not depend on alpha and is dropped (no cancellation of SSE's large common
part). The quadratic term would cost ~n_alpha k^2 flops per voxel; with the partial fractions
``p_ai p_al = (p_ai - p_al) / (lam_l - lam_i)`` (i != l) it becomes *linear* in p:

    sum_{i != l} p_ai p_al G_il z_i z_l = sum_i p_ai z_i (K z)_i,  K_il = 2 G_il / (lam_l - lam_i),

so SSE_j(alpha) - ||y_te||^2 = sum_i p_ai f_i + (exact pairs), f = z * (K z - 2 c), and all
alphas are scored by one (n_alpha x k) @ (k x V) product per split. Pairs whose eigenvalues
are too close for the partial fractions to be accurate (|lam_l - lam_i| <= 1e-6 (max lam +
max alpha), i.e. cancellation <= 1e6 x float64 rounding) and the diagonal stay as explicit
products ``z_i z_l`` with coefficients ``p_ai p_al G_il`` (none or few for real designs; all
of them for an orthogonal design: still exact, just slower).

The refit uses the same decomposition of the whole centred training design with a per-voxel
shrinkage: ``pred = (Xte_c W0) ((U0 diag(s0))^T Y_c / (lam0 + alpha_v)) + mean(Y_train)``
(weights never formed).

Precision: the decompositions and the k-sized scoring part (z, K z, the products, the scoring
GEMM) are float64: the partial fractions cancel (by up to ~4e6 x rounding for the realistic
designs measured), which float64 absorbs (score errors <= ~1e-11 of the MSE from this part).
With ``kspace_dtype=np.float32`` the fold is 10-25% faster and the measured score errors are
about as large as himalaya's own float32 ones (median 1e-8..1.4e-7 of the MSE vs
1.1e-7..2.2e-7), but there is no a-priori bound, so it is not the default. The products with Y
(``(U diag(s))^T Y``, ``A^T Y``, the refit and the predictions, ~80% of the FLOPs) run in
``dtype``: float32 by default (as ``_ridge_fold``; 1.5x faster than float64 here), float64 for
parity with ``_ridge_fold(..., dtype=np.float64)``. Voxels are processed in blocks of
``chunk_voxels`` with preallocated work arrays (memory ~ (T_train + 2 T_test + 8 k) x
chunk_voxels values besides the output).

himalaya's ``RidgeCV`` stays the reference: ``cv_scores(..., ridge_solver="himalaya")`` (and
on a GPU, where this numpy kernel does not run), and ``tests/test_ridge_kernel.py`` checks
parity on realistic, random, rank-deficient, collinear, smooth, orthogonal and degenerate
designs: the same alphas (in float32 but for exact float32 near-ties, where this kernel takes
the exact float64 best), predictions within himalaya's own float32 error.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ridge_fold_svd"]

#: partial fractions only for eigenvalue pairs with cancellation factor below this
_PF_MAX_CANCEL = 1e6


def _centred_eig(X):
    """Eigen-decomposition of the Gram matrix of the column-centred X (float64).

    Returns (XW, lam, W, column means) with ``X_c^T X_c = W diag(lam) W^T``: ``XW = X_c W``
    holds ``U diag(s)`` of the SVD ``X_c = U diag(s) W^T`` (lam = s^2), which is all the
    solver needs (no division by small singular values). 2.5x faster than the SVD for
    k = 64, and as accurate here: eigenvalue errors ~eps lam_max, i.e. relative errors
    <= 1e-13 for condition numbers (lam_max / lam_min) up to 1e3.
    """
    m = X.mean(0)
    Xc = X - m
    lam, W = np.linalg.eigh(Xc.T @ Xc)
    lam = np.maximum(lam, 0.0)
    XW = Xc @ W
    XW -= XW.mean(0)   # exactly orthogonal to the constant, as U of the SVD
    return XW, lam, W, m


def _as_slice(idx):
    """A slice equal to the index array when it is a contiguous increasing run, else None."""
    if idx.size and idx[-1] - idx[0] == idx.size - 1 and np.all(np.diff(idx) == 1):
        return slice(int(idx[0]), int(idx[-1]) + 1)
    return None


class _Split:
    """Voxel-independent operators of one inner split."""

    def __init__(self, Xc, tr, te, alphas_s, scale, dtype, kdtype):
        US, lam, W, m = _centred_eig(Xc[tr])                     # US = U diag(s)
        A = (Xc[te] - m) @ W                                     # n_te x r
        G = A.T @ A                                              # r x r
        P = 1.0 / (lam + alphas_s[:, None])                      # n_alpha x r
        dl = lam[None, :] - lam[:, None]                         # dl[i, l] = lam_l - lam_i
        big = np.maximum(lam[None, :], lam[:, None]) + alphas_s.max()
        far = np.abs(dl) * _PF_MAX_CANCEL > big
        np.fill_diagonal(far, False)
        self.K = np.where(far, 2.0 * G / np.where(far, dl, 1.0), 0.0)
        I, J = np.triu_indices(lam.size)
        keep = ~far[I, J]
        I, J = I[keep], J[keep]
        # scores are maximised: coefficients of -scale * (SSE - ||y_te||^2) on the features
        # F = [z * (K z - 2 c); z * z; z_I * z_J (close pairs, I < J)]
        off = I != J
        self.In, self.Jn = I[off], J[off]
        diag = np.diag(G)
        self.L = -scale * np.concatenate(
            [P, P * P * diag, P[:, self.In] * P[:, self.Jn] * (2.0 * G[self.In, self.Jn])], 1)
        self.r = r = lam.size
        self.n_feat = 2 * r + self.In.size
        self.USt = np.ascontiguousarray(US.T, dtype=dtype)       # (U diag(s))^T, r x n_tr
        self.At2 = np.ascontiguousarray(-2.0 * A.T, dtype=dtype)  # -2 A^T, r x n_te
        # [K | 2 A^T 1] acting on [z; mean(y_tr)]: K z + 2 (A^T 1) mean(y_tr)
        self.Kc = np.ascontiguousarray(np.concatenate([self.K, 2.0 * A.sum(0)[:, None]], 1),
                                       dtype=kdtype)
        self.w_tr = np.full((1, tr.size), 1.0 / tr.size, dtype=dtype)
        self.tr = tr if _as_slice(tr) is None else _as_slice(tr)   # slices avoid a gather
        self.te = te if _as_slice(te) is None else _as_slice(te)
        self.n_tr, self.n_te = tr.size, te.size

    def features(self, Yc, F, ws):
        """Fill F (n_feat x n, float64) with this split's per-voxel features.

        ``ws`` holds preallocated work arrays (fresh large temporaries cost page faults)."""
        n = Yc.shape[1]
        r = self.r
        if isinstance(self.tr, slice):
            Ytr = Yc[self.tr]
        else:
            Ytr = np.take(Yc, self.tr, axis=0, out=ws["ytr"][:self.n_tr, :n])
        if isinstance(self.te, slice):
            Yte = Yc[self.te]
        else:
            Yte = np.take(Yc, self.te, axis=0, out=ws["yte"][:self.n_te, :n])
        w32, zm, mt = ws["w32"][:r, :n], ws["z"][:r + 1, :n], ws["m"][:, :n]
        z = zm[:r]
        np.matmul(self.USt, Ytr, out=w32)
        np.copyto(z, w32)                                        # z = s * U^T y_tr
        np.matmul(self.w_tr, Ytr, out=mt)
        zm[r] = mt[0]                                            # inner-training mean
        h = F[:r]
        np.matmul(self.Kc, zm, out=h)                            # K z + 2 (A^T 1) mean(y_tr)
        np.matmul(self.At2, Yte, out=w32)                        # -2 A^T y_te
        h += w32                                                 # K z - 2 c
        h *= z                                                   # z * (K z - 2 c)
        np.multiply(z, z, out=F[r:2 * r])
        if self.In.size:
            m = self.In.size
            a_, b_ = ws["pa"][:m, :n], ws["pb"][:m, :n]
            np.take(z, self.In, axis=0, out=a_)
            np.take(z, self.Jn, axis=0, out=b_)
            np.multiply(a_, b_, out=F[2 * r:])


def ridge_fold_svd(Xtr, Xte, Ytr, alphas, inner, dtype=np.float32, chunk_voxels=512,
                   kspace_dtype=np.float64, _scores_out=None):
    """One outer fold of RidgeCV with a per-voxel alpha, as ``cv._ridge_fold``.

    Parameters
    ----------
    Xtr : (T_train, k) array; Xte : (T_test, k) array; Ytr : (T_train, V) array
    alphas : (n_alpha,) positive grid
    inner : list of (train_idx, test_idx) index arrays into the rows of Xtr
    dtype : float32 or float64, precision of the products with Y (as ``_ridge_fold``)
    chunk_voxels : voxels per block (256-1024 are equally fast here)
    kspace_dtype : precision of the k-sized scoring part (float64; float32 is faster but has
        no error bound, see the module docstring)
    _scores_out : optional (n_alpha, V) float64 array, filled with the alpha-dependent part of
        the mean inner-CV scores (-mean_j (SSE_j - ||y_te,j||^2) / n_te,j), for tests

    Returns
    -------
    pred : (T_test, V) float64 test predictions
    best : (V,) float64 chosen alphas, the grid's exact values
    """
    dtype = np.dtype(dtype)
    Xtr = np.asarray(Xtr, dtype=np.float64)
    Xte = np.asarray(Xte, dtype=np.float64)
    if not (np.isfinite(Xtr).all() and np.isfinite(Xte).all()):
        raise ValueError("Input contains NaN, infinity or a value too large for "
                         f"dtype({dtype.name!r}).")
    grid = np.asarray(alphas, dtype=np.float64).ravel()
    Ytr = np.asarray(Ytr)
    if Ytr.dtype not in (np.float32, np.float64):
        Ytr = Ytr.astype(np.float64)
    T, V = Ytr.shape
    # himalaya casts the grid to the solver dtype; its tie-break adds log(alpha) * 1e-10 (in
    # that dtype) to the split-averaged scores
    alphas_s = grid.astype(dtype).astype(np.float64)
    slope = (np.log(grid.astype(dtype)) * dtype.type(1e-10)).astype(np.float64)[:, None]

    if V == 0:
        return np.empty((Xte.shape[0], 0)), np.empty(0)
    inner = [(np.asarray(tr, np.intp), np.asarray(te, np.intp)) for tr, te in inner]
    if not inner or any(tr.size == 0 or te.size == 0 for tr, te in inner):
        raise ValueError("Empty train or validation set. Check that `inner` is correctly "
                         "defined.")
    xm = Xtr.mean(0)
    Xc = Xtr - xm
    n_splits = len(inner)
    kdtype = np.dtype(kspace_dtype)
    splits = [_Split(Xc, tr, te, alphas_s, 1.0 / (te.size * n_splits), dtype, kdtype)
              for tr, te in inner]

    # refit: SVD of the whole centred training design, per-voxel shrinkage
    US0, lam0, W0, m0 = _centred_eig(Xc)
    US0t = np.ascontiguousarray(US0.T, dtype=dtype)                        # r x T
    A0 = np.ascontiguousarray((Xte - xm - m0) @ W0, dtype=dtype)           # T_test x r
    DrefT = np.ascontiguousarray((1.0 / (lam0[:, None] + alphas_s)).astype(dtype))

    # all splits' coefficients side by side: one (n_alpha x n_features) @ (n_features x n) GEMM
    # (rows padded to a multiple of 8 with zeros: OpenBLAS's kernels are 2x slower for 15 rows)
    L = np.concatenate([sp.L for sp in splits], 1)
    L = np.concatenate([L, np.zeros((-grid.size % 8, L.shape[1]))], 0).astype(kdtype)
    offs = np.concatenate([[0], np.cumsum([sp.n_feat for sp in splits])])
    r0 = lam0.size
    ch = min(chunk_voxels, V)
    rmax = max(sp.r for sp in splits)
    nn = max(sp.In.size for sp in splits)
    ws = dict(ytr=np.empty((max(sp.n_tr for sp in splits), ch), dtype),
              yte=np.empty((max(sp.n_te for sp in splits), ch), dtype),
              w32=np.empty((max(rmax, r0), ch), dtype), z=np.empty((rmax + 1, ch), kdtype),
              m=np.empty((1, ch), dtype),
              pa=np.empty((nn, ch), kdtype), pb=np.empty((nn, ch), kdtype),
              F=np.empty((offs[-1], ch), kdtype), S=np.empty((L.shape[0], ch), kdtype),
              Yc=np.empty((T, ch), dtype), D=np.empty((r0, ch), dtype),
              P=np.empty((Xte.shape[0], ch), dtype), mean=np.empty(ch))
    ones_T = np.full(T, 1.0 / T)

    pred = np.empty((Xte.shape[0], V), dtype=np.float64)
    best = np.empty(V, dtype=np.float64)
    for v0 in range(0, V, ch):
        v1 = min(v0 + ch, V)
        n = v1 - v0
        Yb = Ytr[:, v0:v1]
        ymean = ws["mean"][:n]
        np.matmul(ones_T, Yb, out=ymean)
        Yc = ws["Yc"][:, :n]
        np.subtract(Yb, ymean, out=Yc, casting="unsafe")                  # centred, in dtype
        Fb = ws["F"][:, :n]
        for sp, o in zip(splits, offs[:-1]):
            sp.features(Yc, Fb[o:o + sp.n_feat], ws)
        np.matmul(L, Fb, out=ws["S"][:, :n])
        score = ws["S"][:grid.size, :n]
        if _scores_out is not None:
            _scores_out[:, v0:v1] = score
        score += slope
        if not (np.isfinite(score).all() and np.isfinite(ymean).all()):
            # as himalaya's input check (NaN, inf, or too large for dtype)
            raise ValueError("Input contains NaN, infinity or a value too large for "
                             f"dtype({dtype.name!r}).")
        idx = np.argmax(score, 0)
        B0 = ws["w32"][:r0, :n]
        np.matmul(US0t, Yc, out=B0)                                        # s0 * U0^T y
        B0 *= np.take(DrefT, idx, axis=1, out=ws["D"][:, :n])           # per-voxel shrinkage
        P = ws["P"][:, :n]
        np.matmul(A0, B0, out=P)
        p = pred[:, v0:v1]
        np.add(P, ymean, out=p)
        best[v0:v1] = grid[idx]
    return pred, best
