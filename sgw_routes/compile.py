"""Compile validated StreamRoute specs into one :class:`RoutingTable`, with conflicts detected.

Deterministic: the same specs give the same table whatever their order. Routes whose match block
(controlId, tracks, customParameters, providers) is identical to a route that wins precedence are left out
of the table and reported as conflicted, naming the winner. The caller resolves each route's Secrets
into :class:`RouteSecrets` (stored forms only: see ``sgw_routes.credentials``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

import msgspec

from sgw_routes.manifest import StreamRouteSpec
from sgw_routes.model import NO_BEARER_TOKEN, Route, RoutingTable, precedence_key


class RouteSecrets(msgspec.Struct, frozen=True, kw_only=True):
    """A route's resolved credentials, in their stored forms; all ``None``: the route is open."""

    token_sha256: str | None = None
    basic_sha256: str | None = None
    twilio_key: str | None = None


OPEN: Final = RouteSecrets()


class Compiled(msgspec.Struct, frozen=True):
    table: RoutingTable
    conflicts: dict[str, str]
    """Loser route key -> winner route key."""


def to_route(spec: StreamRouteSpec, secrets: RouteSecrets = OPEN, *, qualified: bool = True) -> Route:
    """The compiled route. Raises ValueError if an auth kind of the spec has no resolved credential:
    a route is never compiled with less auth than it asks for."""
    unresolved = [
        field
        for field, wanted, got in (
            ("bearerTokenSecretRef", spec.secret_ref, secrets.token_sha256),
            ("basicAuthSecretRef", spec.basic_secret, secrets.basic_sha256),
            ("twilioSignature", spec.twilio_ref, secrets.twilio_key),
        )
        if wanted is not None and got is None
    ]
    if unresolved:
        raise ValueError(f"StreamRoute {spec.key}: spec.auth.{', '.join(unresolved)} not resolved")
    name = spec.key if qualified else spec.name
    token_sha256 = secrets.token_sha256
    if token_sha256 is None and (secrets.basic_sha256 is not None or secrets.twilio_key is not None):
        token_sha256 = NO_BEARER_TOKEN
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
        basic_sha256=secrets.basic_sha256,
        twilio_key=secrets.twilio_key,
        playback_subject=spec.playback_subject,
        transform=spec.transform,
        copies=spec.copies,
        label=spec.name,
    )


def compile_table(
    specs: Iterable[StreamRouteSpec],
    secrets: Mapping[str, RouteSecrets],
    *,
    version: int,
    default: Route | None = None,
    qualified: bool = True,
) -> Compiled:
    """Build the table. ``secrets`` maps a spec key to its resolved credentials (absent: open)."""
    routes = sorted(
        (to_route(s, secrets.get(s.key, OPEN), qualified=qualified) for s in specs),
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
