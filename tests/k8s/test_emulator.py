"""The emulated API server against the real kubectl v1.35, helm v4 and an unmodified kopf.

Each test gets its own emulator (`k8s` fixture). The sample CRD (`Widget`) and chart live in
`tests/k8s/data/`; they exist only to prove the emulator, not the project's own manifests.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import aiohttp
import kmock
import kopf
import pytest
from kopf.testing import KopfRunner

from tests.k8s import protobuf, schemas, selectors, tables
from tests.k8s.fixtures import K8s, aeventually, eventually

DATA = Path(__file__).parent / "data"
CRD = DATA / "widgets-crd.yaml"
WIDGET = DATA / "widget.yaml"
CHART = DATA / "chart"
GVP = ("test.sgw.io", "v1alpha1", "widgets")
WIDGETS = "/apis/test.sgw.io/v1alpha1/namespaces/default/widgets"


def widget(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "test.sgw.io/v1alpha1",
        "kind": "Widget",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"color": "red", **spec},
    }


def watch(k8s: K8s, query: str) -> list[dict[str, Any]]:
    """A watch that the server ends itself (`timeoutSeconds` in the query); its events."""
    result = k8s.http("GET", f"{WIDGETS}?watch=true&{query}")
    assert result.status == 200, result.body
    text = result.body if isinstance(result.body, str) else json.dumps(result.body)
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_kubectl_apply_crd_and_cr_with_default_validation(k8s: K8s) -> None:
    assert "Server Version: v1.35" in k8s.run_kubectl("version").stdout
    k8s.run_kubectl("apply", "-f", str(CRD))
    k8s.run_kubectl("wait", "--for=condition=Established", "crd/widgets.test.sgw.io", "--timeout=10s")
    created = k8s.run_kubectl("apply", "-f", str(WIDGET))
    assert "widget.test.sgw.io/w1 created" in created.stdout

    stored = k8s.emulator.get_object(*GVP, "default", "w1")
    assert stored is not None
    meta = stored["metadata"]
    assert {"uid", "resourceVersion", "creationTimestamp"} <= meta.keys()
    assert meta["generation"] == 1
    assert stored["spec"] == {"color": "red", "label": "alpha", "size": 3}  # defaulted

    again = k8s.run_kubectl("apply", "-f", str(WIDGET))
    assert "unchanged" in again.stdout
    described = k8s.run_kubectl("describe", "widget", "w1").stdout
    assert "Name:         w1" in described
    assert "Color:  red" in described


def test_schema_violations_are_refused_with_clear_errors(k8s: K8s) -> None:
    k8s.apply_crd(CRD)
    bad = textwrap.dedent(
        """\
        apiVersion: test.sgw.io/v1alpha1
        kind: Widget
        metadata: {name: bad}
        spec: {color: purple, size: 99, label: "Not Valid", tags: [a, b, c, d]}
        """
    )
    invalid = k8s.run_kubectl("apply", "-f", "-", input=bad, check=False)
    assert invalid.returncode != 0
    assert 'The Widget "bad" is invalid' in invalid.stderr
    assert 'spec.color: Unsupported value: "purple"' in invalid.stderr
    assert "spec.size: Invalid value: 99" in invalid.stderr
    assert "spec.label: Invalid value" in invalid.stderr
    assert "spec.tags: Too many: 4" in invalid.stderr

    typo = bad.replace("color: purple, size: 99", "color: red, colour: red").replace(
        ', label: "Not Valid", tags: [a, b, c, d]', ""
    )
    # kubectl's default --validate=strict hands unknown fields to the server to refuse.
    unknown = k8s.run_kubectl("apply", "-f", "-", input=typo, check=False)
    assert unknown.returncode != 0
    assert 'strict decoding error: unknown field "spec.colour"' in unknown.stderr

    missing = k8s.run_kubectl("apply", "-f", "-", input=typo.replace("color: red, colour: red", "size: 2"), check=False)
    assert "spec.color: Required value" in missing.stderr
    assert k8s.emulator.list_objects(*GVP) == []


def test_get_shows_printer_columns_and_wait_sees_status_patch(k8s: K8s) -> None:
    k8s.apply_crd(CRD)
    k8s.apply(widget("w1", size=4))
    listing = k8s.run_kubectl("get", "widgets").stdout.splitlines()
    assert listing[0].split() == ["NAME", "COLOR", "SIZE", "READY", "AGE"]
    assert listing[1].split()[:3] == ["w1", "red", "4"]

    waiter = k8s.popen_kubectl("wait", "--for=condition=Ready", "widget/w1", "--timeout=30s")
    try:
        # Status sent to the main endpoint is ignored for resources with a status subresource.
        k8s.run_kubectl(
            "patch",
            "widget",
            "w1",
            "--type=merge",
            "-p",
            '{"status": {"conditions": [{"type": "Ready", "status": "True"}]}}',
        )
        assert "status" not in (k8s.emulator.get_object(*GVP, "default", "w1") or {})
        assert waiter.poll() is None
        k8s.run_kubectl(
            "patch",
            "widget",
            "w1",
            "--subresource=status",
            "--type=merge",
            "-p",
            '{"status": {"conditions": [{"type": "Ready", "status": "True"}]}}',
        )
        out, err = waiter.communicate(timeout=30)
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.communicate()
    assert waiter.returncode == 0, err
    assert "condition met" in out
    listing = k8s.run_kubectl("get", "wg", "w1").stdout.splitlines()
    assert listing[1].split()[3] == "True"
    stored = k8s.emulator.get_object(*GVP, "default", "w1") or {}
    assert stored["metadata"]["generation"] == 1  # status and metadata never bump it


def test_delete_wait_blocks_on_a_finalizer_until_it_is_removed(k8s: K8s) -> None:
    k8s.apply_crd(CRD)
    k8s.apply(widget("w1"))
    k8s.run_kubectl("patch", "widget", "w1", "--type=merge", "-p", '{"metadata": {"finalizers": ["test/hold"]}}')
    deleting = k8s.popen_kubectl("delete", "widget", "w1", "--wait", "--timeout=30s")
    try:
        held = eventually(
            lambda: (k8s.emulator.get_object(*GVP, "default", "w1") or {}).get("metadata", {}).get("deletionTimestamp"),
            message="deletionTimestamp set",
        )
        assert held
        assert deleting.poll() is None  # still blocked on the finalizer
        blocked = k8s.run_kubectl(
            "patch",
            "widget",
            "w1",
            "--type=merge",
            "-p",
            '{"metadata": {"finalizers": ["test/hold", "test/new"]}}',
            check=False,
        )
        assert "no new finalizers can be added if the object is being deleted" in blocked.stderr
        k8s.emulator.patch_object(
            *GVP,
            "default",
            "w1",
            patch=[
                {"op": "test", "path": "/metadata/finalizers/0", "value": "test/hold"},
                {"op": "remove", "path": "/metadata/finalizers/0"},
            ],
            patch_type="json",
        )
        out, err = deleting.communicate(timeout=30)
    finally:
        if deleting.poll() is None:
            deleting.kill()
            deleting.communicate()
    assert deleting.returncode == 0, err
    assert 'widget.test.sgw.io "w1" deleted' in out
    assert k8s.emulator.get_object(*GVP, "default", "w1") is None


def test_helm_install_upgrade_uninstall(k8s: K8s) -> None:
    k8s.run_helm("install", "rel", str(CHART), "-n", "apps", "--create-namespace")
    kinds = [
        "deployments",
        "services",
        "serviceaccounts",
        "configmaps",
        "roles",
        "rolebindings",
        "horizontalpodautoscalers",
        "poddisruptionbudgets",
        "networkpolicies",
    ]
    listing = k8s.run_kubectl("get", ",".join(kinds), "-n", "apps", "-o", "name").stdout
    for expected in [
        "deployment.apps/rel",
        "service/rel",
        "configmap/rel-config",
        "horizontalpodautoscaler.autoscaling/rel",
        "networkpolicy.networking.k8s.io/rel",
        "poddisruptionbudget.policy/rel",
        "role.rbac.authorization.k8s.io/rel",
    ]:
        assert expected in listing
    assert k8s.emulator.get_object("rbac.authorization.k8s.io", "v1", "clusterroles", None, "rel-apps")
    assert "deployed" in k8s.run_helm("list", "-n", "apps").stdout

    k8s.run_helm("upgrade", "rel", str(CHART), "-n", "apps", "--set", "greeting=bye", "--set", "extraData.k=v")
    config = k8s.emulator.get_object("", "v1", "configmaps", "apps", "rel-config") or {}
    assert config["data"] == {"greeting": "bye", "k": "v"}
    k8s.run_helm("upgrade", "rel", str(CHART), "-n", "apps", "--set", "greeting=again")
    config = k8s.emulator.get_object("", "v1", "configmaps", "apps", "rel-config") or {}
    assert config["data"] == {"greeting": "again"}  # server-side apply dropped what helm dropped
    history = k8s.run_helm("history", "rel", "-n", "apps").stdout
    assert "Upgrade complete" in history

    k8s.run_helm("uninstall", "rel", "-n", "apps")
    assert k8s.emulator.list_objects("apps", "v1", "deployments", "apps") == []
    assert k8s.emulator.list_objects("", "v1", "secrets", "apps") == []  # release records too
    assert not k8s.emulator.get_object("rbac.authorization.k8s.io", "v1", "clusterroles", None, "rel-apps")


def test_helm_fails_only_on_rendered_kinds_whose_crd_is_missing(k8s: K8s) -> None:
    failed = k8s.run_helm("install", "rel", str(CHART), "--set", "serviceMonitor.enabled=true", check=False)
    assert failed.returncode != 0
    assert 'no matches for kind "ServiceMonitor" in version "monitoring.coreos.com/v1"' in failed.stderr
    assert "ensure CRDs are installed first" in failed.stderr
    assert k8s.emulator.list_objects("apps", "v1", "deployments", "default") == []


OPERATOR = """
import kopf

