"""Which resources the emulated API server serves, and how it describes them to clients.

Owns the resource catalogue (built-in kinds from kmock's bundled discovery dump, minus the
add-on groups a vanilla cluster lacks, plus whatever CustomResourceDefinitions register), and
renders it as legacy discovery (`/api`, `/apis`, `/apis/G/V`) and as a minimal OpenAPI v3
(`/openapi/v3` and one document per group-version). The OpenAPI documents exist mainly so
kubectl's default `--validate=strict` sees PATCH operations that accept `fieldValidation` and
hands validation to the server; CRD schemas are included so `kubectl explain` has something.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import gzip
import hashlib
import importlib.resources
import json
import re
from typing import Any

from kmock import ResourcesArray

SERVER_VERSION = {
    "major": "1",
    "minor": "35",
    "emulationMajor": "1",
    "emulationMinor": "35",
    "minCompatibilityMajor": "1",
    "minCompatibilityMinor": "34",
    "gitVersion": "v1.35.2",
    "gitCommit": "0a1b2c3d4e5f60718293a4b5c6d7e8f901234567",
    "gitTreeState": "clean",
    "buildDate": "2026-02-10T12:00:00Z",
    "goVersion": "go1.25.6",
    "compiler": "gc",
    "platform": "linux/amd64",
}
_SKIPPED_GROUPS = {"gateway.networking.k8s.io", "metrics.k8s.io"}
_CR_VERBS = ["delete", "deletecollection", "get", "list", "patch", "create", "update", "watch"]
_VERSION_RE = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")
_OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


@dataclasses.dataclass
class ResourceSpec:
    """One served resource in one group-version."""

    group: str
    version: str
    plural: str
    kind: str
    singular: str
    namespaced: bool
    verbs: list[str]
    short_names: list[str] = dataclasses.field(default_factory=list)
    categories: list[str] = dataclasses.field(default_factory=list)
    subresources: set[str] = dataclasses.field(default_factory=set)
    schema: dict[str, Any] | None = None
    printer_columns: list[dict[str, Any]] | None = None
    selectable_fields: list[str] | None = None
    custom: bool = False

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def storage(self) -> tuple[str, str]:
        """All versions of one resource share one storage, as in etcd."""
        return self.group, self.plural

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources


def version_priority(version: str) -> tuple[int, int, int]:
    """Kubernetes version order: GA before beta before alpha, higher numbers first."""
    match = _VERSION_RE.match(version)
    if match is None:
        return (3, 0, 0)
    major, stage, minor = match.groups()
    rank = {None: 0, "beta": 1, "alpha": 2}[stage]
    return (rank, -int(major), -int(minor or 0))


@functools.cache
def _bundled_resources() -> dict[Any, Any]:
    """kmock's discovery dump of a K3s cluster; read without its deprecated `read_binary`."""
    blob = importlib.resources.files("kmock._internal").joinpath("resources.json.gz").read_bytes()
    bundled = ResourcesArray()
    bundled.load_data(gzip.decompress(blob))
    return dict(bundled._resources)


