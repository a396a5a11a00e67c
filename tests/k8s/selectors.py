"""Label and field selectors, parsed as kube-apiserver parses them.

kubectl wait and delete --wait watch with `fieldSelector=metadata.name=X`, helm lists release
Secrets with `labelSelector=owner=helm,name=X`, and kubectl describe lists Events by
`involvedObject.*`. A parse error is a 400, as on a real server; so is a field selector on a
custom resource field that is neither `metadata.name`/`metadata.namespace` nor one of the CRD's
`selectableFields`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from typing import Any

from tests.k8s.errors import bad_request

Predicate = Callable[[dict[str, Any]], bool]

_LABEL_SET = re.compile(r"^\s*(!?)([A-Za-z0-9_./-]+)\s*(?:(in|notin)\s*\(([^)]*)\))?\s*$")
_LABEL_CMP = re.compile(r"^\s*([A-Za-z0-9_./-]+)\s*(==|=|!=)\s*([A-Za-z0-9_.-]*)\s*$")
_FIELD_CMP = re.compile(r"^\s*([A-Za-z0-9_./\[\]-]+)\s*(==|=|!=)\s*(.*?)\s*$")


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside `in (...)` parentheses."""
    parts: list[str] = []
    depth = 0
    current = ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [part for part in parts if part.strip()]


def _label_term(term: str) -> Predicate:
    if match := _LABEL_CMP.match(term):
        key, op, value = match.groups()
        if op == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    if match := _LABEL_SET.match(term):
        negated, key, op, values_text = match.groups()
        if op is None:
            if negated:
                return lambda labels: key not in labels
            return lambda labels: key in labels
        if negated:
            raise bad_request(f"unable to parse requirement: {term!r}")
        values = {v.strip() for v in values_text.split(",") if v.strip()}
        if op == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    raise bad_request(f"unable to parse requirement: found '{term}', expected: selector")


def label_selector(text: str | None) -> Predicate:
    """A predicate over a whole object (it reads `metadata.labels`)."""
    if not text:
        return lambda obj: True
    terms = [_label_term(term) for term in _split_top_level(text)]

    def check(obj: dict[str, Any]) -> bool:
        labels = obj.get("metadata", {}).get("labels") or {}
        return all(term(labels) for term in terms)

    return check


def _field_value(obj: dict[str, Any], path: str) -> str:
    node: Any = obj
    for key in path.split("."):
        if not isinstance(node, dict):
            return ""
        node = node.get(key)
    if node is None:
        return ""
    if isinstance(node, bool):
        return "true" if node else "false"
    return str(node)


def field_selector(text: str | None, allowed: Collection[str] | None = None) -> Predicate:
    """A predicate over a whole object; `allowed=None` accepts any field path."""
    if not text:
        return lambda obj: True
    terms: list[tuple[str, bool, str]] = []
    for term in _split_top_level(text):
        match = _FIELD_CMP.match(term)
        if not match:
            raise bad_request(f"invalid field selector: {term!r}")
        path, op, value = match.groups()
        path = path.lstrip(".")
        if allowed is not None and path not in allowed:
            raise bad_request(f'field label not supported: "{path}"')
        terms.append((path, op == "!=", value))

    def check(obj: dict[str, Any]) -> bool:
        return all((_field_value(obj, path) == value) != negated for path, negated, value in terms)

    return check
