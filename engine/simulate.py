"""Simulate and diff: decide recorded carts under the live rules and a candidate, and compare.

A merchandiser's edit is judged on real traffic before it goes live: every cart of a carts file
(the JSON lines `engine.record.Recorder` writes, or bare carts) is decided under both rule sets
with the same inputs (the availability recorded with it, the time it was decided at), and every
difference is classified:

- per cart, the outcome transition (`allocate -> deny`; `allocate -> allocate` when only lines
  changed; `rejected` when the cart names a pickup location the rules do not have, which the
  service refuses with 422);
- per line, the status transition and the kinds of change: `status`, `location` (both sides
  allocate, from different locations), `quantity` (allocated or reserved amounts, or the split
  between the same locations), `reservation` (its quantity, location or restock time), `reasons`
  (reason codes, message, or the quantity said to be available).

Counts add up: total = unchanged + changed; the outcome transitions add up to the changed carts
and the status transitions to the changed lines; a line may change in several kinds at once.

Speed comes from deciding without explanations first (two `decide` calls per cart, then one
struct comparison), and explaining only the changed carts that are shown: for those, the settings
whose value or origin (rule, file) differ between the two explanations are the rules responsible.

A recording holds the stock the live rules asked about. Where the candidate lets a line use a
location the live rules did not (say a rule that denied a SKU is switched off), the recording has
nothing to say: that stock is taken from a snapshot when one is given (`fill`), else it is
unknown (the rules' `unknown_availability` decides), and the cart is flagged.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TextIO

import msgspec
from msgspec import Struct

from engine.allocate import decide
from engine.availability import Availability, merge_answers
from engine.errors import (
    AvailabilityFileError,
    EngineError,
    RuleSetError,
    Severity,
    split_validation_message,
)
from engine.model import Cart, Decision, LineDecision, SettingOrigin
from engine.policy import RuleSet, load_rule_set
from engine.record import RecordedAvailability
from engine.sources.snapshot import SnapshotSource

__all__ = (
    "KINDS",
    "REJECTED",
    "CartChange",
    "CartsFileError",
    "Counts",
    "Entry",
    "LineChange",
    "Report",
    "SettingChange",
    "SettingSide",
    "Side",
    "Transition",
    "command",
    "parse_entry",
    "read_carts",
    "render_text",
    "simulate",
    "snapshot_for",
)

KINDS: Final = ("status", "location", "quantity", "reservation", "reasons")
"""The kinds of change of a line, in the order they are reported."""
REJECTED: Final = "rejected"
"""The outcome (and line status) of a cart the service would refuse: its pickup location is not
a location of the rules."""
_ARROW: Final = " → "


class CartsFileError(EngineError):
    """A carts file that cannot be read: names the file and, for a bad line, the line."""

    def __init__(self, where: str, message: str, line: int | None = None) -> None:
        self.where = where
        self.line = line
        self.message = message
        super().__init__(
            f"{where}:{line}: {message}" if line is not None else f"{where}: {message}"
        )


# --- reading ------------------------------------------------------------------------------------


class _Line(Struct, frozen=True, kw_only=True):
    """A carts file line as read: `engine.record.Recorded` with the recorded decision left
    undecoded (a simulation decides again; decoding it would only cost time)."""

    decided_at: datetime | None = None
    rule_set: str | None = None
    cart: Cart
    availability: RecordedAvailability | None = None
    decision: msgspec.Raw = msgspec.Raw()
    """Left undecoded (msgspec takes `Raw` alone, not in a union: empty when absent)."""


_LINE_DECODER: Final = msgspec.json.Decoder(_Line)
_CART_DECODER: Final = msgspec.json.Decoder(Cart)
_NO_CART: Final = "Object missing required field `cart`"


@dataclass(frozen=True, slots=True)
class Entry:
    """One cart to simulate, with what it was decided from when it was recorded."""

    position: int
    """Its line in the file (from 1), or its index in a request's `carts` (from 0)."""
    cart: Cart
    decided_at: datetime | None = None
    rule_set: str | None = None
    availability: RecordedAvailability | None = None
    """None for a bare cart: the snapshot's availability is used."""