class Registry:
    """The resource catalogue; the emulator mutates it when CRDs come and go."""

    def __init__(self) -> None:
        self._specs: dict[tuple[str, str, str], ResourceSpec] = {}
        for ref, info in _bundled_resources().items():
            group, version, plural = ref.group or "", ref.version or "", ref.plural or ""
            if group in _SKIPPED_GROUPS:
                continue
            kind = info.kind or plural.capitalize()
            self._specs[group, version, plural] = ResourceSpec(
                group=group,
                version=version,
                plural=plural,
                kind=kind,
                singular=info.singular or kind.lower(),
                namespaced=bool(info.namespaced),
                verbs=sorted(info.verbs),
                short_names=sorted(info.shortnames),
                categories=sorted(info.categories),
                subresources=set(info.subresources),
            )

    def get(self, group: str, version: str, plural: str) -> ResourceSpec | None:
        return self._specs.get((group, version, plural))

    def all(self) -> list[ResourceSpec]:
        return list(self._specs.values())

    def versions_of(self, group: str) -> list[str]:
        versions = {spec.version for spec in self._specs.values() if spec.group == group}
        return sorted(versions, key=version_priority)

    def groups(self) -> list[str]:
        seen: dict[str, None] = {}
        for spec in self._specs.values():
            if spec.group:
                seen.setdefault(spec.group)
        return list(seen)

    def by_storage(self, group: str, plural: str) -> list[ResourceSpec]:
        return [s for s in self._specs.values() if s.storage == (group, plural)]

    # --- CRDs -----------------------------------------------------------------------------

    def register_crd(self, crd: dict[str, Any]) -> list[ResourceSpec]:
        """(Re-)register every served version of a CRD; returns the new specs."""
        spec = crd.get("spec", {})
        names = spec.get("names", {})
        group, plural = spec.get("group", ""), names.get("plural", "")
        self.unregister(group, plural)
        registered = []
        for version in spec.get("versions", []):
            if not version.get("served", True):
                continue
            subresources = set((version.get("subresources") or {}).keys())
            resource = ResourceSpec(
                group=group,
                version=version["name"],
                plural=plural,
                kind=names.get("kind", ""),
                singular=names.get("singular") or names.get("kind", "").lower(),
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                verbs=list(_CR_VERBS),
                short_names=list(names.get("shortNames", [])),
                categories=list(names.get("categories", [])),
                subresources=subresources,
                schema=copy.deepcopy((version.get("schema") or {}).get("openAPIV3Schema")),
                printer_columns=copy.deepcopy(version.get("additionalPrinterColumns")),
                selectable_fields=[f["jsonPath"].lstrip(".") for f in version.get("selectableFields", [])],
                custom=True,
            )
            self._specs[group, resource.version, plural] = resource
            registered.append(resource)
        return registered

    def unregister(self, group: str, plural: str) -> None:
        for key in [k for k, s in self._specs.items() if s.storage == (group, plural)]:
            del self._specs[key]

    # --- discovery ------------------------------------------------------------------------

    def api_group_list(self) -> dict[str, Any]:
        return {
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [self.api_group(group) for group in self.groups()],
        }

    def api_group(self, group: str) -> dict[str, Any]:
        versions = [{"groupVersion": f"{group}/{version}", "version": version} for version in self.versions_of(group)]
        return {
            "kind": "APIGroup",
            "apiVersion": "v1",
            "name": group,
            "versions": versions,
            "preferredVersion": versions[0] if versions else {},
        }

    def api_resource_list(self, group: str, version: str) -> dict[str, Any] | None:
        specs = [s for s in self._specs.values() if (s.group, s.version) == (group, version)]
        if not specs:
            return None
        resources: list[dict[str, Any]] = []
        for spec in sorted(specs, key=lambda s: s.plural):
            resources.append(
                {
                    "name": spec.plural,
                    "singularName": spec.singular,
                    "namespaced": spec.namespaced,
                    "kind": spec.kind,
                    "verbs": spec.verbs,
                    **({"shortNames": spec.short_names} if spec.short_names else {}),
                    **({"categories": spec.categories} if spec.categories else {}),
                }
            )
            for sub in sorted(spec.subresources):
                resources.append(
                    {
                        "name": f"{spec.plural}/{sub}",
                        "singularName": "",
                        "namespaced": spec.namespaced,
                        "kind": spec.kind,
                        "verbs": ["get", "patch", "update"],
                    }
                )
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version,
            "resources": resources,
        }

    # --- OpenAPI v3 -----------------------------------------------------------------------

    def openapi_root(self) -> dict[str, Any]:
        paths: dict[str, Any] = {}
        for group, version in sorted({(s.group, s.version) for s in self._specs.values()}):
            key = f"apis/{group}/{version}" if group else f"api/{version}"
            digest = (
                hashlib.sha256(json.dumps(self.openapi_document(group, version), sort_keys=True).encode())
                .hexdigest()[:32]
                .upper()
            )
            paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={digest}"}
        return {"paths": paths}

    def openapi_document(self, group: str, version: str) -> dict[str, Any] | None:
        specs = [s for s in self._specs.values() if (s.group, s.version) == (group, version)]
        if not specs:
            return None
        paths: dict[str, Any] = {}
        schemas: dict[str, Any] = {_OBJECT_META: _object_meta_schema()}
        for spec in specs:
            gvk = {"group": group, "version": version, "kind": spec.kind}
            definition = _definition_name(group, version, spec.kind)
            schemas[definition] = _kind_schema(spec, gvk)
            ref = {"$ref": f"#/components/schemas/{definition}"}
            base = f"/apis/{group}/{version}" if group else f"/api/{version}"
            scope = "/namespaces/{namespace}" if spec.namespaced else ""
            collection = f"{base}{scope}/{spec.plural}"
            paths[collection] = {
                "get": _operation("list", gvk, ref, []),
                "post": _operation("post", gvk, ref, _WRITE_PARAMS),
            }
            paths[f"{collection}/{{name}}"] = {
                "get": _operation("get", gvk, ref, []),
                "put": _operation("put", gvk, ref, _WRITE_PARAMS),
                "patch": _operation("patch", gvk, ref, [*_WRITE_PARAMS, _FORCE_PARAM]),
                "delete": _operation("delete", gvk, ref, []),
            }
            if spec.has_status:
                paths[f"{collection}/{{name}}/status"] = {
                    "get": _operation("get", gvk, ref, []),
                    "patch": _operation("patch", gvk, ref, [*_WRITE_PARAMS, _FORCE_PARAM]),
                }
        return {
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": "v1.35.2"},
            "paths": paths,
            "components": {"schemas": schemas},
        }