@kopf.on.create("test.sgw.io", "v1alpha1", "widgets")
def created(body, meta, spec, patch, **_):
    kopf.info(body, reason="WidgetCreated", message="created once")
    _reconcile(meta, spec, patch)

@kopf.on.update("test.sgw.io", "v1alpha1", "widgets", field="spec")
def updated(meta, spec, patch, **_):
    _reconcile(meta, spec, patch)

@kopf.on.delete("test.sgw.io", "v1alpha1", "widgets")
def deleted(**_):
    pass

def _reconcile(meta, spec, patch):
    generation = meta["generation"]
    patch.status["message"] = f"{spec['color']} x{spec['size']}"
    patch.status["observedGeneration"] = generation
    patch.status["conditions"] = [
        {"type": "Ready", "status": "True", "reason": "Reconciled", "observedGeneration": generation}
    ]
"""


@pytest.mark.k8s_emulator(bookmark_interval=30.0)
@pytest.mark.parametrize("initial_streaming", [False, True], ids=["list-then-watch", "watch-list"])
def test_kopf_operator_status_observed_generation_and_410(k8s: K8s, tmp_path: Path, initial_streaming: bool) -> None:
    k8s.apply_crd(CRD)
    operator = tmp_path / "operator.py"
    operator.write_text(OPERATOR)
    settings = kopf.OperatorSettings()
    settings.watching.initial_streaming = initial_streaming
    settings.watching.server_timeout = 1  # reconnect often, so a compaction is noticed fast
    args = ["run", "--standalone", "-n", "default", str(operator)]

    def status() -> dict[str, Any]:
        return (k8s.emulator.get_object(*GVP, "default", "w1") or {}).get("status") or {}

    with KopfRunner(args, registry=k8s.kopf_registry(), settings=settings, timeout=30) as runner:
        k8s.run_kubectl("apply", "-f", str(WIDGET))
        eventually(lambda: status().get("observedGeneration") == 1, message="first reconcile")
        assert status()["message"] == "red x3"
        stored = k8s.emulator.get_object(*GVP, "default", "w1") or {}
        assert stored["metadata"]["generation"] == 1
        assert stored["metadata"]["finalizers"] == ["kopf.zalando.org/KopfFinalizerMarker"]

        # Forget the history, then make kopf resume a watch from before it: 410, re-list.
        k8s.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "bump"}})
        k8s.emulator.compact()
        eventually(lambda: k8s.emulator.expired_watches > 0, message="a 410 Gone")

        k8s.run_kubectl("patch", "widget", "w1", "--type=merge", "-p", '{"spec": {"size": 7}}')
        eventually(lambda: status().get("observedGeneration") == 2, message="second reconcile")
        assert status()["message"] == "red x7"

        described = k8s.run_kubectl("describe", "widget", "w1").stdout
        assert "WidgetCreated" in described  # kopf's Event, found by involvedObject selectors
        k8s.run_kubectl("delete", "widget", "w1", "--timeout=30s")
        assert k8s.emulator.get_object(*GVP, "default", "w1") is None
    assert runner.exit_code == 0, runner.output
    events = k8s.emulator.list_objects("", "v1", "events", "default")
    assert [e["reason"] for e in events].count("WidgetCreated") == 1  # no replayed create


@pytest.mark.k8s_emulator(bookmark_interval=0.2)
def test_watch_resume_bookmarks_initial_events_and_410(k8s: K8s) -> None:
    k8s.apply_crd(CRD)
    k8s.apply(widget("w1"))
    listed = k8s.http("GET", WIDGETS).body
    assert listed["kind"] == "WidgetList"
    assert listed["apiVersion"] == "test.sgw.io/v1alpha1"
    since = listed["metadata"]["resourceVersion"]

    k8s.emulator.patch_object(*GVP, "default", "w1", patch={"spec": {"size": 5}})
    k8s.apply(widget("w2"))
    k8s.emulator.delete_object(*GVP, "default", "w2")
    events = watch(k8s, f"resourceVersion={since}&allowWatchBookmarks=true&timeoutSeconds=1")
    changes = [(e["type"], e["object"]["metadata"]["name"]) for e in events if e["type"] != "BOOKMARK"]
    assert changes == [("MODIFIED", "w1"), ("ADDED", "w2"), ("DELETED", "w2")]  # no replay of w1
    assert any(e["type"] == "BOOKMARK" for e in events)
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert rvs == sorted(rvs)
    assert rvs[0] > int(since)

    only_w1 = watch(k8s, "fieldSelector=metadata.name%3Dw1&timeoutSeconds=1")
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in only_w1] == [("ADDED", "w1")]
    initial = watch(
        k8s, "sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=1"
    )
    assert initial[0]["type"] == "ADDED"
    end = initial[1]["object"]["metadata"]
    assert initial[1]["type"] == "BOOKMARK"
    assert end["annotations"] == {"k8s.io/initial-events-end": "true"}

    current = k8s.emulator.compact()
    expired = watch(k8s, f"resourceVersion={since}&timeoutSeconds=1")
    assert [(e["type"], e["object"]["code"], e["object"]["reason"]) for e in expired] == [("ERROR", 410, "Expired")]
    assert watch(k8s, f"resourceVersion={current}&timeoutSeconds=1") == []


def test_api_semantics_over_raw_http(k8s: K8s) -> None:
    k8s.apply_crd(CRD)
    created = k8s.http("POST", WIDGETS, {**widget(""), "metadata": {"generateName": "w-"}})
    assert created.status == 201
    name = created.body["metadata"]["name"]
    assert name.startswith("w-")
    assert len(name) == 7
    rv = created.body["metadata"]["resourceVersion"]

    stale = {**created.body, "metadata": {**created.body["metadata"], "resourceVersion": "1"}}
    conflict = k8s.http("PUT", f"{WIDGETS}/{name}", stale)
    assert (conflict.status, conflict.body["reason"]) == (409, "Conflict")
    failed_test = k8s.http(
        "PATCH",
        f"{WIDGETS}/{name}",
        [{"op": "test", "path": "/spec/color", "value": "blue"}, {"op": "replace", "path": "/spec/size", "value": 9}],
        content_type="application/json-patch+json",
    )
    assert failed_test.status == 422
    unchanged = k8s.http("GET", f"{WIDGETS}/{name}").body
    assert unchanged["metadata"]["resourceVersion"] == rv  # nothing was written

    spec_only = k8s.http(
        "PATCH",
        f"{WIDGETS}/{name}/status",
        {"spec": {"size": 9}, "status": {"message": "hi"}},
        content_type="application/merge-patch+json",
    ).body
    assert spec_only["spec"]["size"] == 3
    assert spec_only["status"]["message"] == "hi"
    assert spec_only["metadata"]["generation"] == 1

    applied = k8s.http(
        "PATCH",
        f"{WIDGETS}/applied?fieldManager=test&force=true",
        json.dumps(widget("applied", size=2)).encode(),
        content_type="application/apply-patch+yaml",
    )
    assert applied.status == 201
    assert applied.body["spec"]["size"] == 2

    missing_ns = k8s.http("POST", "/api/v1/namespaces/nowhere/configmaps", {"metadata": {"name": "x"}})
    assert (missing_ns.status, missing_ns.body["message"]) == (404, 'namespaces "nowhere" not found')
    assert k8s.http("GET", "/api/v1").body["groupVersion"] == "v1"
    names = [ns["metadata"]["name"] for ns in k8s.http("GET", "/api/v1/namespaces").body["items"]]
    assert "default" in names

    labelled = k8s.http(
        "POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": "l", "labels": {"a": "b"}}}
    )
    assert labelled.status == 201
    selected = k8s.http("GET", "/api/v1/namespaces/default/configmaps?labelSelector=a%20in%20(b,c)").body
    assert [cm["metadata"]["name"] for cm in selected["items"]] == ["l"]
    assert "kind" not in selected["items"][0]  # as on a real server, for built-in kinds
    unsupported = k8s.http("GET", f"{WIDGETS}?fieldSelector=spec.color%3Dred")
    assert unsupported.status == 400


def test_injected_errors_do_not_mutate_state(k8s: K8s) -> None:
    k8s.apply_crd(CRD)
    # kmock's reaction DSL still works, and a matching reaction answers before any storage.
    k8s.emulator["post", kmock.resource(*GVP)] << 503  # noqa: B015
    refused = k8s.http("POST", WIDGETS, widget("w1"))
    assert refused.status == 503
    assert k8s.emulator.get_object(*GVP, "default", "w1") is None


def test_protobuf_bodies_are_decoded(k8s: K8s) -> None:
    k8s.run_kubectl("create", "namespace", "proto")
    k8s.run_kubectl("create", "configmap", "cm", "-n", "proto", "--from-literal=a=b")
    k8s.run_kubectl("create", "secret", "generic", "s", "-n", "proto", "--from-literal=k=v")
    sent = {r.headers.get("Content-Type") for r in k8s.emulator._requests if r.method == "POST"}
    assert protobuf.CONTENT_TYPE in sent
    assert (k8s.emulator.get_object("", "v1", "configmaps", "proto", "cm") or {})["data"] == {"a": "b"}
    secret = k8s.emulator.get_object("", "v1", "secrets", "proto", "s") or {}
    assert secret["data"] == {"k": "dg=="}
    assert secret["type"] == "Opaque"

    meta = protobuf.len_field(1, b"hand-made")
    entry = protobuf.len_field(1, b"x") + protobuf.len_field(2, b"y")
    raw = protobuf.len_field(1, meta) + protobuf.len_field(2, entry)
    body = protobuf.encode_for_tests("v1", "ConfigMap", raw)
    result = k8s.http("POST", "/api/v1/namespaces/proto/configmaps", body, content_type=protobuf.CONTENT_TYPE)
    assert result.status == 201
    assert result.body["data"] == {"x": "y"}


def test_namespace_and_crd_deletion_cascade(k8s: K8s) -> None:
    k8s.apply_crd(CRD)
    k8s.create_namespace("doomed")
    k8s.apply({**widget("w1"), "metadata": {"name": "w1", "namespace": "doomed", "finalizers": ["x/y"]}})
    k8s.run_kubectl("delete", "namespace", "doomed", "--wait=false")
    ns = k8s.emulator.get_object("", "v1", "namespaces", None, "doomed") or {}
    assert ns["status"]["phase"] == "Terminating"  # held by the widget's finalizer
    refused = k8s.run_kubectl("create", "configmap", "late", "-n", "doomed", check=False)
    assert "because it is being terminated" in refused.stderr
    k8s.emulator.patch_object(*GVP, "doomed", "w1", patch={"metadata": {"finalizers": None}})
    assert k8s.emulator.get_object("", "v1", "namespaces", None, "doomed") is None

    k8s.apply(widget("w2"))
    k8s.run_kubectl("delete", "crd", "widgets.test.sgw.io")
    assert k8s.run_kubectl("get", "widgets", check=False).returncode != 0


def test_kubectl_wait_times_out_cleanly(k8s: K8s) -> None:
    k8s.apply_crd(CRD)
    k8s.apply(widget("w1"))
    result = k8s.run_kubectl("wait", "--for=condition=Ready", "widget/w1", "--timeout=1s", check=False)
    assert result.returncode != 0
    assert "timed out" in result.stderr


def test_subprocess_helpers_report_output_on_failure(k8s: K8s) -> None:
    with pytest.raises(subprocess.CalledProcessError, match="the server doesn't have a resource type"):
        k8s.run_kubectl("get", "nonsense")


async def test_async_tests_can_drive_kubectl_while_the_emulator_serves(k8s: K8s) -> None:
    k8s.apply_crd(CRD)
    applying = asyncio.create_task(k8s.arun_kubectl("apply", "-f", str(WIDGET)))
    await aeventually(lambda: k8s.emulator.get_object(*GVP, "default", "w1"), message="w1 stored")
    await applying
    async with aiohttp.ClientSession() as session, session.get(f"{k8s.url}{WIDGETS}/w1") as response:
        assert response.status == 200
        assert (await response.json())["spec"]["size"] == 3


def test_pure_helpers_jsonpath_ages_selectors_and_schemas() -> None:
    obj = {"status": {"conditions": [{"type": "Synced", "status": "False"}, {"type": "Ready", "status": "True"}]}}
    assert tables.jsonpath('.status.conditions[?(@.type=="Ready")].status', obj) == ["True"]
    assert tables.jsonpath("{.status.conditions[*].type}", obj) == ["Synced", "Ready"]
    assert tables.jsonpath(".status.conditions[-1].type", obj) == ["Ready"]
    assert [tables.human_duration(s) for s in (5, 150, 3 * 3600 + 60, 3 * 86400)] == ["5s", "2m30s", "3h1m", "3d"]

    labelled = {"metadata": {"name": "a", "labels": {"tier": "web", "env": "prod"}}}
    assert selectors.label_selector("tier in (web,api),env!=dev,!legacy")(labelled)
    assert not selectors.label_selector("tier notin (web)")(labelled)
    assert selectors.field_selector("metadata.name=a,metadata.namespace!=x")(labelled)

    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "required": ["mode"],
                "properties": {
                    "mode": {"type": "string", "enum": ["a", "b"], "default": "a"},
                    "ports": {
                        "type": "array",
                        "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": ["port"],
                        "items": {"type": "object", "properties": {"port": {"type": "integer"}}},
                    },
                    "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                },
            }
        },
    }
    body = {"metadata": {}, "spec": {"ports": [{"port": 1, "x": 2}, {"port": 1}], "free": {"k": 1}, "gone": 1}}
    pruned, unknown = schemas.prune(body, schema)
    assert sorted(unknown) == ["spec.gone", "spec.ports[0].x"]
    defaulted = schemas.apply_defaults(pruned, schema)
    assert defaulted["spec"]["mode"] == "a"
    assert defaulted["spec"]["free"] == {"k": 1}
    causes = schemas.validate(defaulted, schema)
    assert [(reason, field) for reason, field, _ in causes] == [("FieldValueDuplicate", "spec.ports[1]")]
