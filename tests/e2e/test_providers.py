"""Every provider, for real: ``streamgw serve`` as a process (its embedded nats-server, a routes file
with Secrets, ``/status`` credentials) and the simulator speaking each provider's own wire format.

Per provider: every frame arrives once, in order, on ``audio.{call_id}.{track}`` with the right
payload and headers (``Sgw-Seq``, ``Sgw-Ts``, ``Sgw-Codec``, ``Sgw-Stream-Id``), ``started.provider``
is the provider, DTMF becomes ``dtmf`` events, and ``streamgw tap`` writes WAVs that decode to what
was sent; the route key travels in the provider's own custom parameters; the stream credential the
provider can send is accepted and its absence or a wrong one refused; the provider's status
callbacks, signed as it signs them, are accepted and republished, and refused unsigned; and a
playback round trip: a consumer publishes audio and a mark on ``started.playback_subject``, the
simulated provider plays the audio in real time and echoes the mark its own way, and a ``mark``
event with the consumer's name comes back (Bandwidth has no mark: its audio is checked). The
``streamgw simulate --provider NAME`` command line runs against the same gateway.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nacl.signing
import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from gateway.audio import parse_codec, read_wav
from gateway.tools.providers import PROVIDERS
from gateway.tools.simulate import CallReport, SimulateOptions, simulate
from gateway.tools.tap import TapOptions, tap

REPO = Path(__file__).parents[2]
TIMEOUT = 30.0
NAMES = list(PROVIDERS)

BEARER = "bearer-" + "b" * 24
BASIC_USER, BASIC_PASSWORD = "stream-user", "basic-pa55-" + "p" * 12
TWILIO_TOKEN = "twilio-auth-token-" + "t" * 14
WRONG = "wrong-credential-" + "w" * 16
STATUS_TOKEN = "status-bearer-" + "s" * 16
STATUS_USER, STATUS_PASSWORD = "bandwidth-events", "events-pa55-" + "e" * 10
SIGNALWIRE_KEY = "PSK_" + "k" * 28
PLIVO_TOKEN = "plivo-auth-token-" + "a" * 12
TELNYX_SEED = bytes(range(1, 33))

ROUTES = """
apiVersion: streamgateway.io/v1alpha1
kind: StreamRoute
metadata: {name: open}
spec:
  match: {controlId: "open-*"}
  target: {subject: "audio.{call_id}.{track}"}
  playback: {subject: "play.{call_id}"}
---
apiVersion: streamgateway.io/v1alpha1
kind: StreamRoute
metadata: {name: bearer}
spec:
  match: {controlId: "bearer-*"}
  auth: {bearerTokenSecretRef: {name: bearer}}
  target: {subject: "audio.{call_id}.{track}"}
---
apiVersion: streamgateway.io/v1alpha1
kind: StreamRoute
metadata: {name: basic}
spec:
  match: {controlId: "basic-*"}
  auth: {basicAuthSecretRef: {name: basic}}
  target: {subject: "audio.{call_id}.{track}"}
---
apiVersion: streamgateway.io/v1alpha1
kind: StreamRoute
metadata: {name: signed}
spec:
  match: {controlId: "signed-*"}
  auth: {twilioSignature: {authTokenSecretRef: {name: twilio, key: authToken}}}
  target: {subject: "audio.{call_id}.{track}"}
