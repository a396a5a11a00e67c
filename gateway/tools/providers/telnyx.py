"""Telnyx media streaming: the provider side (docs/protocols.md sections 3 and 12.2).

Twilio-like JSON text frames spelled in snake_case (``stream_id``, ``sequence_number``,
``media_format.sample_rate``), counters as strings, the codec by name (``PCMU``, ``PCMA``,
``L16``), ``connected`` without ``protocol``, DTMF with ``occurred_at``. Telnyx may deliver media
out of order: the ``reorder`` fault swaps a frame with its successor, as Telnyx does. The
back-channel (RTP mode) is ``media``/``mark``/``clear`` without a ``stream_id``; marks come back
once the audio before them has played, and all pending ones on ``clear``.

Status callbacks: Call Control's JSON webhooks (``streaming.started`` / ``streaming.stopped``),
or TeXML's form fields (``StreamEvent``), signed with Ed25519 by :mod:`.signing`.
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
    Phase,
    ProviderName,
    ProviderWire,
    QueueAudio,
    QueueMark,
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


class TelnyxWire(ProviderWire):
    name: ClassVar[ProviderName] = "telnyx"
    first_timestamp = 20
    echoes_marks_on_clear = True

    @classmethod
    def new_ids(cls) -> CallIds:
        # call_control_id is the call's key in Telnyx's API; user_id (the account) is a UUID.
        return CallIds("v3:" + secrets.token_urlsafe(36), new_uuid(), new_uuid())

    def connected(self) -> str:
        return dumps({"event": "connected", "version": "1.0.0"})

    def start(self) -> str:
        stream = self.stream
        ids = stream.ids
        body: dict[str, Any] = {
            "user_id": ids.account_id,
            "call_control_id": ids.call_id,
            "call_session_id": _session_id(ids),
            "from": "+13125550100",
            "to": "+13125550199",
            "tags": [],
            "client_state": "",
            "custom_parameters": dict(stream.custom_parameters),
            "media_format": {
                "encoding": stream.codec.name,
                "sample_rate": stream.codec.sample_rate,
                "channels": 1,
            },
        }
        return dumps(
            {"event": "start", "sequence_number": str(self.next_sequence()), "start": body, "stream_id": ids.stream_id}
        )

    def media(self, frame: MediaFrame) -> str:
        return dumps(
            {
                "event": "media",
                "sequence_number": str(frame.sequence_number),
                "media": {
                    "track": frame.track,
                    "chunk": str(frame.chunk),
                    "timestamp": str(frame.timestamp),
                    "payload": b64(frame.payload),
                },
                "stream_id": self.stream.ids.stream_id,
            }
        )

    def dtmf(self, digit: str, duration_ms: int, at_ms: int) -> str:
        at = self.stream.epoch_ms / 1000 + at_ms / 1000
        return dumps(
            {
                "event": "dtmf",
                "stream_id": self.stream.ids.stream_id,
                "occurred_at": iso_time(at),
                "sequence_number": str(self.next_sequence()),
                "dtmf": {"digit": digit},
            }
        )

    def mark_echo(self, name: str) -> str:
        return dumps(
            {
                "event": "mark",
                "stream_id": self.stream.ids.stream_id,
                "sequence_number": str(self.next_sequence()),
                "mark": {"name": name},
            }
        )

    def stop(self) -> str:
        ids = self.stream.ids
        return dumps(
            {
                "event": "stop",
                "sequence_number": str(self.next_sequence()),
                "stop": {"user_id": ids.account_id, "call_control_id": ids.call_id},
                "stream_id": ids.stream_id,
            }
        )

    def read_back(self, data: str | bytes) -> tuple[BackAction, ...]:
        message = json_object(data)
        event = message.get("event")
        if event == "media":
            return (QueueAudio(b64_field(message, "media", "payload"), self.playback_bytes_per_ms),)
        if event == "mark":
            name = field_of(message, "mark", "name")
            if not isinstance(name, str) or not name:
                raise BadBackMessage("mark without a name")
            return (QueueMark(name),)
        if event == "clear":
            return (ClearQueue(),)
        raise BadBackMessage(f"unknown event {str(event)[:32]!r}")

    def status_callback(
        self, phase: Phase, *, url: str, control_id: str, at: float, variant: str | None
    ) -> StatusCallback:
        ids = self.stream.ids
        if variant == "texml":
            return StatusCallback(
                "application/x-www-form-urlencoded",
                form={
                    "AccountSid": ids.account_id,
                    "CallSid": ids.call_id,
                    "CallSidLegacy": ids.call_id,
                    "StreamSid": ids.stream_id,
                    "StreamName": control_id,
                    "StreamEvent": "stream-started" if phase == "started" else "stream-stopped",
                    "Timestamp": iso_time(at),
                },
            )
        if variant not in (None, "json"):
            raise ValueError(f"telnyx status callbacks are json or texml, not {variant}")
        event_type = "streaming.started" if phase == "started" else "streaming.stopped"
        return StatusCallback(
            "application/json",
            json={
                "data": {
                    "event_type": event_type,
                    "id": new_uuid(),
                    "occurred_at": iso_time(at),
                    "payload": {
                        "call_control_id": ids.call_id,
                        "call_leg_id": _session_id(ids),
                        "call_session_id": _session_id(ids),
                        "client_state": None,
                        "connection_id": ids.account_id,
                        "stream_id": ids.stream_id,
                        "stream_url": url,
                    },
                    "record_type": "event",
                },
                "meta": {"attempt": 1, "delivered_to": ""},
            },
        )


def _session_id(ids: CallIds) -> str:
    """Stable per call (Telnyx's call_session_id is a UUID)."""
    return str(uuid.uuid5(uuid.NAMESPACE_OID, ids.call_id))
