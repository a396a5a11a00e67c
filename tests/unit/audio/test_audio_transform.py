"""Route transforms: tones through every source codec and rate to every target rate.

Each tone is sent in 20 ms frames, as a provider sends it, through one converter (state per
track), and the result is measured: the frequency at the FFT peak, the amplitude against the
amplitude the source really carried (G.711 is lossy), no discontinuity at frame edges (the output
is identical, sample for sample, to the same tone converted in one piece), and whole frames (each
transformed frame holds exactly its own duration of samples).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest

from gateway.audio import Tone, alaw_encode, pack_l16le, ulaw_encode
from gateway.audio.transform import TransformError, converter
from gateway.protocol.media import Codec

SOURCES = [
    Codec("PCMU", 8000),
    Codec("PCMA", 8000),
    Codec("L16", 8000),
    Codec("L16", 16000),
    Codec("L16", 24000),
    Codec("L16", 48000),
]
TARGET_RATES = [8000, 16000, 24000, 48000]
FRAME_MS = 20
SECONDS = 1.0
SETTLE_S = 0.1
"""The start of the output skipped before measuring: the resampler's latency (at most 30 ms) and
its settling."""

Floats = npt.NDArray[np.float64]


def encode(codec: Codec, samples: list[int]) -> bytes:
    if codec.name == "PCMU":
        return ulaw_encode(samples)
    if codec.name == "PCMA":
        return alaw_encode(samples)
    return pack_l16le(samples)


def decode_source(codec: Codec, payload: bytes) -> Floats:
    """What the source carries, as numbers (through the same tables, independently of the converter)."""
    if codec.name == "L16":
        return np.frombuffer(payload, dtype="<i2").astype(np.float64)
    l16 = converter(codec, Codec("L16", 8000))
    assert l16 is not None
    return np.frombuffer(l16(0, payload), dtype="<i2").astype(np.float64)


def l16(payload: bytes) -> Floats:
    return np.frombuffer(payload, dtype="<i2").astype(np.float64)


def tone_frames(codec: Codec, frequency: float, seconds: float = SECONDS, amplitude: float = 0.5) -> list[bytes]:
    tone = Tone(codec.sample_rate, frequency, amplitude)
    per_frame = codec.sample_rate * FRAME_MS // 1000
    return [encode(codec, list(tone.read(per_frame))) for _ in range(round(seconds * 1000 / FRAME_MS))]


def fitted_amplitude(samples: Floats, frequency: float, rate: int) -> float:
    """Least-squares amplitude of a sine at ``frequency`` (with its phase and a DC term free)."""
    t = np.arange(len(samples)) / rate
    basis = np.stack([np.sin(2 * np.pi * frequency * t), np.cos(2 * np.pi * frequency * t), np.ones_like(t)], 1)
    coef, *_ = np.linalg.lstsq(basis, samples, rcond=None)
    return math.hypot(coef[0], coef[1])


def peak_frequency(samples: Floats, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum)) * rate / len(samples)


def pairs() -> list[tuple[Codec, int]]:
    return [(source, rate) for source in SOURCES for rate in TARGET_RATES]


@pytest.mark.parametrize(("source", "rate"), pairs(), ids=lambda v: v.label if isinstance(v, Codec) else str(v))
@pytest.mark.parametrize("frequency", [440.0, 1000.0, 3000.0])
def test_a_tone_keeps_its_frequency_and_amplitude_in_whole_frames(source: Codec, rate: int, frequency: float) -> None:
    target = Codec("L16", rate)
    frames = tone_frames(source, frequency)
    convert = converter(source, target)
    if convert is None:  # already the target format: published as it came
        assert source == target
        return
    out = [convert(0, frame) for frame in frames]
    per_frame = 2 * rate * FRAME_MS // 1000
    assert [len(o) for o in out] == [per_frame] * len(frames)  # whole frames, from the first one

    received = l16(b"".join(out))[round(SETTLE_S * rate) :]
    sent = decode_source(source, b"".join(frames))[round(SETTLE_S * source.sample_rate) :]
    assert abs(peak_frequency(received, rate) - frequency) <= 2 * rate / len(received)
    gain_db = 20 * math.log10(
        fitted_amplitude(received, frequency, rate) / fitted_amplitude(sent, frequency, source.sample_rate)
    )
    assert abs(gain_db) <= 0.5, f"{source.label} -> {target.label} at {frequency} Hz: {gain_db:+.2f} dB"


@pytest.mark.parametrize(("source", "rate"), pairs(), ids=lambda v: v.label if isinstance(v, Codec) else str(v))
def test_frame_edges_are_seamless_the_same_samples_as_one_piece(source: Codec, rate: int) -> None:
    target = Codec("L16", rate)
    frames = tone_frames(source, 1234.5, seconds=0.5)
    streamed, whole = converter(source, target), converter(source, target)
    if streamed is None or whole is None:
        return
    by_frame = b"".join(streamed(0, frame) for frame in frames)
    one_piece = whole(0, b"".join(frames))
    assert by_frame == one_piece
    # And the one piece itself is smooth: no step anywhere larger than the tone's own steepest.
    samples = l16(one_piece)[round(SETTLE_S * rate) :]
    steepest = 2 * math.pi * 1234.5 / rate * 0.5 * 32767
    assert np.max(np.abs(np.diff(samples))) <= steepest * 1.1 + 2


def test_each_track_keeps_its_own_resampler_state() -> None:
    source, target = Codec("PCMU", 8000), Codec("L16", 16000)
    inbound, outbound = tone_frames(source, 440.0, 0.3), tone_frames(source, 2000.0, 0.3)
    both = converter(source, target)
    alone_in, alone_out = converter(source, target), converter(source, target)
    assert both is not None and alone_in is not None and alone_out is not None
    mixed = [(both(0, a), both(1, b)) for a, b in zip(inbound, outbound, strict=True)]
    assert b"".join(m[0] for m in mixed) == b"".join(alone_in(0, a) for a in inbound)
    assert b"".join(m[1] for m in mixed) == b"".join(alone_out(1, b) for b in outbound)


@pytest.mark.parametrize(
    ("source", "rate"), [(Codec("L16", 48000), 16000), (Codec("L16", 24000), 8000), (Codec("L16", 16000), 8000)]
)
def test_a_tone_above_the_target_nyquist_is_filtered_out_not_aliased(source: Codec, rate: int) -> None:
    frequency = 0.5 * rate * 1.15
    convert = converter(source, Codec("L16", rate))
    assert convert is not None
    received = l16(b"".join(convert(0, f) for f in tone_frames(source, frequency)))[round(SETTLE_S * rate) :]
    level_db = 20 * math.log10(max(float(np.sqrt(np.mean(received**2))), 1e-9) / (0.5 * 32767 / math.sqrt(2)))
    assert level_db < -60


def test_the_same_format_is_no_conversion_and_g711_at_8k_is_a_table_lookup() -> None:
    for rate in TARGET_RATES:
        assert converter(Codec("L16", rate), Codec("L16", rate)) is None
    ulaw = converter(Codec("PCMU", 8000), Codec("L16", 8000))
    assert ulaw is not None
    assert ulaw(0, bytes([0xFF, 0x7F, 0x00, 0x80])) == pack_l16le([0, 0, -32124, 32124])
    alaw = converter(Codec("PCMA", 8000), Codec("L16", 8000))
    assert alaw is not None and alaw(1, bytes([0xD5, 0x55])) == pack_l16le([8, -8])


def test_full_scale_input_is_clipped_never_wrapped() -> None:
    # A square wave rings past full scale when it is resampled: it must saturate, not wrap around.
    rate, per_half = 8000, 40
    square = ([32767] * per_half + [-32768] * per_half) * 50
    convert = converter(Codec("L16", rate), Codec("L16", 48000))
    assert convert is not None
    payload = pack_l16le(square)
    out = l16(b"".join(convert(0, payload[i : i + 320]) for i in range(0, len(payload), 320)))
    settled = out[48000 // 10 :]
    assert settled.max() == 32767 and settled.min() == -32768
    halves = settled.reshape(-1, 6 * per_half)  # a whole half-cycle per row at 48 kHz
    middles = halves[:, 3 * per_half // 2 : 9 * per_half // 2]
    assert np.all(np.abs(middles).min(axis=1) > 30000)


def test_odd_and_empty_payloads() -> None:
    convert = converter(Codec("L16", 16000), Codec("L16", 8000))
    assert convert is not None
    assert convert(0, b"") == b""
    # A trailing odd byte is not a sample: 321 bytes are 160 samples, 10 ms, 80 samples out.
    assert len(convert(0, bytes(321))) == 160


@pytest.mark.parametrize(
    ("source", "target"),
    [
        (Codec("G722", 16000), Codec("L16", 16000)),
        (Codec("PCMU", 16000), Codec("L16", 8000)),
        (Codec("L16", 16000, 2), Codec("L16", 8000)),
        (Codec("PCMU", 8000), Codec("PCMA", 8000)),
    ],
)
def test_what_cannot_be_converted_is_refused(source: Codec, target: Codec) -> None:
    with pytest.raises(TransformError):
        converter(source, target)
