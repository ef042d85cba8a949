"""Headline figures: the numbers the book prints that move with the CPU's BLAS kernel.

Online dictionary learning is non-convex: the rounding differences between two OpenBLAS
kernels (e.g. ``Haswell`` and ``SkylakeX``) send SPAMS to another solution, and every stage
after the dictionary inherits it. A run is deterministic on one machine, not across machines.
So the notebooks print two kinds of output:

* text and numbers that do not move with the kernel (the stimulus, the extraction, the fMRI
  twin, parameters, structure): nbval compares them exactly (``# NBVAL_CHECK_OUTPUT`` cells);
* numbers that do: each is recorded here with :meth:`Recorder.add` (``<store>/headlines/
  <notebook>.json``), printed with its measured spread over seeds and kernels, and compared by
  pytest (``tests/test_headlines.py``) with the committed reference
  (``notebooks/headlines.json``) within its tolerance.

The spread is measured by ``benchmarks/kernel_spread.py``: the default run under two OpenBLAS
kernels (set only in that script's child processes) and three seeds, written to
``benchmarks/kernel_spread.json``. The tolerance of a figure is :func:`tolerance`: twice its
largest difference between the kernels at the same seed, and at least half a unit of its last
printed digit. The seed is a parameter: a run with another seed is a real change and must fail
the regression (the fMRI twin's figures, which no kernel moves, catch it exactly); the seed
spread is what the book prints beside each figure, as its numerical uncertainty.
"""

from __future__ import annotations

import json
import math
import os
import textwrap
from pathlib import Path
from typing import Any

from .errors import InputError, ParameterError

REPO = Path(__file__).resolve().parents[1]
SPREAD_FILE = REPO / "benchmarks" / "kernel_spread.json"
REFERENCE_FILE = REPO / "notebooks" / "headlines.json"


def headlines_dir(runs_dir: str | os.PathLike | None = None) -> Path:
    """``<store>/headlines/``: the headline figures of the last notebook of each name that
    completed on this store (a pipeline run's notebooks write into their run folder's
    ``headlines/``, copied here when each notebook ends; a notebook run by hand writes here)."""
    from .store import Store

    return Store(runs_dir).root / "headlines"


def _number(name: str, value: Any) -> float | int | None:
    import numbers

    if value is None:
        return None
    kind = getattr(getattr(value, "dtype", None), "kind", None)
    if isinstance(value, numbers.Integral) or (kind in ("i", "u", "b") and getattr(value, "ndim", 1) == 0):
        return int(value)
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ParameterError(name, f"is {value!r}", expected="a number (a headline figure)") from None
    return None if math.isnan(f) else f


