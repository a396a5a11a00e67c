"""Route transforms through a real gateway into a real nats-server, with simulated calls.

Two routes from a routes file: ``asr-*`` publishes its audio transformed to L16/16000
(``spec.transform``); ``both-*`` publishes the original and an L16/16000 copy
(``spec.target.copies``). The consumer checks the codec header, the sample counts against the
audio's duration, the transformed audio against the transform applied here to what was sent, and
the original, byte for byte.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest
from nats.aio.msg import Msg

from gateway.audio import parse_codec
from gateway.audio.transform import converter
from gateway.protocol.media import Codec
from gateway.tools.simulate import SimulateOptions, SimulationReport, simulate
from tests.integration.gateway.conftest import GatewayFactory, RunningGateway

ROUTES = """
apiVersion: streamgateway.io/v1alpha1
kind: StreamRoute
metadata: {name: asr}
spec:
  match: {controlId: "asr-*"}
  transform: {encoding: L16, sampleRate: 16000}
  target: {subject: "asr.{call_id}.{track}"}
---
apiVersion: streamgateway.io/v1alpha1
kind: StreamRoute
metadata: {name: both}
spec:
  match: {controlId: "both-*"}
  target:
    subject: "audio.{call_id}.{track}"
    copies:
      - subject: "asr16.{call_id}.{track}"
        transform: {sampleRate: 16000}
"""
TARGET = Codec("L16", 16000)
SECONDS = 1.0
L16_16K_FRAME = 2 * 16000 * 20 // 1000


@pytest.fixture
async def gw(gateway_factory: GatewayFactory, tmp_path: Path) -> RunningGateway:
    routes = tmp_path / "routes.yaml"
    routes.write_text(ROUTES)
    return await gateway_factory(**{"routing.source": "file", "routing.file": routes})


async def run(gw: RunningGateway, control_id: str, codec: str, calls: int = 2) -> SimulationReport:
    report = await simulate(
        SimulateOptions(
            url=gw.ws_url,
            calls=calls,
            track="both",
            codec=codec,
            duration=SECONDS,
            realtime=False,
            control_id=control_id,
            signal="tone",
            seed=3,
        )
    )
    assert report.failures == [], [(c.error, c.close_code, c.close_reason) for c in report.failures]
    await gw.captured.wait_for(lambda: len(gw.captured.events_of("stopped")) == calls)
    return report


def by_subject(gw: RunningGateway) -> dict[str, list[Msg]]:
    found: dict[str, list[Msg]] = defaultdict(list)
    for msg in gw.captured.audio:
        found[msg.subject].append(msg)
    return found


def transformed(source: Codec, frames: list[bytes], track: int) -> list[bytes]:
    convert = converter(source, TARGET)
    return frames if convert is None else [convert(track, frame) for frame in frames]


@pytest.mark.parametrize("codec", ["PCMU", "PCMA", "L16@24000", "L16@16000"])
async def test_a_transformed_route_publishes_l16_16k_in_whole_frames(gw: RunningGateway, codec: str) -> None:
    report = await run(gw, "asr-{i}", codec)
    source = Codec(parse_codec(codec).name, parse_codec(codec).sample_rate)
    audio = by_subject(gw)
    for call in report.calls:
        (started,) = [e for e in gw.captured.events_of("started") if e["call_id"] == call.call_id]
        assert (started["codec"], started["published_codec"]) == (source.label, "L16/16000")
        for index, track in enumerate(call.tracks):
            msgs = audio.pop(f"asr.{call.call_id}.{track}")
            sent = call.sent[track]
            assert [int((m.headers or {})["Sgw-Seq"]) for m in msgs] == list(range(1, len(sent) + 1))
            assert {(m.headers or {})["Sgw-Codec"] for m in msgs} == {"L16/16000"}
            # 20 ms frames of 16 kHz samples, from the first one: the audio's duration exactly.
            assert [len(m.data) for m in msgs] == [L16_16K_FRAME] * len(sent)
            assert sum(len(m.data) for m in msgs) // 2 == round(SECONDS * 16000)
            assert [m.data for m in msgs] == transformed(source, sent, index)
            if source == TARGET:  # already the target format: untouched
                assert [m.data for m in msgs] == sent
    assert audio == {}  # nothing on any other subject


async def test_copies_publish_the_original_untouched_and_the_transform_beside_it(gw: RunningGateway) -> None:
    report = await run(gw, "both-{i}", "PCMU")
    audio = by_subject(gw)
    for call in report.calls:
        (started,) = [e for e in gw.captured.events_of("started") if e["call_id"] == call.call_id]
        assert (started["codec"], started["published_codec"]) == ("PCMU/8000", "PCMU/8000")
        assert started["copies"] == [
            {
                "subjects": {t: f"asr16.{call.call_id}.{t}" for t in ("inbound", "outbound")},
                "codec": "L16/16000",
            }
        ]
        (stopped,) = [e for e in gw.captured.events_of("stopped") if e["call_id"] == call.call_id]
        for index, track in enumerate(call.tracks):
            sent = call.sent[track]
            original, copy = audio.pop(f"audio.{call.call_id}.{track}"), audio.pop(f"asr16.{call.call_id}.{track}")
            assert [m.data for m in original] == sent  # byte-identical to what the provider sent
            assert {(m.headers or {})["Sgw-Codec"] for m in original} == {"PCMU/8000"}
            assert [m.data for m in copy] == transformed(Codec("PCMU", 8000), sent, index)
            assert {(m.headers or {})["Sgw-Codec"] for m in copy} == {"L16/16000"}
            assert [len(m.data) for m in copy] == [L16_16K_FRAME] * len(sent)
            seq_ts = [((m.headers or {})["Sgw-Seq"], (m.headers or {})["Sgw-Ts"]) for m in original]
            assert [((m.headers or {})["Sgw-Seq"], (m.headers or {})["Sgw-Ts"]) for m in copy] == seq_ts
            # Counted once per frame, not once per message.
            assert stopped["tracks"][track]["frames"] == len(sent) and stopped["tracks"][track]["dropped"] == 0
    assert audio == {}
    frames = sum(len(f) for c in report.calls for f in c.sent.values())
    await gw.metric_reaches("sgw_frames_published_total", frames)
