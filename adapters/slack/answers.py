"""Reading Slack Web API answers that may not be what the documentation promises.

Slack's answers can come through proxies and load balancers: a ``503 text/plain``
("upstream connect error"), an HTML error page, an empty body, or JSON of the wrong
shape. slack_sdk (``slack_sdk/web/async_internal_utils.py:_request_with_session``) hands
a ``text/plain`` body over as a ``str``, reads other non-JSON content types as ``{}``
(``aiohttp.ContentTypeError``), and raises ``SlackApiError`` for a body that claims to be
JSON but is not; ``AsyncSlackResponse.validate`` then raises ``SlackApiError`` for any
status other than 200, or ``AttributeError`` for a 200 whose body is a ``str`` or a JSON
list (it calls ``data.get("ok")``), and ``AsyncSlackResponse.get`` raises ``AttributeError``
on a ``str`` body. Everything here reads such answers without trusting their types.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import aiohttp
from cachetools import TTLCache
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.authorization.async_authorize import AsyncAuthorize
from slack_bolt.context.async_context import AsyncBoltContext
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.errors import INSTALL_GONE_CODES

log = logging.getLogger(__name__)

# What a Web API call can raise when Slack, or something in between, answers oddly or not at all.
CALL_FAILURES: tuple[type[BaseException], ...] = (
    SlackClientError, aiohttp.ClientError, asyncio.TimeoutError, AttributeError, TypeError, ValueError,
)
AUTH_CACHE_SECONDS = 3600


def answer_data(response: Any) -> dict[str, Any]:
    """The JSON object of a Slack answer, or ``{}`` when the body is not one (text, HTML, a list)."""
    data = getattr(response, "data", response)
    return data if isinstance(data, dict) else {}


def error_code(exc: BaseException) -> str:
    """Slack's ``error`` code in a failed call, or a short description of what came back instead."""
    if isinstance(exc, SlackApiError):
        response = exc.response
        code = answer_data(response).get("error")
        if isinstance(code, str) and code:
            return code[:64]
        status = getattr(response, "status_code", None)
        return f"http_{status}" if status and status != 200 else "unexpected_answer"
    if isinstance(exc, (AttributeError, TypeError, ValueError)):
        return "unexpected_answer"
    return type(exc).__name__


def status_of(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


def headers_of(exc: BaseException) -> Mapping[str, Any] | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    return headers if isinstance(headers, Mapping) else None


def text_field(data: Mapping[str, Any], key: str) -> str | None:
    """``data[key]`` when it is a non-empty string."""
    value = data.get(key)
    return value if isinstance(value, str) and value else None


class ResilientAuthorize(AsyncAuthorize):
    """bolt's authorize step that survives an ``auth.test`` Slack does not answer properly.

    bolt's own single- and multi-workspace authorization call ``auth.test`` and, when it
    fails for any reason, answer the person "please reinstall this app" instead of running
    the listener. Here the token comes from the bot token (single workspace) or the
    installation store, ``auth.test`` (the bot's user and bot ids) is cached per token for an
    hour, and only an answer meaning the token is gone refuses the request; when Slack's
    answer is unusable (a proxy's 503, HTML, a timeout) the request goes on without the
    bot ids, which none of Paperboy's listeners need.
    """

    def __init__(self, *, token: str | None = None, installation_store: Any = None) -> None:
        super().__init__()
        self._token = token
        self._installation_store = installation_store
        self._cache: TTLCache[str, dict[str, Any]] = TTLCache(maxsize=10_000, ttl=AUTH_CACHE_SECONDS)
        # One auth.test per token at a time: a burst of cold requests waits for the same answer.
        self._asking: dict[str, asyncio.Future[dict[str, Any] | None]] = {}

    async def _token_for(self, enterprise_id: str | None, team_id: str | None) -> str | None:
        if self._token is not None:
            return self._token
        if self._installation_store is None:
            return None
        bot = await self._installation_store.async_find_bot(enterprise_id=enterprise_id, team_id=team_id)
        return bot.bot_token if bot is not None and bot.bot_token else None

    async def __call__(self, *, context: AsyncBoltContext, enterprise_id: str | None, team_id: str | None,
                       user_id: str | None, actor_enterprise_id: str | None = None,
                       actor_team_id: str | None = None, actor_user_id: str | None = None) -> AuthorizeResult | None:
        token = await self._token_for(enterprise_id, team_id)
        if token is None:
            return None
        facts = self._cache.get(token)
        if facts is None:
            asking = self._asking.get(token)
            if asking is None:
                asking = self._asking[token] = asyncio.ensure_future(self._auth_test(context.client, token, team_id))
                asking.add_done_callback(lambda done, key=token: self._asking.pop(key, None))
            facts = await asyncio.shield(asking)
            if facts is None:
                return None
        bot_id = text_field(facts, "bot_id")
        return AuthorizeResult(
            enterprise_id=text_field(facts, "enterprise_id") or enterprise_id,
            team_id=text_field(facts, "team_id") or team_id,
            bot_token=token,
            bot_id=bot_id,
            bot_user_id=text_field(facts, "user_id") if bot_id else None,
        )

    async def _auth_test(self, client: AsyncWebClient, token: str, team_id: str | None) -> dict[str, Any] | None:
        """The bot's facts from ``auth.test`` (cached); None when the token is gone, {} when unknowable."""
        try:
            facts = answer_data(await client.auth_test(token=token))
        except CALL_FAILURES as exc:
            code = error_code(exc)
            if code in INSTALL_GONE_CODES:
                log.warning("auth.test refused the bot token of workspace %r: %s", team_id, code)
                return None
            log.warning("auth.test failed for workspace %r (%s); going on without the bot's ids", team_id, code)
            return {}
        self._cache[token] = facts
        return facts
