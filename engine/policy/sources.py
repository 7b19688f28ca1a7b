"""Which upstream API reports which location, and what it calls each SKU: checked with the rules.

The mapping lives with the locations (`source`, `upstream_id`) and the catalog (`upstream`), so
a merchandiser who adds a SKU or a location sees in one place where its stock comes from, and
`python -m engine check` reports a misspelt source or a missing id with its file and line like
any other rule mistake. Connection secrets never live here (see `engine.sources.upstream`).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from engine.errors import Problem, Severity
from engine.policy.load import Loaded, LoadedFiles, _suggest
from engine.policy.schema import BATCH_APIS, PER_LOCATION_APIS, SourceSpec, VariantRef

__all__ = ("SourceConfig", "compile_sources")

UpstreamRef = str | tuple[str, str]
"""What a source calls a SKU: an id, or (product, variant) for variant-level APIs."""

_VARIANT_APIS = frozenset({"shoplazza"})
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


@dataclass(frozen=True, slots=True)
class SourceConfig:
    """One upstream API as the rules configure it, with its mappings resolved."""

    name: str
    api: str
    url: str
    lookup: str
    timeout: float
    """Seconds allowed for one upstream request."""
    batch_size: int
    max_concurrency: int
    array_style: str
    locations: dict[str, str] = field(default_factory=dict)
    """Upstream location id -> our location id (per-location APIs)."""
    location: str | None = None
    """The one location a product-level API reports on."""
    items: dict[str, UpstreamRef] = field(default_factory=dict)
    """Our SKU -> what this source calls it."""
    fresh_for: float = 5.0
    """Seconds an answer is served from the cache without asking again."""
    stale_for: float = 300.0
    """Seconds an answer may still be served, flagged stale, when no fresh one can be had."""
    refresh_after: float | None = None
    """Seconds after which an answer in use is refreshed in the background (None: the cache's
    default share of `fresh_for`)."""
    batch_window: float = 0.0
    """Seconds misses wait to share one batched request; 0 for APIs that take one item."""
    breaker_failure_rate: float = 0.5
    breaker_window: int = 20
    breaker_min_calls: int = 5
    breaker_open_for: float = 5.0

    @property
    def location_ids(self) -> frozenset[str]:
        """Our locations this source reports on."""
        if self.location is not None:
            return frozenset({self.location})
        return frozenset(self.locations.values())

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "api": self.api,
            "url": self.url,
            "locations": sorted(self.location_ids),
            "items": len(self.items),
        }


def compile_sources(
    loaded: LoadedFiles, location_ids: Collection[str], problems: list[Problem]
) -> tuple[SourceConfig, ...]:
    """Check every reference between sources, locations and catalog; append what is wrong."""

    def error(item: Loaded[Any], sub: tuple[str | int, ...], message: str) -> None:
        problems.append(item.problem(sub, message))

    def warn(item: Loaded[Any], sub: tuple[str | int, ...], message: str) -> None:
        problems.append(item.problem(sub, message, severity=Severity.WARNING))

    specs: dict[str, Loaded[SourceSpec]] = {}
    for loaded_source in loaded.sources:
        name = loaded_source.spec.name
        if name in specs:
            first = specs[name]
            error(
                loaded_source,
                ("name",),
                f"source `{name}` is defined twice (first at line {first.line}); "
                "each needs its own name",
            )
            continue
        specs[name] = loaded_source
    broken = loaded.broken.get("sources", set())
    names = sorted(specs)

    def known_source(item: Loaded[Any], sub: tuple[str | int, ...], name: str) -> bool:
        if name in specs:
            return True
        if name not in broken:
            listed = ", ".join(names) or "none are defined"
            error(
                item,
                sub,
                f"there is no source `{name}`{_suggest(name, names)} (sources: {listed})",
            )
        return False

    locations: dict[str, dict[str, str]] = {name: {} for name in specs}
    single: dict[str, str] = {}
    served: set[str] = set()
    for place in loaded.locations:
        spec = place.spec
        if spec.source is None:
            if spec.upstream_id is not None:
                error(
                    place,
                    ("upstream_id",),
                    f"location `{spec.id}` has an `upstream_id` but no `source`: "
                    "say which source reports it",
                )
            elif specs and spec.enabled:
                warn(
                    place,
                    ("id",),
                    f"location `{spec.id}` has no `source`: no stock will ever be known there",
                )
            continue
        if not known_source(place, ("source",), spec.source):
            continue
        api = specs[spec.source].spec.api
        served.add(spec.source)
        if api in PER_LOCATION_APIS:
            if spec.upstream_id is None:
                error(
                    place,
                    ("source",),
                    f"location `{spec.id}` needs `upstream_id`: source `{spec.source}` "
                    f"({api}) reports per location, by its own location ids",
                )
                continue
            mapped = locations[spec.source]
            if spec.upstream_id in mapped:
                error(
                    place,
                    ("upstream_id",),
                    f"`{spec.upstream_id}` of source `{spec.source}` is already location "
                    f"`{mapped[spec.upstream_id]}`; one upstream location is one of ours",
                )
                continue
            mapped[spec.upstream_id] = spec.id
        else:
            if spec.upstream_id is not None:
                error(
                    place,
                    ("upstream_id",),
                    f"source `{spec.source}` ({api}) reports one number per product, not per "
                    "location: remove `upstream_id`",
                )
                continue
            if spec.source in single:
                error(
                    place,
                    ("source",),
                    f"source `{spec.source}` ({api}) reports one number per product, so it can "
                    f"serve one location only, and it already serves `{single[spec.source]}`",
                )
                continue
            single[spec.source] = spec.id

    items: dict[str, dict[str, str | tuple[str, str]]] = {name: {} for name in specs}
    for entry in loaded.catalog:
        for name, ref in entry.spec.upstream.items():
            if not known_source(entry, ("upstream", name), name):
                continue
            api = specs[name].spec.api
            if api in _VARIANT_APIS:
                if not isinstance(ref, VariantRef):
                    error(
                        entry,
                        ("upstream", name),
                        f"source `{name}` ({api}) knows items as a product variant: write "
                        "`{product: <product id>, variant: <variant id>}`",
                    )
                    continue
                for part, value in (("product", ref.product), ("variant", ref.variant)):
                    if not _UUID.fullmatch(value):
                        warn(
                            entry,
                            ("upstream", name, part),
                            f"`{value}` does not look like a UUID, which {api} ids are: it "
                            "answers a malformed id with an error, so this SKU's stock "
                            "would stay unknown",
                        )
                items[name][entry.spec.sku] = (ref.product, ref.variant)
            elif isinstance(ref, VariantRef):
                error(
                    entry,
                    ("upstream", name),
                    f"source `{name}` ({api}) knows items by one id: write the id as text",
                )
            else:
                items[name][entry.spec.sku] = ref

    result = []
    known_locations = frozenset(location_ids)
    for name, defined in specs.items():
        src = defined.spec
        if name not in served:
            warn(
                defined,
                ("name",),
                f"source `{name}` reports on no location: give a location `source: {name}`",
            )
        if src.stale_for_ms < src.fresh_for_ms:
            error(
                defined,
                ("stale_for_ms",),
                f"`stale_for_ms` ({src.stale_for_ms}) is shorter than `fresh_for_ms` "
                f"({src.fresh_for_ms}): an answer is stale only after it stops being fresh",
            )
        if src.refresh_after_ms == 0:
            error(
                defined,
                ("refresh_after_ms",),
                "`refresh_after_ms: 0` would ask the source again on every cart: give the age "
                f"at which an answer in use is refreshed (by default {src.fresh_for_ms * 4 // 5}, "
                f"four fifths of `fresh_for_ms`), or `{src.fresh_for_ms}` to turn it off",
            )
        elif src.refresh_after_ms is not None and src.refresh_after_ms > src.fresh_for_ms:
            error(
                defined,
                ("refresh_after_ms",),
                f"`refresh_after_ms` ({src.refresh_after_ms}) is longer than `fresh_for_ms` "
                f"({src.fresh_for_ms}): an answer is refreshed ahead only while it is fresh "
                f"(`refresh_after_ms: {src.fresh_for_ms}` turns refreshing ahead off)",
            )
        if src.breaker.min_calls > src.breaker.window:
            error(
                defined,
                ("breaker", "min_calls"),
                f"`min_calls` ({src.breaker.min_calls}) is more than the `window` of "
                f"{src.breaker.window} calls the breaker keeps: it could never open",
            )
        result.append(
            SourceConfig(
                name=name,
                api=src.api,
                url=src.url.rstrip("/"),
                lookup=src.lookup,
                timeout=src.timeout_ms / 1000,
                batch_size=src.batch_size,
                max_concurrency=src.max_concurrency,
                array_style=src.array_style,
                locations={k: v for k, v in locations[name].items() if v in known_locations},
                location=single.get(name),
                items=items[name],
                fresh_for=src.fresh_for_ms / 1000,
                stale_for=src.stale_for_ms / 1000,
                refresh_after=(
                    None if src.refresh_after_ms is None else src.refresh_after_ms / 1000
                ),
                batch_window=src.batch_window_ms / 1000 if src.api in BATCH_APIS else 0.0,
                breaker_failure_rate=src.breaker.failure_rate,
                breaker_window=src.breaker.window,
                breaker_min_calls=src.breaker.min_calls,
                breaker_open_for=src.breaker.open_ms / 1000,
            )
        )
    return tuple(result)