"""

# What each provider streams in these tests: its tracks (or jambonz's mix), a codec it offers (between
# them every rate the tap must decode), whether its end is a ``stop`` or just the close, and the
# credential it can send on the upgrade.
SHAPES: dict[str, dict[str, Any]] = {
    "signalwire": {"track": "both", "codec": "L16@24000"},
    "twilio": {"track": "both", "codec": "PCMU"},
    "telnyx": {"track": "both", "codec": "PCMA"},
    "vonage": {"codec": "L16@16000"},
    "plivo": {"track": "both", "codec": "L16@16000"},
    "exotel": {"track": "both", "codec": "L16@8000"},
    "jambonz": {"mix_type": "stereo", "codec": "L16@48000"},
    "bandwidth": {"track": "both", "codec": "PCMU"},
}
ENDS_WITH_STOP = {"signalwire", "twilio", "telnyx", "exotel", "bandwidth"}
CREDENTIAL: dict[str, tuple[str, dict[str, str], dict[str, str]]] = {
    # provider: (route prefix, options that carry the right credential, the same with a wrong one)
    "signalwire": ("bearer", {"token": BEARER}, {"token": WRONG}),
    "twilio": ("signed", {"twilio_auth_token": TWILIO_TOKEN}, {"twilio_auth_token": WRONG}),
    "telnyx": ("bearer", {"token": BEARER}, {"token": WRONG}),
    "vonage": ("bearer", {"token": BEARER}, {"token": WRONG}),
    "exotel": ("basic", {"basic": f"{BASIC_USER}:{BASIC_PASSWORD}"}, {"basic": f"{BASIC_USER}:{WRONG}"}),
    "jambonz": ("basic", {"basic": f"{BASIC_USER}:{BASIC_PASSWORD}"}, {"basic": f"{BASIC_USER}:{WRONG}"}),
    "bandwidth": ("basic", {"basic": f"{BASIC_USER}:{BASIC_PASSWORD}"}, {"basic": f"{BASIC_USER}:{WRONG}"}),
}
"""Plivo sends no credential on the upgrade (docs/protocols.md section 5.1): its route relies on the path key."""
STATUS: dict[tuple[str, str | None], tuple[dict[str, str], tuple[str, str]]] = {
    # (provider, format): (how it authenticates, the states of its started / stopped callbacks)
    ("signalwire", "swml"): ({"status_signing_key": SIGNALWIRE_KEY}, ("streaming", "finished")),
    ("signalwire", "cxml"): ({"status_signing_key": SIGNALWIRE_KEY}, ("stream-started", "stream-stopped")),
    ("twilio", None): ({"twilio_auth_token": TWILIO_TOKEN}, ("stream-started", "stream-stopped")),
    ("telnyx", "json"): (
        {"status_signing_key": base64.b64encode(TELNYX_SEED).decode()},
        ("streaming.started", "streaming.stopped"),
    ),
    ("telnyx", "texml"): (
        {"status_signing_key": base64.b64encode(TELNYX_SEED).decode()},
        ("stream-started", "stream-stopped"),
    ),
    ("plivo", None): ({"status_signing_key": PLIVO_TOKEN}, ("StartStream", "StopStream")),
    ("bandwidth", None): (
        {"status_basic": f"{STATUS_USER}:{STATUS_PASSWORD}"},
        ("mediaStreamStarted", "mediaStreamStopped"),
    ),
}


# -- the gateway process ---------------------------------------------------------------------------


@dataclass
class Stack:
    ws_url: str
    nats_url: str
    output: list[str]

    @property
    def status_url(self) -> str:
        return self.ws_url.replace("ws://", "http://").removesuffix("/stream") + "/status"


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
    return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One ``streamgw serve`` (embedded NATS) for the module: every test uses its own call ids."""
    root = tmp_path_factory.mktemp("providers")
    routes = _write(root / "routes.yaml", ROUTES)
    secrets = root / "secrets"
    _write(secrets / "bearer" / "token", BEARER)
    _write(secrets / "basic" / "username", BASIC_USER)
    _write(secrets / "basic" / "password", BASIC_PASSWORD)
    _write(secrets / "twilio" / "authToken", TWILIO_TOKEN)
    telnyx_public = base64.b64encode(bytes(nacl.signing.SigningKey(TELNYX_SEED).verify_key)).decode()
    status = {
        "SGW_STATUS__ALLOW_UNAUTHENTICATED": "false",
        "SGW_STATUS__TWILIO_AUTH_TOKEN_FILE": _write(root / "status" / "twilio", TWILIO_TOKEN),
        "SGW_STATUS__SIGNALWIRE_SIGNING_KEY_FILE": _write(root / "status" / "signalwire", SIGNALWIRE_KEY),
        "SGW_STATUS__TELNYX_PUBLIC_KEY_FILE": _write(root / "status" / "telnyx", telnyx_public),
        "SGW_STATUS__PLIVO_AUTH_TOKEN_FILE": _write(root / "status" / "plivo", PLIVO_TOKEN),
        "SGW_STATUS__BEARER_TOKEN_FILE": _write(root / "status" / "bearer", STATUS_TOKEN),
        "SGW_STATUS__BASIC_USERNAME_FILE": _write(root / "status" / "user", STATUS_USER),
        "SGW_STATUS__BASIC_PASSWORD_FILE": _write(root / "status" / "password", STATUS_PASSWORD),
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("SGW_")}
    env.update({k: str(v) for k, v in status.items()})
    argv = [sys.executable, "-m", "gateway", "serve", "--host", "127.0.0.1", "--port", "0", "--internal-port", "0"]
    argv += ["--routes", str(routes), "--secrets-dir", str(secrets)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO)  # noqa: S603
    output: list[str] = []
    up = threading.Event()

    def drain() -> None:  # a full pipe would block the gateway: read for as long as it runs
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line)
            if "streamgw tap" in line:
                up.set()
        up.set()

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        assert up.wait(60), "streamgw serve printed no banner"
        text = "".join(output)
        ws = re.search(r"WebSocket : (\S+)", text)
        nats_url = re.search(r"NATS      : (\S+)", text)
        assert ws and nats_url and proc.poll() is None, text
        yield Stack(ws.group(1), nats_url.group(1), output)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        reader.join(10)


