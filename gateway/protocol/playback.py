"""The back-channel of bidirectional streams: consumer messages in, provider messages out (sans-IO).

Consumers publish on the route's playback subject (e.g. ``play.{call_id}``) either raw audio
bytes in the stream's codec, or a JSON command: ``{"type": "mark", "name": "..."}``,
``{"type": "clear"}``, ``{"type": "dtmf", "digit": "5"}``. A message is a command exactly when it
is a JSON object with one of those types; anything else is audio. Each stream's dialect turns
them into its provider's own frames (:meth:`gateway.protocol.dialects.base.Dialect.encode`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

import msgspec

from gateway.errors import RemoteProtocolError

_DTMF_DIGITS: Final = frozenset("0123456789*#ABCDabcdw")
_MAX_MARK_NAME: Final = 256


@dataclass(frozen=True, slots=True)
class PlayAudio:
    payload: bytes


@dataclass(frozen=True, slots=True)
class PlayCommand:
    kind: Literal["mark", "clear", "dtmf"]
    value: str = ""


PlayMessage = PlayAudio | PlayCommand


class _Command(msgspec.Struct, frozen=True):
    type: str
    name: str = ""
    digit: str = ""


_COMMAND: Final = msgspec.json.Decoder(_Command)


def parse_play_message(data: bytes) -> PlayMessage:
    """Classify one consumer message. Raises RemoteProtocolError for a malformed command."""
    if not data.startswith(b"{"):
        return PlayAudio(data)
    try:
        command = _COMMAND.decode(data)
    except (msgspec.DecodeError, RecursionError):
        return PlayAudio(data)  # not a JSON command: audio that happens to start with 0x7B
    if command.type == "clear":
        return PlayCommand("clear")
    if command.type == "mark":
        if not command.name or len(command.name) > _MAX_MARK_NAME:
            raise RemoteProtocolError("mark command needs a name (1-256 chars)", reason="bad_playback")
        return PlayCommand("mark", command.name)
    if command.type == "dtmf":
        if not command.digit or not set(command.digit) <= _DTMF_DIGITS:
            raise RemoteProtocolError("dtmf command needs digits 0-9 * # A-D", reason="bad_playback")
        return PlayCommand("dtmf", command.digit)
    return PlayAudio(data)
