"""Provider messages spelled by hand for hostile-input tests (the simulator only sends good ones).

Written independently of the gateway's decoder, in the SignalWire/Twilio wire format of
docs/protocols.md sections 1.3, 2.6 and 12.1.
"""

from __future__ import annotations

import base64
import json
from typing import Any


def start(call_id: str, *, stream_id: str | None = None, tracks: tuple[str, ...] = ("inbound",), **extra: Any) -> str:
    body: dict[str, Any] = {
        "streamSid": stream_id or f"MZ-{call_id}",
        "accountSid": "AC-test",
        "callSid": call_id,
        "tracks": list(tracks),
        "customParameters": extra.pop("params", {}),
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
    }
    return json.dumps({"event": "start", "sequenceNumber": "1", "start": body, **extra})


def media(ts: int, payload: bytes = b"\xff" * 160, *, track: str = "inbound", seq: int | None = None) -> str:
    message: dict[str, Any] = {
        "event": "media",
        "media": {
            "track": track,
            "chunk": str(ts // 20 + 1),
            "timestamp": str(ts),
            "payload": base64.b64encode(payload).decode(),
        },
    }
    if seq is not None:
        message["sequenceNumber"] = str(seq)
    return json.dumps(message)


def stop() -> str:
    return json.dumps({"event": "stop", "sequenceNumber": "999"})


def connected() -> str:
    return json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})


def nested(depth: int) -> str:
    """A start whose custom parameter value is ``depth`` nested arrays."""
    doc = start("nested")
    return doc.replace('"customParameters": {}', '"customParameters": {"a": ' + "[" * depth + "]" * depth + "}")
