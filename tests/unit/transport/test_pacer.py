"""The back-channel pacer on a real event loop: order, one paced frame per interval, clears, bound.

No assertion depends on how fast the machine is: a loaded machine sends later, never earlier, so
the checks are on order, counts and lower bounds (a paced frame never goes before its deadline).
"""

from __future__ import annotations

import asyncio
import time

from gateway.protocol.dialects.base import Outgoing
from gateway.transport.pacer import Pacer
from tests.helpers import eventually

STEP_MS = 5.0
CLOCK_RESOLUTION = time.get_clock_info("monotonic").resolution
"""asyncio runs a timer up to this much before its deadline (it rounds to the clock's resolution)."""


class Wire:
    """The provider side: what the pacer sent, and when (loop time)."""

    def __init__(self) -> None:
        self.frames: list[Outgoing] = []
        self.times: list[float] = []
        self.open = True

    def send(self, frame: Outgoing) -> bool:
        if not self.open:
            return False
        self.frames.append(frame)
        self.times.append(asyncio.get_running_loop().time())
        return True


def audio(n: int, step: float = STEP_MS) -> Outgoing:
    return Outgoing(n.to_bytes(2, "big") * 160, binary=True, paced_ms=step)


def text(label: str) -> Outgoing:
    return Outgoing(label.encode())


async def test_an_unpaced_frame_with_nothing_waiting_goes_at_once() -> None:
    wire = Wire()
    pacer = Pacer(wire.send)
    assert pacer.put(text("notify"))
    assert wire.frames == [text("notify")] and len(pacer) == 0


async def test_paced_frames_go_one_per_interval_in_order_never_early() -> None:
    wire = Wire()
    pacer = Pacer(wire.send)
    loop = asyncio.get_running_loop()
    start = loop.time()
    frames = [audio(n) for n in range(12)]
    for frame in frames:
        assert pacer.put(frame)
    assert wire.frames == frames[:1]  # the first at once, the rest wait their turn
    assert len(pacer) == 11
    await eventually(lambda: len(wire.frames) == 12, timeout=10, interval=0.001, what="all frames sent")
    assert wire.frames == frames
    assert len(pacer) == 0
    resolution = CLOCK_RESOLUTION
    for n, sent_at in enumerate(wire.times):
        assert sent_at - start >= n * STEP_MS / 1000 - resolution, (n, sent_at - start)


async def test_unpaced_frames_wait_behind_the_paced_ones_before_them() -> None:
    wire = Wire()
    pacer = Pacer(wire.send)
    order = [audio(0), audio(1), text("mark-1"), audio(2), text("mark-2"), text("mark-3")]
    for frame in order:
        pacer.put(frame)
    assert wire.frames == order[:1]
    await eventually(lambda: len(wire.frames) == len(order), timeout=10, interval=0.001, what="all frames sent")
    assert wire.frames == order


async def test_a_frame_after_the_queue_drained_still_waits_for_the_interval() -> None:
    wire = Wire()
    pacer = Pacer(wire.send)
    loop = asyncio.get_running_loop()
    # Read the clock before the first put: the pacer starts its interval at that put, so a time read
    # after it can be a few microseconds late and make a correct send look early.
    before = loop.time()
    pacer.put(audio(0, step=20))
    pacer.put(audio(1, step=20))  # the queue holds one; its deadline is 20 ms after the first
    await eventually(lambda: len(wire.frames) == 2, timeout=10, interval=0.001, what="second frame")
    assert wire.times[1] - before >= 0.020 - CLOCK_RESOLUTION


async def test_clear_drops_what_waits_and_goes_first() -> None:
    wire = Wire()
    pacer = Pacer(wire.send)
    for n in range(20):
        pacer.put(audio(n))
    clear = Outgoing(b'{"action":"clear"}', clears=True)
    assert pacer.put(clear)
    assert wire.frames == [audio(0), clear]
    assert len(pacer) == 0
    after = [audio(100), text("mark-after")]
    for frame in after:
        pacer.put(frame)
    await eventually(lambda: len(wire.frames) == 4, timeout=10, interval=0.001, what="frames after the clear")
    assert wire.frames == [audio(0), clear, *after]
    assert pacer.dropped == 0  # cleared frames are the consumer's choice, not drops


async def test_the_bound_drops_the_oldest_and_counts_them() -> None:
    wire = Wire()
    pacer = Pacer(wire.send, max_frames=3)
    frames = [audio(n, step=1) for n in range(10)]
    for frame in frames:
        pacer.put(frame)
    assert pacer.dropped == 10 - 1 - 3  # one sent at once, three kept
    await eventually(lambda: len(wire.frames) == 4, timeout=10, interval=0.001, what="kept frames sent")
    assert wire.frames == [frames[0], *frames[-3:]]
    assert len(frames) == len(wire.frames) + pacer.dropped


async def test_a_closed_stream_empties_the_queue() -> None:
    wire = Wire()
    pacer = Pacer(wire.send)
    for n in range(5):
        pacer.put(audio(n, step=1))
    wire.open = False
    await eventually(lambda: len(pacer) == 0, timeout=10, interval=0.001, what="queue emptied")
    assert wire.frames == [audio(0, step=1)]
    assert not pacer.put(text("late"))  # nothing waits, so it is tried at once: the stream is gone


async def test_stop_cancels_the_timer() -> None:
    wire = Wire()
    pacer = Pacer(wire.send)
    loop = asyncio.get_running_loop()
    for n in range(3):
        pacer.put(audio(n, step=1))
    pacer.stop()
    assert len(pacer) == 0
    assert pacer.put(text("after-stop"))  # no timer pending any more: it goes at once
    assert wire.frames == [audio(0, step=1), text("after-stop")]
    # Timers run in deadline order: once this later one has run, the stopped one would have too.
    later = loop.create_future()
    loop.call_later(0.01, later.set_result, None)
    await later
    assert wire.frames == [audio(0, step=1), text("after-stop")]
