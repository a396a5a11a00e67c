"""Test signals (deterministic, audible, not silence) and WAV files."""

from __future__ import annotations

import itertools
import math
import struct
import wave
from array import array
from pathlib import Path

import pytest

from gateway.audio import (
    SpeechLike,
    Tone,
    WavWriter,
    parse_codec,
    read_wav,
    rms,
    speech_like,
    tone,
    write_wav,
)


def _frames(samples: array[int], size: int) -> list[array[int]]:
    return [samples[i : i + size] for i in range(0, len(samples), size)]


@pytest.mark.parametrize("rate", [8000, 16000, 24000])
def test_speech_like_is_deterministic_and_stream_consistent(rate: int) -> None:
    whole = speech_like(rate, rate, seed=7)
    synth = SpeechLike(rate, seed=7)
    pieces = array("h")
    for _ in range(50):
        pieces.extend(synth.read(rate // 50))
    assert pieces == whole
    assert speech_like(rate, rate, seed=8) != whole


def test_speech_like_is_real_audio_with_a_syllable_envelope() -> None:
    rate = 8000
    samples = speech_like(rate, 3 * rate, seed=1)
    assert 500 < rms(samples) < 12000
    frame_levels = [rms(f) for f in _frames(samples, 160)]
    # Never digital silence, even in the pauses (the noise floor survives G.711).
    assert min(frame_levels) > 0
    assert min(len(set(f)) for f in _frames(samples, 160)) > 1
    # Loud syllable peaks and quiet troughs: a real envelope, not a steady tone.
    assert max(frame_levels) > 10 * min(frame_levels)
    # Several syllables a second: count rises through half the peak level.
    threshold = max(frame_levels) / 2
    onsets = sum(1 for a, b in itertools.pairwise(frame_levels) if a < threshold <= b)
    assert 3 <= onsets <= 20


def test_speech_like_survives_g711_as_non_silence() -> None:
    codec = parse_codec("PCMU")
    payload = codec.encode(speech_like(8000, 8000, seed=3))
    assert all(len(set(frame)) > 1 for frame in _frames(array("B", payload), 160))


def test_tone_frequency_and_amplitude() -> None:
    samples = tone(8000, 8000, frequency=440.0, amplitude=0.5)
    crossings = sum(1 for a, b in itertools.pairwise(samples) if a < 0 <= b)
    assert abs(crossings - 440) <= 1
    assert abs(max(samples) - 0.5 * 32767) < 200
    assert abs(rms(samples) - 0.5 * 32767 / math.sqrt(2)) < 100
    generator = Tone(8000, 440.0, 0.5)
    assert generator.read(100) + generator.read(7900) == samples


@pytest.mark.parametrize("rate", [8000, 16000, 24000])
def test_wav_header_and_data(tmp_path: Path, rate: int) -> None:
    samples = speech_like(rate, rate // 2, seed=2)
    path = write_wav(tmp_path / "a.wav", samples, rate)
    with wave.open(str(path), "rb") as reader:
        assert reader.getnchannels() == 1
        assert reader.getsampwidth() == 2
        assert reader.getframerate() == rate
        assert reader.getnframes() == len(samples)
        assert reader.getcomptype() == "NONE"
    raw = path.read_bytes()
    assert (raw[:4], raw[8:12], raw[12:16]) == (b"RIFF", b"WAVE", b"fmt ")
    fmt, channels, sample_rate, byte_rate, align, bits = struct.unpack("<HHIIHH", raw[20:36])
    assert (fmt, channels, sample_rate, byte_rate, align, bits) == (1, 1, rate, 2 * rate, 2, 16)
    assert struct.unpack("<I", raw[4:8])[0] == len(raw) - 8
    data = read_wav(path)
    assert (data.sample_rate, data.channels) == (rate, 1)
    assert data.samples == samples


def test_wav_writer_appends_and_patches_the_header(tmp_path: Path) -> None:
    path = tmp_path / "b.wav"
    with WavWriter(path, 16000) as writer:
        writer.write_samples([1, 2, 3])
        writer.write_silence(2)
        writer.write_pcm16le(b"\xff\xff")
        assert writer.samples_written == 6
    assert list(read_wav(path).samples) == [1, 2, 3, 0, 0, -1]


def test_read_wav_rejects_8_bit(tmp_path: Path) -> None:
    path = tmp_path / "c.wav"
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(1)
        writer.setframerate(8000)
        writer.writeframes(b"\x80" * 10)
    with pytest.raises(ValueError, match="16-bit"):
        read_wav(path)
