"""Micro-benchmarks of route transforms: the conversion per frame, and the shell's per-frame path.

1. Each transform alone: microseconds per 20 ms frame for every source codec and target rate
   (the converter of :mod:`gateway.audio.transform`, with its per-track state, on a tone).
2. The shell's per-frame path after the dialect (``session.media`` then the stream's frame sink
   into its real outbox) for a plain route, a transformed one and one with copies, in the same
   run. The link under the outbox takes each batch and throws it away, so this is the gateway's
   own work per frame, without the socket write.

Both are hot loops: caches stay warm from one frame to the next. Between the frames of real-time
streams they are not, and each numpy call (and soxr's) costs several times more; the end-to-end
benchmark's ``--transform`` phase (``python -m bench``) gives that figure.

Run with the other micro-benchmarks (``python -m tests.bench``) or alone
(``python -m tests.bench.transforms``).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from gateway.audio import Tone, parse_codec
from gateway.audio.transform import converter
from gateway.protocol.actions import Started, StreamInfo
from gateway.protocol.events import Media, Start
from gateway.protocol.media import Codec
from gateway.protocol.session import SessionConfig, StreamSession
from gateway.publish.fanout import FanoutOutbox
from gateway.publish.outbox import Outbox
from gateway.publish.wire import FrameTemplate
from gateway.transport.transcode import frame_sink, subject_sets
from sgw_routes.model import Copy, Route, RoutingTable, Transform

SOURCES = (
    Codec("PCMU", 8000),
    Codec("PCMA", 8000),
    Codec("L16", 8000),
    Codec("L16", 16000),
    Codec("L16", 24000),
    Codec("L16", 48000),
)
TARGET_RATES = (8000, 16000, 24000, 48000)
PCMU = Codec("PCMU", 8000)


def _frames(codec: Codec, count: int) -> list[bytes]:
    tone = Tone(codec.sample_rate, 1000.0, 0.5)
    per_frame = codec.sample_rate // 50
    spec = parse_codec(codec.label)
    return [spec.encode(tone.read(per_frame)) for _ in range(count)]


def _best_per_item(fn: Callable[[], int], repeat: int = 5) -> float:
    """Seconds per item of the fastest of ``repeat`` runs (``fn`` returns how many items it did)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        n = fn()
        best = min(best, (time.perf_counter() - t0) / n)
    return best


def transform_costs(frames: int = 2000) -> dict[tuple[str, str], float]:
    """Microseconds per 20 ms frame of each conversion (None: published as it came, not timed)."""
    costs: dict[tuple[str, str], float] = {}
    for source in SOURCES:
        payloads = _frames(source, 50)
        for rate in TARGET_RATES:
            target = Codec("L16", rate)
            convert = converter(source, target)
            if convert is None:
                continue

            def run(convert: Callable[[int, bytes], bytes] = convert, payloads: list[bytes] = payloads) -> int:
                for i in range(frames):
                    convert(i & 1, payloads[i % 50])
                return frames

            run()  # the tracks' resamplers exist and are warm
            costs[(source.label, target.label)] = _best_per_item(run) * 1e6
    return costs


class _DiscardingLink:
    """The part of the NATS link the outbox touches on its straight-through path; each batch is
    dropped at once, so only the gateway's own work is timed."""

    ready = True

    def __init__(self) -> None:
        self.batch: list[bytes] = []
        self.owners: list[object] = []

    def schedule(self) -> None:
        self.batch.clear()
        self.owners.clear()


def _started(route: Route) -> tuple[StreamSession, StreamInfo]:
    session = StreamSession(tables=lambda: RoutingTable(routes=(route,)), config=SessionConfig())
    start = Start(
        stream_id="s", call_id="c", account_id="a", tracks=("inbound", "outbound"), codec=PCMU, custom_parameters={}
    )
    started = session.receive(start, 0.0)[0]
    assert isinstance(started, Started)
    return session, started.info


def path_costs(frames: int = 20000) -> dict[str, float]:
    """Microseconds per frame of ``session.media`` + the frame sink + the outbox, per kind of route."""
    l16 = Transform(sample_rate=16000)
    routes = {
        "plain route": Route(name="plain"),
        "spec.transform L16/16000": Route(name="asr", transform=l16),
        "original + L16/16000 copy": Route(name="copy", copies=(Copy(subject="asr.{call_id}.{track}", transform=l16),)),
    }
    payloads = _frames(PCMU, 50)
    events = [
        Media(track=("inbound", "outbound")[i & 1], payload=payloads[i % 50], timestamp=(i >> 1) * 20)
        for i in range(frames)
    ]
    costs: dict[str, float] = {}
    for name, route in routes.items():

        def run(route: Route = route) -> int:
            session, info = _started(route)
            link = _DiscardingLink()
            outbox: Outbox
            if info.copies:
                outbox = FanoutOutbox(link, subject_sets(info), capacity=100, max_events=10)  # type: ignore[arg-type]
            else:
                templates = [FrameTemplate(s, info.frame_headers) for s in info.audio_subjects]
                outbox = Outbox(link, templates, capacity=100, max_events=10)  # type: ignore[arg-type]
            sink, media = frame_sink(info, outbox), session.media
            for event in events:
                stats = media(event)
                sink(stats.index, stats.seq, stats.ts, event.payload)
            return frames

        costs[name] = _best_per_item(run) * 1e6
    return costs


def main() -> None:
    print("transform per 20 ms frame (us), source -> target:")
    for (source, target), cost in transform_costs().items():
        print(f"  {source:>10} -> {target:<10} {cost:7.2f}")
    print("shell per-frame path after the dialect (session + frame sink + outbox, link discards):")
    costs = path_costs()
    plain = costs["plain route"]
    for name, cost in costs.items():
        print(f"  {name:<28} {cost:6.2f} us/frame  ({cost / plain:4.1f}x the plain route)")


if __name__ == "__main__":
    main()
