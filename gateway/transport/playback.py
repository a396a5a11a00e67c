"""The back-channel shell: the pod holding a bidirectional stream forwards consumer messages to it.

When a stream's route names a playback subject, the stream subscribes to it (rendered with the
stream's ids, named in its ``started`` event) for the stream's life. Each message is classified by
the sans-IO core (:mod:`gateway.protocol.playback`) and sent to the provider as a text frame, in
arrival order. Messages that arrive when the socket is gone, or malformed commands, are counted,
never sent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from prometheus_client import Counter

from gateway.errors import RemoteProtocolError
from gateway.protocol.playback import PlayAudio, encode_for_provider, parse_play_message

logger = logging.getLogger(__name__)

SendText = Callable[[bytes], bool]
"""Send one text frame to the provider; False when the socket is gone or the stream has ended."""


def forward(data: bytes, *, stream_id: str, send: SendText, counter: Counter, subject: str) -> None:
    """One consumer message to the provider: classified, encoded, sent, counted by kind."""
    try:
        message = parse_play_message(data)
    except RemoteProtocolError as err:
        counter.labels("invalid").inc()
        logger.info("playback message refused on %s: %s", subject, err.message)
        return
    if not send(encode_for_provider(stream_id, message)):
        counter.labels("not_streaming").inc()
        return
    counter.labels("media" if isinstance(message, PlayAudio) else message.kind).inc()
