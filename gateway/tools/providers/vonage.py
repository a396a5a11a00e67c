"""The Vonage Voice API WebSocket: the provider side (docs/protocols.md sections 4 and 12.3).

One text frame, ``websocket:connected``, with the audio format (``content-type:
audio/l16;rate=N``) and the NCCO ``headers`` flattened in (the call's ``uuid`` plus the custom
parameters), then binary frames of 16-bit little-endian PCM, exactly 20 ms each, and no stop
message: the socket just closes. DTMF is ``websocket:dtmf``.

Back-channel: binary audio frames that must be exactly 20 ms long (any other size makes Vonage
drop the connection, which the simulator does too), ``{"action":"notify","payload":{...}}``
echoed as ``websocket:notify`` with the same payload once the audio before it has played, and
``{"action":"clear"}`` answered by ``websocket:cleared``.
"""

from __future__ import annotations

from typing import ClassVar

import msgspec

from gateway.tools.providers.base import (
    BackAction,
    BadBackMessage,
    CallIds,
    ClearQueue,
    HangUp,
    ProviderName,
    ProviderWire,
    QueueAudio,
    QueueMark,
    dumps,
    json_object,
    new_uuid,
)
from gateway.tools.wire import MediaFrame, TrackChoice


class VonageWire(ProviderWire):
    name: ClassVar[ProviderName] = "vonage"
    first_timestamp = 0
    default_codec = "L16@16000"
    codecs = frozenset(("L16/8000", "L16/16000", "L16/24000"))
    track_choices: ClassVar[frozenset[TrackChoice]] = frozenset(("inbound",))
    binary_audio = True

    @classmethod
    def new_ids(cls) -> CallIds:
        return CallIds(new_uuid(), "", "")

    def start(self) -> str:
        stream = self.stream
        headers = {"uuid": stream.ids.call_id, **stream.custom_parameters}
        return dumps(
            {"event": "websocket:connected", "content-type": f"audio/l16;rate={stream.codec.sample_rate}", **headers}
        )

    def media(self, frame: MediaFrame) -> bytes:
        return frame.payload

    def dtmf(self, digit: str, duration_ms: int, at_ms: int) -> str:
        return dumps({"event": "websocket:dtmf", "digit": digit, "duration": duration_ms})

    @property
    def frame_bytes(self) -> int:
        return self.stream.codec.bytes_per_frame

    def read_back(self, data: str | bytes) -> tuple[BackAction, ...]:
        if isinstance(data, bytes):
            if len(data) != self.frame_bytes:
                # What Vonage does with a frame that is not exactly 20 ms: it stops listening.
                return (HangUp(f"binary frame of {len(data)} bytes, not {self.frame_bytes} (20 ms)", abrupt=True),)
            return (QueueAudio(data, self.playback_bytes_per_ms),)
        message = json_object(data)
        action = message.get("action")
        if action == "clear":
            return (ClearQueue(),)
        if action == "notify":
            payload = message.get("payload")
            if not isinstance(payload, dict):
                raise BadBackMessage("notify without a payload object")
            return (QueueMark(dumps(payload)),)
        raise BadBackMessage(f"unknown action {str(action)[:32]!r}")

    def mark_echo(self, name: str) -> str:
        # ``name`` is the notify payload, compact JSON: echoed as it came.
        return dumps({"event": "websocket:notify", "payload": msgspec.json.decode(name)})

    def clear_answer(self) -> str:
        return dumps({"event": "websocket:cleared"})
