"""L16 byte order and the codec descriptors the tools accept."""

from __future__ import annotations

from array import array

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.audio import (
    CodecError,
    CodecSpec,
    codec_from_media_format,
    pack_l16le,
    parse_codec,
    unpack_l16le,
)
from gateway.audio.pcm import clip16


def test_l16_is_little_endian_signed() -> None:
    assert pack_l16le([1, -2, 0x1234, -32768, 32767]) == b"\x01\x00\xfe\xff\x34\x12\x00\x80\xff\x7f"
    assert list(unpack_l16le(b"\x01\x00\xfe\xff\x34\x12")) == [1, -2, 0x1234]


def test_unpack_ignores_a_trailing_odd_byte() -> None:
    assert list(unpack_l16le(b"\x01\x00\x02")) == [1]


def test_pack_rejects_out_of_range_samples() -> None:
    with pytest.raises(OverflowError):
        pack_l16le([40000])


def test_clip16() -> None:
    assert clip16(40000.2) == 32767
    assert clip16(-40000) == -32768
    assert clip16(1.6) == 2


@given(st.lists(st.integers(-32768, 32767), max_size=500))
def test_l16_round_trip(samples: list[int]) -> None:
    data = pack_l16le(samples)
    assert len(data) == 2 * len(samples)
    assert list(unpack_l16le(data)) == samples


@pytest.mark.parametrize(
    ("text", "name", "rate", "encoding", "frame_bytes"),
    [
        ("PCMU", "PCMU", 8000, "audio/x-mulaw", 160),
        ("pcmu", "PCMU", 8000, "audio/x-mulaw", 160),
        ("PCMU/8000", "PCMU", 8000, "audio/x-mulaw", 160),
        ("PCMU@8000h", "PCMU", 8000, "audio/x-mulaw", 160),
        ("PCMA", "PCMA", 8000, "audio/x-alaw", 160),
        ("PCMA/8000", "PCMA", 8000, "audio/x-alaw", 160),
        ("L16@16000", "L16", 16000, "audio/x-L16", 640),
        ("L16/16000", "L16", 16000, "audio/x-L16", 640),
        ("L16@24000", "L16", 24000, "audio/x-L16", 960),
        ("L16/24000", "L16", 24000, "audio/x-L16", 960),
        ("L16@24000h", "L16", 24000, "audio/x-L16", 960),
    ],
)
def test_parse_codec(text: str, name: str, rate: int, encoding: str, frame_bytes: int) -> None:
    codec = parse_codec(text)
    assert codec == CodecSpec(name, rate)  # type: ignore[arg-type]
    assert codec.encoding == encoding
    assert codec.bytes_per_frame == frame_bytes
    assert codec.samples_per_frame == rate // 50
    assert codec.media_format() == {"encoding": encoding, "sampleRate": rate, "channels": 1}
    assert codec.label == f"{name}/{rate}"
    assert parse_codec(codec.label) == codec


@pytest.mark.parametrize("text", ["", "OPUS", "L16", "L16@11025", "PCMU/16000", "PCMA@44100", "G722"])
def test_parse_codec_rejects(text: str) -> None:
    with pytest.raises(CodecError):
        parse_codec(text)
    assert issubclass(CodecError, ValueError)


def test_codec_from_media_format() -> None:
    assert codec_from_media_format("audio/x-mulaw", 8000) == parse_codec("PCMU")
    assert codec_from_media_format("audio/x-L16", 24000) == parse_codec("L16@24000")
    assert codec_from_media_format("audio/x-alaw", 8000) == parse_codec("PCMA")
    with pytest.raises(CodecError):
        codec_from_media_format("audio/opus", 48000)


@pytest.mark.parametrize("text", ["PCMU", "PCMA", "L16@16000", "L16@24000"])
def test_codec_encode_decode_and_silence(text: str) -> None:
    codec = parse_codec(text)
    samples = array("h", range(-8000, 8000, 100))
    payload = codec.encode(samples)
    assert len(payload) == len(samples) * codec.bytes_per_sample
    decoded = codec.decode(payload)
    assert codec.to_pcm16le(payload) == pack_l16le(decoded)
    if codec.name == "L16":
        assert decoded == samples
    else:
        assert all(abs(a - b) <= abs(a) / 32 + 12 for a, b in zip(samples, decoded, strict=True))
    silence = codec.silence(160)
    assert len(silence) == 160 * codec.bytes_per_sample
    assert set(codec.decode(silence)) <= {0, 8}
