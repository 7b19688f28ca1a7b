"""Rule tests (`python -m engine test`): the format, the runner's reports and exit codes, and the
demo's own tests in `rules/tests/`."""

from __future__ import annotations

import io
import re
import shutil
import textwrap
from pathlib import Path

import pytest

from engine.cli import main
from engine.model import ReasonCode
from engine.policy import load_folder, load_rule_set
from engine.policy.load import rule_files
from engine.rule_tests import (
    DEFAULT_NOW,
    load_rule_tests,
    load_test_texts,
    rule_test_files,
    run_folder,
    run_rule_test,
)
from tests.helpers import RULES, rules_from

LOCATED = re.compile(r"^(?P<file>.+\.ya?ml):(?P<line>\d+):(?P<column>\d+): (?P<message>.+)$")

SMALL_RULES = """\
locations:
  - id: dub
    country: IE
    priority: 1
  - id: cork
    country: IE
    priority: 2
catalog:
  - sku: TEE
    tags: [apparel]
  - sku: MUG
    tags: [home]
defaults:
  routing:
    criteria: [priority]
rules:
  - name: keep-two-in-dublin
    match: {skus: [TEE], locations: [dub]}
    safety_stock: 2
"""

PASSING = """\
tests:
  - name: tee-from-dublin-then-cork
    description: Dublin keeps 2 back, so 5 take both.
    availability:
      - {sku: TEE, location_id: dub, atp: 6}
      - {sku: TEE, location_id: cork, atp: 3}
    cart:
      country: IE
      lines:
        - {sku: TEE, quantity: 5}
    expect:
      decision: allocate
      lines:
        - status: allocated
          allocations: {dub: 4, cork: 1}
          reasons: []
          settings:
            safety_stock: {dub: 2}
      shipments: {dub: [TEE], cork: [TEE]}
"""

FAILING = """\
tests:
  - name: tee-all-from-dublin
    availability:
      - {sku: TEE, location_id: dub, atp: 6}
      - {sku: TEE, location_id: cork, atp: 3}
    cart:
      country: IE
      lines:
        - {sku: TEE, quantity: 5}
    expect:
      lines:
        TEE:
          allocations: {dub: 5}
"""


def folder_with(tmp_path: Path, tests: dict[str, str], rules: str = SMALL_RULES) -> Path:
    folder = tmp_path / "rules"
    (folder / "tests").mkdir(parents=True)
    (folder / "rules.yaml").write_text(rules, encoding="utf-8")
    for name, text in tests.items():
        (folder / "tests" / name).write_text(textwrap.dedent(text), encoding="utf-8")
    return folder


