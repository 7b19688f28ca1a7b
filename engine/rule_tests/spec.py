"""The rule test file format, and reading it with every problem located to its line.

A test file (`<rules>/tests/*.yaml`) lists tests; each states an availability situation (records
in the snapshot format), a cart, and what the merchandiser expects of the decision. Expectations
are partial: only what a test states is compared, so a test says what it is about and keeps
passing when an unrelated detail changes.

Test files are read like rule files (`engine.policy.load`): the same YAML reading with marks and
the same `file:line:column: sentence` problems, every problem of every file in one run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Final

from msgspec import UNSET, Meta, Struct, UnsetType

from engine.availability import Availability
from engine.errors import Problem
from engine.model import Cart, LineStatus, LocationVerdict, Outcome, ReasonCode
from engine.policy import RuleSet
from engine.policy.load import convert_located, read_yaml, rule_files, suggest
from engine.sources.snapshot import SnapshotEntry, records_from

__all__ = (
    "DEFAULT_NOW",
    "LINE_SETTINGS",
    "LOCATION_SETTINGS",
    "TESTS_FOLDER",
    "Expectation",
    "LineExpectation",
    "ReservationExpectation",
    "RuleTest",
    "RuleTestSpec",
    "load_rule_tests",
    "load_test_texts",
    "rule_test_files",
)

TESTS_FOLDER: Final = "tests"
"""Where a rule folder keeps its tests: `rules/tests/` (never read as rule files)."""

DEFAULT_NOW: Final = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
"""When a test is decided unless it says `now`: fixed, so a test never depends on the day it
runs (restock dates are written relative to it, `restock_in_days`)."""

LINE_SETTINGS: Final = (
    "ship_to",
    "deny",
    "max_quantity",
    "low_stock_threshold",
    "unknown_availability",
    "backorder.allowed",
    "backorder.max_quantity",
    "backorder.restock_required",
    "backorder.within_days",
    "backorder.split",
)
"""Settings an expectation may name for a line (as `?explain=true` names them)."""
LOCATION_SETTINGS: Final = ("safety_stock", "min_atp")
"""Settings with a value per location: expected as `{location id: value}`."""
CART_SETTINGS: Final = (
    "routing.criteria",
    "routing.max_shipments",
    "routing.max_locations_per_line",
    "partial_cart",
)
"""Settings of the whole cart an expectation may name (under `expect.settings`)."""

Quantity = Annotated[int, Meta(ge=0)]
Name = Annotated[str, Meta(min_length=1, max_length=200)]


# --- the format ---------------------------------------------------------------------------------


class ReservationExpectation(Struct, frozen=True, forbid_unknown_fields=True):
    """What a line's reservation should be; only the keys given are compared."""

    location_id: str | UnsetType = UNSET
    quantity: Quantity | UnsetType = UNSET
    restock_in_days: Annotated[int, Meta(ge=0)] | UnsetType | None = UNSET
    """Whole days from the test's `now` (UTC dates) to the restock; null: no restock date."""


class LineExpectation(Struct, frozen=True, forbid_unknown_fields=True):
    """What one line of the decision should be; only the keys given are compared."""

    sku: str | UnsetType = UNSET
    """In a list of lines: the line's SKU, checked against the cart (for the reader)."""
    status: LineStatus | UnsetType = UNSET
    allocated: Quantity | UnsetType = UNSET
    allocations: dict[str, Quantity] | UnsetType = UNSET
    """Location id -> units, all of them: `{}` says nothing is allocated."""
    reserved: Quantity | UnsetType = UNSET
    reservation: ReservationExpectation | UnsetType | None = UNSET
    reasons: tuple[ReasonCode, ...] | UnsetType = UNSET
    """The exact list, in order: `[]` says there are none."""
    available: Quantity | UnsetType | None = UNSET
    message: str | UnsetType | None = UNSET
    settings: dict[str, Any] | UnsetType = UNSET
    """Setting -> value for the line, as the explanation gives it; `safety_stock` and
    `min_atp` as `{location id: value}`."""
    locations: dict[str, LocationVerdict] | UnsetType = UNSET
    """Location id -> `used`, `passed_over` or `excluded`, as the explanation judges it; only
    the locations given are compared."""


class Expectation(Struct, frozen=True, forbid_unknown_fields=True):
    """What the decision should be: the cart's outcome, lines, shipments (any of them)."""

    decision: Outcome | UnsetType = UNSET
    lines: list[Any] | dict[str, Any] | UnsetType = UNSET
    """A list in cart order (one entry per line), or a mapping of SKU -> expectation when each
    SKU is on one line only. Each entry is read as a `LineExpectation` on its own."""
    shipments: dict[str, list[str]] | UnsetType = UNSET
    """Location id -> the SKUs it ships, in cart order; all shipments: `{}` says none."""
    settings: dict[str, Any] | UnsetType = UNSET
    """Cart setting (`routing.*`, `partial_cart`) -> value, as the explanation gives it."""


