"""``python -m bench --smoke`` end to end, so the benchmark harness cannot rot.

It runs the real thing (nats-server, the gateway, the naive and lean bridges, load generator and
verifier, all on free ports) in a subprocess of its own process group, bounded in time, and checks
that it succeeded, printed its table, wrote its JSON and chart, and that for every target every frame
offered in every phase arrived exactly once (``--transform 16000``: the route with an L16 copy
too), and that each cut gateway of ``--layers`` was offered the same load and delivered none of
it (the cut took effect). Speed is not asserted: the figures are noise here.
Whatever happens, the whole process group is stopped afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 180


def _stop_group(proc: subprocess.Popen[str]) -> None:
    """SIGTERM to the benchmark's process group (the runner cleans up), then SIGKILL to leftovers
    (the group outlives its leader while any member lives, so its id cannot have been reused)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def test_bench_smoke_delivers_every_frame_exactly_once(tmp_path: Path) -> None:
    png = tmp_path / "out" / "bench.png"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench", "--smoke", "--lean", "--transform", "16000", "--layers", "--png", str(png)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=TIMEOUT)
    finally:
        _stop_group(proc)
    assert proc.returncode == 0, output
    assert "figure (median of 1)" in output, output
    assert "gateway/naive" in output and "gateway/lean" in output, output
    assert png.is_file()
    result = json.loads(png.with_suffix(".json").read_text())
    assert set(result["runs"]) == {"gateway", "naive", "lean"}
    for name, runs in result["runs"].items():
        phases = [*runs["max"], *(p for reps in runs["realtime"].values() for p in reps)]
        assert len(phases) == 2, (name, phases)
        for phase in phases:
            assert phase["offered"] > 0, (name, phase)
            assert phase["delivered"] == phase["offered"], (name, phase)
            assert phase["missing"] == 0, (name, phase)
            assert phase["duplicates"] == 0, (name, phase)
            assert phase["unexpected"] == 0, (name, phase)
            assert phase["exactly_once"], (name, phase)
        assert result["summary"][name]["exactly_once"]["all"], name
        assert len(runs["idle"]) == 1, name
        assert runs["idle"][0]["closed_by_server_early"] == 0, name
    # --transform: a route with an L16/16000 copy, measured next to the plain one; its originals
    # are delivered exactly once too (the copies go to a subject nobody subscribes).
    (transformed,) = result["transform"]
    assert "route with an L16/16000 copy vs plain route" in output, output
    for phase in (transformed["realtime"], transformed["max"]):
        assert phase["offered"] > 0 and phase["exactly_once"], phase
    assert transformed["plain"]["max"] == result["runs"]["gateway"]["max"][0]
    # --layers: the gateway cut after each layer carried the first call count and delivered nothing
    # (frames stop at the cut), next to the whole gateway's phase of the same repeat.
    (layered,) = result["layers"]
    assert list(layered["cuts"]) == ["read", "decode", "session", "outbox"], layered
    for cut, phase in layered["cuts"].items():
        assert phase["offered"] == layered["whole"]["offered"] > 0, (cut, phase)
        assert phase["delivered"] == 0 and phase["duplicates"] == 0, (cut, phase)
        assert phase["cpu_s"] > 0, (cut, phase)
    assert layered["whole"] == result["runs"]["gateway"]["realtime"]["20"][0]
    assert set(result["summary"]["layers"]) == {"read", "decode", "session", "outbox", "link", "calls"}
    assert "layers, gateway at 20 calls" in output, output
