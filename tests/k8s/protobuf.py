"""A small decoder for Kubernetes protobuf request bodies (Namespace, ConfigMap, Secret, ...).

kubectl 1.35 (`create namespace/configmap/secret`) and helm 4 (release Secrets) send
`application/vnd.kubernetes.protobuf`: the magic `k8s\\0`, then a `runtime.Unknown` envelope
whose `raw` field holds the object. Only Namespace, ConfigMap, Secret, ServiceAccount and
DeleteOptions are mapped (field numbers from k8s.io/api's generated.proto); unknown fields are
skipped. Other kinds raise `ProtobufError`, answered 415: so imperative generators such as
`kubectl create deployment` fail here, while `kubectl apply` and helm (JSON) work.
"""

from __future__ import annotations

import base64
import datetime
from collections.abc import Callable, Iterator
from typing import Any

MAGIC = b"k8s\x00"
CONTENT_TYPE = "application/vnd.kubernetes.protobuf"


class ProtobufError(ValueError):
    """The body is not a protobuf message this decoder understands."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ProtobufError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            size, pos = _varint(data, pos)
            value, pos = data[pos : pos + size], pos + size
        elif wire == 1:
            value, pos = int.from_bytes(data[pos : pos + 8], "little"), pos + 8
        elif wire == 5:
            value, pos = int.from_bytes(data[pos : pos + 4], "little"), pos + 4
        else:
            raise ProtobufError(f"unsupported wire type {wire}")
        yield number, value


def _str(value: int | bytes) -> str:
    if not isinstance(value, bytes):
        raise ProtobufError("expected a length-delimited field")
    return value.decode("utf-8")


def _bytes(value: int | bytes) -> bytes:
    if not isinstance(value, bytes):
        raise ProtobufError("expected a length-delimited field")
    return value


def _map_entry(value: int | bytes, convert: Callable[[int | bytes], Any]) -> tuple[str, Any]:
    key, item = "", convert(b"")
    for number, field in _fields(_bytes(value)):
        if number == 1:
            key = _str(field)
        elif number == 2:
            item = convert(field)
    return key, item


def _time(value: int | bytes) -> str:
    seconds = 0
    for number, field in _fields(_bytes(value)):
        if number == 1 and isinstance(field, int):
            seconds = field
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _owner_reference(value: int | bytes) -> dict[str, Any]:
    names = {5: "apiVersion", 1: "kind", 3: "name", 4: "uid"}
    ref: dict[str, Any] = {}
    for number, field in _fields(_bytes(value)):
        if number in names:
            ref[names[number]] = _str(field)
        elif number in (6, 7):
            ref["controller" if number == 6 else "blockOwnerDeletion"] = bool(field)
    return ref


def _object_meta(value: int | bytes) -> dict[str, Any]:
    strings = {1: "name", 2: "generateName", 3: "namespace", 5: "uid", 6: "resourceVersion"}
    meta: dict[str, Any] = {}
    for number, field in _fields(_bytes(value)):
        # Go encodes unset optional strings and times as empty fields: they mean "absent".
        if number in strings and field:
            meta[strings[number]] = _str(field)
        elif number in (8, 9) and field:
            meta["creationTimestamp" if number == 8 else "deletionTimestamp"] = _time(field)
        elif number in (11, 12):
            key, item = _map_entry(field, _str)
            meta.setdefault("labels" if number == 11 else "annotations", {})[key] = item
        elif number == 13:
            meta.setdefault("ownerReferences", []).append(_owner_reference(field))
        elif number == 14:
            meta.setdefault("finalizers", []).append(_str(field))
    return meta


def _b64(value: int | bytes) -> str:
    return base64.b64encode(_bytes(value)).decode("ascii")


def _secret(raw: bytes) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for number, field in _fields(raw):
        if number == 1:
            body["metadata"] = _object_meta(field)
        elif number in (2, 4):
            key, item = _map_entry(field, _b64 if number == 2 else _str)
            body.setdefault("data" if number == 2 else "stringData", {})[key] = item
        elif number == 3 and field:
            body["type"] = _str(field)
        elif number == 5:
            body["immutable"] = bool(field)
    return body


def _config_map(raw: bytes) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for number, field in _fields(raw):
        if number == 1:
            body["metadata"] = _object_meta(field)
        elif number in (2, 3):
            key, item = _map_entry(field, _str if number == 2 else _b64)
            body.setdefault("data" if number == 2 else "binaryData", {})[key] = item
        elif number == 4:
            body["immutable"] = bool(field)
    return body


def _namespace(raw: bytes) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for number, field in _fields(raw):
        if number == 1:
            body["metadata"] = _object_meta(field)
        elif number == 2:
            finalizers = [_str(f) for n, f in _fields(_bytes(field)) if n == 1]
            body["spec"] = {"finalizers": finalizers} if finalizers else {}
    return body


def _service_account(raw: bytes) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for number, field in _fields(raw):
        if number == 1:
            body["metadata"] = _object_meta(field)
        elif number in (2, 3):
            names = [_str(f) for n, f in _fields(_bytes(field)) if n == (3 if number == 2 else 1)]
            key = "secrets" if number == 2 else "imagePullSecrets"
            body.setdefault(key, []).append({"name": names[0] if names else ""})
        elif number == 4:
            body["automountServiceAccountToken"] = bool(field)
    return body


def _delete_options(raw: bytes) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for number, field in _fields(raw):
        if number == 1 and isinstance(field, int):
            body["gracePeriodSeconds"] = field
        elif number == 2:
            names = {1: "uid", 2: "resourceVersion"}
            body["preconditions"] = {names[n]: _str(f) for n, f in _fields(_bytes(field)) if n in names}
        elif number == 4:
            body["propagationPolicy"] = _str(field)
        elif number == 5:
            body.setdefault("dryRun", []).append(_str(field))
    return body


_DECODERS: dict[tuple[str, str], Callable[[bytes], dict[str, Any]]] = {
    ("v1", "Secret"): _secret,
    ("v1", "ConfigMap"): _config_map,
    ("v1", "Namespace"): _namespace,
    ("v1", "ServiceAccount"): _service_account,
    ("v1", "DeleteOptions"): _delete_options,
    ("meta.k8s.io/v1", "DeleteOptions"): _delete_options,
}


def decode(data: bytes) -> dict[str, Any]:
    """Decode an enveloped protobuf body into the JSON form of the object."""
    if not data.startswith(MAGIC):
        raise ProtobufError("missing the k8s protobuf magic prefix")
    api_version = kind = ""
    raw = b""
    for number, field in _fields(data[len(MAGIC) :]):
        if number == 1:
            for sub_number, sub_field in _fields(_bytes(field)):
                if sub_number == 1:
                    api_version = _str(sub_field)
                elif sub_number == 2:
                    kind = _str(sub_field)
        elif number == 2:
            raw = _bytes(field)
    decoder = _DECODERS.get((api_version, kind))
    if decoder is None:
        raise ProtobufError(f"no protobuf decoder for {api_version}/{kind}")
    return {"apiVersion": api_version, "kind": kind, **decoder(raw)}


# What clients ask for is `...spec.v2@v1.0+protobuf`, but Go's mime parser rejects the `@`
# in a response header, and client-go only needs the raw bytes.
OPENAPI_V2_CONTENT_TYPE = "application/octet-stream"


def openapi_v2_document(version: str) -> bytes:
    """An empty gnostic `openapi_v2.Document` (swagger=1, info=2{title=1, version=2}).

    kubectl downloads /openapi/v2 only as protobuf, for client-side validation of kinds the
    server cannot validate (e.g. a ServiceMonitor without its CRD). With no definitions every
    lookup misses and kubectl skips client-side validation, so the real error surfaces next:
    "no matches for kind ... ensure CRDs are installed first"."""
    info = _len_field(1, b"Kubernetes") + _len_field(2, version.encode())
    return _len_field(1, b"2.0") + _len_field(2, info)


def encode_for_tests(api_version: str, kind: str, raw: bytes) -> bytes:
    """Wrap an already-encoded message in the envelope (used by the emulator's own tests)."""
    type_meta = _len_field(1, api_version.encode()) + _len_field(2, kind.encode())
    return MAGIC + _len_field(1, type_meta) + _len_field(2, raw)


def _len_field(number: int, payload: bytes) -> bytes:
    return _encode_varint(number << 3 | 2) + _encode_varint(len(payload)) + payload


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def len_field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field: for building test messages."""
    return _len_field(number, payload)
