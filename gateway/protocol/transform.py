"""What a route's transform makes of a stream's codec: the decision, not the arithmetic.

A route may publish the provider's audio transformed (``spec.transform``) and on further subject
sets (``spec.target.copies``). The session decides once, at ``start``, what each subject set
carries, so that ``Sgw-Codec`` and the ``started`` event say it before any audio: the target
format, or the provider's own codec when it cannot be transformed (then nothing is converted and
``started`` says why). The conversion itself is :mod:`gateway.audio.transform`, which the shell
loads only for streams that need it (it brings numpy and soxr).
"""

from __future__ import annotations

from typing import Final

from gateway.protocol.media import Codec
from sgw_routes.model import Transform

SOURCES: Final[dict[str, tuple[int, ...]]] = {
    "PCMU": (8000,),
    "PCMA": (8000,),
    "L16": (8000, 16000, 24000, 48000),
}
"""Mono codecs and rates a transform takes (L16 being signed 16-bit little-endian, as every
provider in scope sends it)."""


def target_codec(transform: Transform) -> Codec:
    return Codec(transform.encoding, transform.sample_rate)


def refusal(source: Codec, transform: Transform) -> str | None:
    """Why ``source`` cannot be transformed as asked, or None when it can (or already is it)."""
    target = target_codec(transform)
    if source == target:
        return None
    rates = SOURCES.get(source.name)
    if rates is None or source.sample_rate not in rates:
        return f"{source.label} cannot be transformed to {target.label}"
    if source.channels != 1:
        return f"{source.label} with {source.channels} channels cannot be transformed (mono only)"
    return None


def published(source: Codec, transform: Transform | None) -> tuple[Codec | None, str | None]:
    """What a subject set carries: ``(None, None)`` for the provider's audio untouched, ``(codec,
    None)`` for a transform to ``codec``, ``(None, reason)`` when the transform cannot apply."""
    if transform is None:
        return None, None
    reason = refusal(source, transform)
    if reason is not None:
        return None, reason
    target = target_codec(transform)
    return (None if target == source else target), None