def parse_entry(data: bytes | str, position: int) -> Entry:
    """Decode one recorded decision or bare cart. Raises `msgspec.DecodeError` (with the path
    of the bad value) for anything else."""
    try:
        line = _LINE_DECODER.decode(data)
    except msgspec.ValidationError as exc:
        # Not a record: a bare cart has no `cart` member (and record members are optional).
        if str(exc) != _NO_CART:
            raise
        return Entry(position, _CART_DECODER.decode(data))
    return Entry(position, line.cart, line.decided_at, line.rule_set, line.availability)


def _decode_message(exc: msgspec.DecodeError) -> str:
    if isinstance(exc, msgspec.ValidationError):
        message, path = split_validation_message(str(exc))
        return f"{path}: {message}" if path else message
    return f"not valid JSON: {exc}"


def read_carts(path: Path, *, last: int | None = None) -> list[Entry]:
    """The entries of a carts file, blank lines skipped. `last` reads only the file's last
    entries (a recording grows without end) and ignores a final line not yet complete. Raises
    `CartsFileError` naming the file and the line."""
    try:
        if last is None:
            data = path.read_bytes()
            first = 1
        else:
            data, first = _tail(path, last)
    except OSError as exc:
        raise CartsFileError(str(path), f"cannot be read: {exc.strerror or exc}") from exc
    entries: list[Entry] = []
    for number, raw in enumerate(data.split(b"\n"), first):
        if not raw.strip():
            continue
        try:
            entries.append(parse_entry(raw, number))
        except msgspec.DecodeError as exc:
            raise CartsFileError(str(path), _decode_message(exc), number) from None
    return entries


_BLOCK: Final = 1 << 20


def _tail(path: Path, count: int) -> tuple[bytes, int]:
    """The last `count` complete lines of a file and the number of the first of them: read
    backwards in blocks, then the newlines before them counted in blocks."""
    with path.open("rb") as file:
        position = file.seek(0, 2)
        chunks: list[bytes] = []
        newlines = 0
        while position > 0 and newlines <= count:
            size = min(_BLOCK, position)
            position -= size
            file.seek(position)
            chunk = file.read(size)
            chunks.append(chunk)
            newlines += chunk.count(b"\n")
        data = b"".join(reversed(chunks))
        skipped = 0
        if position > 0:  # the first line read is cut: it starts before `position`
            data = data[data.index(b"\n") + 1 :]
            skipped = 1
        # Complete lines only: the recorder may be appending to the last one.
        lines = data[: data.rfind(b"\n") + 1].split(b"\n")[:-1]
        dropped = max(0, len(lines) - count)
        before = 0
        file.seek(0)
        while file.tell() < position:
            before += file.read(min(_BLOCK, position - file.tell())).count(b"\n")
    return b"\n".join(lines[dropped:]), before + skipped + dropped + 1


# --- the report ---------------------------------------------------------------------------------


class Side(Struct, frozen=True):
    """One of the two rule sets compared."""

    rules: str
    """Where it came from: a folder, or `live` / `candidate` over HTTP."""
    rule_set: str


class Transition(Struct, frozen=True):
    live: str
    candidate: str
    count: int


class Counts(Struct, frozen=True):
    total: int
    """Carts simulated: `unchanged` + `changed`."""
    unchanged: int
    changed: int
    outcomes: tuple[Transition, ...]
    """The changed carts by outcome (live -> candidate): they add up to `changed`."""
    lines: int
    """Lines in all the carts."""
    lines_changed: int
    statuses: tuple[Transition, ...]
    """The changed lines by status (live -> candidate): they add up to `lines_changed`."""
    kinds: dict[str, int]
    """Changed lines per kind of change (every kind of `KINDS`, 0 included); a line may change
    in several kinds."""
    live_outcomes: dict[str, int]
    """Every cart by its outcome under the live rules: they add up to `total`."""
    candidate_outcomes: dict[str, int]
    """Every cart by its outcome under the candidate: they add up to `total`."""
    snapshot: int
    """Bare carts, decided on the snapshot's availability."""
    unrecorded: int
    """Carts the candidate needed stock for that the recording does not hold (see the module)."""
    other_rule_set: int
    """Carts recorded under a rule set other than the live one."""


class SettingSide(Struct, frozen=True, omit_defaults=True):
    value: Any
    rule: str
    file: str | None = None
    """The rule file, under the rule set's folder."""
    line: int | None = None


class SettingChange(Struct, frozen=True, omit_defaults=True):
    """A setting that differs between the two explanations; None on the side it does not
    apply to."""

    setting: str
    live: SettingSide | None
    candidate: SettingSide | None
    location_id: str | None = None


