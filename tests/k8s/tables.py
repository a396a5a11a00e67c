"""Server-side `meta.k8s.io/v1 Table` output and the JSONPath subset printer columns use.

`kubectl get` asks for `application/json;as=Table;v=v1;g=meta.k8s.io` and prints whatever
columns the server returns: a CRD's `additionalPrinterColumns` (evaluated with JSONPath, e.g.
`.status.conditions[?(@.type=="Ready")].status`, dates rendered as ages like `5m3s`), or
Name/Age for built-in kinds. The cell conversion follows apiextensions-apiserver's
tableconvertor so the printed text matches a real cluster.
"""

from __future__ import annotations

import datetime
import json
import re
from typing import Any

_TOKEN = re.compile(
    r"""\.\.?(?P<field>[A-Za-z0-9_$-]+|\*)"""
    r"""|\[\s*(?:'(?P<sq>[^']*)'|"(?P<dq>[^"]*)")\s*\]"""
    r"""|\[\s*(?P<index>-?\d+)\s*\]"""
    r"""|\[\s*(?P<star>\*)\s*\]"""
    r"""|\[\s*\?\(\s*@(?P<fpath>(?:\.[A-Za-z0-9_-]+)+)\s*"""
    r"""(?:(?P<op>==|!=|<=|>=|<|>)\s*(?P<fval>"[^"]*"|'[^']*'|-?\d+(?:\.\d+)?|true|false))?"""
    r"""\s*\)\s*\]"""
)

NAME_DESCRIPTION = (
    "Name must be unique within a namespace. Is required when creating resources, although some"
    " resources may allow a client to request the generation of an appropriate name"
    " automatically. Name is primarily intended for creation idempotence and configuration"
    " definition. Cannot be updated."
)


class JsonPathError(ValueError):
    """The expression is outside the supported JSONPath subset."""


def _literal(text: str) -> Any:
    if text[0] in "\"'":
        return text[1:-1]
    if text in ("true", "false"):
        return text == "true"
    return float(text) if "." in text else int(text)


def _lookup(node: Any, dotted: str) -> tuple[bool, Any]:
    for key in dotted.strip(".").split("."):
        if not isinstance(node, dict) or key not in node:
            return False, None
        node = node[key]
    return True, node


def _compare(left: Any, op: str, right: Any) -> bool:
    if op == "==":
        return bool(left == right)
    if op == "!=":
        return bool(left != right)
    try:
        if op == "<":
            return bool(left < right)
        if op == ">":
            return bool(left > right)
        if op == "<=":
            return bool(left <= right)
        return bool(left >= right)
    except TypeError:
        return False


def jsonpath(expression: str, data: Any) -> list[Any]:
    """All values matched by a Kubernetes-style JSONPath (braces optional)."""
    text = expression.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1].strip()
    nodes: list[Any] = [data]
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise JsonPathError(f"unsupported JSONPath at {text[position:]!r}")
        position = match.end()
        nodes = _step(nodes, match)
    return nodes


def _step(nodes: list[Any], match: re.Match[str]) -> list[Any]:
    found: list[Any] = []
    field = match.group("field") or match.group("sq") or match.group("dq")
    for node in nodes:
        if field == "*" or match.group("star"):
            if isinstance(node, dict):
                found.extend(node.values())
            elif isinstance(node, list):
                found.extend(node)
        elif field is not None:
            if isinstance(node, dict) and field in node:
                found.append(node[field])
        elif match.group("index") is not None:
            index = int(match.group("index"))
            if isinstance(node, list) and -len(node) <= index < len(node):
                found.append(node[index])
        elif match.group("fpath") and isinstance(node, list):
            for item in node:
                present, value = _lookup(item, match.group("fpath"))
                if not present:
                    continue
                op = match.group("op")
                if op is None or _compare(value, op, _literal(match.group("fval"))):
                    found.append(item)
    return found


def human_duration(seconds: float) -> str:
    """`duration.HumanDuration` from k8s.io/apimachinery, as kubectl prints ages."""
    whole = int(seconds)
    if whole < -1:
        return "<invalid>"
    if whole < 0:
        return "0s"
    if whole < 120:
        return f"{whole}s"
    minutes = whole // 60
    if minutes < 10:
        rest = whole % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = whole // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d{rest}h" if rest else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        rest = (hours // 24) % 365
        return f"{hours // 24 // 365}y{rest}d" if rest else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def age(timestamp: str, now: datetime.datetime | None = None) -> str:
    try:
        then = datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return "<invalid>"
    now = now or datetime.datetime.now(datetime.UTC)
    return human_duration((now - then).total_seconds())


def _cell(column_type: str, value: Any) -> Any:
    if value is None:
        return None
    if column_type == "string":
        return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    if column_type == "integer" and isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    if column_type == "number" and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if column_type == "boolean" and isinstance(value, bool):
        return value
    if column_type == "date" and isinstance(value, str):
        return age(value)
    return None


DEFAULT_COLUMNS: list[dict[str, Any]] = [
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def build_table(
    objects: list[dict[str, Any]],
    columns: list[dict[str, Any]],
    *,
    resource_version: str,
    include_object: str = "Metadata",
) -> dict[str, Any]:
    """A Table of `objects` with a Name column and then `columns` (CRD printer-column dicts)."""
    definitions = [
        {
            "name": "Name",
            "type": "string",
            "format": "name",
            "description": NAME_DESCRIPTION,
            "priority": 0,
        }
    ]
    for column in columns:
        definitions.append(
            {
                "name": column["name"],
                "type": column.get("type", "string"),
                "format": column.get("format", ""),
                "description": column.get("description", ""),
                "priority": column.get("priority", 0),
            }
        )
    rows = []
    for obj in objects:
        cells: list[Any] = [obj.get("metadata", {}).get("name", "")]
        for column in columns:
            try:
                values = jsonpath(column["jsonPath"], obj)
            except JsonPathError:
                values = []
            cells.append(_cell(column.get("type", "string"), values[0]) if values else None)
        row: dict[str, Any] = {"cells": cells}
        if include_object == "Object":
            row["object"] = obj
        elif include_object != "None":
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj.get("metadata", {}),
            }
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": definitions,
        "rows": rows,
    }
