"""The Twilio / SignalWire status-callback parser (docs/protocols.md section 2.5) as table tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.protocol.dialects import STATUS_PARSERS
from gateway.protocol.dialects.base import StatusError, StatusRequest
from gateway.protocol.dialects.twilio import parse_status

SWML: dict[str, Any] = json.loads((Path(__file__).parents[2] / "fixtures" / "swml_stream_status.json").read_text())
"""A SignalWire ``calling.call.stream`` status callback (shared with the integration tests)."""
CXML = {
    "AccountSid": "AC00000000000000000000000000000001",
    "CallSid": "CA1",
    "StreamSid": "MZ1",
    "StreamName": "transcribe",
    "StreamEvent": "stream-error",
    "StreamError": "connection_refused",
    "StreamTrack": "both_tracks",
    "Timestamp": "2026-04-30T12:00:00Z",
}


def req(json: dict[str, Any] | None = None, form: dict[str, str] | None = None, **headers: str) -> StatusRequest:
    return StatusRequest(json=json, form=form or {}, headers={k.replace("_", "-"): v for k, v in headers.items()})


def test_both_providers_share_the_parser() -> None:
    assert STATUS_PARSERS["signalwire"] is parse_status
    assert STATUS_PARSERS["twilio"] is parse_status


def test_swml_json() -> None:
    update = parse_status(req(SWML))
    assert update is not None
    assert (update.provider, update.call_id, update.control_id, update.state) == (
        "signalwire",
        "call-9",
        "stream-1",
        "streaming",
    )
    assert (update.stream_id, update.name, update.account_id, update.provider_ts) == (
        "",
        "live-transcription",
        "p-1",
        1777565701.56,
    )
    assert dict(update.extra) == {"node_id": "n-1", "segment_id": "seg-1"}


def test_swml_fields_as_query_parameters() -> None:
    """``status_url_method: GET``: the JSON fields arrive as query parameters, ``params.*`` nested."""
    form = {
        "event_type": "calling.call.stream",
        "project_id": "p-1",
        "params.call_id": "call-9",
        "params.control_id": "stream-1",
        "params.state": "finished",
    }
    update = parse_status(req(form=form))
    assert update is not None and (update.call_id, update.state, update.account_id) == ("call-9", "finished", "p-1")


def test_cxml_twilio_and_signalwire() -> None:
    twilio = parse_status(req(form=CXML))
    assert twilio is not None and twilio.provider == "twilio"
    assert (twilio.call_id, twilio.stream_id, twilio.control_id, twilio.state) == (
        "CA1",
        "MZ1",
        "transcribe",
        "stream-error",
    )
    assert dict(twilio.extra) == {"error": "connection_refused", "track": "both_tracks"}
    assert twilio.provider_ts == "2026-04-30T12:00:00Z"
    uuids = {"CallSid": "76ac3c36", "StreamSid": "7d56cc11", "AccountSid": "b08dacad", "StreamEvent": "stream-started"}
    signalwire = parse_status(req(form=uuids))
    assert signalwire is not None and signalwire.provider == "signalwire"
    assert signalwire.control_id == "7d56cc11" and dict(signalwire.extra) == {}  # no name: the stream id
    # SignalWire's signature header says who sent it, whatever the ids look like
    signed = parse_status(req(form=CXML, x_signalwire_signature="x"))
    assert signed is not None and signed.provider == "signalwire"


def test_other_providers_callbacks_are_not_claimed() -> None:
    assert parse_status(req(form=CXML, telnyx_signature_ed25519="x", telnyx_timestamp="1")) is None  # TeXML
    assert parse_status(req(form={"Event": "StartStream"}, x_plivo_signature_v3="x")) is None
    assert parse_status(req({"data": {"event_type": "streaming.started"}})) is None
    assert parse_status(req({"eventType": "mediaStreamStarted"})) is None
    assert parse_status(req(form={"Event": "StartStream", "CallUUID": "c"})) is None
    assert parse_status(req()) is None


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        (req({"event_type": "calling.call.play"}), "unsupported event_type"),
        (req({"event_type": "calling.call.stream", "params": [1]}), "params must be an object"),
        (req({"event_type": "calling.call.stream", "params": {"call_id": "x"}}), "params missing control_id, state"),
        (req({**SWML, "params": {**SWML["params"], "state": "paused"}}), "unknown state"),
        (req({**SWML, "params": {**SWML["params"], "call_id": 7}}), "params missing call_id"),
        (req(form={**CXML, "StreamEvent": "stream-paused"}), "unknown StreamEvent"),
        (req(form={**CXML, "CallSid": ""}), "CallSid missing"),
    ],
)
def test_invalid_callbacks_say_why(request_: StatusRequest, reason: str) -> None:
    with pytest.raises(StatusError, match=reason):
        parse_status(request_)
