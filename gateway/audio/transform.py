"""Audio transforms: one frame of the provider's payload to L16 at the route's rate (sans-IO).

:func:`converter` returns, for a stream's codec and a route's target format, the function the
shell calls once per frame with the frame's track index and payload. It keeps its state per track
(the resampler's filter memory, so a frame continues the previous one without a click), made at
the track's first frame. Three kinds, cheapest first:

* the same format: no converter at all, the payload is published as it came (no copy);
* G.711 to L16 at 8 kHz: a table lookup (:mod:`gateway.audio.g711`), no state;
* anything else: decode to float samples (a 256-entry table for G.711), resample with soxr, round
  and clip to signed 16-bit little-endian.

Resampler choice (``python -m tests.bench.resamplers`` compares the candidates on quality, whole
frames, latency and speed): soxr's variable-rate engine (``vr=True``): within 0.01 dB to 90 % of
the lower Nyquist frequency, THD+N below -105 dB, aliasing below -114 dB, 11-60 us per frame,
several times faster than libsamplerate at comparable quality. soxr's
fixed-rate engine is a little better still but works in DFT blocks, so a 20 ms frame gets 0 or
~100 ms of output (1660 samples every fifth frame at 8 to 16 kHz); the variable-rate one returns
a whole frame every frame after a fixed start-up latency (30 ms when upsampling from 8 kHz, 10-15
ms when downsampling). That latency is published as leading silence on each track's first frames,
so every transformed frame holds exactly its own duration of samples and ``Sgw-Ts`` keeps meaning
the same thing; the last 10-30 ms of a call stay in the filter. The output is the same,
sample for sample, however the input is cut into frames. Frames are converted in the order they
arrive, as they are published: a duplicate or late frame goes through the filter where it came,
so the transformed track follows the original frame for frame (``Sgw-Seq`` tells them apart).
``audioop`` is not used (gone in 3.13).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import numpy as np
import numpy.typing as npt
import soxr

from gateway.audio.g711 import ALAW_DECODE, ULAW_DECODE, alaw_to_pcm16le, ulaw_to_pcm16le
from gateway.protocol.media import Codec

Converter = Callable[[int, bytes], bytes]
"""``(track index, payload) -> payload``: one frame, in order, per stream and route output."""
Samples = npt.NDArray[np.float32]

_QUALITY: Final = "HQ"
_INT16_MIN: Final = -32768.0
_INT16_MAX: Final = 32767.0
_G711_FLOAT: Final[dict[str, Samples]] = {
    "PCMU": np.array(ULAW_DECODE, dtype=np.float32).reshape(-1, 1),
    "PCMA": np.array(ALAW_DECODE, dtype=np.float32).reshape(-1, 1),
}
"""Decoded G.711 in int16 units (not scaled to +-1: soxr does not care, and it saves a multiply).
One column: samples are ``(n, 1)`` arrays throughout, soxr's own layout, which spares two numpy
calls per frame inside it (a frame's numpy calls cost several microseconds each when the caches
are cold, as they are between the frames of a real-time stream)."""
_G711_L16: Final[dict[str, Callable[[bytes], bytes]]] = {"PCMU": ulaw_to_pcm16le, "PCMA": alaw_to_pcm16le}


class TransformError(ValueError):
    """A source format or target this module cannot convert (the session never asks for one)."""


def converter(source: Codec, target: Codec) -> Converter | None:
    """The per-frame conversion from ``source`` to ``target`` (L16), or None when they are the same."""
    if source == target:
        return None
    if target.name != "L16" or target.channels != 1 or source.channels != 1:
        raise TransformError(f"cannot transform {source.label} to {target.label}")
    if source.name in _G711_FLOAT:
        if source.sample_rate != 8000:
            raise TransformError(f"{source.label}: G.711 is 8000 Hz only")
        if target.sample_rate == 8000:
            return _Stateless(_G711_L16[source.name])
        return Resampler(_g711_decoder(_G711_FLOAT[source.name]), source.sample_rate, target.sample_rate)
    if source.name == "L16":
        return Resampler(_l16_samples, source.sample_rate, target.sample_rate)
    raise TransformError(f"cannot transform {source.label} to {target.label}")


class _Stateless:
    """A conversion that needs no memory between frames (G.711 to L16 at the same rate)."""

    __slots__ = ("_convert",)

    def __init__(self, convert: Callable[[bytes], bytes]) -> None:
        self._convert = convert

    def __call__(self, track: int, payload: bytes) -> bytes:
        return self._convert(payload)


class Resampler:
    """Decode, resample and encode, with one soxr stream per track (made at its first frame)."""

    __slots__ = ("_decode", "_in_rate", "_out_rate", "_tracks")

    def __init__(self, decode: Callable[[bytes], Samples], in_rate: int, out_rate: int) -> None:
        self._decode = decode
        self._in_rate = in_rate
        self._out_rate = out_rate
        self._tracks: list[_Track | None] = [None, None]

    def __call__(self, track: int, payload: bytes) -> bytes:
        state = self._tracks[track]
        if state is None:
            state = self._tracks[track] = _Track(self._in_rate, self._out_rate)
        return _to_l16(state.push(self._decode(payload)))


class _Track:
    """One track's resampler and the sample counts that keep its frames whole."""

    __slots__ = ("_in", "_in_rate", "_live", "_out", "_out_rate", "_stream")

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self._stream = soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality=_QUALITY, vr=True)
        self._in_rate = in_rate
        self._out_rate = out_rate
        self._in = 0
        self._out = 0
        self._live = False
        """Whether the resampler has given real samples yet: until then its latency is padded."""

    def push(self, samples: Samples) -> Samples:
        if not len(samples):
            return samples
        out = self._stream.resample_chunk(samples)
        self._in += len(samples)
        if not self._live:
            # Start-up: the filter holds back its latency. Leading silence in its place keeps each
            # frame's duration (and is contiguous with what follows: the filter starts from zeros).
            real = len(out)
            short = self._in * self._out_rate // self._in_rate - self._out - real
            if short > 0:
                out = np.concatenate((np.zeros((short, 1), dtype=np.float32), out))
            self._live = real > 0
        self._out += len(out)
        return out


def _g711_decoder(table: Samples) -> Callable[[bytes], Samples]:
    def decode(payload: bytes) -> Samples:
        return table[np.frombuffer(payload, dtype=np.uint8)]

    return decode


def _l16_samples(payload: bytes) -> Samples:
    # A trailing odd byte is not a sample: it is left out (the original frame keeps it).
    return np.frombuffer(payload, dtype="<i2", count=len(payload) // 2).astype(np.float32).reshape(-1, 1)


def _to_l16(samples: Samples) -> bytes:
    # In place: the array is the resampler's fresh output (or the padded copy of it).
    np.rint(samples, out=samples)
    np.clip(samples, _INT16_MIN, _INT16_MAX, out=samples)
    return samples.astype("<i2").tobytes()
