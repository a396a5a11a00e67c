"""stream-gateway: terminates telephony media-stream WebSockets and publishes the audio to NATS.

The package is layered (checked by import-linter, see pyproject.toml): ``protocol`` is the sans-IO
core, ``transport`` the aiohttp shell, ``publish`` and ``routing`` the seams to NATS and to the
route table, ``observability`` metrics/tracing/logging, ``server`` the process lifecycle and
``cli`` the command line.
"""

__version__ = "0.1.0"
