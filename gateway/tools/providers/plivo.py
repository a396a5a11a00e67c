"""Plivo Audio Streams: the provider side (docs/protocols.md sections 5 and 12.4).

No ``connected`` and no ``stop``: ``start`` (``callId``, ``streamId``, ``accountId``, ``tracks``,
``mediaFormat``) first, ``media`` with **number** counters and a Unix-epoch-milliseconds
``timestamp`` (a string), the custom parameters as the ``extra_headers`` string ``k=v,k2=v2`` on
``start`` and every ``media``; the socket's close ends the stream. Audio is L16 at 8 or 16 kHz or
mu-law 8 kHz (``audio/x-l16`` / ``audio/x-mulaw``).

Back-channel: ``playAudio`` (its ``contentType`` and ``sampleRate`` must match the stream, or
Plivo plays nothing), ``checkpoint`` answered by ``playedStream`` with its ``name`` once the audio
before it has played, ``clearAudio`` answered by ``clearedAudio``, ``sendDTMF``.
"""

from __future__ import annotations

import secrets
import string
from typing import Any, ClassVar

from gateway.tools.providers.base import (
    BackAction,
    BadBackMessage,
    CallIds,
    ClearQueue,
    Phase,
    ProviderName,
    ProviderWire,
    QueueAudio,
    QueueMark,
    SendDigits,
    StatusCallback,
    b64,
    b64_field,
    dumps,
    field_of,
    json_object,
    new_uuid,
)
from gateway.tools.wire import MediaFrame

_ACCOUNT_CHARS = string.ascii_uppercase + string.digits


class PlivoWire(ProviderWire):
    name: ClassVar[ProviderName] = "plivo"
    default_codec = "L16@8000"
    codecs = frozenset(("L16/8000", "L16/16000", "PCMU/8000"))

    @classmethod
    def new_ids(cls) -> CallIds:
        return CallIds(new_uuid(), new_uuid(), "MA" + "".join(secrets.choice(_ACCOUNT_CHARS) for _ in range(18)))

    @property
    def content_type(self) -> str:
        return "audio/x-mulaw" if self.stream.codec.name == "PCMU" else "audio/x-l16"

    @property
    def extra_headers(self) -> str:
        return ",".join(f"{key}={value}" for key, value in self.stream.custom_parameters.items())

    def _epoch(self, ms: int) -> str:
        return str(self.stream.epoch_ms + ms)

    def start(self) -> str:
        stream = self.stream
        ids = stream.ids
        body: dict[str, Any] = {
            "callId": ids.call_id,
            "streamId": ids.stream_id,
            "accountId": ids.account_id,
            "tracks": list(stream.tracks),
            "mediaFormat": {"encoding": self.content_type, "sampleRate": stream.codec.sample_rate},
        }
        return dumps(
            {
                "event": "start",
                "sequenceNumber": self.next_sequence(),
                "start": body,
                "extra_headers": self.extra_headers,
            }
        )

    def media(self, frame: MediaFrame) -> str:
        return dumps(
            {
                "event": "media",
                "sequenceNumber": frame.sequence_number,
                "streamId": self.stream.ids.stream_id,
                "media": {
                    "track": frame.track,
                    "timestamp": self._epoch(frame.timestamp),
                    "chunk": frame.chunk,
                    "payload": b64(frame.payload),
                },
                "extra_headers": self.extra_headers,
            }
        )

    def dtmf(self, digit: str, duration_ms: int, at_ms: int) -> str:
        return dumps(
            {
                "event": "dtmf",
                "sequenceNumber": self.next_sequence(),
                "streamId": self.stream.ids.stream_id,
                "dtmf": {"track": "inbound", "digit": digit, "timestamp": self._epoch(at_ms)},
            }
        )

    def read_back(self, data: str | bytes) -> tuple[BackAction, ...]:
        message = json_object(data)
        event = message.get("event")
        if event == "playAudio":
            content_type = field_of(message, "media", "contentType")
            rate = field_of(message, "media", "sampleRate")
            if content_type != self.content_type or str(rate) != str(self.stream.codec.sample_rate):
                raise BadBackMessage(
                    f"playAudio {content_type!r} at {rate!r} does not match the stream's "
                    f"{self.content_type} at {self.stream.codec.sample_rate}"
                )
            return (QueueAudio(b64_field(message, "media", "payload"), self.playback_bytes_per_ms),)
        if event in ("checkpoint", "clearAudio"):
            stream_id = message.get("streamId")
            if stream_id != self.stream.ids.stream_id:
                raise BadBackMessage(f"{event} for streamId {str(stream_id)[:40]!r}, not this stream")
            if event == "clearAudio":
                return (ClearQueue(),)
            name = message.get("name")
            if not isinstance(name, str) or not name:
                raise BadBackMessage("checkpoint without a name")
            return (QueueMark(name),)
        if event == "sendDTMF":
            digits = message.get("dtmf")
            if not isinstance(digits, str) or not digits:
                raise BadBackMessage("sendDTMF without digits")
            return (SendDigits(digits),)
        raise BadBackMessage(f"unknown event {str(event)[:32]!r}")

    def mark_echo(self, name: str) -> str:
        return dumps(
            {
                "event": "playedStream",
                "sequenceNumber": self.next_sequence(),
                "streamId": self.stream.ids.stream_id,
                "name": name,
            }
        )

    def clear_answer(self) -> str:
        return dumps(
            {"event": "clearedAudio", "sequenceNumber": self.next_sequence(), "streamId": self.stream.ids.stream_id}
        )

    def status_callback(
        self, phase: Phase, *, url: str, control_id: str, at: float, variant: str | None
    ) -> StatusCallback:
        if variant not in (None, "form"):
            raise ValueError(f"plivo status callbacks are form fields, not {variant}")
        ids = self.stream.ids
        return StatusCallback(
            "application/x-www-form-urlencoded",
            form={
                "Event": "StartStream" if phase == "started" else "StopStream",
                "CallUUID": ids.call_id,
                "AuthID": ids.account_id,
                "StreamID": ids.stream_id,
                "ServiceURL": url,
                "Timestamp": str(round(at * 1000)),
            },
        )