# -- what arrives on NATS --------------------------------------------------------------------------


@dataclass
class Bus:
    """Every audio message (by subject) and event (by call id) the gateway published."""

    nc: Client
    audio: dict[str, list[Msg]] = field(default_factory=lambda: defaultdict(list))
    events: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def on_audio(self, msg: Msg) -> None:
        self.audio[msg.subject].append(msg)
        self.changed.set()

    async def on_event(self, msg: Msg) -> None:
        self.events[msg.subject.removeprefix("events.")].append(json.loads(msg.data))
        self.changed.set()

    def of(self, call_id: str, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events[call_id] if e["type"] == kind]

    async def wait(self, predicate: Callable[[], bool], what: str) -> None:
        async def loop() -> None:
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

        try:
            await asyncio.wait_for(loop(), TIMEOUT)
        except TimeoutError:
            raise AssertionError(f"{what}: not within {TIMEOUT}s") from None

    async def stopped(self, call: CallReport) -> dict[str, Any]:
        await self.wait(lambda: bool(self.of(call.call_id, "stopped")), f"{call.provider}: stopped event")
        expected = {track: len(call.sent[track]) for track in call.tracks}
        await self.wait(
            lambda: all(len(self.audio[f"audio.{call.call_id}.{t}"]) >= n for t, n in expected.items()),
            f"{call.provider}: every frame",
        )
        return self.of(call.call_id, "stopped")[0]


@pytest.fixture
async def bus(stack: Stack) -> AsyncIterator[Bus]:
    nc = await nats.connect(stack.nats_url)
    bus = Bus(nc)
    await nc.subscribe("audio.>", cb=bus.on_audio)
    await nc.subscribe("events.>", cb=bus.on_event)
    # A message to our own inbox travels behind the SUBs: once it is back, they are registered.
    inbox = nc.new_inbox()
    probe = await nc.subscribe(inbox)
    await nc.publish(inbox, b"")
    await probe.next_msg(timeout=10)
    yield bus
    await nc.drain()


def key(prefix: str, name: str) -> str:
    return f"{prefix}-{name}-{uuid.uuid4().hex[:8]}"


def expected_ts(call: CallReport, track: str) -> list[int]:
    """``Sgw-Ts`` per frame: the provider's own media clock, Plivo's epoch times made relative to the
    first frame, and for providers without one (binary audio, Bandwidth) the time counted from the bytes."""
    lane = "inbound" if call.provider == "jambonz" else track
    frames = call.frames[lane]
    if call.provider in ("signalwire", "twilio", "telnyx", "exotel"):
        return [f.timestamp for f in frames if f.track == track]
    step = 100 if call.provider == "exotel" else 20
    return [step * n for n in range(len(call.sent[track]))]


