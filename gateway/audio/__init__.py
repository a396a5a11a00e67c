"""Audio for the tools and tests: G.711, L16, codec descriptors, test signals and WAV files.

Pure and stdlib-only (no aiohttp, nats or asyncio), so anything can import it, including the
sans-IO core. The gateway's hot path forwards payloads unchanged, except on routes with a
transform: :mod:`gateway.audio.transform` (numpy and soxr, so not imported here) converts those.
``audioop`` is deliberately avoided (deprecated in 3.11, gone in 3.13); the G.711 code here is
table-driven instead.
"""

from gateway.audio.codec import (
    FRAME_MS,
    CodecError,
    CodecName,
    CodecSpec,
    codec_from_media_format,
    parse_codec,
)
from gateway.audio.g711 import (
    alaw_decode,
    alaw_encode,
    alaw_to_pcm16le,
    ulaw_decode,
    ulaw_encode,
    ulaw_to_pcm16le,
)
from gateway.audio.pcm import pack_l16le, unpack_l16le
from gateway.audio.signals import Signal, SpeechLike, Tone, rms, speech_like, tone
from gateway.audio.wav import WavData, WavWriter, read_wav, write_wav

__all__ = [
    "FRAME_MS",
    "CodecError",
    "CodecName",
    "CodecSpec",
    "Signal",
    "SpeechLike",
    "Tone",
    "WavData",
    "WavWriter",
    "alaw_decode",
    "alaw_encode",
    "alaw_to_pcm16le",
    "codec_from_media_format",
    "pack_l16le",
    "parse_codec",
    "read_wav",
    "rms",
    "speech_like",
    "tone",
    "ulaw_decode",
    "ulaw_encode",
    "ulaw_to_pcm16le",
    "unpack_l16le",
    "write_wav",
]
