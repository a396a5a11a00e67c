"""``spec.target.jetstream``: the stream a durable route publishes into, and how it is kept.

The gateway needs only the stream's name. The operator also reads the stream settings: with
``create: true`` (the default) it creates the stream, covering the route's audio and events
subjects, and keeps it matching ``maxAge``, ``maxBytes``, ``replicas``, ``storage``,
``retention`` and ``duplicateWindow``; with ``create: false`` the stream is the user's and is only
checked (it must exist and cover the subjects), so no setting may be given with it.
``deletePolicy: Delete`` lets the operator delete the stream, recorded audio included, when the
last route using it is deleted; the default ``Retain`` never deletes anything.

Durations are Go/Kubernetes duration strings (``90s``, ``24h``, ``1h30m``); ``maxBytes`` is an
integer or a Kubernetes quantity (``512Mi``, ``10Gi``, ``1G``). Pure: no NATS here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final, Literal

import msgspec

Storage = Literal["file", "memory"]
Retention = Literal["limits", "interest", "workqueue"]
DeletePolicy = Literal["Retain", "Delete"]

STORAGES: Final = ("file", "memory")
RETENTIONS: Final = ("limits", "interest", "workqueue")
DELETE_POLICIES: Final = ("Retain", "Delete")
MAX_REPLICAS: Final = 5
JETSTREAM_FIELDS: Final = dict.fromkeys(
    ("stream", "create", "maxAge", "maxBytes", "replicas", "storage", "retention", "duplicateWindow", "deletePolicy")
)
"""The fields of ``spec.target.jetstream`` (each a leaf)."""
_SETTINGS: Final = ("maxAge", "maxBytes", "replicas", "storage", "retention", "duplicateWindow")
_STREAM_NAME: Final = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_DURATION_PART: Final = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION: Final = re.compile(rf"^(?:{_DURATION_PART.pattern})+$")
DURATION_PATTERN: Final = r"^([0-9]+(\.[0-9]*)?(ns|us|µs|ms|s|m|h))+$"
"""The CRD's ``pattern`` for ``maxAge`` and ``duplicateWindow``."""
_UNIT_SECONDS: Final = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_QUANTITY: Final = re.compile(r"^([0-9]+)(Ki|Mi|Gi|Ti|Pi|k|K|M|G|T|P)?$")
QUANTITY_PATTERN: Final = r"^[0-9]+(Ki|Mi|Gi|Ti|Pi|k|K|M|G|T|P)?$"
_QUANTITY_FACTOR: Final = {
    None: 1,
    "Ki": 1 << 10,
    "Mi": 1 << 20,
    "Gi": 1 << 30,
    "Ti": 1 << 40,
    "Pi": 1 << 50,
    "k": 10**3,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
}
_PLACEHOLDER: Final = re.compile(r"\{[a-z_]+\}")


class InvalidJetStream(ValueError):
    """A ``spec.target.jetstream`` that cannot be used (the message names the field)."""


