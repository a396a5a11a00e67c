"""The back-channel shell: the pod holding a bidirectional stream forwards consumer messages to it.

When a stream's route names a playback subject, the stream subscribes to it (rendered with the
stream's ids) for the stream's life. Each message is classified by the sans-IO core
(:mod:`gateway.protocol.playback`) and sent to the provider as a text frame, in arrival order.
Messages that arrive when the socket is gone, or malformed commands, are counted, never sent.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.errors import RemoteProtocolError
from gateway.observability.metrics import GatewayMetrics
from gateway.protocol.playback import PlayAudio, encode_for_provider, parse_play_message
from gateway.publish.base import Publisher

logger = logging.getLogger(__name__)


class Playback:
    def __init__(
        self,
        publisher: Publisher,
        metrics: GatewayMetrics,
        ws: web.WebSocketResponse,
        *,
        stream_id: str,
        subject: str,
        is_streaming: Callable[[], bool],
    ) -> None:
        self._publisher = publisher
        self._metrics = metrics
        self._ws = ws
        self._stream_id = stream_id
        self.subject = subject
        self._is_streaming = is_streaming
        self._unsubscribe: Callable[[], Awaitable[None]] | None = None

    async def start(self) -> None:
        self._unsubscribe = await self._publisher.subscribe(self.subject, self._on_message)

    async def _on_message(self, data: bytes) -> None:
        counter = self._metrics.playback_messages
        try:
            message = parse_play_message(data)
        except RemoteProtocolError as err:
            counter.labels("invalid").inc()
            logger.info("playback message refused on %s: %s", self.subject, err.message)
            return
        if self._ws.closed or not self._is_streaming():
            counter.labels("not_streaming").inc()
            return
        frame = encode_for_provider(self._stream_id, message)
        try:
            await self._ws.send_str(frame.decode())
        except (ConnectionError, RuntimeError):
            counter.labels("not_streaming").inc()
            return
        counter.labels("media" if isinstance(message, PlayAudio) else message.kind).inc()

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            unsubscribe, self._unsubscribe = self._unsubscribe, None
            with contextlib.suppress(Exception):  # the connection may already be gone; nothing to undo
                await unsubscribe()
