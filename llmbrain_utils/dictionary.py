"""Stage 3: sparse dictionary learning over the artificial neurons' (ANs) responses.

Every AN's response is a length-T signal, a *column* of ``X`` (T x N, the SPAMS convention).
The dictionary ``D`` (T x k, unit-norm columns, the *atoms*) and sparse loadings ``A``
(k x N) minimise, per signal (SPAMS ``trainDL`` / ``lasso`` with ``mode=2``)::

    0.5 * ||x_j - D a_j||_2^2 + lam * ||a_j||_1

An atom's AN *sub-group* is the set of ANs with a non-zero loading on it.

Scaling convention (read this before choosing ``lam``)
------------------------------------------------------
With ``normalize=True`` (the default) every column is divided by its L2 norm before learning,
as SPAMS's own examples do, so ``lam`` means the same thing for any story length: for a
z-scored column the norm is ``sqrt(T)``. The objective is evaluated on those unit-norm signals
``x~_j = x_j / s_j`` with loadings ``a~_j = a_j / s_j``; the returned ``A`` is in the units of
``X`` (``X[:, j] ~ D @ A[:, j]``). The same ``lam`` on the raw z-scored ``X`` would be
``lam * sqrt(T)``. With ``normalize=False`` ``lam`` applies to ``X`` as given.

Default ``lam`` = 0.1. On real responses of the default model (all-MiniLM-L6-v2, 6 x 384 FFN
output units; words read in 120-word bidirectional windows, sub-tokens and TRs mean-pooled,
SPM HRF, z-scored; Narratives word timings) with k = 64 and SPAMS (300 iterations of 256),
the dictionary R2 against ``lam`` was

=====================  =====  =====  =====  =====  =====
story (T TRs)           0.05   0.10   0.15   0.20   0.30
=====================  =====  =====  =====  =====  =====
pieman (297)            0.82   0.64   0.51   0.41   0.26
black (544)             0.70   0.52   0.40   0.31   0.19
forgot (560)            0.69   0.51   0.39   0.30   0.18
=====================  =====  =====  =====  =====  =====

so ``lam = 0.1`` lands in the paper's reported range (R2 about 0.5-0.6 at k = 64) for the
typical Narratives story of 300-600 TRs, with about 15 non-zero loadings per AN (77 %
sparsity). Longer stories need a smaller ``lam`` for the same R2 (more TRs to explain).
SPAMS's ``trainDL(lambda1=...)`` is exactly this ``lam`` (on whatever columns it is given).

Solvers
-------
``"spams"``: ``spams.trainDL`` (online dictionary learning, Mairal et al. 2010) then
``spams.lasso`` (LARS, exact). ``"sklearn"``: ``MiniBatchDictionaryLearning`` fed the same
minibatches, then its ``transform`` (``lasso_cd``; sklearn divides ``transform_alpha`` by T
internally, so ``transform_alpha = lam`` is the same penalty). ``"torch"``: the same online
algorithm written for GPUs: minibatch sparse coding by FISTA with adaptive restart on the Gram
form, block-coordinate dictionary update from the accumulated statistics
``A = sum a a^T`` and ``B = sum x a^T`` (sklearn's forgetting schedule), then a batched FISTA
lasso to a KKT tolerance. All three start from the same atoms (k distinct random ANs, seeded)
and the Python solvers see the same seeded minibatches; all are deterministic given ``seed`` on
a CPU (SPAMS with ``n_threads=1``).

Afterwards every dictionary is put in a canonical form that leaves the objective unchanged:
atoms scaled to unit norm, each atom's sign chosen so that its loadings sum to a positive
number (the atom is its sub-group's typical response), atoms ordered by decreasing L1 mass
of their loadings.

Dead ANs (constant columns: max == min) are excluded before learning, counted in
``excluded``, and get all-zero loadings and NaN R2 in the full-N outputs.

Memory is bounded for large N: ``X`` may be a ``np.memmap``; statistics and loadings are
computed in chunks of columns (``chunk_mb``), and loadings are returned sparse. SPAMS itself
needs one float32 Fortran copy of the kept columns (T x N x 4 bytes).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np
import scipy.sparse as sp

from .devices import resolve_device
from .errors import InputError, ParameterError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

log = logging.getLogger(__name__)

SOLVERS = ("spams", "sklearn", "torch")
DEFAULT_K = 64
DEFAULT_LAM = 0.1
DEFAULT_N_ITER = 300
DEFAULT_BATCH_SIZE = 256
DEFAULT_CHUNK_MB = 256.0
# an atom whose accumulated usage A[j, j] is below this is resampled (as SPAMS and sklearn do)
_UNUSED_ATOM = 1e-6


# --------------------------------------------------------------------------- result
@dataclass
class DictionaryResult:
    """A learned dictionary and its loadings, mapped back to all N ANs.

    Attributes
    ----------
    D : ndarray, shape (T, k), float32
        Atoms, unit L2 norm, canonical sign and order (see the module docstring).
    A : scipy.sparse.csr_matrix, shape (k, N), float32
        Loadings in the units of ``X`` (``X[:, j] ~ D @ A[:, j]``); zero columns for excluded ANs.
    lam, k, solver, seed, normalize
        The parameters of the fit.
    objective : float
        Mean over kept ANs of ``0.5 ||x~_j - D a~_j||^2 + lam ||a~_j||_1`` on the signals as
        fitted (unit-norm columns when ``normalize``).
    r2_overall : float
        ``1 - sum SSE / sum SST`` over kept ANs (fitted signals; SST around each column's mean).
    r2_per_an : ndarray, shape (N,)
        ``1 - SSE_j / SST_j``; NaN for excluded ANs.
    sst_per_an : ndarray, shape (N,)
        ``SST_j`` of the fitted signal (1 for a z-scored, normalised column); 0 for excluded.
    sparsity : float
        Share of zero loadings among the k x (kept ANs) entries.
    excluded : ndarray of bool, shape (N,)
        Dead (constant) ANs left out of learning.
    scale : ndarray, shape (N,)
        Divisor applied to each column before learning (its L2 norm, or 1); 0 for excluded.
    timings : dict
        Seconds spent in ``validate``, ``learn``, ``encode`` and ``total``.
    info : dict
        Solver details (iterations, batch size, device, package versions, ...).
    an_table : pandas.DataFrame or None
        The per-AN table (``layer``, ``unit``) when one was given.
    """

    D: np.ndarray
    A: sp.csr_matrix
    lam: float
    k: int
    solver: str
    seed: int
    normalize: bool
    objective: float
    r2_overall: float
    r2_per_an: np.ndarray
    sst_per_an: np.ndarray
    sparsity: float
    excluded: np.ndarray
    scale: np.ndarray
    timings: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    an_table: "pd.DataFrame | None" = None

    @property
    def n_excluded(self) -> int:
        """Number of dead (constant) ANs left out."""
        return int(self.excluded.sum())

    @property
    def n_ans(self) -> int:
        """Number of ANs, excluded ones included."""
        return int(self.excluded.size)

    def summary(self) -> dict:
        """Scalars of the fit (JSON-serialisable)."""
        return {"solver": self.solver, "k": self.k, "lam": self.lam, "seed": self.seed,
                "normalize": self.normalize, "n_ans": self.n_ans,
                "n_excluded": self.n_excluded, "T": int(self.D.shape[0]),
                "objective": self.objective, "r2_overall": self.r2_overall,
                "sparsity": self.sparsity, "nnz": int(self.A.nnz),
                "timings": self.timings, "info": self.info}

    def save(self, directory: str | Path) -> Path:
        """Write ``D.npy``, ``loadings.npz``, ``r2_per_an.npy``, ``excluded.npy``, ``scale.npy``,
        ``sst_per_an.npy`` and ``dictionary.json`` into ``directory`` (created if needed)."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        np.save(out / "D.npy", self.D)
        sp.save_npz(out / "loadings.npz", self.A)
        np.save(out / "r2_per_an.npy", self.r2_per_an)
        np.save(out / "excluded.npy", self.excluded)
        np.save(out / "scale.npy", self.scale)
        np.save(out / "sst_per_an.npy", self.sst_per_an)
        (out / "dictionary.json").write_text(json.dumps(self.summary(), indent=1, default=str))
        return out


def load_result(directory: str | Path, an_table: "pd.DataFrame | None" = None) -> DictionaryResult:
    """Read a result written by :meth:`DictionaryResult.save`."""
    d = Path(directory)
    for name in ("D.npy", "loadings.npz", "r2_per_an.npy", "excluded.npy", "dictionary.json"):
        if not (d / name).exists():
            raise InputError(d / name, "file missing", expected="a directory written by "
                             "DictionaryResult.save")
    meta = json.loads((d / "dictionary.json").read_text())
    excluded = np.load(d / "excluded.npy")
    scale = np.load(d / "scale.npy") if (d / "scale.npy").exists() else np.ones(excluded.size)
    sst = (np.load(d / "sst_per_an.npy") if (d / "sst_per_an.npy").exists()
           else np.where(excluded, 0.0, 1.0))
    return DictionaryResult(
        D=np.load(d / "D.npy"), A=sp.load_npz(d / "loadings.npz").tocsr(),
        lam=float(meta["lam"]), k=int(meta["k"]), solver=meta["solver"], seed=int(meta["seed"]),
        normalize=bool(meta["normalize"]), objective=float(meta["objective"]),
        r2_overall=float(meta["r2_overall"]), r2_per_an=np.load(d / "r2_per_an.npy"),
        sst_per_an=sst, sparsity=float(meta["sparsity"]), excluded=excluded, scale=scale,
        timings=meta.get("timings", {}), info=meta.get("info", {}), an_table=an_table)


# --------------------------------------------------------------------------- validation
def _chunk_cols(T: int, k: int, chunk_mb: float = DEFAULT_CHUNK_MB) -> int:
    """Columns per chunk so that a chunk's working arrays stay within ``chunk_mb``."""
    per_col = 4 * (4 * T + 8 * k)  # float32: X chunk, residual, copies; codes, gradients
    return max(1, int(chunk_mb * 2**20 // per_col))


def _iter_chunks(n: int, size: int) -> Iterator[tuple[int, int]]:
    for a in range(0, n, size):
        yield a, min(n, a + size)


def _an_label(j: int, an_table: "pd.DataFrame | None") -> str:
    if an_table is None:
        return f"AN {j}"
    row = an_table.iloc[j]
    return f"AN {j}: layer {int(row['layer'])}, unit {int(row['unit'])}"


def _check_X(X: Any) -> None:
    if not hasattr(X, "shape") or not hasattr(X, "dtype") or getattr(X, "ndim", 0) != 2:
        raise InputError("X", "not a 2-D array", expected="a (T TRs x N ANs) numpy array or "
                         "np.memmap")
    if not (np.issubdtype(X.dtype, np.floating) or np.issubdtype(X.dtype, np.integer)):
        raise InputError("X", f"dtype {X.dtype} is not numeric", expected="float32 (or any real "
                         "dtype)")
    T, N = X.shape
    if T < 2:
        raise InputError("X", f"only {T} row(s) (TRs)", expected="T >= 2 rows, one per TR")
    if N < 1:
        raise InputError("X", "no columns (ANs)", expected="N >= 1 columns, one per AN")


def _check_an_table(an_table: Any, N: int) -> None:
    if an_table is None:
        return
    import pandas as pd

    if not isinstance(an_table, pd.DataFrame):
        raise InputError("an_table", f"is a {type(an_table).__name__}",
                         expected="a pandas DataFrame with int columns 'layer', 'unit'")
    if len(an_table) != N:
        raise InputError("an_table", f"has {len(an_table)} rows but X has {N} columns",
                         expected="one row per AN (column of X)")
    for col in ("layer", "unit"):
        if col not in an_table.columns:
            raise InputError("an_table", "column missing", field=col,
                             expected="int columns 'layer' and 'unit'")
        if not pd.api.types.is_integer_dtype(an_table[col]):
            raise InputError("an_table", f"dtype {an_table[col].dtype}", field=col,
                             expected="integers")


def _check_params(k: Any, lam: Any, T: int | None = None) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ParameterError("k", f"{k!r} is not an integer", expected="an int >= 1")
    if k < 1:
        raise ParameterError("k", f"{k} atoms", expected="k >= 1")
    if T is not None and k > T:
        raise ParameterError("k", f"{k} atoms exceed the {T} TRs of X",
                             expected=f"k <= T = {T} (an undercomplete dictionary)")
    if isinstance(lam, bool) or not isinstance(lam, (int, float, np.floating, np.integer)):
        raise ParameterError("lam", f"{lam!r} is not a number", expected="a float > 0")
    if not math.isfinite(float(lam)) or lam <= 0:
        raise ParameterError("lam", f"{lam}", expected="a finite float > 0 (the L1 weight)")


@dataclass
class _Scan:
    excluded: np.ndarray   # (N,) bool
    scale: np.ndarray      # (N,) float64 divisor; 0 for excluded
    sst: np.ndarray        # (N,) float64 SST of the scaled column; 0 for excluded


def _scan(X: Any, k: int, lam: float, an_table: "pd.DataFrame | None", normalize: bool,
          chunk_mb: float) -> _Scan:
    """All checks on ``X`` (one chunked pass): finite values, dead columns, usable count."""
    _check_X(X)
    T, N = X.shape
    _check_params(k, lam, T)
    _check_an_table(an_table, N)
    excluded = np.zeros(N, bool)
    norm = np.zeros(N)
    ss_c = np.zeros(N)
    for a, b in _iter_chunks(N, _chunk_cols(T, k, chunk_mb)):
        c = np.asarray(X[:, a:b], dtype=np.float64)
        bad = ~np.isfinite(c)
        if bad.any():
            col = int(np.flatnonzero(bad.any(axis=0))[0])
            row = int(np.flatnonzero(bad[:, col])[0])
            v = c[row, col]
            raise InputError("X", f"non-finite value {v} ({_an_label(a + col, an_table)})",
                             field=f"column {a + col}, row {row}",
                             expected="finite values in every row and column")
        excluded[a:b] = c.max(axis=0) == c.min(axis=0)
        norm[a:b] = np.sqrt((c * c).sum(axis=0))
        ss_c[a:b] = ((c - c.mean(axis=0)) ** 2).sum(axis=0)
    n_kept = int(N - excluded.sum())
    if n_kept < k:
        raise InputError("X", f"only {n_kept} usable ANs ({int(excluded.sum())} of {N} are "
                         "constant)", expected=f"at least k = {k} non-constant columns")
    if normalize:
        scale = np.where(excluded, 0.0, norm)
    else:
        scale = np.where(excluded, 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        sst = np.where(excluded, 0.0, ss_c / np.where(excluded, 1.0, scale) ** 2)
    if excluded.any():
        log.info("%d of %d ANs are constant (dead) and excluded", int(excluded.sum()), N)
    return _Scan(excluded, scale, sst)


def validate(X: Any, k: int = DEFAULT_K, lam: float = DEFAULT_LAM, *,
             an_table: "pd.DataFrame | None" = None,
             chunk_mb: float = DEFAULT_CHUNK_MB) -> np.ndarray:
    """Check the inputs of :func:`learn_dictionary` before any work starts.

    Parameters
    ----------
    X : array_like, shape (T, N)
        AN responses, one column per AN (a ``np.memmap`` is read in chunks).
    k : int
        Number of atoms; ``1 <= k <= T``.
    lam : float
        L1 weight, ``> 0``.
    an_table : pandas.DataFrame, optional
        N rows with int columns ``layer`` and ``unit`` (named in error messages).
    chunk_mb : float
        Memory budget of one chunk of columns.

    Returns
    -------
    ndarray of bool, shape (N,)
        The dead (constant) ANs that learning will exclude.

    Raises
    ------
    InputError
        Non-2-D or non-numeric ``X``, a NaN/inf (its column, row and AN named), fewer usable
        ANs than atoms, a malformed ``an_table``.
    ParameterError
        ``k < 1``, ``k > T``, ``lam <= 0``.
    """
    return _scan(X, k, lam, an_table, True, chunk_mb).excluded


def _check_run_params(solver: str, seed: Any, n_iter: Any, batch_size: Any,
                      n_threads: Any, chunk_mb: Any) -> None:
    if solver not in SOLVERS:
        raise ParameterError("solver", f"{solver!r}", expected=f"one of {SOLVERS}")
    for name, v, lo in (("seed", seed, 0), ("n_iter", n_iter, 1), ("batch_size", batch_size, 1)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise ParameterError(name, f"{v!r}", expected=f"an int >= {lo}")
    if n_threads is not None and (not isinstance(n_threads, (int, np.integer)) or n_threads < 1):
        raise ParameterError("n_threads", f"{n_threads!r}", expected="None or an int >= 1")
    if not isinstance(chunk_mb, (int, float)) or chunk_mb <= 0:
        raise ParameterError("chunk_mb", f"{chunk_mb!r}", expected="a number > 0 (MiB)")


# --------------------------------------------------------------------------- data access
class _Columns:
    """The kept, scaled columns of X, read in chunks or gathered by index (memmap-friendly)."""

    def __init__(self, X: Any, cols: np.ndarray, scale: np.ndarray):
        self.X, self.cols = X, np.asarray(cols, dtype=np.int64)
        self.inv = (1.0 / scale[self.cols]).astype(np.float32)
        self.T, self.n = X.shape[0], self.cols.size
        # contiguous runs of columns are read as slices (cheap on a memmap)
        self._contig = self.n > 0 and bool(np.all(np.diff(self.cols) == 1))

    def take(self, pos: np.ndarray) -> np.ndarray:
        """Scaled columns at positions ``pos`` (into ``cols``), float32, shape (T, len(pos))."""
        pos = np.asarray(pos)
        order = np.argsort(pos, kind="stable")
        sel = self.cols[pos[order]]
        if sel.size and sel[-1] - sel[0] + 1 == sel.size:
            block = np.asarray(self.X[:, sel[0]:sel[-1] + 1], dtype=np.float32)
        else:
            block = np.asarray(self.X[:, sel], dtype=np.float32)
        out = np.empty_like(block)
        out[:, order] = block * self.inv[pos[order]]
        return out

    def chunk(self, a: int, b: int) -> np.ndarray:
        """Scaled columns at positions ``a:b``, float32."""
        if self._contig:
            c0 = self.cols[0]
            block = np.asarray(self.X[:, c0 + a:c0 + b], dtype=np.float32)
            return block * self.inv[a:b]
        return self.take(np.arange(a, b))


def _init_atoms(data: _Columns, k: int, seed: int) -> np.ndarray:
    """k distinct random kept ANs (seeded), unit norm, float32 (T x k)."""
    rng = np.random.default_rng([seed, 0])
    pos = np.sort(rng.choice(data.n, size=k, replace=False))
    D0 = data.take(pos).astype(np.float64)
    D0 /= np.maximum(np.linalg.norm(D0, axis=0), 1e-12)
    return D0.astype(np.float32)


def _batches(n: int, batch_size: int, n_iter: int, seed: int) -> Iterator[np.ndarray]:
    """Seeded minibatches of positions: epochs of a fresh permutation, cut in batch_size."""
    rng = np.random.default_rng([seed, 1])
    perm, at = rng.permutation(n), 0
    for _ in range(n_iter):
        if at + batch_size > n:
            rest = perm[at:]
            perm, at = rng.permutation(n), batch_size - rest.size
            yield np.concatenate([rest, perm[:at]])
        else:
            yield perm[at:at + batch_size]
            at += batch_size


# --------------------------------------------------------------------------- torch solver
@contextlib.contextmanager
def _torch_context(device: str, n_threads: int | None):
    """Deterministic algorithms on the CPU and an optional thread count, restored afterwards."""
    import torch

    old_det = torch.are_deterministic_algorithms_enabled()
    old_threads = torch.get_num_threads()
    try:
        if device == "cpu":
            torch.use_deterministic_algorithms(True)
            if n_threads is not None:
                torch.set_num_threads(int(n_threads))
        yield
    finally:
        torch.use_deterministic_algorithms(old_det)
        torch.set_num_threads(old_threads)


def fista_lasso(G, C, lam: float, *, max_iter: int = 1000, tol: float = 1e-4,
                check_every: int = 10, a0=None):
    """Batched lasso on the Gram form with FISTA and adaptive (gradient) restart.

    Solves, for every column ``c`` of ``C = D^T X``,
    ``min_a 0.5 a^T G a - c^T a + lam ||a||_1`` (the same minimiser as
    ``0.5 ||x - D a||^2 + lam ||a||_1`` with ``G = D^T D``).

    Parameters
    ----------
    G : torch.Tensor, shape (k, k)
    C : torch.Tensor, shape (k, b)
    lam : float
    max_iter : int
        Iteration cap.
    tol : float
        A column is done (and frozen) when the largest violation of its lasso optimality (KKT)
        conditions, checked every ``check_every`` iterations, is below ``tol`` (absolute, in
        units of ``C``). Columns never interact, so a column's code does not depend on which
        other columns share its batch.
    a0 : torch.Tensor, optional
        Warm start (k x b).

    Returns
    -------
    a : torch.Tensor, shape (k, b)
    n_iter : int
        Iterations run by the slowest column (``max_iter`` when some did not converge).
    """
    import torch

    L = float(torch.linalg.eigvalsh(G.detach().cpu().double())[-1].clamp_min(1e-12))
    thr = lam / L
    out = torch.zeros_like(C) if a0 is None else a0.clone()
    a, y, Cw = out.clone(), out.clone(), C
    active = torch.arange(C.shape[1], device=C.device)
    t = torch.ones(C.shape[1], dtype=C.dtype, device=C.device)
    it = 0
    for it in range(1, max_iter + 1):
        z = torch.addmm(y, G, y, alpha=-1.0 / L).add_(Cw, alpha=1.0 / L)  # y - grad / L
        a_new = torch.nn.functional.softshrink(z, thr)
        diff = a_new - a
        restart = ((y - a_new) * diff).sum(0) > 0  # momentum points uphill: restart
        t_new = (1 + torch.sqrt(1 + 4 * t * t)) / 2
        beta = torch.where(restart, torch.zeros_like(t), (t - 1) / t_new)
        t = torch.where(restart, torch.ones_like(t), t_new)
        y = torch.addcmul(a_new, beta, diff)
        a = a_new
        if it % check_every == 0 and it < max_iter:
            g = G @ a - Cw
            viol = torch.where(a != 0, (g + lam * torch.sign(a)).abs(),
                               torch.clamp(g.abs() - lam, min=0)).amax(dim=0)
            done = viol <= tol
            if bool(done.any()):
                out[:, active[done]] = a[:, done]
                keep = ~done
                if not bool(keep.any()):
                    return out, it
                a, y, t, Cw, active = a[:, keep], y[:, keep], t[keep], Cw[:, keep], active[keep]
    out[:, active] = a
    return out, it


def _learn_torch(data: _Columns, D0: np.ndarray, lam: float, n_iter: int, batch_size: int,
                 seed: int, device: str, progress: bool, fit_max_iter: int = 200,
                 fit_tol: float = 1e-4) -> tuple[np.ndarray, dict]:
    """Online dictionary learning (Mairal et al. 2010) in torch; returns D (T x k) and info.

    The statistics follow SPAMS's ``trainDL``: the forgetting factor
    ``beta = (m + 1 - b) / (m + 1)`` with ``m = min(2 N, i b if i < b else b^2 + i - b)``, and
    the statistics split by epoch parity so that a signal's contribution from two epochs ago is
    dropped when it comes round again; atoms are renormalised to unit norm after each update;
    an unused atom (``A[j, j] <= 1e-6``) or a duplicate one (|cosine| > 0.999999) restarts
    from a random signal of the batch.
    """
    import torch

    from .progress import bar

    k = D0.shape[1]
    dt = torch.float32
    D = torch.tensor(D0, dtype=dt, device=device)
    A_even = torch.zeros((k, k), dtype=dt, device=device)
    B_even = torch.zeros((data.T, k), dtype=dt, device=device)
    A_odd, B_odd = torch.zeros_like(A_even), torch.zeros_like(B_even)
    # on a GPU with room to spare, hold the kept columns there (gathers are free)
    resident = None
    if device != "cpu":
        need = 4 * data.T * data.n
        free = (torch.cuda.mem_get_info(torch.device(device))[0]
                    if device.startswith("cuda") else 0)
        if need < 0.5 * free:
            resident = torch.empty((data.T, data.n), dtype=dt, device=device)
            for a, b in _iter_chunks(data.n, _chunk_cols(data.T, k)):
                resident[:, a:b] = torch.from_numpy(data.chunk(a, b)).to(device)
    rng_dead = np.random.default_rng([seed, 2])
    fista_iters, n_resampled, parity = 0, 0, 0
    eye = torch.eye(k, dtype=torch.bool, device=device)

    def restart(j: int, Xb) -> None:
        r = int(rng_dead.integers(Xb.shape[1]))
        newd = Xb[:, r].cpu().double().numpy()
        newd = newd + rng_dead.normal(0, 0.01 * (newd.std() or 1.0), newd.size)
        D[:, j] = torch.tensor(newd / np.linalg.norm(newd), dtype=dt, device=device)

    for step, pos in enumerate(bar(_batches(data.n, batch_size, n_iter, seed), "torch dictionary",
                                   total=n_iter, show=progress)):
        if resident is not None:
            Xb = resident[:, torch.as_tensor(np.sort(pos), device=device)]
        else:
            Xb = torch.from_numpy(data.take(pos)).to(device)
        b = Xb.shape[1]
        G = D.T @ D
        dup = torch.triu(G.abs() > 0.999999, diagonal=1) & ~eye
        if bool(dup.any()):
            for j in sorted(set(torch.nonzero(dup)[:, 1].tolist())):
                restart(j, Xb)
                n_resampled += 1
            G = D.T @ D
        code, it = fista_lasso(G, D.T @ Xb, lam, max_iter=fit_max_iter, tol=fit_tol)
        fista_iters += it
        # sufficient statistics: SPAMS's forgetting schedule and epoch-parity bookkeeping
        epoch = ((step + 1) * b) // data.n
        if epoch % 2 != parity:
            A_odd.copy_(A_even)
            B_odd.copy_(B_even)
            A_even.zero_()
            B_even.zero_()
            parity = epoch % 2
        m = min(2 * data.n, step * b if step < b else b * b + step - b)
        beta = max(0.0, (m + 1 - b) / (m + 1))
        for M_ in (A_even, B_even, A_odd, B_odd):
            M_.mul_(beta)
        A_even.add_(code @ code.T, alpha=1.0 / b)
        B_even.add_(Xb @ code.T, alpha=1.0 / b)
        A_st, B_st = A_even + A_odd, B_even + B_odd
        used = (torch.diagonal(A_st) > _UNUSED_ATOM).cpu().numpy()
        for j in range(k):  # one pass of block-coordinate descent over the atoms
            if used[j]:
                u = D[:, j] + (B_st[:, j] - D @ A_st[:, j]) / A_st[j, j]
                D[:, j] = u / torch.clamp(torch.linalg.vector_norm(u), min=1e-12)
            else:  # never used: restart it from a random signal of the batch, plus noise
                restart(j, Xb)
                n_resampled += 1
    info = {"fista_iter_mean": fista_iters / max(n_iter, 1), "atoms_resampled": n_resampled,
            "gpu_resident": resident is not None}
    return D.cpu().numpy(), info


def _encode_torch(D: np.ndarray, lam: float, device: str, max_iter: int = 3000,
                  tol: float = 1e-5):
    """A chunk encoder: scaled chunk (T x c, float32) -> codes (k x c, float32 ndarray)."""
    import torch

    Dt = torch.tensor(D, dtype=torch.float32, device=device)
    G = Dt.T @ Dt
    stats = {"max_iter_hit": 0}

    def enc(Xc: np.ndarray) -> np.ndarray:
        C = Dt.T @ torch.from_numpy(Xc).to(device)
        a, it = fista_lasso(G, C, lam, max_iter=max_iter, tol=tol)
        if it >= max_iter:
            stats["max_iter_hit"] += 1
        return a.cpu().numpy()

    return enc, stats


# --------------------------------------------------------------------------- spams / sklearn
def _learn_spams(data: _Columns, D0: np.ndarray, lam: float, n_iter: int, batch_size: int,
                 seed: int, n_threads: int | None) -> tuple[np.ndarray, dict]:
    import spams

    # SPAMS wants a Fortran-ordered float array; the columns go in a seeded random order so its
    # minibatches mix layers however it walks through them
    perm = np.random.default_rng([seed, 1]).permutation(data.n)
    slot = np.argsort(perm)  # where each kept column goes: read X in order, scatter columns
    Xf = np.empty((data.T, data.n), dtype=np.float32, order="F")
    for a, b in _iter_chunks(data.n, _chunk_cols(data.T, D0.shape[1])):
        Xf[:, slot[a:b]] = data.chunk(a, b)
    D = spams.trainDL(Xf, D=np.asfortranarray(D0, dtype=np.float32), K=D0.shape[1],
                      lambda1=float(lam), mode=2, iter=int(n_iter), batchsize=int(batch_size),
                      numThreads=-1 if n_threads is None else int(n_threads), verbose=False,
                      return_model=False)
    return np.asarray(D, dtype=np.float32), {}


def _encode_spams(D: np.ndarray, lam: float, n_threads: int | None):
    import spams

    Df = np.asfortranarray(D, dtype=np.float32)

    def enc(Xc: np.ndarray):
        return spams.lasso(np.asfortranarray(Xc, dtype=np.float32), D=Df, lambda1=float(lam),
                           mode=2, numThreads=-1 if n_threads is None else int(n_threads))

    return enc, {}


def _sklearn_estimator(k: int, lam: float, batch_size: int, seed: int, D0: np.ndarray | None):
    from sklearn.decomposition import MiniBatchDictionaryLearning

    # sklearn's dictionary objective is 0.5||x - D a||^2 + alpha||a||_1 per sample, and its
    # lasso_cd transform divides transform_alpha by T, so alpha = transform_alpha = lam
    return MiniBatchDictionaryLearning(
        n_components=k, alpha=float(lam), batch_size=batch_size, fit_algorithm="cd",
        transform_algorithm="lasso_cd", transform_alpha=float(lam), transform_max_iter=2000,
        dict_init=None if D0 is None else np.ascontiguousarray(D0.T), shuffle=False,
        random_state=seed, tol=0.0, max_no_improvement=None)


def _learn_sklearn(data: _Columns, D0: np.ndarray, lam: float, n_iter: int, batch_size: int,
                   seed: int, progress: bool) -> tuple[np.ndarray, dict]:
    from sklearn.exceptions import ConvergenceWarning

    from .progress import bar

    est = _sklearn_estimator(D0.shape[1], lam, batch_size, seed, D0.astype(np.float64))
    with warnings.catch_warnings():
        # its coordinate descent asks a duality gap of 1e-8, which float rounding can miss
        warnings.simplefilter("ignore", ConvergenceWarning)
        for pos in bar(_batches(data.n, batch_size, n_iter, seed), "sklearn dictionary",
                       total=n_iter, show=progress):
            est.partial_fit(data.take(pos).T.astype(np.float64))  # float64: 3x faster cd
    return est.components_.T.astype(np.float32), {"n_steps": int(est.n_steps_)}


def _encode_sklearn(D: np.ndarray, lam: float, seed: int):
    est = _sklearn_estimator(D.shape[1], lam, DEFAULT_BATCH_SIZE, seed, None)
    est.components_ = np.ascontiguousarray(D.T, dtype=np.float64)  # all transform needs
    est.n_features_in_ = D.shape[0]
    est._n_components = D.shape[1]

    def enc(Xc: np.ndarray) -> np.ndarray:
        from sklearn.exceptions import ConvergenceWarning

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return est.transform(Xc.T.astype(np.float64)).T

    return enc, {}


# --------------------------------------------------------------------------- shared pieces
def _unit_atoms(D: np.ndarray, seed: int) -> np.ndarray:
    """Scale every atom to unit norm (a zero atom becomes a random unit vector, with a note)."""
    D = np.asarray(D, dtype=np.float64)
    n = np.linalg.norm(D, axis=0)
    dead = n < 1e-10
    if dead.any():
        log.warning("%d atom(s) came out all-zero; replaced by random unit vectors", dead.sum())
        D[:, dead] = np.random.default_rng([seed, 3]).standard_normal((D.shape[0], dead.sum()))
        n = np.linalg.norm(D, axis=0)
    return (D / n).astype(np.float32)


def _fit_atoms(data: _Columns, k: int, lam: float, solver: str, seed: int, n_iter: int,
               batch_size: int, device: str | None, n_threads: int | None,
               progress: bool) -> tuple[np.ndarray, dict]:
    bs = min(batch_size, data.n)
    D0 = _init_atoms(data, k, seed)
    info: dict[str, Any] = {"n_iter": n_iter, "batch_size": bs}
    if solver == "spams":
        D, extra = _learn_spams(data, D0, lam, n_iter, bs, seed, n_threads)
        info["device"] = "cpu"
    elif solver == "sklearn":
        D, extra = _learn_sklearn(data, D0, lam, n_iter, bs, seed, progress)
        info["device"] = "cpu"
    else:
        with _torch_context(device, n_threads):
            D, extra = _learn_torch(data, D0, lam, n_iter, bs, seed, device, progress)
        info["device"] = device
    info.update(extra)
    return _unit_atoms(D, seed), info


def _encoder(D: np.ndarray, lam: float, solver: str, seed: int, device: str | None,
             n_threads: int | None):
    if solver == "spams":
        return _encode_spams(D, lam, n_threads)
    if solver == "sklearn":
        return _encode_sklearn(D, lam, seed)
    return _encode_torch(D, lam, device)


def _as_csc(codes: Any, tiny: float = 0.0) -> sp.csc_matrix:
    if sp.issparse(codes):
        m = sp.csc_matrix(codes, dtype=np.float32)
    else:
        c = np.asarray(codes, dtype=np.float32)
        if tiny:
            c[np.abs(c) <= tiny] = 0
        m = sp.csc_matrix(c)
    m.eliminate_zeros()
    return m


def _chunk_stats(Xc: np.ndarray, D: np.ndarray, codes: sp.csc_matrix, lam: float):
    """Per-column SSE and L1 of a chunk (float64 accumulation)."""
    R = Xc.astype(np.float64) - D.astype(np.float64) @ codes.toarray().astype(np.float64)
    sse = (R * R).sum(axis=0)
    l1 = np.asarray(abs(codes).sum(axis=0), dtype=np.float64).ravel()
    return sse, l1


def _encode_all(data: _Columns, N: int, D: np.ndarray, lam: float, enc, chunk: int,
                progress: bool) -> tuple[sp.csc_matrix, np.ndarray, np.ndarray]:
    """Loadings of every kept column (scaled units, k x N csc) plus per-AN SSE and L1."""
    from .progress import bar

    k = D.shape[1]
    parts, sse, l1 = [], np.zeros(N), np.zeros(N)
    for a, b in bar(list(_iter_chunks(data.n, chunk)), "dictionary loadings", unit="chunk", show=progress):
        Xc = data.chunk(a, b)
        codes = _as_csc(enc(Xc))
        s, l = _chunk_stats(Xc, D, codes, lam)
        sse[data.cols[a:b]], l1[data.cols[a:b]] = s, l
        parts.append(codes)
    kept = sp.hstack(parts, format="csc") if parts else sp.csc_matrix((k, 0), dtype=np.float32)
    # place the kept columns at their AN positions (excluded ANs: empty columns)
    indptr = np.zeros(N + 1, dtype=np.int64)
    counts = np.zeros(N, dtype=np.int64)
    counts[data.cols] = np.diff(kept.indptr)
    indptr[1:] = np.cumsum(counts)
    A = sp.csc_matrix((kept.data.astype(np.float32), kept.indices, indptr), shape=(k, N))
    return A, sse, l1


def _canonical(D: np.ndarray, A: sp.csc_matrix) -> tuple[np.ndarray, sp.csr_matrix]:
    """Sign (loadings sum positive) and order (decreasing L1 mass) of the atoms."""
    A = A.tocsr()
    total = np.asarray(A.sum(axis=1)).ravel()
    sign = np.where(total < 0, -1.0, 1.0).astype(np.float32)
    mass = np.asarray(abs(A).sum(axis=1)).ravel()
    order = np.lexsort((np.arange(mass.size), -mass))
    A = (sp.diags(sign) @ A)[order].tocsr().astype(np.float32)
    A.sort_indices()
    return (D * sign)[:, order].astype(np.float32), A


def _versions(solver: str) -> dict:
    names = {"spams": ["spams-bin"], "sklearn": ["scikit-learn"], "torch": ["torch"]}[solver]
    out = {}
    for n in ["numpy", "scipy", *names]:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            out[n] = None
    return out


# --------------------------------------------------------------------------- public API
def learn_dictionary(X: Any, k: int = DEFAULT_K, lam: float = DEFAULT_LAM, *,
                     solver: str = "spams", seed: int = 0, n_iter: int = DEFAULT_N_ITER,
                     batch_size: int = DEFAULT_BATCH_SIZE, device: str | None = "auto",
                     an_table: "pd.DataFrame | None" = None, normalize: bool = True,
                     n_threads: int | None = None, chunk_mb: float = DEFAULT_CHUNK_MB,
                     progress: bool = False) -> DictionaryResult:
    """Learn a sparse dictionary of the AN responses and every AN's loadings.

    Parameters
    ----------
    X : array_like, shape (T, N)
        AN responses (z-scored columns); float32 ``ndarray`` or ``np.memmap``.
    k : int
        Number of atoms (default 64, the paper's).
    lam : float
        L1 weight on the loadings of unit-norm signals (see the module docstring; 0.1 gives the
        paper's dictionary R2 of 0.5-0.6 on 300-600 TR stories).
    solver : {"spams", "sklearn", "torch"}
        Backend of learning and of the final lasso.
    seed : int
        Seeds the initial atoms and the minibatches.
    n_iter : int
        Minibatches of online learning (SPAMS's ``iter``).
    batch_size : int
        Signals per minibatch (clipped to the number of kept ANs).
    device : str, optional
        torch device (:func:`llmbrain_utils.devices.resolve_device`): ``"auto"`` (default) =
        CUDA when available, else the CPU; ``None`` or ``"cpu"`` = the CPU; a requested GPU that
        is missing falls back to the CPU. Ignored by the other solvers.
    an_table : pandas.DataFrame, optional
        N rows, int columns ``layer`` and ``unit``; kept in the result.
    normalize : bool
        Scale every column to unit L2 norm before learning (default; see module docstring).
    n_threads : int, optional
        Threads of SPAMS (``None`` = all) and of torch on the CPU (``None`` = unchanged).
    chunk_mb : float
        Memory budget of a chunk of columns in the scans and the final lasso.
    progress : bool
        Show tqdm progress bars.

    Returns
    -------
    DictionaryResult

    Raises
    ------
    InputError, ParameterError
        Before any work, see :func:`validate`.
    """
    _check_run_params(solver, seed, n_iter, batch_size, n_threads, chunk_mb)
    if solver == "torch":
        device = resolve_device(device)  # imports torch: not part of the timings
    t0 = time.perf_counter()
    scan = _scan(X, k, lam, an_table, normalize, chunk_mb)
    T, N = X.shape
    kept = np.flatnonzero(~scan.excluded)
    data = _Columns(X, kept, scan.scale)
    t1 = time.perf_counter()
    D, info = _fit_atoms(data, k, lam, solver, seed, n_iter, batch_size, device, n_threads,
                         progress)
    t2 = time.perf_counter()
    enc, enc_info = _encoder(D, lam, solver, seed, device, n_threads)
    if solver == "torch":
        with _torch_context(device, n_threads):
            A, sse, l1 = _encode_all(data, N, D, lam, enc, _chunk_cols(T, k, chunk_mb), progress)
    else:
        A, sse, l1 = _encode_all(data, N, D, lam, enc, _chunk_cols(T, k, chunk_mb), progress)
    info.update({f"encode_{key}": v for key, v in enc_info.items()})
    t3 = time.perf_counter()
    objective = float(np.mean(0.5 * sse[kept] + lam * l1[kept]))
    r2_overall = float(1.0 - sse[kept].sum() / scan.sst[kept].sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(scan.excluded, np.nan, 1.0 - sse / scan.sst)
    nnz = A.nnz
    # loadings back to the units of X
    A = A @ sp.diags(scan.scale.astype(np.float32))
    D, A = _canonical(D, sp.csc_matrix(A))
    info.update({"versions": _versions(solver), "n_kept": int(kept.size),
                 "objective_definition": "mean over kept ANs of 0.5||x~-D a~||^2 + "
                 "lam||a~||_1, x~ = x / scale"})
    t4 = time.perf_counter()
    return DictionaryResult(
        D=D, A=A, lam=float(lam), k=int(k), solver=solver, seed=int(seed),
        normalize=bool(normalize), objective=objective, r2_overall=r2_overall,
        r2_per_an=r2.astype(np.float64), sst_per_an=scan.sst, sparsity=float(
            1.0 - nnz / (k * kept.size)), excluded=scan.excluded, scale=scan.scale,
        timings={"validate": t1 - t0, "learn": t2 - t1, "encode": t3 - t2, "total": t4 - t0},
        info=info, an_table=an_table)


def evaluate(X: Any, D: np.ndarray, A: Any, lam: float, *, normalize: bool = True,
             excluded: np.ndarray | None = None, chunk_mb: float = DEFAULT_CHUNK_MB) -> dict:
    """The objective and R2 of any dictionary and loadings, by one shared formula.

    Parameters
    ----------
    X : array_like, shape (T, N)
    D : ndarray, shape (T, k)
    A : sparse or dense, shape (k, N)
        Loadings in the units of ``X`` (as :func:`learn_dictionary` returns them).
    lam : float
    normalize : bool
        Evaluate on unit-norm columns (``a~ = a / ||x||``), as the fit did.
    excluded : ndarray of bool, optional
        ANs to leave out (default: constant columns).

    Returns
    -------
    dict
        ``objective`` (mean over kept ANs of ``0.5||x~ - D a~||^2 + lam||a~||_1``),
        ``r2_overall``, ``r2_per_an`` (N,), ``sparsity``, ``n_kept``.
    """
    _check_X(X)
    T, N = X.shape
    D = np.asarray(D, dtype=np.float32)
    if D.ndim != 2 or D.shape[0] != T:
        raise InputError("D", f"shape {D.shape}", expected=f"({T}, k): one row per TR of X")
    k = D.shape[1]
    if tuple(A.shape) != (k, N):
        raise InputError("A", f"shape {tuple(A.shape)}", expected=f"({k}, {N})")
    scan = _scan(X, k, lam, None, normalize, chunk_mb) if k <= T else None
    if scan is None:
        raise ParameterError("D", f"{k} atoms exceed the {T} TRs", expected="k <= T")
    exc = scan.excluded if excluded is None else np.asarray(excluded, bool)
    kept = np.flatnonzero(~exc)
    data = _Columns(X, kept, np.where(scan.scale > 0, scan.scale, 1.0))
    Acsc = sp.csc_matrix(A, dtype=np.float32)
    sse, l1 = np.zeros(N), np.zeros(N)
    for a, b in _iter_chunks(kept.size, _chunk_cols(T, k, chunk_mb)):
        cols = kept[a:b]
        codes = Acsc[:, cols] @ sp.diags(data.inv[a:b])  # back to the fitted (scaled) units
        s, l = _chunk_stats(data.chunk(a, b), D, sp.csc_matrix(codes), lam)
        sse[cols], l1[cols] = s, l
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(exc, np.nan, 1.0 - sse / scan.sst)
    nnz = Acsc[:, kept].nnz
    return {"objective": float(np.mean(0.5 * sse[kept] + lam * l1[kept])),
            "r2_overall": float(1.0 - sse[kept].sum() / scan.sst[kept].sum()),
            "r2_per_an": r2, "sparsity": float(1.0 - nnz / (k * kept.size)),
            "n_kept": int(kept.size)}


# --------------------------------------------------------------------------- sklearn estimator
def _encode_columns(X: Any, D: np.ndarray, lam: float, *, solver: str, seed: int,
                    device: str | None, normalize: bool, n_threads: int | None,
                    chunk_mb: float, progress: bool = False) -> sp.csc_matrix:
    """Loadings (k x N, units of ``X``) of the columns of ``X`` (T x N) on fixed atoms ``D``.

    The final step of :func:`learn_dictionary` on new columns: the same scaling
    (``normalize``), the same lasso (``solver``'s encoder, by chunks of columns) and the same
    dead-column rule (a constant column gets all-zero loadings). Unlike a fit it needs no
    minimum number of usable columns. The atoms are used as given, in their order and sign.
    """
    _check_X(X)
    T, N = X.shape
    D = np.asarray(D, dtype=np.float32)
    k = D.shape[1]
    if np.all(np.ptp(np.asarray(X), axis=0) == 0):  # nothing to encode (and _scan wants >= 1)
        return sp.csc_matrix((k, N), dtype=np.float32)
    scan = _scan(X, 1, lam, None, normalize, chunk_mb)
    data = _Columns(X, np.flatnonzero(~scan.excluded), scan.scale)
    if solver == "torch":
        device = resolve_device(device)
    enc, _ = _encoder(D, lam, solver, seed, device, n_threads)
    ctx = _torch_context(device, n_threads) if solver == "torch" else contextlib.nullcontext()
    with ctx:
        A, _, _ = _encode_all(data, N, D, lam, enc, _chunk_cols(T, k, chunk_mb), progress)
    return sp.csc_matrix(A @ sp.diags(scan.scale.astype(np.float32)))


def _sparse_dictionary_class() -> type:
    """Build :class:`SparseDictionary` (on first access: importing scikit-learn takes seconds,
    and this module does not import it otherwise)."""
    from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
    from sklearn.utils.validation import check_is_fitted, validate_data

    class SparseDictionary(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
        """scikit-learn estimator around :func:`learn_dictionary` (stage 3).

        ``fit`` calls :func:`learn_dictionary` itself, so a fitted estimator holds exactly the
        function's result (``result_``) for the same arguments; ``transform`` codes new
        signals on the learned atoms with the function's own final lasso.

        Data layout: scikit-learn's ``(n_samples, n_features)``, as in
        :class:`sklearn.decomposition.MiniBatchDictionaryLearning`: **one row per AN (a
        sample), one column per TR (a feature, time)**, i.e. the *transpose* of
        :func:`learn_dictionary`'s ``X`` (T x N). With the stage's matrix ``X`` (T x N)::

            est = SparseDictionary(k=64, lam=0.1).fit(X.T)
            est.atoms_       # == learn_dictionary(X, 64, 0.1).D   (T x k)
            est.codes_.T     # == learn_dictionary(X, 64, 0.1).A   (k x N, sparse)

        Parameters
        ----------
        k, lam, solver, seed, n_iter, batch_size, device, normalize, n_threads, chunk_mb, progress
            Those of :func:`learn_dictionary`, same names, same defaults, validated when
            ``fit`` runs (``__init__`` only stores them). ``transform`` uses ``lam``,
            ``solver``, ``seed``, ``device``, ``normalize``, ``n_threads``, ``chunk_mb``.

        Attributes
        ----------
        result_ : DictionaryResult
            What :func:`learn_dictionary` returned (``an_table`` included when ``fit`` got
            one): use it for :func:`atom_subgroups`, :meth:`DictionaryResult.save`, ...
        atoms_ : ndarray, shape (n_features, k) = (T, k), float32
            The atoms as time courses (``result_.D``: unit norm, canonical sign and order).
        components_ : ndarray, shape (k, n_features) = (k, T), float32
            ``atoms_.T`` (scikit-learn's orientation: one atom per row).
        codes_ : scipy.sparse.csr_matrix, shape (n_samples, k) = (N, k), float32
            Every training AN's loadings, in the units of ``X`` (``result_.A.T``); all-zero
            rows for constant (excluded) ANs. ``fit_transform`` returns it as a dense array.
        r2_ : float
            Pooled dictionary R2 (``result_.r2_overall``).
        r2_per_an_ : ndarray, shape (n_samples,)
            Per-AN R2, NaN for excluded ANs (``result_.r2_per_an``).
        objective_, sparsity_ : float
            ``result_.objective``, ``result_.sparsity``.
        excluded_ : ndarray of bool, shape (n_samples,)
            Constant ANs left out of learning (``result_.excluded``).
        n_features_in_ : int
            T, the TRs per signal.
        feature_names_in_ : ndarray of str
            Column names, when ``X`` was a DataFrame with string column names.
        """

        def __init__(self, k: int = DEFAULT_K, lam: float = DEFAULT_LAM, *,
                     solver: str = "spams", seed: int = 0, n_iter: int = DEFAULT_N_ITER,
                     batch_size: int = DEFAULT_BATCH_SIZE, device: str | None = "auto",
                     normalize: bool = True, n_threads: int | None = None,
                     chunk_mb: float = DEFAULT_CHUNK_MB, progress: bool = False):
            self.k = k
            self.lam = lam
            self.solver = solver
            self.seed = seed
            self.n_iter = n_iter
            self.batch_size = batch_size
            self.device = device
            self.normalize = normalize
            self.n_threads = n_threads
            self.chunk_mb = chunk_mb
            self.progress = progress

        def fit(self, X, y=None, *, an_table: "pd.DataFrame | None" = None):
            """Learn the dictionary of the rows of ``X`` (N ANs x T TRs) by
            :func:`learn_dictionary`; ``an_table`` (one row per AN, int columns ``layer``,
            ``unit``) is passed on to it. ``y`` is ignored."""
            _check_params(self.k, self.lam)  # k atoms need k ANs: checked with sklearn's words
            X = validate_data(self, X, dtype="numeric", ensure_min_samples=int(self.k),
                              ensure_min_features=2)
            res = learn_dictionary(
                X.T, self.k, self.lam, solver=self.solver, seed=self.seed,
                n_iter=self.n_iter, batch_size=self.batch_size, device=self.device,
                an_table=an_table, normalize=self.normalize, n_threads=self.n_threads,
                chunk_mb=self.chunk_mb, progress=self.progress)
            self.result_ = res
            self.atoms_ = res.D
            self.components_ = res.D.T
            self.codes_ = res.A.T.tocsr()
            self.r2_ = res.r2_overall
            self.r2_per_an_ = res.r2_per_an
            self.objective_ = res.objective
            self.sparsity_ = res.sparsity
            self.excluded_ = res.excluded
            return self

        def fit_transform(self, X, y=None, *, an_table: "pd.DataFrame | None" = None):
            """``fit``, then the training ANs' loadings: ``codes_`` as a dense (N, k) float32
            array (exactly the function's ``A.T``; ``transform`` of the same rows agrees up to
            the lasso's tolerance)."""
            return self.fit(X, y, an_table=an_table).codes_.toarray()

        def transform(self, X):
            """Loadings of the rows of ``X`` (n_signals x T, one signal per row, same T as in
            ``fit``) on the learned atoms: dense (n_signals, k) float32, in the units of
            ``X``; all-zero rows for constant signals. The same scaling (``normalize``) and
            lasso (``solver``, ``lam``) as :func:`learn_dictionary`'s loadings."""
            check_is_fitted(self)
            X = validate_data(self, X, dtype="numeric", reset=False)
            A = _encode_columns(X.T, self.atoms_, self.lam, solver=self.solver, seed=self.seed,
                                device=self.device, normalize=self.normalize,
                                n_threads=self.n_threads, chunk_mb=self.chunk_mb,
                                progress=self.progress)
            return A.T.toarray()

        @property
        def _n_features_out(self) -> int:
            """Output columns (one per atom) for ``get_feature_names_out``."""
            return self.components_.shape[0]

        def __sklearn_tags__(self):
            tags = super().__sklearn_tags__()
            # the loadings are float32 whatever the input (the function computes in float32)
            tags.transformer_tags.preserves_dtype = ["float32"]
            return tags

    SparseDictionary.__qualname__ = "SparseDictionary"  # pickle finds it as a module attribute
    return SparseDictionary


def __getattr__(name: str) -> Any:
    # PEP 562: SparseDictionary is built on first access (see _sparse_dictionary_class)
    if name == "SparseDictionary":
        cls = _sparse_dictionary_class()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), "SparseDictionary"])


def atom_correlations(D: np.ndarray) -> np.ndarray:
    """Pearson correlations between the atoms (columns of ``D``), shape (k, k)."""
    D = np.asarray(D, dtype=np.float64)
    if D.ndim != 2 or D.shape[0] < 2:
        raise InputError("D", f"shape {D.shape}", expected="(T, k) with T >= 2")
    Z = D - D.mean(axis=0)
    n = np.linalg.norm(Z, axis=0)
    n[n == 0] = np.inf
    Z /= n
    return Z.T @ Z


@dataclass
class AtomMatch:
    """Hungarian matching of two dictionaries' atoms on |Pearson r|.

    Attributes
    ----------
    r : ndarray, shape (min(k1, k2),)
        |r| of each matched pair, in the order of the first dictionary's matched atoms.
    pairs : ndarray, shape (min(k1, k2), 2)
        (atom of D1, atom of D2) of every pair.
    median : float
        Median of ``r`` (the stability score).
    """

    r: np.ndarray
    pairs: np.ndarray
    median: float


def match_atoms(D1: np.ndarray, D2: np.ndarray) -> AtomMatch:
    """Pair the atoms of two dictionaries (same T) maximising the total |correlation|.

    Uses :func:`scipy.optimize.linear_sum_assignment` on ``|corr(D1, D2)|``.
    """
    from scipy.optimize import linear_sum_assignment

    D1, D2 = np.asarray(D1, np.float64), np.asarray(D2, np.float64)
    if D1.ndim != 2 or D2.ndim != 2 or D1.shape[0] != D2.shape[0]:
        raise InputError("D1, D2", f"shapes {D1.shape} and {D2.shape}",
                         expected="two (T, k) arrays with the same T")
    k1 = D1.shape[1]
    C = np.abs(atom_correlations(np.hstack([D1, D2]))[:k1, k1:])
    rows, cols = linear_sum_assignment(C, maximize=True)
    r = C[rows, cols]
    return AtomMatch(r=r, pairs=np.stack([rows, cols], axis=1), median=float(np.median(r)))


@dataclass
class AtomSubgroups:
    """Every atom's AN sub-group.

    Attributes
    ----------
    members : list of ndarray
        Per atom, the AN indices (into the full N) with a non-zero loading.
    positive, negative : list of ndarray
        The same, split by the loading's sign.
    layer_counts : pandas.DataFrame, shape (k, n_layers)
        Members per atom (rows) and layer (columns), or None without an AN table.
    sizes : ndarray, shape (k,)
        Members per atom.
    """

    members: list
    positive: list
    negative: list
    layer_counts: "pd.DataFrame | None"
    sizes: np.ndarray


def _table_for(result: DictionaryResult, an_table: "pd.DataFrame | None") -> "pd.DataFrame | None":
    tab = an_table if an_table is not None else result.an_table
    _check_an_table(tab, result.n_ans)
    return tab


def atom_subgroups(result: DictionaryResult,
                   an_table: "pd.DataFrame | None" = None) -> AtomSubgroups:
    """Per atom: the ANs with non-zero loading and their layer histogram.

    Parameters
    ----------
    result : DictionaryResult
    an_table : pandas.DataFrame, optional
        N rows with int columns ``layer``, ``unit`` (default: the result's own table).
    """
    import pandas as pd

    tab = _table_for(result, an_table)
    A = result.A.tocsr()
    members, pos, neg = [], [], []
    for i in range(A.shape[0]):
        idx = A.indices[A.indptr[i]:A.indptr[i + 1]]
        val = A.data[A.indptr[i]:A.indptr[i + 1]]
        o = np.argsort(idx)
        idx, val = idx[o].astype(np.int64), val[o]
        members.append(idx)
        pos.append(idx[val > 0])
        neg.append(idx[val < 0])
    counts = None
    if tab is not None:
        layers = np.sort(tab["layer"].unique())
        li = np.searchsorted(layers, tab["layer"].to_numpy())
        hist = np.zeros((A.shape[0], layers.size), dtype=np.int64)
        for i, m in enumerate(members):
            hist[i] = np.bincount(li[m], minlength=layers.size)
        counts = pd.DataFrame(hist, index=pd.RangeIndex(A.shape[0], name="atom"),
                              columns=pd.Index(layers, name="layer"))
    return AtomSubgroups(members=members, positive=pos, negative=neg, layer_counts=counts,
                         sizes=np.array([m.size for m in members], dtype=np.int64))


def reconstruction_r2_by_layer(result: DictionaryResult,
                               an_table: "pd.DataFrame | None" = None) -> "pd.DataFrame":
    """The dictionary's R2 per layer.

    Returns
    -------
    pandas.DataFrame
        One row per layer: ``layer``, ``n_ans``, ``n_excluded``, ``r2`` (pooled
        ``1 - sum SSE / sum SST`` over the layer's kept ANs), ``r2_median`` (median per-AN R2),
        ``nnz_per_an`` (mean non-zero loadings per kept AN).
    """
    import pandas as pd

    tab = _table_for(result, an_table)
    if tab is None:
        raise InputError("an_table", "missing", expected="a DataFrame with int columns "
                         "'layer', 'unit' (or a result learned with one)")
    sst = result.sst_per_an
    sse = np.where(result.excluded, 0.0, (1.0 - np.nan_to_num(result.r2_per_an)) * sst)
    nnz = np.diff(result.A.tocsc().indptr)
    rows = []
    for layer, idx in tab.groupby("layer", sort=True).indices.items():
        keep = idx[~result.excluded[idx]]
        rows.append({"layer": int(layer), "n_ans": int(idx.size),
                     "n_excluded": int(idx.size - keep.size),
                     "r2": float(1 - sse[keep].sum() / sst[keep].sum()) if keep.size else np.nan,
                     "r2_median": float(np.median(result.r2_per_an[keep])) if keep.size
                     else np.nan,
                     "nnz_per_an": float(nnz[keep].mean()) if keep.size else np.nan})
    return pd.DataFrame(rows)


def sweep(X: Any, ks: Sequence[int] = (16, 32, 64, 128),
          lams: Sequence[float] = (0.05, 0.1, 0.2), *, solver: str = "spams",
          seeds: Sequence[int] = (0, 1), n_iter: int = DEFAULT_N_ITER,
          batch_size: int = DEFAULT_BATCH_SIZE, device: str | None = "auto",
          normalize: bool = True, n_threads: int | None = None,
          chunk_mb: float = DEFAULT_CHUNK_MB, progress: bool = False) -> "pd.DataFrame":
    """R2, sparsity and stability over a grid of k and lam.

    For every (k, lam): a full fit with ``seeds[0]`` (``r2``, ``sparsity``, ``objective``); the
    atoms of every other seed matched to it (``stability_seed``: mean over those seeds of the
    median matched |r|); atoms learned on two random halves of the ANs (split by ``seeds[0]``)
    matched to each other (``stability_half``). k > T, or k above the usable ANs of a half, is
    skipped with a logged note.

    Returns
    -------
    pandas.DataFrame
        Columns ``k, lam, r2, sparsity, objective, stability_seed, stability_half, n_excluded,
        seconds``.
    """
    import pandas as pd

    _check_run_params(solver, seeds[0] if len(seeds) else -1, n_iter, batch_size, n_threads,
                      chunk_mb)
    if len(seeds) < 1:
        raise ParameterError("seeds", "empty", expected="at least one seed (two for "
                             "stability_seed)")
    _check_X(X)
    T, N = X.shape
    for lam in lams:
        _check_params(1, lam)
    ks_ok = []
    for k in ks:
        _check_params(k, lams[0] if len(lams) else DEFAULT_LAM)
        if k > T:
            log.info("sweep: k = %d skipped (more atoms than the %d TRs)", k, T)
        else:
            ks_ok.append(int(k))
    if not ks_ok:
        return pd.DataFrame(columns=["k", "lam", "r2", "sparsity", "objective",
                                     "stability_seed", "stability_half", "n_excluded",
                                     "seconds"])
    scan = _scan(X, min(ks_ok), float(lams[0]), None, normalize, chunk_mb)
    if solver == "torch":
        device = resolve_device(device)
    kept = np.flatnonzero(~scan.excluded)
    half = np.random.default_rng([seeds[0], 4]).permutation(kept.size)
    halves = [np.sort(kept[half[: kept.size // 2]]), np.sort(kept[half[kept.size // 2:]])]
    rows = []
    for k in ks_ok:
        for lam in lams:
            t0 = time.perf_counter()
            res = learn_dictionary(X, k, lam, solver=solver, seed=seeds[0], n_iter=n_iter,
                                   batch_size=batch_size, device=device, normalize=normalize,
                                   n_threads=n_threads, chunk_mb=chunk_mb, progress=progress)
            stab_seed = []
            for s in seeds[1:]:
                D_s, _ = _fit_atoms(_Columns(X, kept, scan.scale), k, lam, solver, int(s),
                                    n_iter, batch_size, device, n_threads, progress)
                stab_seed.append(match_atoms(res.D, D_s).median)
            if min(h.size for h in halves) >= k:
                Dh = [_fit_atoms(_Columns(X, h, scan.scale), k, lam, solver, int(seeds[0]),
                                 n_iter, batch_size, device, n_threads, progress)[0]
                      for h in halves]
                stab_half = match_atoms(Dh[0], Dh[1]).median
            else:
                log.info("sweep: stability_half skipped for k = %d (halves of %d ANs)", k,
                         halves[0].size)
                stab_half = np.nan
            rows.append({"k": k, "lam": float(lam), "r2": res.r2_overall,
                         "sparsity": res.sparsity, "objective": res.objective,
                         "stability_seed": float(np.mean(stab_seed)) if stab_seed else np.nan,
                         "stability_half": stab_half, "n_excluded": res.n_excluded,
                         "seconds": time.perf_counter() - t0})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- chance levels
#: The chance models of :func:`chance_levels`.
CHANCE_MODELS = ("random_smooth", "random_pc_basis", "random_ans")
_CHANCE_COLUMNS = ["model", "k", "lam", "n_draws", "r2_lasso", "r2_lasso_sd", "r2_ls",
                   "r2_ls_sd", "sparsity", "sparsity_sd", "stability", "stability_sd",
                   "stability_half", "stability_half_sd", "seconds"]


def _lasso_r2(data: _Columns, scan: _Scan, D: np.ndarray, lam: float, solver: str, seed: int,
              device: str | None, n_threads: int | None, chunk: int) -> tuple[float, float]:
    """Pooled R2 and sparsity of the kept columns lasso-coded on ``D``, exactly as
    :func:`learn_dictionary` computes ``r2_overall`` and ``sparsity`` for its own atoms."""
    N = scan.excluded.size
    D = _unit_atoms(D, seed)
    enc, _ = _encoder(D, lam, solver, seed, device, n_threads)
    if solver == "torch":
        with _torch_context(device, n_threads):
            A, sse, _ = _encode_all(data, N, D, lam, enc, chunk, False)
    else:
        A, sse, _ = _encode_all(data, N, D, lam, enc, chunk, False)
    kept = data.cols
    r2 = float(1.0 - sse[kept].sum() / scan.sst[kept].sum())
    return r2, float(1.0 - A.nnz / (D.shape[1] * kept.size))


def _ls_r2(data: _Columns, scan: _Scan, D: np.ndarray, chunk: int) -> float:
    """Pooled R2 of the kept (scaled) columns projected on the span of ``D`` (least squares)."""
    U, s, _ = np.linalg.svd(np.asarray(D, np.float64), full_matrices=False)
    U = U[:, s > s.max() * max(D.shape) * np.finfo(np.float64).eps]
    sse = 0.0
    for a, b in _iter_chunks(data.n, chunk):
        Xc = data.chunk(a, b).astype(np.float64)
        R = Xc - U @ (U.T @ Xc)
        sse += float((R * R).sum())
    return float(1.0 - sse / scan.sst[data.cols].sum())


def least_squares_r2(X: Any, D: np.ndarray, *, normalize: bool = True,
                     chunk_mb: float = DEFAULT_CHUNK_MB) -> float:
    """Pooled R2 of the responses regressed (least squares, no penalty) on the atoms ``D``.

    The same signals and SST as :func:`learn_dictionary`'s ``r2_overall`` (unit-norm columns
    with ``normalize=True``; constant columns left out), so it compares directly with the
    ``r2_ls`` column of :func:`chance_levels`.
    """
    _check_X(X)
    D = np.asarray(D, dtype=np.float64)
    if D.ndim != 2 or D.shape[0] != X.shape[0]:
        raise InputError("D", f"shape {D.shape}", expected=f"({X.shape[0]}, k): one row per TR "
                         "of X")
    scan = _scan(X, D.shape[1], DEFAULT_LAM, None, normalize, chunk_mb)
    data = _Columns(X, np.flatnonzero(~scan.excluded), scan.scale)
    return _ls_r2(data, scan, D, _chunk_cols(X.shape[0], D.shape[1], chunk_mb))


def _gram(data: _Columns, chunk: int) -> np.ndarray:
    G = np.zeros((data.T, data.T))
    for a, b in _iter_chunks(data.n, chunk):
        Xc = data.chunk(a, b).astype(np.float64)
        G += Xc @ Xc.T
    return G


def _top_pcs(G: np.ndarray, k: int) -> np.ndarray:
    """The first k principal time courses (unit norm, T x k) from the T x T Gram matrix."""
    w, V = np.linalg.eigh(G)
    return V[:, np.argsort(w)[::-1][:k]]


def _haar(rng: np.random.Generator, k: int) -> np.ndarray:
    """A uniformly random k x k orthogonal matrix (QR of a Gaussian, signs fixed)."""
    Q, R = np.linalg.qr(rng.standard_normal((k, k)))
    return Q * np.where(np.diag(R) < 0, -1.0, 1.0)


def _smooth_atoms(rng: np.random.Generator, T: int, k: int, kern: np.ndarray | None) -> np.ndarray:
    from scipy.signal import lfilter

    W = rng.standard_normal((T, k))
    if kern is not None:
        W = lfilter(kern, [1.0], W, axis=0)  # as extract.hrf_convolve: causal, T rows
    W -= W.mean(axis=0)  # the responses are z-scored: a mean would only waste the atom
    return W / np.linalg.norm(W, axis=0)


def chance_levels(X: Any, *, k: int = DEFAULT_K, lam: float = DEFAULT_LAM, seed: int = 0,
                  n_draws: int = 5, models: Sequence[str] = CHANCE_MODELS, tr_s: float = 1.5,
                  hrf: str | None = "spm", solver: str = "spams", device: str | None = "auto",
                  normalize: bool = True, n_threads: int | None = None,
                  chunk_mb: float = DEFAULT_CHUNK_MB) -> "pd.DataFrame":
    """What R2 and stability do k atoms *without* learned structure reach on these responses?

    The learned dictionary's numbers (``r2`` and ``stability_seed``/``stability_half`` of
    :func:`sweep`) mean something only next to these. Chance models (``models``):

    ``"random_smooth"``
        k white-noise time courses convolved with the extraction's HRF (``tr_s``, ``hrf``:
        :func:`llmbrain_utils.extract.hrf_kernel`, applied causally as
        :func:`~llmbrain_utils.extract.hrf_convolve` does; ``hrf=None`` leaves them white),
        centred, unit norm. Independent of the data.
    ``"random_pc_basis"``
        k random orthonormal combinations (Haar rotation) of the first k principal time
        courses of the (scaled) responses: the best k-dimensional least-squares subspace with
        its basis chosen at random.
    ``"random_ans"``
        k distinct random ANs' own (scaled) responses, unit norm: the learner's starting point.

    For every model, ``n_draws`` times: two independent draws A and B. ``r2_lasso`` and
    ``sparsity``: the responses lasso-coded on A with the same ``lam``, solver and scaling as
    :func:`learn_dictionary` (the same code and R2 formula as its ``r2_overall``). ``r2_ls``:
    the responses regressed on A by least squares (:func:`least_squares_r2`). ``stability``:
    :func:`match_atoms` median |r| between A and B (the chance counterpart of
    ``stability_seed``). ``stability_half``: the same with A drawn from one random half of the
    ANs and B from the other (the halves of :func:`sweep` for the same ``seed``; identical in
    distribution to ``stability`` for the data-independent ``random_smooth``). Each statistic
    is the mean over draws, with its SD (``*_sd``, ddof 1; NaN for one draw).

    Parameters
    ----------
    X : array_like, shape (T, N)
        AN responses (as for :func:`learn_dictionary`).
    k, lam : int, float
        Atoms and L1 weight of the dictionary being judged.
    seed : int
        Seeds every draw (and the AN halves, as in :func:`sweep`).
    n_draws : int
        Independent pairs of draws per model (``>= 1``).
    models : sequence of str
        A non-empty subset of :data:`CHANCE_MODELS`.
    tr_s, hrf : float, {"spm", "glover", None}
        The extraction's TR and HRF (for ``"random_smooth"``).
    solver, device, normalize, n_threads, chunk_mb
        As for :func:`learn_dictionary` (the lasso's backend and the signal scaling).

    Returns
    -------
    pandas.DataFrame
        One row per model: ``model, k, lam, n_draws, r2_lasso, r2_lasso_sd, r2_ls, r2_ls_sd,
        sparsity, sparsity_sd, stability, stability_sd, stability_half, stability_half_sd,
        seconds``.

    Raises
    ------
    InputError, ParameterError
        Before any work: as :func:`validate`, plus a bad ``seed``, ``n_draws``, ``models``,
        ``solver``, ``tr_s`` or ``hrf``.
    """
    import pandas as pd

    _check_run_params(solver, seed, 1, 1, n_threads, chunk_mb)
    if isinstance(n_draws, bool) or not isinstance(n_draws, (int, np.integer)) or n_draws < 1:
        raise ParameterError("n_draws", f"{n_draws!r}", expected="an int >= 1")
    if isinstance(models, str) or not len(models) or any(m not in CHANCE_MODELS for m in models):
        raise ParameterError("models", f"{models!r}",
                             expected=f"a non-empty sequence of names from {CHANCE_MODELS}")
    if hrf is not None and hrf not in ("spm", "glover"):
        raise ParameterError("hrf", f"{hrf!r}", expected="'spm', 'glover' or None (white atoms)")
    if (isinstance(tr_s, bool) or not isinstance(tr_s, (int, float, np.floating))
            or not math.isfinite(float(tr_s)) or tr_s <= 0):
        raise ParameterError("tr_s", f"{tr_s!r}", expected="a positive TR in seconds")
    scan = _scan(X, k, lam, None, normalize, chunk_mb)
    if solver == "torch":
        device = resolve_device(device)
    T, N = X.shape
    k, lam = int(k), float(lam)
    kept = np.flatnonzero(~scan.excluded)
    data = _Columns(X, kept, scan.scale)
    chunk = _chunk_cols(T, k, chunk_mb)
    half = np.random.default_rng([seed, 4]).permutation(kept.size)  # as sweep's halves
    halves = [_Columns(X, np.sort(kept[half[: kept.size // 2]]), scan.scale),
              _Columns(X, np.sort(kept[half[kept.size // 2:]]), scan.scale)]
    halves_ok = min(h.n for h in halves) >= k
    kern = None
    if "random_smooth" in models and hrf is not None:
        from .extract import hrf_kernel

        kern = hrf_kernel(float(tr_s), hrf)
    pcs = None
    if "random_pc_basis" in models:
        pcs = _top_pcs(_gram(data, chunk), k)
        pcs_half = [_top_pcs(_gram(h, chunk), k) for h in halves] if halves_ok else None

    def draw(model: str, rng: np.random.Generator, cols: _Columns, which: int) -> np.ndarray:
        if model == "random_smooth":
            return _smooth_atoms(rng, T, k, kern)
        if model == "random_pc_basis":
            U = pcs if which < 0 else pcs_half[which]
            return U @ _haar(rng, k)
        D = cols.take(np.sort(rng.choice(cols.n, size=k, replace=False))).astype(np.float64)
        return D / np.maximum(np.linalg.norm(D, axis=0), 1e-12)

    def summary(v: list) -> tuple[float, float]:
        v = np.asarray(v, dtype=np.float64)
        if np.isnan(v).all():
            return np.nan, np.nan
        return float(np.mean(v)), float(np.std(v, ddof=1)) if v.size > 1 else np.nan

    rows = []
    for m in models:
        t0 = time.perf_counter()
        mi = CHANCE_MODELS.index(m)
        stats: dict[str, list] = {s: [] for s in ("r2_lasso", "r2_ls", "sparsity", "stability",
                                                   "stability_half")}
        for d in range(n_draws):
            rng = np.random.default_rng([seed, 10, mi, d])
            Da, Db = draw(m, rng, data, -1), draw(m, rng, data, -1)
            r2, spars = _lasso_r2(data, scan, Da, lam, solver, seed, device, n_threads, chunk)
            stats["r2_lasso"].append(r2)
            stats["sparsity"].append(spars)
            stats["r2_ls"].append(_ls_r2(data, scan, Da, chunk))
            stats["stability"].append(match_atoms(Da, Db).median)
            if halves_ok:
                Ha, Hb = draw(m, rng, halves[0], 0), draw(m, rng, halves[1], 1)
                stats["stability_half"].append(match_atoms(Ha, Hb).median)
            else:
                stats["stability_half"].append(np.nan)
        row: dict[str, Any] = {"model": m, "k": k, "lam": lam, "n_draws": int(n_draws)}
        for s, v in stats.items():
            row[s], row[f"{s}_sd"] = summary(v)
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
    if not halves_ok:
        log.info("chance_levels: stability_half skipped (halves of %d ANs < k = %d)",
                 halves[0].n, k)
    return pd.DataFrame(rows, columns=_CHANCE_COLUMNS)


# --------------------------------------------------------------------------- synthetic data
def planted_responses(T: int = 200, N: int = 2000, k: int = 12, *, nnz: int = 3,
                      noise: float = 0.3, smooth: float = 2.0, seed: int = 0,
                      out: np.ndarray | None = None,
                      chunk: int = 16384) -> tuple[np.ndarray, np.ndarray, sp.csc_matrix]:
    """AN-like responses with known atoms, for tests and benchmarks.

    ``X = zscore(D0 A0 + E)``: ``D0`` holds k smooth random time courses (white noise through a
    Gaussian filter of width ``smooth`` TRs, unit norm), every column of ``A0`` has ``nnz``
    non-zero loadings (random atoms, random signs, magnitudes in [0.5, 1.5]) and ``E`` is
    white noise with ``noise`` times the clean column's standard deviation.

    Parameters
    ----------
    T, N, k : int
        TRs, ANs, planted atoms.
    nnz : int
        Atoms per AN (``1 <= nnz <= k``).
    noise : float
        Noise-to-signal ratio of the standard deviations (``>= 0``).
    smooth : float
        Temporal smoothing of the atoms, in TRs (0 = white).
    seed : int
    out : ndarray or np.memmap, optional
        A (T, N) float32 array to fill (e.g. a memmap for very large N).
    chunk : int
        Columns generated at a time.

    Returns
    -------
    X : ndarray, shape (T, N), float32
    D0 : ndarray, shape (T, k), float64
    A0 : scipy.sparse.csc_matrix, shape (k, N)
    """
    from scipy.ndimage import gaussian_filter1d

    for name, v, lo in (("T", T, 2), ("N", N, 1), ("k", k, 1), ("nnz", nnz, 1)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise ParameterError(name, f"{v!r}", expected=f"an int >= {lo}")
    if nnz > k:
        raise ParameterError("nnz", f"{nnz} > k = {k}", expected="nnz <= k")
    if noise < 0 or smooth < 0:
        raise ParameterError("noise/smooth", f"{noise}, {smooth}", expected="values >= 0")
    if out is not None and (tuple(out.shape) != (T, N)):
        raise ParameterError("out", f"shape {tuple(out.shape)}", expected=f"({T}, {N})")
    rng = np.random.default_rng(seed)
    D0 = rng.standard_normal((T, k))
    if smooth > 0:
        D0 = gaussian_filter1d(D0, smooth, axis=0, mode="nearest")
    D0 /= np.linalg.norm(D0, axis=0)
    X = np.empty((T, N), np.float32) if out is None else out
    rows, vals = [], []
    for a, b in _iter_chunks(N, chunk):
        n = b - a
        idx = np.argsort(rng.random((n, k)), axis=1)[:, :nnz]
        v = rng.uniform(0.5, 1.5, (n, nnz)) * rng.choice([-1.0, 1.0], (n, nnz))
        A = np.zeros((k, n))
        A[idx.T, np.arange(n)[None, :]] = v.T
        S = D0 @ A
        S += noise * S.std(axis=0) * rng.standard_normal((T, n))
        S -= S.mean(axis=0)
        S /= S.std(axis=0)
        X[:, a:b] = S
        rows.append(idx)
        vals.append(v)
    idx, v = np.concatenate(rows), np.concatenate(vals)
    A0 = sp.csc_matrix((v.ravel(), (idx.ravel(), np.repeat(np.arange(N), nnz))), shape=(k, N))
    if isinstance(X, np.memmap):
        X.flush()
    return X, D0, A0