class LineChange(Struct, frozen=True, omit_defaults=True):
    line: int
    sku: str
    quantity: int
    changes: tuple[str, ...]
    """The kinds of change, among `KINDS`."""
    live: LineDecision | None
    """None when the cart is rejected on that side."""
    candidate: LineDecision | None
    settings: tuple[SettingChange, ...] = ()
    """The settings of this line that differ: the rules responsible."""


class CartChange(Struct, frozen=True, omit_defaults=True):
    id: str
    """The cart's `cart_id`, else `line N` (the carts file) or `carts[N]` (a request)."""
    position: int
    cart: Cart
    live: str
    """The outcome under the live rules."""
    candidate: str
    lines: tuple[LineChange, ...]
    """The changed lines only."""
    settings: tuple[SettingChange, ...] = ()
    """Cart settings (routing, partial carts) that differ."""
    unrecorded: tuple[str, ...] = ()
    """`SKU@location` the candidate needed that the recording does not hold."""
    filled: bool = False
    """True when that stock was taken from the snapshot, False when it was unknown."""


class Timings(Struct, frozen=True):
    read_s: float
    """Loading the rules, the carts and the snapshot."""
    decide_s: float
    """Deciding every cart under both rule sets and comparing."""
    explain_s: float
    """Explaining the changed carts shown."""


class Report(Struct, frozen=True):
    carts: str
    """Where the carts came from."""
    live: Side
    candidate: Side
    counts: Counts
    shown: int
    changes: tuple[CartChange, ...]
    """The first `shown` changed carts, in file order."""
    elapsed_s: float
    timings: Timings


# --- simulating ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Changed:
    entry: Entry
    availability: Availability
    now: datetime
    live: Decision | None
    candidate: Decision | None
    lines: tuple[tuple[int, tuple[str, ...]], ...]
    unrecorded: tuple[str, ...]
    filled: bool


def _rejected(cart: Cart, rules: RuleSet) -> bool:
    """The service refuses (422) a cart collected at a location the rules do not have."""
    return cart.pickup_location is not None and cart.pickup_location not in rules.location_by_id


def _line_kinds(live: LineDecision, candidate: LineDecision) -> tuple[str, ...]:
    kinds: list[str] = []
    if live.status is not candidate.status:
        kinds.append("status")
    before = {a.location_id: a.quantity for a in live.allocations}
    after = {a.location_id: a.quantity for a in candidate.allocations}
    same_places = before.keys() == after.keys()
    if before and after and not same_places:
        kinds.append("location")
    if (
        live.allocated != candidate.allocated
        or live.reserved != candidate.reserved
        or (same_places and before != after)
    ):
        kinds.append("quantity")
    if live.reservation != candidate.reservation:
        kinds.append("reservation")
    if (
        live.reasons != candidate.reasons
        or live.message != candidate.message
        or live.available != candidate.available
    ):
        kinds.append("reasons")
    return tuple(kinds)


def _status(decision: Decision | None, index: int) -> str:
    return REJECTED if decision is None else decision.lines[index].status.value


def _outcome(decision: Decision | None) -> str:
    return REJECTED if decision is None else decision.decision.value