def _query(name: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": True}}


_WRITE_PARAMS = [_query("dryRun"), _query("fieldManager"), _query("fieldValidation")]
_FORCE_PARAM = {"name": "force", "in": "query", "schema": {"type": "boolean"}}


def _operation(action: str, gvk: dict[str, str], ref: dict[str, str], params: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "parameters": params,
        "responses": {"200": {"content": {"application/json": {"schema": ref}}}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk,
    }


def _definition_name(group: str, version: str, kind: str) -> str:
    if not group:
        return f"io.k8s.api.core.v1.{kind}"
    if "." not in group:
        return f"io.k8s.api.{group}.{version}.{kind}"
    return ".".join(reversed(group.split("."))) + f".{version}.{kind}"


def _kind_schema(spec: ResourceSpec, gvk: dict[str, str]) -> dict[str, Any]:
    if spec.schema is not None:
        schema = copy.deepcopy(spec.schema)
    else:
        # Built-in kinds are not validated here: accept anything, as the emulator does.
        schema = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    properties = schema.setdefault("properties", {})
    properties.setdefault("apiVersion", {"type": "string"})
    properties.setdefault("kind", {"type": "string"})
    properties["metadata"] = {"allOf": [{"$ref": f"#/components/schemas/{_OBJECT_META}"}]}
    schema["x-kubernetes-group-version-kind"] = [gvk]
    return schema


def _object_meta_schema() -> dict[str, Any]:
    strings = ("name", "generateName", "namespace", "uid", "resourceVersion")
    properties: dict[str, Any] = {key: {"type": "string"} for key in strings}
    properties["labels"] = {"type": "object", "additionalProperties": {"type": "string"}}
    properties["annotations"] = {"type": "object", "additionalProperties": {"type": "string"}}
    properties["finalizers"] = {"type": "array", "items": {"type": "string"}}
    properties["generation"] = {"type": "integer", "format": "int64"}
    properties["creationTimestamp"] = {"type": "string", "format": "date-time"}
    properties["deletionTimestamp"] = {"type": "string", "format": "date-time"}
    return {"type": "object", "properties": properties}
