"""The operator's exceptions: few, typed, carrying the data a log line or a status needs.

Invalid StreamRoutes are not errors here: ``sgw_routes.manifest.InvalidRoute`` carries the reason
into the route's status and the route is simply left out of the table. These classes are for
the operator's own environment. Retriable failures (:class:`KubeApiError`,
:class:`SinkUnavailable`) make the reconciler retry with backoff, and a deletion waiting on
them raises ``kopf.TemporaryError``; :class:`ConfigError` stops start-up (``kopf.PermanentError``
or exit code 2), as kopf's vocabulary prescribes (docs/conventions.md section 4).
"""

from __future__ import annotations


class OperatorError(Exception):
    """Base class of the operator's own errors."""


class ConfigError(OperatorError, ValueError):
    """A setting is invalid. ``variable`` names the environment variable to fix."""

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"{variable}: {message}")
        self.variable = variable
        self.message = message


class KubeApiError(OperatorError):
    """A Kubernetes API call failed (``status`` 0: no HTTP answer at all). Retried."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"Kubernetes API error {status}: {message}" if status else f"Kubernetes API: {message}")
        self.status = status
        self.message = message


class SinkUnavailable(OperatorError, ConnectionError):
    """The route table could not be read from or written to the NATS KV bucket. Retried."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