class _Simulation:
    """The state of one run: the two rule sets, the snapshot, memoised serving sets."""

    def __init__(
        self,
        live: RuleSet,
        candidate: RuleSet,
        snapshot: Availability | None,
        fill: bool,
        now: datetime,
        name: str,
    ) -> None:
        self.name = name
        self.live = live
        self.candidate = candidate
        self.snapshot = snapshot
        self.fill = fill and snapshot is not None
        self.now = now
        self._gaps: dict[tuple[str, str, str | None, str | None], frozenset[str]] = {}

    def gap(self, sku: str, cart: Cart) -> frozenset[str]:
        """Locations the candidate asks about for this line and the live rules do not."""
        key = (sku, cart.country, cart.channel, cart.pickup_location)
        found = self._gaps.get(key)
        if found is None:
            found = self._gaps[key] = self.candidate.serving(*key) - self.live.serving(*key)
        return found

    def inputs(self, entry: Entry) -> tuple[Availability, datetime, tuple[str, ...], bool]:
        """The availability and time both sides decide with; what the recording lacked, and
        whether it was filled from the snapshot."""
        now = entry.decided_at or self.now
        recorded = entry.availability
        if recorded is None:
            if self.snapshot is None:
                raise ValueError("a bare cart needs a snapshot of availability")
            return self.snapshot, now, (), False
        availability = recorded.availability()
        missing: dict[str, set[str]] = {}
        for line in entry.cart.lines:
            gap = self.gap(line.sku, entry.cart)
            if not gap:
                continue
            held = availability.stock.get(line.sku, {})
            unknown = availability.unknown.get(line.sku, frozenset())
            for location_id in gap:
                if location_id not in held and location_id not in unknown:
                    missing.setdefault(line.sku, set()).add(location_id)
        if not missing:
            return availability, now, (), False
        unrecorded = tuple(
            f"{sku}@{location_id}"
            for sku, locations in sorted(missing.items())
            for location_id in sorted(locations)
        )
        return self._complete(recorded, missing), now, unrecorded, self.fill

    def _complete(
        self, recorded: RecordedAvailability, missing: Mapping[str, set[str]]
    ) -> Availability:
        """The recorded availability with the missing stock from the snapshot, or unknown."""
        records = list(recorded.records)
        unknown = {sku: set(ids) for sku, ids in recorded.unknown.items()}
        snapshot = self.snapshot if self.fill else None
        for sku, locations in missing.items():
            for location_id in locations:
                if snapshot is None:
                    unknown.setdefault(sku, set()).add(location_id)
                    continue
                record = snapshot.stock.get(sku, {}).get(location_id)
                if record is not None:
                    records.append(record)
                elif location_id in snapshot.unknown.get(sku, frozenset()):
                    unknown.setdefault(sku, set()).add(location_id)
        return Availability.from_records(
            records, {sku: frozenset(ids) for sku, ids in unknown.items()}
        )

    def decide_under(
        self, rules: RuleSet, cart: Cart, availability: Availability, now: datetime, explain: bool
    ) -> Decision | None:
        """`decide`, or None for a cart the service would refuse under these rules."""
        if _rejected(cart, rules):
            return None
        return decide(cart, availability, rules, now, explain=explain)


def simulate(
    entries: Sequence[Entry],
    live: RuleSet,
    candidate: RuleSet,
    *,
    now: datetime,
    snapshot: Availability | None = None,
    fill: bool = False,
    show: int | None = 20,
    labels: tuple[str, str] = ("live", "candidate"),
    folders: tuple[str, str] | None = None,
    carts: str = "carts",
    name: str = "line {}",
    read_s: float = 0.0,
) -> Report:
    """Decide every entry under both rule sets and report the differences.

    `now` is the time of entries not recorded with one (bare carts). `snapshot` is the
    availability of bare carts and, with `fill`, of stock a recording lacks. `show` limits the
    changed carts reported in detail (None: all); only those are explained. `labels` name the
    two rule sets, `folders` where their files are (default: the labels), to locate a rule
    (`rules/rules.yaml:34`); `carts` says where the carts came from, and `name` how a cart
    without a `cart_id` is called (from its position)."""
    started = time.perf_counter()
    run = _Simulation(live, candidate, snapshot, fill, now, name)
    live_outcomes: Counter[str] = Counter()
    candidate_outcomes: Counter[str] = Counter()
    outcomes: Counter[tuple[str, str]] = Counter()
    statuses: Counter[tuple[str, str]] = Counter()
    kinds: Counter[str] = Counter()
    lines = unrecorded = other = bare = 0
    changed: list[_Changed] = []
    for entry in entries:
        cart = entry.cart
        availability, at, missing, filled = run.inputs(entry)
        if missing:
            unrecorded += 1
        if entry.availability is None:
            bare += 1
        elif entry.rule_set is not None and entry.rule_set != live.id:
            other += 1
        lines += len(cart.lines)
        before = run.decide_under(live, cart, availability, at, False)
        after = run.decide_under(candidate, cart, availability, at, False)
        live_outcomes[_outcome(before)] += 1
        candidate_outcomes[_outcome(after)] += 1
        if before is not None and after is not None:
            if before.decision is after.decision and before.lines == after.lines:
                continue
            line_kinds = tuple(
                (a.line, found)
                for a, b in zip(before.lines, after.lines, strict=True)
                if (found := _line_kinds(a, b))
            )
            if not line_kinds and before.decision is after.decision:
                continue  # only the order of allocations differs: the same answer
        elif before is None and after is None:
            continue
        else:
            line_kinds = tuple((i, ("status",)) for i in range(len(cart.lines)))
        outcomes[_outcome(before), _outcome(after)] += 1
        for index, found in line_kinds:
            statuses[_status(before, index), _status(after, index)] += 1
            kinds.update(found)
        changed.append(
            _Changed(entry, availability, at, before, after, line_kinds, missing, filled)
        )
    decided = time.perf_counter()
    shown = changed if show is None else changed[:show]
    where = labels if folders is None else folders
    changes = tuple(_explain(run, item, where) for item in shown)
    explained = time.perf_counter()
    total = len(entries)
    counts = Counts(
        total=total,
        unchanged=total - len(changed),
        changed=len(changed),
        outcomes=_transitions(outcomes),
        lines=lines,
        lines_changed=sum(statuses.values()),
        statuses=_transitions(statuses),
        kinds={kind: kinds[kind] for kind in KINDS},
        live_outcomes=dict(sorted(live_outcomes.items())),
        candidate_outcomes=dict(sorted(candidate_outcomes.items())),
        snapshot=bare,
        unrecorded=unrecorded,
        other_rule_set=other,
    )
    return Report(
        carts=carts,
        live=Side(labels[0], live.id),
        candidate=Side(labels[1], candidate.id),
        counts=counts,
        shown=len(changes),
        changes=changes,
        elapsed_s=round(read_s + explained - started, 3),
        timings=Timings(
            read_s=round(read_s, 3),
            decide_s=round(decided - started, 3),
            explain_s=round(explained - decided, 3),
        ),
    )


