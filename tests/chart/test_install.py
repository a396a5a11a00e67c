"""`helm install`, `upgrade` and `uninstall` of the chart against the emulated API server.

Never `--wait`: nothing starts Pods here. What a real cluster adds (Pods, probes, RBAC
sufficiency, the image) is out of reach on this machine; the objects and their contents are not.
"""

from __future__ import annotations

import json

from tests.chart.helm import CHART
from tests.k8s.fixtures import K8s

NS = "voice"


def objects(k8s: K8s, kind: str) -> list[dict[str, object]]:
    out = k8s.run_kubectl("get", kind, "-n", NS, "-o", "json").stdout
    items: list[dict[str, object]] = json.loads(out)["items"]
    return items


def test_helm_install_upgrade_uninstall(k8s: K8s) -> None:
    k8s.create_namespace(NS)
    k8s.run_helm("install", "sgw", str(CHART), "-n", NS, "--set", "nats.url=nats://nats.messaging:4222")
    releases = json.loads(k8s.run_helm("list", "-n", NS, "-o", "json").stdout)
    assert [(r["name"], r["status"]) for r in releases] == [("sgw", "deployed")]

    # the CRD from crds/ is registered: StreamRoutes can be applied and listed with their columns
    assert k8s.emulator.get_object(
        "apiextensions.k8s.io", "v1", "customresourcedefinitions", None, "streamroutes.streamgateway.io"
    )
    k8s.run_kubectl("apply", "-n", NS, "-f", str(CHART.parents[1] / "deploy" / "examples" / "catch-all.yaml"))
    table = k8s.run_kubectl("get", "sr", "-n", NS).stdout
    assert "PATTERN" in table and "SUBJECT" in table

    deployments = {d["metadata"]["name"]: d for d in objects(k8s, "deployments")}  # type: ignore[index]
    gateway = next(d for name, d in deployments.items() if "operator" not in name)
    operator = next(d for name, d in deployments.items() if "operator" in name)
    spec = gateway["spec"]["template"]["spec"]  # type: ignore[index]
    env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
    assert env["SGW_NATS__URL"] == "nats://nats.messaging:4222"
    assert env["SGW_ROUTING__SOURCE"] == "natskv"
    assert spec["terminationGracePeriodSeconds"] >= float(env["SGW_SHUTDOWN__DRAIN_SECONDS"])
    assert operator["spec"]["template"]["spec"]["containers"][0]["command"][0] == "streamgw-operator"  # type: ignore[index]
    assert {s["metadata"]["name"] for s in objects(k8s, "services")}  # type: ignore[index]

    k8s.run_helm(
        "upgrade",
        "sgw",
        str(CHART),
        "-n",
        NS,
        "--reuse-values",
        "--set",
        "gateway.drainSeconds=60",
        "--set",
        "gateway.replicas=3",
    )
    deployments = {d["metadata"]["name"]: d for d in objects(k8s, "deployments")}  # type: ignore[index]
    gateway = next(d for name, d in deployments.items() if "operator" not in name)
    assert gateway["spec"]["replicas"] == 3  # type: ignore[index]
    env = {e["name"]: e.get("value") for e in gateway["spec"]["template"]["spec"]["containers"][0]["env"]}  # type: ignore[index]
    assert env["SGW_SHUTDOWN__DRAIN_SECONDS"] in ("60", "60.0")
    history = json.loads(k8s.run_helm("history", "sgw", "-n", NS, "-o", "json").stdout)
    assert [h["revision"] for h in history] == [1, 2]

    bad = k8s.run_helm(
        "upgrade", "sgw", str(CHART), "-n", NS, "--reuse-values", "--set", "gateway.replicas=two", check=False
    )
    assert bad.returncode != 0  # values.schema.json is enforced on upgrade too

    k8s.run_helm("uninstall", "sgw", "-n", NS)
    assert objects(k8s, "deployments") == []
    assert json.loads(k8s.run_helm("list", "-n", NS, "-o", "json").stdout) == []
