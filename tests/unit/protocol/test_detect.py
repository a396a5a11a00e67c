"""Provider detection from a stream's real first frames, for all eight providers, the way the shell
asks (a bare ``connected`` is kept and decided by the frame after it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.protocol.dialects import DIALECTS, create
from gateway.protocol.dialects.base import as_events
from gateway.protocol.dialects.detect import DEFAULT, detect
from gateway.protocol.events import Start

FIXTURES = Path(__file__).parents[2] / "fixtures"


def first_frames(fixture: str, count: int = 2) -> list[str]:
    """The first text frames a provider sends in a recorded session (bare frames, or the
    ``{"dir", "frame", "msg"}`` envelope of the binary providers' fixtures)."""
    frames = []
    for line in (FIXTURES / f"{fixture}.jsonl").read_text().splitlines():
        entry = json.loads(line)
        if "dir" in entry and (entry["dir"] != "p2s" or entry["frame"] != "text"):
            continue
        frames.append(json.dumps(entry["msg"]) if "dir" in entry else line)
        if len(frames) == count:
            break
    return frames


def detected(frames: list[str]) -> tuple[str, int]:
    """What the shell settles on, and how many frames it needed (at most two)."""
    name = detect(frames[0])
    if name is not None:
        return name, 1
    return detect(frames[1]) or DEFAULT, 2


@pytest.mark.parametrize(
    ("fixture", "provider", "frames_needed"),
    [
        ("signalwire_stream", "signalwire", 1),
        ("twilio_connect_stream", "signalwire", 1),  # one dialect for both; it tells them apart (below)
        ("telnyx_bidirectional_pcmu", "telnyx", 2),  # bare connected, then start
        ("telnyx_both_tracks_pcma", "telnyx", 2),
        ("exotel_l16_8k", "exotel", 2),  # bare connected, then start
        ("exotel_l16_16k_both", "exotel", 2),
        ("plivo_mulaw_8k", "plivo", 1),  # no connected: start first
        ("plivo_l16_16k_both", "plivo", 1),
        ("bandwidth_pcmu", "bandwidth", 1),
        ("vonage_l16_16k", "vonage", 1),  # websocket:connected
        ("jambonz_mono_16k", "jambonz", 1),  # no event at all: the call's attributes
        ("jambonz_stereo_8k", "jambonz", 1),
    ],
)
def test_recorded_first_frames(fixture: str, provider: str, frames_needed: int) -> None:
    assert detected(first_frames(fixture)) == (provider, frames_needed)


@pytest.mark.parametrize(
    ("fixture", "provider"),
    [
        ("signalwire_stream", "signalwire"),
        ("twilio_connect_stream", "twilio"),
        ("telnyx_bidirectional_pcmu", "telnyx"),
        ("exotel_l16_8k", "exotel"),
        ("plivo_mulaw_8k", "plivo"),
        ("bandwidth_pcmu", "bandwidth"),
    ],
)
def test_the_detected_dialect_names_its_provider_in_start(fixture: str, provider: str) -> None:
    frames = first_frames(fixture, 2)
    name, _ = detected(frames)
    dialect = create(name, forced=False)
    events = [e for frame in frames for e in as_events(dialect.text(frame))]
    starts = [e for e in events if isinstance(e, Start)]
    assert [s.provider for s in starts] == [provider]


@pytest.mark.parametrize(
    ("frame", "provider"),
    [
        ('{"event":"connected","protocol":"Call","version":"0.2.0"}', "signalwire"),
        ('{"event":"connected","protocol":"Call","version":"1.0.0"}', "signalwire"),
        ('{"event":"connected","version":"1.0.0"}', None),  # Telnyx: ask again
        ('{"event":"connected"}', None),  # Exotel: ask again
        ('{"event":"start","sequence_number":"1","stream_id":"s","start":{"call_control_id":"v3:c"}}', "telnyx"),
        ('{"event":"media","sequence_number":"2","stream_id":"s","media":{"payload":""}}', "telnyx"),
        ('{"event":"start","sequence_number":1,"stream_sid":"s","start":{"call_sid":"c"}}', "exotel"),
        ('{"event":"media","stream_sid":"s","media":{"payload":""}}', "exotel"),
        ('{"event":"start","sequenceNumber":1,"start":{"callId":"c","streamId":"s"},"extra_headers":""}', "plivo"),
        ('{"event":"media","sequenceNumber":2,"streamId":"s","media":{"payload":""}}', "plivo"),
        ('{"eventType":"start","metadata":{"callId":"c","streamId":"s"}}', "bandwidth"),
        ('{"event":"websocket:connected","content-type":"audio/l16;rate=8000"}', "vonage"),
        ('{"callSid":"c","sampleRate":8000,"mixType":"mono"}', "jambonz"),
        ('{"event":"start","start":{"streamSid":"MZ1","callSid":"CA1"}}', "signalwire"),
        # SignalWire's older envelope says eventType too, around a Twilio-shaped message
        (
            '{"eventType":"connected","rawEvent":{"event":"connected","protocol":"Call","version":"0.2.0"}}',
            "signalwire",
        ),
        ("not json", "signalwire"),
        ("[1, 2]", "signalwire"),
        ('{"x": 1}', "signalwire"),
    ],
)
def test_single_frames(frame: str, provider: str | None) -> None:
    assert detect(frame) == provider


def test_every_detected_name_is_a_registered_dialect() -> None:
    assert {"signalwire", "twilio", "telnyx", "vonage", "plivo", "exotel", "jambonz", "bandwidth"} <= set(DIALECTS)
