"""Bandwidth media streams: the provider side (docs/protocols.md sections 6 and 12.5).

Messages are told apart by ``eventType`` (there is no ``event``): ``start`` with ``metadata``
(``accountId``, ``callId``, ``streamId``, ``streamName``, ``tracks`` each with its
``mediaFormat``) and the ``streamParams``, ``media`` with ``track`` and ``payload`` at the top
level (no counters, no timestamp), ``stop`` with the same ``metadata``. Audio is mu-law 8 kHz
(``audio/PCMU``). No ``connected``, no DTMF on the socket.

Back-channel (as one open-source serializer spells it): ``playAudio`` with a ``contentType`` of
``audio/pcmu`` or ``audio/pcm;rate=N;...`` and ``clear``. There is no mark, so nothing is echoed.
"""

from __future__ import annotations

import secrets
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
    StatusCallback,
    b64,
    b64_field,
    dumps,
    field_of,
    json_object,
    new_uuid,
)
from gateway.tools.providers.twilio import iso_time
from gateway.tools.wire import MediaFrame

_PCM_RATES = frozenset((8000, 16000, 24000))


class BandwidthWire(ProviderWire):
    name: ClassVar[ProviderName] = "bandwidth"
    first_timestamp = 0
    codecs = frozenset(("PCMU/8000",))
    dtmf_supported = False

    @classmethod
    def new_ids(cls) -> CallIds:
        return CallIds("c-" + new_uuid(), "s-" + new_uuid(), str(9_900_000 + secrets.randbelow(100_000)))

    @property
    def stream_name(self) -> str:
        return self.stream.custom_parameters.get("control_id") or f"stream-{self.stream.ids.stream_id[-8:]}"

    def _metadata(self) -> dict[str, Any]:
        ids = self.stream.ids
        media_format = {"encoding": "audio/PCMU", "sampleRate": self.stream.codec.sample_rate}
        return {
            "accountId": ids.account_id,
            "callId": ids.call_id,
            "streamId": ids.stream_id,
            "streamName": self.stream_name,
            "tracks": [{"name": track, "mediaFormat": media_format} for track in self.stream.tracks],
        }

    def start(self) -> str:
        return dumps(
            {"eventType": "start", "metadata": self._metadata(), "streamParams": dict(self.stream.custom_parameters)}
        )

    def media(self, frame: MediaFrame) -> str:
        return dumps({"eventType": "media", "track": frame.track, "payload": b64(frame.payload)})

    def stop(self) -> str:
        return dumps({"eventType": "stop", "metadata": self._metadata()})

    def read_back(self, data: str | bytes) -> tuple[BackAction, ...]:
        message = json_object(data)
        kind = message.get("eventType")
        if kind == "playAudio":
            content_type = field_of(message, "media", "contentType")
            if not isinstance(content_type, str):
                raise BadBackMessage("playAudio without a contentType")
            return (QueueAudio(b64_field(message, "media", "payload"), _bytes_per_ms(content_type)),)
        if kind == "clear":
            return (ClearQueue(),)
        raise BadBackMessage(f"unknown eventType {str(kind)[:32]!r}")

    def status_callback(
        self, phase: Phase, *, url: str, control_id: str, at: float, variant: str | None
    ) -> StatusCallback:
        if variant not in (None, "json"):
            raise ValueError(f"bandwidth status callbacks are JSON, not {variant}")
        ids = self.stream.ids
        event: dict[str, Any] = {
            "eventType": "mediaStreamStarted" if phase == "started" else "mediaStreamStopped",
            "eventTime": iso_time(at),
            "accountId": ids.account_id,
            "callId": ids.call_id,
            "mediaStream": {
                "id": ids.stream_id,
                "name": control_id,
                "destination": url,
                "tracks": list(self.stream.tracks),
            },
        }
        if phase == "stopped":
            event["cause"] = "closed"
        return StatusCallback("application/json", json=event)


def _bytes_per_ms(content_type: str) -> float:
    """``audio/pcmu`` plays 8 bytes per ms; ``audio/pcm;rate=N;...`` 16-bit samples at N Hz."""
    base, *options = (part.strip().lower() for part in content_type.split(";"))
    if base == "audio/pcmu":
        return 8.0
    rates = [value for key, _, value in (option.partition("=") for option in options) if key == "rate"]
    rate = int(rates[0]) if rates and rates[0].isdigit() else 0
    if base != "audio/pcm" or rate not in _PCM_RATES:
        raise BadBackMessage(f"playAudio contentType {content_type[:64]!r}: not audio/pcmu or audio/pcm;rate=8/16/24k")
    return rate * 2 / 1000
