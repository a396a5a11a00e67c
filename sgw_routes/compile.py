"""Compile validated StreamRoute specs into one :class:`RoutingTable`, with conflicts detected.

Deterministic: the same specs give the same table whatever their order. Routes whose match block
(controlId, tracks, customParameters, providers) is identical to a route that wins precedence are left out
of the table and reported as conflicted, naming the winner.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import msgspec

from sgw_routes.manifest import StreamRouteSpec
from sgw_routes.model import Route, RoutingTable, precedence_key


class Compiled(msgspec.Struct, frozen=True):
    table: RoutingTable
    conflicts: dict[str, str]
    """Loser route key -> winner route key."""


def to_route(spec: StreamRouteSpec, token_sha256: str | None, *, qualified: bool = True) -> Route:
    name = spec.key if qualified else spec.name
    return Route(
        name=name,
        control_id=spec.control_id,
        tracks=spec.tracks,
        custom_parameters=dict(spec.custom_parameters),
        providers=spec.providers,
        priority=spec.priority,
        created=spec.created,
        subject=spec.subject,
        events_subject=spec.events_subject,
        jetstream_stream=spec.jetstream_stream,
        token_sha256=token_sha256,
        playback_subject=spec.playback_subject,
        label=spec.name,
    )


def compile_table(
    specs: Iterable[StreamRouteSpec],
    token_hashes: Mapping[str, str | None],
    *,
    version: int,
    default: Route | None = None,
    qualified: bool = True,
) -> Compiled:
    """Build the table. ``token_hashes`` maps a spec key to its token hash (absent: no auth)."""
    routes = sorted(
        (to_route(s, token_hashes.get(s.key), qualified=qualified) for s in specs),
        key=precedence_key,
    )
    winners: dict[object, Route] = {}
    kept: list[Route] = []
    conflicts: dict[str, str] = {}
    for route in routes:
        winner = winners.get(route.match_key)
        if winner is None:
            winners[route.match_key] = route
            kept.append(route)
        else:
            conflicts[route.name] = winner.name
    return Compiled(RoutingTable(version=version, routes=tuple(kept), default=default), conflicts)
