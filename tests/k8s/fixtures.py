"""Pytest plugin: the `k8s` fixture, an emulated cluster plus the real kubectl and helm.

Enable it with `pytest_plugins = ["tests.k8s.fixtures"]` in the root conftest. Each test gets
its own emulator (own thread, own loop, OS-picked port), a kubeconfig in `tmp_path`, and
per-test kubectl/helm cache and config directories, so discovery caches never leak between
tests. Options for the emulator come from `@pytest.mark.k8s_emulator(bookmark_interval=0.2)`.

A kopf operator under `KopfRunner` logs in with a fresh registry carrying the login handler::

    with KopfRunner(["run", "--standalone", "-n", "default", str(operator_file)],
                    registry=k8s.kopf_registry(), settings=kopf.OperatorSettings()):
        ...

(or register `k8s.kopf_login_handler()` with `@kopf.on.login(registry=...)` yourself).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from tests.k8s.emulator import RealisticKubernetesEmulator
from tests.k8s.kubetools import helm_path, kubectl_path
from tests.k8s.runner import EmulatorThread

MARKER = "k8s_emulator"
T = TypeVar("T")


class KubeCommandError(subprocess.CalledProcessError):
    """A kubectl/helm call failed; unlike its base class, the message shows the output."""

    def __str__(self) -> str:
        return f"{super().__str__()}\n--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"


@dataclasses.dataclass(frozen=True)
class HttpResult:
    status: int
    body: Any  # decoded JSON, or the text if the body is not JSON
    headers: Mapping[str, str]


@dataclasses.dataclass
class K8s:
    """What the `k8s` fixture yields."""

    url: str
    kubeconfig: Path
    emulator: RealisticKubernetesEmulator
    workdir: Path

    def env(self) -> dict[str, str]:
        """The environment kubectl/helm run with: this cluster only, caches in `workdir`."""
        env = {key: value for key, value in os.environ.items() if not key.startswith(("KUBE", "HELM_", "XDG_"))}
        env.update(
            HOME=str(self.workdir / "home"),
            KUBECONFIG=str(self.kubeconfig),
            KUBECACHEDIR=str(self.workdir / "kube-cache"),
            HELM_CACHE_HOME=str(self.workdir / "helm" / "cache"),
            HELM_CONFIG_HOME=str(self.workdir / "helm" / "config"),
            HELM_DATA_HOME=str(self.workdir / "helm" / "data"),
        )
        return env

    def run_kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return self._run([str(kubectl_path()), *args], input, check, timeout)

    def run_helm(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return self._run([str(helm_path()), *args], input, check, timeout)

    async def arun_kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """`run_kubectl` for async tests: runs in a worker thread, the test's loop stays free."""
        return await asyncio.to_thread(self.run_kubectl, *args, input=input, check=check, timeout=timeout)

    async def arun_helm(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(self.run_helm, *args, input=input, check=check, timeout=timeout)

    def popen_kubectl(self, *args: str) -> subprocess.Popen[str]:
        """Start kubectl without waiting (e.g. `wait`, `delete --wait`); the caller must
        `communicate(timeout=...)` or kill it."""
        return subprocess.Popen(
            [str(kubectl_path()), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env(),
            cwd=self.workdir,
        )

    def _run(
        self, command: Sequence[str], input: str | None, check: bool, timeout: float
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            command,
            input=input,
            capture_output=True,
            text=True,
            env=self.env(),
            cwd=self.workdir,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise KubeCommandError(result.returncode, command, result.stdout, result.stderr)
        return result

    def apply(self, source: Path | str | Mapping[str, Any]) -> list[dict[str, Any]]:
        """Create-or-replace manifests directly in the emulator (no kubectl; fast)."""
        if isinstance(source, Mapping):
            documents: list[Any] = [dict(source)]
        else:
            text = source.read_text() if isinstance(source, Path) else source
            documents = [doc for doc in yaml.safe_load_all(text) if doc]
        return [self.emulator.apply_manifest(doc) for doc in documents]

    def apply_crd(self, path: Path | str) -> list[dict[str, Any]]:
        """Register the CustomResourceDefinition(s) in a file; they are Established at once."""
        stored = self.apply(Path(path))
        for crd in stored:
            if crd.get("kind") != "CustomResourceDefinition":
                raise ValueError(f"{path} holds a {crd.get('kind')}, not only CRDs")
        return stored

    def create_namespace(self, name: str) -> dict[str, Any]:
        return self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})[0]

    def http(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
        timeout: float = 30,
    ) -> HttpResult:
        """A raw API call (path with query string); any status comes back, none raises."""
        data = body if isinstance(body, bytes) else None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method.upper())
        if data is not None:
            request.add_header("Content-Type", content_type)
        for key, value in (headers or {}).items():
            request.add_header(key, value)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status, raw, reply_headers = response.status, response.read(), response.headers
        except urllib.error.HTTPError as error:
            status, raw, reply_headers = error.code, error.read(), error.headers
        text = raw.decode("utf-8", errors="replace")
        try:
            decoded: Any = json.loads(text)
        except ValueError:
            decoded = text
        return HttpResult(status, decoded, dict(reply_headers.items()))

    def kopf_login_handler(self) -> Callable[..., Any]:
        """A `@kopf.on.login()` handler pointing kopf at this emulator."""
        import kopf

        url = self.url

        def login_to_emulator(**_: Any) -> kopf.ConnectionInfo:
            return kopf.ConnectionInfo(server=url, insecure=True, default_namespace="default")

        return login_to_emulator

    def kopf_registry(self) -> Any:
        """A fresh `kopf.OperatorRegistry` with only the login handler: pass it to
        `KopfRunner(..., registry=...)`; the operator's own handlers load into it."""
        import kopf

        registry = kopf.OperatorRegistry()
        kopf.on.login(registry=registry)(self.kopf_login_handler())
        return registry


