"""The Dockerfile and the chart agree: user, entry points, ports. (No Docker engine runs here, so
the image itself is not built in CI; this keeps the two files from drifting apart.)"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from tests.chart.helm import make_helm

REPO = Path(__file__).parents[2]


def test_dockerfile_matches_chart_and_entry_points(tmp_path: Path) -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    user = re.search(r"^USER (\d+):(\d+)$", dockerfile, re.M)
    assert user is not None
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert {"streamgw", "streamgw-operator"} <= set(scripts)
    rendered = make_helm(tmp_path / "helm").render(set_values={"nats.url": "nats://nats:4222"})
    pods = [d["spec"]["template"]["spec"] for d in rendered if d.get("kind") == "Deployment"]
    assert len(pods) == 2  # gateway and operator
    exposed = {int(p) for p in re.findall(r"^EXPOSE (.+)$", dockerfile, re.M)[0].split()}
    for pod in pods:
        assert str(pod["securityContext"]["runAsUser"]) == user.group(1)
        assert pod["containers"][0]["command"][0] in scripts
    gateway = next(p for p in pods if p["containers"][0]["command"][0] == "streamgw")
    assert {p["containerPort"] for p in gateway["containers"][0]["ports"]} == exposed
