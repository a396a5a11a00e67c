"""What kube-apiserver does to objects, independent of HTTP: the registry strategies.

Owns create/replace/patch/delete semantics over the `Store`: server-side metadata (uid,
resourceVersion, generation, creationTimestamp), generation bumps only on spec changes, the
status-subresource split, resourceVersion preconditions (409), finalizers and deletionTimestamp,
generateName, namespace existence and termination, custom-resource schema admission
(`schemas`), server-side apply as create-or-merge per field manager, and the cascades real
controllers perform (CRD and namespace deletion). The HTTP layer (`emulator`) only parses,
dispatches and renders; everything here runs on the emulator's event-loop thread.
"""

from __future__ import annotations

import copy
import random
import uuid
from typing import Any

from tests.k8s import errors, patches, schemas, strategies
from tests.k8s.registry import Registry, ResourceSpec
from tests.k8s.store import Store
from tests.k8s.strategies import CRD_FINALIZER, CRD_GROUP, CRD_PLURAL

_SERVER_META = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds")
_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_RV_REQUIRED = "Invalid value: 0x0: must be specified for an update"
_UNDELETABLE_NAMESPACES = ("default", "kube-system", "kube-public")


class ApiServer:
    """The resource handlers of one emulated cluster (see the module docstring)."""

    def __init__(
        self,
        registry: Registry,
        store: Store,
        *,
        strict_namespaces: bool = True,
        strategic_merge_for_crs: bool = False,
    ) -> None:
        self.registry = registry
        self.store = store
        self.strict_namespaces = strict_namespaces
        self.strategic_merge_for_crs = strategic_merge_for_crs
        # Server-side apply memory: what each field manager applied last, to drop its removals.
        self._applied: dict[tuple[Any, ...], dict[str, Any]] = {}

    # --- reads ----------------------------------------------------------------------------

    def present(self, spec: ResourceSpec, obj: dict[str, Any]) -> dict[str, Any]:
        """A copy as served through `spec`'s version (all versions share one storage)."""
        out = copy.deepcopy(obj)
        out["apiVersion"], out["kind"] = spec.api_version, spec.kind
        return out

    def read(self, spec: ResourceSpec, namespace: str | None, name: str) -> dict[str, Any]:
        return self.present(spec, self._existing(spec, namespace, name))

    def _existing(self, spec: ResourceSpec, namespace: str | None, name: str) -> dict[str, Any]:
        obj = self.store.get(spec.storage, namespace if spec.namespaced else None, name)
        if obj is None:
            raise errors.not_found(spec.group, spec.plural, name)
        return obj

    # --- create ---------------------------------------------------------------------------

    def create(
        self,
        spec: ResourceSpec,
        namespace: str | None,
        body: Any,
        *,
        dry_run: bool = False,
        validation: str = "Warn",
    ) -> tuple[dict[str, Any], list[str]]:
        obj = strategies.typed_copy(spec, body)
        meta = obj["metadata"]
        if spec.namespaced:
            if namespace and meta.get("namespace") not in (None, "", namespace):
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            namespace = namespace or meta.get("namespace")
            if not namespace:
                raise errors.bad_request("the namespace of the object is required")
            meta["namespace"] = namespace
            self._check_namespace_open(namespace)
        else:
            namespace = None
            meta.pop("namespace", None)
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise errors.invalid(
                    spec.group,
                    spec.kind,
                    "",
                    [("FieldValueRequired", "metadata.name", "Required value: name or generateName is required")],
                )
            meta["name"] = self._generate_name(spec, namespace, meta["generateName"])
        strategies.validate_name(spec, meta["name"])
        if self.store.get(spec.storage, namespace, meta["name"]) is not None:
            raise errors.already_exists(spec.group, spec.plural, meta["name"])
        for key in (*_SERVER_META, "resourceVersion", "managedFields"):
            meta.pop(key, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = strategies.now_rfc3339()
        meta["generation"] = 1
        if spec.has_status and spec.storage != ("", "namespaces"):
            obj.pop("status", None)
        strategies.normalize(spec, obj, None)
        warnings = self._admit(spec, obj, validation)
        if dry_run:
            return self.present(spec, obj), warnings
        self.store.put(spec.storage, obj, None)
        if spec.storage == (CRD_GROUP, CRD_PLURAL):
            self._establish_crd(obj)
        return self.present(spec, self._existing(spec, namespace, meta["name"])), warnings

    def _generate_name(self, spec: ResourceSpec, namespace: str | None, prefix: str) -> str:
        for _ in range(100):
            name = prefix + "".join(random.choices(_GENERATE_ALPHABET, k=5))
            if self.store.get(spec.storage, namespace, name) is None:
                return name
        raise errors.ApiError(500, "InternalError", "could not generate a unique name")

    def _check_namespace_open(self, namespace: str) -> None:
        ns = self.store.get(("", "namespaces"), None, namespace)
        if ns is None and self.strict_namespaces:
            raise errors.not_found("", "namespaces", namespace)
        if ns is not None and ns["metadata"].get("deletionTimestamp"):
            raise errors.forbidden(
                f"unable to create new content in namespace {namespace} because it is being terminated"
            )

    def _admit(self, spec: ResourceSpec, obj: dict[str, Any], validation: str) -> list[str]:
        """Prune, default and validate; returns warnings, raises 400/422."""
        unknown = [f"metadata.{key}" for key in obj["metadata"] if key not in strategies.OBJECT_META_KEYS]
        if spec.custom and spec.schema is not None:
            pruned, unknown_spec = schemas.prune(obj, spec.schema)
            unknown += unknown_spec
            pruned["metadata"] = obj["metadata"]  # callers hold on to this dict
            obj.clear()
            obj.update(schemas.apply_defaults(pruned, spec.schema))
        for key in unknown:
            if key.startswith("metadata."):
                obj["metadata"].pop(key.split(".", 1)[1], None)
        if unknown and validation == "Strict":
            fields = ", ".join(f'unknown field "{path}"' for path in unknown)
            raise errors.bad_request(
                f'{spec.kind} in version "{spec.version}" cannot be handled as a {spec.kind}:'
                f" strict decoding error: {fields}"
            )
        if spec.custom and spec.schema is not None:
            causes = schemas.validate(obj, spec.schema)
            if causes:
                raise errors.invalid(spec.group, spec.kind, obj["metadata"].get("name", ""), causes)
        if spec.storage == (CRD_GROUP, CRD_PLURAL):
            strategies.validate_crd(obj)
        return [f'unknown field "{path}"' for path in unknown] if validation == "Warn" else []

    # --- updates --------------------------------------------------------------------------

    def replace(
        self,
        spec: ResourceSpec,
        namespace: str | None,
        name: str,
        body: Any,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        validation: str = "Warn",
    ) -> tuple[dict[str, Any], list[str]]:
        current = self._existing(spec, namespace, name)
        candidate = strategies.typed_copy(spec, body)
        return self._update(
            spec,
            current,
            candidate,
            subresource=subresource,
            dry_run=dry_run,
            validation=validation,
            require_rv=spec.custom,
        )

    def patch(
        self,
        spec: ResourceSpec,
        namespace: str | None,
        name: str,
        patch_type: str,
        body: Any,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        validation: str = "Warn",
        manager: str = "",
    ) -> tuple[dict[str, Any], list[str], bool]:
        """Apply a patch; the bool says whether it created the object (apply only)."""
        scope = namespace if spec.namespaced else None
        current = self.store.get(spec.storage, scope, name)
        if patch_type == "apply":
            return self._apply(
                spec,
                namespace=scope,
                name=name,
                current=current,
                body=body,
                subresource=subresource,
                dry_run=dry_run,
                validation=validation,
                manager=manager,
            )
        if current is None:
            raise errors.not_found(spec.group, spec.plural, name)
        try:
            if patch_type == "merge":
                if not isinstance(body, dict):
                    raise errors.bad_request("a merge patch must be a JSON object")
                candidate = patches.merge_patch(current, body)
            elif patch_type == "json":
                candidate = patches.json_patch(current, body)
            elif spec.custom and not self.strategic_merge_for_crs:
                raise errors.unsupported_media_type(
                    "application/strategic-merge-patch+json",
                    ["application/json-patch+json", "application/merge-patch+json", "application/apply-patch+yaml"],
                )
            else:
                candidate = patches.strategic_merge(current, body)
        except patches.PatchError as exc:
            raise errors.unprocessable(str(exc)) from exc
        if not isinstance(candidate, dict):
            raise errors.bad_request("the patch did not produce an object")
        candidate = strategies.typed_copy(spec, candidate)
        obj, warnings = self._update(
            spec,
            current,
            candidate,
            subresource=subresource,
            dry_run=dry_run,
            validation=validation,
            require_rv=False,
        )
        return obj, warnings, False

    def _apply(
        self,
        spec: ResourceSpec,
        *,
        namespace: str | None,
        name: str,
        current: dict[str, Any] | None,
        body: Any,
        subresource: str | None,
        dry_run: bool,
        validation: str,
        manager: str,
    ) -> tuple[dict[str, Any], list[str], bool]:
        if not manager:
            raise errors.unprocessable("PATCH requests of type apply must have a fieldManager")
        applied = strategies.typed_copy(spec, body)
        if applied["metadata"].get("name") not in (None, name):
            raise errors.bad_request(
                f"the name of the object ({applied['metadata'].get('name')}) does not match the"
                f" name on the URL ({name})"
            )
        applied["metadata"]["name"] = name
        key = (spec.storage, namespace, name, manager, subresource)
        if current is None:
            if subresource:
                raise errors.not_found(spec.group, spec.plural, name)
            obj, warnings = self.create(spec, namespace, applied, dry_run=dry_run, validation=validation)
            if not dry_run:
                self._applied[key] = applied
            return obj, warnings, True
        candidate = patches.apply_merge(current, applied, self._applied.get(key))
        candidate = strategies.typed_copy(spec, candidate)
        obj, warnings = self._update(
            spec,
            current,
            candidate,
            subresource=subresource,
            dry_run=dry_run,
            validation=validation,
            require_rv=False,
        )
        if not dry_run:
            self._applied[key] = applied
        return obj, warnings, False

    def _update(
        self,
        spec: ResourceSpec,
        current: dict[str, Any],
        candidate: dict[str, Any],
        *,
        subresource: str | None,
        dry_run: bool,
        validation: str,
        require_rv: bool,
    ) -> tuple[dict[str, Any], list[str]]:
        old_meta = current["metadata"]
        name = old_meta["name"]
        meta = candidate["metadata"]
        if meta.get("name") not in (None, "", name):
            raise errors.bad_request(
                f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})"
            )
        rv = meta.get("resourceVersion")
        if rv and rv != old_meta.get("resourceVersion"):
            raise errors.conflict(spec.group, spec.plural, name)
        if not rv and require_rv:
            raise errors.invalid(
                spec.group,
                spec.kind,
                name,
                [("FieldValueInvalid", "metadata.resourceVersion", _RV_REQUIRED)],
            )
        if subresource == "status":
            new = copy.deepcopy(current)
            new["status"] = candidate.get("status")
            if new["status"] is None:
                del new["status"]
        else:
            new = candidate
            if spec.has_status:
                new.pop("status", None)
                if "status" in current:
                    new["status"] = copy.deepcopy(current["status"])
        meta = new["metadata"]
        for key in (*_SERVER_META, "name", "namespace", "generation"):
            if key in old_meta:
                meta[key] = old_meta[key]
            else:
                meta.pop(key, None)
        meta.pop("resourceVersion", None)
        meta.pop("managedFields", None)
        if old_meta.get("deletionTimestamp"):
            added = set(meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
            if added:
                raise errors.invalid(
                    spec.group,
                    spec.kind,
                    name,
                    [
                        (
                            "FieldValueForbidden",
                            "metadata.finalizers",
                            "Forbidden: no new finalizers can be added if the object is being"
                            f" deleted, found new finalizers {sorted(added)}",
                        )
                    ],
                )
        strategies.normalize(spec, new, current)
        warnings = self._admit(spec, new, validation)
        if self._spec_part(spec, new) != self._spec_part(spec, current):
            meta["generation"] = int(old_meta.get("generation", 1)) + 1
        unchanged = {**new, "metadata": {**meta, "resourceVersion": old_meta.get("resourceVersion")}}
        if unchanged == current or dry_run:
            return self.present(spec, unchanged if dry_run else current), warnings
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            change = self.store.remove(spec.storage, new)
            self._on_removed(spec)
            return self.present(spec, change.obj), warnings
        self.store.put(spec.storage, new, current)
        if spec.storage == (CRD_GROUP, CRD_PLURAL) and not meta.get("deletionTimestamp"):
            self.registry.register_crd(new)
        return self.present(spec, new), warnings

    @staticmethod
    def _spec_part(spec: ResourceSpec, obj: dict[str, Any]) -> dict[str, Any]:
        """What a change of bumps `metadata.generation`."""
        skipped = {"metadata", "status"} if spec.has_status else {"metadata"}
        return {k: v for k, v in obj.items() if k not in skipped}

    # --- deletion -------------------------------------------------------------------------

    def delete(
        self,
        spec: ResourceSpec,
        namespace: str | None,
        name: str,
        options: dict[str, Any] | None = None,
        *,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        current = self._existing(spec, namespace, name)
        if spec.storage == ("", "namespaces") and name in _UNDELETABLE_NAMESPACES:
            raise errors.forbidden(f'namespaces "{name}" is forbidden: this namespace may not be deleted')
        preconditions = (options or {}).get("preconditions") or {}
        for field in ("uid", "resourceVersion"):
            wanted = preconditions.get(field)
            if wanted and wanted != current["metadata"].get(field):
                raise errors.conflict(
                    spec.group,
                    spec.plural,
                    name,
                    f"Precondition failed: {field} in precondition: {wanted},"
                    f" {field} in object meta: {current['metadata'].get(field)}",
                )
        if dry_run:
            return self.present(spec, current)
        if spec.storage == (CRD_GROUP, CRD_PLURAL):
            self._add_finalizer(spec, current, CRD_FINALIZER)
        elif spec.storage == ("", "namespaces"):
            self._add_finalizer(spec, current, None)
        result = self._delete_object(spec, self._existing(spec, namespace, name))
        self._on_removed(spec)
        return result

    def _add_finalizer(self, spec: ResourceSpec, obj: dict[str, Any], finalizer: str | None) -> None:
        """Mark a CRD/namespace terminating the way their registries and controllers do."""
        if obj["metadata"].get("deletionTimestamp"):
            return
        new = copy.deepcopy(obj)
        if finalizer:
            new["metadata"].setdefault("finalizers", []).append(finalizer)
        else:
            new["status"] = {**new.get("status", {}), "phase": "Terminating"}
        new["metadata"]["deletionTimestamp"] = strategies.now_rfc3339()
        new["metadata"]["deletionGracePeriodSeconds"] = 0
        self.store.put(spec.storage, new, obj)

    def _delete_object(self, spec: ResourceSpec, current: dict[str, Any]) -> dict[str, Any]:
        meta = current["metadata"]
        if meta.get("finalizers") or spec.storage == ("", "namespaces"):
            if meta.get("deletionTimestamp"):
                return self.present(spec, current)
            new = copy.deepcopy(current)
            new["metadata"]["deletionTimestamp"] = strategies.now_rfc3339()
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            new["metadata"]["generation"] = int(meta.get("generation", 1)) + 1
            self.store.put(spec.storage, new, current)
            return self.present(spec, new)
        return self.present(spec, self.store.remove(spec.storage, current).obj)

    def _on_removed(self, spec: ResourceSpec) -> None:
        if spec.storage == (CRD_GROUP, CRD_PLURAL):
            self._sync_crds()
        self._reap()

    def _reap(self) -> None:
        """Finish terminating CRDs and namespaces whose contents are gone."""
        progressed = True
        while progressed:
            progressed = False
            for crd in self.store.items((CRD_GROUP, CRD_PLURAL)):
                if not crd["metadata"].get("deletionTimestamp"):
                    continue
                group, plural = crd["spec"]["group"], crd["spec"]["names"]["plural"]
                for obj in self.store.items((group, plural)):
                    progressed |= self._cascade(group, plural, obj)
                if not self.store.items((group, plural)):
                    self.store.remove((CRD_GROUP, CRD_PLURAL), crd)
                    self.registry.unregister(group, plural)
                    progressed = True
            for ns in self.store.items(("", "namespaces")):
                if not ns["metadata"].get("deletionTimestamp"):
                    continue
                name = ns["metadata"]["name"]
                contents = [
                    (storage, obj) for storage in self.store.storages() for obj in self.store.items(storage, name)
                ]
                for (group, plural), obj in contents:
                    progressed |= self._cascade(group, plural, obj)
                if not contents:
                    self.store.remove(("", "namespaces"), ns)
                    progressed = True

    def _cascade(self, group: str, plural: str, obj: dict[str, Any]) -> bool:
        if obj["metadata"].get("deletionTimestamp"):
            return False
        specs = self.registry.by_storage(group, plural)
        if not specs:
            return False
        self._delete_object(specs[0], obj)
        return True

    # --- CRDs -----------------------------------------------------------------------------

    def _establish_crd(self, crd: dict[str, Any]) -> None:
        """What the CRD controllers do right after creation: register and report status."""
        self.registry.register_crd(crd)
        new = copy.deepcopy(crd)
        new["status"] = strategies.crd_status(new)
        self.store.put((CRD_GROUP, CRD_PLURAL), new, crd)

    def _sync_crds(self) -> None:
        present = {
            (crd["spec"]["group"], crd["spec"]["names"]["plural"]) for crd in self.store.items((CRD_GROUP, CRD_PLURAL))
        }
        for spec in self.registry.all():
            if spec.custom and spec.storage not in present:
                self.registry.unregister(*spec.storage)