def run(folder: Path, name_filter: str | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run_folder(folder, name_filter=name_filter, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def problems_of(text: str, rules: str = SMALL_RULES) -> list[str]:
    _, problems = load_test_texts([("tests/t.yaml", textwrap.dedent(text))], rules_from(rules))
    return [str(p) for p in sorted(problems)]


# --- the demo's tests --------------------------------------------------------------------------


def test_demo_rule_tests_all_pass():
    code, out, err = run(RULES)
    assert err == ""
    lines = out.splitlines()
    assert lines[-1].endswith(" passed, 0 failed")
    assert all(line.startswith("PASS ") for line in lines[:-1])
    assert code == 0


def test_demo_rule_tests_cover_every_kind_of_rule():
    """Every rule of the demo is named by a test that checks it, and every reason code, the
    channel, click and collect, unknown availability and deny messages appear in some test."""
    tests, problems = load_rule_tests(RULES, load_rule_set(RULES))
    assert problems == []
    assert len(tests) >= 40
    described = "\n".join(t.description or "" for t in tests)
    for rule in load_rule_set(RULES).rules:
        assert f"`{rule.name}`" in described, rule.name
    text = "\n".join(path.read_text(encoding="utf-8") for path in rule_test_files(RULES))
    for reason in ReasonCode:
        assert reason.value in text, reason
    for word in ["pickup_location:", "channel: wholesale", "unknown:", "message:", "restock_time:"]:
        assert word in text
    for setting in ["low_stock_threshold:", "min_atp:", "safety_stock:", "backorder.within_days:"]:
        assert setting in text
    for expectation in ["locations:", "routing.criteria:", "partial_cart: true"]:
        assert expectation in text


def test_demo_rules_write_every_setting_in_some_rule():
    """The demo is the merchandisers' example: each setting is written by a rule of its own (not
    only in `defaults`), both sides of `ship_to` and a location's `ship_to` among them, so the
    demo tests above exercise every kind of rule."""
    rules = load_rule_set(RULES).rules
    written = {name for rule in rules for name in rule.settings}
    every = {
        "ship_to",
        "safety_stock",
        "min_atp",
        "low_stock_threshold",
        "max_quantity",
        "backorder.allowed",
        "backorder.max_quantity",
        "backorder.within_days",
        "backorder.split",
        "routing.criteria",
        "routing.max_shipments",
        "routing.max_locations_per_line",
        "unknown_availability",
        "partial_cart",
    }
    assert every <= written, every - written
    assert any(rule.deny is not None for rule in rules)
    assert "enabled: false" in (RULES / "rules.yaml").read_text(encoding="utf-8")
    ship_to = [rule.settings["ship_to"][0] for rule in rules if "ship_to" in rule.settings]
    assert any(rule.locations is not None for rule in rules if "ship_to" in rule.settings)
    assert any(rule.locations is None for rule in rules if "ship_to" in rule.settings)
    assert any(value.allow is not None for value in ship_to)
    assert any(value.deny for value in ship_to)
    unknown = {
        rule.settings["unknown_availability"][0]
        for rule in rules
        if "unknown_availability" in rule.settings
    }
    assert {"reserve", "allocate"} <= unknown


def test_the_rule_loader_does_not_read_the_tests_folder():
    """`rules/tests/*.yaml` are test files: the rule set is the folder's own files only."""
    assert (RULES / "tests").is_dir()
    files = rule_files(RULES)
    assert files
    assert all(path.parent == RULES for path in files)
    loaded = load_folder(RULES)
    assert loaded.problems == []
    assert all("/tests/" not in name for name in loaded.files)


def test_a_tests_folder_beside_rules_is_not_a_rule_file(tmp_path):
    folder = folder_with(tmp_path, {"t.yaml": PASSING})
    rule_set = load_rule_set(folder)
    assert [Path(f).name for f in rule_set.files] == ["rules.yaml"]


# --- running -------------------------------------------------------------------------------------


def test_passing_file(tmp_path):
    code, out, err = run(folder_with(tmp_path, {"t.yaml": PASSING}))
    assert (code, out, err) == (0, "PASS tee-from-dublin-then-cork\n1 passed, 0 failed\n", "")


def test_failing_expectation_shows_the_difference_and_why(tmp_path):
    folder = folder_with(tmp_path, {"t.yaml": FAILING, "u.yaml": PASSING})
    rule_set = load_rule_set(folder).id
    code, out, err = run(folder)
    assert code == 1
    assert err == ""
    assert out == (
        f"FAIL tee-all-from-dublin ({folder}/tests/t.yaml:2)\n"
        "  line 0 (TEE) allocations: expected {dub: 5}, got {dub: 4, cork: 1}\n"
        "  why:\n"
        f"    Cart to IE: allocate (rule set {rule_set})\n"
        "      1 line(s), routing by priority\n"
        "      settings:\n"
        "        routing.criteria: priority (defaults, rules.yaml:15)\n"
        "        routing.max_locations_per_line: no limit (built-in)\n"
        "        routing.max_shipments: no limit (built-in)\n"
        "    Line 0: 5 × TEE: allocated 4 from dub, 1 from cork\n"
        "      locations:\n"
        "        dub   used         allocated 4; ATP 6, safety stock 2 → 4 allocatable\n"
        "        cork  used         allocated 1; ATP 3, safety stock 0 → 3 allocatable\n"
        "      settings:\n"
        "        ship_to: no restriction (built-in)\n"
        "        max_quantity: no limit (built-in)\n"
        "        safety_stock: 2 at dub (rule `keep-two-in-dublin`, rules.yaml:19)\n"
        "\n"
        "PASS tee-from-dublin-then-cork\n"
        "1 passed, 1 failed\n"
    )


def test_failure_report_shows_cart_settings_for_a_cart_difference(tmp_path):
    failing = PASSING.replace("decision: allocate", "decision: deny").replace(
        "shipments: {dub: [TEE], cork: [TEE]}", "shipments: {dub: [TEE]}"
    )
    code, out, _ = run(folder_with(tmp_path, {"t.yaml": failing}))
    assert code == 1
    lines = out.splitlines()
    assert lines[1:3] == [
        "  decision: expected deny, got allocate",
        "  shipments: expected {dub: [TEE]}, got {dub: [TEE], cork: [TEE]}",
    ]
    assert "    Cart to IE: allocate (rule set " in "\n".join(lines)
    assert "        routing.criteria: priority (defaults, rules.yaml:15)" in lines
    # A decision that differs shows every line's outcome.
    assert "    Line 0: 5 × TEE: allocated 4 from dub, 1 from cork" in lines


def test_reservation_status_reasons_and_settings_differences(tmp_path):
    tests = """\
    tests:
      - name: mug-backorder
        availability:
          - {sku: MUG, location_id: dub, atp: 0, restock_in_days: 3}
        cart: {country: IE, lines: [{sku: MUG, quantity: 1}]}
        expect:
          lines:
            - status: reserved
              reservation: {location_id: dub, restock_in_days: 3}
              reasons: [INSUFFICIENT_STOCK]
              available: null
              message: null
              settings:
                backorder.allowed: true
                min_atp: {cork: 1}
    """
    code, out, _ = run(folder_with(tmp_path, {"t.yaml": tests}))
    assert code == 1
    assert out.splitlines()[1:6] == [
        "  line 0 (MUG) status: expected reserved, got denied",
        "  line 0 (MUG) reservation: expected {location_id: dub, restock_in_days: 3}, got none",
        "  line 0 (MUG) available: expected none, got 0",
        "  line 0 (MUG) settings.backorder.allowed: expected true, got false (built-in)",
        "  line 0 (MUG) settings.min_atp at cork: expected 1, got 0 (built-in)",
    ]


def test_location_setting_of_an_excluded_location(tmp_path):
    tests = """\
    tests:
      - name: collected-in-cork
        availability:
          - {sku: TEE, location_id: cork, atp: 3}
        cart: {country: IE, pickup_location: cork, lines: [{sku: TEE, quantity: 1}]}
        expect:
          lines:
            - settings: {safety_stock: {dub: 2, cork: 1}}
    """
    code, out, _ = run(folder_with(tmp_path, {"t.yaml": tests}))
    assert code == 1
    assert out.splitlines()[1:3] == [
        "  line 0 (TEE) settings.safety_stock at dub: expected 2, got not set: dub is excluded "
        "(the cart is collected at cork)",
        "  line 0 (TEE) settings.safety_stock at cork: expected 1, got 0 (built-in)",
    ]


def test_location_verdicts_and_cart_settings(tmp_path):
    """`locations` compares the explanation's verdict per location; `expect.settings` the
    cart's settings, with the rule that set them when they differ."""
    tests = """\
    tests:
      - name: tee-verdicts
        availability:
          - {sku: TEE, location_id: dub, atp: 6}
          - {sku: TEE, location_id: cork, atp: 3}
        cart: {country: IE, lines: [{sku: TEE, quantity: 5}]}
        expect:
          lines:
            - locations: {dub: used, cork: excluded}
          settings:
            routing.criteria: [priority]
            partial_cart: true
    """
    code, out, _ = run(folder_with(tmp_path, {"t.yaml": tests}))
    assert code == 1
    assert out.splitlines()[1:3] == [
        "  line 0 (TEE) locations.cork: expected excluded, got used (allocated 1)",
        "  settings.partial_cart: expected true, got false (built-in)",
    ]
    passing = tests.replace("cork: excluded", "cork: used").replace(
        "            partial_cart: true\n", ""
    )
    assert run(folder_with(tmp_path / "b", {"t.yaml": passing}))[0] == 0


def test_cart_settings_rule_origin_in_the_difference(tmp_path):
    rules = SMALL_RULES + (
        "  - name: partial-in-ireland\n    match: {countries: [IE]}\n    partial_cart: true\n"
    )
    tests = """\
    tests:
      - name: partial
        cart: {country: IE, lines: [{sku: TEE, quantity: 1}]}
        expect:
          settings: {partial_cart: false}
    """
    code, out, _ = run(folder_with(tmp_path, {"t.yaml": tests}, rules=rules))
    assert code == 1
    assert out.splitlines()[1] == (
        "  settings.partial_cart: expected false, got true (rule `partial-in-ireland`, "
        "rules.yaml:22)"
    )


def test_misplaced_settings_and_unknown_locations_in_expectations():
    cart_setting_on_a_line = PASSING.replace(
        "            safety_stock: {dub: 2}", "            partial_cart: true"
    )
    assert problems_of(cart_setting_on_a_line) == [
        "tests/t.yaml:18:13: `partial_cart` is a setting of the whole cart: give it under "
        "`expect.settings`"
    ]
    line_setting_on_the_cart = PASSING.replace(
        "      shipments:", "      settings: {max_quantity: 2}\n      shipments:"
    )
    assert problems_of(line_setting_on_the_cart) == [
        "tests/t.yaml:19:18: `max_quantity` is not a setting of the cart; it is a setting of "
        "each line: give it under the line's `settings`; the cart's are: routing.criteria, "
        "routing.max_shipments, routing.max_locations_per_line, partial_cart"
    ]
    misspelt = PASSING.replace(
        "      shipments:", "      settings: {routing.max_shipment: 2}\n      shipments:"
    )
    assert problems_of(misspelt) == [
        "tests/t.yaml:19:18: `routing.max_shipment` is not a setting of the cart (did you mean "
        "`routing.max_shipments`?); the cart's are: routing.criteria, routing.max_shipments, "
        "routing.max_locations_per_line, partial_cart"
    ]
    typo = PASSING.replace("          reasons: []", "          locations: {dubb: used}")
    assert problems_of(typo) == [
        "tests/t.yaml:16:23: no location has the id `dubb` (did you mean `dub`?); the rules' "
        "locations are: dub, cork"
    ]
    verdict = PASSING.replace("          reasons: []", "          locations: {dub: pased_over}")
    assert problems_of(verdict) == [
        "tests/t.yaml:16:28: `pased_over` is not a verdict on a location (did you mean "
        "`passed_over`?); use one of: used, passed_over, excluded"
    ]


def test_restock_in_days_counts_from_the_tests_now():
    rules = rules_from(
        SMALL_RULES + "\n  - name: mugs-backorder\n    match: {tags: [home]}\n"
        "    backorder: {allowed: true}\n"
    )
    tests, problems = load_test_texts(
        [
            (
                "t.yaml",
                textwrap.dedent("""\
                tests:
                  - name: later
                    now: 2026-05-10T23:30:00Z
                    availability:
                      - {sku: MUG, location_id: cork, atp: 0, restock_in_days: 4}
                    cart: {country: IE, lines: [{sku: MUG, quantity: 2}]}
                    expect:
                      decision: reserve
                      lines:
                        MUG: {reservation: {location_id: cork, quantity: 2, restock_in_days: 4}}
                  - name: default-now
                    availability:
                      - {sku: MUG, location_id: dub, atp: 0, restock_in_days: 1}
                    cart: {country: IE, lines: [{sku: MUG, quantity: 1}]}
                    expect: {lines: [{reservation: {restock_in_days: 1}}]}
                """),
            )
        ],
        rules,
    )
    assert problems == []
    assert tests[1].now == DEFAULT_NOW
    results = [run_rule_test(test, rules) for test in tests]
    assert [r.differences for r in results] == [(), ()]
    reservation = results[0].decision.lines[0].reservation
    assert reservation is not None
    assert reservation.restock_time is not None
    assert reservation.restock_time.isoformat() == "2026-05-14T00:00:00+00:00"


def test_filter_runs_matching_tests_only(tmp_path):
    folder = folder_with(tmp_path, {"t.yaml": FAILING, "u.yaml": PASSING})
    assert run(folder, "THEN-CORK") == (
        0,
        "PASS tee-from-dublin-then-cork\n1 passed, 0 failed\n",
        "",
    )
    code, out, err = run(folder, "nothing-like-it")
    assert (code, out) == (1, "")
    assert err == "no test name contains `nothing-like-it`\n"


# --- broken test files ----------------------------------------------------------------------------


def test_broken_test_file_is_reported_with_file_and_line(tmp_path):
    broken = PASSING.replace("atp: 3}", "atp: three}")
    folder = folder_with(tmp_path, {"t.yaml": broken})
    code, out, err = run(folder)
    assert code == 1
    assert out == (
        f"{folder}/tests/t.yaml:6:44: `atp` must be a whole number (or null), not `three`\n"
    )
    assert err == f"{folder}/tests: 1 error(s) in the test files; no test was run\n"


def test_unknown_expectation_key_suggests_the_right_one():
    text = PASSING.replace("allocations: {dub: 4, cork: 1}", "alocations: {dub: 4, cork: 1}")
    assert problems_of(text) == [
        "tests/t.yaml:15:11: unknown key `alocations` in expectations of line 0 (TEE) of test "
        "`tee-from-dublin-then-cork` (did you mean `allocations`?); allowed keys: sku, status, "
        "allocated, allocations, reserved, reservation, reasons, available, message, settings, "
        "locations"
    ]


def test_unknown_keys_of_expect_and_test_suggest_too():
    assert problems_of(PASSING.replace("description:", "descripton:")) == [
        "tests/t.yaml:3:5: unknown key `descripton` in test `tee-from-dublin-then-cork` (did you "
        "mean `description`?); allowed keys: name, description, now, availability, unknown, "
        "cart, expect"
    ]
    assert problems_of(PASSING.replace("shipments:", "shipment:")) == [
        "tests/t.yaml:19:7: unknown key `shipment` in `expect` of test "
        "`tee-from-dublin-then-cork` (did you mean `shipments`?); allowed keys: decision, "
        "lines, shipments, settings"
    ]


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        (
            "location_id: cork, atp: 3",
            "location_id: crok, atp: 3",
            "6:33: no location has the id `crok` (did you mean `cork`?); the rules' locations "
            "are: dub, cork",
        ),
        (
            "decision: allocate",
            "decision: allocated",
            "12:17: `allocated` is not an allowed value for `decision` (did you mean "
            "`allocate`?); use one of: allocate, reserve, deny",
        ),
        (
            "reasons: []",
            "reasons: [BELOW_SAFETY]",
            "16:21: `BELOW_SAFETY` is not a reason code (did you mean `BELOW_SAFETY_STOCK`?); "
            "use one of: UNKNOWN_SKU, DENIED_BY_RULE, NOT_SHIPPABLE, QUANTITY_LIMIT, "
            "INSUFFICIENT_STOCK, BELOW_SAFETY_STOCK, BACKORDER_NOT_ALLOWED, BACKORDER_LIMIT, "
            "RESTOCK_UNKNOWN, RESTOCK_TOO_LATE, SPLIT_LIMIT, AVAILABILITY_UNKNOWN",
        ),
        (
            "country: IE",
            "country: ie",
            "8:16: `ie`: write country codes in capitals (`IE`)",
        ),
        (
            "safety_stock: {dub: 2}",
            "safty_stock: {dub: 2}",
            "18:13: `safty_stock` is not a setting of a line (did you mean `safety_stock`?); use "
            "one of: ship_to, deny, max_quantity, low_stock_threshold, unknown_availability, "
            "backorder.allowed, backorder.max_quantity, backorder.restock_required, "
            "backorder.within_days, backorder.split, safety_stock, min_atp",
        ),
        (
            "- {sku: TEE, location_id: cork, atp: 3}",
            "- {sku: TEE, location_id: cork}",
            "6:9: availability record 1 of test `tee-from-dublin-then-cork`: a record needs "
            "`atp` or `on_hand` (or `unlimited: true`)",
        ),
        (
            "- {sku: TEE, location_id: cork, atp: 3}",
            "- {sku: TEE, location_id: dub, atp: 3}",
            "6:9: a second record of TEE at dub (the first is on line 5): give one record per SKU "
            "and location",
        ),
        (
            "        - status: allocated",
            "        - sku: MUG\n          status: allocated",
            "14:16: line 0 of the cart is TEE, not MUG: list the lines in cart order",
        ),
        # A bad value in a mapping is found at its own key, the mapping's second here.
        (
            "allocations: {dub: 4, cork: 1}",
            "allocations: {dub: 4, cork: -1}",
            "15:39: `cork` cannot be negative (`-1`): use 0 or more",
        ),
        (
            "shipments: {dub: [TEE], cork: [TEE]}",
            "shipments: {dub: [TEE], cork: [TEE, 5]}",
            "19:43: `cork` must be text, but `5` is read as a number; write it in quotes "
            '("5") so it is kept exactly as written',
        ),
        (
            "- {sku: TEE, location_id: cork, atp: 3}",
            '- {sku: "TEE\\n", location_id: cork, atp: 3}',
            "6:15: `TEE\\n` is not valid for `sku`: it cannot contain spaces or line breaks",
        ),
    ],
)
def test_broken_test_is_located(old, new, problem):
    assert old in PASSING
    assert problems_of(PASSING.replace(old, new)) == [f"tests/t.yaml:{problem}"]


