"""How the command prints problems: rich text for people, JSON for programs, workflow annotations for CI.
"""

from __future__ import annotations

import json
from pathlib import Path

from featurestore.errors import Problem


def print_problems(problems: list[Problem], fmt: str, root: Path | None, checked: int | None = None) -> None:
    errors = sum(p.severity == "error" for p in problems)
    warnings = len(problems) - errors
    if fmt == "json":
        print(json.dumps({"errors": errors, "warnings": warnings,
                          "problems": [p.to_dict(root) for p in problems]}, indent=2))
        return
    if fmt == "github":
        for p in problems:
            title = _escape(p.code, prop=True)
            body = _escape(p.message + (f" — fix: {p.hint}" if p.hint else ""))
            print(f"::{p.severity} file={_escape(str(p.to_dict(root)['path']), prop=True)},line={p.line},"
                  f"col={p.column},title={title}::{body}")
        print(f"{errors} error(s), {warnings} warning(s)")
        return
    from rich.console import Console
    from rich.markup import escape

    console = Console(highlight=False, soft_wrap=True)
    for p in problems:
        colour = "red" if p.severity == "error" else "yellow"
        console.print(f"[bold]{escape(p.location(root))}[/]: [{colour}]{p.severity}[/][dim]\\[{p.code}][/] "
                      f"{escape(p.message)}")
        if p.hint:
            console.print(f"    [green]fix:[/] {escape(p.hint)}")
    if errors:
        console.print(f"[red]{errors} error(s)[/], {warnings} warning(s)")
    else:
        what = f"{checked} view(s) valid" if checked is not None else "valid"
        console.print(f"[green]✓ {what}[/]" + (f", {warnings} warning(s)" if warnings else ""))


def _escape(text: str, prop: bool = False) -> str:
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return text.replace(":", "%3A").replace(",", "%2C") if prop else text
