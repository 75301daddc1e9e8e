"""Definition files → a header of annotations plus one parsed query.

A definition is plain DuckDB SQL whose leading comment lines carry metadata:

    -- entity: user_id
    -- timestamp: updated_at
    -- owner: fraud-ml@example.com
    SELECT user_id, updated_at, country FROM accounts

The whole file is parsed as it is, comments included, so every line and
column that sqlglot reports is the file's own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import TokenType

from featurestore.errors import Problem

__all__ = ["Annotation", "Definition", "line_of", "load_definitions", "parse_definition"]

VIEW_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
# Lowercase keys followed by ": " (so `-- TODO: …` and `-- https://…` stay ordinary comments).
_ANNOTATION = re.compile(r"^--\s*([a-z][a-z0-9_-]*)\s*:(?:\s+(.*?))?\s*$")


@dataclass(frozen=True, slots=True)
class Annotation:
    key: str
    value: str
    line: int


@dataclass(frozen=True)
class Definition:
    """One file, read and parsed; `query` is None when the SQL is unusable."""

    name: str
    path: Path
    text: str
    annotations: dict[str, Annotation]
    query: exp.Query | None
    comments: tuple[tuple[int, str], ...] = field(default=())

    def line(self, key: str) -> int:
        """The line of annotation `key`, or of the header's end when it is absent."""
        if key in self.annotations:
            return self.annotations[key].line
        return 1


def load_definitions(folder: Path) -> tuple[list[Definition], list[Problem]]:
    """Every `*.sql` file under `folder`, sorted by path, and the problems found."""
    problems: list[Problem] = []
    if not folder.is_dir():
        return [], [Problem(folder, 1, f"definitions folder {folder} does not exist",
                            "create it, or set `definitions = \"…\"` in featurestore.toml", code="config")]
    definitions: list[Definition] = []
    seen: dict[str, Path] = {}
    for path in sorted(folder.rglob("*.sql")):
        if any(part.startswith(".") for part in path.relative_to(folder).parts):
            continue
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(Problem(path, 1, f"cannot read the file: {exc}", "save it as UTF-8 text", code="file"))
            continue
        definition, found = parse_definition(path, text)
        problems.extend(found)
        if definition.name in seen:
            problems.append(Problem(
                path, 1, f"view name '{definition.name}' is already defined by {seen[definition.name]}",
                "rename one of the files: a view's name is its file name", code="duplicate-view"))
            continue
        seen[definition.name] = path
        definitions.append(definition)
    return definitions, problems


