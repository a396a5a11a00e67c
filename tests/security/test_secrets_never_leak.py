"""Secrets never leave the gateway: not in logs (even at DEBUG), metrics, or NATS messages.

Secrets in play: the NATS password (in settings, and in the URL's userinfo), the routes'
credentials (a bearer token, a basic-auth password, a Twilio auth token, and the wrong ones and
the signatures clients present), and custom parameters whose names match
``observability.secret_parameters`` (their values must arrive as ``***``). A harmless parameter
value is checked to *appear*, so a scan that looks in the wrong place cannot pass by accident.
The in-process test also scans the route table (what the operator would publish on NATS KV).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from gateway.embedded_nats import EmbeddedNats
from gateway.tools.simulate import SimulateOptions, simulate
from sgw_routes.model import encode_table
from tests.authstream import basic, stream_with_credentials, twilio_signature
from tests.reliability.conftest import GatewayFactory, ProcessFactory, RecorderFactory
from tests.reliability.harness import Recorder, eventually
from tests.reliability.process import serve_env
from tests.reliability.test_floods_limits import TOKEN, write_secured_routes

NATS_PASSWORD = "np-" + "s3cr3t" * 3
SECRET_PARAMS = {"api_key": "ak-" + "k" * 16, "authToken": "at-" + "a" * 16, "db_password": "pw-" + "p" * 16}
VISIBLE = {"customer": "visible-customer-42"}
WRONG_TOKEN = "wrong-" + "w" * 16
BASIC_USER, BASIC_PASSWORD, WRONG_PASSWORD = "jambonz-user", "basic-pa55-" + "b" * 16, "wrong-pa55-" + "x" * 16
TWILIO_TOKEN = "twilio-auth-" + "t" * 20
WRONG_SIGNATURE = twilio_signature("wss://somewhere/stream/tw-2", "not-the-" + "n" * 20)
AUTH_ROUTES = """
---
apiVersion: streamgateway.io/v1alpha1
kind: StreamRoute
metadata: {name: jambonz}
spec:
  match: {controlId: "jb-*"}
  auth: {basicAuthSecretRef: {name: jambonz-auth}}
---
apiVersion: streamgateway.io/v1alpha1
kind: StreamRoute
metadata: {name: twilio}
spec:
  match: {controlId: "tw-*"}
  auth: {twilioSignature: {authTokenSecretRef: {name: twilio, key: authToken}}}
