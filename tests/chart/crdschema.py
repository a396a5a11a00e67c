"""Validate StreamRoute objects against the CRD's openAPIV3Schema, offline, like the API server.

jsonschema does the JSON-Schema part. On top of it this module adds the three Kubernetes
extensions the StreamRoute schema uses: ``x-kubernetes-list-type`` (``set`` items and ``map``
keys must be unique), ``x-kubernetes-validations`` (only the ``!self.contains('...')`` CEL form
appears in the schema; any other rule fails loudly so a new rule gets a test), and structural
defaulting (:func:`apply_defaults`, the API server's algorithm: fill missing properties that
have a default, then recurse, also into defaulted values).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from jsonschema import validators

CRD_PATH = Path(__file__).resolve().parents[2] / "charts" / "stream-gateway" / "crds" / "streamroutes.yaml"
_CONTAINS_RULE = re.compile(r"^!self\.contains\('([^']*)'\)$")


def load_crd() -> dict[str, Any]:
    crd = yaml.safe_load(CRD_PATH.read_text())
    assert isinstance(crd, dict)
    return crd


def openapi_schema(crd: dict[str, Any] | None = None) -> dict[str, Any]:
    crd = crd or load_crd()
    (version,) = [v for v in crd["spec"]["versions"] if v["storage"]]
    schema = version["schema"]["openAPIV3Schema"]
    assert isinstance(schema, dict)
    return schema


def _list_type(
    validator: jsonschema.protocols.Validator, value: str, instance: Any, schema: dict[str, Any]
) -> Iterator[jsonschema.ValidationError]:
    if not isinstance(instance, list):
        return
    if value == "set" and len({repr(i) for i in instance}) != len(instance):
        yield jsonschema.ValidationError(f"duplicate entries in a list-type=set: {instance!r}")
    if value == "map":
        keys = [tuple(item.get(k) for k in schema.get("x-kubernetes-list-map-keys", [])) for item in instance]
        if len(set(keys)) != len(keys):
            yield jsonschema.ValidationError(f"duplicate map keys in a list-type=map: {keys!r}")


def _cel(
    validator: jsonschema.protocols.Validator, rules: list[dict[str, str]], instance: Any, schema: dict[str, Any]
) -> Iterator[jsonschema.ValidationError]:
    for rule in rules:
        match = _CONTAINS_RULE.match(rule["rule"])
        if match is None:
            raise NotImplementedError(f"teach tests/chart/crdschema.py the CEL rule {rule['rule']!r}")
        if isinstance(instance, str) and match.group(1) in instance:
            yield jsonschema.ValidationError(rule["message"])


_Base = validators.validator_for({"$schema": "http://json-schema.org/draft-07/schema#"})
StreamRouteValidator = validators.extend(
    _Base, {"x-kubernetes-list-type": _list_type, "x-kubernetes-validations": _cel}
)


def errors(obj: Any, schema: dict[str, Any] | None = None) -> list[str]:
    """Every violation, as 'path: message' lines (empty: valid)."""
    validator = StreamRouteValidator(schema or openapi_schema())
    return [
        f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
    ]


def apply_defaults(obj: Any, schema: dict[str, Any]) -> Any:
    """A defaulted deep copy of ``obj`` (structural defaulting, as kube-apiserver does it)."""
    obj = copy.deepcopy(obj)
    _default(obj, schema)
    return obj


def _default(obj: Any, schema: dict[str, Any]) -> None:
    if isinstance(obj, dict):
        for name, prop in schema.get("properties", {}).items():
            if name not in obj and "default" in prop:
                obj[name] = copy.deepcopy(prop["default"])
            if name in obj:
                _default(obj[name], prop)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for value in obj.values():
                _default(value, extra)
    elif isinstance(obj, list) and "items" in schema:
        for item in obj:
            _default(item, schema["items"])


def walk(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every (path, sub-schema) of a structural schema, depth first."""
    yield path or "<root>", schema
    for name, prop in schema.get("properties", {}).items():
        yield from walk(prop, f"{path}.{name}" if path else name)
    if isinstance(schema.get("items"), dict):
        yield from walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from walk(schema["additionalProperties"], f"{path}{{}}")


def unknown_fields(obj: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Fields the schema does not declare: pruned by the API server, refused by
    ``kubectl apply`` (field validation Strict). ``metadata`` is the API server's business."""
    if not isinstance(obj, dict) or schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    found: list[str] = []
    props: dict[str, Any] = schema.get("properties", {})
    extra = schema.get("additionalProperties")
    for key, value in obj.items():
        where = f"{path}.{key}" if path else key
        if where == "metadata":
            continue
        sub = props.get(key, extra if isinstance(extra, dict) else None)
        if sub is None:
            found.append(where)
        elif isinstance(value, list) and isinstance(sub.get("items"), dict):
            for i, item in enumerate(value):
                found += unknown_fields(item, sub["items"], f"{where}[{i}]")
        else:
            found += unknown_fields(value, sub, where)
    return found
