"""What `helm template` renders: valid Kubernetes objects (kubernetes-validate --strict for built-in
kinds, structure checks for ServiceMonitor/PrometheusRule), and the properties the gateway needs:
shutdown timing, hardening, probes, settings the gateway accepts, selectors, RBAC, monitoring."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from gateway.settings import load_settings
from sgw_operator.settings import load_settings as load_operator_settings
from tests.chart.helm import CHART, CI_VALUES, NAMESPACE, RELEASE, Helm, Manifest, container, env_of, of_kind, one

pytestmark = pytest.mark.timeout(120)

CUSTOM_KINDS = {"ServiceMonitor", "PrometheusRule"}
KUBE_VERSIONS = {"1.35.0": None, "1.28.0": "1.28.0"}
"""kubernetes-validate schema version -> --kube-version for helm (None: helm's default, 1.35)."""
FULL = CHART / "ci" / "full-values.yaml"
NAMESPACED = CHART / "ci" / "namespaced-operator-values.yaml"
NO_OPERATOR = CHART / "ci" / "no-operator-values.yaml"


@pytest.fixture(scope="module")
def render(helm: Helm) -> Any:
    @functools.cache
    def _render(values: Path | None = None, kube: str | None = None, **set_values: str) -> list[Manifest]:
        return helm.render([values] if values else [], set_values=set_values, kube_version=kube)

    return _render


SCENARIOS = [None, *CI_VALUES]
SCENARIO_IDS = ["defaults", *(p.stem for p in CI_VALUES)]


# ---- validity -----------------------------------------------------------------------------


@pytest.mark.parametrize("values", SCENARIOS, ids=SCENARIO_IDS)
@pytest.mark.parametrize("schema_version", KUBE_VERSIONS)
def test_builtin_kinds_validate_strictly(render: Any, values: Path | None, schema_version: str) -> None:
    docs = render(values, KUBE_VERSIONS[schema_version])
    assert docs
    for doc in docs:
        assert doc["metadata"].get("namespace", NAMESPACE) in (NAMESPACE, "monitoring", "voice-prod", "voice-staging")
        if doc["kind"] in CUSTOM_KINDS:
            continue
        kubernetes_validate.validate(doc, schema_version, strict=True)


@pytest.mark.parametrize("values", SCENARIOS, ids=SCENARIO_IDS)
def test_custom_kinds_have_their_known_structure(render: Any, values: Path | None) -> None:
    docs = render(values)
    services = of_kind(docs, "Service")
    for monitor in of_kind(docs, "ServiceMonitor"):
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        spec = monitor["spec"]
        assert set(spec) <= {"selector", "namespaceSelector", "endpoints", "jobLabel"}
        assert spec["namespaceSelector"] == {"matchNames": [NAMESPACE]}
        wanted = spec["selector"]["matchLabels"]
        selected = [s for s in services if wanted.items() <= s["metadata"]["labels"].items()]
        assert len(selected) == 1, f"{monitor['metadata']['name']} selects {len(selected)} Services"
        port_names = {p["name"] for p in selected[0]["spec"]["ports"]}
        for endpoint in spec["endpoints"]:
            assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout", "relabelings"}
            assert endpoint["port"] in port_names
            assert endpoint["path"] == "/metrics"
            (relabel,) = endpoint["relabelings"]
            assert relabel["targetLabel"] == "job"
            assert relabel["action"] == "replace"
    for rule in of_kind(docs, "PrometheusRule"):
        assert rule["apiVersion"] == "monitoring.coreos.com/v1"
        for group in rule["spec"]["groups"]:
            assert set(group) <= {"name", "interval", "rules"}
            for r in group["rules"]:
                assert set(r) <= {"alert", "record", "expr", "for", "labels", "annotations"}
                assert isinstance(r["expr"], str)
                assert r["expr"]


def test_every_template_renders_in_some_scenario(render: Any) -> None:
    rendered = set()
    for values in SCENARIOS:
        rendered |= {(d["kind"], d["metadata"]["name"]) for d in render(values)}
    kinds = {k for k, _ in rendered}
    assert kinds >= {
        "Deployment", "Service", "ServiceAccount", "HorizontalPodAutoscaler", "PodDisruptionBudget",
        "ServiceMonitor", "PrometheusRule", "NetworkPolicy", "Ingress", "ConfigMap", "ClusterRole",
        "ClusterRoleBinding", "Role", "RoleBinding",
    }  # fmt: skip


# ---- labels and selectors -----------------------------------------------------------------


@pytest.mark.parametrize("values", SCENARIOS, ids=SCENARIO_IDS)
def test_labels_and_selectors(render: Any, values: Path | None) -> None:
    docs = render(values)
    for doc in docs:
        labels = doc["metadata"].get("labels", {})
        if doc["kind"] != "CustomResourceDefinition":
            for key in ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/managed-by"):
                assert key in labels, f"{doc['kind']} {doc['metadata']['name']} lacks {key}"
    selectors: list[dict[str, str]] = []
    for doc in of_kind(docs, "Deployment") + of_kind(docs, "PodDisruptionBudget"):
        selectors.append(doc["spec"]["selector"]["matchLabels"])
    selectors += [s["spec"]["selector"] for s in of_kind(docs, "Service")]
    selectors += [n["spec"]["podSelector"]["matchLabels"] for n in of_kind(docs, "NetworkPolicy")]
    for selector in selectors:
        assert "helm.sh/chart" not in selector
        assert "app.kubernetes.io/version" not in selector
    for deploy in of_kind(docs, "Deployment"):
        pod_labels = deploy["spec"]["template"]["metadata"]["labels"]
        assert deploy["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    gateway = one(docs, "Deployment", "gateway")
    pod_labels = gateway["spec"]["template"]["metadata"]["labels"]
    for svc in of_kind(docs, "Service"):
        if svc["metadata"]["labels"]["app.kubernetes.io/component"] == "gateway":
            assert svc["spec"]["selector"].items() <= pod_labels.items()
    for pdb in of_kind(docs, "PodDisruptionBudget"):
        assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


# ---- the gateway Deployment ----------------------------------------------------------------


@pytest.mark.parametrize("values", SCENARIOS, ids=SCENARIO_IDS)
def test_gateway_pod_is_hardened(render: Any, values: Path | None) -> None:
    pod = one(render(values), "Deployment", "gateway")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    gw = container({"spec": {"template": {"spec": pod}}, "metadata": {"name": "gw"}}, "gateway")
    sc = gw["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["runAsNonRoot"] is True
    assert sc["runAsUser"] == 10001
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    tmp = [v for v in pod["volumes"] if v["name"] == "tmp"]
    assert tmp
    assert "emptyDir" in tmp[0]
    assert {"name": "tmp", "mountPath": "/tmp"} in gw["volumeMounts"]


def test_resources_are_unset_by_default(render: Any) -> None:
    for deploy in of_kind(render(), "Deployment"):
        for c in deploy["spec"]["template"]["spec"]["containers"]:
            assert "resources" not in c


def test_gateway_container_runs_streamgw_serve_with_probes_on_the_internal_port(render: Any) -> None:
    gw = container(one(render(), "Deployment", "gateway"), "gateway")
    assert gw["command"] == ["streamgw"]
    assert gw["args"] == ["serve"]
    ports = {p["name"]: p["containerPort"] for p in gw["ports"]}
    assert ports == {"ws": 8080, "metrics": 9090}
    assert gw["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert gw["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert gw["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    env = env_of(gw)
    assert env["SGW_SERVER__PORT"] == "8080"
    assert env["SGW_SERVER__INTERNAL_PORT"] == "9090"


def _shutdown(docs: list[Manifest]) -> tuple[int, int, int]:
    """(terminationGracePeriodSeconds, preStop seconds, SGW_SHUTDOWN__DRAIN_SECONDS)."""
    deploy = one(docs, "Deployment", "gateway")
    gw = container(deploy, "gateway")
    pre = gw["lifecycle"]["preStop"]
    seconds = pre["sleep"]["seconds"] if "sleep" in pre else int(pre["exec"]["command"][-1])
    return (
        deploy["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
        seconds,
        int(float(env_of(gw)["SGW_SHUTDOWN__DRAIN_SECONDS"])),
    )


@pytest.mark.parametrize("drain", ["0", "30", "3600"])
def test_grace_period_covers_prestop_drain_and_margin(render: Any, drain: str) -> None:
    grace, pre_stop, drained = _shutdown(render(**{"gateway.drainSeconds": drain}))
    assert drained == int(drain)
    assert pre_stop == 5
    assert grace == pre_stop + drained + 15
    assert grace > pre_stop + drained


def test_explicit_grace_period_is_kept_when_long_enough(render: Any) -> None:
    grace, pre_stop, drained = _shutdown(render(FULL))
    assert (grace, pre_stop, drained) == (700, 10, 600)
    assert grace >= pre_stop + drained + 30


def test_prestop_uses_the_sleep_action_only_where_the_cluster_has_it(render: Any) -> None:
    new = container(one(render(None, "1.30.0"), "Deployment", "gateway"), "gateway")
    old = container(one(render(None, "1.28.0"), "Deployment", "gateway"), "gateway")
    assert new["lifecycle"]["preStop"] == {"sleep": {"seconds": 5}}
    assert old["lifecycle"]["preStop"] == {"exec": {"command": ["sleep", "5"]}}


@pytest.mark.parametrize("values", SCENARIOS, ids=SCENARIO_IDS)
def test_gateway_env_is_accepted_by_the_gateway_settings(render: Any, values: Path | None) -> None:
    """Every SGW_ variable the chart sets is a real gateway setting with a valid value."""
    gw = container(one(render(values), "Deployment", "gateway"), "gateway")
    env = {
        name: _as_the_container_sees_it(name, value) for name, value in env_of(gw).items() if name.startswith("SGW_")
    }
    settings = load_settings(env)
    chart_values = yaml.safe_load((CHART / "values.yaml").read_text())
    overrides = yaml.safe_load(values.read_text()) if values else {}
    assert settings.routing_source == "natskv"
    assert settings.default_route_enabled is False
    assert settings.nats.url == overrides.get("nats", {}).get("url", chart_values["nats"]["url"])
    assert settings.routing.kv_bucket == overrides.get("routing", {}).get("kvBucket", "sgw-routes")
    assert settings.shutdown.drain_seconds == overrides.get("gateway", {}).get("drainSeconds", 30)


def _as_the_container_sees_it(name: str, value: Any) -> str:
    """Literal values as they are; the Downward API's CPU count (workers) as the kubelet would give
    it (a whole number); Secret references as placeholders."""
    if isinstance(value, str):
        return value
    if "resourceFieldRef" in value:
        return "2"
    return f"from-secret-{name.lower()}"


DOWNWARD_CPU_LIMIT = {"resourceFieldRef": {"containerName": "gateway", "resource": "limits.cpu", "divisor": "1"}}


def test_workers_default_to_the_cpu_limit(render: Any) -> None:
    """Unset gateway.workers: one worker per CPU of the container's limit, rounded up by the kubelet."""
    gw = container(one(render(**{"gateway.resources.limits.cpu": "1500m"}), "Deployment", "gateway"), "gateway")
    assert [e["name"] for e in gw["env"]].count("SGW_SERVER__WORKERS") == 1
    assert env_of(gw)["SGW_SERVER__WORKERS"] == DOWNWARD_CPU_LIMIT
    assert DOWNWARD_CPU_LIMIT["resourceFieldRef"]["containerName"] == gw["name"]


@pytest.mark.parametrize("values", SCENARIOS, ids=SCENARIO_IDS)
def test_without_a_cpu_limit_one_worker_runs(render: Any, values: Path | None) -> None:
    """No CPU limit: Kubernetes would report the node's CPUs (16 on a big node), so the gateway
    keeps its single-process default unless told otherwise."""
    deployment = one(render(values), "Deployment", "gateway")
    gw = container(deployment, "gateway")
    if (gw.get("resources") or {}).get("limits", {}).get("cpu"):
        assert env_of(gw)["SGW_SERVER__WORKERS"] == DOWNWARD_CPU_LIMIT
    else:
        assert "SGW_SERVER__WORKERS" not in env_of(gw)


@pytest.mark.parametrize("workers", ["0", "1", "4"])
def test_workers_value_wins_over_the_cpu_limit(render: Any, workers: str) -> None:
    gw = container(one(render(**{"gateway.workers": workers}), "Deployment", "gateway"), "gateway")
    env = env_of(gw)
    assert [e["name"] for e in gw["env"]].count("SGW_SERVER__WORKERS") == 1
    assert env["SGW_SERVER__WORKERS"] == workers
    literal = {k: v for k, v in env.items() if k.startswith("SGW_") and isinstance(v, str)}
    assert load_settings(literal).server.workers == int(workers)


def test_extra_settings_become_sgw_variables(render: Any) -> None:
    env = env_of(container(one(render(FULL), "Deployment", "gateway"), "gateway"))
    assert env["SGW_BUFFER__MAX_FRAMES"] == "3000"
    assert env["SGW_WEBSOCKET__HEARTBEAT"] == "15"
    assert env["SGW_OBSERVABILITY__SECRET_PARAMETERS"] == "token,password,pin"
    assert env["SGW_SERVER__MAX_STREAMS"] == "1500"
    assert env["SGW_OBSERVABILITY__OTLP_ENDPOINT"].startswith("http://otel-collector")
    assert env["TZ"] == "UTC"


def test_nats_credentials_come_from_the_existing_secret(render: Any) -> None:
    docs = render(FULL)
    gw_deploy = one(docs, "Deployment", "gateway")
    env = env_of(container(gw_deploy, "gateway"))
    assert env["SGW_NATS__CREDS_FILE"] == "/etc/stream-gateway/nats-auth/nats.creds"
    assert env["SGW_NATS__TLS_CA_FILE"] == "/etc/stream-gateway/nats-tls/ca.crt"
    volumes = {v["name"]: v for v in gw_deploy["spec"]["template"]["spec"]["volumes"]}
    assert volumes["nats-auth"]["secret"]["secretName"] == "sgw-nats"
    assert volumes["nats-auth"]["secret"]["items"] == [{"key": "gateway.creds", "path": "nats.creds"}]
    op_env = env_of(container(one(docs, "Deployment", "operator"), "operator"))
    assert op_env["SGW_OPERATOR_NATS_USER"] == {"secretKeyRef": {"name": "sgw-nats-operator", "key": "user"}}
    assert op_env["SGW_OPERATOR_NATS_PASSWORD"] == {"secretKeyRef": {"name": "sgw-nats-operator", "key": "password"}}
    token_env = env_of(container(one(render(NAMESPACED), "Deployment", "gateway"), "gateway"))
    assert token_env["SGW_NATS__TOKEN"] == {"secretKeyRef": {"name": "sgw-nats", "key": "token"}}
    for values in SCENARIOS:
        assert of_kind(render(values), "Secret") == [], "credentials come from existing Secrets only"


def test_image_defaults_to_the_app_version(render: Any) -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    for deploy in of_kind(render(), "Deployment"):
        (c,) = deploy["spec"]["template"]["spec"]["containers"]
        assert c["image"] == f"stream-gateway:{chart['appVersion']}"
    digest = "sha256:" + "a" * 64
    (c,) = one(render(None, None, **{"image.digest": digest}), "Deployment", "gateway")["spec"]["template"]["spec"][
        "containers"
    ]
    assert c["image"] == f"stream-gateway@{digest}"


def test_merge_escape_hatch(render: Any) -> None:
    deploy = one(render(FULL), "Deployment", "gateway")
    assert deploy["spec"]["minReadySeconds"] == 10
    assert "replicas" not in deploy["spec"], "the HPA owns replicas"


# ---- Service, Ingress, HPA, PDB, NetworkPolicy ---------------------------------------------


def test_default_service_carries_ws_and_metrics(render: Any) -> None:
    svc = one(render(), "Service", "gateway")
    assert svc["spec"]["type"] == "ClusterIP"
    assert {(p["name"], p["port"], p["targetPort"]) for p in svc["spec"]["ports"]} == {
        ("ws", 8080, "ws"),
        ("metrics", 9090, "metrics"),
    }


def test_load_balancer_service_keeps_metrics_internal(render: Any) -> None:
    docs = render(FULL)
    public = one(docs, "Service", "gateway", suffix="stream-gateway")
    internal = one(docs, "Service", "gateway", suffix="-metrics")
    assert public["spec"]["type"] == "LoadBalancer"
    assert [p["name"] for p in public["spec"]["ports"]] == ["ws"]
    assert public["spec"]["externalTrafficPolicy"] == "Local"
    assert "tcp.idle_timeout.seconds=3600" in public["metadata"]["annotations"].values()
    assert internal["spec"]["type"] == "ClusterIP"
    assert [p["name"] for p in internal["spec"]["ports"]] == ["metrics"]


def test_ingress_routes_wss_to_the_ws_port_with_long_timeouts(render: Any) -> None:
    ingress = one(render(FULL), "Ingress")
    annotations = ingress["metadata"]["annotations"]
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-send-timeout"]) >= 3600
    backends = [p["backend"]["service"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]]
    assert backends
    assert all(b == {"name": f"{RELEASE}-stream-gateway", "port": {"name": "ws"}} for b in backends)
    assert ingress["spec"]["tls"][0]["secretName"] == "streams-tls"


def test_hpa_scales_on_cpu_and_streams_per_pod(render: Any) -> None:
    hpa = one(render(FULL), "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": f"{RELEASE}-stream-gateway",
    }
    metrics = {m["type"]: m for m in hpa["spec"]["metrics"]}
    assert metrics["Resource"]["resource"] == {
        "name": "cpu",
        "target": {"type": "Utilization", "averageUtilization": 60},
    }
    assert metrics["Pods"]["pods"] == {
        "metric": {"name": "sgw_streams_active"},
        "target": {"type": "AverageValue", "averageValue": "400"},
    }
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 300
    assert of_kind(render(), "HorizontalPodAutoscaler") == []


def test_pdb(render: Any) -> None:
    assert one(render(), "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    pdb = one(render(FULL), "PodDisruptionBudget")["spec"]
    assert pdb["minAvailable"] == 2
    assert "maxUnavailable" not in pdb


def test_network_policies(render: Any) -> None:
    assert of_kind(render(), "NetworkPolicy") == []
    gw = one(render(FULL), "NetworkPolicy", "gateway")["spec"]
    assert gw["policyTypes"] == ["Ingress", "Egress"]
    ws_rule, metrics_rule = gw["ingress"]
    assert ws_rule["ports"] == [{"port": "ws", "protocol": "TCP"}]
    assert "from" not in ws_rule
    assert metrics_rule["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert metrics_rule["from"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "monitoring"}
    assert {"port": 53, "protocol": "UDP"} in gw["egress"][0]["ports"]
    assert gw["egress"][1]["ports"] == [{"port": 4222, "protocol": "TCP"}]
    op = one(render(FULL), "NetworkPolicy", "operator")["spec"]
    assert {p["port"] for p in op["ingress"][0]["ports"]} == {"metrics", "health"}


# ---- operator and RBAC ---------------------------------------------------------------------


def _verbs(rules: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.setdefault((group, resource), set()).update(rule["verbs"])
    return out


ROUTE_RULES = {
    ("streamgateway.io", "streamroutes"): {"get", "list", "watch", "patch"},
    ("streamgateway.io", "streamroutes/status"): {"get", "patch"},
    ("streamgateway.io", "streamroutes/finalizers"): {"update"},
    ("", "secrets"): {"get", "list", "watch"},
    ("", "events"): {"create", "patch"},
}
CRD_RULES = {("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"}}


def test_operator_cluster_wide_rbac_is_least_privilege(render: Any) -> None:
    docs = render()
    assert of_kind(docs, "Role") == []
    assert of_kind(docs, "RoleBinding") == []
    role = one(docs, "ClusterRole")
    assert _verbs(role["rules"]) == {**ROUTE_RULES, **CRD_RULES, ("", "namespaces"): {"list", "watch"}}
    binding = one(docs, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    sa = one(docs, "ServiceAccount", "operator")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": NAMESPACE}]
    assert "SGW_OPERATOR_NAMESPACES" not in env_of(container(one(docs, "Deployment", "operator"), "operator"))


def test_operator_namespaced_rbac_has_no_cluster_wide_secrets(render: Any) -> None:
    docs = render(NAMESPACED)
    assert _verbs(one(docs, "ClusterRole")["rules"]) == CRD_RULES
    roles = of_kind(docs, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["voice-prod", "voice-staging"]
    for role in roles:
        assert _verbs(role["rules"]) == ROUTE_RULES
    bindings = of_kind(docs, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["voice-prod", "voice-staging"]
    env = env_of(container(one(docs, "Deployment", "operator"), "operator"))
    assert env["SGW_OPERATOR_NAMESPACES"] == "voice-prod,voice-staging"


@pytest.mark.parametrize("values", SCENARIOS, ids=SCENARIO_IDS)
def test_no_rbac_wildcards_or_secret_writes(render: Any, values: Path | None) -> None:
    for doc in of_kind(render(values), "ClusterRole") + of_kind(render(values), "Role"):
        for rule in doc["rules"]:
            assert "*" not in rule["verbs"]
            assert "*" not in rule["resources"]
            assert "*" not in rule["apiGroups"]
            if "secrets" in rule["resources"]:
                assert set(rule["verbs"]) <= {"get", "list", "watch"}


def test_operator_deployment(render: Any) -> None:
    deploy = one(render(), "Deployment", "operator")
    assert deploy["spec"]["replicas"] == 1
    assert deploy["spec"]["strategy"] == {"type": "Recreate"}
    op = container(deploy, "operator")
    assert op["command"] == ["streamgw-operator"]
    assert "--liveness=http://0.0.0.0:8081/healthz" in op["args"]
    assert {p["name"]: p["containerPort"] for p in op["ports"]} == {"metrics": 9091, "health": 8081}
    assert op["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    env = env_of(op)
    assert env["SGW_OPERATOR_METRICS_PORT"] == "9091"
    assert (
        env["SGW_OPERATOR_KV_BUCKET"]
        == env_of(container(one(render(), "Deployment", "gateway"), "gateway"))["SGW_ROUTING__KV_BUCKET"]
    )
    assert op["securityContext"]["readOnlyRootFilesystem"] is True
    # Every rendered SGW_OPERATOR_* variable is one the operator knows (it rejects unknown ones);
    # values from Secrets are stood in for by a placeholder.
    for values in SCENARIOS:
        for d in of_kind(render(values), "Deployment"):
            if d["metadata"]["labels"]["app.kubernetes.io/component"] == "operator":
                rendered = env_of(container(d, "operator"))
                env = {k: v if isinstance(v, str) else "from-secret" for k, v in rendered.items()}
                load_operator_settings(env)


def test_operator_can_be_left_out(render: Any) -> None:
    docs = render(NO_OPERATOR)
    components = {d["metadata"]["labels"].get("app.kubernetes.io/component") for d in docs}
    assert "operator" not in components
    (rule,) = of_kind(docs, "PrometheusRule")
    alerts = [r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]]
    assert alerts
    assert not any(a.startswith("SgwOperator") for a in alerts)


# ---- monitoring objects ----------------------------------------------------------------------


def test_dashboard_configmap(render: Any) -> None:
    cm = one(render(), "ConfigMap", "monitoring")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    (key,) = cm["data"]
    dashboard = json.loads(cm["data"][key])
    assert dashboard["uid"] == "sgw-overview"
    assert cm["data"][key] == (CHART / "dashboards" / "stream-gateway.json").read_text().rstrip("\n")
    moved = one(render(FULL), "ConfigMap", "monitoring")
    assert moved["metadata"]["namespace"] == "monitoring"
    assert moved["metadata"]["annotations"] == {"grafana_folder": "Telephony"}
    assert of_kind(render(CHART / "ci" / "minimal-values.yaml"), "ConfigMap") == []


def test_prometheus_rule_is_the_canonical_rule_file_adapted(render: Any) -> None:
    canonical = yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())
    rule = one(render(FULL), "PrometheusRule")
    (group,) = rule["spec"]["groups"]
    (want,) = canonical["groups"]
    assert group["name"] == want["name"] == "stream-gateway"
    assert [r["alert"] for r in group["rules"]] == [r["alert"] for r in want["rules"]]
    base = "https://git.example.com/voice/stream-gateway/-/blob/main/"
    for got, expected in zip(group["rules"], want["rules"], strict=True):
        assert got["expr"] == expected["expr"].replace(
            'job="stream-gateway-operator"', 'job="sgw-prod-operator"'
        ).replace('job="stream-gateway"', 'job="sgw-prod"')
        assert got["annotations"]["runbook_url"] == base + expected["annotations"]["runbook_url"]
        assert got["labels"] == expected["labels"]
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert of_kind(render(), "PrometheusRule") == []
    assert of_kind(render(), "ServiceMonitor") == []


def test_service_monitors_set_the_job_labels_the_alerts_use(render: Any) -> None:
    docs = render(FULL)
    jobs = {
        m["metadata"]["labels"]["app.kubernetes.io/component"]: m["spec"]["endpoints"][0]["relabelings"][0][
            "replacement"
        ]
        for m in of_kind(docs, "ServiceMonitor")
    }
    assert jobs == {"gateway": "sgw-prod", "operator": "sgw-prod-operator"}
    exprs = " ".join(r["expr"] for g in one(docs, "PrometheusRule")["spec"]["groups"] for r in g["rules"])
    assert 'job="sgw-prod"' in exprs
    assert 'job="sgw-prod-operator"' in exprs
    assert 'job="stream-gateway' not in exprs


def test_notes_show_the_next_steps(helm: Helm) -> None:
    out = helm.run(
        "install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=client", "--values", str(FULL)
    ).stdout
    notes = out.split("NOTES:", 1)[1]
    assert "kind: StreamRoute" in notes
    assert "kubectl apply" in notes
    assert "wss://streams.example.com/stream" in notes
    assert "sgw-overview" in notes
    assert "grace period 700s" in notes
