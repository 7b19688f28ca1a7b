"""Ask every source about a cart's SKUs at once and merge the answers into one `Availability`.

Sources run concurrently; a source that raises is treated as having answered nothing, so its
locations become unknown for those SKUs and the rules decide what that means.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Sequence

from engine.availability.record import Availability, StockRecord
from engine.availability.source import Source, SourceAnswer

__all__ = ("gather", "merge_answers")

log = logging.getLogger(__name__)


def merge_answers(
    answers: Sequence[tuple[Source, SourceAnswer]], all_locations: Collection[str]
) -> Availability:
    """Merge source answers; a SKU a source could not answer for is unknown at its locations."""
    stock: dict[str, dict[str, StockRecord]] = {}
    unknown: dict[str, set[str]] = {}
    every_location = frozenset(all_locations)
    for source, answer in answers:
        for record in answer.records:
            stock.setdefault(record.sku, {})[record.location_id] = record
        covered = source.locations if source.locations is not None else every_location
        for sku in answer.unknown_skus:
            unknown.setdefault(sku, set()).update(covered)
    frozen_unknown = {
        sku: frozenset(loc for loc in locs if loc not in stock.get(sku, {}))
        for sku, locs in unknown.items()
    }
    return Availability(stock=stock, unknown={k: v for k, v in frozen_unknown.items() if v})


async def gather(
    skus: Collection[str], sources: Sequence[Source], all_locations: Collection[str]
) -> Availability:
    """Fetch the SKUs from every source concurrently and merge what came back."""
    wanted = frozenset(skus)
    results = await asyncio.gather(
        *(source.fetch(wanted) for source in sources), return_exceptions=True
    )
    answers: list[tuple[Source, SourceAnswer]] = []
    for source, result in zip(sources, results, strict=True):
        if isinstance(result, BaseException):
            if not isinstance(result, Exception):
                raise result
            log.warning("source %s failed: %r", source.name, result)
            answers.append((source, SourceAnswer(records=(), unknown_skus=wanted)))
        else:
            for error in result.errors:
                log.warning("source %s could not answer: %s", source.name, error.message)
            if result.missing_skus:
                log.warning(
                    "source %s does not know %s: check their ids in the catalog's `upstream`",
                    source.name,
                    ", ".join(sorted(result.missing_skus)),
                )
            answers.append((source, result))
    return merge_answers(answers, all_locations)
