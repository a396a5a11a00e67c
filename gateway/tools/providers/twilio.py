"""Twilio Media Streams and SignalWire (cXML / SWML): the provider side (docs/protocols.md 1, 2, 12.1).

JSON text frames with camelCase names and string counters. The two differ in small ways that
are all kept: ``connected`` version (1.0.0 / 0.2.0), ids (``CA``/``MZ``/``AC`` + 32 hex digits /
UUIDs), Twilio's top-level ``streamSid`` on every message and ``stop`` body (SignalWire's
examples have neither), the first media timestamp (20 / 0), DTMF (``track: inbound_track`` /
``duration``), and SignalWire's server-to-provider ``dtmf``. Both echo a mark when the audio
queued before it has played, and every pending mark on ``clear``.

Status callbacks: Twilio posts cXML form fields (``StreamEvent`` ``stream-started`` /
``stream-stopped``); SignalWire posts the same for cXML streams, or SWML's JSON
``calling.call.stream`` (``state`` ``streaming`` / ``finished``).
"""

from __future__ import annotations

import datetime
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
    SendDigits,
    StatusCallback,
    b64,
    b64_field,
    dumps,
    field_of,
    json_object,
)
from gateway.tools.wire import MediaFrame


def iso_time(at: float) -> str:
    return datetime.datetime.fromtimestamp(at, datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class SignalWireWire(ProviderWire):
    name: ClassVar[ProviderName] = "signalwire"
    version: ClassVar[str] = "0.2.0"
    first_timestamp = 0
    echoes_marks_on_clear = True
    sid_everywhere: ClassVar[bool] = False
    """Twilio repeats ``streamSid`` at the top level of every message; SignalWire's examples do not."""

    def connected(self) -> str:
        return dumps({"event": "connected", "protocol": "Call", "version": self.version})

    def _start_ids(self) -> dict[str, Any]:
        ids = self.stream.ids
        return {"streamSid": ids.stream_id, "accountSid": ids.account_id, "callSid": ids.call_id}

    def start(self) -> str:
        stream = self.stream
        body = self._start_ids()
        body["tracks"] = list(stream.tracks)
        body["customParameters"] = dict(stream.custom_parameters)
        body["mediaFormat"] = stream.codec.media_format()
        message: dict[str, Any] = {"event": "start", "sequenceNumber": str(self.next_sequence()), "start": body}
        return self._with_sid(message)

    def _with_sid(self, message: dict[str, Any]) -> str:
        if self.sid_everywhere:
            message["streamSid"] = self.stream.ids.stream_id
        return dumps(message)

    def media(self, frame: MediaFrame) -> str:
        return self._with_sid(
            {
                "event": "media",
                "sequenceNumber": str(frame.sequence_number),
                "media": {
                    "track": frame.track,
                    "chunk": str(frame.chunk),
                    "timestamp": str(frame.timestamp),
                    "payload": b64(frame.payload),
                },
            }
        )

    def dtmf(self, digit: str, duration_ms: int, at_ms: int) -> str:
        return dumps(
            {
                "event": "dtmf",
                "sequenceNumber": str(self.next_sequence()),
                "streamSid": self.stream.ids.stream_id,
                "dtmf": {"digit": digit, "duration": duration_ms},
            }
        )

    def mark_echo(self, name: str) -> str:
        # SignalWire's example echo carries no sequenceNumber.
        return dumps({"event": "mark", "streamSid": self.stream.ids.stream_id, "mark": {"name": name}})

    def stop(self) -> str:
        return dumps({"event": "stop", "sequenceNumber": str(self.next_sequence())})

    def read_back(self, data: str | bytes) -> tuple[BackAction, ...]:
        message = json_object(data)
        sid = message.get("streamSid")
        if sid != self.stream.ids.stream_id:
            raise BadBackMessage(f"streamSid {str(sid)[:40]!r} is not this stream's")
        event = message.get("event")
        if event == "media":
            return (QueueAudio(b64_field(message, "media", "payload"), self.playback_bytes_per_ms),)
        if event == "mark":
            return (QueueMark(_name(field_of(message, "mark", "name"))),)
        if event == "clear":
            return (ClearQueue(),)
        if event == "dtmf" and self.name == "signalwire":
            return (SendDigits(_name(field_of(message, "dtmf", "digit"))),)
        raise BadBackMessage(f"unknown event {str(event)[:32]!r}")

    def status_callback(
        self, phase: Phase, *, url: str, control_id: str, at: float, variant: str | None
    ) -> StatusCallback:
        if variant in (None, "swml") and self.name == "signalwire":
            return self._swml(phase, url, control_id, at)
        if variant not in (None, "cxml"):
            raise ValueError(f"{self.name} status callbacks are {self.status_variants()}, not {variant}")
        ids = self.stream.ids
        tracks = self.stream.tracks
        form = {
            "AccountSid": ids.account_id,
            "CallSid": ids.call_id,
            "StreamSid": ids.stream_id,
            "StreamName": control_id,
            "StreamEvent": "stream-started" if phase == "started" else "stream-stopped",
            "Timestamp": iso_time(at),
        }
        if self.name == "signalwire":
            form["StreamTrack"] = "both_tracks" if len(tracks) == 2 else f"{tracks[0]}_track"
        return StatusCallback("application/x-www-form-urlencoded", form=form)

    @classmethod
    def status_variants(cls) -> str:
        return "swml or cxml"

    def _swml(self, phase: Phase, url: str, control_id: str, at: float) -> StatusCallback:
        ids = self.stream.ids
        return StatusCallback(
            "application/json",
            json={
                "event_type": "calling.call.stream",
                "event_channel": f"swml:{ids.call_id}",
                "timestamp": round(at, 3),
                "project_id": ids.account_id,
                "space_id": _space_id(ids),
                "params": {
                    "call_id": ids.call_id,
                    "node_id": _space_id(ids),
                    "segment_id": ids.call_id,
                    "control_id": control_id,
                    "state": "streaming" if phase == "started" else "finished",
                    "url": url,
                },
            },
        )


def _space_id(ids: CallIds) -> str:
    """A stable space id for one simulated account (the same in both callbacks)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, ids.account_id))


def _name(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise BadBackMessage("empty or non-string name")
    return value


class TwilioWire(SignalWireWire):
    name: ClassVar[ProviderName] = "twilio"
    version = "1.0.0"
    first_timestamp = 20
    sid_everywhere = True

    @classmethod
    def new_ids(cls) -> CallIds:
        return CallIds("CA" + uuid.uuid4().hex, "MZ" + uuid.uuid4().hex, "AC" + uuid.uuid4().hex)

    def _start_ids(self) -> dict[str, Any]:
        ids = self.stream.ids
        return {"accountSid": ids.account_id, "streamSid": ids.stream_id, "callSid": ids.call_id}

    @property
    def playback_bytes_per_ms(self) -> float:
        return 8.0  # Twilio plays mu-law 8 kHz, whatever the stream announced

    def dtmf(self, digit: str, duration_ms: int, at_ms: int) -> str:
        return dumps(
            {
                "event": "dtmf",
                "streamSid": self.stream.ids.stream_id,
                "sequenceNumber": str(self.next_sequence()),
                "dtmf": {"track": "inbound_track", "digit": digit},
            }
        )

    def mark_echo(self, name: str) -> str:
        return dumps(
            {
                "event": "mark",
                "sequenceNumber": str(self.next_sequence()),
                "streamSid": self.stream.ids.stream_id,
                "mark": {"name": name},
            }
        )

    def stop(self) -> str:
        ids = self.stream.ids
        return self._with_sid(
            {
                "event": "stop",
                "sequenceNumber": str(self.next_sequence()),
                "stop": {"accountSid": ids.account_id, "callSid": ids.call_id},
            }
        )

    @classmethod
    def status_variants(cls) -> str:
        return "cxml"
