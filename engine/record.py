"""Recording served decisions, sampled, as the carts file `python -m engine simulate` replays.

Each recorded line holds the cart, the availability the decision was made from, when it was made
and under which rule set, and the decision (without explanations):

    {"decided_at": "2026-11-22T12:00:00Z", "rule_set": "c95f239b487d", "cart": {...},
     "availability": {"records": [StockRecord, ...], "unknown": {"SKU": ["location", ...]}},
     "decision": {...}}

Keeping the availability makes a simulation reproducible without asking the upstream APIs again:
both rule sets see exactly what the live one saw.

The request path pays for the sampling draw and, when sampled, one append to an in-memory buffer.
Encoding and writing happen on a background thread every `interval` seconds and on `close`, so a
slow disk never holds a cart up. The buffer is bounded: when it is full a record is dropped and
counted, never waited for.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections import deque
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import msgspec
from msgspec import Struct

from engine.availability import Availability, StockRecord
from engine.model import Cart, Decision

__all__ = (
    "DEFAULT_CAPACITY",
    "DEFAULT_INTERVAL",
    "RECORD_SAMPLE_VARIABLE",
    "RECORD_VARIABLE",
    "Recorded",
    "RecordedAvailability",
    "Recorder",
    "recorded_availability",
    "recorder_from",
    "without_explanation",
)

log = logging.getLogger(__name__)

RECORD_VARIABLE: Final = "ENGINE_RECORD"
"""The file to append sampled decisions to; recording is off when it is not set."""
RECORD_SAMPLE_VARIABLE: Final = "ENGINE_RECORD_SAMPLE"
"""The share of decisions recorded, 0 to 1 (default 1: every decision)."""
DEFAULT_INTERVAL: Final = 1.0
"""Seconds between two writes of the buffer."""
DEFAULT_CAPACITY: Final = 10_000
"""Decisions held in memory between two writes; more are dropped (and counted)."""


class RecordedAvailability(Struct, frozen=True, forbid_unknown_fields=True):
    """The availability a decision was made from: every record, and where it was unknown."""

    records: tuple[StockRecord, ...] = ()
    unknown: dict[str, tuple[str, ...]] = {}
    """SKU -> location ids whose source gave no answer for it (sorted, so a file is stable)."""

    def availability(self) -> Availability:
        return Availability.from_records(
            list(self.records), {sku: frozenset(ids) for sku, ids in self.unknown.items()}
        )


class Recorded(Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One line of a carts file. Only `cart` is required: a line that is a bare cart is read as
    a record without availability (the simulation then takes it from a snapshot)."""

    decided_at: datetime | None = None
    rule_set: str | None = None
    cart: Cart
    availability: RecordedAvailability | None = None
    decision: Decision | None = None


def recorded_availability(availability: Availability) -> RecordedAvailability:
    """What of an `Availability` a simulation needs: its records and its unknown locations."""
    return RecordedAvailability(
        records=tuple(
            record for by_location in availability.stock.values() for record in by_location.values()
        ),
        unknown={sku: tuple(sorted(ids)) for sku, ids in availability.unknown.items()},
    )


def without_explanation(decision: Decision) -> Decision:
    """The decision as a checkout sees it without `?explain=true` (explanations are large and
    are recomputed by a simulation where needed)."""
    if decision.explanation is None and all(line.explanation is None for line in decision.lines):
        return decision
    return msgspec.structs.replace(
        decision,
        explanation=None,
        lines=tuple(msgspec.structs.replace(line, explanation=None) for line in decision.lines),
    )


_Pending = tuple[Cart, Availability, Decision, datetime]


class Recorder:
    """Appends sampled decisions to a JSON lines file from a background thread.

    `Checkout` draws `random.random() < recorder.sample` per decision and calls `record` only
    when it is true, so an unsampled cart costs one draw."""

    def __init__(
        self,
        path: Path,
        sample: float = 1.0,
        *,
        interval: float = DEFAULT_INTERVAL,
        capacity: int = DEFAULT_CAPACITY,
    ) -> None:
        if not 0.0 <= sample <= 1.0:
            raise ValueError(f"the record sample must be from 0 to 1, not {sample}")
        if capacity < 1:
            raise ValueError(f"the record buffer must hold at least one decision, not {capacity}")
        self.path = path
        self.sample = sample
        self.interval = interval
        self.capacity = capacity
        self.recorded = 0
        """Decisions taken into the buffer."""
        self.dropped = 0
        """Decisions dropped: the buffer was full, or writing them failed."""
        self.written = 0
        """Decisions written to the file."""
        self._buffer: deque[_Pending] = deque()
        self._encoder = msgspec.json.Encoder()
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Fail at start-up, not at the first flush, when the file cannot be written.
        with path.open("ab"):
            pass

    # --- the request path --------------------------------------------------------------------

    def record(
        self, cart: Cart, availability: Availability, decision: Decision, now: datetime
    ) -> None:
        """Keep one decision for the next write; drop it (counted) when the buffer is full.
        Called on the event loop: no encoding, no I/O."""
        if len(self._buffer) >= self.capacity:
            self.dropped += 1
            return
        self._buffer.append((cart, availability, decision, now))
        self.recorded += 1

    # --- writing ------------------------------------------------------------------------------

    def flush(self) -> int:
        """Encode and append what the buffer holds; the number of decisions written. Safe to
        call from any thread (the background writer and a simulation reading the file)."""
        with self._flush_lock:
            buffer = self._buffer
            batch: list[Recorded] = []
            # popleft, not a swap of buffers: an append racing with it is never lost.
            for _ in range(len(buffer)):
                cart, availability, decision, now = buffer.popleft()
                batch.append(
                    Recorded(
                        decided_at=now,
                        rule_set=decision.rule_set,
                        cart=cart,
                        availability=recorded_availability(availability),
                        decision=without_explanation(decision),
                    )
                )
            if not batch:
                return 0
            try:
                data = self._encoder.encode_lines(batch)
                with self.path.open("ab") as file:
                    file.write(data)
            except (OSError, TypeError, ValueError) as exc:
                self.dropped += len(batch)
                log.warning("could not record %d decision(s) to %s: %s", len(batch), self.path, exc)
                return 0
            self.written += len(batch)
            return len(batch)

    def start(self) -> None:
        """Start the background writer (once)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="decision-recorder", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.flush()

    def close(self) -> None:
        """Stop the writer and write what is left."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.flush()

    async def aclose(self) -> None:
        """`close` off the event loop: the last write may take a while."""
        await asyncio.to_thread(self.close)

    def stats(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "sample": self.sample,
            "recorded": self.recorded,
            "written": self.written,
            "dropped": self.dropped,
            "buffered": len(self._buffer),
        }


def recorder_from(
    path: Path | None, sample: float | None, env: Mapping[str, str] | None = None
) -> Recorder | None:
    """The recorder `serve --record PATH --record-sample RATE` asks for, else the one the
    environment asks for (`ENGINE_RECORD`, `ENGINE_RECORD_SAMPLE`); None when recording is off.
    Raises ValueError for a sample that is not a number from 0 to 1 (and OSError for a file
    that cannot be appended to)."""
    environ = os.environ if env is None else env
    if path is None:
        text = environ.get(RECORD_VARIABLE, "").strip()
        if not text:
            return None
        path = Path(text)
    if sample is None:
        text = environ.get(RECORD_SAMPLE_VARIABLE, "").strip()
        try:
            sample = float(text) if text else 1.0
        except ValueError:
            raise ValueError(
                f"{RECORD_SAMPLE_VARIABLE} must be a number from 0 to 1, not {text!r}"
            ) from None
    return Recorder(path, sample)
