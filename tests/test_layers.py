"""The architecture as a test: imports point only backwards along the data flow."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "featurestore"

# loader → spec → compiler → engines → store (SDK) → cli / server; errors and config sit below all.
LAYERS = [
    {"errors"},
    {"config"},
    {"loader"},
    {"spec", "selection"},
    {"graph", "compiler", "planner"},
    {"engines"},
    {"project", "demo", "scaffold", "cache"},
    {"sources"},
    {"frames", "online", "registry", "usage"},
    {"governance", "stats"},
    {"store"},
    {"cli", "sklearn", "docs"},
]


def layer_of(module: str) -> int:
    top = module.split(".")[1] if module.startswith("featurestore.") else module
    for rank, names in enumerate(LAYERS):
        if top in names:
            return rank
    raise AssertionError(f"featurestore.{top} is in no layer; add it to LAYERS in {__file__}")


def test_no_module_imports_a_higher_layer() -> None:
    violations = []
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        module = ".".join(relative.parts)
        if module in ("featurestore.__init__",):
            continue
        rank = layer_of(module)
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
            for name in names:
                if name.startswith("featurestore.") and layer_of(name) > rank:
                    violations.append(f"{module} imports {name}")
    assert violations == []


def test_import_is_light() -> None:
    code = ("import sys, featurestore, featurestore.cli; "
            "print(sorted(m for m in ('fastapi', 'psycopg', 'polars', 'duckdb', 'pyarrow', 'sqlglot', 'rich') "
            "if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