def _transitions(counter: Counter[tuple[str, str]]) -> tuple[Transition, ...]:
    """Most frequent first, then by name: the order a reader scans."""
    return tuple(
        Transition(live, candidate, count)
        for (live, candidate), count in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
    )


# --- the rules responsible ----------------------------------------------------------------------

_SettingKey = tuple[str, str | None]
_NOT_RULES: Final = frozenset({"defaults", "built-in"})


def _settings(found: Iterable[SettingOrigin]) -> dict[_SettingKey, SettingOrigin]:
    return {(s.setting, s.location_id): s for s in found}


def _side(origin: SettingOrigin | None, folder: str) -> SettingSide | None:
    if origin is None:
        return None
    file = origin.file
    if file is not None and folder:
        file = f"{folder.rstrip('/')}/{file}"
    return SettingSide(origin.value, origin.rule, file, origin.line)


def _differences(
    live: Iterable[SettingOrigin], candidate: Iterable[SettingOrigin], folders: tuple[str, str]
) -> tuple[SettingChange, ...]:
    """Settings whose value or origin differ. A setting on one side only is listed when a rule
    (not `defaults`) set it: a deny rule, or a rule of a location only one side may use. Line
    numbers alone are not compared: an edit above a rule moves it without changing it."""
    before = _settings(live)
    after = _settings(candidate)
    found: list[SettingChange] = []
    for key in dict.fromkeys([*before, *after]):
        a = before.get(key)
        b = after.get(key)
        if a is not None and b is not None:
            if a.value == b.value and a.rule == b.rule and a.file == b.file:
                continue
        else:
            only = a if a is not None else b
            if only is None or (only.rule in _NOT_RULES and only.setting != "deny"):
                continue
        found.append(
            SettingChange(
                setting=key[0],
                live=_side(a, folders[0]),
                candidate=_side(b, folders[1]),
                location_id=key[1],
            )
        )
    return tuple(found)


def _strip(line: LineDecision | None) -> LineDecision | None:
    return None if line is None else msgspec.structs.replace(line, explanation=None)


def _explain(run: _Simulation, item: _Changed, folders: tuple[str, str]) -> CartChange:
    entry, cart = item.entry, item.entry.cart
    before = run.decide_under(run.live, cart, item.availability, item.now, True)
    after = run.decide_under(run.candidate, cart, item.availability, item.now, True)
    cart_settings: tuple[SettingChange, ...] = ()
    if before is not None and after is not None and before.explanation and after.explanation:
        cart_settings = _differences(
            before.explanation.settings, after.explanation.settings, folders
        )
    changed_lines: list[LineChange] = []
    for index, kinds in item.lines:
        a = None if before is None else before.lines[index]
        b = None if after is None else after.lines[index]
        settings: tuple[SettingChange, ...] = ()
        if a is not None and b is not None and a.explanation and b.explanation:
            settings = _differences(a.explanation.settings, b.explanation.settings, folders)
        line = cart.lines[index]
        changed_lines.append(
            LineChange(index, line.sku, line.quantity, kinds, _strip(a), _strip(b), settings)
        )
    return CartChange(
        id=cart.cart_id or run.name.format(entry.position),
        position=entry.position,
        cart=cart,
        live=_outcome(item.live),
        candidate=_outcome(item.candidate),
        lines=tuple(changed_lines),
        settings=cart_settings,
        unrecorded=item.unrecorded,
        filled=item.filled and bool(item.unrecorded),
    )


