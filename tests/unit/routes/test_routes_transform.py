"""``spec.transform`` and ``spec.target.copies``: parsed, validated, compiled and carried in the table."""

from __future__ import annotations

from typing import Any

import pytest

from sgw_routes.compile import compile_table, to_route
from sgw_routes.manifest import InvalidRoute, parse_streamroute
from sgw_routes.model import Copy, RoutingTable, Transform, decode_table, encode_table


def sr(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "streamgateway.io/v1alpha1",
        "kind": "StreamRoute",
        "metadata": {"name": "asr", "namespace": "voice"},
        "spec": spec,
    }


def refused(spec: dict[str, Any]) -> InvalidRoute:
    with pytest.raises(InvalidRoute) as info:
        parse_streamroute(sr(spec))
    return info.value


def test_transform_and_copies_parse_compile_and_survive_the_table_wire_form() -> None:
    spec = parse_streamroute(
        sr(
            {
                "transform": {"encoding": "L16", "sampleRate": 16000},
                "target": {
                    "subject": "asr.{call_id}.{track}",
                    "copies": [
                        {"subject": "audio.{call_id}.{track}"},
                        {"subject": "wide.{call_id}.{track}", "transform": {"sampleRate": 48000}},
                    ],
                },
            }
        )
    )
    assert spec.transform == Transform(encoding="L16", sample_rate=16000)
    assert spec.copies == (
        Copy(subject="audio.{call_id}.{track}"),
        Copy(subject="wide.{call_id}.{track}", transform=Transform(sample_rate=48000)),
    )
    route = to_route(spec)
    assert (route.transform, route.copies) == (spec.transform, spec.copies)
    table = compile_table([spec], {}, version=4).table
    assert decode_table(encode_table(table)) == table
    assert route.transform is not None and route.transform.label == "L16/16000"


def test_a_route_without_them_is_unchanged_on_the_wire() -> None:
    table = RoutingTable(version=1, routes=(to_route(parse_streamroute(sr({}))),))
    assert b"transform" not in encode_table(table) and b"copies" not in encode_table(table)


@pytest.mark.parametrize(
    ("transform", "words"),
    [
        ({"sampleRate": 11025}, "spec.transform.sampleRate must be one of 8000, 16000, 24000, 48000"),
        ({"sampleRate": "16000"}, "spec.transform.sampleRate"),
        ({"sampleRate": True}, "spec.transform.sampleRate"),
        ({}, "spec.transform.sampleRate"),
        ({"encoding": "PCMU", "sampleRate": 8000}, "spec.transform.encoding 'PCMU' is not one of L16"),
        ("L16/16000", "spec.transform must be an object"),
    ],
)
def test_an_invalid_transform_is_refused(transform: object, words: str) -> None:
    err = refused({"transform": transform})
    assert err.reason == "InvalidSpec" and words in err.message


def test_unknown_fields_in_a_transform_or_a_copy_are_refused() -> None:
    assert refused({"transform": {"sampleRate": 16000, "channels": 2}}).reason == "UnknownField"
    err = refused({"target": {"copies": [{"subject": "x.{track}", "codec": "L16"}]}})
    assert err.reason == "UnknownField" and "spec.target.copies[0].codec" in err.message
    err = refused({"target": {"copies": [{"subject": "x.{track}", "transform": {"rate": 8000}}]}})
    assert err.reason == "UnknownField" and "spec.target.copies[0].transform.rate" in err.message


@pytest.mark.parametrize(
    ("target", "reason", "words"),
    [
        ({"copies": [{"subject": "audio.{call_id}.{track}"}]}, "InvalidSubject", "already a subject of this route"),
        (
            {"copies": [{"subject": "a.{track}"}, {"subject": "a.{track}"}]},
            "InvalidSubject",
            "spec.target.copies[1].subject 'a.{track}' is already",
        ),
        ({"eventsSubject": "ev.{call_id}", "copies": [{"subject": "ev.{call_id}"}]}, "InvalidSubject", "already"),
        ({"copies": [{"subject": "asr.{call_id}"}]}, "InvalidSubject", "needs {track}"),
        ({"copies": [{"subject": "bad subject"}]}, "InvalidSubject", "spec.target.copies[0].subject"),
        ({"copies": [{}]}, "InvalidSpec", "spec.target.copies[0].subject is required"),
        ({"copies": {"subject": "a.{track}"}}, "InvalidSpec", "must be a list"),
        ({"copies": [{"subject": f"c{i}.{{track}}"} for i in range(5)]}, "InvalidSpec", "at most 4"),
        (
            {"jetstream": {"stream": "CALLS"}, "copies": [{"subject": "a.{track}"}]},
            "InvalidSpec",
            "cannot be combined with spec.target.jetstream",
        ),
    ],
)
def test_invalid_copies_are_refused(target: dict[str, Any], reason: str, words: str) -> None:
    err = refused({"target": target})
    assert err.reason == reason and words in err.message, err.message


def test_a_copy_may_leave_out_track_when_the_route_takes_one_track_only() -> None:
    spec = parse_streamroute(
        sr({"match": {"tracks": ["inbound"]}, "target": {"copies": [{"subject": "asr.{call_id}"}]}})
    )
    assert spec.copies == (Copy(subject="asr.{call_id}"),)


def test_an_empty_copies_list_is_no_copies_even_with_jetstream() -> None:
    spec = parse_streamroute(sr({"target": {"jetstream": {"stream": "CALLS"}, "copies": []}}))
    assert spec.copies == () and spec.jetstream_stream == "CALLS"
