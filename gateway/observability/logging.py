"""Logging set-up (text or JSON) and the per-stream logger adapter.

Per-frame logging does not exist above DEBUG. Stream log lines carry ``call_id``, ``stream_id``
and ``route`` as structured fields; tokens and secret custom parameters never reach a log line.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import MutableMapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
}


def redact_url(urls: str) -> str:
    """NATS URL(s) fit to print: a password, or a bare user part (a token), becomes ``***``."""
    out = []
    for url in urls.split(","):
        parts = urlsplit(url.strip())
        if parts.username is None and parts.password is None:
            out.append(url.strip())
            continue
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        user = f"{parts.username}:***" if parts.password is not None else "***"
        out.append(urlunsplit(parts._replace(netloc=f"{user}@{host}")))
    return ",".join(out)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": record.created,
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        out.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's access log would log every upgrade URL; ours logs streams instead.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


class StreamLogger(logging.LoggerAdapter[logging.Logger]):
    """Adds the stream's ids to every line (as ``extra`` fields and a readable prefix)."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        extra = dict(self.extra or {})
        kwargs["extra"] = {**extra, **kwargs.get("extra", {})}
        return f"[{extra.get('call_id', '-')}/{extra.get('stream_id', '-')}] {msg}", kwargs
