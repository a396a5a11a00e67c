"""A fixed routing table: the quick start's default route, or a table given in code (tests)."""

from __future__ import annotations

from gateway.routing.source import BaseSource
from sgw_routes.model import RoutingTable, default_route


class StaticRouteSource(BaseSource):
    def __init__(self, table: RoutingTable | None = None) -> None:
        super().__init__(table if table is not None else RoutingTable(version=1, default=default_route()))

    async def start(self) -> None:
        self._swap(self._table)

    async def close(self) -> None:
        return None