def eventually(
    check: Callable[[], T | None | bool],
    *,
    timeout: float = 15.0,
    interval: float = 0.05,
    message: str = "the condition",
) -> T:
    """Poll `check` until it returns something truthy (returned), or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            raise AssertionError(f"{message} did not happen within {timeout}s")
        time.sleep(interval)


async def aeventually(
    check: Callable[[], T | None | bool],
    *,
    timeout: float = 15.0,
    interval: float = 0.05,
    message: str = "the condition",
) -> T:
    """`eventually` for async tests: polls without blocking the test's event loop."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            raise AssertionError(f"{message} did not happen within {timeout}s")
        await asyncio.sleep(interval)


def kubeconfig_text(url: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "emulator", "cluster": {"server": url}}],
            "users": [{"name": "tester", "user": {}}],
            "contexts": [
                {
                    "name": "emulator",
                    "context": {"cluster": "emulator", "user": "tester", "namespace": "default"},
                }
            ],
            "current-context": "emulator",
        }
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(**options): keyword options for the k8s fixture's RealisticKubernetesEmulator",
    )


@pytest.fixture
def k8s(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[K8s]:
    """An emulated Kubernetes API server for this test only (see the module docstring)."""
    options: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers(MARKER))):
        options.update(marker.kwargs)
    workdir = tmp_path / "k8s"
    (workdir / "home").mkdir(parents=True)
    with EmulatorThread(lambda: RealisticKubernetesEmulator(**options)) as server:
        kubeconfig = workdir / "kubeconfig"
        kubeconfig.write_text(kubeconfig_text(server.url))
        kubeconfig.chmod(0o600)
        yield K8s(url=server.url, kubeconfig=kubeconfig, emulator=server.emulator, workdir=workdir)
    if server.emulator.internal_errors:
        pytest.fail(f"the emulator itself failed (answered 500): {server.emulator.internal_errors!r}")
