"""Exotel AgentStream (Stream / Voicebot applets): the provider side (docs/protocols.md 7 and 12.6).

Twilio-like JSON spelled in snake_case: a bare ``connected``, ``start`` with ``stream_sid``,
``call_sid``, ``account_sid`` and a ``media_format`` of ``audio/x-raw`` whose ``sample_rate`` and
``bit_rate`` are strings, then ``media`` every **100 ms** (1600 bytes of L16 at 8 kHz), numbers
for ``sequence_number`` and ``chunk``, a string ``timestamp``; ``media.track`` only when the stream
is not the base single inbound track. ``stop`` carries ``reason: callended``.

Back-channel (Voicebot): ``media`` whose audio is a multiple of 320 bytes, ``mark`` echoed once the
audio before it has played, ``clear`` (pending marks come back, as at Twilio).
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any, ClassVar

from gateway.tools.providers.base import (
    BackAction,
    BadBackMessage,
    CallIds,
    ClearQueue,
    ProviderName,
    ProviderWire,
    QueueAudio,
    QueueMark,
    b64,
    b64_field,
    dumps,
    field_of,
    json_object,
)
from gateway.tools.wire import MediaFrame

CHUNK_MULTIPLE = 320
"""Exotel plays back audio only in chunks whose size is a multiple of this many bytes."""


class ExotelWire(ProviderWire):
    name: ClassVar[ProviderName] = "exotel"
    frame_ms = 100
    first_timestamp = 100
    default_codec = "L16@8000"
    codecs = frozenset(("L16/8000", "L16/16000", "L16/24000"))
    echoes_marks_on_clear = True

    @classmethod
    def new_ids(cls) -> CallIds:
        return CallIds(uuid.uuid4().hex, uuid.uuid4().hex, "acct" + secrets.token_hex(3))

    def connected(self) -> str:
        return dumps({"event": "connected"})

    def _head(self, event: str) -> dict[str, Any]:
        return {"event": event, "sequence_number": self.next_sequence(), "stream_sid": self.stream.ids.stream_id}

    def start(self) -> str:
        stream = self.stream
        ids = stream.ids
        message = self._head("start")
        message["start"] = {
            "stream_sid": ids.stream_id,
            "call_sid": ids.call_id,
            "account_sid": ids.account_id,
            "from": "09800000001",
            "to": "08000000002",
            "custom_parameters": dict(stream.custom_parameters),
            "media_format": {"encoding": "audio/x-raw", "sample_rate": str(stream.codec.sample_rate), "bit_rate": "16"},
        }
        return dumps(message)

    def media(self, frame: MediaFrame) -> str:
        media: dict[str, Any] = {}
        if self.stream.tracks != ("inbound",):
            media["track"] = frame.track
        media.update(chunk=frame.chunk, timestamp=str(frame.timestamp), payload=b64(frame.payload))
        return dumps(
            {
                "event": "media",
                "sequence_number": frame.sequence_number,
                "stream_sid": self.stream.ids.stream_id,
                "media": media,
            }
        )

    def dtmf(self, digit: str, duration_ms: int, at_ms: int) -> str:
        message = self._head("dtmf")
        message["dtmf"] = {"digit": digit, "duration": duration_ms}
        return dumps(message)

    def mark_echo(self, name: str) -> str:
        message = self._head("mark")
        message["mark"] = {"name": name}
        return dumps(message)

    def stop(self) -> str:
        ids = self.stream.ids
        message = self._head("stop")
        message["stop"] = {"call_sid": ids.call_id, "account_sid": ids.account_id, "reason": "callended"}
        return dumps(message)

    def read_back(self, data: str | bytes) -> tuple[BackAction, ...]:
        message = json_object(data)
        sid = message.get("stream_sid")
        if sid != self.stream.ids.stream_id:
            raise BadBackMessage(f"stream_sid {str(sid)[:40]!r} is not this stream's")
        event = message.get("event")
        if event == "media":
            payload = b64_field(message, "media", "payload")
            if len(payload) % CHUNK_MULTIPLE:
                raise BadBackMessage(f"media of {len(payload)} bytes is not a multiple of {CHUNK_MULTIPLE}")
            return (QueueAudio(payload, self.playback_bytes_per_ms),)
        if event == "mark":
            name = field_of(message, "mark", "name")
            if not isinstance(name, str) or not name:
                raise BadBackMessage("mark without a name")
            return (QueueMark(name),)
        if event == "clear":
            return (ClearQueue(),)
        raise BadBackMessage(f"unknown event {str(event)[:32]!r}")
