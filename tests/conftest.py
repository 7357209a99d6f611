"""Shared fixtures: databases (SQLite and a real PostgreSQL server), settings, storage."""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.settings import Settings
from storage.repositories import Storage
from tests.pg import PostgresServer, find_pg_bin

_db_counter = itertools.count()

#: Environment variables that configure Paperboy; a developer's own tokens must not leak into tests.
_CONFIG_PREFIXES = ("SLACK_", "DISCORD_", "PAPERBOY_")
_CONFIG_NAMES = frozenset({"DATABASE_URL", "PORT"})


@pytest.fixture(autouse=True)
def _hermetic_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts with no Paperboy configuration from the surrounding shell."""
    for name in list(os.environ):
        if name.startswith(_CONFIG_PREFIXES) or name in _CONFIG_NAMES:
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the whole run; skipped only when the binaries are absent."""
    bin_dir = find_pg_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    server = PostgresServer(bin_dir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(pg_server: PostgresServer) -> str:
    """A fresh, empty PostgreSQL database for one test."""
    return pg_server.create_database(f"t{next(_db_counter)}")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'paperboy.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'paperboy.db'}"
    return request.getfixturevalue("postgres_url")


def make_settings(**values: Any) -> Settings:
    """Settings from explicit values only (no .env, environment variables still apply).

    Hugging Face and the Slack Web API default to a closed port on 127.0.0.1, never the real
    services: a test that needs one passes the URL of its fake.
    """
    values = {"PAPERBOY_HF_URL": "http://127.0.0.1:9", "SLACK_API_URL": "http://127.0.0.1:9/api/", **values}
    return Settings(_env_file=None, **values)


@pytest.fixture
async def storage(db_url: str) -> AsyncIterator[Storage]:
    """Migrated storage on each database."""
    store = Storage.connect(db_url)
    try:
        yield store
    finally:
        await store.close()
