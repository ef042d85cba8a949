"""Command line: ``python -m llmbrain_utils {run,book,fetch,sweep,headlines,notebooks}``.

Every error the package raises on purpose (bad input, bad parameter, damaged artifact) is
printed as one line naming what was wrong and where, and the command exits with status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys

from .errors import LLMBrainError


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m llmbrain_utils", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="execute the stages' notebooks with papermill")
    r.add_argument("--params", help="parameter set (YAML); default params/default.yaml")
    r.add_argument("--only", action="append", metavar="STAGE",
                   help="run only this stage (repeatable)")
    r.add_argument("--name", help="the run's name: its folder is RUNS/books/NAME (default: the "
                   "parameter file's stem and a hash of its parameters; the default run without "
                   "--name is the published book's, notebooks in book/executed)")
    r.add_argument("--force", action="store_true", help="re-execute unchanged notebooks too; "
                   "replace a run of the same --name made with other parameters")
    r.add_argument("--runs-dir", help="artifact store (default $LLMBRAIN_RUNS or ./runs)")
    r.add_argument("--svg", action="store_true", help="draw the notebooks' figures as SVG "
                   "besides PNG (a vector file of every figure in the run folder's figures/)")
    r.add_argument("--executed-dir", help="where the executed notebooks go (default: the run "
                   "folder's notebooks/; book/executed for the default run)")
    r.add_argument("--verbose", action="store_true",
                   help="papermill's progress lines (input, output, kernel) too")
    r.add_argument("--refresh-notebooks", action="store_true",
                   help="copy outputs back into notebooks/ (the nbval references)")
    r.add_argument("--workers", type=int, metavar="N", help="fan the heavy stages' blocks "
                   "(subjects, voxel blocks) out to a LocalCluster of N processes; the numbers "
                   "are those of an in-process run")
    r.add_argument("--scheduler", metavar="ADDR", help="fan them out to a running Dask "
                   "scheduler, e.g. tcp://host:8786 (default: $LLMBRAIN_SCHEDULER, else in-process)")
    r.add_argument("--no-prefetch", action="store_true", help="do not build the later chapters' "
                   "largest artifacts ahead in a second process (default: on with two or more "
                   "CPUs and no scheduler; $LLMBRAIN_PREFETCH=0 also turns it off; the numbers "
                   "are the same either way)")
    b = sub.add_parser("book", help="build the Jupyter Book from the executed notebooks")
    b.add_argument("--run", metavar="NAME", help="build the book of the run NAME (its notebooks) "
                   "into RUNS/books/NAME/_build/html instead of the published book")
    b.add_argument("--runs-dir", help="artifact store of --run (default $LLMBRAIN_RUNS or ./runs)")
    b.add_argument("--no-strict", action="store_true", help="do not treat warnings as errors")
    f = sub.add_parser("fetch", help="download Narratives files (OpenNeuro ds002345)")
    f.add_argument("--story", required=True)
    f.add_argument("--subjects", required=True,
                   help="e.g. 001-010 or 001,003; 'all': every subject of the story (reads the data "
                   "set's participants.tsv)")
    f.add_argument("--dest", help="cache directory (default $LLMBRAIN_DATA)")
    f.add_argument("--kind", action="append", dest="kinds", help="derivative kind(s), e.g. clean")
    f.add_argument("--base-url", help="mirror of the data set")
    h = sub.add_parser("headlines", help="compare the run's headline figures (the numbers that move "
                       "with the BLAS kernel) with notebooks/headlines.json, or write that reference")
    h.add_argument("--runs-dir", help="artifact store (default $LLMBRAIN_RUNS or ./runs)")
    h.add_argument("--run", default="default", metavar="NAME",
                   help="whose figures: a run's own (default: the published default run's); "
                        "'' for the store's copies (the last notebook of each name to end)")
    h.add_argument("--write-reference", action="store_true",
                   help="write notebooks/headlines.json from this run and benchmarks/kernel_spread.json")
    w = sub.add_parser("sweep", help="run a parameter grid (sweep spec, YAML) on Dask")
    w.add_argument("spec", help="sweep spec (YAML), e.g. params/sweep_example.yaml")
    w.add_argument("--scheduler", metavar="ADDR", help="an existing Dask scheduler "
                   "(default: a LocalCluster on this machine)")
    w.add_argument("--workers", type=int, help="LocalCluster worker processes (default: CPU count)")
    w.add_argument("--out", metavar="FILE.tsv", help="results table (default RUNS/sweeps/SPEC.tsv)")
    w.add_argument("--runs-dir", help="artifact store (default $LLMBRAIN_RUNS or ./runs)")
    w.add_argument("--no-progress", action="store_true", help="no progress bar")
    n = sub.add_parser("notebooks", help="carry the chapters' scripts (notebooks/*.py) into their "
                       "notebooks, and write their parameters cells and book/parameters.md from "
                       "config.PARAMS")
    n.add_argument("--chapter", action="append", metavar="NAME",
                   help="only this chapter (repeatable; e.g. fmri); default: every chapter")
    n.add_argument("--check", action="store_true",
                   help="only report what is out of date (exit 1 if anything is)")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "verbose", False):  # papermill's INFO lines only with run --verbose
        logging.getLogger("papermill").setLevel(logging.WARNING)
    try:
        if args.cmd == "run":
            from . import parallel
            from .pipeline import execute

            with parallel.serving(args.workers, args.scheduler):
                result = execute(args.params, only=args.only, force=args.force,
                                 refresh_notebooks=args.refresh_notebooks, runs_dir=args.runs_dir,
                                 executed_dir=args.executed_dir, name=args.name,
                                 svg=args.svg, prefetch=False if args.no_prefetch else None)
            for rec in result.records:
                print(f"{rec['stage']:12s} {rec['status']:10s} {rec['seconds']:8.1f} s")
            for line in result.summary():
                print(line)
        elif args.cmd == "book":
            if args.run:
                from .runfolder import build_book as build_run_book

                print(build_run_book(args.run, args.runs_dir, strict=not args.no_strict))
            else:
                from .pipeline import build_book

                print(build_book(strict=not args.no_strict))
        elif args.cmd == "fetch":
            from . import fetch

            kw = {k: v for k, v in (("dest", args.dest), ("kinds", args.kinds),
                                    ("base_url", args.base_url)) if v}
            subjects = args.subjects.strip()
            if subjects.lower() != "all":  # 'all' is fetch's own: it reads participants.tsv
                subjects = fetch.parse_subjects(subjects)
            for p in fetch.fetch(args.story, subjects, **kw):
                print(p)
        elif args.cmd == "headlines":
            from . import headlines

            run = headlines.read_run(args.runs_dir, run=args.run or None)
            if args.write_reference:
                print(headlines.write_reference(run, headlines.load_spread()))
            else:
                problems = headlines.compare(run, headlines.load_reference())
                for line in problems:
                    print(line)
                n = sum(len(v) for v in headlines.load_reference().values())
                print(f"{n - len(problems)} of {n} headline figures within their tolerance")
                if problems:
                    return 1
        elif args.cmd == "notebooks":
            from . import notebooks

            changed = notebooks.sync(args.chapter, check=args.check)
            for line in changed:
                print(("out of date: " if args.check else "wrote: ") + line)
            if args.check and changed:
                return 1
        elif args.cmd == "sweep":
            from .sweep import run_sweep

            if args.workers is not None and args.workers < 1:
                from .errors import ParameterError

                raise ParameterError("--workers", f"{args.workers}", expected="at least 1")
            logging.getLogger("distributed").setLevel(logging.WARNING)  # scheduler chatter
            table, path = run_sweep(args.spec, scheduler=args.scheduler, workers=args.workers,
                                    out=args.out, runs_dir=args.runs_dir,
                                    progress=not args.no_progress)
            show = [c for c in table.columns if not c.endswith(("_key", "_status"))
                    and c != "task_seconds"]
            shown = table[show].assign(error=table["error"].str.slice(0, 60))
            print(shown.to_string(index=False))
            print(f"results: {path}")
            if (table["status"].isin(["failed", "skipped"])).any():
                return 1
    except LLMBrainError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
