"""Streaming resamplers compared on what route transforms need: quality, whole frames, latency, speed.

Usage: ``python -m tests.bench.resamplers``. soxr and numpy are dependencies of the project; the
other candidates are measured when importable, e.g. after
``pip install --target DIR samplerate scipy`` and ``PYTHONPATH=DIR``.

Every candidate is fed 20 ms frames, as the gateway feeds it, at every rate pair a transform
uses, and measured on:

* THD+N: a tone at 2, 10, 25 and 40 % of the lower rate, least-squares fitted at its frequency
  (amplitude, phase, DC free); everything else in the output (distortion, noise, images) against
  the tone, in dB. The worst over pairs and tones.
* passband: the gain error of a tone at 45 % of the lower rate (3.6 kHz for 8 kHz audio).
* aliasing: what comes out of a tone 15 % above the target's Nyquist frequency when
  downsampling, in dB against the input (ideal: nothing).
* frames: how many of the first 50 frames give no output at all (a burst-wise resampler cannot
  be published frame by frame), and its latency: how late a click comes out, in ms (what it
  holds back, plus any delay of the click within what it gives).
* speed: microseconds per 20 ms frame for 8->16, 8->48, 48->16 and 24->16 kHz.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float32]
Chunk = Callable[[Floats], Floats]
Factory = Callable[[int, int], Chunk]

PAIRS = [
    (8000, 16000),
    (8000, 24000),
    (8000, 48000),
    (16000, 8000),
    (16000, 24000),
    (16000, 48000),
    (24000, 16000),
    (48000, 16000),
    (24000, 8000),
    (48000, 8000),
]
SPEED_PAIRS = [(8000, 16000), (8000, 48000), (48000, 16000), (24000, 16000)]


def _soxr(vr: bool) -> Factory:
    import soxr

    def make(a: int, b: int) -> Chunk:
        stream = soxr.ResampleStream(a, b, 1, dtype="float32", quality="HQ", vr=vr)
        return stream.resample_chunk  # type: ignore[no-any-return]

    return make


def _samplerate(kind: str) -> Factory:
    import samplerate

    def make(a: int, b: int) -> Chunk:
        resampler = samplerate.Resampler(kind, channels=1)
        return lambda x: resampler.process(x, b / a)

    return make


def _scipy_poly() -> Factory:
    """scipy's ``resample_poly`` filter (Kaiser, beta 5), streamed with ``lfilter`` and its state."""
    from scipy import signal

    def make(a: int, b: int) -> Chunk:
        g = math.gcd(a, b)
        up, down = b // g, a // g
        half = 10 * max(up, down)
        taps = signal.firwin(2 * half + 1, 1.0 / max(up, down), window=("kaiser", 5.0)) * up
        state = {"zi": np.zeros(len(taps) - 1), "phase": 0}

        def run(x: Floats) -> Floats:
            stuffed = np.zeros(len(x) * up)
            stuffed[::up] = x
            y, state["zi"] = signal.lfilter(taps, 1.0, stuffed, zi=state["zi"])
            phase = int(state["phase"])
            state["phase"] = (phase - len(stuffed)) % down
            return y[phase::down].astype(np.float32)  # type: ignore[no-any-return]

        return run

    return make


def candidates() -> dict[str, Factory]:
    found: dict[str, Factory] = {"soxr HQ (fixed rate)": _soxr(False), "soxr vr (chosen)": _soxr(True)}
    optional: list[tuple[str, Callable[[], Factory]]] = [
        ("libsamplerate sinc_fastest", lambda: _samplerate("sinc_fastest")),
        ("libsamplerate sinc_medium", lambda: _samplerate("sinc_medium")),
        ("libsamplerate sinc_best", lambda: _samplerate("sinc_best")),
        ("scipy resample_poly+lfilter", _scipy_poly),
    ]
    for name, factory in optional:
        try:
            found[name] = factory()
        except ImportError:
            print(f"({name}: not installed, skipped)")
    return found


