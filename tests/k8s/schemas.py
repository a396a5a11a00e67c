"""Structural-schema processing of custom resources, in kube-apiserver's order.

For a CRD version's `openAPIV3Schema`: prune unknown fields (reporting them, so the emulator can
refuse them under `fieldValidation=Strict` as kubectl's default asks), drop nulls that are not
`nullable`, apply `default`s, then validate types, enum, pattern, lengths, bounds, required,
items, additionalProperties, list types and allOf/anyOf/oneOf/not. Causes come out as
(reason, field, message) triples worded like apiextensions-apiserver's.
CEL rules (`x-kubernetes-validations`) are not evaluated.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

Schema = dict[str, Any]
Cause = tuple[str, str, str]

_ROOT_KEYS = ("apiVersion", "kind", "metadata")


def _show(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def prune(obj: dict[str, Any], schema: Schema) -> tuple[dict[str, Any], list[str]]:
    """Return a pruned copy (with non-nullable nulls dropped) and the unknown field paths."""
    unknown: list[str] = []
    result = copy.deepcopy(obj)
    root_props = schema.get("properties", {})
    for key in list(result):
        if key in _ROOT_KEYS:
            continue
        if key in root_props:
            result[key] = _prune(result[key], root_props[key], key, unknown)
        elif not schema.get("x-kubernetes-preserve-unknown-fields"):
            del result[key]
            unknown.append(key)
    return result, unknown


def _prune(value: Any, schema: Schema, path: str, unknown: list[str]) -> Any:
    if isinstance(value, dict) and not schema.get("x-kubernetes-embedded-resource"):
        props: dict[str, Schema] = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
        for key in list(value):
            sub = props.get(key)
            if sub is None and isinstance(extra, dict):
                sub = extra
            if value[key] is None and sub is not None and not sub.get("nullable"):
                del value[key]
            elif sub is not None:
                value[key] = _prune(value[key], sub, _join(path, key), unknown)
            elif not (preserve or extra is True):
                del value[key]
                unknown.append(_join(path, key))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            value[index] = _prune(item, schema["items"], f"{path}[{index}]", unknown)
    return value


def apply_defaults(value: Any, schema: Schema) -> Any:
    """Fill absent properties that declare a `default`, recursively (in place)."""
    if isinstance(value, dict):
        props: dict[str, Schema] = schema.get("properties", {})
        for key, prop in props.items():
            if key not in value and "default" in prop:
                value[key] = copy.deepcopy(prop["default"])
        for key in list(value):
            sub: Schema | None = props.get(key)
            if sub is None and isinstance(schema.get("additionalProperties"), dict):
                sub = schema["additionalProperties"]
            if sub is not None:
                value[key] = apply_defaults(value[key], sub)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            value[index] = apply_defaults(item, schema["items"])
    return value


def validate(obj: dict[str, Any], schema: Schema) -> list[Cause]:
    causes: list[Cause] = []
    root = dict(schema)
    root["properties"] = {k: v for k, v in schema.get("properties", {}).items() if k not in _ROOT_KEYS}
    root["required"] = [k for k in schema.get("required", []) if k not in _ROOT_KEYS]
    _validate({k: v for k, v in obj.items() if k not in _ROOT_KEYS}, root, "", causes)
    return causes


def _type_ok(value: Any, schema: Schema) -> bool:
    if schema.get("x-kubernetes-int-or-string"):
        return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))
    wanted = schema.get("type")
    if wanted is None:
        return True
    if wanted == "object":
        return isinstance(value, dict)
    if wanted == "array":
        return isinstance(value, list)
    if wanted == "string":
        return isinstance(value, str)
    if wanted == "boolean":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if wanted == "integer":
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if wanted == "number":
        return isinstance(value, int | float)
    return True


def _validate(value: Any, schema: Schema, path: str, causes: list[Cause]) -> None:
    where = path or "<root>"
    if value is None:
        if not schema.get("nullable"):
            causes.append(
                (
                    "FieldValueInvalid",
                    path,
                    f'Invalid value: "null": {where} in body must be of type {schema.get("type", "object")}: "null"',
                )
            )
        return
    if not _type_ok(value, schema):
        causes.append(
            (
                "FieldValueInvalid",
                path,
                f"Invalid value: {_show(value)}: {where} in body must be of type "
                f"{schema.get('type')}: {_show(type(value).__name__)}",
            )
        )
        return
    _check_enum_and_scalars(value, schema, path, causes)
    if isinstance(value, dict):
        _check_object(value, schema, path, causes)
    elif isinstance(value, list):
        _check_array(value, schema, path, causes)
    _check_combinators(value, schema, path, causes)


def _check_enum_and_scalars(value: Any, schema: Schema, path: str, causes: list[Cause]) -> None:
    where = path or "<root>"
    if "enum" in schema and value not in schema["enum"]:
        supported = ", ".join(_show(v) for v in schema["enum"])
        causes.append(
            ("FieldValueNotSupported", path, f"Unsupported value: {_show(value)}: supported values: {supported}")
        )
    if isinstance(value, str):
        if "pattern" in schema and re.search(schema["pattern"], value) is None:
            causes.append(
                (
                    "FieldValueInvalid",
                    path,
                    f"Invalid value: {_show(value)}: {where} in body should match '{schema['pattern']}'",
                )
            )
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            causes.append(("FieldValueTooLong", path, f"Too long: may not be more than {schema['maxLength']} bytes"))
        if "minLength" in schema and len(value) < schema["minLength"]:
            causes.append(
                (
                    "FieldValueInvalid",
                    path,
                    f"Invalid value: {_show(value)}: {where} in body should be at least"
                    f" {schema['minLength']} chars long",
                )
            )
    if isinstance(value, int | float) and not isinstance(value, bool):
        _check_bounds(value, schema, path, causes)


def _check_bounds(value: float, schema: Schema, path: str, causes: list[Cause]) -> None:
    where = path or "<root>"
    shown = _show(value)
    if "maximum" in schema:
        limit = schema["maximum"]
        if schema.get("exclusiveMaximum") and value >= limit:
            causes.append(
                ("FieldValueInvalid", path, f"Invalid value: {shown}: {where} in body should be less than {limit}")
            )
        elif value > limit:
            causes.append(
                (
                    "FieldValueInvalid",
                    path,
                    f"Invalid value: {shown}: {where} in body should be less than or equal to {limit}",
                )
            )
    if "minimum" in schema:
        limit = schema["minimum"]
        if schema.get("exclusiveMinimum") and value <= limit:
            causes.append(
                ("FieldValueInvalid", path, f"Invalid value: {shown}: {where} in body should be greater than {limit}")
            )
        elif value < limit:
            causes.append(
                (
                    "FieldValueInvalid",
                    path,
                    f"Invalid value: {shown}: {where} in body should be greater than or equal to {limit}",
                )
            )
    if schema.get("multipleOf") and value % schema["multipleOf"] != 0:
        causes.append(
            (
                "FieldValueInvalid",
                path,
                f"Invalid value: {shown}: {where} in body should be a multiple of {schema['multipleOf']}",
            )
        )


def _check_object(value: dict[str, Any], schema: Schema, path: str, causes: list[Cause]) -> None:
    where = path or "<root>"
    for key in schema.get("required", []):
        if key not in value:
            causes.append(("FieldValueRequired", _join(path, key), "Required value"))
    props: dict[str, Schema] = schema.get("properties", {})
    extra = schema.get("additionalProperties")
    for key, item in value.items():
        if key in props:
            _validate(item, props[key], _join(path, key), causes)
        elif isinstance(extra, dict):
            _validate(item, extra, f"{path}[{key}]" if path else key, causes)
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        causes.append(
            ("FieldValueTooMany", path, f"Too many: {len(value)}: must have at most {schema['maxProperties']} items")
        )
    if "minProperties" in schema and len(value) < schema["minProperties"]:
        causes.append(
            (
                "FieldValueInvalid",
                path,
                f"Invalid value: {len(value)}: {where} in body should have at least"
                f" {schema['minProperties']} properties",
            )
        )


def _check_array(value: list[Any], schema: Schema, path: str, causes: list[Cause]) -> None:
    where = path or "<root>"
    if isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            _validate(item, schema["items"], f"{path}[{index}]", causes)
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        causes.append(
            ("FieldValueTooMany", path, f"Too many: {len(value)}: must have at most {schema['maxItems']} items")
        )
    if "minItems" in schema and len(value) < schema["minItems"]:
        causes.append(
            (
                "FieldValueInvalid",
                path,
                f"Invalid value: {len(value)}: {where} in body should have at least {schema['minItems']} items",
            )
        )
    list_type = schema.get("x-kubernetes-list-type")
    keys = schema.get("x-kubernetes-list-map-keys") or []
    seen: list[Any] = []
    for index, item in enumerate(value):
        identity = (
            item
            if list_type == "set"
            else tuple(item.get(k) for k in keys)
            if list_type == "map" and isinstance(item, dict)
            else None
        )
        if identity is None:
            continue
        if identity in seen:
            causes.append(("FieldValueDuplicate", f"{path}[{index}]", f"Duplicate value: {_show(item)}"))
        seen.append(identity)


def _check_combinators(value: Any, schema: Schema, path: str, causes: list[Cause]) -> None:
    def passes(sub: Schema) -> bool:
        trial: list[Cause] = []
        _validate(value, {**sub, "type": sub.get("type")}, path, trial)
        return not trial

    for sub in schema.get("allOf", []):
        _validate(value, sub, path, causes)
    if "anyOf" in schema and not any(passes(sub) for sub in schema["anyOf"]):
        causes.append(
            (
                "FieldValueInvalid",
                path,
                f"Invalid value: {_show(value)}: {path or '<root>'} in body must match at least one schema (anyOf)",
            )
        )
    if "oneOf" in schema and sum(passes(sub) for sub in schema["oneOf"]) != 1:
        causes.append(
            (
                "FieldValueInvalid",
                path,
                f"Invalid value: {_show(value)}: {path or '<root>'} in body must match exactly one schema (oneOf)",
            )
        )
    if "not" in schema and passes(schema["not"]):
        causes.append(
            (
                "FieldValueInvalid",
                path,
                f"Invalid value: {_show(value)}: {path or '<root>'} in body should not match the schema (not)",
            )
        )
