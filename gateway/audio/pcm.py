"""L16: signed 16-bit linear PCM, mono, little-endian on the wire.

SignalWire's ``audio/x-L16`` payloads are little-endian (docs/protocols.md section 2.6), the opposite
of RFC 3551's network byte order, and WAV data is little-endian too; so everything that leaves or
enters this module as ``bytes`` is little-endian, and everything in memory is ``array('h')`` in
the host's order. Also owns the float-to-int16 conversion the signal generators share.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Sequence
from typing import Final

INT16_MAX: Final = 32767
INT16_MIN: Final = -32768
_BIG_ENDIAN_HOST: Final = sys.byteorder == "big"


def pack_l16le(samples: Sequence[int] | array[int]) -> bytes:
    """Signed 16-bit samples to little-endian bytes (raises OverflowError outside int16)."""
    pcm = samples if isinstance(samples, array) and samples.typecode == "h" else array("h", samples)
    if _BIG_ENDIAN_HOST:
        pcm = array("h", pcm)
        pcm.byteswap()
    return pcm.tobytes()


def unpack_l16le(data: bytes) -> array[int]:
    """Little-endian bytes to signed 16-bit samples; a trailing odd byte is ignored."""
    pcm = array("h")
    pcm.frombytes(bytes(data[: len(data) & ~1]))
    if _BIG_ENDIAN_HOST:
        pcm.byteswap()
    return pcm


def clip16(value: float) -> int:
    """Round a sample to the nearest integer and clamp it into the int16 range."""
    rounded = round(value)
    if rounded > INT16_MAX:
        return INT16_MAX
    if rounded < INT16_MIN:
        return INT16_MIN
    return rounded
