"""Reading the project's text files: UTF-8 text and YAML (manifests, registries, parameter
sets), with errors that name the file. The lowest layer: imports only :mod:`.errors`."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import InputError


def read_yaml(path: str | os.PathLike, *, what: str, expected: str | None = None):
    """Parse a YAML file (a manifest, a registry, a parameter set); a missing file or invalid
    YAML is an InputError naming the file (``"<what> not found"``, ``"not valid YAML: ..."``)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise InputError(path, f"{what} not found", expected=expected)
    text = read_text(path, what=what)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:  # one line: the problem, its context and where
        mark = getattr(e, "problem_mark", None)
        what = ": ".join(" ".join(str(x).split()) for x in (getattr(e, "context", None),
                                                           getattr(e, "problem", None)) if x)
        raise InputError(path, f"not valid YAML: {what or ' '.join(str(e).split())}",
                         line=mark.line + 1 if mark is not None else None) from None


def read_text(path: str | os.PathLike, *, what: str = "text") -> str:
    """A file's text, decoded as UTF-8 (a leading byte-order mark is dropped); a file in another
    encoding (Latin-1, UTF-16, ...) is one InputError naming the file, the line and the byte."""
    path = Path(path)
    raw = path.read_bytes()
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in raw[:4096]:
        raise InputError(path, f"{what} is UTF-16 (or binary), not UTF-8",
                         expected="a UTF-8 file: save it again as UTF-8")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise InputError(path, f"{what} is not UTF-8 (byte 0x{raw[e.start]:02x} at offset "
                         f"{e.start} cannot be decoded; Latin-1 or another encoding?)", line=line,
                         expected="a UTF-8 file: save it again as UTF-8") from None