def parse_definition(path: Path, text: str) -> tuple[Definition, list[Problem]]:
    """Split the header from the SQL and parse the SQL; never raises for bad input."""
    problems: list[Problem] = []
    name = path.stem
    if not VIEW_NAME.match(name):
        problems.append(Problem(path, 1, f"view name '{name}' (the file name) is not a lowercase SQL identifier",
                                "rename the file to lowercase letters, digits and underscores, e.g. "
                                f"{re.sub(r'[^a-z0-9_]+', '_', name.lower()).strip('_') or 'my_view'}.sql",
                                code="view-name"))
    annotations: dict[str, Annotation] = {}
    comments: list[tuple[int, str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("--"):
            break
        match = _ANNOTATION.match(stripped)
        if not match:
            comments.append((number, stripped[2:].strip()))
            continue
        key, value = match.group(1), match.group(2) or ""
        if key in annotations:
            problems.append(Problem(path, number,
                                    f"annotation '{key}' is given twice (first on line {annotations[key].line})",
                                    "keep one of them", code="duplicate-annotation"))
            continue
        annotations[key] = Annotation(key, value, number)
    query = _parse_sql(path, text, problems)
    return Definition(name, path, text, annotations, query, tuple(comments)), problems


def _parse_sql(path: Path, text: str, problems: list[Problem]) -> exp.Query | None:
    try:
        statements = [s for s in sqlglot.parse(text, read="duckdb")
                      if s is not None and not isinstance(s, exp.Semicolon)]  # `; -- comment` is no statement
    except ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        problems.append(Problem(path, first.get("line") or 1, f"SQL does not parse: {first.get('description', exc)}",
                                "fix the syntax (the file must be one SELECT in DuckDB's dialect)",
                                code="syntax", column=first.get("col") or 1))
        return None
    except TokenError:
        line, what = _unclosed(text)
        problems.append(Problem(path, line, f"SQL does not parse: {what} opened here is never closed",
                                "close every string, quoted name and comment", code="syntax"))
        return None
    if not statements:
        problems.append(Problem(path, 1, "the file holds no SQL",
                                "write one SELECT after the header, "
                                "e.g. `SELECT user_id, ts, amount FROM transactions`",
                                code="empty"))
        return None
    if len(statements) > 1:
        problems.append(Problem(path, _statement_lines(text)[1], f"the file holds {len(statements)} statements",
                                "keep exactly one SELECT per file; put other views in their own files",
                                code="statements"))
        return None
    statement = statements[0]
    if not isinstance(statement, exp.Query):
        kind = statement.key.upper() if isinstance(statement, exp.Expr) else type(statement).__name__
        problems.append(Problem(path, _statement_lines(text)[0], f"only a SELECT is allowed, found {kind}",
                                "a definition is a query: write one SELECT and nothing else (no DDL or DML)",
                                code="not-select"))
        return None
    return statement


def _unclosed(text: str) -> tuple[int, str]:
    """Where the string, quoted name or block comment that runs to the end of `text` starts."""
    closers = {"'": ("'", "a string"), '"': ('"', "a quoted name"), "/*": ("*/", "a comment")}
    position, line = 0, 1
    while position < len(text):
        if text.startswith("--", position):
            end = text.find("\n", position)
            position = len(text) if end < 0 else end
            continue
        opener = "/*" if text.startswith("/*", position) else text[position]
        if opener in closers:
            closer, what = closers[opener]
            end = text.find(closer, position + len(opener))
            if end < 0:
                return line, what
            line += text.count("\n", position, end)
            position = end + len(closer)
            continue
        line += text[position] == "\n"
        position += 1
    return 1, "a string, quoted name or comment"


def _statement_lines(text: str) -> list[int]:
    """The first line of each statement, from the token stream (DDL nodes carry no positions)."""
    lines: list[int] = []
    expecting = True
    for token in sqlglot.Dialect.get_or_raise("duckdb").tokenize(text):
        if token.token_type == TokenType.SEMICOLON:
            expecting = True
        elif expecting:
            lines.append(token.line)
            expecting = False
    return [*lines, 1, 1]


def line_of(node: exp.Expr, default: int = 1) -> int:
    """The first source line of `node` (sqlglot keeps positions on tokens)."""
    lines = [n.meta["line"] for n in node.walk() if "line" in n.meta]
    return min(lines) if lines else default


def column_of(node: exp.Expr, default: int = 1) -> int:
    # sqlglot's `col` is where the token ends; its start is `end - start` characters earlier.
    located = [(n.meta["line"], n.meta.get("col", 1) - (n.meta.get("end", 0) - n.meta.get("start", 0)))
               for n in node.walk() if "line" in n.meta]
    return min(located)[1] if located else default


def find_word(text: str, word: str, default: int = 1) -> tuple[int, int]:
    """(line, column) of the first whole-word `word` outside `--` comments."""
    pattern = re.compile(rf"(?<![\w.]){re.escape(word)}(?!\w)", re.IGNORECASE)
    # Blank out block comments, keeping line breaks so line numbers stay right.
    text = re.sub(r"/\*.*?\*/", lambda m: re.sub(r"[^\n]", " ", m.group(0)), text, flags=re.DOTALL)
    for number, line in enumerate(text.splitlines(), start=1):
        match = pattern.search(line.split("--", 1)[0])
        if match:
            return number, match.start() + 1
    return default, 1
