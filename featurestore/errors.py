"""The error tree, and the located problems that validation collects.

Every error a user can cause derives from `FeatureStoreError`; the CLI prints
its message and exits without a traceback. Validation does not stop at the
first problem: it collects `Problem`s and raises `InvalidProjectError` with
all of them.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = [
    "BadRequestError",
    "ConfigError",
    "DefinitionError",
    "FeatureDeprecationWarning",
    "FeatureStoreError",
    "InvalidProjectError",
    "Problem",
    "PushRejected",
    "SunsetError",
    "UnavailableError",
    "UnknownNameError",
    "closest",
]


@dataclass(frozen=True, slots=True)
class Problem:
    """One located finding: what is wrong, where, and what to write instead."""

    path: Path
    line: int
    message: str
    hint: str = ""
    code: str = "invalid"
    column: int = 1
    severity: Literal["error", "warning"] = "error"

    def location(self, root: Path | None = None) -> str:
        return f"{_relative(self.path, root)}:{self.line}:{self.column}"

    def render(self, root: Path | None = None) -> str:
        text = f"{self.location(root)}: {self.severity}[{self.code}] {self.message}"
        return f"{text}\n    fix: {self.hint}" if self.hint else text

    def to_dict(self, root: Path | None = None) -> dict[str, object]:
        return {
            "path": str(_relative(self.path, root)),
            "line": self.line,
            "column": self.column,
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
            "hint": self.hint,
        }


class FeatureStoreError(Exception):
    """Base of every error a user can cause; its message says what to do."""


class UnknownNameError(FeatureStoreError):
    """A view or feature that the project does not define (the message suggests the closest)."""


class BadRequestError(FeatureStoreError):
    """Input of the wrong shape or type: entity keys, feature references, instants."""


class PushRejected(FeatureStoreError):
    """A pushed batch refused before anything was written: what is wrong, at which row and column."""

    def __init__(self, message: str, *, row: int | None = None, column: str | None = None) -> None:
        where = ", ".join(part for part in (f"row {row}" if row is not None else "",
                                            f"column '{column}'" if column else "") if part)
        super().__init__(f"{where}: {message}" if where else message)
        self.row, self.column = row, column


class UnavailableError(FeatureStoreError):
    """The online store cannot answer now (PostgreSQL unreachable, a view not yet materialized)."""


class SunsetError(FeatureStoreError):
    """A read of a deprecated view on or after its sunset date, by a consumer that did not opt in."""


class ConfigError(FeatureStoreError):
    """The project configuration is missing or wrong."""


class DefinitionError(FeatureStoreError):
    """One problem in one definition file, with its location."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.render())
        self.problem = problem
        self.path = problem.path
        self.line = problem.line
        self.column = problem.column


class InvalidProjectError(FeatureStoreError):
    """Validation found errors; `problems` holds every one of them."""

    def __init__(self, problems: Iterable[Problem], root: Path | None = None) -> None:
        self.problems = tuple(problems)
        errors = [p for p in self.problems if p.severity == "error"]
        lines = [p.render(root) for p in errors]
        super().__init__(
            f"the project has {len(errors)} error(s); run `featurestore validate` for all of them:\n"
            + "\n".join(lines)
        )


def closest(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate nearest to `word`, if any is close enough to be a typo."""
    matches = difflib.get_close_matches(word, sorted(set(candidates)), n=1, cutoff=0.6)
    return matches[0] if matches else None


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    match = closest(word, candidates)
    return f"did you mean '{match}'?" if match else ""


def first_line(exc: BaseException) -> str:
    """An exception's message up to its first line break (its type's name if it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _relative(path: Path, root: Path | None) -> Path:
    if root is None:
        return path
    try:
        return path.resolve().relative_to(root.resolve())
    except ValueError:
        return path


class FeatureDeprecationWarning(DeprecationWarning):
    """A read of a deprecated view before its sunset: it still works; move to the replacement."""
