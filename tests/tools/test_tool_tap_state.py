"""The tap's pure bookkeeping: Sgw-Seq ordering into WAV files, counters, completeness."""

from __future__ import annotations

from pathlib import Path

from gateway.audio import parse_codec, read_wav
from gateway.tools.tap_state import REORDER_WINDOW, SeqWavSink, StreamState, TrackState, format_table, safe_name

L16 = parse_codec("L16@16000")


def _frame(value: int) -> bytes:
    return L16.encode([value] * L16.samples_per_frame)


def test_sink_orders_by_seq_and_fills_holes(tmp_path: Path) -> None:
    sink = SeqWavSink(tmp_path / "a.wav", L16, 1)
    for seq in (2, 1, 4, 4, 1):
        sink.add(seq, L16, _frame(seq))
    sink.close()
    samples = read_wav(sink.path).samples
    per_frame = [samples[i] for i in range(0, len(samples), L16.samples_per_frame)]
    assert per_frame == [1, 2, 0, 4]
    assert sink.silence_frames == 1
    assert sink.late_frames == 1  # the second seq 1 came after its slot was written


def test_sink_gives_up_on_a_hole_after_the_reorder_window(tmp_path: Path) -> None:
    sink = SeqWavSink(tmp_path / "b.wav", L16, 1)
    for seq in range(2, REORDER_WINDOW + 3):
        sink.add(seq, L16, _frame(seq))
    # The window overflowed: seq 1 was declared lost, so its late arrival cannot be placed.
    assert sink.silence_frames == 1
    sink.add(1, L16, _frame(1))
    assert sink.late_frames == 1
    sink.close()
    sink.add(99, L16, _frame(99))
    assert sink.late_frames == 2
    assert sink.samples == (REORDER_WINDOW + 2) * L16.samples_per_frame


def test_track_counters() -> None:
    track = TrackState("inbound", expect_seq_from_one=True)
    for seq in (2, 3, 3, 6, 5):
        track.observe(seq, "PCMU/8000", b"\xff" * 160, latency_ms=10.0)
    assert (track.frames, track.duplicates, track.reordered) == (5, 1, 1)
    assert track.gaps == 2  # seq 1 and seq 4 never arrived
    assert track.latency_avg == 10.0
    assert track.codec == parse_codec("PCMU")
    report = track.report()
    assert (report.first_seq, report.last_seq, report.bytes) == (1, 6, 800)


def test_track_joined_late_counts_from_its_first_frame() -> None:
    track = TrackState("outbound", expect_seq_from_one=False)
    for seq in (100, 101, 103):
        track.observe(seq, None, b"", None)
    assert track.gaps == 1
    assert track.observe(None, None, b"", None) == 4  # no header: the arrival count


def test_audio_complete_follows_the_stopped_counts() -> None:
    stream = StreamState(stream_id="s", call_id="c")
    assert not stream.audio_complete()
    stream.stopped = {"tracks": {"inbound": {"frames": 2, "dropped": 1}}}
    assert not stream.audio_complete()
    stream.track("inbound").observe(1, None, b"", None)
    assert stream.audio_complete()
    stream.stopped = {"tracks": "nonsense"}
    assert not stream.audio_complete()


def test_table_and_names() -> None:
    stream = StreamState(stream_id="s", call_id="call-1")
    stream.track("inbound").observe(1, "PCMU/8000", b"\xff" * 160, None)
    table = format_table([stream], 1.0)
    assert "call-1" in table
    assert "PCMU/8000" in table
    assert "1.0" in table
    assert safe_name("../a b") == ".._a_b"
