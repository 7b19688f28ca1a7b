"""Gathering availability for a cart: the only step of a decision that does I/O."""

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

__all__ = (
    "Availability",
    "BadPayload",
    "ConnectionFailed",
    "NotAuthorised",
    "RateLimited",
    "RequestRejected",
    "Source",
    "SourceAnswer",
    "SourceError",
    "StockRecord",
    "UpstreamTimeout",
    "UpstreamUnavailable",
    "gather",
    "merge_answers",
)
