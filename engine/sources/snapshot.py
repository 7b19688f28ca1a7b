"""A snapshot source: availability read once from a JSON file shipped with the demo.

It is the reference implementation of the `Source` protocol and the fixture the tests and
benchmarks use: no I/O after loading, so every decision over it is reproducible.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import msgspec
from msgspec import Meta, Struct

from engine.availability.record import StockRecord
from engine.availability.source import SourceAnswer
from engine.errors import AvailabilityFileError, split_validation_message
from engine.model import LocationId, Sku, in_words

__all__ = ("SnapshotEntry", "SnapshotSource", "load_snapshot", "records_from")

Count = Annotated[int, Meta(ge=0)]


class SnapshotEntry(Struct, frozen=True, forbid_unknown_fields=True):
    sku: Sku
    location_id: LocationId
    on_hand: Count | None = None
    reserved: Count | None = None
    short: Count | None = None
    atp: Count | None = None
    """When absent: on_hand - reserved - short (never below zero)."""
    unlimited: bool = False
    backorderable: bool | None = None
    restock_time: datetime | None = None
    restock_in_days: Annotated[int, Meta(ge=0, le=3650)] | None = None
    """Restock relative to when the file is loaded, so demo data never goes stale."""
    updated_time: datetime | None = None

    def __post_init__(self) -> None:
        if self.atp is None and self.on_hand is None and not self.unlimited:
            raise ValueError("a record needs `atp` or `on_hand` (or `unlimited: true`)")
        if self.restock_time is not None and self.restock_in_days is not None:
            raise ValueError("give `restock_time` or `restock_in_days`, not both")


class SnapshotFile(Struct, frozen=True, forbid_unknown_fields=True):
    records: tuple[SnapshotEntry, ...]


def _utc(moment: datetime | None) -> datetime | None:
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


def _normalise(entry: SnapshotEntry, loaded_at: datetime) -> StockRecord:
    atp = entry.atp
    if atp is None:
        atp = max(0, (entry.on_hand or 0) - (entry.reserved or 0) - (entry.short or 0))
    restock = _utc(entry.restock_time)
    if entry.restock_in_days is not None:
        midnight = loaded_at.replace(hour=0, minute=0, second=0, microsecond=0)
        restock = midnight + timedelta(days=entry.restock_in_days)
    return StockRecord(
        sku=entry.sku,
        location_id=entry.location_id,
        atp=atp,
        source="snapshot",
        on_hand=entry.on_hand,
        reserved=entry.reserved,
        short=entry.short,
        unlimited=entry.unlimited,
        backorderable=entry.backorderable,
        restock_time=restock,
        updated_time=_utc(entry.updated_time) or loaded_at,
    )


def records_from(entries: Iterable[SnapshotEntry], now: datetime) -> tuple[StockRecord, ...]:
    """The normalised records of snapshot entries, relative restock times anchored at `now`:
    for availability written in the snapshot format outside a snapshot file (rule tests)."""
    return tuple(_normalise(entry, now) for entry in entries)


def load_snapshot(path: Path, now: datetime | None = None) -> tuple[StockRecord, ...]:
    """Read and validate a snapshot file; a bad file raises `AvailabilityFileError` naming it.
    `now` anchors relative restock times (default: the current time)."""
    try:
        data = msgspec.json.decode(path.read_bytes(), type=SnapshotFile)
    except OSError as exc:
        raise AvailabilityFileError(f"{path}: cannot be read: {exc.strerror}") from exc
    except msgspec.DecodeError as exc:
        message, at = split_validation_message(str(exc))
        where = f" - at `{at}`" if at else ""
        raise AvailabilityFileError(f"{path}: {in_words(message)}{where}") from exc
    loaded_at = now or datetime.now(UTC)
    return tuple(_normalise(entry, loaded_at) for entry in data.records)


class SnapshotSource:
    """Answers from records held in memory; a SKU it has no record of is unknown to it."""

    def __init__(self, records: Collection[StockRecord], name: str = "snapshot") -> None:
        self._name = name
        self._by_sku: dict[str, list[StockRecord]] = {}
        for record in records:
            self._by_sku.setdefault(record.sku, []).append(record)

    @classmethod
    def from_file(cls, path: Path, now: datetime | None = None) -> SnapshotSource:
        return cls(load_snapshot(path, now))

    @property
    def name(self) -> str:
        return self._name

    @property
    def locations(self) -> frozenset[str] | None:
        return None

    async def fetch(self, skus: Collection[str], *, deadline: float | None = None) -> SourceAnswer:
        return self.answer(skus)

    def answer_now(self, skus: Collection[str]) -> SourceAnswer:
        """Always at once: everything is in memory (`gather` then starts no task)."""
        return self.answer(skus)

    def answer(self, skus: Collection[str]) -> SourceAnswer:
        """The synchronous answer, for the CLI and benchmarks that need no event loop."""
        records: list[StockRecord] = []
        unknown: set[str] = set()
        for sku in skus:
            found = self._by_sku.get(sku)
            if found is None:
                unknown.add(sku)
            else:
                records.extend(found)
        return SourceAnswer(records=tuple(records), unknown_skus=frozenset(unknown))