def test_lines_must_match_the_cart():
    two_lines = PASSING.replace(
        "        - status: allocated", "        - {}\n        - status: allocated"
    )
    assert problems_of(two_lines) == [
        "tests/t.yaml:14:9: `lines` has 2 entries but the cart has 1 line(s): give one per cart "
        "line, in cart order (`{}` for a line not checked), or key them by SKU"
    ]
    by_sku = FAILING.replace("        TEE:", "        TEA:").replace(
        "      country: IE", "      country: IE\n      channel: web"
    )
    assert problems_of(by_sku) == [
        "tests/t.yaml:13:9: no line of the cart has the SKU `TEA` (did you mean `TEE`?)"
    ]
    twice = FAILING.replace(
        "        - {sku: TEE, quantity: 5}",
        "        - {sku: TEE, quantity: 2}\n        - {sku: TEE, quantity: 3}",
    )
    assert problems_of(twice) == [
        "tests/t.yaml:13:9: `TEE` is on 2 lines of the cart: list the lines' expectations in "
        "cart order instead of by SKU"
    ]


def test_a_test_must_expect_something():
    text = FAILING.replace(
        "    expect:\n      lines:\n        TEE:\n          allocations: {dub: 5}\n",
        "    expect: {}\n",
    )
    assert problems_of(text) == [
        "tests/t.yaml:10:13: `expect` states nothing: give `decision`, `lines`, `shipments` or "
        "`settings`"
    ]


