"""The simulated provider's playback buffer: audio plays out, marks come back only once the audio
queued before them has played, a clear drops the rest and hands back the marks still waiting."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from gateway.tools.providers.playback import Playback

TIMEOUT = 10.0


class Recorder:
    def __init__(self) -> None:
        self.echoed: list[tuple[str, int]] = []
        self.changed = asyncio.Event()
        self.playback = Playback(self.echo)

    async def echo(self, name: str) -> None:
        # What had played when the provider echoed: the proof the mark waited for its audio.
        self.echoed.append((name, self.playback.played_bytes))
        self.changed.set()

    async def wait_echoes(self, count: int) -> None:
        async def loop() -> None:
            while len(self.echoed) < count:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(loop(), TIMEOUT)


@pytest.fixture
async def player() -> AsyncIterator[Recorder]:
    recorder = Recorder()
    task = asyncio.create_task(recorder.playback.run())
    yield recorder
    task.cancel()


async def test_a_mark_is_echoed_once_the_audio_before_it_has_played(player: Recorder) -> None:
    playback = player.playback
    playback.audio(480, 8.0)  # 60 ms of mu-law
    assert not playback.mark("after-60ms")
    playback.audio(160, 8.0)
    assert not playback.mark("after-80ms")
    await player.wait_echoes(2)
    assert player.echoed == [("after-60ms", 480), ("after-80ms", 640)]
    assert (playback.received_bytes, playback.played_bytes, playback.cleared_bytes) == (640, 640, 0)
    assert playback.idle


async def test_a_mark_with_nothing_queued_is_echoed_at_once(player: Recorder) -> None:
    assert player.playback.mark("now")  # the caller echoes it: nothing to wait for
    assert player.echoed == []


async def test_clear_drops_queued_audio_and_returns_the_waiting_marks(player: Recorder) -> None:
    playback = player.playback
    playback.audio(32_000, 16.0)  # two seconds of L16 at 8 kHz: still playing when cleared
    playback.mark("m1")
    playback.audio(320, 16.0)
    playback.mark("m2")
    assert playback.clear() == ["m1", "m2"]
    assert playback.clears == 1
    assert playback.played_bytes + playback.cleared_bytes == 32_320
    assert playback.cleared_bytes > 0
    assert playback.idle
    # After the clear, new audio plays from the start of the queue again.
    playback.audio(320, 16.0)
    playback.mark("m3")
    await player.wait_echoes(1)
    assert player.echoed[0][0] == "m3"
    assert player.echoed[0][1] == playback.played_bytes


async def test_audio_at_several_rates_plays_in_order(player: Recorder) -> None:
    playback = player.playback
    playback.audio(160, 8.0)  # 20 ms mu-law
    playback.audio(960, 48.0)  # 20 ms L16 at 24 kHz
    playback.mark("end")
    await player.wait_echoes(1)
    assert player.echoed == [("end", 1120)]
