"""StreamRoute manifests: parse and validate one resource into a :class:`StreamRouteSpec`.

The same code reads a routes file (multi-document YAML, exactly what ``kubectl apply`` takes) and
the objects the operator receives from the API server. It checks what the CRD schema cannot
express (glob syntax, placeholders allowed per field, duplicate tracks) and reports every problem
as an :class:`InvalidRoute` with a ``reason`` the operator puts in the ``Ready`` condition.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import msgspec

from sgw_routes.model import PROVIDERS, TRACKS
from sgw_routes.subjects import (
    DEFAULT_AUDIO_SUBJECT,
    DEFAULT_EVENTS_SUBJECT,
    TemplateError,
    validate_template,
)

API_GROUP: Final = "streamgateway.io"
API_VERSION: Final = f"{API_GROUP}/v1alpha1"
KIND: Final = "StreamRoute"
_STREAM_NAME_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
_EVENT_PLACEHOLDERS: Final = ("call_id", "stream_id", "control_id", "route", "account_id")


class InvalidRoute(ValueError):
    """A StreamRoute that cannot be compiled. ``reason`` is a condition reason (CamelCase)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class SecretRef(msgspec.Struct, frozen=True):
    name: str
    key: str = "token"


class StreamRouteSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A validated StreamRoute, before its Secret is resolved."""

    namespace: str
    name: str
    uid: str = ""
    created: str = ""
    generation: int = 0
    control_id: str = "*"
    tracks: tuple[str, ...] = ()
    custom_parameters: dict[str, str] = {}
    providers: tuple[str, ...] = ()
    priority: int = 0
    subject: str = DEFAULT_AUDIO_SUBJECT
    events_subject: str = DEFAULT_EVENTS_SUBJECT
    jetstream_stream: str | None = None
    secret_ref: SecretRef | None = None
    playback_subject: str | None = None

    @property
    def key(self) -> str:
        """``namespace/name``: the route's identity in the table."""
        return f"{self.namespace}/{self.name}"


def _mapping(value: object, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidRoute("InvalidSpec", f"{where} must be an object")
    return value


def _glob_ok(pattern: str) -> None:
    depth = 0
    for ch in pattern:
        if ch == "[":
            depth += 1
        elif ch == "]" and depth:
            depth -= 1
    if depth or not pattern or len(pattern) > 256:
        raise InvalidRoute(
            "InvalidPattern",
            f"spec.match.controlId {pattern!r} is not a valid glob (1-256 chars, balanced [])",
        )


def parse_streamroute(obj: Mapping[str, Any], *, default_namespace: str = "default") -> StreamRouteSpec:
    """Validate one StreamRoute object (as from YAML or the API) and return its spec."""
    if obj.get("kind") != KIND or obj.get("apiVersion") != API_VERSION:
        raise InvalidRoute(
            "InvalidSpec",
            f"not a {API_VERSION} {KIND}: kind={obj.get('kind')!r} apiVersion={obj.get('apiVersion')!r}",
        )
    meta = _mapping(obj.get("metadata"), "metadata")
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidRoute("InvalidSpec", "metadata.name is required")
    spec = _mapping(obj.get("spec"), "spec")
    match = _mapping(spec.get("match"), "spec.match")
    target = _mapping(spec.get("target"), "spec.target")
    auth = _mapping(spec.get("auth"), "spec.auth")
    playback = _mapping(spec.get("playback"), "spec.playback")

    control_id = match.get("controlId", "*")
    if not isinstance(control_id, str):
        raise InvalidRoute("InvalidPattern", "spec.match.controlId must be a string")
    _glob_ok(control_id)

    tracks_raw = match.get("tracks") or []
    if not isinstance(tracks_raw, list) or not all(isinstance(t, str) and t in TRACKS for t in tracks_raw):
        raise InvalidRoute(
            "InvalidSpec",
            f"spec.match.tracks must list 'inbound' and/or 'outbound', got {tracks_raw!r}",
        )
    if len(set(tracks_raw)) != len(tracks_raw):
        raise InvalidRoute("InvalidSpec", "spec.match.tracks lists a track twice")

    providers_raw = match.get("providers") or []
    if not isinstance(providers_raw, list) or not all(isinstance(p, str) and p in PROVIDERS for p in providers_raw):
        raise InvalidRoute(
            "InvalidSpec",
            f"spec.match.providers must list provider names ({', '.join(PROVIDERS)}), got {providers_raw!r}",
        )
    if len(set(providers_raw)) != len(providers_raw):
        raise InvalidRoute("InvalidSpec", "spec.match.providers lists a provider twice")

    params_raw = _mapping(match.get("customParameters"), "spec.match.customParameters")
    params = {str(k): str(v) for k, v in params_raw.items()}

    priority = spec.get("priority", 0)
    if not isinstance(priority, int) or isinstance(priority, bool) or not -(2**31) < priority < 2**31:
        raise InvalidRoute("InvalidSpec", "spec.priority must be a 32-bit integer")

    try:
        subject = validate_template(str(target.get("subject") or DEFAULT_AUDIO_SUBJECT))
        events_subject = validate_template(
            str(target.get("eventsSubject") or DEFAULT_EVENTS_SUBJECT), allowed=_EVENT_PLACEHOLDERS
        )
        play = playback.get("subject")
        playback_subject = validate_template(str(play), allowed=_EVENT_PLACEHOLDERS) if play else None
    except TemplateError as exc:
        raise InvalidRoute("InvalidSubject", str(exc)) from None

    js = _mapping(target.get("jetstream"), "spec.target.jetstream")
    stream = js.get("stream")
    if stream is not None and (not isinstance(stream, str) or not stream or not set(stream) <= _STREAM_NAME_CHARS):
        raise InvalidRoute("InvalidSpec", f"spec.target.jetstream.stream {stream!r} is not a valid stream name")

    ref_raw = auth.get("bearerTokenSecretRef")
    secret_ref = None
    if ref_raw is not None:
        ref = _mapping(ref_raw, "spec.auth.bearerTokenSecretRef")
        if not isinstance(ref.get("name"), str) or not ref["name"]:
            raise InvalidRoute("InvalidSpec", "spec.auth.bearerTokenSecretRef.name is required")
        secret_ref = SecretRef(name=ref["name"], key=str(ref.get("key") or "token"))

    return StreamRouteSpec(
        namespace=str(meta.get("namespace") or default_namespace),
        name=name,
        uid=str(meta.get("uid") or ""),
        created=str(meta.get("creationTimestamp") or ""),
        generation=int(meta.get("generation") or 0),
        control_id=control_id,
        tracks=tuple(tracks_raw),
        custom_parameters=params,
        providers=tuple(providers_raw),
        priority=priority,
        subject=subject,
        events_subject=events_subject,
        jetstream_stream=stream,
        secret_ref=secret_ref,
        playback_subject=playback_subject,
    )
