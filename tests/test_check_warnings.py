"""Warnings `engine check` gives for rules that load but cannot do what their author meant:
a setting an earlier rule always sets first, a country group nobody uses."""

from __future__ import annotations

from engine.policy import RuleSet
from tests.helpers import rules_from

BASE = """\
country_groups:
  - name: eu
    countries: [IE, FR, DE]
locations:
  - id: dub-dc
    country: IE
    ships_to: [eu]
  - id: ams-dc
    country: NL
    ships_to: [eu]
catalog:
  - sku: TEE
    tags: [apparel]
  - sku: HOODIE
    tags: [apparel]
  - sku: LAMP
    tags: [home]
"""


def warnings(rules_text: str) -> list[str]:
    rules: RuleSet = rules_from(BASE, rules_text, names=["base.yaml", "rules.yaml"])
    return [str(w) for w in rules.warnings]


def test_a_rule_whose_every_setting_is_set_first_never_applies():
    assert warnings(
        """\
        rules:
          - name: apparel-stock
            match: {tags: [apparel]}
            safety_stock: 2
          - name: tee-stock
            match: {skus: [TEE], countries: [FR]}
            safety_stock: 5
        """
    ) == [
        "rules.yaml:5:11: warning: rule `tee-stock` never applies: earlier rules that match "
        "everything it matches set all it sets first (`safety_stock` by `apparel-stock` "
        "(rules.yaml:2)); remove it or move it above them"
    ]


def test_one_setting_set_first_is_named_at_its_line():
    assert warnings(
        """\
        rules:
          - name: apparel-stock
            match: {tags: [apparel]}
            safety_stock: 2
          - name: tee
            match: {skus: [TEE]}
            safety_stock: 5
            max_quantity: 3
        """
    ) == [
        "rules.yaml:7:19: warning: rule `tee`: `safety_stock` here never applies: rule "
        "`apparel-stock` (rules.yaml:2) sets it first for everything this rule matches"
    ]


def test_a_narrower_earlier_rule_does_not_shadow_a_wider_later_one():
    assert (
        warnings(
            """\
            rules:
              - name: tee-to-france
                match: {skus: [TEE], countries: [FR]}
                safety_stock: 5
              - name: apparel
                match: {tags: [apparel]}
                safety_stock: 2
              - name: web-only
                match: {channels: [web]}
                max_quantity: 3
              - name: everyone
                match: {}
                max_quantity: 10
            """
        )
        == []
    )


def test_deny_rules_shadow_like_settings():
    (message,) = warnings(
        """\
        rules:
          - name: no-apparel-to-de
            match: {tags: [apparel], countries: [DE]}
            deny: {}
          - name: no-tees-to-de
            match: {skus: [TEE], countries: [DE]}
            deny: {message: Not in Germany.}
        """
    )
    assert message.startswith("rules.yaml:5:11: warning: rule `no-tees-to-de` never applies:")


def test_a_products_ship_to_does_not_shadow_a_locations():
    """A rule without `locations` says where the product may go; one with them, where those
    locations may send it. Both apply, so neither shadows the other; within a layer, the
    first still wins."""
    assert warnings(
        """\
        rules:
          - name: apparel-not-to-de
            match: {tags: [apparel]}
            ship_to: {deny: [DE]}
          - name: dublin-apparel-only-to-ireland
            match: {tags: [apparel], locations: [dub-dc]}
            ship_to: {allow: [IE]}
          - name: dublin-tees-only-to-france
            match: {skus: [TEE], locations: [dub-dc]}
            ship_to: {allow: [FR]}
        """
    ) == [
        "rules.yaml:8:11: warning: rule `dublin-tees-only-to-france` never applies: earlier "
        "rules that match everything it matches set all it sets first (`ship_to` by "
        "`dublin-apparel-only-to-ireland` (rules.yaml:5)); remove it or move it above them"
    ]


def test_a_location_rule_covers_only_its_locations():
    assert (
        warnings(
            """\
            rules:
              - name: dublin-buffer
                match: {locations: [dub-dc]}
                safety_stock: 1
              - name: buffer-everywhere
                match: {tags: [apparel]}
                safety_stock: 3
            """
        )
        == []
    )


def test_an_unused_country_group():
    text = BASE.replace("    ships_to: [eu]\n", "    ships_to: [IE, FR, DE]\n")
    rules = rules_from(text, names=["base.yaml"])
    assert [str(w) for w in rules.warnings] == [
        "base.yaml:2:11: warning: country group `eu` is not used by any location or rule"
    ]


def test_a_location_no_sku_may_be_sent_from():
    (message,) = warnings(
        """\
        locations:
          - id: lon-store
            country: GB
        rules:
          - name: nothing-from-london
            match: {locations: [lon-store]}
            ship_to: {deny: [GB]}
        """
    )
    assert message == (
        "rules.yaml:2:9: warning: location `lon-store` can never send anything: for every SKU "
        "and every country it ships to, a rule or default keeps it out (ship_to, deny); only "
        "click and collect can still use it"
    )


def test_a_location_some_sku_may_be_sent_from_is_fine():
    assert (
        warnings(
            """\
            locations:
              - id: lon-store
                country: GB
            rules:
              - name: no-lamps-from-london
                match: {tags: [home], locations: [lon-store]}
                ship_to: {deny: [GB]}
            """
        )
        == []
    )
