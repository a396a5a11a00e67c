"""The per-frame call of a stream whose route transforms its audio or publishes copies.

A plain route's frames go straight to ``outbox.frame``; :func:`frame_sink` returns exactly that,
so such routes pay nothing for this module. Otherwise it returns a small object that converts the
payload once per frame for each distinct format the route publishes (the route's subject and its
copies may share one) and hands the results to the outbox: one payload to ``outbox.frame`` for a
transform alone, one per subject set to :meth:`FanoutOutbox.frames` with copies. ``Sgw-Seq`` and
``Sgw-Ts`` are the original frame's; the session has already counted it.

:mod:`gateway.audio.transform` (numpy, soxr) is imported at the first stream that needs it, so a
gateway without such routes never loads them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from gateway.protocol.actions import StreamInfo
from gateway.protocol.media import Codec
from gateway.publish.base import StreamOutbox
from gateway.publish.fanout import FanoutOutbox
from gateway.publish.wire import FrameTemplate

FrameSink = Callable[[int, int, int, bytes], None]
"""``(track index, Sgw-Seq, Sgw-Ts, payload)``: the shell's per-frame call."""
Converter = Callable[[int, bytes], bytes]


def subject_sets(info: StreamInfo) -> list[list[FrameTemplate]]:
    """The templates per track of the route's subject, then of each copy (rendered by the session)."""
    sets = [[FrameTemplate(subject, info.frame_headers) for subject in info.audio_subjects]]
    sets.extend([FrameTemplate(subject, copy.headers) for subject in copy.subjects] for copy in info.copies)
    return sets


def frame_sink(info: StreamInfo, outbox: StreamOutbox) -> FrameSink:
    """What the shell calls for each frame of this stream."""
    if not info.transforms:
        return outbox.frame
    from gateway.audio.transform import converter

    formats: list[Codec | None] = [info.published_codec, *(copy.codec for copy in info.copies)]
    distinct = list(dict.fromkeys(formats))
    converters = [None if target is None else converter(info.codec, target) for target in distinct]
    if not info.copies:
        only = converters[0]
        return outbox.frame if only is None else Transformed(only, outbox.frame)
    if not isinstance(outbox, FanoutOutbox):
        raise TypeError("a route with copies needs a FanoutOutbox")
    return Fanout(converters, [distinct.index(target) for target in formats], outbox.frames)


class Transformed:
    """One subject set, transformed: convert, then the outbox's usual per-frame call."""

    __slots__ = ("_convert", "_frame")

    def __init__(self, convert: Converter, frame: FrameSink) -> None:
        self._convert = convert
        self._frame = frame

    def __call__(self, track: int, seq: int, ts: int, payload: bytes) -> None:
        self._frame(track, seq, ts, self._convert(track, payload))


class Fanout:
    """Several subject sets: each distinct format converted once, then every set's payload picked."""

    __slots__ = ("_converters", "_frames", "_picks")

    def __init__(
        self,
        converters: Sequence[Converter | None],
        picks: Sequence[int],
        frames: Callable[[int, int, int, Sequence[bytes]], None],
    ) -> None:
        self._converters = tuple(converters)
        """Per distinct format (``None``: the payload as it came)."""
        self._picks = tuple(picks)
        """Per subject set: the index of its format in :attr:`_converters`."""
        self._frames = frames

    def __call__(self, track: int, seq: int, ts: int, payload: bytes) -> None:
        payloads = [payload if convert is None else convert(track, payload) for convert in self._converters]
        self._frames(track, seq, ts, [payloads[i] for i in self._picks])