def test_test_names_are_unique():
    _, problems = load_test_texts(
        [("a.yaml", PASSING), ("b.yaml", PASSING)], rules_from(SMALL_RULES)
    )
    assert [str(p) for p in problems] == [
        "b.yaml:2:1: the test name `tee-from-dublin-then-cork` is used twice (first at "
        "a.yaml:2): names must be unique, reports and `--filter` go by them"
    ]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "1:1: a test file is a mapping with a list of tests: start it with `tests:`"),
        (
            "- name: x\n",
            "1:1: a test file is a mapping with a list of tests: start it with `tests:`",
        ),
        ("tests: {}\n", "1:8: `tests` must be a list of tests: start each with `- name: ...`"),
    ],
)
def test_broken_file_shapes(text, problem):
    assert problems_of(text) == [f"tests/t.yaml:{problem}"]


def test_invalid_yaml_is_reported_like_a_rule_file():
    """The YAML reading is the rule files' own (engine.policy.load), hints included."""
    (problem,) = problems_of("tests:\n  - name: x\n\tcart: {}\n")
    assert problem.startswith("tests/t.yaml:3:1: not valid YAML: ")
    assert problem.endswith("(indent with spaces, not tabs)")


def test_unknown_top_level_key():
    assert problems_of(PASSING + "test:\n  - name: y\n") == [
        "tests/t.yaml:20:1: unknown key `test` (did you mean `tests`?); a test file has only "
        "`tests`"
    ]