class RuleTestSpec(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One test as written. Records and expectations are checked item by item afterwards, so
    one run reports every broken one."""

    name: Name
    description: str | None = None
    now: datetime | UnsetType = UNSET
    availability: list[Any] = []
    """Records in the snapshot format (`demo/availability.json`), each a `SnapshotEntry`."""
    unknown: dict[str, list[str]] = {}
    """SKU -> locations whose source gave no answer (availability unknown there)."""
    cart: dict[str, Any]
    """A `Cart`, as `POST /v1/allocations` takes it (read on its own, like the records)."""
    expect: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RuleTest:
    """A test ready to run: its availability built, its line expectations placed by index."""

    name: str
    description: str | None
    file: str
    line: int
    now: datetime
    availability: Availability
    cart: Cart
    decision: Outcome | None
    lines: tuple[tuple[int, LineExpectation], ...]
    """(cart line index, what it should be), in cart order."""
    shipments: dict[str, list[str]] | None
    settings: dict[str, Any]
    """Cart setting -> expected value (none: not compared)."""

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


# --- reading ------------------------------------------------------------------------------------


def rule_test_files(folder: Path) -> list[Path]:
    """The test files of a rule folder: `*.yaml` and `*.yml` directly in `<folder>/tests/`."""
    tests = folder / TESTS_FOLDER
    return rule_files(tests) if tests.is_dir() else []


def load_rule_tests(
    folder: Path, rules: RuleSet | None = None
) -> tuple[list[RuleTest], list[Problem]]:
    """Every test of a rule folder, and every problem of its test files. With `rules`, the
    location ids a test names are checked against them (a typo would test nothing)."""
    texts: list[tuple[str, str]] = []
    problems: list[Problem] = []
    for path in rule_test_files(folder):
        try:
            texts.append((str(path), path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(Problem(str(path), 1, 1, f"cannot be read: {exc}"))
    tests, found = load_test_texts(texts, rules)
    return tests, problems + found


def load_test_texts(
    texts: Iterable[tuple[str, str]], rules: RuleSet | None = None
) -> tuple[list[RuleTest], list[Problem]]:
    """Tests from (file name, YAML text) pairs, in order, and the problems found."""
    tests: list[RuleTest] = []
    problems: list[Problem] = []
    names: dict[str, str] = {}
    for name, text in texts:
        reader = _Reader(name, text, rules, problems)
        for test in reader.read():
            first = names.get(test.name)
            if first is not None:
                problems.append(
                    Problem(
                        test.file,
                        test.line,
                        1,
                        f"the test name `{test.name}` is used twice (first at {first}): names "
                        "must be unique, reports and `--filter` go by them",
                    )
                )
                continue
            names[test.name] = test.where
            tests.append(test)
    return tests, problems


_Expected = tuple[
    Outcome | None,
    tuple[tuple[int, LineExpectation], ...],
    dict[str, list[str]] | None,
    dict[str, Any],
]
"""The cart's outcome, each line's expectations, the shipments and the cart settings."""


class _Reader:
    """Reads one test file, adding what is wrong with it to `problems`."""

    def __init__(
        self, name: str, text: str, rules: RuleSet | None, problems: list[Problem]
    ) -> None:
        self.name = name
        self.rules = rules
        self.problems = problems
        self.value, self.source, found = read_yaml(name, text)
        self.problems.extend(found)
        self.unreadable = bool(found) and self.value is None
        """Not YAML at all: that problem is the one to report, and nothing else can be read."""

    def error(self, path: tuple[str | int, ...], message: str, *, key: bool = False) -> None:
        self.problems.append(self.source.problem(path, message, key=key))

    def read(self) -> list[RuleTest]:
        value = self.value
        if self.unreadable:
            return []
        if not isinstance(value, dict) or "tests" not in value:
            self.error((), "a test file is a mapping with a list of tests: start it with `tests:`")
            return []
        for key in value:
            if key != "tests":
                self.error(
                    (key,),
                    f"unknown key `{key}`{suggest(key, ['tests'])}; a test file has only `tests`",
                    key=True,
                )
        items = value["tests"]
        if not isinstance(items, list) or not items:
            self.error(("tests",), "`tests` must be a list of tests: start each with `- name: ...`")
            return []
        tests = []
        for index, item in enumerate(items):
            test = self.test(item, ("tests", index))
            if test is not None:
                tests.append(test)
        return tests

    def test(self, item: Any, path: tuple[str | int, ...]) -> RuleTest | None:
        noun = "test"
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            noun = f"test `{item['name']}`"
        if item is None:
            self.error(path, "the test is empty")
            return None
        spec, problem = convert_located(
            item, RuleTestSpec, self.source, path, noun, root=RuleTestSpec
        )
        if problem is not None:
            self.problems.append(problem)
        if spec is None:
            return None
        before = len(self.problems)
        now = DEFAULT_NOW if isinstance(spec.now, UnsetType) else spec.now
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        entries = self.records(spec, path, noun)
        unknown = self.unknown(spec, path)
        cart, problem = convert_located(
            spec.cart, Cart, self.source, (*path, "cart"), f"the cart of {noun}", root=Cart
        )
        if problem is not None:
            self.problems.append(problem)
        if cart is not None and cart.pickup_location is not None:
            self.location(cart.pickup_location, (*path, "cart", "pickup_location"))
        expected = self.expectation(spec, cart, path, noun)
        if cart is None or expected is None or len(self.problems) > before:
            return None
        decision, lines, shipments, settings = expected
        return RuleTest(
            name=spec.name,
            description=spec.description,
            file=self.name,
            line=self.source.mark(path).line,
            now=now,
            availability=Availability.from_records(list(records_from(entries, now)), unknown),
            cart=cart,
            decision=decision,
            lines=lines,
            shipments=shipments,
            settings=settings,
        )

    def location(self, location_id: str, path: tuple[str | int, ...], *, key: bool = False) -> None:
        """A location id must be one of the rules' (when known): a typo would test nothing."""
        if self.rules is None or location_id in self.rules.location_by_id:
            return
        ids = list(self.rules.location_by_id)
        self.error(
            path,
            f"no location has the id `{location_id}`{suggest(location_id, ids)}; the rules' "
            "locations are: " + ", ".join(ids),
            key=key,
        )

    def records(
        self, spec: RuleTestSpec, path: tuple[str | int, ...], noun: str
    ) -> list[SnapshotEntry]:
        entries: list[SnapshotEntry] = []
        seen: dict[tuple[str, str], int] = {}
        for index, raw in enumerate(spec.availability):
            at = (*path, "availability", index)
            entry, problem = convert_located(
                raw,
                SnapshotEntry,
                self.source,
                at,
                f"availability record {index} of {noun}",
                root=SnapshotEntry,
            )
            if problem is not None:
                self.problems.append(problem)
            if entry is None:
                continue
            pair = (entry.sku, entry.location_id)
            if pair in seen:
                first = self.source.mark((*path, "availability", seen[pair])).line
                self.error(
                    at,
                    f"a second record of {entry.sku} at {entry.location_id} (the first is on "
                    f"line {first}): give one record per SKU and location",
                )
                continue
            seen[pair] = index
            self.location(entry.location_id, (*at, "location_id"))
            entries.append(entry)
        return entries

    def unknown(self, spec: RuleTestSpec, path: tuple[str | int, ...]) -> dict[str, frozenset[str]]:
        for sku, location_ids in spec.unknown.items():
            for index, location_id in enumerate(location_ids):
                self.location(location_id, (*path, "unknown", sku, index))
        return {sku: frozenset(ids) for sku, ids in spec.unknown.items()}

    def expectation(
        self, spec: RuleTestSpec, cart: Cart | None, path: tuple[str | int, ...], noun: str
    ) -> _Expected | None:
        at = (*path, "expect")
        expect, problem = convert_located(
            spec.expect, Expectation, self.source, at, f"`expect` of {noun}", root=Expectation
        )
        if problem is not None:
            self.problems.append(problem)
        if expect is None:
            return None
        if (
            expect.decision is UNSET
            and expect.lines is UNSET
            and expect.shipments is UNSET
            and expect.settings is UNSET
        ):
            self.error(
                at, "`expect` states nothing: give `decision`, `lines`, `shipments` or `settings`"
            )
            return None
        lines = self.line_expectations(cart, expect, at, noun)
        shipments = None
        if not isinstance(expect.shipments, UnsetType):
            shipments = expect.shipments
            for location_id in shipments:
                self.location(location_id, (*at, "shipments", location_id), key=True)
        settings: dict[str, Any] = {}
        if not isinstance(expect.settings, UnsetType):
            settings = expect.settings
            for name in settings:
                if name not in CART_SETTINGS:
                    hint = (
                        "; it is a setting of each line: give it under the line's `settings`"
                        if name in LINE_SETTINGS or name in LOCATION_SETTINGS
                        else suggest(name, list(CART_SETTINGS))
                    )
                    self.error(
                        (*at, "settings", name),
                        f"`{name}` is not a setting of the cart{hint}; the cart's are: "
                        + ", ".join(CART_SETTINGS),
                        key=True,
                    )
        decision = None if isinstance(expect.decision, UnsetType) else expect.decision
        return decision, lines, shipments, settings

    def line_expectations(
        self, cart: Cart | None, expect: Expectation, at: tuple[str | int, ...], noun: str
    ) -> tuple[tuple[int, LineExpectation], ...]:
        """Each line's expectations, placed at its cart line; without a cart (it had errors)
        they are only checked."""
        written = expect.lines
        if isinstance(written, UnsetType):
            return ()
        if cart is None:
            entries = written.items() if isinstance(written, dict) else enumerate(written)
            for key, raw in entries:
                self.line(raw, (*at, "lines", key), f"line {key} of {noun}")
            return ()
        skus = [line.sku for line in cart.lines]
        placed: list[tuple[int, LineExpectation]] = []
        if isinstance(written, list):
            if len(written) != len(skus):
                self.error(
                    (*at, "lines"),
                    f"`lines` has {len(written)} entries but the cart has {len(skus)} line(s): "
                    "give one per cart line, in cart order (`{}` for a line not checked), or "
                    "key them by SKU",
                )
                return ()
            for index, raw in enumerate(written):
                line_path = (*at, "lines", index)
                line = self.line(raw, line_path, f"line {index} ({skus[index]}) of {noun}")
                if line is None:
                    continue
                if not isinstance(line.sku, UnsetType) and line.sku != skus[index]:
                    self.error(
                        (*line_path, "sku"),
                        f"line {index} of the cart is {skus[index]}, not {line.sku}: list the "
                        "lines in cart order",
                    )
                    continue
                placed.append((index, line))
            return tuple(placed)
        for sku, raw in written.items():
            line_path = (*at, "lines", sku)
            count = skus.count(sku)
            if count != 1:
                self.error(
                    line_path,
                    f"no line of the cart has the SKU `{sku}`{suggest(sku, skus)}"
                    if count == 0
                    else f"`{sku}` is on {count} lines of the cart: list the lines' "
                    "expectations in cart order instead of by SKU",
                    key=True,
                )
                continue
            index = skus.index(sku)
            line = self.line(raw, line_path, f"line {index} ({sku}) of {noun}")
            if line is None:
                continue
            if not isinstance(line.sku, UnsetType) and line.sku != sku:
                self.error((*line_path, "sku"), f"`sku` says {line.sku}, but the key is {sku}")
                continue
            placed.append((index, line))
        return tuple(sorted(placed, key=lambda pair: pair[0]))

    def line(self, raw: Any, path: tuple[str | int, ...], noun: str) -> LineExpectation | None:
        if raw is None:
            raw = {}
        line, problem = convert_located(
            raw, LineExpectation, self.source, path, f"expectations of {noun}", root=LineExpectation
        )
        if problem is not None:
            self.problems.append(problem)
        if line is None:
            return None
        if not isinstance(line.allocations, UnsetType):
            for location_id in line.allocations:
                self.location(location_id, (*path, "allocations", location_id), key=True)
        if isinstance(line.reservation, ReservationExpectation) and not isinstance(
            line.reservation.location_id, UnsetType
        ):
            self.location(line.reservation.location_id, (*path, "reservation", "location_id"))
        if not isinstance(line.settings, UnsetType):
            self.settings(line.settings, (*path, "settings"))
        if not isinstance(line.locations, UnsetType):
            for location_id in line.locations:
                self.location(location_id, (*path, "locations", location_id), key=True)
        return line

    def settings(self, settings: dict[str, Any], path: tuple[str | int, ...]) -> None:
        known = [*LINE_SETTINGS, *LOCATION_SETTINGS]
        for name, value in settings.items():
            at = (*path, name)
            if name in CART_SETTINGS:
                self.error(
                    at,
                    f"`{name}` is a setting of the whole cart: give it under `expect.settings`",
                    key=True,
                )
            elif name not in known:
                self.error(
                    at,
                    f"`{name}` is not a setting of a line{suggest(name, known)}; use one of: "
                    + ", ".join(known),
                    key=True,
                )
            elif name in LOCATION_SETTINGS:
                if not isinstance(value, dict) or not value:
                    self.error(
                        at,
                        f"`{name}` has a value per location: write it as "
                        f"`{name}: {{dub-dc: 2}}` (location id: value)",
                    )
                    continue
                for location_id in value:
                    self.location(str(location_id), (*at, location_id), key=True)
