"""The emulator's etcd: objects, one global resourceVersion counter, and the event log.

Every committed change gets the next revision of a single counter shared by all resources (as
etcd's revision is), so a list's resourceVersion can resume a watch exactly. The log keeps
changes for watch resumption; `compact()` drops them and later resumes from older revisions
get "410 Gone", as after etcd compaction. Only the emulator's event-loop thread touches a
store; watchers sleep on an `asyncio.Event` that every commit replaces and sets.
"""

from __future__ import annotations

import asyncio
import bisect
import copy
import dataclasses
from typing import Any

Storage = tuple[str, str]  # (group, plural): all served versions of a resource share it


@dataclasses.dataclass(frozen=True)
class Change:
    """One committed change, as a watch would report it."""

    rv: int
    type: str  # ADDED, MODIFIED, DELETED
    storage: Storage
    obj: dict[str, Any]
    old: dict[str, Any] | None


class Store:
    def __init__(self, history_limit: int = 10_000) -> None:
        self.history_limit = history_limit
        self._rv = 1
        self._objects: dict[Storage, dict[tuple[str, str], dict[str, Any]]] = {}
        self._log: list[Change] = []
        self._log_rvs: list[int] = []
        self._compacted_upto = 0
        self._wakeup: asyncio.Event | None = None

    @property
    def current_rv(self) -> int:
        return self._rv

    def get(self, storage: Storage, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self._objects.get(storage, {}).get((namespace or "", name))

    def items(self, storage: Storage, namespace: str | None = None) -> list[dict[str, Any]]:
        """Objects of one resource, in one namespace or all, sorted as etcd keys sort."""
        objects = self._objects.get(storage, {})
        return [obj for (ns, _), obj in sorted(objects.items()) if namespace is None or ns == namespace]

    def storages(self) -> list[Storage]:
        return [storage for storage, objects in self._objects.items() if objects]

    def put(self, storage: Storage, obj: dict[str, Any], old: dict[str, Any] | None) -> Change:
        """Store `obj` (taking ownership of it) with a fresh resourceVersion."""
        self._rv += 1
        meta = obj.setdefault("metadata", {})
        meta["resourceVersion"] = str(self._rv)
        key = (meta.get("namespace") or "", meta["name"])
        self._objects.setdefault(storage, {})[key] = obj
        return self._record(Change(self._rv, "MODIFIED" if old else "ADDED", storage, obj, old))

    def remove(self, storage: Storage, obj: dict[str, Any]) -> Change:
        """Delete the object; the DELETED event carries the deletion's own revision."""
        meta = obj["metadata"]
        key = (meta.get("namespace") or "", meta["name"])
        old = self._objects.get(storage, {}).pop(key, None)
        self._rv += 1
        gone = copy.deepcopy(obj)
        gone["metadata"]["resourceVersion"] = str(self._rv)
        return self._record(Change(self._rv, "DELETED", storage, gone, old))

    def _record(self, change: Change) -> Change:
        self._log.append(change)
        self._log_rvs.append(change.rv)
        if len(self._log) > self.history_limit:
            self.compact(keep=self.history_limit // 2)
        if self._wakeup is not None:
            wakeup, self._wakeup = self._wakeup, None
            wakeup.set()
        return change

    def changes_after(self, rv: int) -> list[Change]:
        return self._log[bisect.bisect_right(self._log_rvs, rv) :]

    def too_old(self, rv: int) -> bool:
        """A watch from `rv` needs every change after it; some of those were compacted."""
        return rv < self._compacted_upto

    def compact(self, keep: int = 0) -> None:
        """Forget all but the last `keep` changes, as etcd compaction does."""
        drop = max(0, len(self._log) - keep)
        if drop:
            self._compacted_upto = self._log[drop - 1].rv
            del self._log[:drop]
            del self._log_rvs[:drop]
        else:
            self._compacted_upto = max(self._compacted_upto, self._rv if not keep else 0)

    def waiter(self) -> asyncio.Event:
        """An event set by the next commit; take it before reading, then wait on it."""
        if self._wakeup is None:
            self._wakeup = asyncio.Event()
        return self._wakeup
