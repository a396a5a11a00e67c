"""Recorded provider sessions (``tests/fixtures/*.jsonl``) for the binary-audio providers.

One JSON object per line, in the order things happen:

- ``"dir"``: ``"p2s"`` the provider sends it to the gateway, ``"s2p"`` the gateway must send it to
  the provider, ``"c2s"`` a consumer publishes it on the stream's playback subject.
- ``"frame": "text"`` with ``"msg"``: a JSON text frame (or playback command), sent as the compact
  serialisation of ``msg``; compare received text as parsed JSON.
- ``"frame": "binary"``: a binary frame (or raw playback audio) of ``"bytes"`` bytes made by
  repeating the hex pattern ``"fill"`` (default ``"00"``), or ``"hex"`` for exact content, or
  ``"parts"``: a list of such ``{"bytes", "fill"}`` pieces joined in order.
- ``"frame": "close"`` with ``"code"``: the provider closes the socket.
- ``"t"`` (ms since the socket opened) and ``"note"`` document the session and are not used.

Fixtures of the JSON-only providers are bare wire frames, one per line; this envelope is for the
providers whose sessions mix binary and text frames (``vonage_*``, ``jambonz_*``).
:func:`replay` runs a session through a dialect without sockets; the integration tests send the
same frames through a real gateway.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from gateway.protocol.dialects.base import Dialect, Outgoing, as_events
from gateway.protocol.events import InboundEvent
from gateway.protocol.playback import parse_play_message

FIXTURES = Path(__file__).parent / "fixtures"

Direction = Literal["p2s", "s2p", "c2s"]


@dataclass(frozen=True)
class Frame:
    direction: Direction
    kind: Literal["text", "binary", "close"]
    text: str = ""
    data: bytes = b""
    code: int = 1000

    @property
    def message(self) -> Any:
        return json.loads(self.text)

    @property
    def payload(self) -> bytes:
        """What goes on the wire or on the playback subject: the bytes, or the text encoded."""
        return self.data if self.kind == "binary" else self.text.encode()


def _filled(size: int, pattern: str) -> bytes:
    unit = bytes.fromhex(pattern)
    if not unit or size % len(unit):
        raise ValueError(f"fill {pattern!r} does not divide {size} bytes")
    return unit * (size // len(unit))


def _binary(entry: dict[str, Any]) -> bytes:
    if "hex" in entry:
        return bytes.fromhex(entry["hex"])
    if "parts" in entry:
        return b"".join(_filled(part["bytes"], part.get("fill", "00")) for part in entry["parts"])
    return _filled(entry["bytes"], entry.get("fill", "00"))


def load(name: str) -> list[Frame]:
    """The frames of ``tests/fixtures/<name>.jsonl``."""
    frames = []
    for number, line in enumerate((FIXTURES / f"{name}.jsonl").read_text().splitlines(), 1):
        if not line.strip():
            continue
        entry = json.loads(line)
        direction, kind = entry["dir"], entry["frame"]
        if direction not in ("p2s", "s2p", "c2s") or kind not in ("text", "binary", "close"):
            raise ValueError(f"{name}.jsonl line {number}: unknown dir {direction!r} or frame {kind!r}")
        if kind == "text":
            frames.append(Frame(direction, kind, text=json.dumps(entry["msg"], separators=(",", ":"))))
        elif kind == "binary":
            frames.append(Frame(direction, kind, data=_binary(entry)))
        else:
            frames.append(Frame(direction, kind, code=entry.get("code", 1000)))
    return frames


def fixture_names(prefix: str) -> list[str]:
    """Every fixture whose name starts with ``prefix`` (``vonage_``, ``jambonz_``), sorted."""
    return sorted(path.stem for path in FIXTURES.glob(f"{prefix}*.jsonl"))


@dataclass
class Replayed:
    """A fixture run through a dialect: the events it decoded, the frames it encoded (as
    ``(kind, bytes or parsed JSON)``) and the frames the fixture says the gateway sends."""

    events: list[InboundEvent]
    sent: list[tuple[str, Any]]
    expected: list[tuple[str, Any]]
    outgoing: list[Outgoing]


def _shape(kind: str, data: bytes) -> tuple[str, Any]:
    return (kind, data) if kind == "binary" else (kind, json.loads(data))


def replay(dialect: Dialect, frames: list[Frame], stream_id: str = "stream-1") -> Replayed:
    """Feed a dialect a recorded session, sans IO: provider frames in, playback messages encoded."""
    result = Replayed([], [], [], [])
    for frame in frames:
        if frame.direction == "p2s":
            if frame.kind == "text":
                result.events.extend(as_events(dialect.text(frame.text)))
            elif frame.kind == "binary":
                result.events.extend(as_events(dialect.binary(frame.data)))
            else:
                result.events.extend(as_events(dialect.close()))
        elif frame.direction == "c2s":
            for out in dialect.encode(stream_id, parse_play_message(frame.payload)) or ():
                result.outgoing.append(out)
                result.sent.append(_shape("binary" if out.binary else "text", out.data))
        else:
            result.expected.append(_shape(frame.kind, frame.payload))
    return result