def _stream(make: Factory, a: int, b: int, x: Floats) -> tuple[Floats, list[int]]:
    chunk, n = make(a, b), a // 50
    outs = [chunk(x[i : i + n]) for i in range(0, len(x), n)]
    return np.concatenate(outs), [len(o) for o in outs]


def _tone(rate: int, frequency: float, seconds: float = 2.0) -> Floats:
    return (0.5 * np.sin(2 * np.pi * frequency * np.arange(int(rate * seconds)) / rate)).astype(np.float32)


def _fit(y: Floats, frequency: float, rate: int) -> tuple[float, float]:
    """(amplitude of the tone, rms of everything else), over the settled middle of the output."""
    mid = y[rate // 5 : -rate // 5].astype(np.float64)
    t = np.arange(len(mid)) / rate
    basis = np.stack([np.sin(2 * np.pi * frequency * t), np.cos(2 * np.pi * frequency * t), np.ones_like(t)], 1)
    coef, *_ = np.linalg.lstsq(basis, mid, rcond=None)
    residual = mid - basis @ coef
    return math.hypot(coef[0], coef[1]), float(np.sqrt(np.mean(residual**2)))


def _latency_ms(make: Factory, a: int, b: int) -> float:
    """When a band-limited click at 0.5 s comes out, against when it went in, in ms."""
    low = min(a, b)
    click = (0.5 * np.sinc((np.arange(a) - a // 2) * 0.8 * low / a)).astype(np.float32)
    y, counts = _stream(make, a, b, click)
    held = len(counts) * b // 50 - sum(counts)
    return (int(np.argmax(np.abs(y))) + held - (a // 2) * b / a) * 1000 / b


def _db(ratio: float) -> float:
    return 20 * math.log10(max(ratio, 1e-12))


def measure(make: Factory) -> dict[str, float]:
    thdn = passband = aliasing = -math.inf
    empty = latency_ms = 0.0
    for a, b in PAIRS:
        low = min(a, b)
        for share in (0.02, 0.1, 0.25, 0.4):
            y, _ = _stream(make, a, b, _tone(a, share * low))
            amplitude, rest = _fit(y, share * low, b)
            thdn = max(thdn, _db(rest / (amplitude / math.sqrt(2))))
        y, counts = _stream(make, a, b, _tone(a, 0.45 * low))
        passband = max(passband, abs(_db(_fit(y, 0.45 * low, b)[0] / 0.5)))
        empty = max(empty, sum(1 for c in counts[:50] if c == 0))
        latency_ms = max(latency_ms, _latency_ms(make, a, b))
        if b < a:
            y, _ = _stream(make, a, b, _tone(a, 1.15 * b / 2))
            mid = y[b // 5 : -b // 5].astype(np.float64)
            aliasing = max(aliasing, _db(float(np.sqrt(np.mean(mid**2))) / (0.5 / math.sqrt(2))))
    return {"thdn_db": thdn, "passband_db": passband, "aliasing_db": aliasing, "empty": empty, "latency_ms": latency_ms}


def speed(make: Factory, a: int, b: int, frames: int = 2000) -> float:
    chunk = make(a, b)
    x = _tone(a, 1000.0, 0.02)
    for _ in range(50):
        chunk(x)
    best = math.inf
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(frames):
            chunk(x)
        best = min(best, (time.perf_counter() - t0) / frames)
    return best * 1e6


def main() -> None:
    head = "candidate                       THD+N  passband  aliasing  empty  latency   us/frame " + " ".join(
        f"{a // 1000}>{b // 1000}k" for a, b in SPEED_PAIRS
    )
    print(head)
    print("                                worst  err @.45   worst   of 50   ms")
    for name, make in candidates().items():
        q = measure(make)
        speeds = " ".join(f"{speed(make, a, b):6.1f}" for a, b in SPEED_PAIRS)
        print(
            f"{name:<30} {q['thdn_db']:6.1f} {q['passband_db']:7.2f} {q['aliasing_db']:9.1f} {q['empty']:6.0f} "
            f"{q['latency_ms']:7.1f}   {speeds}"
        )


if __name__ == "__main__":
    main()
