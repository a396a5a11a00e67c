"""HTTP plumbing of the emulated API server: URL routing, body decoding, JSON responses.

`parse_path` understands every API path shape, including the ones kmock 0.8 mis-parses
(`/api/v1/namespaces`, `/api/v1/namespaces/NAME/status`). Bodies are decoded as Go would read
them into JSON: YAML timestamps stay strings. Nothing here knows about objects or storage.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import aiohttp.web
import yaml


class GoYamlLoader(yaml.SafeLoader):
    """YAML as Go reads it into JSON: timestamps stay strings (no datetime objects)."""


GoYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def decode_text(content_type: str, text: str) -> Any:
    """A text body as JSON or YAML by its content type; None for other texts."""
    if "yaml" in content_type:
        return yaml.load(text, Loader=GoYamlLoader)  # a SafeLoader: builds no arbitrary objects
    try:
        return json.loads(text)
    except ValueError:
        if "json" in content_type:
            raise
        return None


@dataclasses.dataclass(frozen=True)
class Route:
    """A parsed API path; `plural is None` means a discovery document."""

    group: str
    version: str | None
    plural: str | None = None
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None


def parse_path(path: str) -> Route | None:
    segments = [s for s in path.strip("/").split("/") if s]
    if not segments or segments[0] not in ("api", "apis"):
        return None
    if segments[0] == "api":
        group, rest = "", segments[1:]
    elif len(segments) == 1:
        return Route(group="", version=None)  # `/apis` itself
    else:
        group, rest = segments[1], segments[2:]
    if not rest:
        return Route(group=group, version=None)
    version, rest = rest[0], rest[1:]
    namespace = None
    cluster_ns_sub = len(rest) == 3 and rest[2] in ("status", "finalize")
    if len(rest) >= 3 and rest[0] == "namespaces" and not cluster_ns_sub:
        namespace, rest = rest[1], rest[2:]
    if not rest:
        return Route(group=group, version=version)
    return Route(
        group=group,
        version=version,
        plural=rest[0],
        namespace=namespace,
        name=rest[1] if len(rest) > 1 else None,
        subresource="/".join(rest[2:]) or None,
    )


def json_response(
    payload: Any, status: int = 200, *, warnings: list[str] | None = None, content_type: str = ""
) -> aiohttp.web.Response:
    response = aiohttp.web.Response(body=json.dumps(payload).encode(), status=status)
    response.headers["Content-Type"] = content_type or "application/json"
    for warning in warnings or []:
        response.headers.add("Warning", f"299 - {json.dumps(warning)}")
    return response