class Recorder:
    """Collect a notebook's headline figures and write them to ``<store>/headlines/NB.json``.

    >>> hl = Recorder("02_dictionary", cfg)
    >>> hl.add("r2", res.r2_overall, digits=2)   # returns the value
    """

    def __init__(self, notebook: str, cfg: dict | None = None, *, spread: dict | None = None):
        self.notebook = notebook
        # a pipeline run gives its kernel its run folder's headlines/ (LLMBRAIN_HEADLINES_DIR),
        # so runs that share a store never write into one another's figures
        own = os.environ.get("LLMBRAIN_HEADLINES_DIR")
        folder = Path(own) if own else headlines_dir((cfg or {}).get("runs_dir"))
        self.path = folder / f"{notebook}.json"
        self.figures: dict[str, dict] = {}
        self.verdicts: dict[str, str] = {}
        self._spread = spread if spread is not None else load_spread(missing_ok=True)
        #: the spread was measured on the default run: other parameters get no brackets
        self.off_default = sorted(_off_default(cfg)) if cfg else []
        if self.off_default and spread is None:
            self._spread = {}

    def add(self, name: str, value: Any, *, digits: int = 3) -> Any:
        """Record ``value`` under ``name`` (printed with ``digits`` decimals); NaN/None = absent."""
        self.figures[name] = {"value": _number(name, value), "digits": int(digits)}
        self._write()
        return value

    def glue_all(self) -> None:
        """Glue every recorded figure (myst-nb), so the book's pages can cite it as
        ``{glue:text}`executed/NB.ipynb::hl_NAME:.2f```; call it in the notebook's last,
        removed cell (glued outputs between printed lines would split them)."""
        names = [glue_name(n) for n in self.figures] + [glue_name("verdict_" + v) for v in self.verdicts]
        clash = sorted({n for n in names if names.count(n) > 1})
        if clash:  # the book refuses duplicate glue keys
            raise ParameterError("figure names", f"{clash} collide as glue names",
                                 expected="names that differ in letters or digits")
        for name, f in self.figures.items():
            _glue(name, f["value"])
        for label, verdict in self.verdicts.items():
            _glue("verdict_" + label, verdict)

    def add_table(self, prefix: str, table, *, digits: int = 3) -> None:
        """Record every numeric cell of a DataFrame as ``prefix[row][column]``."""
        for idx, row in table.iterrows():
            key = idx if isinstance(idx, tuple) else (idx,)
            label = ",".join(str(k) for k in key)
            for col, val in row.items():
                try:
                    float(val)
                except (TypeError, ValueError):
                    continue
                self.add(f"{prefix}[{label}][{col}]", val, digits=digits)

    def _write(self) -> None:
        from .store import write_json_atomic

        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.path, {"notebook": self.notebook, "figures": self.figures})

    def spread(self, name: str) -> tuple[float, float] | None:
        """The range of ``name`` over the measured seeds and kernels, or None if not measured."""
        fig = self._spread.get(self.notebook, {}).get(name)
        if not fig or not fig.get("values"):
            return None
        vals = [v for v in fig["values"].values() if v is not None]
        return (min(vals), max(vals)) if vals else None

    def legend(self) -> str:
        """What the brackets of :meth:`fmt` mean, in one line."""
        n = self._spread.get("_meta", {})
        if self.off_default and not n:
            shown = ", ".join(self.off_default[:3]) + (", ..." if len(self.off_default) > 3 else "")
            return "\n".join(textwrap.wrap(
                f"(no brackets: the spread over seeds and BLAS kernels was measured for the "
                f"default parameters, and this run sets {shown})", 88))
        if not n:
            return "(the spread over seeds and BLAS kernels is not measured yet: benchmarks/kernel_spread.py)"
        return (f"[brackets: the range over {n.get('n_seeds', '?')} seeds x {n.get('n_kernels', '?')} "
                f"BLAS kernels, benchmarks/kernel_spread.json]")

    def fmt(self, name: str, value: Any = None, *, digits: int | None = None) -> str:
        """``value`` (recorded under ``name``) with its seed-and-kernel range in brackets, e.g.
        ``"0.66 [0.65, 0.67]"`` (see :meth:`legend`)."""
        fig = self.figures.get(name)
        if fig is None:
            raise ParameterError(name, "was not recorded", expected="Recorder.add(name, value) first")
        d = fig["digits"] if digits is None else digits
        v = fig["value"] if value is None else value
        text = "n/a" if v is None else f"{v:.{d}f}"
        rng = self.spread(name)
        if rng is not None:
            text += f" [{rng[0]:.{d}f}, {rng[1]:.{d}f}]"
        return text

    def holds(self, name: str, predicate, *, label: str | None = None) -> str:
        """Whether ``predicate(value)`` is true for ``name`` under every measured seed and BLAS
        kernel: ``"holds"`` (all), ``"fails"`` (none) or ``"not determined"`` (some: a verdict
        that flips with the seed or the kernel is not a finding). With ``label`` the verdict is
        kept and glued by :meth:`glue_all` as ``hl_verdict_<label>``."""
        return self.holds_joint([name], predicate, label=label)

    def holds_joint(self, names: list[str], predicate, *, label: str | None = None) -> str:
        """Like :meth:`holds` for a relation between figures (``predicate(*values)``), evaluated
        within each measured run (the same seed and kernel for every figure)."""
        spread = self._spread.get(self.notebook, {})
        runs = [set((spread.get(n) or {}).get("values", {})) for n in names]
        common = set.intersection(*runs) if runs and all(runs) else set()
        ok = []
        for key in sorted(common):
            vals = [spread[n]["values"][key] for n in names]
            if all(v is not None for v in vals):
                ok.append(bool(predicate(*vals)))
        if not ok:
            here = [self.figures.get(n, {}).get("value") for n in names]
            verdict = ("not determined" if any(v is None for v in here) else
                       ("holds" if predicate(*here) else "fails") + " in this run (spread not measured)")
        else:
            verdict = "holds" if all(ok) else "fails" if not any(ok) else "not determined"
        if label is not None:
            self.verdicts[label] = verdict
        return verdict


