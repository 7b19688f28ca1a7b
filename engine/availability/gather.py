"""Ask every source about a cart's SKUs at once and merge the answers into one `Availability`.

Sources run concurrently; a source that raises is treated as having answered nothing, so its
locations become unknown for those SKUs and the rules decide what that means.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Mapping, Sequence

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
    skus: Collection[str],
    sources: Sequence[Source],
    all_locations: Collection[str],
    serving: Mapping[str, Collection[str]] | None = None,
) -> Availability:
    """Fetch the SKUs from the sources concurrently and merge what came back.

    `serving` maps a SKU to the locations that may serve it in this cart: a source whose
    locations cannot serve a SKU is not asked about it (every upstream call costs time), and a
    source asked about nothing is not called at all. Without it, every source is asked
    about every SKU."""
    asked: list[tuple[Source, frozenset[str]]] = []
    for source in sources:
        covered = source.locations
        if serving is None or covered is None:
            wanted = frozenset(skus)
        else:
            wanted = frozenset(sku for sku in skus if not covered.isdisjoint(serving.get(sku, ())))
        if wanted:
            asked.append((source, wanted))
    results = await asyncio.gather(
        *(source.fetch(wanted) for source, wanted in asked), return_exceptions=True
    )
    answers: list[tuple[Source, SourceAnswer]] = []
    for (source, wanted), result in zip(asked, results, strict=True):
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
