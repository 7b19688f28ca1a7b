"""Build the upstream adapters a rule set configures, with addresses and credentials from outside.

The rules say which API reports which location and what it calls each SKU (`rules/sources.yaml`,
`locations.yaml`, `catalog.yaml`). Secrets never live there: a source's token comes from the
environment (`ENGINE_SOURCE_<NAME>_TOKEN`, the name upper-cased with `-` as `_`) or from a JSON
secrets file named by `ENGINE_SECRETS_FILE` (`{"dr-levels": {"token": "..."}}`); the environment
wins. `ENGINE_SOURCE_<NAME>_URL` (or `url` in the secrets file) points a source elsewhere, for
example at a simulator or a staging host, without editing the rules.

Each adapter is wrapped in a `CachedSource` (cache, coalescing, deadlines, back-off) set from
its source's settings in the rules.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated

import httpx
import msgspec
from msgspec import Meta, Struct

from engine.availability.breaker import BreakerSettings
from engine.availability.cache import CachedSource, CacheSettings
from engine.availability.source import Source
from engine.errors import AvailabilityFileError
from engine.policy.compile import RuleSet
from engine.policy.schema import URL_PATTERN
from engine.policy.sources import SourceConfig
from engine.sources.catalog_api import CatalogApi
from engine.sources.dr_levels import ARRAY_STYLES, ArrayStyle, DigitalRiverLevels
from engine.sources.dr_shopper import DigitalRiverShopper
from engine.sources.shoplazza import Shoplazza

__all__ = (
    "Connection",
    "UpstreamSources",
    "build_sources",
    "cached",
    "connections",
    "env_name",
    "new_client",
)

SECRETS_FILE_VARIABLE = "ENGINE_SECRETS_FILE"


class Connection(Struct, frozen=True, forbid_unknown_fields=True):
    """Where a source is and how to authenticate: the part of its configuration kept out of
    the repository."""

    token: Annotated[str, Meta(min_length=1)] | None = None
    url: Annotated[str, Meta(pattern=URL_PATTERN)] | None = None

    def __repr__(self) -> str:
        """Never print a token, even by accident in a log line or a traceback."""
        return f"Connection(token={'***' if self.token else None}, url={self.url!r})"


def env_name(source: str, what: str) -> str:
    """`dr-levels`, `TOKEN` -> `ENGINE_SOURCE_DR_LEVELS_TOKEN`."""
    return f"ENGINE_SOURCE_{re.sub(r'[^A-Z0-9]', '_', source.upper())}_{what}"


def _secrets_file(path: Path) -> dict[str, Connection]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise AvailabilityFileError(
            f"{path}: the secrets file cannot be read: {exc.strerror}"
        ) from exc
    try:
        return msgspec.json.decode(raw, type=dict[str, Connection])
    except msgspec.DecodeError as exc:
        # msgspec's message names the path of the bad value, never the value itself.
        raise AvailabilityFileError(
            f"{path}: not a secrets file of the form "
            f'{{"<source name>": {{"token": "...", "url": "..."}}}}: {exc}'
        ) from None


def connections(
    rules: RuleSet, env: Mapping[str, str] | None = None
) -> dict[str, tuple[str, str | None]]:
    """Source name -> (base URL, token), from the rules, the secrets file and the environment."""
    env = os.environ if env is None else env
    secrets: dict[str, Connection] = {}
    if path := env.get(SECRETS_FILE_VARIABLE):
        secrets = _secrets_file(Path(path))
    result: dict[str, tuple[str, str | None]] = {}
    for source in rules.sources:
        kept = secrets.get(source.name, Connection())
        url = env.get(env_name(source.name, "URL")) or kept.url or source.url
        token = env.get(env_name(source.name, "TOKEN")) or kept.token
        result[source.name] = (url.rstrip("/"), token)
    return result


def new_client() -> httpx.AsyncClient:
    """One pooled client for every source: connections are kept alive between carts."""
    return httpx.AsyncClient(
        limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
        headers={"user-agent": "checkout-allocation-engine"},
        follow_redirects=False,
    )


def _array_style(style: str) -> ArrayStyle:
    for known in ARRAY_STYLES:
        if known == style:
            return known
    return "repeat"


def _adapter(
    config: SourceConfig, client: httpx.AsyncClient, url: str, token: str | None
) -> Source:
    if config.api == "digitalriver-inventory-levels":
        return DigitalRiverLevels(
            config.name,
            client,
            base_url=url,
            token=token,
            items={sku: ref for sku, ref in config.items.items() if isinstance(ref, str)},
            locations=config.locations,
            batch_size=config.batch_size,
            array_style=_array_style(config.array_style),
            timeout=config.timeout,
        )
    if config.api == "digitalriver-shopper":
        assert config.location is not None
        return DigitalRiverShopper(
            config.name,
            client,
            base_url=url,
            token=token,
            items={sku: ref for sku, ref in config.items.items() if isinstance(ref, str)},
            location=config.location,
            lookup="external_reference_id"
            if config.lookup == "external_reference_id"
            else "product_id",
            batch_size=config.batch_size,
            timeout=config.timeout,
        )
    if config.api == "shoplazza":
        return Shoplazza(
            config.name,
            client,
            base_url=url,
            token=token,
            items={sku: ref for sku, ref in config.items.items() if isinstance(ref, tuple)},
            locations=config.locations,
            max_concurrency=config.max_concurrency,
            timeout=config.timeout,
        )
    assert config.location is not None
    return CatalogApi(
        config.name,
        client,
        base_url=url,
        token=token,
        items={sku: ref for sku, ref in config.items.items() if isinstance(ref, str)},
        location=config.location,
        max_concurrency=config.max_concurrency,
        timeout=config.timeout,
    )


def cache_settings(config: SourceConfig) -> CacheSettings:
    return CacheSettings(
        fresh_for=config.fresh_for,
        stale_for=config.stale_for,
        refresh_after=config.refresh_after,
        batch_window=config.batch_window,
        batch_size=config.batch_size,
        max_concurrency=config.max_concurrency,
        timeout=config.timeout,
        breaker=BreakerSettings(
            failure_rate=config.breaker_failure_rate,
            window=config.breaker_window,
            min_calls=config.breaker_min_calls,
            open_for=config.breaker_open_for,
        ),
    )


def upstream_items(config: SourceConfig) -> dict[str, str]:
    """SKU -> the upstream item a request asks for (a Shoplazza product answers for all its
    variants)."""
    return {sku: ref if isinstance(ref, str) else ref[0] for sku, ref in config.items.items()}


def cached(config: SourceConfig, adapter: Source) -> CachedSource:
    """`adapter` behind a cache set as `config` says. SKUs are grouped by the upstream item a
    request asks for."""
    return CachedSource(adapter, cache_settings(config), upstream=upstream_items(config))


def build_sources(
    rules: RuleSet, client: httpx.AsyncClient, env: Mapping[str, str] | None = None
) -> tuple[CachedSource, ...]:
    """One cached adapter per configured source that reports on at least one location."""
    where = connections(rules, env)
    return tuple(
        cached(config, _adapter(config, client, *where[config.name]))
        for config in rules.sources
        if config.location_ids
    )


class UpstreamSources:
    """Builds the cached adapters of each rule set a reload puts in force. A source whose
    configuration (in the rules) and connection (URL and token) are unchanged keeps its
    `CachedSource`, so its cache, breaker and counters carry on warm. A source whose settings
    or mapping changed (a SKU added, say) but that is still the same API at the same place gets
    a new cache that inherits what the old one knew: kept answers of unchanged items,
    `Retry-After`, the breaker and the counters. Only a new source starts from nothing.
    Nothing is closed: a replaced source is simply no longer used, and
    the carts still deciding with it finish with it (all share one HTTP client)."""

    def __init__(self, client: httpx.AsyncClient, env: Mapping[str, str] | None = None) -> None:
        self._client = client
        self._env = env
        self._built: dict[str, tuple[SourceConfig, tuple[str, str | None], CachedSource]] = {}

    def __call__(self, rules: RuleSet, current: Sequence[Source] = ()) -> tuple[Source, ...]:
        """The sources for `rules`, reusing those of `current` that nothing changed for.
        Raises `AvailabilityFileError` when the secrets file cannot be read."""
        where = connections(rules, self._env)
        built: dict[str, tuple[SourceConfig, tuple[str, str | None], CachedSource]] = {}
        for config in rules.sources:
            if not config.location_ids:
                continue
            connection = where[config.name]
            old = self._built.get(config.name)
            if (
                old is not None
                and old[0] == config
                and old[1] == connection
                and any(old[2] is source for source in current)
            ):
                built[config.name] = old
            else:
                adapter = _adapter(config, self._client, *connection)
                if old is not None and old[0].api == config.api and old[1] == connection:
                    # Same API at the same place: what is known of its health carries on.
                    source = old[2].successor(
                        adapter, cache_settings(config), upstream=upstream_items(config)
                    )
                else:
                    source = cached(config, adapter)
                built[config.name] = (config, connection, source)
        self._built = built
        return tuple(source for _, _, source in built.values())
