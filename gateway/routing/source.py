"""The routing seam: where the gateway's routing table comes from.

A source yields whole :class:`~sgw_routes.model.RoutingTable` values. The gateway reads
:meth:`RouteSource.snapshot` when a stream sends ``start`` and keeps that route for the stream's
life, so swapping tables never disturbs live streams. Implementations: static (the default route),
a StreamRoute file (standalone), the NATS KV bucket the operator writes (Kubernetes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from sgw_routes.model import RoutingTable

TableListener = Callable[[RoutingTable], None]
RejectionListener = Callable[[str], None]


@runtime_checkable
class RouteSource(Protocol):
    def snapshot(self) -> RoutingTable:
        """The table in force now (cheap: a reference read)."""
        ...

    @property
    def has_table(self) -> bool:
        """False until the first table is known (the gateway is not ready before)."""
        ...

    def add_listener(self, listener: TableListener) -> None:
        """Call ``listener`` with every new table (metrics, logs)."""
        ...

    def add_rejection_listener(self, listener: RejectionListener) -> None:
        """Call ``listener`` with the reason whenever a new table is refused (the old one stays)."""
        ...

    async def start(self) -> None:
        """Load the first table (bounded wait) and start following changes."""
        ...

    async def close(self) -> None: ...


class BaseSource:
    """Holds the current table and notifies listeners on swaps (an atomic reference swap)."""

    def __init__(self, initial: RoutingTable | None = None) -> None:
        self._table = initial if initial is not None else RoutingTable()
        self._has_table = initial is not None
        self._listeners: list[TableListener] = []
        self._rejection_listeners: list[RejectionListener] = []

    def snapshot(self) -> RoutingTable:
        return self._table

    @property
    def has_table(self) -> bool:
        return self._has_table

    def add_listener(self, listener: TableListener) -> None:
        self._listeners.append(listener)

    def add_rejection_listener(self, listener: RejectionListener) -> None:
        self._rejection_listeners.append(listener)

    def _reject(self, reason: str) -> None:
        for listener in self._rejection_listeners:
            listener(reason)

    def _swap(self, table: RoutingTable) -> None:
        self._table = table
        self._has_table = True
        for listener in self._listeners:
            listener(table)
