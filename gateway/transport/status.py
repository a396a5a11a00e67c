"""``/status``: stream status callbacks from the provider, republished as ``status`` events.

Two shapes arrive (docs/protocols.md section 2.5): SWML/RELAY ``calling.call.stream`` JSON (POST, or
GET with the JSON fields as query parameters since ``status_url_method`` may be GET) and cXML /
Twilio form fields (``StreamEvent``, ``StreamSid``...). Each is validated; a bad payload gets 400
with the reason. The event goes to the events subject of the route the ``control_id`` (or the
stream name) resolves to, or ``events.{call_id}``. If NATS is down the answer is 503, so the
provider retries instead of the event being lost.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

import msgspec
from aiohttp import web

from gateway.errors import PublishRejected, PublishUnavailable
from gateway.transport.keys import CONTEXT
from sgw_routes.subjects import DEFAULT_EVENTS_SUBJECT, render

_MAX_BODY = 64 * 1024
_SWML_STATES = frozenset(("streaming", "finished"))
_CXML_EVENTS = frozenset(("stream-started", "stream-stopped", "stream-error"))


class StatusError(ValueError):
    pass


def parse_status(content_type: str, body: bytes, query: Mapping[str, str]) -> dict[str, Any]:
    """Normalise one callback into the fields of a ``status`` event (raises StatusError)."""
    if content_type == "application/json" and body:
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):  # deep nesting raises RecursionError, not ValueError
            raise StatusError("body is not valid JSON") from None
        if not isinstance(data, dict):
            raise StatusError("JSON body must be an object")
        return _swml(data)
    fields: dict[str, str] = dict(query)
    if body:
        from urllib.parse import parse_qsl

        try:
            fields.update(parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=False))
        except UnicodeDecodeError:
            raise StatusError("form body is not UTF-8") from None
    if "StreamEvent" in fields:
        return _cxml(fields)
    if "event_type" in fields:
        params = {k.removeprefix("params."): v for k, v in fields.items() if k.startswith("params.")}
        return _swml({**fields, "params": params})
    raise StatusError("neither a calling.call.stream payload nor cXML StreamEvent fields")


def _swml(data: Mapping[str, Any]) -> dict[str, Any]:
    if data.get("event_type") != "calling.call.stream":
        raise StatusError(f"unsupported event_type {str(data.get('event_type'))[:64]!r}")
    params = data.get("params")
    if not isinstance(params, Mapping):
        raise StatusError("params must be an object")
    missing = [k for k in ("call_id", "control_id", "state") if not isinstance(params.get(k), str) or not params.get(k)]
    if missing:
        raise StatusError(f"params missing {', '.join(missing)}")
    if params["state"] not in _SWML_STATES:
        raise StatusError(f"unknown state {str(params['state'])[:32]!r}")
    out: dict[str, Any] = {
        "provider": "signalwire",
        "call_id": params["call_id"],
        "stream_id": "",
        "control_id": params["control_id"],
        "state": params["state"],
        "name": str(params.get("name") or ""),
        "account_id": str(data.get("project_id") or ""),
        "provider_ts": data.get("timestamp"),
    }
    for extra in ("node_id", "segment_id", "tag"):
        if params.get(extra):
            out[extra] = str(params[extra])
    return out


def _cxml(fields: Mapping[str, str]) -> dict[str, Any]:
    event = fields.get("StreamEvent", "")
    if event not in _CXML_EVENTS:
        raise StatusError(f"unknown StreamEvent {event[:32]!r}")
    if not fields.get("CallSid"):
        raise StatusError("CallSid missing")
    stream_sid = fields.get("StreamSid", "")
    out: dict[str, Any] = {
        "provider": "twilio" if stream_sid.startswith("MZ") else "signalwire",
        "call_id": fields["CallSid"],
        "stream_id": stream_sid,
        "control_id": fields.get("StreamName") or stream_sid,
        "state": event,
        "name": fields.get("StreamName", ""),
        "account_id": fields.get("AccountSid", ""),
        "provider_ts": fields.get("Timestamp"),
    }
    if fields.get("StreamError"):
        out["error"] = fields["StreamError"]
    if fields.get("StreamTrack"):
        out["track"] = fields["StreamTrack"]
    return out


async def status_endpoint(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    body = await request.read()
    try:
        if len(body) > _MAX_BODY:
            raise StatusError("body too large")
        status = parse_status(request.content_type, body, request.query)
    except StatusError as exc:
        ctx.metrics.status_callbacks.labels("unknown", "invalid").inc()
        return web.json_response({"error": str(exc)}, status=400)
    route = ctx.routes.snapshot().match(status["control_id"], (), {})
    template = route.events_subject if route is not None else DEFAULT_EVENTS_SUBJECT
    subject = render(
        template,
        {
            "call_id": status["call_id"],
            "stream_id": status["stream_id"],
            "control_id": status["control_id"],
            "route": route.metric_label if route is not None else "",
            "account_id": status["account_id"],
        },
    )
    event = {"type": "status", "ts": time.time(), "traceparent": "", **status}
    try:
        await ctx.publisher.publish(subject, msgspec.json.encode(event), {"Sgw-Event": "status"})
    except (PublishUnavailable, PublishRejected) as exc:
        ctx.metrics.status_callbacks.labels(status["provider"], "unavailable").inc()
        return web.json_response({"error": exc.message}, status=503, headers={"Retry-After": "1"})
    ctx.metrics.status_callbacks.labels(status["provider"], "accepted").inc()
    ctx.metrics.events_published.labels("status").inc()
    return web.json_response({"ok": True})
