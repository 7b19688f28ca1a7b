"""Gathering availability for a cart: the only step of a decision that does I/O, with the cache,
coalescing, deadlines and back-off that keep it fast whatever the upstream APIs do."""

from engine.availability.breaker import BreakerSettings, BreakerState, CircuitBreaker
from engine.availability.cache import CachedSource, CacheSettings
from engine.availability.gather import gather, merge_answers
from engine.availability.record import Availability, StockRecord
from engine.availability.source import (
    BadPayload,
    ConnectionFailed,
    NotAuthorised,
    RateLimited,
    RequestRejected,
    Source,
    SourceAnswer,
    SourceError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from engine.availability.stats import SourceStats

__all__ = (
    "Availability",
    "BadPayload",
    "BreakerSettings",
    "BreakerState",
    "CacheSettings",
    "CachedSource",
    "CircuitBreaker",
    "ConnectionFailed",
    "NotAuthorised",
    "RateLimited",
    "RequestRejected",
    "Source",
    "SourceAnswer",
    "SourceError",
    "SourceStats",
    "StockRecord",
    "UpstreamTimeout",
    "UpstreamUnavailable",
    "gather",
    "merge_answers",
)
