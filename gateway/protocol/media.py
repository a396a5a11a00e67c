"""Audio formats: the provider's ``mediaFormat`` mapped onto one codec descriptor.

The descriptor's ``label`` is what consumers see in ``Sgw-Codec`` and in the ``started`` event
(``PCMU/8000``, ``PCMA/8000``, ``L16/16000``, ``L16/24000``). SignalWire L16 is little-endian
signed 16-bit (docs/protocols.md section 2.6). The gateway labels what it publishes; it converts
audio only on routes that ask for it (``spec.transform``, :mod:`gateway.protocol.transform`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class Codec:
    name: str
    """``PCMU``, ``PCMA``, ``L16`` or the provider's own name for anything else."""
    sample_rate: int
    channels: int = 1

    @property
    def label(self) -> str:
        return f"{self.name}/{self.sample_rate}"

    @property
    def bytes_per_ms(self) -> float:
        """Payload bytes per millisecond of audio: turns a payload length into a duration."""
        width = 2 if self.name == "L16" else 1
        return self.sample_rate * width * self.channels / 1000.0


_ENCODINGS: Final = {
    "audio/x-mulaw": "PCMU",
    "audio/mulaw": "PCMU",
    "audio/pcmu": "PCMU",
    "pcmu": "PCMU",
    "audio/x-alaw": "PCMA",
    "audio/alaw": "PCMA",
    "audio/pcma": "PCMA",
    "pcma": "PCMA",
    "audio/x-l16": "L16",
    "audio/l16": "L16",
    "l16": "L16",
}

DEFAULT_CODEC: Final = Codec("PCMU", 8000)


def codec_from_media_format(encoding: str, sample_rate: int, channels: int = 1) -> Codec:
    """Map a wire encoding (any case) onto a codec; unknown encodings keep their own name."""
    key = encoding.strip().lower()
    name = _ENCODINGS.get(key)
    if name is None:
        # Pass unknown codecs through labelled, rather than refusing a stream we can still carry.
        bare = key.rsplit("/", 1)[-1].removeprefix("x-")
        name = "".join(ch for ch in bare.upper() if ch.isalnum() or ch == "-") or "UNKNOWN"
    return Codec(name, sample_rate, channels)
