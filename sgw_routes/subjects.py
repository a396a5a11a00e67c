"""NATS subject templates: validation, token sanitising and rendering.

A template is dot-separated tokens; a token is literal text (``[A-Za-z0-9_-]``) and/or
placeholders such as ``{call_id}``. Every placeholder value is sanitised into one valid NATS token
(no ``.``, ``*``, ``>``, whitespace or control characters), so a template that passes
:func:`validate_template` cannot render an invalid subject, whatever the provider sends. The CRD
carries the same rule as :data:`TEMPLATE_PATTERN`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

PLACEHOLDERS: Final = ("call_id", "stream_id", "control_id", "track", "route", "account_id")

_PH = "|".join(PLACEHOLDERS)
_TOKEN = rf"(?:[A-Za-z0-9_\-]|\{{(?:{_PH})\}})+"
TEMPLATE_PATTERN: Final = rf"^{_TOKEN}(?:\.{_TOKEN})*$"
"""JSON-schema / CRD ``pattern`` for a subject template (also used by :func:`validate_template`)."""

_TEMPLATE_RE: Final = re.compile(TEMPLATE_PATTERN)
_PLACEHOLDER_RE: Final = re.compile(r"\{([a-z_]+)\}")
# Anything that is not safe inside one NATS token becomes "_". Kept narrow on purpose: ids from
# providers are UUIDs or [A-Z]{2}+hex, so real ids pass through unchanged.
_UNSAFE_RE: Final = re.compile(r"[^A-Za-z0-9_\-:+=@]")
MAX_TOKEN_LENGTH: Final = 128

DEFAULT_AUDIO_SUBJECT: Final = "audio.{call_id}.{track}"
DEFAULT_EVENTS_SUBJECT: Final = "events.{call_id}"
DEFAULT_PLAYBACK_SUBJECT: Final = "play.{call_id}.{stream_id}"
"""The default route's back-channel: per stream, because one call may carry several streams (SWML
allows several with distinct ``control_id``) and each must take its own consumer's audio."""


class TemplateError(ValueError):
    """A subject template that could render an invalid NATS subject."""


def validate_template(template: str, *, allowed: tuple[str, ...] = PLACEHOLDERS) -> str:
    """Return ``template`` if it is valid, else raise :class:`TemplateError` saying why."""
    if not _TEMPLATE_RE.match(template):
        raise TemplateError(
            f"invalid subject template {template!r}: tokens separated by '.', each made of "
            "[A-Za-z0-9_-] and placeholders; no wildcards, spaces or empty tokens"
        )
    for name in _PLACEHOLDER_RE.findall(template):
        if name not in allowed:
            raise TemplateError(f"placeholder {{{name}}} is not available here (allowed: {', '.join(allowed)})")
    return template


def sanitize_token(value: str) -> str:
    """Map any string onto one valid NATS subject token (never empty)."""
    token = _UNSAFE_RE.sub("_", value)[:MAX_TOKEN_LENGTH]
    return token or "_"


def render(template: str, values: Mapping[str, str]) -> str:
    """Render a validated template, sanitising each placeholder value into one token."""
    return _PLACEHOLDER_RE.sub(lambda m: sanitize_token(values.get(m.group(1), "")), template)