# --- text ---------------------------------------------------------------------------------------


def _value(value: Any) -> str:
    return msgspec.json.encode(value).decode()


def _origin_text(side: SettingSide | None) -> str:
    if side is None:
        return "not set"
    where = f", {side.file}:{side.line}" if side.file is not None else ""
    name = side.rule if side.rule in _NOT_RULES else f"rule {side.rule}"
    return f"{_value(side.value)} ({name}{where})"


def _setting_text(change: SettingChange) -> str:
    at = f" at {change.location_id}" if change.location_id else ""
    return (
        f"{change.setting}{at}: {_origin_text(change.live)}{_ARROW}{_origin_text(change.candidate)}"
    )


def _line_text(line: LineDecision | None) -> str:
    if line is None:
        return "rejected: the pickup location is not in these rules"
    parts: list[str] = [line.status.value]
    if line.allocations:
        parts.append(", ".join(f"{a.location_id} {a.quantity}" for a in line.allocations))
    reservation = line.reservation
    if reservation is not None:
        where = f" at {reservation.location_id}" if reservation.location_id else ""
        when = (
            f", restock {reservation.restock_time.date().isoformat()}"
            if reservation.restock_time is not None
            else ""
        )
        parts.append(f"{reservation.quantity} reserved{where}{when}")
    if line.reasons:
        parts.append(" ".join(line.reasons))
    if line.available is not None:
        parts.append(f"{line.available} available")
    if line.message:
        parts.append(f'"{line.message}"')
    return "; ".join(parts)


def _table(rows: Iterable[tuple[str, int]], indent: str = "  ") -> Iterator[str]:
    listed = list(rows)
    if not listed:
        return
    width = max(len(label) for label, _ in listed)
    digits = max(len(f"{count:,}") for _, count in listed)
    for label, count in listed:
        yield f"{indent}{label:<{width}}  {count:>{digits},}"


def render_text(report: Report) -> str:
    """The summary table, then each changed cart shown with what changed and why."""
    c = report.counts
    out = [
        f"Simulated {c.total:,} carts from {report.carts} in {report.elapsed_s:.2f} s "
        f"(loading {report.timings.read_s:.2f} s, deciding twice and comparing "
        f"{report.timings.decide_s:.2f} s, explaining {report.shown} changed carts "
        f"{report.timings.explain_s:.2f} s)",
        f"  live       {report.live.rules} (rule set {report.live.rule_set})",
        f"  candidate  {report.candidate.rules} (rule set {report.candidate.rule_set})",
        "",
        "carts",
        *_table([("unchanged", c.unchanged), ("changed", c.changed), ("total", c.total)]),
    ]
    if c.outcomes:
        out += ["", "changed carts by outcome (live → candidate)"]
        out += _table(
            (
                f"{t.live}{_ARROW}{t.candidate}" + (" (lines)" if t.live == t.candidate else ""),
                t.count,
            )
            for t in c.outcomes
        )
    if c.statuses:
        out += ["", f"changed lines by status ({c.lines_changed:,} of {c.lines:,} lines)"]
        out += _table((f"{t.live}{_ARROW}{t.candidate}", t.count) for t in c.statuses)
        out += ["", "changed lines by kind of change (a line may change in several)"]
        out += _table(c.kinds.items())
    out += ["", "every cart by outcome", *_outcome_table(c)]
    notes: list[tuple[str, int]] = []
    if c.snapshot:
        notes.append(("bare carts, decided on the snapshot's availability", c.snapshot))
    if c.other_rule_set:
        notes.append(("carts recorded under another rule set than the live one", c.other_rule_set))
    if c.unrecorded:
        notes.append(("carts needing stock the recording does not hold", c.unrecorded))
    if notes:
        out += ["", "notes", *_table(notes)]
    if report.changes:
        more = f" of {c.changed:,}; --show all for every one" if report.shown < c.changed else ""
        out += ["", f"changed carts ({report.shown:,}{more})"]
    for change in report.changes:
        out += ["", *_change_text(change)]
    return "\n".join(out) + "\n"


