"""StreamRoute manifests: parse and validate one resource into a :class:`StreamRouteSpec`.

The same code reads a routes file (multi-document YAML, exactly what ``kubectl apply`` takes) and
the objects the operator receives from the API server. It checks what the CRD schema cannot
express (glob syntax, placeholders allowed per field, duplicate tracks) and reports every problem
as an :class:`InvalidRoute` with a ``reason`` the operator puts in the ``Ready`` condition.

:data:`SPEC_FIELDS` is the one list of the spec fields this code understands. A spec holding any
other field is refused (reason ``UnknownField``), never served without it: a field the gateway
skipped could be an auth kind, a match filter or a target setting, and serving the route without
it could open it, widen it or send audio somewhere other than asked. A new field goes there and
into :func:`parse_streamroute` together.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

import msgspec

from sgw_routes.jetstream import JETSTREAM_FIELDS, InvalidJetStream, StreamSettings, parse_jetstream
from sgw_routes.model import PROVIDERS, TRACKS, TRANSFORM_ENCODINGS, TRANSFORM_RATES, Copy, Transform
from sgw_routes.subjects import (
    DEFAULT_AUDIO_SUBJECT,
    DEFAULT_EVENTS_SUBJECT,
    TemplateError,
    validate_template,
)

API_GROUP: Final = "streamgateway.io"
API_VERSION: Final = f"{API_GROUP}/v1alpha1"
KIND: Final = "StreamRoute"
_EVENT_PLACEHOLDERS: Final = ("call_id", "stream_id", "control_id", "route", "account_id")
_SECRET_NAME: Final = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
"""A Secret name (DNS subdomain): also a safe path component in file mode (``DIR/<name>/<key>``)."""
_SECRET_KEY: Final = re.compile(r"^[-._a-zA-Z0-9]+$")

FieldTree = Mapping[str, "FieldTree | None"]
SPEC_FIELDS: Final[FieldTree] = {
    "match": {"controlId": None, "tracks": None, "providers": None, "customParameters": None},
    "priority": None,
    "target": {"subject": None, "eventsSubject": None, "jetstream": JETSTREAM_FIELDS, "copies": None},
    "transform": {"encoding": None, "sampleRate": None},
    "auth": {
        "bearerTokenSecretRef": {"name": None, "key": None},
        "basicAuthSecretRef": {"name": None},
        "twilioSignature": {"authTokenSecretRef": {"name": None, "key": None}},
    },
    "playback": {"subject": None},
}
"""Every field of ``spec`` this gateway understands. ``None`` marks a leaf, whose value (for
``customParameters``: whose user-chosen keys) :func:`parse_streamroute` checks itself."""


class InvalidRoute(ValueError):
    """A StreamRoute that cannot be compiled. ``reason`` is a condition reason (CamelCase)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class SecretRef(msgspec.Struct, frozen=True):
    """One key of a Secret in the route's namespace (file mode: ``DIR/<name>/<key>``)."""

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
    jetstream: StreamSettings | None = None
    """``spec.target.jetstream``: the stream (``jetstream_stream`` is its name) and its settings."""
    secret_ref: SecretRef | None = None
    """``spec.auth.bearerTokenSecretRef``: the bearer token's Secret key."""
    basic_secret: str | None = None
    """``spec.auth.basicAuthSecretRef.name``: a Secret with ``username`` and ``password`` keys."""
    twilio_ref: SecretRef | None = None
    """``spec.auth.twilioSignature.authTokenSecretRef``: the Twilio auth token's Secret key."""
    playback_subject: str | None = None
    transform: Transform | None = None
    """``spec.transform``: what the route publishes on ``subject`` instead of the provider's audio."""
    copies: tuple[Copy, ...] = ()
    """``spec.target.copies``: more subject sets every frame is published on."""

    @property
    def key(self) -> str:
        """``namespace/name``: the route's identity in the table."""
        return f"{self.namespace}/{self.name}"

    @property
    def secret_names(self) -> tuple[str, ...]:
        """Every Secret the route's auth reads (in its namespace), each once."""
        names = [ref.name for ref in (self.secret_ref, self.twilio_ref) if ref is not None]
        if self.basic_secret is not None:
            names.append(self.basic_secret)
        return tuple(dict.fromkeys(names))


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


def unknown_fields(value: object, fields: FieldTree, where: str) -> list[str]:
    """Paths of the fields of ``value`` that ``fields`` does not list (sorted; values of the wrong
    type are left to the parser, which names them)."""
    if not isinstance(value, Mapping):
        return []
    found: list[str] = []
    for name in sorted(value, key=str):
        path = f"{where}.{name}"
        if name not in fields:
            found.append(path)
            continue
        sub = fields[name]
        if sub is not None:
            found += unknown_fields(value[name], sub, path)
    return found


def _secret_ref(value: object, where: str, *, default_key: str | None) -> SecretRef:
    """``{name, key}`` (or ``{name}`` when ``default_key`` is None: a Secret with fixed keys)."""
    ref = _mapping(value, where)
    name = ref.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidRoute("InvalidSpec", f"{where}.name is required")
    if len(name) > 253 or not _SECRET_NAME.match(name):
        raise InvalidRoute("InvalidSpec", f"{where}.name {name[:64]!r} is not a valid Secret name")
    if default_key is None:
        return SecretRef(name=name, key="")
    key = ref.get("key") or default_key
    if not isinstance(key, str) or len(key) > 253 or not _SECRET_KEY.match(key) or key.startswith(".."):
        raise InvalidRoute("InvalidSpec", f"{where}.key {str(key)[:64]!r} is not a valid Secret key")
    return SecretRef(name=name, key=key)


