"""Every error the gateway raises on purpose, and the WebSocket close code each one maps to.

One base class, :class:`GatewayError`. Errors carry data (what went wrong, a bounded ``reason``
label for metrics) and a ``close_code`` hint, so the shell that owns the socket can close it
without knowing which layer failed. Protocol errors are split the way h11 splits them: the peer
broke the protocol (:class:`RemoteProtocolError`) or we did (:class:`LocalProtocolError`).

Close codes (RFC 6455 section 7.4.1):

=====  ==========================================================================
1001   going away: the pod is draining (:class:`ShuttingDown`)
1002   protocol error: a frame that breaks RFC 6455 itself (aiohttp's reader closes with it)
1003   unsupported data: a binary frame on a text-only protocol
1006   (never sent) the socket ended without a close frame: metrics and logs report it
1007   invalid payload: not JSON, not UTF-8, bad base64, wrong field types
1008   policy violation: order violations, unknown route, failed auth, start timeout
1009   message too big
1011   internal error: a bug on our side (:class:`LocalProtocolError`)
1013   try again later: the publish path is unavailable (:class:`PublishUnavailable`)
=====  ==========================================================================
"""

from __future__ import annotations

from enum import IntEnum


class CloseCode(IntEnum):
    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    ABNORMAL = 1006
    """Never sent: reported when a socket ended without a close frame."""
    INVALID_PAYLOAD = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    TRY_AGAIN_LATER = 1013


class GatewayError(Exception):
    """Base of every deliberate gateway error."""

    close_code: CloseCode = CloseCode.INTERNAL_ERROR
    reason: str = "internal"
    """A bounded label value (metrics) naming the kind of failure; never contains ids."""

    def __init__(self, message: str, *, reason: str | None = None, close_code: CloseCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        if close_code is not None:
            self.close_code = close_code

    @property
    def close_message(self) -> str:
        """The close frame's reason text: bounded to the 123 bytes RFC 6455 allows."""
        return self.message.encode()[:123].decode(errors="ignore")


class ConfigError(GatewayError):
    """A setting is invalid. Raised at start-up; only the CLI turns it into an exit code."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(f"{setting}: {message}", reason="config")
        self.setting = setting


class RemoteProtocolError(GatewayError):
    """The provider sent something the protocol does not allow. Closes only that socket.

    ``reason`` is one of a fixed set (``malformed``, ``binary_frame``, ``too_big``,
    ``media_before_start``, ``duplicate_start``, ``start_timeout``, ...), used as a metric label.
    """

    close_code = CloseCode.POLICY_VIOLATION
    reason = "protocol"


class LocalProtocolError(GatewayError):
    """We tried to do something the protocol does not allow: a bug, closes with 1011."""

    close_code = CloseCode.INTERNAL_ERROR
    reason = "local"


class RouteNotFound(GatewayError):
    """No route matches the stream and no default route is configured."""

    close_code = CloseCode.POLICY_VIOLATION
    reason = "no_route"


class Unauthorized(GatewayError):
    """The bearer token is missing or wrong for the stream's route. The token is never logged."""

    close_code = CloseCode.POLICY_VIOLATION
    reason = "unauthorized"


class PublishUnavailable(GatewayError):
    """The NATS publish path cannot take messages right now (disconnected, draining)."""

    close_code = CloseCode.TRY_AGAIN_LATER
    reason = "publish_unavailable"


class PublishRejected(GatewayError):
    """NATS refused one message for good (too large for ``max_payload``, JetStream rejected it).

    Retrying cannot help, so the frame is counted as dropped with this reason.
    """

    close_code = CloseCode.INTERNAL_ERROR
    reason = "publish_rejected"


class ShuttingDown(GatewayError):
    """The pod is draining: new streams are refused and the remaining ones close with 1001."""

    close_code = CloseCode.GOING_AWAY
    reason = "shutting_down"


class StreamLimitReached(GatewayError):
    """The per-process stream limit is reached; the upgrade is answered with 503."""

    close_code = CloseCode.TRY_AGAIN_LATER
    reason = "stream_limit"
