"""featurestore.toml: discovery, the documented form, overrides and located errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from featurestore.config import DuckDBSource, FileSource, PostgresSource, find_root, load_settings
from featurestore.errors import ConfigError, InvalidProjectError

DOCUMENTED = '''\
definitions = "definitions"          # default
[offline]
database = ".featurestore/offline.duckdb"   # default
[online]
postgres_url = ""                    # default: embedded PostgreSQL under .featurestore/
[sources]
transactions = "data/transactions.parquet"       # a Parquet or CSV file, or a glob
card_events = "data/card_events/*.parquet"
accounts = { postgres = "public.accounts" }      # a table in the configured PostgreSQL
merchants = { duckdb = "merchants" }             # a table in the offline DuckDB file
'''


def test_documented_form(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FEATURESTORE_POSTGRES_URL", raising=False)
    (tmp_path / "featurestore.toml").write_text(DOCUMENTED)
    settings = load_settings(tmp_path)
    assert settings.root == tmp_path.resolve()
    assert settings.definitions == tmp_path.resolve() / "definitions"
    assert settings.offline_database == tmp_path.resolve() / ".featurestore" / "offline.duckdb"
    assert settings.postgres_url is None
    assert settings.sources == {
        "transactions": FileSource(path="data/transactions.parquet", format="parquet"),
        "card_events": FileSource(path="data/card_events/*.parquet", format="parquet"),
        "accounts": PostgresSource(schema_name="public", table="accounts"),
        "merchants": DuckDBSource(table="merchants"),
    }
    assert settings.source_lines == {"transactions": 7, "card_events": 8, "accounts": 9, "merchants": 10}


def test_environment_overrides_postgres_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "featurestore.toml").write_text('[online]\npostgres_url = "postgresql://a/b"\n')
    monkeypatch.delenv("FEATURESTORE_POSTGRES_URL", raising=False)
    assert load_settings(tmp_path).postgres_url == "postgresql://a/b"
    monkeypatch.setenv("FEATURESTORE_POSTGRES_URL", "postgresql://c/d")
    assert load_settings(tmp_path).postgres_url == "postgresql://c/d"


def test_found_from_a_subfolder_and_in_pyproject(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n[tool.featurestore]\ndefinitions = "defs"\n')
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert find_root(deep) == tmp_path.resolve()
    assert load_settings(deep).definitions == tmp_path.resolve() / "defs"


def test_no_config_says_how_to_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="featurestore init"):
        load_settings(tmp_path / "nowhere")


@pytest.mark.parametrize(("text", "line", "message", "hint"), [
    ('definitons = "defs"\n', 1, "unknown setting 'definitons'", "did you mean 'definitions'"),
    ('[offline]\ndatabse = "x.duckdb"\n', 2, "unknown setting 'offline.databse'", "did you mean 'database'"),
    ('[sources]\nevents = "data/events.json"\n', 2, "cannot tell the format", "format = \"csv\""),
    ('[sources]\nok = "a.csv"\nEvents = "a.csv"\n', 3, "not a lowercase SQL identifier", "lowercase"),
    ('[sources]\nevents = { postgres = 1 }\n', 2, "unexpected keys", "postgres = \"schema.table\""),
    ('[sources\nevents = "a.csv"\n', 1, "not valid TOML", "syntax"),
])
def test_config_errors_are_located(tmp_path: Path, text: str, line: int, message: str, hint: str) -> None:
    (tmp_path / "featurestore.toml").write_text(text)
    with pytest.raises(InvalidProjectError) as raised:
        load_settings(tmp_path)
    [problem] = raised.value.problems
    assert (problem.path.name, problem.line) == ("featurestore.toml", line)
    assert message in problem.message
    assert hint in problem.hint


@pytest.mark.parametrize(("name", "content", "message"), [
    ("featurestore.toml", b"offline = 3\n", "'offline' must be a table"),
    ("featurestore.toml", b"sources = 3\n", "'sources' must be a table"),
    ("featurestore.toml", b"\xff\xfe[sources]\n", "not UTF-8"),
    ("pyproject.toml", b"[tool]\nfeaturestore = 3\n", "[tool.featurestore] must be a table"),
])
def test_wrong_shapes_are_errors_not_crashes(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    (tmp_path / name).write_bytes(content)
    with pytest.raises(InvalidProjectError) as raised:
        load_settings(tmp_path, search_parents=False)
    assert message in raised.value.problems[0].message
