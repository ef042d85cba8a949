"""Argument checks shared by every module: one wording for every ParameterError about an
integer or a choice. The lowest layer: imports only :mod:`.errors`."""

from __future__ import annotations

import re
from typing import Any, Sequence

from .errors import ParameterError

#: a story's name: a plain label (no path), so ``story`` never reads outside ``stimuli/``
STORY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
STORY_WORDS = "a name of letters, digits, '_' and '-' that starts with a letter or digit, not a path"


def check_int(name: str, value: Any, minimum: int = 1, *, allow_none: bool = False,
              expected: str | None = None) -> int | None:
    """``value`` as an int, if it is an integer (not a bool) of at least ``minimum``; else a
    ParameterError naming ``name`` (``None`` passes with ``allow_none``)."""
    import numpy as np

    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ParameterError(name, f"is {value!r}", expected=expected or f"an integer >= {minimum}")
    return int(value)


def check_choice(name: str, value: Any, choices: Sequence) -> Any:
    """``value`` if it is one of ``choices``; else a ParameterError naming ``name`` and listing them."""
    if value not in choices:
        raise ParameterError(name, f"is {value!r}", expected=" or ".join(repr(c) for c in choices))
    return value