def glue_name(name: str) -> str:
    """The name under which a figure is glued for the book's pages (``{glue:text}`` role):
    ``hl_`` + the figure's name with every run of other characters than letters and digits as
    one ``_``."""
    import re

    return "hl_" + re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")


def _glue(name: str, value) -> None:
    """Glue a figure (myst-nb) when running in a notebook kernel, so pages can cite it."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    if get_ipython() is None or value is None:
        return
    from myst_nb import glue

    glue(glue_name(name), value, display=False)


# ------------------------------------------------------------------------------- stage figures

def dictionary_figures(result) -> dict[str, float]:
    """The dictionary stage's headline figures (``result``: a ``DictionaryResult``)."""
    import numpy as np

    from .dictionary import atom_subgroups

    sizes = atom_subgroups(result).sizes
    n_used = max(result.n_ans - result.n_excluded, 1)
    return {"r2": float(result.r2_overall), "sparsity": float(result.sparsity),
            "atoms_per_an": result.A.nnz / n_used, "subgroup_median": float(np.median(sizes)),
            "subgroup_min": int(sizes.min()), "subgroup_max": int(sizes.max()),
            "atoms_unused": int((sizes == 0).sum())}


def fmri_figures(art, alpha: float) -> dict[str, float]:
    """The fMRI stage's figures (``art``: its artifact): the data, not the model, so no BLAS
    kernel moves them, while any change of the twin (its seed, SNR, subjects) does."""
    import numpy as np

    from . import fmri

    isc, isc_p = np.load(art.file("isc.npy")), np.load(art.file("isc_p.npy"))
    keep = fmri.isc_mask(isc_p, alpha)
    out = {"isc_median": float(np.median(isc)), "isc_max": float(isc.max()),
           "isc_voxels": int(keep.sum())}
    if "tsnr.npy" in art.meta["files"]:
        out["tsnr_median"] = float(np.median(np.load(art.file("tsnr.npy")).mean(axis=0)))
    return out


#: parameters that do not change what the spread describes (where and how the run is stored;
#: the seed, over which the spread itself is measured)
_SPREAD_FREE = ("runs_dir", "seed", "n_workers", "variants")


def _off_default(cfg: dict) -> set[str]:
    """The parameters of ``cfg`` that differ from the defaults the spread was measured on."""
    from . import config

    ref = config.defaults()
    return {k for k, v in cfg.items() if k in ref and k not in _SPREAD_FREE and v != ref[k]}


# ------------------------------------------------------------------------------- spread, tolerance

def load_spread(path: str | os.PathLike | None = None, *, missing_ok: bool = False) -> dict:
    """``benchmarks/kernel_spread.json`` as ``{notebook: {name: figure}, "_meta": {...}}``."""
    path = Path(path) if path else SPREAD_FILE
    if not path.is_file():
        if missing_ok:
            return {}
        raise InputError(path, "the measured spread is missing", expected="benchmarks/kernel_spread.py's output")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        out: dict = {"_meta": {k: v for k, v in data.items() if k != "figures"}}
        for fig in data["figures"]:
            nb, name = fig["name"].split(":", 1)
            out.setdefault(nb, {})[name] = fig
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise InputError(path, f"malformed spread file ({e})",
                         expected='{"figures": [{"name": "NB:figure", "values", "kernel_spread", "seed_spread"}]}') from None
    return out


