"""Per-kind rules the API server's registry strategies apply (the built-in kinds' Go code).

Owns what differs between kinds rather than the CRUD flow: name formats per kind, the ObjectMeta
field set (for strict decoding), Secret `stringData` folding, Namespace finalizers/phase, CRD
validation and the status the CRD controllers report. `apiserver` calls these; they are pure.
"""

from __future__ import annotations

import base64
import copy
import datetime
import re
from typing import Any

from tests.k8s import errors
from tests.k8s.registry import ResourceSpec

CRD_GROUP, CRD_PLURAL = "apiextensions.k8s.io", "customresourcedefinitions"
CRD_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"
OBJECT_META_KEYS = {
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
}
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or"
    " '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used"
    " for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and"
    " must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex"
    " used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def typed_copy(spec: ResourceSpec, body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise errors.bad_request("the request body must be a JSON or YAML object")
    obj = copy.deepcopy(body)
    for field, expected in (("apiVersion", spec.api_version), ("kind", spec.kind)):
        if obj.get(field) not in (None, "", expected):
            raise errors.bad_request(
                f"the API version in the data ({obj.get('apiVersion')}) does not match the"
                f" expected API version ({spec.api_version})"
                if field == "apiVersion"
                else f"the kind in the data ({obj.get('kind')}) does not match the expected kind ({spec.kind})"
            )
        obj[field] = expected
    if not isinstance(obj.setdefault("metadata", {}), dict):
        raise errors.bad_request("metadata must be an object")
    return obj


def validate_name(spec: ResourceSpec, name: str) -> None:
    if spec.group == "rbac.authorization.k8s.io":
        ok, message = (
            "/" not in name and "%" not in name and name not in (".", ".."),
            ("may not contain '/' or '%'"),
        )
    elif spec.storage in (("", "namespaces"), ("", "services")):
        ok, message = bool(_LABEL.match(name)) and len(name) <= 63, LABEL_MSG
    else:
        ok, message = bool(_SUBDOMAIN.match(name)) and len(name) <= 253, SUBDOMAIN_MSG
    if not ok:
        raise errors.invalid(
            spec.group,
            spec.kind,
            name,
            [("FieldValueInvalid", "metadata.name", f'Invalid value: "{name}": {message}')],
        )


def normalize(spec: ResourceSpec, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
    """Per-kind defaulting that built-in registry strategies do."""
    if spec.storage == ("", "secrets"):
        string_data = obj.pop("stringData", None) or {}
        data = obj.setdefault("data", {}) if string_data else obj.get("data")
        for key, value in string_data.items():
            assert data is not None
            data[key] = base64.b64encode(str(value).encode()).decode()
        if not obj.get("type"):
            obj["type"] = "Opaque"
    elif spec.storage == ("", "namespaces"):
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        if old is None:
            obj["status"] = {"phase": "Active"}


def validate_crd(crd: dict[str, Any]) -> None:
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    name = crd["metadata"].get("name", "")
    causes: list[tuple[str, str, str]] = []
    expected = f"{names.get('plural')}.{spec.get('group')}"
    if name != expected:
        causes.append(
            (
                "FieldValueInvalid",
                "metadata.name",
                f'Invalid value: "{name}": must be spec.names.plural+"."+spec.group',
            )
        )
    if not names.get("kind"):
        causes.append(("FieldValueRequired", "spec.names.kind", "Required value"))
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        causes.append(
            (
                "FieldValueNotSupported",
                "spec.scope",
                f'Unsupported value: "{spec.get("scope")}": supported values: "Cluster", "Namespaced"',
            )
        )
    versions = spec.get("versions") or []
    if sum(1 for v in versions if v.get("storage")) != 1:
        causes.append(
            (
                "FieldValueInvalid",
                "spec.versions",
                "Invalid value: must have exactly one version marked as storage version",
            )
        )
    for index, version in enumerate(versions):
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        if not isinstance(schema, dict):
            causes.append(
                (
                    "FieldValueRequired",
                    f"spec.versions[{index}].schema.openAPIV3Schema",
                    "Required value: schemas are required",
                )
            )
        elif schema.get("type") != "object":
            causes.append(
                (
                    "FieldValueRequired",
                    f"spec.versions[{index}].schema.openAPIV3Schema.type",
                    "Required value: must not be empty at the root",
                )
            )
    if causes:
        raise errors.invalid(CRD_GROUP, "CustomResourceDefinition", name, causes)


def crd_status(crd: dict[str, Any]) -> dict[str, Any]:
    """The status the CRD controllers report once names are accepted and it is established."""
    now = now_rfc3339()
    names = crd["spec"]["names"]
    condition = {"status": "True", "lastTransitionTime": now}
    return {
        "acceptedNames": {**names, "listKind": names.get("listKind", names["kind"] + "List")},
        "conditions": [
            {"type": "NamesAccepted", "reason": "NoConflicts", "message": "no conflicts found", **condition},
            {
                "type": "Established",
                "reason": "InitialNamesAccepted",
                "message": "the initial names have been accepted",
                **condition,
            },
        ],
        "storedVersions": [v["name"] for v in crd["spec"]["versions"] if v.get("storage")],
    }
