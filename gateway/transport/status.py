"""``/status``: every provider's stream status callbacks, authenticated, republished as ``status`` events.

The shell reads each request once: the public URL the provider called (:func:`public_url`), the
raw body, its form fields or JSON object, the lower-cased headers. Then, in this order:

1. **authentication** (:mod:`gateway.transport.status_auth`): no valid credential is 401 with the
   reason, before anything of the body is interpreted; a verified provider signature names the
   provider;
2. **the body**: a JSON body that does not parse, or is not an object, is 400;
3. **the provider's parser** (:data:`gateway.protocol.dialects.STATUS_PARSERS`): the one of
   ``?provider=NAME`` or of the verified signature, else each in turn until one recognises the
   request; a callback in a provider's shape that does not validate is 400 with the reason;
4. **publish** the ``status`` event (the :class:`~gateway.protocol.dialects.base.StatusUpdate`'s
   fields) on the events subject of the route its ``control_id`` resolves to, else
   ``events.{call_id}``. NATS down is 503 with ``Retry-After``, so the provider retries instead of
   the event being lost.

GET is served like POST: SWML's ``status_url_method`` and cXML's ``statusCallbackMethod`` may be GET.
Every outcome is counted in ``sgw_status_callbacks_total{provider,reason}``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import parse_qsl

import msgspec
from aiohttp import web

from gateway.errors import PublishRejected, PublishUnavailable
from gateway.protocol.dialects import STATUS_PARSERS
from gateway.protocol.dialects.base import StatusError, StatusParser, StatusRequest, StatusUpdate
from gateway.settings import Settings
from gateway.transport.keys import CONTEXT
from gateway.transport.status_auth import CallbackRequest, StatusAuth
from sgw_routes.model import PROVIDERS
from sgw_routes.subjects import DEFAULT_EVENTS_SUBJECT, render

logger = logging.getLogger(__name__)

STATUS_AUTH: Final = web.AppKey("status_auth", StatusAuth)
_MAX_BODY: Final = 64 * 1024
_REALM: Final = 'realm="stream-gateway"'


class _Invalid(StatusError):
    """A 400, with the provider label it is counted under."""

    def __init__(self, message: str, provider: str) -> None:
        super().__init__(message)
        self.provider = provider


def status_auth(settings: Settings) -> StatusAuth:
    """The process's status credentials (read now: a bad file stops the start-up), announced in the log."""
    auth = StatusAuth.from_settings(settings)
    level, line = auth.describe()
    logger.log(level, "%s", line)
    return auth


def public_url(request: web.Request, base: str) -> str:
    """The URL the provider called, as it signed it: ``status.public_base_url`` + the raw path and
    query when set, else rebuilt from ``X-Forwarded-Proto`` / ``X-Forwarded-Host`` or the listener's
    scheme and the ``Host`` header."""
    path = request.raw_path  # as sent: percent-encoding and parameter order untouched
    if base:
        return base.rstrip("/") + path
    scheme = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip() or request.scheme
    host = request.headers.get("X-Forwarded-Host", "").split(",")[0].strip() or request.host
    return f"{scheme}://{host}{path}"


def _label(provider: str | None) -> str:
    return provider if provider in PROVIDERS else "unknown"


def _status_request(
    json_body: bool, body: bytes, params: list[tuple[str, str]], query: Mapping[str, str], headers: Mapping[str, str]
) -> StatusRequest:
    data: Any = None
    if json_body:
        try:
            data = msgspec.json.decode(body)
        except (msgspec.DecodeError, RecursionError):  # deep nesting is a RecursionError, not a DecodeError
            raise StatusError("body is not valid JSON") from None
        if not isinstance(data, dict):
            raise StatusError("JSON body must be an object")
    return StatusRequest(json=data, form={**query, **dict(params)}, headers=headers)


def _parsers() -> list[tuple[str, StatusParser]]:
    """Each distinct parser once, in registry order, under the first name it is registered with."""
    seen: dict[StatusParser, str] = {}
    for name, parser in STATUS_PARSERS.items():
        seen.setdefault(parser, name)
    return [(name, parser) for parser, name in seen.items()]


