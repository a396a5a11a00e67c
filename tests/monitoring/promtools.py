"""Real Prometheus and promtool for tests: find them, run a throwaway Prometheus on loopback, query it.

Reusable by any test that wants a live scrape (e.g. a gateway under simulated calls)::

    with PrometheusServer(prometheus_binary(), tmp_path, {"stream-gateway": ["127.0.0.1:9090"]}) as prom:
        prom.wait_for("up{job='stream-gateway'} == 1", timeout=15)
        rows = prom.query("sum(sgw_streams_active)")

The server listens on ``127.0.0.1`` on a free port, keeps its TSDB under the given directory,
scrapes every ``scrape_interval`` and is stopped (SIGTERM, then SIGKILL) on exit. Readiness is
polled on ``/-/ready`` within a deadline; every subprocess and HTTP call has a timeout.

:func:`require` makes a missing binary a hard failure when the ``CI`` environment variable is set
(CI installs the Debian ``prometheus`` package) and a skip with instructions otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import pytest
import yaml

INSTALL_HINT: Final = "install it with `apt-get install -y prometheus` (Debian/Ubuntu; gives prometheus and promtool)"
HTTP_TIMEOUT: Final = 5.0


class PrometheusError(RuntimeError):
    """Prometheus did not start, or answered a query with an error."""


def find_binary(name: str) -> Path | None:
    """``prometheus`` or ``promtool`` from PATH (the Debian package puts them in /usr/bin)."""
    found = shutil.which(name)
    return Path(found) if found else None


def require(name: str) -> Path:
    """The binary, or fail (CI set) / skip (locally) with a clear message."""
    path = find_binary(name)
    if path is not None:
        return path
    message = f"{name} not found on PATH: {INSTALL_HINT}"
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI is set: the monitoring tests must run)")
    pytest.skip(message)


def prometheus_binary() -> Path:
    return require("prometheus")


def promtool_binary() -> Path:
    return require("promtool")


def run_promtool(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run promtool; the caller checks ``returncode`` (failures carry stdout and stderr)."""
    return subprocess.run([str(promtool_binary()), *args], capture_output=True, text=True, timeout=timeout, check=False)


def free_port() -> int:
    """A port nothing listens on right now (bound once by the kernel's choice, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll ``condition`` until it holds; :class:`TimeoutError` naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


class PrometheusServer:
    """One Prometheus process with a generated config. Use as a context manager."""

    def __init__(
        self,
        binary: Path,
        workdir: Path,
        targets: Mapping[str, Sequence[str]],
        *,
        scrape_interval: str = "1s",
        scrape_self: bool = False,
        extra_args: Sequence[str] = (),
    ) -> None:
        """``targets`` maps a job name to ``host:port`` addresses scraped on ``/metrics``.
        ``scrape_self`` adds job ``prometheus`` scraping this server's own ``/metrics``."""
        self.binary = binary
        self.workdir = workdir
        self.targets = {job: list(addresses) for job, addresses in targets.items()}
        self.scrape_interval = scrape_interval
        self.scrape_self = scrape_self
        self.extra_args = list(extra_args)
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._log_path = workdir / "prometheus.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> dict[str, Any]:
        jobs = dict(self.targets)
        if self.scrape_self:
            jobs["prometheus"] = [f"127.0.0.1:{self.port}"]
        return {
            "global": {"scrape_interval": self.scrape_interval, "evaluation_interval": self.scrape_interval},
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": addresses}]} for job, addresses in jobs.items()
            ],
        }

    def start(self, timeout: float = 30.0, attempts: int = 3) -> None:
        """Start and wait for ``/-/ready``. A port taken between choosing and binding is retried."""
        for attempt in range(attempts):
            self.port = free_port()
            config_path = self.workdir / "prometheus.yml"
            config_path.write_text(yaml.safe_dump(self.config(), sort_keys=False))
            data = self.workdir / "data"
            data.mkdir(parents=True, exist_ok=True)
            with self._log_path.open("wb") as log:
                self._process = subprocess.Popen(
                    [
                        str(self.binary),
                        f"--config.file={config_path}",
                        f"--storage.tsdb.path={data}",
                        f"--web.listen-address=127.0.0.1:{self.port}",
                        "--storage.tsdb.retention.time=1h",
                        "--log.level=warn",
                        *self.extra_args,
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.workdir,
                )
            try:
                wait_until(self._ready, timeout, f"Prometheus on {self.url} to be ready")
                return
            except PrometheusError:
                self.stop()
                if "address already in use" not in self.log() or attempt == attempts - 1:
                    raise
            except TimeoutError as exc:
                self.stop()
                raise PrometheusError(f"{exc}\n{self.log()[-2000:]}") from None

    def _ready(self) -> bool:
        assert self._process is not None
        if self._process.poll() is not None:
            raise PrometheusError(f"prometheus exited with {self._process.returncode}:\n{self.log()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=HTTP_TIMEOUT) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def log(self) -> str:
        return self._log_path.read_text(errors="replace") if self._log_path.exists() else ""

    def stop(self, timeout: float = 10.0) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=timeout)

    def __enter__(self) -> PrometheusServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ---- HTTP API -----------------------------------------------------------------------------

    def api(self, path: str, params: Mapping[str, str]) -> dict[str, Any]:
        """GET ``/api/v1/<path>``; the decoded body, also for 4xx answers (``status: error``)."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT) as response:
                body: dict[str, Any] = json.loads(response.read())
        except urllib.error.HTTPError as err:
            body = json.loads(err.read() or b"{}")
            err.close()
        return body

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query; the ``result`` list, or :class:`PrometheusError` with Prometheus' reason."""
        body = self.api("query", {"query": expr})
        if body.get("status") != "success":
            raise PrometheusError(f"{expr!r}: {body.get('errorType')}: {body.get('error')}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def wait_for(
        self,
        expr: str,
        predicate: Callable[[list[dict[str, Any]]], bool] = bool,
        timeout: float = 15.0,
    ) -> list[dict[str, Any]]:
        """Poll ``expr`` until ``predicate(result)`` holds (default: a non-empty result)."""
        last: list[dict[str, Any]] = []

        def check() -> bool:
            nonlocal last
            last = self.query(expr)
            return predicate(last)

        wait_until(check, timeout, f"{expr!r} (last result {last!r})", interval=0.2)
        return last
