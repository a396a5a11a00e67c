"""jambonz ``listen``: the provider side (docs/protocols.md sections 8 and 12.7).

The upgrade offers the ``audio.jambonz.org`` subprotocol. One text frame without an ``event``
opens the stream: the call's attributes (``callSid``, ``from``, ``to``, ``direction``,
``accountSid``) with ``sampleRate``, ``mixType`` and the verb's ``metadata`` (the custom
parameters) at the top level. Then binary L16 frames of 20 ms: ``mono`` is one leg, ``mixed`` both
legs summed into one channel, ``stereo`` both legs interleaved sample by sample (channel 0 the
caller, ``inbound``; channel 1 the other leg, ``outbound``). DTMF is ``{"event":"dtmf"}`` with a
duration in 8 kHz samples, as jambonz passes FreeSWITCH's. No stop: the socket closes.

Back-channel: ``playAudio`` (raw L16, or a WAV file, at its ``sampleRate``) answered by one
``playDone`` once it has played, or been cut short by ``killAudio``; ``disconnect`` ends the
socket; binary L16 frames (``bidirectionalAudio.streaming``) play without an answer.
"""

from __future__ import annotations

import io
import wave
from array import array
from collections.abc import Callable
from typing import ClassVar

from gateway.audio import CodecSpec, Signal, pack_l16le
from gateway.audio.pcm import clip16
from gateway.tools.providers.base import (
    BackAction,
    BadBackMessage,
    CallIds,
    ClearQueue,
    HangUp,
    MixType,
    ProviderName,
    ProviderWire,
    QueueAudio,
    QueueMark,
    StreamSpec,
    b64_field,
    dumps,
    field_of,
    json_object,
    new_uuid,
)
from gateway.tools.wire import LaneSource, MediaFrame, Track, TrackChoice

SUBPROTOCOL = "audio.jambonz.org"
DTMF_SAMPLES_PER_MS = 8
"""jambonz reports a key press's duration in 8 kHz samples."""


def interleave(left: array[int], right: array[int]) -> array[int]:
    """Two mono sample arrays as one interleaved stereo array (left first)."""
    out = array("h", bytes(4 * len(left)))
    out[0::2] = left
    out[1::2] = right
    return out


class JambonzWire(ProviderWire):
    name: ClassVar[ProviderName] = "jambonz"
    first_timestamp = 0
    default_codec = "L16@8000"
    codecs = frozenset(("L16/8000", "L16/16000", "L16/24000", "L16/48000"))
    track_choices: ClassVar[frozenset[TrackChoice]] = frozenset(("inbound",))
    subprotocols = (SUBPROTOCOL,)
    binary_audio = True
    echoes_marks_on_clear = True
    """``killAudio`` cuts every queued ``playAudio`` short, and each is answered by its ``playDone``."""

    def __init__(self, stream: StreamSpec) -> None:
        super().__init__(stream)
        self._plays = 0

    @classmethod
    def new_ids(cls) -> CallIds:
        return CallIds(new_uuid(), "", new_uuid())

    @classmethod
    def check(cls, codec: CodecSpec, track: TrackChoice, mix_type: MixType) -> None:
        if codec.label not in cls.codecs:
            raise ValueError(f"jambonz streams {', '.join(sorted(cls.codecs))}, not {codec.label}")
        if track != "inbound":
            raise ValueError("jambonz picks its tracks with --mix-type (stereo carries both), not --track")

    @property
    def lanes(self) -> tuple[Track, ...]:
        return ("inbound",)  # one binary frame per tick, whatever it carries

    def lane_sources(self, signal: Callable[[Track], Signal]) -> dict[Track, LaneSource]:
        count, mix = self.samples_per_frame, self.stream.mix_type
        caller = signal("inbound")
        if mix == "mono":
            return {"inbound": lambda: (pack_l16le(caller.read(count)), ())}
        other = signal("outbound")
        if mix == "mixed":

            def mixed() -> tuple[bytes, tuple[tuple[Track, bytes], ...]]:
                summed = array("h", map(clip16, map(int.__add__, caller.read(count), other.read(count))))
                return pack_l16le(summed), ()

            return {"inbound": mixed}

        def stereo() -> tuple[bytes, tuple[tuple[Track, bytes], ...]]:
            left, right = caller.read(count), other.read(count)
            return pack_l16le(interleave(left, right)), (("inbound", pack_l16le(left)), ("outbound", pack_l16le(right)))

        return {"inbound": stereo}

    def start(self) -> str:
        stream = self.stream
        ids = stream.ids
        return dumps(
            {
                "callSid": ids.call_id,
                "from": "+15550100",
                "to": "+15550199",
                "direction": "inbound",
                "accountSid": ids.account_id,
                "sampleRate": stream.codec.sample_rate,
                "mixType": stream.mix_type,
                **stream.custom_parameters,
            }
        )

    def media(self, frame: MediaFrame) -> bytes:
        return frame.payload

    def dtmf(self, digit: str, duration_ms: int, at_ms: int) -> str:
        return dumps({"event": "dtmf", "dtmf": digit, "duration": duration_ms * DTMF_SAMPLES_PER_MS})

    def read_back(self, data: str | bytes) -> tuple[BackAction, ...]:
        if isinstance(data, bytes):  # bidirectionalAudio.streaming: raw L16 at the stream's rate
            if len(data) % 2:
                raise BadBackMessage(f"binary frame of {len(data)} bytes is not whole 16-bit samples")
            return (QueueAudio(data, self.playback_bytes_per_ms),)
        message = json_object(data)
        kind = message.get("type")
        if kind == "playAudio":
            return self._play(message)
        if kind == "killAudio":
            return (ClearQueue(),)
        if kind == "disconnect":
            return (HangUp("disconnect"),)
        raise BadBackMessage(f"unknown type {str(kind)[:32]!r}")

    def _play(self, message: dict[str, object]) -> tuple[BackAction, ...]:
        content = b64_field(message, "data", "audioContent")
        kind = field_of(message, "data", "audioContentType")
        rate_text = str(field_of(message, "data", "sampleRate"))
        if kind == "wav":
            try:
                with wave.open(io.BytesIO(content)) as wav:
                    rate, content = wav.getframerate(), wav.readframes(wav.getnframes())
            except (wave.Error, EOFError):
                raise BadBackMessage("audioContent is not a WAV file") from None
        elif kind == "raw" and rate_text.isdigit():
            rate = int(rate_text)
        else:
            raise BadBackMessage(f"playAudio {kind!r} at {rate_text[:16]!r}: expected raw with a sampleRate, or wav")
        self._plays += 1
        return (QueueAudio(content, rate * 2 / 1000), QueueMark(f"playAudio#{self._plays}"))

    def mark_echo(self, name: str) -> str:
        return dumps({"type": "playDone"})
