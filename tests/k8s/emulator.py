"""A realistic emulated Kubernetes API server: kmock's `KubernetesEmulator`, gaps closed.

`RealisticKubernetesEmulator` keeps kmock's request log and reaction DSL (a reaction that
matches answers first, and then nothing is stored: injected errors do not mutate state), but
serves everything else itself: request decoding (JSON, YAML, protobuf), URL routing including
`/api/v1/namespaces`, discovery, `/version`, OpenAPI v3, CRUD with real semantics
(`apiserver`), lists with kind/apiVersion and selectors, server-side Tables, and watches with
resume, BOOKMARKs, `sendInitialEvents`, `timeoutSeconds` and 410 Gone. It leans on kmock 0.8
internals (`RawHandler._handle`, `rendering.Request`, `_requests`, `_errors`): kmock is pinned.
kmock's own `objects`/`resources` stay empty and unused: inspect state with `get_object()` and
`list_objects()` instead. Run it with `runner.EmulatorThread`; `fixtures` does that for pytest.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import aiohttp.web
import attrs
import kmock
import yaml
from kmock._internal import apps, enums, references, rendering

from tests.k8s import errors, protobuf
from tests.k8s.apiserver import ApiServer
from tests.k8s.registry import SERVER_VERSION, Registry, ResourceSpec
from tests.k8s.routing import Route, decode_text, json_response, parse_path
from tests.k8s.store import Store
from tests.k8s.watching import matcher, serve_list, serve_watch

logger = logging.getLogger(__name__)
T = TypeVar("T")

_PATCH_TYPES = {
    "application/json-patch+json": "json",
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
}
_VALIDATION = {"strict": "Strict", "warn": "Warn", "ignore": "Ignore"}


@attrs.define(kw_only=True)
class RealisticKubernetesEmulator(kmock.KubernetesEmulator):
    """See the module docstring. Public helpers are safe to call from any thread."""

    bookmark_interval: float = 5.0
    history_limit: int = 10_000
    strict_namespaces: bool = True
    strategic_merge_for_crs: bool = False
    initial_namespaces: tuple[str, ...] = ("default", "kube-system", "kube-public", "kube-node-lease")

    _registry: Registry = attrs.field(init=False, factory=Registry)
    _store: Store = attrs.field(init=False)
    _api: ApiServer = attrs.field(init=False)
    _loop: asyncio.AbstractEventLoop | None = attrs.field(init=False, default=None)
    _stopping: bool = attrs.field(init=False, default=False)
    expired_watches: int = attrs.field(init=False, default=0)  # 410s served, for assertions
    # Bugs of the emulator itself (answered as 500s): the `k8s` fixture fails the test on any.
    internal_errors: list[Exception] = attrs.field(init=False, factory=list)

    def __attrs_post_init__(self) -> None:
        # Deliberately not calling kmock's: its fallbacks store objects before user reactions
        # run and serve the gapped discovery; `_serve` replaces all of them.
        self._store = Store(history_limit=self.history_limit)
        self._api = ApiServer(
            self._registry,
            self._store,
            strict_namespaces=self.strict_namespaces,
            strategic_merge_for_crs=self.strategic_merge_for_crs,
        )
        namespaces = self._spec("", "v1", "namespaces")
        for name in self.initial_namespaces:
            self._api.create(namespaces, None, {"metadata": {"name": name}})

    async def __aenter__(self) -> RealisticKubernetesEmulator:
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        await super().__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self.stop_watches()
        await super().__aexit__(*exc_info)

    def stop_watches(self) -> None:
        """End every open watch stream (their clients see a normal end of stream)."""

        def stop() -> None:
            self._stopping = True
            self._store.waiter().set()

        self.call(stop)

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def registry(self) -> Registry:
        return self._registry

    @property
    def store(self) -> Store:
        return self._store

    @property
    def api(self) -> ApiServer:
        return self._api

    # --- request intake -------------------------------------------------------------------

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        raw_response: aiohttp.web.StreamResponse | None = None
        try:
            request = await self._parse(raw_request)
            self._requests.append(request)
            try:
                return await self._handle(request)
            except rendering.StreamingError as exc:  # a user reaction's stream broke midway
                raw_response = exc.args[0]
                raise exc.__cause__ or exc from None
        except errors.ApiError as exc:
            return json_response(exc.status(), exc.code)
        except Exception as exc:
            if not isinstance(exc, kmock.KubernetesError):  # those are injected on purpose
                logger.exception("The emulator failed on %s %s", raw_request.method, raw_request.path_qs)
                self.internal_errors.append(exc)
            if self._errors:
                self._errors[-1].append(exc)
            if raw_response is None or not raw_response.prepared:
                return await self._render_error(exc)
            await self._stream_error(exc, raw_response)
            await raw_response.write_eof()
            return raw_response

    async def _parse(self, raw: aiohttp.web.BaseRequest) -> rendering.Request:
        body = await raw.read()
        text, data = "", None
        if body and raw.content_type == protobuf.CONTENT_TYPE:
            try:
                data = protobuf.decode(body)
            except protobuf.ProtobufError as exc:
                if raw.method != "DELETE":  # delete options are optional; anything else is not
                    raise errors.unsupported_media_type(raw.content_type, ["application/json"]) from exc
        elif body:
            try:
                text = body.decode("utf-8")
                data = decode_text(raw.content_type, text)
            except (UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
                raise errors.bad_request(f"the request body could not be decoded: {exc}") from exc
        route = parse_path(raw.path)
        plural = route.plural if route else None
        resource = references.resource(route.group, route.version, plural) if route and plural else None
        return rendering.Request(
            id=len(self._requests),
            raw_request=raw,
            url=raw.url,
            method=raw.method,
            params=dict(raw.query),
            headers=dict(raw.headers),
            cookies=dict(raw.cookies),
            body=body,
            text=text,
            data=data,
            action=self._guess_action(raw, route),
            resource=resource,
            namespace=route.namespace if route else None,
            name=route.name if route else None,
            subresource=route.subresource if route else None,
        )

    @staticmethod
    def _guess_action(raw: aiohttp.web.BaseRequest, route: Route | None) -> enums.action | None:
        if route is None or route.plural is None:
            return None
        if raw.method == "GET":
            if raw.query.get("watch") in ("true", "1"):
                return enums.action.WATCH
            return enums.action.FETCH if route.name else enums.action.LIST
        return {
            ("POST", False): enums.action.CREATE,
            ("PATCH", True): enums.action.UPDATE,
            ("DELETE", True): enums.action.DELETE,
        }.get((raw.method, route.name is not None))

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        # User reactions first, with no state change before or after them (kmock's own
        # `_handle` stores objects even when a reaction then answers with an injected error).
        try:
            return await apps.RawHandler._handle(self, request)
        except NotImplementedError:  # raised only when no reaction matched
            pass
        return await self._serve(request)

    # --- routing --------------------------------------------------------------------------

    async def _serve(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        raw = request._raw_request
        assert raw is not None
        path = raw.path.rstrip("/") or "/"
        if raw.method == "GET":
            static = self._non_resource(path)
            if static is not None:
                return static
        route = parse_path(path)
        if route is None:
            raise errors.unknown_path()
        if route.plural is None:
            if raw.method != "GET":
                raise errors.method_not_allowed()
            return self._discovery(route)
        spec = self._registry.get(route.group, route.version or "", route.plural)
        if spec is None or (route.namespace is not None and not spec.namespaced):
            raise errors.unknown_path()
        if route.subresource is not None and (route.subresource != "status" or not spec.has_status):
            raise errors.unknown_path()
        return await self._serve_resource(request, raw, spec, route)

    def _non_resource(self, path: str) -> aiohttp.web.StreamResponse | None:
        if path == "/version":
            return json_response(SERVER_VERSION)
        if path in ("/healthz", "/livez", "/readyz"):
            return aiohttp.web.Response(text="ok")
        if path == "/api":
            return json_response({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})
        if path == "/apis":
            return json_response(self._registry.api_group_list())
        if path == "/openapi/v2":
            response = aiohttp.web.Response(body=protobuf.openapi_v2_document(SERVER_VERSION["gitVersion"]))
            response.headers["Content-Type"] = protobuf.OPENAPI_V2_CONTENT_TYPE
            return response
        if path == "/openapi/v3":
            return json_response(self._registry.openapi_root())
        if path.startswith("/openapi/v3/"):
            route = parse_path(path.removeprefix("/openapi/v3"))
            document = (
                self._registry.openapi_document(route.group, route.version)
                if route is not None and route.version is not None and route.plural is None
                else None
            )
            if document is None:
                raise errors.unknown_path()
            return json_response(document)
        if path == "/":
            paths = ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/openapi/v3", "/readyz", "/version"]
            for group in self._registry.groups():
                paths += [f"/apis/{group}"] + [f"/apis/{group}/{v}" for v in self._registry.versions_of(group)]
            return json_response({"paths": sorted(paths)})
        return None

    def _discovery(self, route: Route) -> aiohttp.web.StreamResponse:
        if route.version is None:
            if route.group not in self._registry.groups():
                raise errors.unknown_path()
            return json_response(self._registry.api_group(route.group))
        document = self._registry.api_resource_list(route.group, route.version)
        if document is None:
            raise errors.unknown_path()
        return json_response(document)

    async def _serve_resource(
        self,
        request: rendering.Request,
        raw: aiohttp.web.BaseRequest,
        spec: ResourceSpec,
        route: Route,
    ) -> aiohttp.web.StreamResponse:
        params = raw.query
        dry_run = params.get("dryRun") == "All"
        validation = _VALIDATION.get(params.get("fieldValidation", "Warn").lower())
        if validation is None:
            raise errors.bad_request("fieldValidation must be one of Strict, Warn, Ignore")
        namespace = route.namespace
        method = raw.method
        if method == "GET" and params.get("watch") in ("true", "1"):
            return await serve_watch(self, raw, spec, namespace, route.name)
        if route.name is None:
            if method == "GET":
                return serve_list(self, raw, spec, namespace)
            if method == "POST":
                obj, warnings = self._api.create(spec, namespace, request.data, dry_run=dry_run, validation=validation)
                return json_response(obj, 201, warnings=warnings)
            if method == "DELETE":
                return self._delete_collection(raw, spec, namespace, dry_run)
            raise errors.method_not_allowed()
        name, sub = route.name, route.subresource
        if method == "GET":
            return serve_list(self, raw, spec, namespace, name=name)
        if method == "PUT":
            obj, warnings = self._api.replace(
                spec, namespace, name, request.data, subresource=sub, dry_run=dry_run, validation=validation
            )
            return json_response(obj, warnings=warnings)
        if method == "PATCH":
            patch_type = _PATCH_TYPES.get(raw.content_type)
            if patch_type is None:
                raise errors.unsupported_media_type(raw.content_type, list(_PATCH_TYPES))
            obj, warnings, created = self._api.patch(
                spec,
                namespace,
                name,
                patch_type,
                request.data,
                subresource=sub,
                dry_run=dry_run,
                validation=validation,
                manager=params.get("fieldManager", ""),
            )
            return json_response(obj, 201 if created else 200, warnings=warnings)
        if method == "DELETE" and sub is None:
            options = request.data if isinstance(request.data, dict) else {}
            dry_run = dry_run or "All" in (options.get("dryRun") or [])
            return json_response(self._api.delete(spec, namespace, name, options, dry_run=dry_run))
        raise errors.method_not_allowed()

    def _delete_collection(
        self, raw: aiohttp.web.BaseRequest, spec: ResourceSpec, namespace: str | None, dry_run: bool
    ) -> aiohttp.web.StreamResponse:
        matches = matcher(spec, namespace, raw.query.get("labelSelector"), raw.query.get("fieldSelector"))
        deleted = [
            self._api.delete(spec, obj["metadata"].get("namespace"), obj["metadata"]["name"], dry_run=dry_run)
            for obj in self._store.items(spec.storage, namespace)
            if matches(obj)
        ]
        return json_response(
            {
                "kind": f"{spec.kind}List",
                "apiVersion": spec.api_version,
                "metadata": {"resourceVersion": str(self._store.current_rv)},
                "items": deleted,
            }
        )

    # --- helpers for tests (thread-safe) ----------------------------------------------------

    def _spec(self, group: str, version: str, plural: str) -> ResourceSpec:
        spec = self._registry.get(group, version, plural)
        if spec is None:
            raise LookupError(f"the emulator does not serve {group}/{version}/{plural}")
        return spec

    def spec_for(self, api_version: str, kind: str) -> ResourceSpec:
        group, _, version = api_version.rpartition("/")
        return self.call(lambda: self._spec_for_kind(group, version, kind))

    def _spec_for_kind(self, group: str, version: str, kind: str) -> ResourceSpec:
        for spec in self._registry.all():
            if (spec.group, spec.version, spec.kind) == (group, version, kind):
                return spec
        raise LookupError(f"the emulator does not serve {group}/{version} {kind}")

    def call(self, fn: Callable[[], T], timeout: float = 30) -> T:
        """Run `fn` on the emulator's loop thread, where all state lives."""
        loop = self._loop
        if loop is None or not loop.is_running() or _on_loop_thread(loop):
            return fn()

        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), loop).result(timeout)

    def get_object(
        self, group: str, version: str, plural: str, namespace: str | None, name: str
    ) -> dict[str, Any] | None:
        def read() -> dict[str, Any] | None:
            spec = self._spec(group, version, plural)
            obj = self._store.get(spec.storage, namespace if spec.namespaced else None, name)
            return None if obj is None else self._api.present(spec, obj)

        return self.call(read)

    def list_objects(self, group: str, version: str, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        def read() -> list[dict[str, Any]]:
            spec = self._spec(group, version, plural)
            return [self._api.present(spec, o) for o in self._store.items(spec.storage, namespace)]

        return self.call(read)

    def apply_manifest(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Create the object, or replace it if it exists (as `kubectl apply` would end up)."""

        def run() -> dict[str, Any]:
            group, _, version = manifest["apiVersion"].rpartition("/")
            spec = self._spec_for_kind(group, version, manifest["kind"])
            meta = manifest.get("metadata", {})
            namespace = meta.get("namespace", "default") if spec.namespaced else None
            current = self._store.get(spec.storage, namespace, meta.get("name", ""))
            if current is None:
                return self._api.create(spec, namespace, manifest, validation="Strict")[0]
            body = {**manifest, "metadata": {**meta, "resourceVersion": current["metadata"]["resourceVersion"]}}
            return self._api.replace(spec, namespace, meta["name"], body, validation="Strict")[0]

        return self.call(run)

    def patch_object(
        self,
        group: str,
        version: str,
        plural: str,
        namespace: str | None,
        name: str,
        *,
        patch: Any,
        subresource: str | None = None,
        patch_type: str = "merge",
    ) -> dict[str, Any]:
        def run() -> dict[str, Any]:
            spec = self._spec(group, version, plural)
            return self._api.patch(spec, namespace, name, patch_type, patch, subresource=subresource)[0]

        return self.call(run)

    def delete_object(self, group: str, version: str, plural: str, namespace: str | None, name: str) -> dict[str, Any]:
        return self.call(lambda: self._api.delete(self._spec(group, version, plural), namespace, name))

    def compact(self) -> int:
        """Forget the change history (as etcd compaction does); returns the current revision.
        Watches resuming from any older resourceVersion then get 410 Gone."""

        def run() -> int:
            self._store.compact()
            return self._store.current_rv

        return self.call(run)

    @property
    def resource_version(self) -> int:
        return self.call(lambda: self._store.current_rv)


def _on_loop_thread(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:  # a plain thread: not the loop's
        return False
