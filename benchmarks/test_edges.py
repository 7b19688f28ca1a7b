"""The edges of a request: decoding a cart, encoding a decision, loading the rules."""

from __future__ import annotations

from pathlib import Path

import msgspec

from benchmarks.synthetic import NOW, availability, cart, rule_set
from engine.allocate import decide
from engine.model import Cart
from engine.policy import load_rule_set

RULES = Path(__file__).resolve().parent.parent / "rules"


def test_decode_cart(benchmark):
    benchmark.group = "edges"
    benchmark.name = "decode cart[5 lines]"
    body = msgspec.json.encode(cart(5))
    decoder = msgspec.json.Decoder(Cart)
    benchmark(decoder.decode, body)


def test_encode_decision(benchmark):
    benchmark.group = "edges"
    benchmark.name = "encode decision[5 lines]"
    rs = rule_set(10, 100)
    c = cart(5)
    decision = decide(c, availability(rs, [line.sku for line in c.lines]), rs, NOW)
    encoder = msgspec.json.Encoder()
    benchmark(encoder.encode, decision)


def test_load_demo_rules(benchmark):
    benchmark.group = "rules"
    benchmark.name = "load + compile demo rules"
    benchmark(load_rule_set, RULES)


def test_first_cart_after_load(benchmark):
    """A cart decided right after a reload: every look-up is a memo miss."""
    benchmark.group = "rules"
    benchmark.name = "decide cold[5 lines x 10 locations, 100 rules]"
    c = cart(5)

    def setup():
        rs = rule_set(10, 100)
        return (c, availability(rs, [line.sku for line in c.lines]), rs, NOW), {}

    benchmark.pedantic(decide, setup=setup, rounds=20)
