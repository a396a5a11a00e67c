"""What travels on the wire: the media-stream JSON, client WebSocket framing, the payload stamp.

Shared by the load generator (which builds frames) and the verifier (which reads stamps). Every
160-byte audio payload starts with an 18-byte stamp: magic, phase tag (so that late frames of an
earlier phase are told apart), call index, track, per-track sequence number and the send time
(``time.monotonic_ns()``, one clock for every process on the machine).
18 bytes are 24 base64 characters, so the rest of the payload encodes to a constant string and
only those 24 characters differ between frames.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import struct
import uuid
from typing import Final

FRAME_BYTES: Final = 160
"""One 20 ms PCMU frame."""
TICK_SECONDS: Final = 0.020
FRAMES_PER_SECOND: Final = 50
TRACKS: Final = ("inbound", "outbound")

STAMP: Final = struct.Struct(">BHHBIQ")
"""magic, phase tag, call index, track index, per-track sequence number (from 0), send monotonic_ns."""
MAX_CALLS: Final = 1 << 16
TAG_MODULO: Final = 1 << 16
STAMP_MAGIC: Final = 0xB5
STAMP_B64_CHARS: Final = STAMP.size // 3 * 4
assert STAMP.size % 3 == 0, "the stamp must be a whole number of base64 quanta"

_FILLER: Final = bytes(0xFF - (i % 0x7F) for i in range(FRAME_BYTES - STAMP.size))
"""The constant rest of every payload (non-silent PCMU values, so nothing can elide it)."""
_FILLER_B64: Final = base64.b64encode(_FILLER)

WS_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CLOSE_NORMAL: Final = 1000

_b2a = binascii.b2a_base64
_pack_stamp = STAMP.pack


def call_sid(run_tag: int, call: int) -> str:
    """A UUID that names the call; the verifier reads call identity from the stamp, not from it."""
    return str(uuid.UUID(int=(run_tag & 0xFFFFFFFF) << 96 | 0x4000 << 64 | 0x8000 << 48 | call))


def mask_frame(opcode: int, body: bytes) -> bytes:
    """One complete client frame (FIN set), masked with the all-zero key, so the body is unchanged
    on the wire (RFC 6455 section 5.3 only requires that a key is present)."""
    n = len(body)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    return head + b"\x00\x00\x00\x00" + body


def text_frame(message: object) -> bytes:
    return mask_frame(0x1, json.dumps(message, separators=(",", ":")).encode())


def close_frame(code: int = CLOSE_NORMAL) -> bytes:
    return mask_frame(0x8, code.to_bytes(2, "big"))


def pong_frame(body: bytes) -> bytes:
    return mask_frame(0xA, body)


def ws_accept(key: bytes) -> bytes:
    """The ``Sec-WebSocket-Accept`` a server must answer to ``key``."""
    return base64.b64encode(hashlib.sha1(key + WS_GUID, usedforsecurity=False).digest())


def opening_frames(run_tag: int, call: int) -> bytes:
    """``connected`` and ``start`` for one call, as two client frames."""
    connected = {"event": "connected", "protocol": "Call", "version": "0.2.0"}
    start = {
        "event": "start",
        "sequenceNumber": "1",
        "start": {
            "streamSid": str(uuid.uuid4()),
            "accountSid": str(uuid.UUID(int=run_tag)),
            "callSid": call_sid(run_tag, call),
            "tracks": list(TRACKS),
            "customParameters": {},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        },
    }
    return text_frame(connected) + text_frame(start)


def stop_frame(sequence_number: int) -> bytes:
    return text_frame({"event": "stop", "sequenceNumber": str(sequence_number)})


_MEDIA_TEMPLATES: Final = tuple(
    b'{"event":"media","sequenceNumber":"%d","media":{"track":"'
    + track.encode()
    + b'","chunk":"%d","timestamp":"%d","payload":"%s'
    + _FILLER_B64
    + b'"}}'
    for track in TRACKS
)
_HEADS: Final = {n: mask_frame(0x1, bytes(n))[:-n] for n in range(126, 1024)}


class MediaStream:
    """The media frames of one call, both tracks, in wire order; only ``tick`` allocates.

    ``sequenceNumber`` counts every message of the call (``start`` was 1), ``chunk`` counts per
    track from 1 and ``timestamp`` advances 20 ms per tick; the stamp carries ``chunk - 1``.
    """

    __slots__ = ("call", "next_sequence", "tag", "ticks")

    def __init__(self, call: int, tag: int) -> None:
        self.call = call
        self.tag = tag % TAG_MODULO
        self.ticks = 0
        self.next_sequence = 2

    def tick(self, now_ns: int) -> bytes:
        """Both tracks' next frame (inbound, then outbound), framed, stamped with ``now_ns``."""
        call, tag, k, seqn, b2a, pack = self.call, self.tag, self.ticks, self.next_sequence, _b2a, _pack_stamp
        ts = k * 20
        a = _MEDIA_TEMPLATES[0] % (seqn, k + 1, ts, b2a(pack(STAMP_MAGIC, tag, call, 0, k, now_ns), newline=False))
        b = _MEDIA_TEMPLATES[1] % (seqn + 1, k + 1, ts, b2a(pack(STAMP_MAGIC, tag, call, 1, k, now_ns), newline=False))
        self.ticks = k + 1
        self.next_sequence = seqn + 2
        return b"".join((_HEADS[len(a)], a, _HEADS[len(b)], b))

    def ticks_batch(self, count: int, now_ns: int) -> bytes:
        """``count`` ticks in one buffer, all stamped with the same send time."""
        return b"".join([self.tick(now_ns) for _ in range(count)])
