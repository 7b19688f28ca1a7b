"""Where availability comes from: `sources`, each location's `source`, each SKU's `upstream` ids.

The mapping is checked with the rules (file, line, a sentence), and connection settings come
from the environment or a secrets file, never from the rules.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.errors import AvailabilityFileError, RuleSetError, Severity
from engine.policy import RuleSet, load_rule_set
from engine.sources.upstream import Connection, cache_settings, connections, env_name
from tests.helpers import RULES, rules_from

SOURCES = """\
sources:
  - name: levels
    api: digitalriver-inventory-levels
    url: https://api.example.com
  - name: shop
    api: shoplazza
    url: https://demo.example.com/
  - name: shopper
    api: digitalriver-shopper
    url: https://api.example.com
    lookup: external_reference_id
    timeout_ms: 250
  - name: items
    api: catalog
    url: http://127.0.0.1:9000
"""
LOCATIONS = """\
locations:
  - id: dub-dc
    country: IE
    source: levels
    upstream_id: afe95639
  - id: ams-dc
    country: NL
    source: levels
    upstream_id: "20045"
  - id: lon-store
    country: GB
    source: shop
    upstream_id: "327627904831724000"
  - id: ber-dropship
    country: DE
    source: shopper
  - id: nyc-3pl
    country: US
    source: items
