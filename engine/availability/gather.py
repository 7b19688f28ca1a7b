"""Ask every source about a cart's SKUs at once and merge the answers into one `Availability`.

Sources run concurrently; a source that raises is treated as having answered nothing, so its
locations become unknown for those SKUs and the rules decide what that means. With a deadline,
a source is not waited for past it (and a short grace for the answer it gives at the deadline):
the cart is decided from what is known by then.

What went wrong is logged as a warning per cart and source, except the errors of a
`CachedSource`'s upstream requests: the cache logs each failed request once itself, however many
carts shared it (or none waited for it), and its answers' errors are not logged again here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Final, cast

from engine.availability.cache import CachedSource
from engine.availability.record import Availability, StockRecord
from engine.availability.source import Source, SourceAnswer

__all__ = ("DEADLINE_GRACE", "gather", "merge_answers")

log = logging.getLogger(__name__)

DEADLINE_GRACE: Final = 0.003
"""Seconds past the deadline a source's answer is still taken: a source that stops waiting at
the deadline needs a moment to hand over what it has (stale data, for one)."""


def merge_answers(
    answers: Sequence[tuple[Source, SourceAnswer]], all_locations: Collection[str]
) -> Availability:
    """Merge source answers; a SKU a source could not answer for is unknown at its locations."""
    stock: dict[str, dict[str, StockRecord]] = {}
    unknown: dict[str, set[str]] = {}
    stale = False
    oldest_age: float | None = None
    oldest_fetched: datetime | None = None
    for source, answer in answers:
        if answer.stale_skus:
            stale = True
        age = answer.oldest_age
        if age is not None and (oldest_age is None or age > oldest_age):
            oldest_age = age
        fetched = answer.oldest_fetched
        if fetched is not None and (oldest_fetched is None or fetched < oldest_fetched):
            oldest_fetched = fetched
        for record in answer.records:
            stock.setdefault(record.sku, {})[record.location_id] = record
        if answer.unknown_skus:
            covered = source.locations
            for sku in answer.unknown_skus:
                unknown.setdefault(sku, set()).update(all_locations if covered is None else covered)
    unknown_now: dict[str, frozenset[str]] = {}
    if unknown:
        frozen_unknown = {
            sku: frozenset(loc for loc in locs if loc not in stock.get(sku, {}))
            for sku, locs in unknown.items()
        }
        unknown_now = {k: v for k, v in frozen_unknown.items() if v}
    return Availability(
        stock=stock,
        unknown=unknown_now,
        stale=stale,
        oldest_age=oldest_age,
        oldest_fetched=oldest_fetched,
    )


async def gather(
    skus: Collection[str],
    sources: Sequence[Source],
    all_locations: Collection[str],
    serving: Mapping[str, Collection[str]] | None = None,
    *,
    deadline: float | None = None,
) -> Availability:
    """Fetch the SKUs from the sources concurrently and merge what came back.

    `serving` maps a SKU to the locations that may serve it in this cart: a source whose
    locations cannot serve a SKU is not asked about it (every upstream call costs time), and a
    source asked about nothing is not called at all. Without it, every source is asked
    about every SKU.

    `deadline` (a `time.monotonic()` instant) is handed to every source, and no source is waited
    for past it plus `DEADLINE_GRACE`: one that has not answered by then is cancelled (its own
    fetch for this cart only: what a cached source shares between carts goes on) and its SKUs
    are unknown at its locations."""
    asked: list[frozenset[str]] = []
    answers: list[tuple[Source, SourceAnswer | None]] = []
    waiting: list[int] | None = None
    every_sku: frozenset[str] | None = None
    for source in sources:
        covered = source.locations
        if serving is None or covered is None:
            if every_sku is None:
                every_sku = frozenset(skus)
            wanted = every_sku
        else:
            wanted = frozenset(
                [sku for sku in skus if not covered.isdisjoint(serving.get(sku, ()))]
            )
        if not wanted:
            continue
        # A source that can answer at once (memory, a warm cache) is not made a task: on the
        # usual cart every source can, and the gather then never yields to the event loop.
        answer_now = getattr(source, "answer_now", None)
        answer = None if answer_now is None else answer_now(wanted)
        if answer is None:
            if waiting is None:
                waiting = []
            waiting.append(len(answers))
        asked.append(wanted)
        answers.append((source, answer))
    if waiting is not None:
        await _wait_for(answers, asked, waiting, deadline)
    for source, answer in answers:
        if answer is not None and answer.missing_skus:
            log.warning(
                "source %s does not know %s: check their ids in the catalog's `upstream`",
                source.name,
                ", ".join(sorted(answer.missing_skus)),
            )
    # `_wait_for` has put an answer in every place left empty.
    return merge_answers(cast("list[tuple[Source, SourceAnswer]]", answers), all_locations)


async def _wait_for(
    answers: list[tuple[Source, SourceAnswer | None]],
    asked: list[frozenset[str]],
    waiting: list[int],
    deadline: float | None,
) -> None:
    """Fetch from the sources at `waiting` (indexes into `answers`) concurrently, until the
    deadline and its grace at most, and put what each came to in `answers`."""
    tasks = {
        i: asyncio.ensure_future(answers[i][0].fetch(asked[i], deadline=deadline)) for i in waiting
    }
    late: set[asyncio.Future[SourceAnswer]] = set()
    try:
        left = None if deadline is None else deadline + DEADLINE_GRACE - time.monotonic()
        _, late = await asyncio.wait(
            tasks.values(), timeout=None if left is None else max(0.0, left)
        )
    finally:
        for task in tasks.values():
            if not task.done():
                task.cancel()
    for i, task in tasks.items():
        source = answers[i][0]
        answers[i] = (source, _outcome(source, asked[i], task, late))


def _outcome(
    source: Source,
    wanted: frozenset[str],
    task: asyncio.Future[SourceAnswer],
    late: set[asyncio.Future[SourceAnswer]],
) -> SourceAnswer:
    """What a source's task came to: its answer, or nothing known (logged) if it failed or
    did not answer by the deadline."""
    if task in late or task.cancelled():
        log.warning("source %s did not answer by the deadline", source.name)
    else:
        failure = task.exception()
        if failure is None:
            answer = task.result()
            if not isinstance(source, CachedSource):  # a cached source logs its own, once
                for error in answer.errors:
                    log.warning("source %s could not answer: %s", source.name, error.message)
            return answer
        if not isinstance(failure, Exception):
            raise failure
        log.warning("source %s failed: %r", source.name, failure)
    return SourceAnswer(records=(), unknown_skus=wanted)
