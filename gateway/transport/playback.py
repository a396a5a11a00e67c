"""The back-channel shell: the pod holding a bidirectional stream forwards consumer messages to it.

When a stream's route names a playback subject, the stream subscribes to it (rendered with the
stream's ids, named in its ``started`` event) for the stream's life. Each message is classified by
the sans-IO core (:mod:`gateway.protocol.playback`), turned into the provider's own frames by the
stream's dialect, and sent in arrival order. Messages that arrive when the socket is gone,
malformed commands, and commands the provider has no equivalent for are counted, never sent. Audio
is never refused: a dialect that must send whole frames (Vonage's 20 ms, Exotel's multiples of 320
bytes) keeps a part frame for the next message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from prometheus_client import Counter

from gateway.errors import RemoteProtocolError
from gateway.protocol.dialects.base import Outgoing
from gateway.protocol.playback import PlayAudio, PlayMessage, parse_play_message

logger = logging.getLogger(__name__)

Encode = Callable[[PlayMessage], tuple[Outgoing, ...] | None]
"""The stream's dialect, bound to the stream: one consumer message -> the provider's frames."""
Send = Callable[[Outgoing], bool]
"""Send (or queue, when paced) one frame to the provider; False when the stream has ended."""


def forward(data: bytes, *, encode: Encode, send: Send, counter: Counter, subject: str) -> None:
    """One consumer message to the provider: classified, encoded, sent, counted by kind."""
    try:
        message = parse_play_message(data)
        frames = encode(message)
    except RemoteProtocolError as err:
        counter.labels("invalid").inc()
        logger.info("playback message refused on %s: %s", subject, err.message)
        return
    kind = "media" if isinstance(message, PlayAudio) else message.kind
    if frames is None:
        counter.labels("unsupported").inc()
        logger.info("playback message on %s: this provider has no %s message", subject, kind)
        return
    for frame in frames:
        if not send(frame):
            counter.labels("not_streaming").inc()
            return
    counter.labels(kind).inc()
