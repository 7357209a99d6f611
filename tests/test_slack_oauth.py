"""Multi-workspace install: slack_sdk's SQLAlchemy stores on the project's database (SQLite and
PostgreSQL), OAuth install through /slack/install and /slack/oauth_redirect, uninstall and
token revocation, and the migration that owns the stores' tables.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlparse

import aiohttp
import pytest
import sqlalchemy as sa
from slack_sdk.oauth.installation_store.sqlalchemy import SQLAlchemyInstallationStore
from slack_sdk.oauth.state_store.sqlalchemy import SQLAlchemyOAuthStateStore

from adapters.base import FailureKind, SendError
from adapters.slack import SlackAdapter
from adapters.slack.adapter import BOT_SCOPES
from bot.app import App, build_app
from bot.models import ChannelRef, Reply, ReplyKind, UserRef
from storage.db import sync_url
from tests.conftest import make_settings
from tests.fakes.slack_api import FakeSlackApi, TinyHuggingFace, signed_headers
from tests.test_slack_app import SECRET, event_body

CLIENT_ID = "1111.2222"
CLIENT_SECRET = "client-secret-NEVER-LOG-ME"
INSTALLED_TOKEN = "xoxb-installed-T2"
TEAM = "T2"

# slack_sdk 3.x sends the OAuth client credentials with aiohttp's BasicAuth, which aiohttp 3.14 deprecates.
pytestmark = pytest.mark.filterwarnings("ignore:BasicAuth is deprecated:DeprecationWarning")


def test_migration_creates_exactly_the_tables_slack_sdk_builds(db_url: str) -> None:
    from storage.db import upgrade_database

    upgrade_database(db_url)
    engine = sa.create_engine(sync_url(db_url))
    try:
        inspector = sa.inspect(engine)
        expected = sa.MetaData()
        tables = [SQLAlchemyInstallationStore.build_installations_table(expected, "slack_installations"),
                  SQLAlchemyInstallationStore.build_bots_table(expected, "slack_bots"),
                  SQLAlchemyOAuthStateStore.build_oauth_states_table(expected, "slack_oauth_states")]
        for table in tables:
            columns = {c["name"]: c for c in inspector.get_columns(table.name)}
            assert list(columns) == [c.name for c in table.columns], table.name
            for column in table.columns:
                found = columns[column.name]
                assert found["nullable"] == column.nullable, (table.name, column.name)
                assert type(found["type"]).__name__.upper().startswith(
                    {"Integer": "INTEGER", "String": "VARCHAR", "DateTime": ("DATETIME", "TIMESTAMP"),
                     "Boolean": ("BOOLEAN",)}.get(type(column.type).__name__, type(column.type).__name__.upper())
                ), (table.name, column.name, found["type"])
                if isinstance(column.type, sa.String):
                    assert found["type"].length == column.type.length, (table.name, column.name)
            indexes = {i["name"]: i["column_names"] for i in inspector.get_indexes(table.name)}
            for index in table.indexes:
                assert indexes[index.name] == [c.name for c in index.columns]
            assert [c.name for c in table.primary_key.columns] == inspector.get_pk_constraint(table.name)[
                "constrained_columns"]
    finally:
        engine.dispose()


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlackApi]:
    async with FakeSlackApi(team_id="T1", oauth_team={"id": TEAM, "name": "Team <Two> & Co"},
                            oauth_token=INSTALLED_TOKEN) as fake:
        yield fake


@pytest.fixture
async def multi(db_url: str, slack: FakeSlackApi) -> AsyncIterator[tuple[App, SlackAdapter, aiohttp.ClientSession]]:
    hf = await TinyHuggingFace().start()
    settings = make_settings(DATABASE_URL=db_url, PAPERBOY_HF_URL=hf.url, PAPERBOY_OFFLINE_SAMPLE=False,
                             SLACK_API_URL=slack.url, SLACK_SIGNING_SECRET=SECRET, SLACK_CLIENT_ID=CLIENT_ID,
                             SLACK_CLIENT_SECRET=CLIENT_SECRET)
    app = await asyncio.to_thread(build_app, settings)
    adapter = SlackAdapter(settings, app.core, app.storage, host="127.0.0.1", port=0)
    await adapter.start()
    http = aiohttp.ClientSession()
    try:
        yield app, adapter, http
    finally:
        await http.close()
        await adapter.stop()
        await app.close()
        await hf.stop()


def base(adapter: SlackAdapter) -> str:
    return f"http://127.0.0.1:{adapter.http_port}"


async def install(adapter: SlackAdapter, http: aiohttp.ClientSession) -> tuple[int, str]:
    """Walk the browser through /slack/install and back through /slack/oauth_redirect."""
    async with http.get(f"{base(adapter)}/slack/install", allow_redirects=False) as response:
        assert response.status == 200
        page = await response.text()
        cookie = response.headers["Set-Cookie"].split(";")[0]
    authorize = re.search(r'href="(https://slack\.com/oauth/v2/authorize\?[^"]+)"', page)
    assert authorize is not None
    query = parse_qs(urlparse(authorize.group(1).replace("&amp;", "&")).query)
    assert query["client_id"] == [CLIENT_ID]
    assert query["scope"] == [",".join(BOT_SCOPES)]
    state = query["state"][0]
    async with http.get(f"{base(adapter)}/slack/oauth_redirect", params={"code": "code-123", "state": state},
                        headers={"Cookie": cookie}, allow_redirects=False) as response:
        return response.status, await response.text()


def digest() -> Reply:
    return Reply(kind=ReplyKind.CHANNEL_DIGEST, title="Trending papers", lines=("x",), ephemeral=False)


async def post_event(adapter: SlackAdapter, http: aiohttp.ClientSession, event: dict[str, Any]) -> int:
    body = event_body(event, team=TEAM)
    async with http.post(f"{base(adapter)}/slack/events", data=body.encode(),
                         headers=signed_headers(SECRET, body, content_type="application/json")) as response:
        return response.status


async def eventually(check: Any) -> None:
    """Wait for a listener that runs after the ack to have its effect (bounded)."""
    for _ in range(300):
        if await check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the listener had no effect")


async def test_oauth_install_stores_the_installation_and_activates_the_workspace(
        multi: tuple[App, SlackAdapter, aiohttp.ClientSession], slack: FakeSlackApi,
        caplog: pytest.LogCaptureFixture) -> None:
    app, adapter, http = multi
    slack.users["U_INSTALLER"] = {"tz": "Asia/Kolkata"}
    status, page = await install(adapter, http)
    assert status == 200, page
    # The installer's zone becomes the workspace's default (for people Slack reports no zone for).
    assert slack.calls_to("users.info")[0].params["user"] == "U_INSTALLER"
    assert await workspace_zone(app, TEAM) == "Asia/Kolkata"
    exchange = slack.calls_to("oauth.v2.access")
    assert len(exchange) == 1 and exchange[0].params["code"] == "code-123"
    assert adapter.installation_store is not None
    bot = await adapter.installation_store.async_find_bot(enterprise_id=None, team_id=TEAM)
    assert bot is not None and bot.bot_token == INSTALLED_TOKEN
    assert await app.storage.workspaces.is_active("slack", TEAM)

    # Sends to that workspace use its own token from the store.
    await adapter.send_to_channel(ChannelRef("slack", TEAM, "C5"), digest())
    await adapter.send_to_user(UserRef("slack", TEAM, "U5"), digest())
    assert {c.token for c in slack.calls if c.method in ("chat.postMessage", "conversations.open")} == {INSTALLED_TOKEN}
    assert INSTALLED_TOKEN not in caplog.text and CLIENT_SECRET not in caplog.text

    slack.users["U_INSTALLER"] = {"tz": "America/Denver"}
    adapter._user_facts.clear()  # noqa: SLF001 - a later reinstall, after the cache expired
    assert (await install(adapter, http))[0] == 200
    assert await workspace_zone(app, TEAM) == "Asia/Kolkata"      # a default once set is kept


async def workspace_zone(app: App, team: str) -> str | None:
    from sqlalchemy import select

    from storage.models import Workspace

    async with app.storage.db.read() as session:
        return (await session.execute(select(Workspace.default_timezone).where(
            Workspace.platform == "slack", Workspace.workspace_id == team))).scalar_one()


async def test_a_forged_state_is_refused(multi: tuple[App, SlackAdapter, aiohttp.ClientSession],
                                         slack: FakeSlackApi) -> None:
    _, adapter, http = multi
    async with http.get(f"{base(adapter)}/slack/oauth_redirect", params={"code": "c", "state": "forged"}) as response:
        assert response.status == 400
    assert slack.calls_to("oauth.v2.access") == []


async def test_commands_from_an_installed_workspace_are_answered_with_its_token(
        multi: tuple[App, SlackAdapter, aiohttp.ClientSession], slack: FakeSlackApi) -> None:
    app, adapter, http = multi
    await install(adapter, http)
    status = await post_event(adapter, http, {"type": "app_home_opened", "user": "U5", "tab": "home",
                                              "channel": "D5", "event_ts": "1.1"})
    assert status == 200
    publish = (await slack.wait_for("views.publish"))[0]
    assert publish.token == INSTALLED_TOKEN and publish.params["user_id"] == "U5"


@pytest.mark.parametrize("event", [
    {"type": "app_uninstalled", "event_ts": "1.1"},
    {"type": "tokens_revoked", "tokens": {"bot": ["UBOTPAPERBOY"]}, "event_ts": "1.1"},
])
async def test_uninstall_and_revocation_delete_the_install_and_pause_the_workspace(
        multi: tuple[App, SlackAdapter, aiohttp.ClientSession], slack: FakeSlackApi, event: dict[str, Any]) -> None:
    app, adapter, http = multi
    await install(adapter, http)
    storage = app.storage
    from datetime import datetime, time, timezone

    channel = ChannelRef("slack", TEAM, "C5")
    await storage.channels.enable(channel, post_time=time(9), tz="UTC", created_by="U5",
                                  next_due_at=datetime(2030, 1, 1, tzinfo=timezone.utc))
    assert await post_event(adapter, http, event) == 200
    assert adapter.installation_store is not None

    async def forgotten() -> bool:
        return await adapter.installation_store.async_find_bot(enterprise_id=None, team_id=TEAM) is None

    await eventually(forgotten)
    await eventually(lambda: _inactive(app))
    setting = await storage.channels.get(channel)
    assert setting is not None and not setting.enabled and setting.paused_reason
    with pytest.raises(SendError) as raised:
        await adapter.send_to_channel(channel, digest())
    assert raised.value.kind is FailureKind.INSTALL_GONE

    # Installing again brings the workspace back.
    status, _ = await install(adapter, http)
    assert status == 200
    assert await storage.workspaces.is_active("slack", TEAM)
    await adapter.send_to_channel(channel, digest())


async def _inactive(app: App) -> bool:
    return not await app.storage.workspaces.is_active("slack", TEAM)


async def test_a_revoked_token_found_while_sending_deactivates(
        multi: tuple[App, SlackAdapter, aiohttp.ClientSession], slack: FakeSlackApi) -> None:
    app, adapter, http = multi
    await install(adapter, http)
    slack.fail("chat.postMessage", "token_revoked")
    with pytest.raises(SendError) as raised:
        await adapter.send_to_channel(ChannelRef("slack", TEAM, "C5"), digest())
    assert (raised.value.kind, raised.value.detail) == (FailureKind.INSTALL_GONE, "token_revoked")
    assert not await app.storage.workspaces.is_active("slack", TEAM)
    assert json.dumps(str(raised.value)).find(INSTALLED_TOKEN) == -1
