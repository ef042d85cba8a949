"""Work ahead of the notebooks: a second process builds what later chapters will ask for.

A run (:func:`llmbrain_utils.pipeline.execute`) executes its notebooks one after another in one
kernel process, so on a machine of two or more cores the other cores wait while chapters 1-5
run. :class:`Ahead` starts one more process, ``python -m llmbrain_utils.prefetch``, that builds
in the same store the artifacts that the later chapters will ask for and that no chapter in
between makes, in this order (:func:`work_items`):

1. the mapping chapter's recovery analysis (``fbn_recovery``, the largest single artifact of
   the default run);
2. the cross-model chapter's variants: their extractions first, those that read the story once
   per word (``context: causal`` on an encoder) before the others; then the chance levels of
   their dictionaries, the atom explorer's figures, and the rest of each variant's chain up to
   the network mapping (the chapter's sweep).

Every number is the same with it or without it. The artifacts are those the chapters would
build: the same stage functions with the same parameters (each notebook's parameters cell and
the run's parameter set, as papermill gives them: the runner passes them), so the same keys and
inputs; the store
builds a key once (a chapter that asks for an artifact being built here waits on the store's
lock, then reads it). What this process cannot build (a failing input, a missing model) it
leaves to the chapter, which then raises the error itself. It stops when the run ends (its
unfinished build leaves nothing that looks complete: the store writes into a temporary folder
and renames it).

The run starts it only where it can help: two or more CPUs, no Dask scheduler set (then the
stages' blocks use the cluster), and a chapter it serves (``fbn``, ``cross_model``) to execute.
``--no-prefetch`` or ``LLMBRAIN_PREFETCH=0`` turns it off; its log is the run folder's
``prefetch.log``.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger(__name__)

#: the chapters whose artifacts are built ahead
SERVED = ("fbn", "cross_model")
ENV = "LLMBRAIN_PREFETCH"


@dataclass
class Item:
    """One artifact to build ahead: ``fn(*args)`` (a stage function), named ``label``."""

    label: str
    fn: Callable
    args: tuple


def work_items(namespaces: dict[str, dict]) -> list[Item]:
    """What to build ahead, in order (see the module's docstring), for the chapters of
    :data:`SERVED` in ``namespaces``: each chapter's notebook variables after its parameters
    cell and papermill's injected one (:func:`llmbrain_utils.pipeline.notebook_namespace`)."""
    from . import config, stages, sweep
    from .chapters import cross_model

    items: list[Item] = []
    if "fbn" in namespaces:
        cfg = config.collect(namespaces["fbn"])
        if cfg.fmri_source == "synthetic":
            items.append(Item("fbn_recovery", stages.fbn_recovery, (cfg,)))
    if "cross_model" in namespaces:
        ns = namespaces["cross_model"]
        base, variants = config.collect(ns), ns.get("variants") or []
        if not variants:
            return items
        spec = sweep.parse_spec({"common": dict(base), "points": variants, "until": "fbn"},
                                source="cross-model variants")
        nodes = list(sweep.plan(spec).nodes.values())

        def reads_per_word(cfg) -> bool:  # an encoder read once per word: the longest extractions
            return cfg.context == "causal"

        ext = [n for n in nodes if n.stage == "extraction"]
        ext.sort(key=lambda n: not reads_per_word(n.cfg))  # stable: the sweep's order otherwise
        items += [Item(f"extraction {n.cfg.model} ({n.cfg.context}, {n.cfg.context_tokens} tokens"
                       f"{', untrained' if n.cfg.untrained else ''})",
                       stages.extraction, (n.cfg,)) for n in ext]
        last = {p.get("name"): config.validate(spec.stage_config(spec.until, p))
                for p in spec.points()}
        items += [Item(f"dictionary_chance {name}", stages.dictionary_chance, (cfg,))
                  for name, cfg in last.items()]
        space_volume = base.space == "volume"
        items += [Item(f"explorer_figures {name}", stages.explorer_figures, (last[name], name))
                  for name in cross_model.EXPLORED if name in last and space_volume]
        items += [Item(f"{n.stage} {n.cfg.model}", sweep._stage_function(n.stage), (n.cfg,))
                  for n in nodes if n.stage != "extraction"]
    return items


def run_items(items: list[Item]) -> list[dict]:
    """Build every item in order; a failure is logged and the next item goes on (the chapter
    that needs it builds it again and raises). Returns one record per item: ``label``,
    ``status`` (``done`` / ``failed``), ``seconds``, and the artifact's ``stage`` and ``key``
    (or the ``error``)."""
    out = []
    for it in items:
        t0 = time.perf_counter()
        rec: dict[str, Any] = {"label": it.label}
        try:
            art = it.fn(*it.args)
        except Exception as e:  # the chapter raises it itself, with its context
            rec.update(status="failed", error=f"{type(e).__name__}: {' '.join(str(e).split())[:300]}")
        else:
            rec.update(status="done", stage=art.stage, key=art.key)
        rec["seconds"] = round(time.perf_counter() - t0, 1)
        out.append(rec)
        log.warning("[prefetch] %s", json.dumps(rec))
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m llmbrain_utils.prefetch JOB.json``: the job written by :class:`Ahead`
    (``{"namespaces": {chapter: its notebook's variables}}``)."""
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", stream=sys.stdout)
    job = json.loads(Path(argv[0]).read_text())
    t0 = time.perf_counter()
    try:
        items = work_items(job["namespaces"])
    except Exception as e:  # the run itself reports bad parameters
        log.warning("[prefetch] nothing to do: %s: %s", type(e).__name__, e)
        return 0
    log.warning("[prefetch] %d artifacts to build ahead: %s", len(items), ", ".join(i.label for i in items))
    run_items(items)
    log.warning("[prefetch] finished in %.1f s", time.perf_counter() - t0)
    return 0


def read_log(path: str | os.PathLike) -> list[dict]:
    """The item records (:func:`run_items`) of a ``prefetch.log``, in order."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        _, sep, rest = line.partition("[prefetch] {")
        if sep:
            out.append(json.loads("{" + rest))
    return out


def wanted(explicit: bool | None) -> bool:
    """Whether a run builds ahead: ``explicit`` when given, else ``$LLMBRAIN_PREFETCH`` (``0``:
    no), else when there are two or more CPUs and no Dask scheduler is set."""
    if explicit is not None:
        return bool(explicit)
    env = os.environ.get(ENV)
    if env is not None:
        return env.strip() not in ("0", "", "false", "no")
    from . import parallel

    return (os.cpu_count() or 1) >= 2 and not os.environ.get(parallel.ENV)


class Ahead:
    """The process that builds ahead for a run (``with Ahead(namespaces, log_path):``): started
    on entry when ``namespaces`` (chapter -> its notebook's variables, see :func:`work_items`)
    holds a chapter of :data:`SERVED`, stopped (killed if still building) on exit."""

    def __init__(self, namespaces: dict[str, dict], log_path: str | os.PathLike) -> None:
        self.log_path = Path(log_path)
        self.namespaces = {c: ns for c, ns in namespaces.items() if c in SERVED}
        self.proc: subprocess.Popen | None = None
        self._job: Path | None = None

    def __enter__(self) -> "Ahead":
        self.log_path.unlink(missing_ok=True)  # an older run's log says nothing of this one
        if not self.namespaces:
            return self
        from . import parallel

        try:  # building ahead is optional: what it cannot pass on, the run does without it
            text = json.dumps({"namespaces": self.namespaces})
        except (TypeError, ValueError) as e:
            log.warning("not building ahead: the parameters do not pass as JSON (%s)", e)
            return self
        fd, job = tempfile.mkstemp(prefix="llmbrain-prefetch-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        self._job = Path(job)
        env = dict(os.environ)
        env.update({v: "1" for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
        env["TQDM_DISABLE"] = "1"
        env.pop(parallel.ENV, None)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "w") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "llmbrain_utils.prefetch", job],
                                         stdout=out, stderr=subprocess.STDOUT, env=env,
                                         cwd=str(Path(__file__).resolve().parents[1]))
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # a build in flight leaves only its temporary folder
            self.proc.wait()
            with open(self.log_path, "a") as out:
                out.write("[prefetch] stopped: the run ended\n")
        if self._job is not None:
            self._job.unlink(missing_ok=True)


if __name__ == "__main__":  # pragma: no cover - the subprocess's entry
    sys.exit(main())
