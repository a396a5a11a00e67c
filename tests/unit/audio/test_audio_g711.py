"""G.711 mu-law and A-law: reference values, symmetry, every code, error bounds, speed."""

from __future__ import annotations

import math
import time
from array import array

from hypothesis import given
from hypothesis import strategies as st

from gateway.audio import g711
from gateway.audio.pcm import pack_l16le

ALL_INT16 = array("h", range(-32768, 32768))
int16_lists = st.lists(st.integers(-32768, 32767), max_size=400)


def test_reference_decode_values() -> None:
    # mu-law silence is 0xFF (and 0x7F, "negative zero"); A-law's is 0xD5, the smallest step.
    assert g711.ULAW_DECODE[0xFF] == 0
    assert g711.ULAW_DECODE[0x7F] == 0
    assert g711.ULAW_DECODE[0x00] == -32124
    assert g711.ULAW_DECODE[0x80] == 32124
    assert g711.ULAW_DECODE[0xFE] == 8
    assert g711.ULAW_DECODE[0x7E] == -8
    assert g711.ALAW_DECODE[0xD5] == 8
    assert g711.ALAW_DECODE[0x55] == -8
    assert g711.ALAW_DECODE[0xAA] == 32256
    assert g711.ALAW_DECODE[0x2A] == -32256


def test_encode_reference_values() -> None:
    assert g711.ulaw_encode([0]) == b"\xff"
    assert g711.alaw_encode([0]) == b"\xd5"
    assert g711.ulaw_encode([32767, -32768]) == b"\x80\x00"
    assert g711.alaw_encode([32767, -32768]) == b"\xaa\x2a"


def test_decode_tables_are_sign_symmetric() -> None:
    for code in range(256):
        assert g711.ULAW_DECODE[code] == -g711.ULAW_DECODE[code ^ 0x80]
        assert g711.ALAW_DECODE[code] == -g711.ALAW_DECODE[code ^ 0x80]


def test_all_256_codes_decode_to_distinct_levels() -> None:
    # mu-law has one duplicate level (+0 and -0); A-law has none.
    assert len(set(g711.ULAW_DECODE)) == 255
    assert len(set(g711.ALAW_DECODE)) == 256
    assert all(-32768 <= v <= 32767 for v in g711.ULAW_DECODE + g711.ALAW_DECODE)


def test_every_code_survives_decode_then_encode() -> None:
    for code in range(256):
        expected_ulaw = 0xFF if code == 0x7F else code
        assert g711.ulaw_encode([g711.ULAW_DECODE[code]]) == bytes([expected_ulaw])
        assert g711.alaw_encode([g711.ALAW_DECODE[code]]) == bytes([code])


def test_tables_match_the_reference_arithmetic_for_every_int16() -> None:
    assert g711.ulaw_encode(ALL_INT16) == bytes(g711.ulaw_encode_sample(x) for x in ALL_INT16)
    assert g711.alaw_encode(ALL_INT16) == bytes(g711.alaw_encode_sample(x) for x in ALL_INT16)
    assert list(g711.ulaw_decode(bytes(range(256)))) == list(g711.ULAW_DECODE)
    assert list(g711.alaw_decode(bytes(range(256)))) == list(g711.ALAW_DECODE)


def test_round_trip_error_is_within_the_segment_step() -> None:
    # Logarithmic quantisation: the error grows with the magnitude, about 1/32 of it plus a
    # constant for the smallest steps; beyond the top level the codecs clip.
    ulaw = g711.ulaw_decode(g711.ulaw_encode(ALL_INT16))
    alaw = g711.alaw_decode(g711.alaw_encode(ALL_INT16))
    for x, u, a in zip(ALL_INT16, ulaw, alaw, strict=True):
        if abs(x) <= 32124:
            assert abs(x - u) <= abs(x) / 32 + 12, x
        else:
            assert u == math.copysign(32124, x)
        if abs(x) <= 32256:
            assert abs(x - a) <= abs(x) / 32 + 8, x
        else:
            assert a == math.copysign(32256, x)


def test_tone_snr_is_telephone_quality() -> None:
    tone = array("h", [round(16000 * math.sin(2 * math.pi * 1000 * n / 8000)) for n in range(8000)])
    for encode, decode in ((g711.ulaw_encode, g711.ulaw_decode), (g711.alaw_encode, g711.alaw_decode)):
        out = decode(encode(tone))
        signal = sum(x * x for x in tone)
        noise = sum((x - y) ** 2 for x, y in zip(tone, out, strict=True))
        assert 10 * math.log10(signal / noise) > 33


def test_pcm16le_helpers_match_decode() -> None:
    data = bytes(range(256))
    assert g711.ulaw_to_pcm16le(data) == pack_l16le(g711.ulaw_decode(data))
    assert g711.alaw_to_pcm16le(data) == pack_l16le(g711.alaw_decode(data))
    assert g711.ulaw_to_pcm16le(b"\xff") == b"\x00\x00"
    assert g711.alaw_to_pcm16le(b"\xd5") == b"\x08\x00"


def test_empty_and_single_sample_inputs() -> None:
    assert g711.ulaw_encode([]) == b""
    assert g711.alaw_encode(array("h")) == b""
    assert g711.ulaw_decode(b"") == array("h")
    assert g711.alaw_encode([100]) == bytes([g711.alaw_encode_sample(100)])


def test_encoding_one_second_takes_well_under_a_few_milliseconds() -> None:
    # Loose on purpose (shared CI machines): measured ~0.3 ms for 8000 samples on a 2-vCPU box.
    samples = array("h", [round(12000 * math.sin(n / 7)) for n in range(8000)])
    g711.ulaw_encode(samples[:2])  # build the lazily computed tables outside the timing
    g711.alaw_encode(samples[:2])
    for encode in (g711.ulaw_encode, g711.alaw_encode):
        best = math.inf
        for _ in range(5):
            began = time.perf_counter()
            encode(samples)
            best = min(best, time.perf_counter() - began)
        assert best < 0.01


@given(int16_lists)
def test_round_trip_property(samples: list[int]) -> None:
    for encode, decode in ((g711.ulaw_encode, g711.ulaw_decode), (g711.alaw_encode, g711.alaw_decode)):
        coded = encode(samples)
        assert len(coded) == len(samples)
        once = decode(coded)
        assert len(once) == len(samples)
        # Decoding lands on a quantisation level, which encoding maps back to itself.
        assert decode(encode(once)) == once
        for x, y in zip(samples, once, strict=True):
            bound = 644 if abs(x) > 32124 else abs(x) / 32 + 12  # 644: clipping of -32768
            assert abs(x - y) <= bound


@given(st.binary(max_size=400))
def test_decode_encode_property(data: bytes) -> None:
    assert g711.alaw_encode(g711.alaw_decode(data)) == data
    assert g711.ulaw_encode(g711.ulaw_decode(data)) == data.replace(b"\x7f", b"\xff")