def _outcome_table(c: Counts) -> Iterator[str]:
    names = sorted(set(c.live_outcomes) | set(c.candidate_outcomes))
    width = max((len(name) for name in names), default=0)
    yield f"  {'':<{width}}  {'live':>9}  {'candidate':>9}"
    for name in names:
        before, after = c.live_outcomes.get(name, 0), c.candidate_outcomes.get(name, 0)
        yield f"  {name:<{width}}  {before:>9,}  {after:>9,}"


def _change_text(change: CartChange) -> Iterator[str]:
    cart = change.cart
    where = f" (line {change.position})" if not change.id.startswith(("line ", "carts[")) else ""
    extra = "".join(
        f", {name} {value}"
        for name, value in (("channel", cart.channel), ("pickup", cart.pickup_location))
        if value
    )
    yield f"{change.id}{where}: {change.live}{_ARROW}{change.candidate}   ({cart.country}{extra})"
    if change.unrecorded:
        how = "taken from the snapshot" if change.filled else "unknown"
        yield f"  stock the recording does not hold ({how}): {', '.join(change.unrecorded)}"
    for setting in change.settings:
        yield f"  cart setting {_setting_text(setting)}"
    for line in change.lines:
        yield f"  line {line.line} {line.sku} × {line.quantity}: {', '.join(line.changes)}"
        yield f"    live       {_line_text(line.live)}"
        yield f"    candidate  {_line_text(line.candidate)}"
        if line.settings:
            for number, setting in enumerate(line.settings):
                label = "because" if number == 0 else ""
                yield f"    {label:<9}  {_setting_text(setting)}"
        elif line.live is not None and line.candidate is not None:
            yield "    because    no setting of this line differs (it shares stock or the cart's"
            yield "               settings with what changed)"


# --- the command --------------------------------------------------------------------------------


def snapshot_for(
    path: Path, entries: Iterable[Entry], location_ids: Iterable[str], now: datetime
) -> Availability:
    """A snapshot file's availability for every SKU of the entries, as `Checkout` would gather
    it from a `SnapshotSource`: a SKU the file does not have is unknown at every location."""
    source = SnapshotSource.from_file(path, now)
    skus = {line.sku for entry in entries for line in entry.cart.lines}
    return merge_answers([(source, source.answer(skus))], list(location_ids))


def command(
    *,
    carts: Path,
    candidate: Path,
    live: Path,
    availability: Path | None,
    default_availability: Path,
    show: int | None,
    output: str,
    now: datetime | None,
    out: TextIO,
    err: TextIO,
) -> int:
    """`python -m engine simulate`: 0 once simulated, 1 when the candidate rules have errors
    (each printed as `file:line:column: sentence`), 2 when the carts (or the snapshot) cannot
    be read. The live rules' errors are raised (`RuleSetError`), as for every command."""
    started = time.perf_counter()
    live_rules = load_rule_set(live)
    try:
        candidate_rules = load_rule_set(candidate)
    except RuleSetError as exc:
        for problem in exc.problems:
            print(problem, file=err)
        errors = sum(p.severity is Severity.ERROR for p in exc.problems)
        print(f"{candidate}: {errors} error(s); nothing was simulated", file=err)
        return 1
    moment = now or datetime.now(UTC)
    try:
        entries = read_carts(carts)
        snapshot = None
        if availability is not None or any(e.availability is None for e in entries):
            locations = {*live_rules.location_ids, *candidate_rules.location_ids}
            snapshot = snapshot_for(
                availability or default_availability, entries, locations, moment
            )
    except (CartsFileError, AvailabilityFileError) as exc:
        print(str(exc), file=err)
        return 2
    report = simulate(
        entries,
        live_rules,
        candidate_rules,
        now=moment,
        snapshot=snapshot,
        fill=availability is not None,
        show=show,
        labels=(str(live), str(candidate)),
        carts=str(carts),
        read_s=time.perf_counter() - started,
    )
    if output == "json":
        out.write(msgspec.json.format(msgspec.json.encode(report), indent=2).decode() + "\n")
    else:
        out.write(render_text(report))
    return 0
