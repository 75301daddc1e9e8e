"""The architecture as a test: imports point only backwards along the data flow (docs/architecture.md).

Each folder of the package is a layer (a few base modules are layers of their own); a module may
import its own layer and the layers below it, never one above. The HTTP server is a client of the
SDK: it may import only the SDK's public surface.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent
PACKAGE = ROOT / "featurestore"

# errors → config → definitions → compiler → engines → project → offline → online → governance
# → store (the SDK) → cli, catalog, sklearn. The server sits on top, on the SDK's public surface.
LAYERS = [
    {"errors", "instants"},
    {"config"},
    {"definitions"},
    {"compiler"},
    {"engines"},
    {"project", "demo", "scaffold"},
    {"offline"},
    {"online"},
    {"governance"},
    {"store"},
    {"cli", "catalog", "sklearn"},
]
# What the server may import: the package (FeatureStore and the errors), the errors, the view
# specs the SDK returns (store.views), and the catalog page.
SERVER_MAY_IMPORT = {"featurestore", "featurestore.errors", "featurestore.definitions.spec",
                     "featurestore.catalog.page"}


def layer_of(module: str) -> int:
    top = module.split(".")[1] if module.startswith("featurestore.") else module
    for rank, names in enumerate(LAYERS):
        if top in names:
            return rank
    raise AssertionError(f"featurestore.{top} is in no layer; add it to LAYERS in {__file__}")


def imported(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        names += [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else []
        names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
    return [name for name in names if name == "featurestore" or name.startswith("featurestore.")]


def test_every_folder_is_a_layer() -> None:
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert folders | modules == set().union(*LAYERS)


def test_no_module_imports_a_higher_layer() -> None:
    violations = []
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        if module == "featurestore.__init__":
            continue
        rank = layer_of(module)
        violations += [f"{module} imports {name}" for name in imported(path)
                       if name != "featurestore" and layer_of(name) > rank]
    assert violations == []


def test_the_server_uses_only_the_public_surface() -> None:
    violations = [f"server.{path.stem} imports {name}" for path in (ROOT / "server").glob("*.py")
                  for name in imported(path) if name not in SERVER_MAY_IMPORT]
    assert violations == []


def test_import_is_light() -> None:
    code = ("import sys, featurestore, featurestore.cli.main; "
            "print(sorted(m for m in ('fastapi', 'psycopg', 'polars', 'duckdb', 'pyarrow', 'sqlglot', 'rich') "
            "if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert result.stdout.strip() == "[]"
