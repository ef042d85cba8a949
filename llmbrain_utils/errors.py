"""Errors of llmbrain: every bad input names where it came from and what was expected."""

from __future__ import annotations


class LLMBrainError(Exception):
    """Base class of every error the package raises on purpose."""


def _restore(cls, args: tuple, state: dict):
    """Unpickle an error whose constructor takes other arguments than its message."""
    err = cls.__new__(cls)
    Exception.__init__(err, *args)
    err.__dict__.update(state)
    return err


class _Picklable:
    """Errors raised inside a Dask worker travel back pickled: keep their type and fields."""

    def __reduce__(self):
        return _restore, (type(self), self.args, dict(self.__dict__))


class InputError(_Picklable, LLMBrainError, ValueError):
    """A bad input: names the source (file or parameter), the place (line, field) and the problem.

    >>> raise InputError("story.csv", "offset before onset", line=12, field="offset")
    """

    def __init__(self, source, problem, *, line=None, field=None, expected=None):
        self.source, self.problem, self.line, self.field, self.expected = (
            str(source), problem, line, field, expected)
        where = str(source)
        if line is not None:
            where += f", line {line}"
        if field is not None:
            where += f", field '{field}'"
        msg = f"{where}: {problem}"
        if expected is not None:
            msg += f" (expected {expected})"
        super().__init__(msg)


class ParameterError(InputError):
    """An invalid parameter, raised before any work starts."""

    def __init__(self, name, problem, *, expected=None):
        super().__init__(f"parameter '{name}'", problem, expected=expected)


class ArtifactError(LLMBrainError):
    """A stored artifact is missing, incomplete, or does not match its sidecar."""


class StoreError(ArtifactError, OSError):
    """The artifact store cannot be written (full disk, read-only or not a folder).

    Names the store, the artifact and the operating system's reason; nothing partial is kept.
    It is an OSError too (with the original ``errno``), so code that caught the raw error still
    catches it.

    >>> raise StoreError("/data/runs", "cannot write dictionary/0123abcd: No space left on device")
    """

    def __init__(self, root, problem, *, errno=None, expected=None):
        self.root, self.problem = str(root), problem
        msg = f"artifact store {root}: {problem}"
        if expected is not None:
            msg += f" (expected {expected})"
        if errno is not None:
            OSError.__init__(self, errno, msg)
        else:
            OSError.__init__(self, msg)
        self.message = msg

    def __str__(self):
        return self.message


class StageError(_Picklable, LLMBrainError):
    """A stage's notebook stopped on one of the package's errors (a bad input, a parameter, the
    store): its type and message, the stage and notebook, and where the failed copy lies."""

    def __init__(self, stage, notebook, ename, evalue, failed_copy=None):
        self.stage, self.notebook, self.ename, self.evalue = stage, notebook, ename, evalue
        msg = f"stage '{stage}' ({notebook}): {ename}: {' '.join(str(evalue).split())}"
        if failed_copy is not None:
            msg += f" [failed notebook: {failed_copy}]"
        super().__init__(msg)