"""


def secrets() -> list[str]:
    return [
        NATS_PASSWORD,
        TOKEN,
        WRONG_TOKEN,
        BASIC_PASSWORD,
        WRONG_PASSWORD,
        TWILIO_TOKEN,
        WRONG_SIGNATURE,
        *SECRET_PARAMS.values(),
    ]


def write_routes_with_every_auth_kind(tmp_path: Path) -> tuple[Path, Path]:
    """The bearer route of the floods suite, plus a basic-auth and a Twilio-signature route."""
    routes, secrets_dir = write_secured_routes(tmp_path)
    routes.write_text(routes.read_text() + AUTH_ROUTES)
    for relative, value in {
        "jambonz-auth/username": BASIC_USER,
        "jambonz-auth/password": BASIC_PASSWORD,
        "twilio/authToken": TWILIO_TOKEN,
    }.items():
        (secrets_dir / relative).parent.mkdir(parents=True, exist_ok=True)
        (secrets_dir / relative).write_text(value + "\n")
    return routes, secrets_dir


def leaks(text: str) -> list[str]:
    return [s for s in secrets() if s in text]


class RecordEverything(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def text(self) -> str:
        # The message, and every attribute a formatter or a JSON log shipper could print.
        return "\n".join(f"{r.getMessage()} {r.__dict__!r} {self.format(r)}" for r in self.records)


@pytest.fixture
def debug_logs() -> Iterator[RecordEverything]:
    root = logging.getLogger()
    handler = RecordEverything()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


async def exercise(ws_url: str) -> None:
    """A good call with secret parameters, and clients presenting wrong tokens two ways."""
    params = {**SECRET_PARAMS, **VISIBLE}
    good = await simulate(
        SimulateOptions(
            url=ws_url, calls=1, duration=0.4, realtime=False, control_id="sec-1", token=TOKEN, params=params
        )
    )
    assert good.calls[0].close_code == 1000, good.calls[0]
    refused = await simulate(
        SimulateOptions(url=ws_url, calls=1, duration=0.2, realtime=False, control_id="sec-2", token=WRONG_TOKEN)
    )
    assert refused.calls[0].error is not None and "401" in refused.calls[0].error
    # Refused at start: a client that keeps writing after the 1008 may see its connection reset
    # before the close frame is read, so this one sends its whole call in one write.
    late = await stream_with_credentials(
        ws_url, "sec-late", {"Authorization": f"Bearer {WRONG_TOKEN}"}, key="sec-3", in_path=False, params=params
    )
    assert late.close_code == 1008, late
    # Basic and Twilio credentials, good and bad, at the upgrade (path key) and at start.
    host = ws_url.removeprefix("ws://").split("/")[0]
    good_basic = {"Authorization": basic(BASIC_USER, BASIC_PASSWORD)}
    bad_basic = {"Authorization": basic(BASIC_USER, WRONG_PASSWORD)}
    good_twilio = {"X-Twilio-Signature": twilio_signature(f"wss://{host}/stream/tw-1", TWILIO_TOKEN)}
    bad_twilio = {"X-Twilio-Signature": WRONG_SIGNATURE}
    runs = [
        ("jb-ok", good_basic, "jb-1", True, 1000),
        ("jb-bad", bad_basic, "jb-2", True, 401),
        ("jb-late", bad_basic, "jb-3", False, 1008),
        ("tw-ok", good_twilio, "tw-1", True, 1000),
        ("tw-bad", bad_twilio, "tw-2", True, 401),
        ("tw-late", bad_twilio, "tw-3", False, 1008),
    ]
    for call_id, headers, key, in_path, expected in runs:
        outcome = await stream_with_credentials(ws_url, call_id, headers, key=key, in_path=in_path, params=params)
        assert expected in (outcome.status, outcome.close_code), (call_id, outcome)


def nats_text(rec: Recorder) -> str:
    assert rec.raw is not None
    return "\n".join(f"{m.subject} {m.headers!r} {m.data!r}" for m in rec.raw)


async def test_secrets_stay_out_of_logs_metrics_and_events(
    gateway_factory: GatewayFactory,
    recorder_factory: RecorderFactory,
    debug_logs: RecordEverything,
    tmp_path: Path,
) -> None:
    routes, secrets_dir = write_routes_with_every_auth_kind(tmp_path)
    async with EmbeddedNats(extra_args=("--user", "gateway", "--pass", NATS_PASSWORD)) as broker:
        gw = await gateway_factory(
            broker.url,
            **{
                "routing.source": "file",
                "routing.file": routes,
                "routing.secrets_dir": secrets_dir,
                "nats.user": "gateway",
                "nats.password": NATS_PASSWORD,
            },
        )
        rec = await recorder_factory(broker.url, user="gateway", password=NATS_PASSWORD, keep_raw=True)
        await exercise(gw.ws_url)
        await eventually(lambda: len(rec.events) >= 1 and any(rec.stopped(c) for c in rec.events), 10, "events")
        await eventually(gw.idle, 10, "gateway idle")
        _, metrics = await gw.get("/metrics")
        assert gw.server.ctx is not None
        table = encode_table(gw.server.ctx.routes.snapshot()).decode()
        await gw.server.drain_and_stop()

    started = next(e for events in rec.events.values() for e in events if e["type"] == "started")
    bus = nats_text(rec)
    logs = debug_logs.text()
    figures = (
        f"secret scan: {len(debug_logs.records)} log records at DEBUG, {len(metrics)} bytes of /metrics, "
        f"{len(rec.raw or [])} NATS messages; started.custom_parameters={started['custom_parameters']}"
    )
    print(figures)
    assert started["custom_parameters"] == {**dict.fromkeys(SECRET_PARAMS, "***"), **VISIBLE}
    assert VISIBLE["customer"] in bus, "the scan must see event payloads"
    assert "stream started" in logs and "closing stream" in logs, "the scan must see the gateway's logs"
    assert leaks(logs) == [], f"in logs: {leaks(logs)}"
    assert leaks(metrics) == [], f"in /metrics: {leaks(metrics)}"
    assert leaks(bus) == [], f"on NATS: {leaks(bus)}"
    assert '"basic_sha256"' in table and '"twilio_key"' in table, "the scan must see the stored forms"
    assert leaks(table) == [] and BASIC_USER not in table, f"in the route table: {leaks(table)}"


async def test_a_real_process_at_debug_prints_no_secret(
    process_factory: ProcessFactory, recorder_factory: RecorderFactory, tmp_path: Path
) -> None:
    """``streamgw serve`` at DEBUG, with the NATS password inside the URL: stdout and stderr stay clean."""
    routes, secrets_dir = write_routes_with_every_auth_kind(tmp_path)
    async with EmbeddedNats(extra_args=("--user", "gateway", "--pass", NATS_PASSWORD)) as broker:
        url = f"nats://gateway:{NATS_PASSWORD}@127.0.0.1:{broker.port}"
        env = serve_env(
            url,
            ROUTING__SOURCE="file",
            ROUTING__FILE=str(routes),
            ROUTING__SECRETS_DIR=str(secrets_dir),
            OBSERVABILITY__LOG_LEVEL="DEBUG",
            OBSERVABILITY__LOG_FORMAT="json",
        )
        gp = await process_factory(env)
        rec = await recorder_factory(broker.url, user="gateway", password=NATS_PASSWORD, keep_raw=True)
        await exercise(gp.ws_url)
        async with aiohttp.ClientSession() as http, http.get(gp.internal_url + "/metrics") as resp:
            metrics = await resp.text()
        gp.send_signal(signal.SIGTERM)
        code = await gp.wait(30)
        await asyncio.sleep(0)
    output = gp.text()
    print(f"process at DEBUG: exit {code}, {len(output.splitlines())} lines of output scanned, /metrics scanned")
    assert code == 0
    assert "stream started" in output, "the scan must see the gateway's logs"
    assert leaks(output) == [], f"in the process output: {leaks(output)}"
    assert leaks(metrics) == [], f"in /metrics: {leaks(metrics)}"
    assert leaks(nats_text(rec)) == []