def dispatch(request: StatusRequest, forced: str | None, signed_by: str | None) -> StatusUpdate:
    """The provider's update for one callback: the parser of ``signed_by`` (a verified signature) or
    ``forced`` (``?provider=``), else the first parser that recognises it. Raises :class:`StatusError`."""
    if forced is not None:
        if forced not in PROVIDERS:
            raise _Invalid(f"unknown provider {forced[:32]!r} (one of {', '.join(PROVIDERS)})", "unknown")
        if forced not in STATUS_PARSERS:
            raise _Invalid(f"no status callbacks are known for {forced}", forced)
        if signed_by is not None and STATUS_PARSERS.get(signed_by) is not STATUS_PARSERS[forced]:
            raise _Invalid(f"?provider={forced}, but the callback is signed by {signed_by}", forced)
    name = signed_by or forced
    if name is not None and name not in STATUS_PARSERS:
        raise _Invalid(f"no status callbacks are known for {name}", name)
    candidates = [(name, STATUS_PARSERS[name])] if name is not None else _parsers()
    first_error: _Invalid | None = None
    for parser_name, parser in candidates:
        try:
            update = parser(request)
        except StatusError as exc:
            first_error = first_error or _Invalid(str(exc), parser_name)
            continue
        if update is not None:
            # A signature proves who sent it, ``?provider=`` says who the URL is for: either beats a guess.
            return update if name is None or update.provider == name else dataclasses.replace(update, provider=name)
    if first_error is not None:
        raise first_error
    if name is not None:
        raise _Invalid(f"not a {name} status callback", name)
    raise _Invalid(
        f"not a status callback of a known provider ({', '.join(n for n, _ in _parsers())}); ?provider=NAME names one",
        "unknown",
    )


def status_event(update: StatusUpdate, ts: float) -> dict[str, Any]:
    """The ``status`` event's body: the update's fields, then its extras (which cannot replace them)."""
    event: dict[str, Any] = {
        "type": "status",
        "ts": ts,
        "traceparent": "",
        "provider": update.provider,
        "call_id": update.call_id,
        "stream_id": update.stream_id,
        "control_id": update.control_id,
        "state": update.state,
        "name": update.name,
        "account_id": update.account_id,
        "provider_ts": update.provider_ts,
    }
    for key, value in update.extra.items():
        event.setdefault(key, value)
    return event


def _challenge(auth: StatusAuth) -> str:
    creds = auth.credentials
    challenges = [f"Basic {_REALM}"] if creds.basic is not None or not creds.bearer else []
    if creds.bearer:
        challenges.append(f"Bearer {_REALM}")
    return ", ".join(challenges)


async def status_endpoint(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    auth = request.app[STATUS_AUTH]
    counted = ctx.metrics.status_callbacks
    body = await request.read()
    forced = request.query.get("provider")
    url = public_url(request, auth.settings.public_base_url)
    headers = {k.lower(): v for k, v in request.headers.items()}
    json_body = request.content_type == "application/json" and bool(body)
    params: list[tuple[str, str]] = []
    undecodable = False
    if body and not json_body:
        try:
            params = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            undecodable = True
    verdict = auth.authenticate(CallbackRequest(request.method, url, headers, body, tuple(params), json_body))
    if not verdict.accepted:
        counted.labels(_label(forced) if forced else verdict.claimed, "unauthorized").inc()
        auth.log_refusal(verdict, url)
        return web.json_response(
            {"error": f"unauthorized: {verdict.problem}"}, status=401, headers={"WWW-Authenticate": _challenge(auth)}
        )
    try:
        if len(body) > _MAX_BODY:
            raise StatusError("body too large")
        if undecodable:
            raise StatusError("form body is not UTF-8")
        update = dispatch(_status_request(json_body, body, params, request.query, headers), forced, verdict.provider)
    except StatusError as exc:
        label = exc.provider if isinstance(exc, _Invalid) else _label(verdict.provider or forced)
        counted.labels(_label(label), "invalid").inc()
        return web.json_response({"error": str(exc)}, status=400)
    provider = _label(update.provider)
    route = ctx.routes.snapshot().match(update.control_id, (), {}, update.provider)
    subject = render(
        route.events_subject if route is not None else DEFAULT_EVENTS_SUBJECT,
        {
            "call_id": update.call_id,
            "stream_id": update.stream_id,
            "control_id": update.control_id,
            "route": route.metric_label if route is not None else "",
            "account_id": update.account_id,
        },
    )
    payload = msgspec.json.encode(status_event(update, time.time()))
    try:
        await ctx.publisher.publish(subject, payload, {"Sgw-Event": "status"})
    except (PublishUnavailable, PublishRejected) as exc:
        counted.labels(provider, "unavailable").inc()
        return web.json_response({"error": exc.message}, status=503, headers={"Retry-After": "1"})
    counted.labels(provider, "accepted").inc()
    ctx.metrics.events_published.labels("status").inc()
    return web.json_response({"ok": True})
