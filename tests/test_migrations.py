"""The migrations and the models describe the same schema."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from storage.db import sync_url, upgrade_database
from storage.models import Base, include_object


def test_models_and_migrations_agree(db_url: str) -> None:
    upgrade_database(db_url)
    engine = create_engine(sync_url(db_url))
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"include_object": include_object})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()