class StreamSettings(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """``spec.target.jetstream`` of one route, validated."""

    stream: str
    create: bool = True
    max_age: float | None = None
    """Seconds a message is kept; ``None``: no limit."""
    max_bytes: int | None = None
    """Bytes the stream keeps; ``None``: no limit."""
    replicas: int = 1
    storage: Storage = "file"
    retention: Retention = "limits"
    duplicate_window: float | None = None
    """Seconds a ``Nats-Msg-Id`` is remembered; ``None``: the server's default (two minutes)."""
    delete_policy: DeletePolicy = "Retain"

    def same_stream_as(self, other: StreamSettings) -> bool:
        """Whether the two ask for the same stream configuration (``deletePolicy`` aside)."""
        return msgspec.structs.replace(self, delete_policy="Retain") == msgspec.structs.replace(
            other, delete_policy="Retain"
        )


def parse_duration(text: object, where: str) -> float:
    """A Go duration string (``90s``, ``1h30m``) in seconds, positive."""
    if not isinstance(text, str) or not _DURATION.match(text):
        raise InvalidJetStream(f"{where} {str(text)[:32]!r} is not a duration such as 90s, 24h or 1h30m")
    seconds = sum(float(number) * _UNIT_SECONDS[unit] for number, unit in _DURATION_PART.findall(text))
    if seconds <= 0:
        raise InvalidJetStream(f"{where} must be longer than zero")
    return seconds


def parse_bytes(value: object, where: str) -> int:
    """An integer or a Kubernetes quantity (``512Mi``, ``10Gi``, ``1G``), positive."""
    if isinstance(value, int) and not isinstance(value, bool):
        amount = value
    elif isinstance(value, str) and (match := _QUANTITY.match(value)):
        amount = int(match.group(1)) * _QUANTITY_FACTOR[match.group(2)]
    else:
        raise InvalidJetStream(f"{where} {str(value)[:32]!r} is not a byte count such as 1073741824 or 10Gi")
    if amount <= 0:
        raise InvalidJetStream(f"{where} must be more than zero")
    return amount


def _choice(raw: Mapping[str, Any], name: str, choices: tuple[str, ...], default: str, where: str) -> Any:
    value = raw.get(name, default)
    if value not in choices:
        raise InvalidJetStream(f"{where}.{name} {str(value)[:32]!r} is not one of {', '.join(choices)}")
    return value


def parse_jetstream(value: object, where: str = "spec.target.jetstream") -> StreamSettings | None:
    """Validate ``spec.target.jetstream`` (``None`` when the route is not durable)."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidJetStream(f"{where} must be an object")
    stream = value.get("stream")
    if not isinstance(stream, str) or not _STREAM_NAME.match(stream):
        raise InvalidJetStream(f"{where}.stream {stream!r} is not a valid stream name ([A-Za-z0-9_-], 1-255)")
    create = value.get("create", True)
    if not isinstance(create, bool):
        raise InvalidJetStream(f"{where}.create must be true or false")
    given = [name for name in _SETTINGS if value.get(name) is not None]
    delete_policy = _choice(value, "deletePolicy", DELETE_POLICIES, "Retain", where)
    if not create and (given or delete_policy == "Delete"):
        named = ", ".join(given + (["deletePolicy: Delete"] if delete_policy == "Delete" else []))
        raise InvalidJetStream(
            f"{where}: {named} need create: true (with create: false the stream is yours: it is checked, never changed)"
        )
    replicas = value.get("replicas", 1)
    if isinstance(replicas, bool) or not isinstance(replicas, int) or not 1 <= replicas <= MAX_REPLICAS:
        raise InvalidJetStream(f"{where}.replicas must be an integer from 1 to {MAX_REPLICAS}")
    max_age = parse_duration(value["maxAge"], f"{where}.maxAge") if value.get("maxAge") is not None else None
    window = value.get("duplicateWindow")
    duplicate_window = parse_duration(window, f"{where}.duplicateWindow") if window is not None else None
    if duplicate_window is not None and max_age is not None and duplicate_window > max_age:
        raise InvalidJetStream(f"{where}.duplicateWindow cannot be longer than maxAge (a NATS rule)")
    max_bytes = parse_bytes(value["maxBytes"], f"{where}.maxBytes") if value.get("maxBytes") is not None else None
    return StreamSettings(
        stream=stream,
        create=create,
        max_age=max_age,
        max_bytes=max_bytes,
        replicas=replicas,
        storage=_choice(value, "storage", STORAGES, "file", where),
        retention=_choice(value, "retention", RETENTIONS, "limits", where),
        duplicate_window=duplicate_window,
        delete_policy=delete_policy,
    )


def subject_pattern(template: str) -> str:
    """The subjects a template can render, as a NATS wildcard: every token that holds a
    placeholder becomes ``*`` (``audio.{call_id}.{track}`` -> ``audio.*.*``)."""
    return ".".join("*" if _PLACEHOLDER.search(token) else token for token in template.split("."))


def stream_subjects(patterns: Iterable[str]) -> tuple[str, ...]:
    """Subjects for one stream that capture every pattern (as :func:`subject_pattern` makes them):
    NATS refuses a stream whose subjects overlap, so a pattern another one covers is left out and
    two that overlap otherwise are joined into one (``rec.*.audio`` and ``rec.events.*`` become
    ``rec.*.*``, which also captures ``rec.x.y``)."""
    subjects = set(patterns)
    while True:
        pair = next(((a, b) for a in subjects for b in subjects if a < b and _overlap(a, b)), None)
        if pair is None:
            return tuple(sorted(subjects))
        a, b = pair
        subjects -= {a, b}
        subjects.add(".".join(x if x == y else "*" for x, y in zip(a.split("."), b.split("."), strict=True)))


def _overlap(a: str, b: str) -> bool:
    """Whether two patterns without ``>`` can match the same subject."""
    ta, tb = a.split("."), b.split(".")
    return len(ta) == len(tb) and all(x == y or "*" in (x, y) for x, y in zip(ta, tb, strict=True))


def covers(subject: str, pattern: str) -> bool:
    """Whether stream subject ``subject`` (wildcards allowed) captures every subject ``pattern`` can be."""
    have, want = subject.split("."), pattern.split(".")
    for index, token in enumerate(have):
        if token == ">":
            return len(want) > index
        if index >= len(want):
            return False
        if want[index] == ">":
            return False
        if token != "*" and token != want[index]:
            return False
    return len(have) == len(want)
