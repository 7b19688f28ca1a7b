"""Broken rule files, written the way a merchandiser breaks them.

Each test names the exact place (file, line, column) and what the loader says there: the file,
the right line, what is wrong and what to write instead, and never a crash.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.cli import main
from engine.errors import Problem, RuleSetError, Severity
from engine.policy import RuleSet, load_folder
from tests.helpers import RULES, rules_from

# A small valid rule set the broken files are read with (as base.yaml, before them).
BASE = """\
country_groups:
  - name: eu
    countries: [IE, FR, DE, NL]
  - name: north-america
    countries: [US, CA]
locations:
  - id: dub-dc
    country: IE
    ships_to: [eu, GB]
  - id: ams-dc
    country: NL
    ships_to: [eu]
  - id: lon-store
    country: GB
    ships_to: [GB, north-america]
catalog:
  - sku: TEE-BLK-M
    tags: [apparel]
  - sku: LAMP-OAK
    tags: [home]
  - sku: CHEF-KNIFE-20
    tags: [home, blade]
"""

RULE_KEYS = (
    "ship_to, safety_stock, min_atp, low_stock_threshold, max_quantity, backorder, routing, "
    "unknown_availability, partial_cart, name, match, description, enabled, deny"
)
SECTIONS = "country_groups, sources, locations, catalog, defaults, rules"
CRITERIA = "single_location, whole_line, fewest_shipments, same_country, priority, most_stock"
CODES = (
    "UNKNOWN_SKU, DENIED_BY_RULE, NOT_SHIPPABLE, QUANTITY_LIMIT, INSUFFICIENT_STOCK, "
    "BELOW_SAFETY_STOCK, BACKORDER_NOT_ALLOWED, BACKORDER_LIMIT, RESTOCK_UNKNOWN, "
    "RESTOCK_TOO_LATE, SPLIT_LIMIT, AVAILABILITY_UNKNOWN"
)


def load(*texts: str) -> RuleSet:
    """Compile BASE plus `texts`, named broken.yaml, broken-1.yaml, ..."""
    names = ["base.yaml"] + [f"broken-{i}.yaml" if i else "broken.yaml" for i in range(len(texts))]
    return rules_from(BASE, *texts, names=names)


def errors(*texts: str) -> list[Problem]:
    with pytest.raises(RuleSetError) as caught:
        load(*texts)
    return caught.value.problems


def only_error(*texts: str) -> Problem:
    found = errors(*texts)
    assert len(found) == 1, "\n".join(map(str, found))
    assert found[0].severity is Severity.ERROR
    return found[0]


def where(problem: Problem) -> tuple[str, int, int]:
    return (problem.file, problem.line, problem.column)


def test_base_is_valid_and_quiet() -> None:
    assert load().warnings == ()


# --- one broken value, one error with a stable sentence ----------------------------------------

CASES = [
    pytest.param(
        """\
        locations:
          - id: cork
            country: IE
            prority: 3
        """,
        (4, 5),
        "unknown key `prority` in location `cork` (did you mean `priority`?); allowed keys: "
        "id, country, name, ships_to, priority, enabled, source, upstream_id",
        id="unknown-key-in-location",
    ),
    pytest.param(
        """\
        rules:
          - name: vinyl-two
            match: {tags: [home]}
            max_quantiy: 2
        """,
        (4, 5),
        "unknown key `max_quantiy` in rule `vinyl-two` (did you mean `max_quantity`?); "
        f"allowed keys: {RULE_KEYS}",
        id="unknown-key-in-rule",
    ),
    pytest.param(
        """\
        rules:
          - name: lamps
            match:
              tag: [home]
            max_quantity: 2
        """,
        (4, 7),
        "unknown key `tag` in `match` of rule `lamps` (did you mean `tags`?); allowed keys: "
        "skus, tags, countries, channels, locations",
        id="unknown-key-in-match",
    ),
    pytest.param(
        """\
        rules:
          - name: preorders
            match:
              tags: [home]
            backorder:
              allowed: true
              within_day: 30
        """,
        (7, 7),
        "unknown key `within_day` in `backorder` of rule `preorders` (did you mean "
        "`within_days`?); allowed keys: allowed, max_quantity, restock_required, within_days, "
        "split",
        id="unknown-key-in-backorder",
    ),
    pytest.param(
        """\
        rules:
          - name: wholesale
            match:
              channels: [wholesale]
            routing:
              max_shipment: 1
        """,
        (6, 7),
        "unknown key `max_shipment` in `routing` of rule `wholesale` (did you mean "
        "`max_shipments`?); allowed keys: criteria, max_shipments, max_locations_per_line",
        id="unknown-key-in-routing",
    ),
    pytest.param(
        """\
        rules:
          - name: dc-reserve
            match:
              locations: [dub-dc, ams-cd]
            safety_stock: 2
        """,
        (4, 27),
        "no location has the id `ams-cd` (did you mean `ams-dc`?)",
        id="misspelt-location-in-match",
    ),
    pytest.param(
        """\
        locations:
          - id: cork
            country: IE
            ships_to: [eu, north-amercia]
        """,
        (4, 20),
        "`north-amercia` is neither an ISO 3166-1 alpha-2 country code nor a country group "
        "(did you mean `north-america`?) (country groups: eu, north-america)",
        id="misspelt-country-group-in-ships-to",
    ),
    pytest.param(
        """\
        country_groups:
          - name: nordics
            countries: [DK, NO, SE]
        """,
        (3, 21),
        '`NO` is read by YAML as false, not as text; write it in quotes ("NO") to mean the '
        "country code NO",
        id="norway-unquoted-in-country-list",
    ),
    pytest.param(
        """\
        rules:
          - name: no-knives-to-norway
            match:
              tags: [blade]
              countries: [SE, NO]
            deny: {}
        """,
        (5, 23),
        '`NO` is read by YAML as false, not as text; write it in quotes ("NO") to mean the '
        "country code NO",
        id="norway-unquoted-in-match-countries",
    ),
    pytest.param(
        """\
        locations:
          - id: paris
            country: fr
        """,
        (3, 14),
        "`fr`: write country codes in capitals (`FR`)",
        id="lower-case-country",
    ),
    pytest.param(
        """\
        locations:
          - id: paris
            country: FR
            ships_to: [FR, be]
        """,
        (4, 20),
        "`be`: write country codes in capitals (`BE`)",
        id="lower-case-country-in-ships-to",
    ),
    pytest.param(
        """\
        locations:
          - id: test-site
            country: XX
        """,
        (3, 14),
        "`XX` is not an ISO 3166-1 alpha-2 country code",
        id="xx-country",
    ),
    pytest.param(
        """\
        locations:
          - id: 12
            country: IE
        """,
        (2, 9),
        '`id` must be text, but `12` is read as a number; write it in quotes ("12") so it is '
        "kept exactly as written",
        id="location-id-as-number",
    ),
    pytest.param(
        """\
        locations:
          - id: 0012
            country: IE
        """,
        (2, 9),
        '`id` must be text, but `0012` is read as a number; write it in quotes ("0012") so it '
        "is kept exactly as written",
        id="location-id-with-leading-zeros",
    ),
    pytest.param(
        """\
        rules:
          - name: dc-reserve
            match:
              locations: [dub-dc]
            safety_stock: -1
        """,
        (5, 19),
        "`safety_stock` cannot be negative (`-1`): use 0 or more",
        id="negative-safety-stock",
    ),
    pytest.param(
        """\
        rules:
          - name: lamps-none
            match:
              tags: [home]
            max_quantity: 0
        """,
        (5, 19),
        "`max_quantity` must be at least 1, not `0`",
        id="max-quantity-zero",
    ),
    pytest.param(
        """\
        locations:
          - id: cork
            country: IE
            priority: high
        """,
        (4, 15),
        "`priority` must be a whole number, not `high`",
        id="priority-as-text",
    ),
    pytest.param(
        """\
        rules:
          - name: lamps
            match:
              tags: [home]
            max_quantity: 2
            max_quantity: 3
        """,
        (6, 5),
        "`max_quantity` is written twice in the same mapping (first on line 5); YAML would "
        "silently keep only the last one: remove one of them",
        id="duplicate-key-in-one-mapping",
    ),
    pytest.param(
        """\
        defaults:
          safety_stock: 1
        rules: []
        defaults:
          min_atp: 1
        """,
        (4, 1),
        "`defaults` is written twice in the same mapping (first on line 1); YAML would "
        "silently keep only the last one: remove one of them",
        id="defaults-twice-in-one-file",
    ),
    pytest.param(
        """\
        rules:
          - name: lamps
            match:
              tags: [home]
             max_quantity: 2
        """,
        (5, 6),
        "not valid YAML: did not find expected key (while parsing a block mapping that starts "
        "on line 2: check the indentation)",
        id="bad-indentation",
    ),
    pytest.param(
        """\
        locations:
          id: cork
          country: IE
        """,
        (2, 3),
        "`locations` must be a list: start each location with `- id: ...`",
        id="locations-not-a-list",
    ),
    pytest.param(
        """\
        rules:
          lamps:
            match: {tags: [home]}
            max_quantity: 2
        """,
        (2, 3),
        "`rules` must be a list: start each rule with `- name: ...`",
        id="rules-not-a-list",
    ),
    pytest.param(
        """\
        rules:
          - name: lamps
            description: Lamps, to be decided.
            match: {tags: [home]}
        """,
        (2, 11),
        "rule `lamps` sets nothing: add a setting (for example `safety_stock: 2` or "
        "`deny: {}`) or remove the rule",
        id="rule-sets-nothing",
    ),
    pytest.param(
        """\
        rules:
          - name: tees-one-box
            match:
              skus: ["TEE-*"]
            routing:
              max_shipments: 1
        """,
        (5, 5),
        "`routing` applies to a whole cart, so the rule that sets it may match only "
        "`countries` and `channels`: move it to such a rule or to `defaults`",
        id="routing-on-sku-rule",
    ),
    pytest.param(
        """\
        rules:
          - name: lamps-partial
            match:
              tags: [home]
            partial_cart: true
        """,
        (5, 5),
        "`partial_cart` applies to a whole cart, so the rule that sets it may match only "
        "`countries` and `channels`: move it to such a rule or to `defaults`",
        id="partial-cart-on-tag-rule",
    ),
    pytest.param(
        """\
        rules:
          - name: store-limit
            match:
              locations: [lon-store]
            max_quantity: 5
        """,
        (5, 5),
        "`max_quantity` applies to a whole line, so it cannot be set by a rule that matches "
        "`locations`; such a rule may set safety_stock, min_atp and ship_to",
        id="max-quantity-on-location-rule",
    ),
    pytest.param(
        """\
        rules:
          - name: store-no-knives
            match:
              tags: [blade]
              locations: [lon-store]
            deny: {}
        """,
        (6, 5),
        "a rule that matches `locations` cannot `deny` a line; to stop a location serving "
        "these SKUs use `ship_to: {deny: [...]}`",
        id="deny-on-location-rule",
    ),
    pytest.param(
        """\
        defaults:
          routing:
            criteria: [priority, cheapest]
        """,
        (3, 26),
        f"`cheapest` is not a routing criterion; use one of: {CRITERIA}",
        id="unknown-routing-criterion",
    ),
    pytest.param(
        """\
        rules:
          - name: ie-one-box
            match: {countries: [IE]}
            routing:
              criteria: [single_locaton, priority]
        """,
        (5, 18),
        "`single_locaton` is not a routing criterion (did you mean `single_location`?); "
        f"use one of: {CRITERIA}",
        id="misspelt-routing-criterion",
    ),
    pytest.param(
        """\
        rules:
          - name: no-knives
            match: {tags: [blade]}
            deny:
              code: DENIED
        """,
        (5, 13),
        f"`DENIED` is not a reason code (did you mean `DENIED_BY_RULE`?); use one of: {CODES}",
        id="unknown-reason-code",
    ),
    pytest.param(
        """\
        rules:
          - name: lamps
            match: {tags: [home]}
            unknown_availability: maybe
        """,
        (4, 27),
        "`maybe` is not a policy for unknown availability; use deny, reserve or allocate",
        id="unknown-availability-maybe",
    ),
    pytest.param(
        """\
        - id: cork
          country: IE
        """,
        (1, 1),
        f"a rule file must be a mapping of sections ({SECTIONS}): write `locations:` above the "
        "list and indent it under that line",
        id="file-is-a-list",
    ),
    pytest.param(
        """\
        location:
          - id: cork
            country: IE
        """,
        (1, 1),
        f"unknown section `location` (did you mean `locations`?); a rule file has: {SECTIONS}",
        id="unknown-top-level-section",
    ),
    pytest.param(
        """\
        rules:
          - name: lamps
            max_quantity: 2
        """,
        (2, 5),
        "rule `lamps` is missing `match`: add `match:` with what the rule applies to, for "
        "example `match: {tags: [home]}` (`match: {}` for every line)",
        id="rule-without-match",
    ),
    pytest.param(
        """\
        rules:
          - name: No knives to GB
            match: {tags: [blade]}
            deny: {}
        """,
        (2, 11),
        "`No knives to GB` is not a valid name for `name`: use lower-case letters, digits, "
        "`-`, `_` and `.`, starting with a letter or digit",
        id="rule-name-with-spaces",
    ),
    pytest.param(
        """\
        locations:
          - id: cork
            country: IE
            ships_to: GB
        """,
        (4, 15),
        "`ships_to` must be a list (for example `[IE, GB]`) (or null), not `GB`",
        id="ships-to-not-a-list",
    ),
    pytest.param(
        """\
        locations:
          -
          - id: cork
            country: IE
        """,
        (2, 4),
        "location is empty",
        id="empty-list-item",
    ),
]


@pytest.mark.parametrize(("text", "at", "message"), CASES)
def test_one_error(text: str, at: tuple[int, int], message: str) -> None:
    problem = only_error(text)
    assert where(problem) == ("broken.yaml", *at)
    assert problem.message == message


# --- errors that involve two places ----------------------------------------------------------


def test_duplicate_location_id_across_two_files() -> None:
    problem = only_error(
        """\
        locations:
          - id: dub-dc
            country: IE
        """
    )
    assert where(problem) == ("broken.yaml", 2, 9)
    assert problem.message == (
        "location `dub-dc` is defined twice (first at base.yaml:7); each needs its own id"
    )


def test_duplicate_rule_name_across_two_files() -> None:
    rule = """\
    rules:
      - name: lamps
        match: {tags: [home]}
        max_quantity: 2
    """
    problem = only_error(rule, rule)
    assert where(problem) == ("broken-1.yaml", 2, 11)
    assert problem.message == (
        "rule `lamps` is defined twice (first at broken.yaml:2); each needs its own name"
    )


def test_duplicate_rule_name_in_one_file() -> None:
    problem = only_error(
        """\
        rules:
          - name: lamps
            match: {tags: [home]}
            max_quantity: 2

          - name: lamps
            match: {tags: [apparel]}
            max_quantity: 3
        """
    )
    assert where(problem) == ("broken.yaml", 6, 11)
    assert problem.message == (
        "rule `lamps` is defined twice (first at broken.yaml:2); each needs its own name"
    )


def test_defaults_in_two_files_points_at_both_defaults_keys() -> None:
    problem = only_error("defaults:\n  safety_stock: 1\n", "defaults:\n  min_atp: 1\n")
    assert where(problem) == ("broken-1.yaml", 1, 1)
    assert problem.message == "`defaults` is written twice (first at broken.yaml:1); keep one"


def test_defaults_in_two_files_is_an_error() -> None:
    problem = only_error("defaults:\n  safety_stock: 1\n", "defaults:\n  min_atp: 1\n")
    assert problem.file == "broken-1.yaml"
    assert "`defaults` is written twice" in problem.message
    assert "keep one" in problem.message


# --- invalid YAML -----------------------------------------------------------------------------


def test_invalid_yaml_is_one_located_error() -> None:
    problem = only_error(
        """\
        rules:
          - name: lamps
            match: {tags: [home]
            max_quantity: 2
        """
    )
    assert where(problem) == ("broken.yaml", 3, 12)
    assert problem.message == (
        "not valid YAML: this `{` is never closed: end the mapping with `}` (line 4 was read as "
        "still inside it)"
    )


def test_invalid_yaml_names_the_unclosed_brace() -> None:
    problem = only_error(
        """\
        rules:
          - name: lamps
            match: {tags: [home]
            max_quantity: 2
        """
    )
    assert problem.line == 3  # where the `{` was opened, not where the parser gave up
    assert "never closed" in problem.message


def test_a_bracket_open_at_the_end_of_the_file_is_located_where_it_opens() -> None:
    problem = only_error("country_groups:\n  - name: eu\n    countries: [IE, FR,\n        DE\n")
    assert where(problem) == ("broken.yaml", 3, 16)
    assert problem.message == (
        "not valid YAML: this `[` is never closed: end the list with `]` (the file ended inside it)"
    )


def test_invalid_yaml_inside_a_closed_list_is_located_where_it_is_found() -> None:
    problem = only_error(
        """        country_groups:
          - name: eu
            countries: [IE, FR,
                        DE, AT: x: y]
        """
    )
    assert where(problem) == ("broken.yaml", 4, 26)
    assert problem.message.startswith("not valid YAML: did not find expected ',' or ']'")
    assert "starts on line 3" in problem.message


def test_tab_indentation_is_located() -> None:
    problem = only_error("rules:\n  - name: lamps\n    match:\n\ttags: [home]\n")
    assert where(problem) == ("broken.yaml", 4, 1)
    assert problem.message.startswith("not valid YAML: found character that cannot start any token")


def test_tab_indentation_says_use_spaces() -> None:
    problem = only_error("rules:\n  - name: lamps\n    match:\n\ttags: [home]\n")
    assert problem.message == (
        "not valid YAML: found character that cannot start any token (indent with spaces, not tabs)"
    )


def test_impossible_date_does_not_crash() -> None:
    problem = only_error(
        """\
        rules:
          - name: lamps
            match: {tags: [home]}
            description: 2025-11-31
            max_quantity: 2
        """
    )
    assert where(problem) == ("broken.yaml", 4, 18)
    assert "quotes" in problem.message


@pytest.mark.parametrize("value", ["!int 2", "!!int two"])
def test_yaml_tag_does_not_crash(value: str) -> None:
    problem = only_error(
        f"rules:\n  - name: lamps\n    match: {{tags: [home]}}\n    max_quantity: {value}\n"
    )
    assert where(problem) == ("broken.yaml", 4, 19)


# --- messages a merchandiser cannot act on as they stand ---------------------------------------


def test_country_no_says_write_capital_no_in_quotes() -> None:
    problem = only_error("locations:\n  - id: oslo\n    country: no\n")
    assert where(problem) == ("broken.yaml", 3, 14)
    assert problem.message == (
        '`no` is read by YAML as false, not as text; write it in quotes ("NO") to mean the '
        "country code NO"
    )


def test_country_no_is_located() -> None:
    problem = only_error("locations:\n  - id: oslo\n    country: no\n")
    assert where(problem) == ("broken.yaml", 3, 14)
    assert "read by YAML as false" in problem.message


def test_unknown_availability_yes_lists_the_policies() -> None:
    problem = only_error("defaults:\n  unknown_availability: yes\n")
    assert where(problem) == ("broken.yaml", 2, 25)
    assert "deny, reserve or allocate" in problem.message


def test_lower_case_reason_code_says_capitals() -> None:
    problem = only_error(
        "rules:\n  - name: no-knives\n    match: {tags: [blade]}\n"
        "    deny:\n      code: denied_by_rule\n"
    )
    assert where(problem) == ("broken.yaml", 5, 13)
    assert "`DENIED_BY_RULE`" in problem.message


def test_upper_case_group_suggests_the_group() -> None:
    problem = only_error(
        "rules:\n  - name: eu-limit\n    match: {countries: [EU]}\n    max_quantity: 5\n"
    )
    assert where(problem) == ("broken.yaml", 3, 25)
    assert "`eu`" in problem.message


def test_uk_suggests_gb() -> None:
    problem = only_error("locations:\n  - id: london\n    country: UK\n")
    assert where(problem) == ("broken.yaml", 3, 14)
    assert "`GB`" in problem.message


def test_quoted_priority_says_remove_quotes() -> None:
    problem = only_error('locations:\n  - id: cork\n    country: IE\n    priority: "1"\n')
    assert where(problem) == ("broken.yaml", 4, 15)
    assert "quotes" in problem.message


def test_date_as_name_says_quote_it() -> None:
    problem = only_error(
        "rules:\n  - name: 2025-11-28\n    match: {tags: [home]}\n    max_quantity: 2\n"
    )
    assert where(problem) == ("broken.yaml", 2, 11)
    assert "quotes" in problem.message


def test_ship_to_as_list_reads_well() -> None:
    problem = only_error("rules:\n  - name: lamps\n    match: {tags: [home]}\n    ship_to: [GB]\n")
    assert where(problem) == ("broken.yaml", 4, 14)
    assert "a a " not in problem.message
    assert "not a list" in problem.message


def test_broken_location_is_not_also_reported_missing() -> None:
    found = errors(
        """\
        locations:
          - id: cork
            country: ie
        rules:
          - name: cork-reserve
            match: {locations: [cork]}
            safety_stock: 2
        """
    )
    assert [(where(p), p.message) for p in found] == [
        (("broken.yaml", 3, 14), "`ie`: write country codes in capitals (`IE`)")
    ]


def test_broken_group_is_not_also_reported_missing() -> None:
    found = errors(
        """\
        country_groups:
          - name: nordics
            countries: [DK, NO, SE]
        locations:
          - id: sto-dc
            country: SE
            ships_to: [nordics]
        """
    )
    assert [where(p) for p in found] == [("broken.yaml", 3, 21)]


# --- warnings: valid, but some of it can never apply ------------------------------------------


def only_warning(text: str) -> Problem:
    rule_set = load(text)
    assert len(rule_set.warnings) == 1, "\n".join(map(str, rule_set.warnings))
    warning = rule_set.warnings[0]
    assert warning.severity is Severity.WARNING
    return warning


def test_tag_no_catalog_item_has_is_a_warning() -> None:
    warning = only_warning(
        """\
        rules:
          - name: lamps
            match: {tags: [hom]}
            max_quantity: 2
        """
    )
    assert where(warning) == ("broken.yaml", 3, 20)
    assert warning.message == (
        "rule `lamps`: no catalog item has the tag `hom` (did you mean `home`?), "
        "so this never matches it"
    )


def test_sku_pattern_matching_nothing_is_a_warning() -> None:
    warning = only_warning(
        """\
        rules:
          - name: hoodies
            match: {skus: ["HOODIE-*"]}
            max_quantity: 2
        """
    )
    assert where(warning) == ("broken.yaml", 3, 20)
    assert warning.message == "rule `hoodies`: `HOODIE-*` matches no SKU of the catalog"


def test_misspelt_sku_is_a_warning_with_suggestion() -> None:
    warning = only_warning(
        """\
        rules:
          - name: tee
            match: {skus: [TEE-BLK-L]}
            max_quantity: 2
        """
    )
    assert where(warning) == ("broken.yaml", 3, 20)
    assert warning.message == (
        "rule `tee`: `TEE-BLK-L` matches no SKU of the catalog (did you mean `TEE-BLK-M`?)"
    )


def test_skus_and_tags_that_never_meet_is_a_warning() -> None:
    warning = only_warning(
        """\
        rules:
          - name: tee-lamps
            match:
              skus: ["TEE-*"]
              tags: [home]
            max_quantity: 2
        """
    )
    assert where(warning) == ("broken.yaml", 4, 7)
    assert warning.message == (
        "rule `tee-lamps` can never match: no catalog item matches both its `skus` and its `tags`"
    )


def test_a_file_of_comments_is_fine() -> None:
    assert load("# rules to come\n").warnings == ()


@pytest.mark.parametrize("text", ["", "\n\n"])
def test_an_empty_file_is_refused(text: str) -> None:
    """An emptied file (or one caught while an editor was still writing it) never loads as a
    rule set without its rules."""
    problem = only_error(text)
    assert where(problem) == ("broken.yaml", 1, 1)
    assert problem.message.startswith("the file is empty: write its sections back")


# --- many errors in one run -------------------------------------------------------------------


def test_every_error_is_reported_once_sorted_by_file_and_line() -> None:
    with pytest.raises(RuleSetError) as caught:
        load(
            """\
            rules:
              - name: lamps
                match: {tags: [home]}
                max_quantiy: 2
              - name: dc-reserve
                match: {locations: [dub-dc]}
                safety_stock: -1
            locations:
              - id: cork
                country: ie
            """,
            "locatoins: []\n",
        )
    problems = caught.value.problems
    assert [where(p) for p in problems] == [
        ("broken-1.yaml", 1, 1),
        ("broken.yaml", 4, 5),
        ("broken.yaml", 7, 19),
        ("broken.yaml", 10, 14),
    ]
    assert [p.message.split(" (")[0].split(";")[0] for p in problems] == [
        "unknown section `locatoins`",
        "unknown key `max_quantiy` in rule `lamps`",
        "`safety_stock` cannot be negative",
        "`ie`: write country codes in capitals",
    ]
    assert str(caught.value).splitlines()[0] == "4 error(s) in rule files:"
    assert str(caught.value).splitlines()[1:] == [str(p) for p in problems]


# --- files and folders ------------------------------------------------------------------------


def test_unreadable_file_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text(BASE)
    (tmp_path / "latin1.yaml").write_bytes(b"# caf\xe9\nrules: []\n")
    loaded = load_folder(tmp_path)
    assert len(loaded.problems) == 1
    problem = loaded.problems[0]
    assert (problem.file, problem.line, problem.column) == (str(tmp_path / "latin1.yaml"), 1, 1)
    assert problem.message.startswith("cannot be read: ")


# --- the CLI ----------------------------------------------------------------------------------


def test_cli_check_prints_every_problem_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "locations.yaml").write_text("locations:\n  - id: oslo\n    country: XX\n")
    (tmp_path / "rules.yaml").write_text(
        "rules:\n  - name: lamps\n    match: {tags: [home]}\n    max_quantiy: 2\n"
    )
    code = main(["check", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 1
    assert out.splitlines() == [
        f"{tmp_path / 'locations.yaml'}:3:14: `XX` is not an ISO 3166-1 alpha-2 country code",
        f"{tmp_path / 'rules.yaml'}:4:5: unknown key `max_quantiy` in rule `lamps` "
        f"(did you mean `max_quantity`?); allowed keys: {RULE_KEYS}",
    ]
    assert err == f"{tmp_path}: 2 error(s), 0 warning(s); the rules were not loaded\n"


def test_cli_check_invalid_yaml_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "base.yaml").write_text(BASE)
    (tmp_path / "tabs.yaml").write_text("rules:\n\t- name: lamps\n")
    assert main(["check", str(tmp_path)]) == 1
    out, _ = capsys.readouterr()
    assert out.startswith(f"{tmp_path / 'tabs.yaml'}:2:1: not valid YAML: ")


def test_cli_check_warnings_only_exits_0_and_1_with_strict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "base.yaml").write_text(BASE)
    (tmp_path / "rules.yaml").write_text(
        "rules:\n  - name: lamps\n    match: {tags: [hom]}\n    max_quantity: 2\n"
    )
    line = (
        f"{tmp_path / 'rules.yaml'}:3:20: warning: rule `lamps`: no catalog item has the tag "
        "`hom` (did you mean `home`?), so this never matches it"
    )

    assert main(["check", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [line]
    assert err.startswith(f"{tmp_path}: ok, rule set ")
    assert err.endswith(": 3 locations, 3 catalog items, 1 rules, 1 warning(s)\n")

    assert main(["check", "--strict", str(tmp_path)]) == 1
    out, _ = capsys.readouterr()
    assert out.splitlines() == [line]


def test_cli_check_demo_rules_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(RULES)]) == 0
    out, _ = capsys.readouterr()
    assert out == ""


def test_cli_check_folder_without_rule_files_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", str(tmp_path)]) == 1
    out, _ = capsys.readouterr()
    assert out == f"{tmp_path}:1:1: the folder has no rule files (*.yaml)\n"


# --- found in review ------------------------------------------------------------------------------


def test_single_location_must_lead_the_criteria() -> None:
    problem = only_error("defaults:\n  routing:\n    criteria: [priority, single_location]\n")
    assert where(problem) == ("broken.yaml", 3, 26)
    assert problem.message == (
        "`single_location` decides before any other criterion, so it must come first in the list"
    )


def test_a_criterion_listed_twice() -> None:
    problem = only_error("defaults:\n  routing:\n    criteria: [priority, priority]\n")
    assert where(problem) == ("broken.yaml", 3, 26)
    assert problem.message == "`priority` is listed twice in the routing criteria"


def test_deny_code_must_be_a_rule_choice() -> None:
    problem = only_error(
        "rules:\n  - name: hide\n    match: {tags: [home]}\n    deny: {code: UNKNOWN_SKU}\n"
    )
    assert where(problem) == ("broken.yaml", 4, 18)
    assert problem.message == (
        "`UNKNOWN_SKU` describes what the engine finds, not a rule's choice; a deny rule may use "
        "DENIED_BY_RULE, NOT_SHIPPABLE"
    )


def test_anchors_and_aliases_are_refused_without_expanding_them() -> None:
    laughs = "".join(
        f"{name}: &{name} [{', '.join(['*' + prev] * 9)}]\n"
        for prev, name in zip("abcdefgh", "bcdefghi", strict=True)
    )
    found = errors("a: &a [x, x, x, x, x, x, x, x, x]\n" + laughs)
    assert any("anchors and aliases" in p.message for p in found)
    problem = only_error("locations:\n  - &loop {id: x, country: IE, ships_to: [*loop]}\n")
    assert where(problem) == ("broken.yaml", 2, 5)
    assert problem.message == (
        "anchors and aliases (`&name`, `*name`) are not supported in rule files: write the "
        "value out where it is needed"
    )


def test_channel_ending_in_a_newline() -> None:
    problem = only_error(
        'rules:\n  - name: web\n    match: {channels: ["web\\n"]}\n    max_quantity: 2\n'
    )
    assert where(problem) == ("broken.yaml", 3, 24)
    assert problem.message == (
        "`web\\n` is not a valid channel: use lower-case letters, digits, `-` and `_`, starting "
        "with a letter or digit (as carts send it)"
    )


@pytest.mark.parametrize(
    ("text", "at", "message"),
    [
        pytest.param(
            "locations:\n  - id: dub\x01\n    country: IE\n",
            (2, 12),
            "not valid YAML: the character `\\x01` cannot be written in a YAML file; remove it",
            id="control-character",
        ),
        pytest.param(
            'catalog:\n  - sku: TEE\n    tags: {"a\\nb": 1, "a\\nb": 2}\n',
            (3, 23),
            "`a\\nb` is written twice in the same mapping (first on line 3); YAML would silently "
            "keep only the last one: remove one of them",
            id="key-twice",
        ),
        pytest.param(
            'locations:\n  - id: dub\n    country: IE\n    priority: !!int "1\\n2"\n',
            (4, 15),
            "`1\\n2` cannot be read as int: remove the `!!int` tag",
            id="tagged-value",
        ),
        pytest.param(
            'locations:\n  - id: dub\n    country: IE\n    "prio\\nrity": 1\n',
            (4, 5),
            "unknown key `prio\\nrity` in location `dub` (did you mean `priority`?); allowed "
            "keys: id, country, name, ships_to, priority, enabled, source, upstream_id",
            id="unknown-key",
        ),
    ],
)
def test_a_problem_is_one_line_whatever_the_value_holds(
    text: str, at: tuple[int, int], message: str
) -> None:
    found = errors(text)
    assert [p.message for p in found if (p.line, p.column) == at] == [message]
    assert all(p.message.isprintable() for p in found)


@pytest.mark.parametrize(
    ("text", "at", "message"),
    [
        pytest.param(
            "locations:\n  - id: cork\n    country: IE\n    source: Levels\n",
            (4, 13),
            "`Levels` is not a valid name for `source`: use lower-case letters, digits, `-`, "
            "`_` and `.`, starting with a letter or digit",
            id="source-name-in-capitals",
        ),
        pytest.param(
            "sources:\n  - name: stock\n    api: catalog\n    url: ftp://stock.example\n",
            (4, 10),
            "`ftp://stock.example` is not a valid URL for `url`: `http://` or `https://`, a "
            "host, then a path if needed, with no spaces",
            id="url-not-http",
        ),
        pytest.param(
            'catalog:\n  - sku: "TEE\\_BLK"\n',
            (2, 10),
            "`TEE\\xa0BLK` is not valid for `sku`: it cannot contain spaces or line breaks",
            id="sku-with-a-no-break-space",
        ),
        pytest.param(
            'defaults:\n  ship_to: {allow: ["IE\\n"]}\n',
            (2, 21),
            "`IE\\n` is neither an ISO 3166-1 alpha-2 country code nor a country group (did you "
            "mean `IE`?) (country groups: eu, north-america)",
            id="country-and-newline-on-one-line",
        ),
    ],
)
def test_a_value_its_pattern_refuses_is_named_for_what_is_wrong(
    text: str, at: tuple[int, int], message: str
) -> None:
    problem = only_error(text)
    assert (problem.line, problem.column) == at
    assert problem.message == message


def test_channel_in_capitals() -> None:
    problem = only_error(
        "rules:\n  - name: web\n    match: {channels: [Web]}\n    max_quantity: 2\n"
    )
    assert where(problem) == ("broken.yaml", 3, 24)
    assert problem.message == (
        "`Web` is not a valid channel: use lower-case letters, digits, `-` and `_`, starting "
        "with a letter or digit (as carts send it)"
    )


# --- nesting ----------------------------------------------------------------------------------

DEEP = "nested more than 64 levels deep: a rule file is a few levels of mappings and lists"


def test_cli_check_a_file_nested_too_deep_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Named where it gets too deep, not a RecursionError, nor a crash: PyYAML's C composer
    would overflow the stack on the 100,000 levels of the second file."""
    (tmp_path / "base.yaml").write_text(BASE)
    (tmp_path / "deep.yaml").write_text(
        "rules:\n  - name: deep\n    match: " + "[" * 1_000 + "]" * 1_000 + "\n"
    )
    (tmp_path / "deeper.yaml").write_text("catalog:\n" + "  - " * 100_000 + "x\n")
    assert main(["check", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        f"{tmp_path / 'deep.yaml'}:3:73: {DEEP}",
        f"{tmp_path / 'deeper.yaml'}:2:255: {DEEP}",
    ]
    assert err == f"{tmp_path}: 2 error(s), 0 warning(s); the rules were not loaded\n"


def test_sixty_four_levels_are_read() -> None:
    """The limit is on nesting alone: 64 levels are read (and then checked as any value); the
    file's mapping, `defaults` and `routing` are three of them."""
    problem = only_error("defaults:\n  routing:\n    criteria: " + "[" * 61 + "]" * 61 + "\n")
    assert DEEP not in problem.message
    problem = only_error("defaults:\n  routing:\n    criteria: " + "[" * 62 + "]" * 62 + "\n")
    assert where(problem) == ("broken.yaml", 3, 76)
    assert problem.message == DEEP


def test_the_builder_refuses_the_same_place_on_its_own() -> None:
    """Behind the check before composing, building stops at the same node, so its recursion is
    bounded whatever tree it is given."""
    import yaml  # noqa: PLC0415

    from engine.policy.load import SourceMap, _Builder  # noqa: PLC0415

    text = "a: " + "[" * 70 + "]" * 70
    builder = _Builder(SourceMap("deep.yaml"))
    builder.build(yaml.compose(text), ())
    assert [str(p) for p in builder.problems] == [f"deep.yaml:1:67: {DEEP}"]