# -- the tests ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
async def test_every_frame_arrives_once_with_its_headers_events_and_wav(
    stack: Stack, bus: Bus, name: str, tmp_path: Path
) -> None:
    ready = asyncio.Event()
    wav_dir = tmp_path / "wav"
    tapped = asyncio.create_task(
        tap(TapOptions(stack.nats_url, wav_dir=wav_dir, calls=1, quiet=True, duration=60), io.StringIO(), ready=ready)
    )
    await asyncio.wait_for(ready.wait(), TIMEOUT)
    dtmf = "" if name == "bandwidth" else "4#"
    opts = SimulateOptions(
        url=stack.ws_url,
        provider=name,  # type: ignore[arg-type]
        control_id=key("open", name),
        duration=0.6,
        realtime=False,
        params={"tenant": "acme"},
        dtmf=dtmf,
        signal="speech",
        **SHAPES[name],
    )
    (call,) = (await simulate(opts)).calls
    assert call.ok, (call.error, call.close_code, call.close_reason)
    stopped = await bus.stopped(call)

    (started,) = bus.of(call.call_id, "started")
    assert started["provider"] == name
    assert started["control_id"] == call.control_id
    assert started["route"] == "open"
    assert started["codec"] == call.codec == parse_codec(SHAPES[name]["codec"]).label
    # Telnyx's and Exotel's start name no tracks (each media frame does): inbound is announced.
    assert started["tracks"] == (["inbound"] if name in ("telnyx", "exotel") else list(call.tracks))
    assert started["custom_parameters"]["tenant"] == "acme"
    assert started["playback_subject"] == f"play.{call.call_id}"
    stream_id = started["stream_id"]
    assert stream_id == call.stream_id or (not call.stream_id and name in ("vonage", "jambonz"))
    for track in call.tracks:
        got = bus.audio[f"audio.{call.call_id}.{track}"]
        assert [m.data for m in got] == call.sent[track], f"{name}/{track}: payloads"
        headers = [m.headers or {} for m in got]
        assert [int(h["Sgw-Seq"]) for h in headers] == list(range(1, len(got) + 1))
        assert {h["Sgw-Codec"] for h in headers} == {call.codec}
        assert {h["Sgw-Stream-Id"] for h in headers} == {stream_id}
        assert [int(h["Sgw-Ts"]) for h in headers] == expected_ts(call, track), f"{name}/{track}: Sgw-Ts"
        stats = stopped["tracks"][track]
        assert (stats["frames"], stats["gaps"], stats["duplicates"], stats["dropped"]) == (len(got), 0, 0, 0)
    assert [e["digit"] for e in bus.of(call.call_id, "dtmf")] == list(dtmf)
    assert stopped["reason"] == ("stop" if name in ENDS_WITH_STOP else "closed")
    assert bus.events[call.call_id][-1]["type"] == "stopped"

    report = await asyncio.wait_for(tapped, TIMEOUT)
    seen = report.call(call.call_id)
    assert seen.provider == name
    codec = parse_codec(call.codec)
    for track in call.tracks:
        stats = seen.tracks[track]
        assert (stats.frames, stats.gaps, stats.duplicates, stats.undecodable) == (len(call.sent[track]), 0, 0, 0)
        assert stats.wav_path is not None
        wav = read_wav(stats.wav_path)
        assert (wav.sample_rate, wav.channels) == (codec.sample_rate, 1)
        assert list(wav.samples) == [s for payload in call.sent[track] for s in codec.decode(payload)]
        assert max(abs(s) for s in wav.samples) > 1000  # real audio, not silence


@pytest.mark.parametrize("name", NAMES)
async def test_the_route_key_travels_in_the_providers_custom_parameters(stack: Stack, bus: Bus, name: str) -> None:
    control_id = key("open", name)
    opts = SimulateOptions(
        url=stack.ws_url,
        provider=name,  # type: ignore[arg-type]
        control_id=control_id,
        control_id_in_path=False,
        duration=0.1,
        realtime=False,
    )
    (call,) = (await simulate(opts)).calls
    assert call.ok, call.error
    await bus.stopped(call)
    (started,) = bus.of(call.call_id, "started")
    assert (started["control_id"], started["route"], started["provider"]) == (control_id, "open", name)


