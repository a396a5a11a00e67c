"""WAV files through the stdlib ``wave`` module: 16-bit PCM, mono, at the stream's own rate.

Callers hand over PCM that is already decoded (G.711 goes through :mod:`gateway.audio.g711`
first), as samples or as little-endian bytes. :class:`WavWriter` appends as audio arrives and
lets ``wave`` patch the header sizes on close, so a tap never holds a whole call in memory.
:func:`read_wav` is the inverse, for tests and tooling.
"""

from __future__ import annotations

import wave
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from gateway.audio.pcm import pack_l16le, unpack_l16le

_SAMPLE_WIDTH = 2


class WavWriter:
    """An open mono 16-bit WAV file; append little-endian PCM, then :meth:`close`."""

    def __init__(self, path: Path, sample_rate: int) -> None:
        self.path = path
        self.sample_rate = sample_rate
        self.samples_written = 0
        self._wave = wave.open(str(path), "wb")  # noqa: SIM115  # closed by close()/__exit__
        self._wave.setnchannels(1)
        self._wave.setsampwidth(_SAMPLE_WIDTH)
        self._wave.setframerate(sample_rate)

    def write_pcm16le(self, data: bytes) -> None:
        self._wave.writeframes(data)
        self.samples_written += len(data) // _SAMPLE_WIDTH

    def write_samples(self, samples: Sequence[int] | array[int]) -> None:
        self.write_pcm16le(pack_l16le(samples))

    def write_silence(self, count: int) -> None:
        self.write_pcm16le(bytes(_SAMPLE_WIDTH * count))

    def close(self) -> None:
        self._wave.close()

    def __enter__(self) -> WavWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def write_wav(path: Path, samples: Sequence[int] | array[int], sample_rate: int) -> Path:
    """Write ``samples`` as a complete WAV file and return its path."""
    with WavWriter(path, sample_rate) as writer:
        writer.write_samples(samples)
    return path


@dataclass(frozen=True, slots=True)
class WavData:
    sample_rate: int
    channels: int
    sample_width: int
    samples: array[int]


def read_wav(path: Path) -> WavData:
    """Read a 16-bit PCM WAV file (any channel count; samples stay interleaved)."""
    with wave.open(str(path), "rb") as reader:
        width = reader.getsampwidth()
        if width != _SAMPLE_WIDTH:
            raise ValueError(f"{path}: {8 * width}-bit samples, expected 16-bit PCM")
        data = reader.readframes(reader.getnframes())
        return WavData(reader.getframerate(), reader.getnchannels(), width, unpack_l16le(data))