"""
CATALOG = (
    "catalog:\n"
    "  - sku: TEE\n"
    "    upstream:\n"
    "      levels: ce4ce2de\n"
    "      shop: {product: f854e9a2-986d-4e2b-9df0-8e4c139ae80e, "
    "variant: 5723299f-238a-4491-8b42-a187462e748a}\n"
    "      items: item_tee\n"
    "  - sku: SNEAKER\n"
    "    upstream:\n"
    "      shopper: SNEAKER-RUN-42\n"
    "  - sku: LAMP\n"
)


def problems(*texts: str) -> list[str]:
    with pytest.raises(RuleSetError) as caught:
        rules_from(*texts, names=[f"f{i}.yaml" for i in range(len(texts))])
    return [str(p) for p in caught.value.problems if p.severity is Severity.ERROR]


def test_the_mapping_compiles_per_source():
    rules = rules_from(SOURCES, LOCATIONS, CATALOG)
    by_name = {s.name: s for s in rules.sources}
    levels, shop, shopper, items = (by_name[n] for n in ("levels", "shop", "shopper", "items"))
    assert levels.api == "digitalriver-inventory-levels"
    assert levels.locations == {"afe95639": "dub-dc", "20045": "ams-dc"}
    assert levels.location is None
    assert levels.items == {"TEE": "ce4ce2de"}
    assert levels.location_ids == frozenset({"dub-dc", "ams-dc"})
    assert (levels.timeout, levels.batch_size, levels.array_style) == (1.0, 50, "repeat")
    assert shop.url == "https://demo.example.com"
    assert shop.locations == {"327627904831724000": "lon-store"}
    assert shop.items == {
        "TEE": ("f854e9a2-986d-4e2b-9df0-8e4c139ae80e", "5723299f-238a-4491-8b42-a187462e748a")
    }
    assert (shopper.location, shopper.lookup, shopper.timeout) == (
        "ber-dropship",
        "external_reference_id",
        0.25,
    )
    assert shopper.items == {"SNEAKER": "SNEAKER-RUN-42"}
    assert (items.location, items.items) == ("nyc-3pl", {"TEE": "item_tee"})
    assert rules.describe()["sources"][0] == {
        "name": "levels",
        "api": "digitalriver-inventory-levels",
        "url": "https://api.example.com",
        "locations": ["ams-dc", "dub-dc"],
        "items": 1,
    }


def test_the_demo_rules_map_every_location_and_sku():
    rules = load_rule_set(RULES)
    assert {s.name: sorted(s.location_ids) for s in rules.sources} == {
        "dr-levels": ["ams-dc", "dub-dc"],
        "dr-shopper": ["ber-dropship"],
        "shoplazza": ["lon-store"],
        "catalog": ["nyc-3pl"],
    }
    assert not rules.warnings


def test_a_misspelt_source_is_named_with_its_line():
    broken = LOCATIONS.replace("    source: shop\n", "    source: shopp\n")
    assert problems(SOURCES, broken, CATALOG) == [
        "f1.yaml:12:13: there is no source `shopp` (did you mean `shop`?) "
        "(sources: items, levels, shop, shopper)"
    ]


def test_an_unknown_api_lists_the_ones_there_are():
    broken = SOURCES.replace("api: catalog", "api: magento")
    (message,) = problems(broken, LOCATIONS, CATALOG)
    assert message == (
        "f0.yaml:14:10: `magento` is not an allowed value for `api`; use one of: "
        "digitalriver-inventory-levels, digitalriver-shopper, shoplazza, catalog"
    )


def test_an_unquoted_numeric_upstream_id_must_be_quoted():
    broken = LOCATIONS.replace('upstream_id: "20045"', "upstream_id: 20045")
    assert problems(SOURCES, broken, CATALOG) == [
        "f1.yaml:9:18: `upstream_id` must be text, but `20045` is read as a number; "
        'write it in quotes ("20045") so it is kept exactly as written'
    ]


def test_an_unquoted_numeric_sku_id_names_the_source():
    broken = CATALOG.replace("shopper: SNEAKER-RUN-42", "shopper: 64578700")
    assert problems(SOURCES, LOCATIONS, broken) == [
        "f2.yaml:9:16: `shopper` must be text, but `64578700` is read as a number; "
        'write it in quotes ("64578700") so it is kept exactly as written'
    ]


def test_a_per_location_api_needs_the_upstream_location_id():
    broken = LOCATIONS.replace('    upstream_id: "20045"\n', "")
    assert problems(SOURCES, broken, CATALOG) == [
        "f1.yaml:8:13: location `ams-dc` needs `upstream_id`: source `levels` "
        "(digitalriver-inventory-levels) reports per location, by its own location ids"
    ]


def test_a_product_level_api_has_no_upstream_location_id():
    broken = LOCATIONS.replace("    source: items\n", "    source: items\n    upstream_id: nyc\n")
    assert problems(SOURCES, broken, CATALOG) == [
        "f1.yaml:20:18: source `items` (catalog) reports one number per product, not per "
        "location: remove `upstream_id`"
    ]


def test_a_product_level_api_serves_one_location():
    broken = LOCATIONS + "  - id: cork\n    country: IE\n    source: shopper\n"
    assert problems(SOURCES, broken, CATALOG) == [
        "f1.yaml:22:13: source `shopper` (digitalriver-shopper) reports one number per "
        "product, so it can serve one location only, and it already serves `ber-dropship`"
    ]


def test_one_upstream_location_is_one_of_ours():
    broken = LOCATIONS.replace('upstream_id: "20045"', "upstream_id: afe95639")
    assert problems(SOURCES, broken, CATALOG) == [
        "f1.yaml:9:18: `afe95639` of source `levels` is already location `dub-dc`; "
        "one upstream location is one of ours"
    ]


def test_an_upstream_id_without_a_source():
    broken = LOCATIONS.replace("    source: levels\n    upstream_id: afe95639\n", "") + (
        "  - id: cork\n    country: IE\n    upstream_id: x1\n"
    )
    assert problems(SOURCES, broken, CATALOG) == [
        "f1.yaml:20:18: location `cork` has an `upstream_id` but no `source`: "
        "say which source reports it"
    ]


def test_variant_apis_need_product_and_variant_and_the_others_one_id():
    broken = CATALOG.replace(
        "shop: {product: f854e9a2-986d-4e2b-9df0-8e4c139ae80e, "
        "variant: 5723299f-238a-4491-8b42-a187462e748a}",
        "shop: f854e9a2",
    ).replace("items: item_tee", "items: {product: a, variant: b}")
    assert problems(SOURCES, LOCATIONS, broken) == [
        "f2.yaml:5:13: source `shop` (shoplazza) knows items as a product variant: write "
        "`{product: <product id>, variant: <variant id>}`",
        "f2.yaml:6:14: source `items` (catalog) knows items by one id: write the id as text",
    ]


def test_a_source_defined_twice():
    broken = SOURCES + "  - name: levels\n    api: catalog\n    url: https://x.example\n"
    assert problems(broken, LOCATIONS, CATALOG) == [
        "f0.yaml:16:11: source `levels` is defined twice (first at line 2); each needs its own name"
    ]


def test_warnings_for_an_idle_source_and_a_location_no_source_reports():
    extra_source = SOURCES + "  - name: spare\n    api: catalog\n    url: https://x.example\n"
    extra_location = LOCATIONS + "  - id: cork\n    country: IE\n"
    rules = rules_from(extra_source, extra_location, CATALOG, names=["a.yaml", "b.yaml", "c.yaml"])
    assert [str(w) for w in rules.warnings] == [
        "a.yaml:16:11: warning: source `spare` reports on no location: give a location "
        "`source: spare`",
        "b.yaml:20:9: warning: location `cork` has no `source`: no stock will ever be known there",
    ]


def test_a_shoplazza_id_that_is_not_a_uuid_is_a_warning():
    odd = CATALOG.replace("product: f854e9a2-986d-4e2b-9df0-8e4c139ae80e", "product: f854e9a2-98")
    rules = rules_from(SOURCES, LOCATIONS, odd, names=["a.yaml", "b.yaml", "c.yaml"])
    assert [str(w) for w in rules.warnings] == [
        "c.yaml:5:23: warning: `f854e9a2-98` does not look like a UUID, which shoplazza ids "
        "are: it answers a malformed id with an error, so this SKU's stock would stay unknown"
    ]


@pytest.mark.parametrize(
    ("upstream", "problem"),
    [
        # Keys a path cannot spell as `.name` (a leading digit, a dot) are found all the same.
        (
            '{levels: ce4ce2de, 3pl: "a b"}',
            "3:39: `a b` is not valid for `3pl`: it cannot contain spaces or line breaks",
        ),
        (
            '{levels: ce4ce2de, eu.shop: "a b"}',
            "3:43: `a b` is not valid for `eu.shop`: it cannot contain spaces or line breaks",
        ),
        (
            "{levels: ce4ce2de, 3pl: {product: a}}",
            "3:39: `3pl` of catalog item `TEE` is missing `variant`: add `variant: ...`",
        ),
        (
            "{3pl: {product: a, variant: b, x: 1}}",
            "3:46: unknown key `x` in `3pl` of catalog item `TEE`; allowed keys: product, variant",
        ),
        # A key that is not a valid name is reported at the key, as a key.
        (
            "{levels: ce4ce2de, Shop: x}",
            "3:34: `Shop` is not a valid name for a key of `upstream`: use lower-case letters, "
            "digits, `-`, `_` and `.`, starting with a letter or digit",
        ),
        ('{levels: ce4ce2de, "": x}', "3:34: a key of `upstream` cannot be empty"),
    ],
    ids=[
        "leading-digit",
        "dotted",
        "struct-under-digit",
        "unknown-key-under-digit",
        "key-in-capitals",
        "empty-key",
    ],
)
def test_a_bad_entry_of_the_upstream_mapping_is_reported_at_its_key(upstream, problem):
    catalog = f"catalog:\n  - sku: TEE\n    upstream: {upstream}\n"
    with pytest.raises(RuleSetError) as caught:
        rules_from(SOURCES, LOCATIONS, catalog, names=["a.yaml", "b.yaml", "c.yaml"])
    assert [str(p) for p in caught.value.problems] == [f"c.yaml:{problem}"]


@pytest.mark.parametrize(
    ("written", "column", "shown"),
    [
        ('product: "f854 e9a2"', 23, "`f854 e9a2` is not valid for `product`"),
        # Python's `$` matches before a final newline: the pattern is anchored past it.
        ('product: "f854e9a2\\n"', 23, "`f854e9a2\\n` is not valid for `product`"),
        ('variant: "5723 299f"', 70, "`5723 299f` is not valid for `variant`"),
    ],
    ids=["space", "final-newline", "in-the-second-key"],
)
def test_an_upstream_id_with_whitespace_is_reported_where_it_is(written, column, shown):
    # `shop` is the second source of the SKU's mapping: the error points at its value's key,
    # not at the mapping's first entry.
    field = written.split(":")[0]
    original = {
        "product": "product: f854e9a2-986d-4e2b-9df0-8e4c139ae80e",
        "variant": "variant: 5723299f-238a-4491-8b42-a187462e748a",
    }[field]
    broken = CATALOG.replace(original, written)
    with pytest.raises(RuleSetError) as caught:
        rules_from(SOURCES, LOCATIONS, broken, names=["a.yaml", "b.yaml", "c.yaml"])
    assert [str(p) for p in caught.value.problems] == [
        f"c.yaml:5:{column}: {shown}: it cannot contain spaces or line breaks"
    ]


def test_rules_without_sources_need_no_mapping():
    rules = rules_from("locations:\n  - id: dub-dc\n    country: IE\n")
    assert rules.sources == ()
    assert not rules.warnings


# --- connection settings: never in the rules ----------------------------------------------------


@pytest.fixture
def rules() -> RuleSet:
    return rules_from(SOURCES, LOCATIONS, CATALOG)


def test_env_names():
    assert env_name("dr-levels", "TOKEN") == "ENGINE_SOURCE_DR_LEVELS_TOKEN"
    assert env_name("shop.eu", "URL") == "ENGINE_SOURCE_SHOP_EU_URL"


def test_urls_come_from_the_rules_unless_overridden_and_tokens_from_outside(rules, tmp_path):
    secrets = tmp_path / "secrets.json"
    secrets.write_text(
        json.dumps(
            {
                "levels": {"token": "from-file"},
                "shop": {"token": "shop-file", "url": "http://127.0.0.1:9103/"},
            }
        )
    )
    env = {
        "ENGINE_SECRETS_FILE": str(secrets),
        "ENGINE_SOURCE_LEVELS_TOKEN": "from-env",
        "ENGINE_SOURCE_ITEMS_URL": "http://127.0.0.1:9104",
    }
    assert connections(rules, env) == {
        "levels": ("https://api.example.com", "from-env"),
        "shop": ("http://127.0.0.1:9103", "shop-file"),
        "shopper": ("https://api.example.com", None),
        "items": ("http://127.0.0.1:9104", None),
    }


def test_a_broken_secrets_file_names_the_file_and_never_echoes_a_token(rules, tmp_path):
    secrets = tmp_path / "secrets.json"
    secrets.write_text('{"levels": {"token": "s3cret", "tokn": "s3cret-too"}}')
    with pytest.raises(AvailabilityFileError) as caught:
        connections(rules, {"ENGINE_SECRETS_FILE": str(secrets)})
    message = str(caught.value)
    assert message.startswith(f"{secrets}: not a secrets file")
    assert "tokn" in message
    assert "s3cret" not in message


def test_a_missing_secrets_file(rules, tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(AvailabilityFileError) as caught:
        connections(rules, {"ENGINE_SECRETS_FILE": str(missing)})
    assert (
        str(caught.value)
        == f"{missing}: the secrets file cannot be read: No such file or directory"
    )


def test_a_connection_never_shows_its_token():
    assert "hunter2" not in repr(Connection(token="hunter2", url="https://x.example"))


def test_the_demo_secrets_are_the_simulators_demo_tokens():
    demo = json.loads((Path(RULES).parent / "demo" / "secrets.json").read_text())
    assert sorted(demo) == ["catalog", "dr-levels", "dr-shopper", "shoplazza"]


def test_array_spelling_is_configurable_and_checked():
    bracketed = SOURCES.replace(
        "url: https://api.example.com\n  - name: shop",
        "url: https://api.example.com\n    array_style: brackets\n  - name: shop",
        1,
    )
    levels = rules_from(bracketed, LOCATIONS, CATALOG).sources[0]
    assert levels.array_style == "brackets"
    wrong = bracketed.replace("array_style: brackets", "array_style: bracket")
    assert problems(wrong, LOCATIONS, CATALOG) == [
        "f0.yaml:5:18: `bracket` is not an allowed value for `array_style` (did you mean "
        "`brackets`?); use one of: repeat, comma, brackets"
    ]


# --- cache and breaker settings -----------------------------------------------------------------


def test_cache_and_breaker_settings_default_and_compile():
    configured = SOURCES.replace(
        "    timeout_ms: 250\n",
        "    timeout_ms: 250\n    fresh_for_ms: 1000\n    stale_for_ms: 60000\n"
        "    refresh_after_ms: 600\n    batch_window_ms: 5\n"
        "    breaker: {failure_rate: 0.25, window: 40, min_calls: 10, open_ms: 2000}\n",
    )
    by_name = {s.name: s for s in rules_from(configured, LOCATIONS, CATALOG).sources}
    levels, shopper, items = by_name["levels"], by_name["shopper"], by_name["items"]
    assert (levels.fresh_for, levels.stale_for, levels.batch_window) == (5.0, 300.0, 0.002)
    assert (levels.breaker_failure_rate, levels.breaker_window) == (0.5, 20)
    assert (levels.breaker_min_calls, levels.breaker_open_for) == (5, 5.0)
    assert (shopper.fresh_for, shopper.stale_for, shopper.batch_window) == (1.0, 60.0, 0.005)
    assert (shopper.breaker_failure_rate, shopper.breaker_window) == (0.25, 40)
    assert (shopper.breaker_min_calls, shopper.breaker_open_for) == (10, 2.0)
    assert items.batch_window == 0.0  # one item per request: nothing to batch
    assert (levels.refresh_after, shopper.refresh_after) == (None, 0.6)
    cache = (cache_settings(levels), cache_settings(shopper))
    assert [c.refresh_after for c in cache] == [None, 0.6]


def test_stale_for_must_not_be_shorter_than_fresh_for():
    broken = SOURCES.replace(
        "    timeout_ms: 250\n", "    fresh_for_ms: 5000\n    stale_for_ms: 1000\n"
    )
    assert problems(broken, LOCATIONS, CATALOG) == [
        "f0.yaml:13:19: `stale_for_ms` (1000) is shorter than `fresh_for_ms` (5000): an answer "
        "is stale only after it stops being fresh"
    ]


def test_refreshing_ahead_after_the_fresh_time_is_reported():
    broken = SOURCES.replace(
        "    timeout_ms: 250\n", "    fresh_for_ms: 2000\n    refresh_after_ms: 3000\n"
    )
    assert problems(broken, LOCATIONS, CATALOG) == [
        "f0.yaml:13:23: `refresh_after_ms` (3000) is longer than `fresh_for_ms` (2000): an "
        "answer is refreshed ahead only while it is fresh (`refresh_after_ms: 2000` turns "
        "refreshing ahead off)"
    ]
    every_cart = broken.replace("refresh_after_ms: 3000", "refresh_after_ms: 0")
    assert problems(every_cart, LOCATIONS, CATALOG) == [
        "f0.yaml:13:23: `refresh_after_ms: 0` would ask the source again on every cart: give "
        "the age at which an answer in use is refreshed (by default 1600, four fifths of "
        "`fresh_for_ms`), or `2000` to turn it off"
    ]
    turned_off = broken.replace("refresh_after_ms: 3000", "refresh_after_ms: 2000")
    shopper = next(
        s for s in rules_from(turned_off, LOCATIONS, CATALOG).sources if s.name == "shopper"
    )
    assert (shopper.fresh_for, shopper.refresh_after) == (2.0, 2.0)


def test_a_breaker_that_could_never_open_is_reported():
    broken = SOURCES.replace("    timeout_ms: 250\n", "    breaker:\n      window: 3\n")
    assert problems(broken, LOCATIONS, CATALOG) == [
        "f0.yaml:13:7: `min_calls` (5) is more than the `window` of 3 calls the breaker keeps: "
        "it could never open"
    ]


def test_a_misspelt_breaker_setting_is_named_with_its_line():
    broken = SOURCES.replace("    timeout_ms: 250\n", "    breaker: {failure_rte: 0.5}\n")
    (message,) = problems(broken, LOCATIONS, CATALOG)
    assert message.startswith("f0.yaml:12:15: unknown key `failure_rte` in `breaker`")
    assert "failure_rate" in message


def test_a_failure_rate_must_be_a_share():
    broken = SOURCES.replace("    timeout_ms: 250\n", "    breaker: {failure_rate: 50}\n")
    assert problems(broken, LOCATIONS, CATALOG) == [
        "f0.yaml:12:29: `failure_rate` is too large (`50`): at most 1"
    ]