# --- exit codes, through the CLI -----------------------------------------------------------------


def test_cli_exit_codes(tmp_path, capsys):
    good = folder_with(tmp_path / "good", {"t.yaml": PASSING})
    assert main(["test", str(good)]) == 0
    bad = folder_with(tmp_path / "bad", {"t.yaml": FAILING})
    assert main(["test", str(bad)]) == 1
    broken = folder_with(tmp_path / "broken", {"t.yaml": "tests: [\n"})
    assert main(["test", str(broken)]) == 1
    empty = folder_with(tmp_path / "empty", {})
    assert main(["test", str(empty)]) == 1
    out, err = capsys.readouterr()
    assert "PASS tee-from-dublin-then-cork" in out
    assert "FAIL tee-all-from-dublin" in out
    located = next(LOCATED.match(line) for line in out.splitlines() if "not valid YAML" in line)
    assert located is not None
    assert located["file"] == f"{broken}/tests/t.yaml"
    assert located["message"].startswith("not valid YAML")
    assert f"{empty}/tests: no tests (write them in *.yaml files there)" in err


def test_cli_broken_rules_run_no_test(tmp_path, capsys):
    folder = folder_with(
        tmp_path, {"t.yaml": PASSING}, SMALL_RULES.replace("country: IE", "country: XX", 1)
    )
    assert main(["test", str(folder)]) == 1
    out, err = capsys.readouterr()
    assert LOCATED.match(out.splitlines()[0])
    assert "`XX` is not an ISO 3166-1 alpha-2 country code" in out
    assert "PASS" not in out
    assert "the rules were not loaded, no test was run" in err


def test_cli_runs_the_demo_tests_by_default(capsys, monkeypatch):
    monkeypatch.chdir(RULES.parent)
    assert main(["test", "--filter", "vinyl"]) == 0
    out = capsys.readouterr().out
    assert "PASS vinyl-two-per-order" in out
    assert out.endswith(" passed, 0 failed\n")


def test_copied_demo_rules_with_a_changed_rule_fail_its_tests(tmp_path, capsys):
    """The demo's tests pin its rules: a changed safety stock fails the tests about it."""
    folder = tmp_path / "rules"
    shutil.copytree(RULES, folder)
    rules = folder / "rules.yaml"
    rules.write_text(
        rules.read_text(encoding="utf-8").replace("    safety_stock: 2", "    safety_stock: 1"),
        encoding="utf-8",
    )
    assert main(["test", str(folder), "--filter", "hoodie"]) == 1
    out = capsys.readouterr().out
    assert (
        "  line 0 (HOODIE-GRY-L) allocations: expected {dub-dc: 5, ams-dc: 3}, got "
        "{dub-dc: 6, ams-dc: 2}"
    ) in out
    assert (
        "        safety_stock: 1 at dub-dc, ams-dc (rule `hoodie-safety-stock`, rules.yaml:34)"
    ) in out
