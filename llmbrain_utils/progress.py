"""Progress bars of the long steps inside a stage: text bars (tqdm) on stderr.

A stage that computes (rather than reuses its artifact) shows one bar per long step: the
extraction's batches, the dictionary's iterations, the encoding's subjects, the permutation
tests' subjects. In a notebook the bar is a stderr stream that updates in place (no widget, so
an executed notebook keeps a plain line such as ``encoding subjects: 100%|##| 8/8 [00:41<00:00]``);
in a terminal it is tqdm's usual bar. Bars never change a result: they are not part of any
artifact's key.

Shown by default in a notebook's kernel and on a terminal, not in logs or pipes;
``LLMBRAIN_PROGRESS=0`` (or ``false``, ``no``, ``off``) turns them off everywhere and ``=1``
forces them on (the same switch as the command line's bar over a notebook's cells).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable

_OFF = ("0", "", "false", "no", "off")


def forced() -> bool | None:
    """``LLMBRAIN_PROGRESS`` as on (True), off (False) or unset (None)."""
    flag = os.environ.get("LLMBRAIN_PROGRESS")
    return None if flag is None else flag.strip().lower() not in _OFF


def enabled() -> bool:
    """Whether bars are shown here (module docstring)."""
    if forced() is not None:
        return forced()
    err = sys.stderr
    in_kernel = type(err).__module__.startswith("ipykernel")  # a notebook's stderr stream
    try:
        return in_kernel or err.isatty()
    except (AttributeError, ValueError):  # closed or replaced stream
        return in_kernel


def bar(iterable: Iterable, desc: str, *, total: int | None = None, unit: str = "it",
        show: bool | None = None):
    """``iterable`` wrapped in a text bar named ``desc`` (a plain iterator when bars are off).

    ``show``: force on or off (default :func:`enabled`)."""
    from tqdm import tqdm

    on = enabled() if show is None else bool(show)
    return tqdm(iterable, desc=desc, total=total, unit=unit, disable=not on, file=sys.stderr,
                mininterval=1.0, leave=True, ascii=True, ncols=86)
