"""``spec.target.jetstream``: stream settings parsed and refused, and the subject patterns a stream must cover."""

from __future__ import annotations

from typing import Any

import pytest

from sgw_routes.jetstream import StreamSettings, covers, parse_bytes, parse_duration, stream_subjects, subject_pattern
from sgw_routes.manifest import InvalidRoute, parse_streamroute


def route(jetstream: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "streamgateway.io/v1alpha1",
        "kind": "StreamRoute",
        "metadata": {"name": "durable", "namespace": "voice"},
        "spec": {"target": {"subject": "rec.{call_id}.{track}", "jetstream": jetstream}},
    }


def test_every_setting_is_read_into_the_spec() -> None:
    spec = parse_streamroute(
        route(
            {
                "stream": "REC",
                "maxAge": "720h",
                "maxBytes": "10Gi",
                "replicas": 3,
                "storage": "memory",
                "retention": "interest",
                "duplicateWindow": "5m",
                "deletePolicy": "Delete",
            }
        )
    )
    assert spec.jetstream_stream == "REC"
    assert spec.jetstream == StreamSettings(
        stream="REC",
        max_age=720 * 3600.0,
        max_bytes=10 << 30,
        replicas=3,
        storage="memory",
        retention="interest",
        duplicate_window=300.0,
        delete_policy="Delete",
    )


def test_defaults_create_a_file_stream_that_is_never_deleted() -> None:
    settings = parse_streamroute(route({"stream": "REC"})).jetstream
    assert settings == StreamSettings(stream="REC")
    assert settings.create and settings.storage == "file" and settings.delete_policy == "Retain"
    assert settings.max_age is None and settings.max_bytes is None and settings.duplicate_window is None


@pytest.mark.parametrize(
    ("jetstream", "words"),
    [
        ({"stream": "a.b"}, "not a valid stream name"),
        ({"stream": "REC", "create": "yes"}, "create must be true or false"),
        ({"stream": "REC", "create": False, "maxAge": "1h"}, "maxAge need create: true"),
        ({"stream": "REC", "create": False, "deletePolicy": "Delete"}, "deletePolicy: Delete need create: true"),
        ({"stream": "REC", "replicas": 7}, "replicas must be an integer from 1 to 5"),
        ({"stream": "REC", "replicas": True}, "replicas must be an integer"),
        ({"stream": "REC", "storage": "File"}, "storage 'File' is not one of file, memory"),
        ({"stream": "REC", "retention": "forever"}, "retention 'forever' is not one of"),
        ({"stream": "REC", "deletePolicy": "delete"}, "deletePolicy 'delete' is not one of Retain, Delete"),
        ({"stream": "REC", "maxAge": "1 day"}, "maxAge '1 day' is not a duration"),
        ({"stream": "REC", "maxAge": 3600}, "maxAge '3600' is not a duration"),
        ({"stream": "REC", "maxAge": "0s"}, "maxAge must be longer than zero"),
        ({"stream": "REC", "maxAge": "1m", "duplicateWindow": "2m"}, "duplicateWindow cannot be longer than maxAge"),
        ({"stream": "REC", "maxBytes": "10GB"}, "maxBytes '10GB' is not a byte count"),
        ({"stream": "REC", "maxBytes": 0}, "maxBytes must be more than zero"),
    ],
)
def test_unusable_settings_are_refused_naming_the_field(jetstream: dict[str, Any], words: str) -> None:
    with pytest.raises(InvalidRoute) as caught:
        parse_streamroute(route(jetstream))
    assert caught.value.reason == "InvalidSpec" and words in caught.value.message, caught.value.message


def test_an_unknown_setting_is_an_unknown_field() -> None:
    with pytest.raises(InvalidRoute) as caught:
        parse_streamroute(route({"stream": "REC", "maxMsgs": 10}))
    assert caught.value.reason == "UnknownField" and "spec.target.jetstream.maxMsgs" in caught.value.message


def test_a_user_managed_stream_takes_no_settings() -> None:
    settings = parse_streamroute(route({"stream": "REC", "create": False, "deletePolicy": "Retain"})).jetstream
    assert settings == StreamSettings(stream="REC", create=False)


def test_durations_and_quantities() -> None:
    assert parse_duration("1h30m", "x") == 5400.0
    assert parse_duration("1.5s", "x") == 1.5
    assert parse_duration("250ms", "x") == 0.25
    assert parse_bytes(1024, "x") == 1024
    assert parse_bytes("512Mi", "x") == 512 << 20
    assert parse_bytes("2G", "x") == 2_000_000_000


def test_templates_become_wildcard_patterns() -> None:
    assert subject_pattern("audio.{call_id}.{track}") == "audio.*.*"
    assert subject_pattern("events.{call_id}") == "events.*"
    assert subject_pattern("rec.acct-{account_id}.{track}") == "rec.*.*"
    assert subject_pattern("fixed.subject") == "fixed.subject"


@pytest.mark.parametrize(
    ("subject", "pattern", "covered"),
    [
        ("audio.>", "audio.*.*", True),
        ("audio.*.*", "audio.*.*", True),
        (">", "events.*", True),
        ("audio.*", "audio.*.*", False),
        ("audio.*.inbound", "audio.*.*", False),
        ("audio.x.*", "audio.*.*", False),
        ("audio.*.*.*", "audio.*.*", False),
        ("events.>", "events", False),
    ],
)
def test_what_a_stream_subject_covers(subject: str, pattern: str, covered: bool) -> None:
    assert covers(subject, pattern) is covered


@pytest.mark.parametrize(
    ("patterns", "subjects"),
    [
        (["audio.*.*", "events.*"], ("audio.*.*", "events.*")),
        (["calls.*.*", "calls.ev.*"], ("calls.*.*",)),  # one covers the other
        (["rec.*.audio", "rec.events.*"], ("rec.*.*",)),  # they overlap: joined
        (["a.*.*.*", "a.events.*"], ("a.*.*.*", "a.events.*")),  # different lengths never overlap
        (["x.*", "x.*"], ("x.*",)),
    ],
)
def test_stream_subjects_never_overlap_and_capture_every_pattern(
    patterns: list[str], subjects: tuple[str, ...]
) -> None:
    assert stream_subjects(patterns) == subjects
    assert all(any(covers(s, p) for s in subjects) for p in patterns)