def _auth(auth: Mapping[str, Any]) -> tuple[SecretRef | None, str | None, SecretRef | None]:
    """The three auth kinds: (bearer token ref, basic-auth Secret name, Twilio auth token ref)."""
    bearer = basic = twilio = None
    if auth.get("bearerTokenSecretRef") is not None:
        bearer = _secret_ref(auth["bearerTokenSecretRef"], "spec.auth.bearerTokenSecretRef", default_key="token")
    if auth.get("basicAuthSecretRef") is not None:
        basic = _secret_ref(auth["basicAuthSecretRef"], "spec.auth.basicAuthSecretRef", default_key=None).name
    if auth.get("twilioSignature") is not None:
        signature = _mapping(auth["twilioSignature"], "spec.auth.twilioSignature")
        if signature.get("authTokenSecretRef") is None:
            raise InvalidRoute("InvalidSpec", "spec.auth.twilioSignature.authTokenSecretRef is required")
        twilio = _secret_ref(
            signature["authTokenSecretRef"], "spec.auth.twilioSignature.authTokenSecretRef", default_key="token"
        )
    return bearer, basic, twilio


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
    unknown = unknown_fields(spec, SPEC_FIELDS, "spec")
    if unknown:
        raise InvalidRoute(
            "UnknownField",
            f"{', '.join(unknown)}: not a field this gateway understands; the route is refused rather than "
            "served without it (a misspelling, or a newer StreamRoute than this gateway)",
        )
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

    try:
        jetstream = parse_jetstream(target.get("jetstream"))
    except InvalidJetStream as exc:
        raise InvalidRoute("InvalidSpec", str(exc)) from None
    stream = jetstream.stream if jetstream is not None else None

    secret_ref, basic_secret, twilio_ref = _auth(auth)
    transform = _transform(spec.get("transform"), "spec.transform")
    copies = _copies(target.get("copies"), tracks_raw, (subject, events_subject, playback_subject), stream)

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
        jetstream=jetstream,
        secret_ref=secret_ref,
        basic_secret=basic_secret,
        twilio_ref=twilio_ref,
        playback_subject=playback_subject,
        transform=transform,
        copies=copies,
    )


def _transform(value: object, where: str) -> Transform | None:
    """``{encoding: L16, sampleRate: 16000}`` (``encoding`` defaults to L16)."""
    if value is None:
        return None
    raw = _mapping(value, where)
    encoding = raw.get("encoding", "L16")
    if encoding not in TRANSFORM_ENCODINGS:
        raise InvalidRoute(
            "InvalidSpec", f"{where}.encoding {str(encoding)[:32]!r} is not one of {', '.join(TRANSFORM_ENCODINGS)}"
        )
    rate = raw.get("sampleRate")
    if isinstance(rate, bool) or rate not in TRANSFORM_RATES:
        rates = ", ".join(str(r) for r in TRANSFORM_RATES)
        raise InvalidRoute("InvalidSpec", f"{where}.sampleRate must be one of {rates}, got {str(rate)[:32]!r}")
    return Transform(encoding=encoding, sample_rate=rate)


COPY_FIELDS: Final[FieldTree] = {"subject": None, "transform": {"encoding": None, "sampleRate": None}}
"""The fields of one ``spec.target.copies`` entry (``copies`` itself is a leaf of :data:`SPEC_FIELDS`)."""
MAX_COPIES: Final = 4


def _copies(value: object, tracks: list[str], taken: tuple[str | None, ...], jetstream: object) -> tuple[Copy, ...]:
    """``spec.target.copies``: each a subject template (distinct from every other subject of the
    route, with ``{track}`` unless the route matches one track only) and an optional transform."""
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_COPIES:
        raise InvalidRoute("InvalidSpec", f"spec.target.copies must be a list of at most {MAX_COPIES} entries")
    if value and jetstream is not None:
        # Each copy would be a message of its own in the stream, under the frame's de-duplication id.
        raise InvalidRoute("InvalidSpec", "spec.target.copies cannot be combined with spec.target.jetstream")
    used = {t for t in taken if t}
    copies: list[Copy] = []
    for index, entry in enumerate(value):
        where = f"spec.target.copies[{index}]"
        unknown = unknown_fields(entry, COPY_FIELDS, where)
        if unknown:
            raise InvalidRoute("UnknownField", f"{', '.join(unknown)}: not a field this gateway understands")
        raw = _mapping(entry, where)
        template = raw.get("subject")
        if not isinstance(template, str) or not template:
            raise InvalidRoute("InvalidSpec", f"{where}.subject is required")
        try:
            subject = validate_template(template)
        except TemplateError as exc:
            raise InvalidRoute("InvalidSubject", f"{where}.subject: {exc}") from None
        if subject in used:
            raise InvalidRoute("InvalidSubject", f"{where}.subject {subject!r} is already a subject of this route")
        if "{track}" not in subject and len(tracks) != 1:
            raise InvalidRoute(
                "InvalidSubject",
                f"{where}.subject {subject!r} needs {{track}}: the route takes streams with both tracks",
            )
        used.add(subject)
        copies.append(Copy(subject=subject, transform=_transform(raw.get("transform"), f"{where}.transform")))
    return tuple(copies)