@pytest.mark.parametrize("name", list(CREDENTIAL))
async def test_the_providers_credential_is_accepted_and_nothing_else(stack: Stack, bus: Bus, name: str) -> None:
    prefix, right, wrong = CREDENTIAL[name]
    base = {"url": stack.ws_url, "provider": name, "duration": 0.1, "realtime": False}
    (call,) = (await simulate(SimulateOptions(**base, control_id=key(prefix, name), **right))).calls  # type: ignore[arg-type]
    assert call.ok, call.error
    await bus.stopped(call)
    assert bus.of(call.call_id, "started")[0]["route"] == prefix
    refused: list[CallReport] = []
    for credential in ({}, wrong):
        (bad,) = (await simulate(SimulateOptions(**base, control_id=key(prefix, name), **credential))).calls  # type: ignore[arg-type]
        assert bad.error is not None and "HTTP 401" in bad.error, bad.error
        refused.append(bad)
    # A request through the same NATS connection: whatever the gateway published before it has arrived.
    await bus.nc.flush()
    assert all(not bus.events.get(bad.call_id) and not bus.audio.get(f"audio.{bad.call_id}.inbound") for bad in refused)


@pytest.mark.parametrize(("name", "variant"), list(STATUS))
async def test_status_callbacks_are_signed_accepted_and_republished(
    stack: Stack, bus: Bus, name: str, variant: str | None
) -> None:
    credential, states = STATUS[(name, variant)]
    opts = SimulateOptions(
        url=stack.ws_url,
        provider=name,  # type: ignore[arg-type]
        control_id=key("open", name),
        duration=0.1,
        realtime=False,
        status_url=stack.status_url,
        status_format=variant,
        **credential,
    )
    (call,) = (await simulate(opts)).calls
    assert call.ok, (call.error, call.status)
    assert call.status == [("started", 200), ("stopped", 200)]
    await bus.wait(lambda: len(bus.of(call.call_id, "status")) == 2, f"{name}: two status events")
    events = bus.of(call.call_id, "status")
    assert [e["state"] for e in events] == list(states)
    assert {e["provider"] for e in events} == {name}
    assert {e["control_id"] for e in events} == {call.control_id}

    unsigned = SimulateOptions(
        url=stack.ws_url,
        provider=name,  # type: ignore[arg-type]
        control_id=key("open", name),
        duration=0.02,
        realtime=False,
        status_url=stack.status_url,
        status_format=variant,
    )
    (refused,) = (await simulate(unsigned)).calls
    assert refused.status == [("started", 401), ("stopped", 401)]
    assert not refused.ok  # the command line exits 1 when a callback is refused
    await bus.stopped(refused)
    assert bus.of(refused.call_id, "status") == []


async def test_a_shared_status_token_works_for_any_provider(stack: Stack, bus: Bus) -> None:
    opts = SimulateOptions(
        url=stack.ws_url,
        provider="plivo",
        control_id=key("open", "plivo"),
        duration=0.02,
        realtime=False,
        status_url=stack.status_url,
        status_token=STATUS_TOKEN,
    )
    (call,) = (await simulate(opts)).calls
    assert call.status == [("started", 200), ("stopped", 200)]
    await bus.wait(lambda: len(bus.of(call.call_id, "status")) == 2, "plivo: two status events")


def make_reply(sample_rate: int) -> list[int]:
    """100 ms of a rising ramp: audio that is not silence in any codec."""
    count = sample_rate // 10
    return [(n * 37) % 20000 - 10000 for n in range(count)]


