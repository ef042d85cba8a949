"""Errors of llmbrain: every bad input names where it came from and what was expected."""

from __future__ import annotations


class LLMBrainError(Exception):
    """Base class of every error the package raises on purpose."""


class InputError(LLMBrainError, ValueError):
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
