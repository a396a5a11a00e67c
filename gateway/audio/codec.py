"""Codec descriptors: the names the tools accept, mapped to wire ``mediaFormat`` and frame sizes.

One :class:`CodecSpec` per stream format. :func:`parse_codec` accepts the tools' spellings
(``PCMU``, ``PCMA``, ``L16@16000``, ``L16@24000``), SignalWire's cXML spelling with an ``h``
suffix (``L16@24000h``) and the gateway's ``Sgw-Codec`` header values (``PCMU/8000``,
``L16/16000``); :func:`codec_from_media_format` reads a ``start.mediaFormat``. A descriptor also
encodes and decodes its payloads, so callers never branch on the codec name themselves.
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

from gateway.audio import g711, pcm
from gateway.protocol import media

CodecName = Literal["PCMU", "PCMA", "L16"]

FRAME_MS: Final = 20
"""Every provider in scope packetises at 20 ms (docs/protocols.md section 0.2)."""

_ENCODING: Final[dict[CodecName, str]] = {
    "PCMU": "audio/x-mulaw",
    "PCMA": "audio/x-alaw",
    "L16": "audio/x-L16",
}
_NAMES: Final[dict[str, CodecName]] = {"PCMU": "PCMU", "PCMA": "PCMA", "L16": "L16"}
_SPELLING: Final = re.compile(r"^(PCMU|PCMA|L16)(?:[@/](\d+)H?)?$")
_L16_RATES: Final = frozenset({8000, 16000, 24000, 32000, 48000, 64000})


class CodecError(ValueError):
    """A codec name, rate or ``mediaFormat`` the tools do not know how to produce or decode."""


@dataclass(frozen=True, slots=True)
class CodecSpec:
    """One mono audio format as it travels in ``media.payload`` and on the NATS bus."""

    name: CodecName
    sample_rate: int

    @property
    def label(self) -> str:
        """The ``Sgw-Codec`` header spelling, e.g. ``PCMU/8000``."""
        return f"{self.name}/{self.sample_rate}"

    @property
    def encoding(self) -> str:
        """The wire ``mediaFormat.encoding``."""
        return _ENCODING[self.name]

    @property
    def bytes_per_sample(self) -> int:
        return 2 if self.name == "L16" else 1

    @property
    def samples_per_frame(self) -> int:
        return self.sample_rate * FRAME_MS // 1000

    @property
    def bytes_per_frame(self) -> int:
        """Payload bytes in one 20 ms frame: 160 for G.711, 640/960 for L16 at 16/24 kHz."""
        return self.samples_per_frame * self.bytes_per_sample

    def media_format(self) -> dict[str, str | int]:
        """The ``start.mediaFormat`` object, field order as in the provider's examples."""
        return {"encoding": self.encoding, "sampleRate": self.sample_rate, "channels": 1}

    def encode(self, samples: Sequence[int] | array[int]) -> bytes:
        """Signed 16-bit samples to payload bytes in this codec."""
        if self.name == "PCMU":
            return g711.ulaw_encode(samples)
        if self.name == "PCMA":
            return g711.alaw_encode(samples)
        return pcm.pack_l16le(samples)

    def to_pcm16le(self, payload: bytes) -> bytes:
        """Payload bytes to little-endian 16-bit PCM (what a WAV file's data chunk holds)."""
        if self.name == "PCMU":
            return g711.ulaw_to_pcm16le(payload)
        if self.name == "PCMA":
            return g711.alaw_to_pcm16le(payload)
        return bytes(payload[: len(payload) & ~1])

    def decode(self, payload: bytes) -> array[int]:
        """Payload bytes to signed 16-bit samples."""
        return pcm.unpack_l16le(self.to_pcm16le(payload))

    def silence(self, samples: int) -> bytes:
        """Payload bytes of digital silence (0xFF for mu-law, 0xD5 for A-law, zeros for L16)."""
        if self.name == "PCMU":
            return bytes((g711.ULAW_SILENCE,)) * samples
        if self.name == "PCMA":
            return bytes((g711.ALAW_SILENCE,)) * samples
        return bytes(2 * samples)


def parse_codec(text: str) -> CodecSpec:
    """A codec from a tool flag or an ``Sgw-Codec`` header (case-insensitive).

    G.711 is 8 kHz only; ``L16`` needs an explicit rate because SignalWire has no default one.
    """
    match = _SPELLING.match(text.strip().upper())
    if match is None:
        raise CodecError(f"unknown codec {text!r}: expected PCMU, PCMA, L16@16000 or L16@24000")
    name = _NAMES[match.group(1)]
    rate_text = match.group(2)
    if name == "L16":
        if rate_text is None:
            raise CodecError(f"codec {text!r} needs a sample rate, e.g. L16@16000")
        rate = int(rate_text)
        if rate not in _L16_RATES:
            raise CodecError(f"unsupported L16 sample rate {rate} in {text!r}")
        return CodecSpec(name, rate)
    if rate_text is not None and int(rate_text) != 8000:
        raise CodecError(f"{name} is 8000 Hz only, got {text!r}")
    return CodecSpec(name, 8000)


def codec_from_media_format(encoding: str, sample_rate: int) -> CodecSpec:
    """A codec from a ``start.mediaFormat`` (``audio/x-mulaw`` 8000, ``audio/x-L16`` 24000, ...).

    The encoding names are the gateway's own mapping (one table, in the protocol core); this
    only adds what the tools can encode and decode.
    """
    return parse_codec(media.codec_from_media_format(encoding, sample_rate).label)