def tolerance(kernel_spread: float | None, seed_spread: float | None, digits: int) -> float:
    """The regression's tolerance of one figure (see the module docstring); ``seed_spread`` is
    accepted for the record but does not widen it (a changed seed must be caught)."""
    k = kernel_spread or 0.0
    return max(2.0 * k, 0.5 * 10.0 ** (-digits))


def read_run(runs_dir: str | os.PathLike | None = None, run: str | None = None) -> dict[str, dict]:
    """The headline figures a run recorded: ``{notebook: {name: {"value", "digits"}}}``.

    ``run``: a named run's own figures (``<store>/books/RUN/headlines/``); None: the store's
    copies (:func:`headlines_dir`, the last notebook of each name to end on this store)."""
    from .store import Store

    folder = Store(runs_dir).root / "books" / run / "headlines" if run else headlines_dir(runs_dir)
    if run and not folder.is_dir():
        raise InputError(folder, f"run {run!r} recorded no headline figures here",
                         expected="a run of this store (python -m llmbrain_utils run ...)")
    out = {}
    for p in sorted(folder.glob("*.json")):
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
            out[data["notebook"]] = data["figures"]
        except (ValueError, KeyError) as e:
            raise InputError(p, f"malformed headline figures ({e})", expected="a Recorder's JSON") from None
    return out


def write_reference(run: dict[str, dict], spread: dict, path: str | os.PathLike | None = None) -> Path:
    """Write the committed reference: every figure's value and tolerance."""
    from .store import write_json_atomic

    path = Path(path) if path else REFERENCE_FILE
    ref: dict[str, dict] = {}
    missing = []
    for nb, figs in sorted(run.items()):
        for name, f in sorted(figs.items()):
            s = spread.get(nb, {}).get(name)
            if s is None:
                missing.append(f"{nb}:{name}")
                continue
            ref.setdefault(nb, {})[name] = {
                "value": f["value"], "digits": f["digits"],
                "tolerance": tolerance(s.get("kernel_spread"), s.get("seed_spread"), f["digits"])}
    if missing:
        raise InputError(SPREAD_FILE, f"{len(missing)} figure(s) have no measured spread, e.g. {missing[:3]}",
                         expected="rerun benchmarks/kernel_spread.py after changing the notebooks")
    write_json_atomic(path, {"about": "headline figures of the default run and their tolerances "
                                      "(llmbrain_utils.headlines); nbval checks the rest",
                             "notebooks": ref})
    return path


def load_reference(path: str | os.PathLike | None = None) -> dict[str, dict]:
    path = Path(path) if path else REFERENCE_FILE
    if not path.is_file():
        raise InputError(path, "the headline reference is missing", expected="headlines.write_reference")
    return json.loads(path.read_text(encoding="utf-8"))["notebooks"]


def compare(run: dict[str, dict], reference: dict[str, dict], *,
            notebooks: list[str] | None = None) -> list[str]:
    """Differences of a run's figures from the reference beyond tolerance, as readable lines
    (empty when the run reproduces the reference). A figure missing on either side is a
    difference too."""
    problems = []
    for nb in sorted(reference if notebooks is None else notebooks):
        ref, got = reference.get(nb, {}), run.get(nb)
        if got is None:
            problems.append(f"{nb}: no headline figures recorded")
            continue
        for name in sorted(set(ref) | set(got)):
            if name not in got:
                problems.append(f"{nb}:{name}: not recorded by the run")
                continue
            if name not in ref:
                problems.append(f"{nb}:{name}: recorded but not in the reference")
                continue
            a, b, tol = got[name]["value"], ref[name]["value"], ref[name]["tolerance"]
            if a is None or b is None:
                if (a is None) != (b is None):
                    problems.append(f"{nb}:{name}: {a} against the reference's {b}")
                continue
            if abs(a - b) > tol * (1 + 1e-9):
                problems.append(f"{nb}:{name}: {a} against the reference's {b} "
                                f"(tolerance {tol:.4g}, off by {abs(a - b):.4g})")
    return problems
