"""Patch algebra: JSON merge patch, JSON patch, an approximate strategic merge, and apply.

Pure functions over JSON-like values; they never mutate their inputs. Failures raise
`PatchError`, which the emulator turns into 422 (a failed JSON-patch `test` is a 422 on a real
API server, and kopf's finalizer removal depends on that). The strategic merge knows the
`$patch`/`$retainKeys`/`$setElementOrder`/`$deleteFromPrimitiveList` directives and merges
lists of objects by the usual keys (`name`, `mountPath`, `containerPort`, `port`), which
covers kubectl's patches of built-in kinds without the Go structs' patch metadata.
"""

from __future__ import annotations

import copy
from typing import Any

JSON = Any

_MERGE_KEYS = ("name", "mountPath", "containerPort", "port", "type", "ip", "devicePath")


class PatchError(Exception):
    """The patch cannot be applied to this document (answered as 422)."""


def merge_patch(target: JSON, patch: JSON) -> JSON:
    """RFC 7386: objects merge recursively, `null` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result: dict[str, Any] = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _split_pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"invalid JSON pointer: {path!r}")
    return [_unescape(token) for token in path[1:].split("/")]


def _index(container: list[Any], token: str, *, allow_end: bool) -> int:
    if token == "-" and allow_end:
        return len(container)
    if not token.isdigit() or (token != "0" and token.startswith("0")):
        raise PatchError(f"invalid array index: {token!r}")
    index = int(token)
    if index > len(container) or (index == len(container) and not allow_end):
        raise PatchError(f"array index out of range: {index}")
    return index


def _resolve(doc: JSON, tokens: list[str]) -> JSON:
    node = doc
    for token in tokens:
        if isinstance(node, dict):
            if token not in node:
                raise PatchError(f"missing path: /{'/'.join(tokens)}")
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(node, token, allow_end=False)]
        else:
            raise PatchError(f"missing path: /{'/'.join(tokens)}")
    return node


def _add(doc: JSON, tokens: list[str], value: JSON) -> JSON:
    if not tokens:
        return value
    parent = _resolve(doc, tokens[:-1])
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, allow_end=True), value)
    else:
        raise PatchError(f"cannot add to a scalar at /{'/'.join(tokens)}")
    return doc


def _remove(doc: JSON, tokens: list[str]) -> tuple[JSON, JSON]:
    if not tokens:
        raise PatchError("cannot remove the whole document")
    parent = _resolve(doc, tokens[:-1])
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"missing path: /{'/'.join(tokens)}")
        return doc, parent.pop(last)
    if isinstance(parent, list):
        return doc, parent.pop(_index(parent, last, allow_end=False))
    raise PatchError(f"missing path: /{'/'.join(tokens)}")


def json_patch(target: JSON, operations: JSON) -> JSON:
    """RFC 6902: add, remove, replace, move, copy, test; all-or-nothing."""
    if not isinstance(operations, list):
        raise PatchError("a JSON patch must be a list of operations")
    doc = copy.deepcopy(target)
    for operation in operations:
        if not isinstance(operation, dict) or "op" not in operation or "path" not in operation:
            raise PatchError(f"malformed JSON patch operation: {operation!r}")
        op = operation["op"]
        tokens = _split_pointer(operation["path"])
        if op == "add":
            doc = _add(doc, tokens, copy.deepcopy(operation.get("value")))
        elif op == "remove":
            doc, _ = _remove(doc, tokens)
        elif op == "replace":
            doc, _ = _remove(doc, tokens) if tokens else (doc, None)
            doc = _add(doc, tokens, copy.deepcopy(operation.get("value")))
        elif op in ("move", "copy"):
            source = _split_pointer(operation.get("from", ""))
            if op == "move":
                doc, value = _remove(doc, source)
            else:
                value = copy.deepcopy(_resolve(doc, source))
            doc = _add(doc, tokens, value)
        elif op == "test":
            if _resolve(doc, tokens) != operation.get("value"):
                raise PatchError(f"testing value {operation['path']} failed: expected {operation.get('value')!r}")
        else:
            raise PatchError(f"unknown JSON patch operation: {op!r}")
    return doc


def _merge_key(items: list[Any]) -> str | None:
    if not items or not all(isinstance(item, dict) for item in items):
        return None
    for key in _MERGE_KEYS:
        if all(key in item for item in items):
            return key
    return None


def _strategic_list(live: list[Any], patch: list[Any], key: str | None) -> list[Any]:
    if key is None:
        return [strategic_merge(None, item) for item in patch]
    result = copy.deepcopy(live)
    for item in patch:
        directive = item.get("$patch") if isinstance(item, dict) else None
        match_at = next((i for i, old in enumerate(result) if old.get(key) == item.get(key)), None)
        if directive == "delete":
            if match_at is not None:
                result.pop(match_at)
        elif match_at is None:
            result.append(strategic_merge(None, item))
        else:
            result[match_at] = strategic_merge(result[match_at], item)
    return result


def strategic_merge(live: JSON, patch: JSON) -> JSON:
    """An approximation of strategic merge patch for built-in kinds (see the module doc)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if not k.startswith("$")}
    result: dict[str, Any] = copy.deepcopy(live) if isinstance(live, dict) else {}
    retain = patch.get("$retainKeys")
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if isinstance(result.get(field), list):
                result[field] = [v for v in result[field] if v not in value]
        elif key.startswith("$"):
            continue
        elif value is None:
            result.pop(key, None)
        elif isinstance(value, list):
            old = result.get(key)
            merged_key = _merge_key(value + (old if isinstance(old, list) else []))
            result[key] = _strategic_list(old if isinstance(old, list) else [], value, merged_key)
        else:
            result[key] = strategic_merge(result.get(key), value)
    return result


def _leaf_paths(value: JSON, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    if isinstance(value, dict) and value:
        paths: set[tuple[str, ...]] = set()
        for key, sub in value.items():
            paths |= _leaf_paths(sub, (*prefix, key))
        return paths
    return {prefix}


def _drop_path(doc: dict[str, Any], path: tuple[str, ...]) -> None:
    node: Any = doc
    for key in path[:-1]:
        if not isinstance(node, dict) or key not in node:
            return
        node = node[key]
    if isinstance(node, dict):
        node.pop(path[-1], None)


def apply_merge(live: JSON, applied: JSON, previous: JSON | None) -> JSON:
    """Server-side apply for one field manager: drop what it applied before but no longer
    applies, then merge the new configuration in (lists are atomic, objects merge)."""
    result: dict[str, Any] = copy.deepcopy(live) if isinstance(live, dict) else {}
    if isinstance(previous, dict) and isinstance(applied, dict):
        for path in _leaf_paths(previous) - _leaf_paths(applied):
            if path and path[0] not in ("apiVersion", "kind"):
                _drop_path(result, path)
    return _deep_merge(result, applied)


def _deep_merge(base: JSON, overlay: JSON) -> JSON:
    if not isinstance(overlay, dict) or not isinstance(base, dict):
        return copy.deepcopy(overlay)
    result = dict(base)
    for key, value in overlay.items():
        # In an applied configuration, null means "not specified by this manager".
        if value is not None:
            result[key] = _deep_merge(base.get(key), value)
    return result