@pytest.mark.parametrize("name", NAMES)
async def test_playback_round_trip_consumer_to_provider_and_the_mark_back(stack: Stack, bus: Bus, name: str) -> None:
    control_id = key("open", name)
    sent: dict[str, bytes] = {}

    async def consumer(msg: Msg) -> None:
        event = json.loads(msg.data)
        if event["type"] != "started" or event["control_id"] != control_id:
            return
        codec = parse_codec(event["codec"])
        reply = codec.encode(make_reply(codec.sample_rate))
        sent["audio"] = reply
        await bus.nc.publish(event["playback_subject"], reply)
        await bus.nc.publish(event["playback_subject"], b'{"type":"mark","name":"reply-1"}')

    subscription = await bus.nc.subscribe("events.>", cb=consumer)
    shape = {k: v for k, v in SHAPES[name].items() if k == "mix_type"}
    wait = {"await_played": 1} if name == "bandwidth" else {"await_marks": 1}
    opts = SimulateOptions(
        url=stack.ws_url,
        provider=name,  # type: ignore[arg-type]
        control_id=control_id,
        duration=0.1,
        realtime=False,
        bidirectional=True,
        linger=TIMEOUT,
        **shape,
        **wait,  # type: ignore[arg-type]
    )
    try:
        (call,) = (await simulate(opts)).calls
    finally:
        await subscription.unsubscribe()
    assert call.ok, (call.error, call.refused)
    assert call.refused == []
    await bus.stopped(call)
    reply = sent["audio"]
    assert call.received_audio_bytes == len(reply)  # every byte the consumer sent reached the provider
    if name == "bandwidth":  # no mark on Bandwidth: the audio itself is the proof
        assert call.played_bytes > 0 and call.marks_echoed == []
        return
    # The provider echoed only once the audio before the mark had played, and the gateway turned
    # its echo (mark, websocket:notify, playedStream, playDone) back into the consumer's mark.
    assert call.played_bytes == len(reply)
    assert len(call.marks_echoed) == 1
    await bus.wait(lambda: bool(bus.of(call.call_id, "mark")), f"{name}: mark event")
    assert [e["name"] for e in bus.of(call.call_id, "mark")] == ["reply-1"]


async def test_telnyx_reordering_reaches_the_bus_in_order(stack: Stack, bus: Bus) -> None:
    opts = SimulateOptions(
        url=stack.ws_url,
        provider="telnyx",
        control_id=key("open", "telnyx"),
        duration=1.0,
        realtime=False,
        reorder=0.1,
        seed=3,
    )
    (call,) = (await simulate(opts)).calls
    assert call.ok and call.frames_reordered["inbound"] > 0
    stopped = await bus.stopped(call)
    frames = call.frames["inbound"]
    in_order = [f.payload for f in sorted(frames, key=lambda f: f.chunk)]
    assert [m.data for m in bus.audio[f"audio.{call.call_id}.inbound"]] == in_order
    assert stopped["tracks"]["inbound"]["reordered"] == call.frames_reordered["inbound"]
    assert stopped["tracks"]["inbound"]["gaps"] == 0


@pytest.mark.parametrize("name", NAMES)
async def test_streamgw_simulate_command_line(stack: Stack, bus: Bus, name: str) -> None:
    control_id = key("open", name)
    argv = [sys.executable, "-m", "gateway", "simulate", "--provider", name, "--url", stack.ws_url]
    argv += ["--control-id", control_id, "--duration", "0.2", "--max-rate"]
    if name != "bandwidth":
        argv += ["--dtmf", "5"]
    if name == "jambonz":
        argv += ["--mix-type", "stereo"]
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=REPO
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    text = out.decode()
    assert proc.returncode == 0, text
    sent = re.search(r"total: 1 calls, (\d+) frames sent", text)
    assert sent is not None, text

    def stopped_call() -> str | None:
        for call_id, events in bus.events.items():
            if any(e["type"] == "stopped" and e.get("control_id") == control_id for e in events):
                return call_id
        return None

    await bus.wait(lambda: stopped_call() is not None, f"{name}: stopped event")
    call_id = stopped_call() or ""
    (started,) = bus.of(call_id, "started")
    assert started["provider"] == name
    messages = int(sent.group(1)) * (2 if name == "jambonz" else 1)  # a stereo frame carries two tracks
    await bus.wait(
        lambda: sum(len(bus.audio[f"audio.{call_id}.{t}"]) for t in started["tracks"]) == messages,
        f"{name}: every frame the command line sent",
    )
    assert [e["digit"] for e in bus.of(call_id, "dtmf")] == ([] if name == "bandwidth" else ["5"])
