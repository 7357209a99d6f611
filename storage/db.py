"""Engines, sessions and migrations for one database URL.

``DATABASE_URL`` is given the plain way (``sqlite:///file.db``,
``postgresql://user@host/db``); :class:`Database` derives the async driver URL
used at run time (aiosqlite, psycopg) and the sync one Alembic uses.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

SQLITE_BUSY_TIMEOUT_MS = 30_000


def async_url(url: str | URL) -> URL:
    """The run-time (async driver) form of a database URL."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite")
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+psycopg")
    return parsed


def sync_url(url: str | URL) -> URL:
    """The blocking form of a database URL, for Alembic and slack_sdk's stores."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite")
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+psycopg")
    return parsed


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    """WAL and a busy timeout so several processes can share one SQLite file.

    The driver's own transaction handling is switched off so that
    :func:`_begin_immediate` can open every transaction itself.
    """
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # The busy timeout first, so nothing below fails at once while another process writes; WAL is
    # kept in the file, so it is switched on only when it is not on yet (switching takes a lock).
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode")
    if str(cursor.fetchone()[0]).lower() != "wal":
        cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


READ_ONLY = "paperboy_read_only"


def _begin_immediate(connection: Any) -> None:
    """Take SQLite's write lock when a transaction starts, so the busy timeout applies.

    A deferred transaction that reads and then writes cannot wait for another
    process's lock: SQLite answers "database is locked" at once. Taking the
    lock up front makes concurrent writers queue instead. Read-only
    transactions (:meth:`Database.read`) begin deferred and never wait for writers.
    """
    read_only = connection.get_execution_options().get(READ_ONLY)
    connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def insert_for(executor: AsyncSession | AsyncConnection):  # noqa: ANN201 - dialect-specific Insert constructor
    """The dialect's INSERT, which supports ``ON CONFLICT`` (PostgreSQL and SQLite spell it alike)."""
    dialect = executor.bind.dialect.name if isinstance(executor, AsyncSession) else executor.dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


class Database:
    """One database: an async engine, a session factory and migrations."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.dialect = make_url(url).get_backend_name()
        kwargs: dict[str, Any] = {"echo": echo}
        if self.dialect == "postgresql":
            kwargs.update(pool_size=10, max_overflow=20, pool_pre_ping=True)
        self.engine: AsyncEngine = create_async_engine(async_url(url), **kwargs)
        if self.dialect == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _tune_sqlite)
            event.listen(self.engine.sync_engine, "begin", _begin_immediate)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        # SQLite has one writer at a time. Queue this process's transactions here rather than
        # in SQLite's busy handler, which polls with sleeps of up to 100 ms under contention.
        self._sqlite_turn = asyncio.Lock() if self.dialect == "sqlite" else None

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session inside one transaction: committed on success, rolled back on error."""
        if self._sqlite_turn is None:
            async with self._sessions() as session, session.begin():
                yield session
            return
        async with self._sqlite_turn, self._sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A session for reading only: on SQLite it neither takes nor waits for the write lock."""
        async with self._sessions() as session:  # closing ends the transaction; loaded rows stay usable
            await session.connection(execution_options={READ_ONLY: True})
            yield session

    @asynccontextmanager
    async def read_connection(self) -> AsyncIterator[AsyncConnection]:
        """A Core connection for reading only: on SQLite it neither takes nor waits for the write lock."""
        async with self.engine.connect() as conn:
            await conn.execution_options(**{READ_ONLY: True})
            yield conn

    @asynccontextmanager
    async def write_connection(self) -> AsyncIterator[AsyncConnection]:
        """A Core connection in one write transaction, queued like :meth:`transaction` (bulk statements)."""
        if self._sqlite_turn is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self._sqlite_turn, self.engine.begin() as conn:
            yield conn

    async def dispose(self) -> None:
        await self.engine.dispose()


def alembic_config(url: str) -> Any:
    """An Alembic config pointing at the packaged migrations and ``url``."""
    from alembic.config import Config

    config = Config()
    script_dir = resources.files("storage") / "migrations"
    config.set_main_option("script_location", str(script_dir))
    config.set_main_option("sqlalchemy.url", sync_url(url).render_as_string(hide_password=False).replace("%", "%%"))
    return config


def upgrade_database(url: str, revision: str = "head") -> None:
    """Bring the schema at ``url`` up to ``revision``."""
    from alembic import command

    if make_url(url).get_backend_name() == "sqlite":
        _ensure_sqlite_dir(url)
    command.upgrade(alembic_config(url), revision)


def _ensure_sqlite_dir(url: str) -> None:
    from pathlib import Path

    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
