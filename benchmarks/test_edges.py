"""The edges of a request and of a reload: decoding a cart and encoding a decision as the service
does, and loading and compiling rules."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from litestar import MediaType, Response
from litestar.serialization import get_serializer
from litestar.types import Serializer
from pytest_benchmark.fixture import BenchmarkFixture

from benchmarks.synthetic import NOW, availability, cart, rule_text, warm_rule_set
from engine.allocate import decide
from engine.checkout import Checkout
from engine.model import Decision, Freshness
from engine.policy import load_rule_set, load_rule_set_texts
from engine.service.app import StrictDTO, create_app

RULES = Path(__file__).resolve().parent.parent / "rules"


def _decision(lines: int) -> Decision:
    """A decision as the service answers it on the upstream path (with its freshness)."""
    rs = warm_rule_set(10, 100)
    c = cart(lines)
    decision = decide(c, availability(rs, [line.sku for line in c.lines]), rs, NOW)
    return msgspec.structs.replace(decision, freshness=Freshness(stale=False, oldest_age_ms=840))


def _allocations_serializer() -> Serializer:
    """The serializer Litestar renders `POST /v1/allocations` answers with: the type encoders
    the app resolves for that handler."""
    app = create_app(Checkout(warm_rule_set(10, 100), []))
    for route in app.routes:
        if route.path == "/v1/allocations":
            for handler in getattr(route, "route_handlers", ()):
                if handler.handler_name == "allocations":
                    return get_serializer(handler.resolve_type_encoders())
    raise AssertionError("no POST /v1/allocations handler")


@pytest.mark.parametrize("lines", [5, 100])
def test_decode_cart(benchmark: BenchmarkFixture, lines: int) -> None:
    """The request body to a `Cart`: the strict decoder the service's DTO runs."""
    benchmark.group = "edges: decode request"
    benchmark.name = f"decode cart[{lines} lines]"
    body = msgspec.json.encode(cart(lines))
    dto = StrictDTO(None)  # type: ignore[arg-type]  # decoding reads no connection
    assert dto.decode_bytes(body) == cart(lines)
    benchmark(dto.decode_bytes, body)


@pytest.mark.parametrize("lines", [5, 100])
def test_encode_decision(benchmark: BenchmarkFixture, lines: int) -> None:
    """A `Decision` to the response body, rendered as Litestar renders the handler's answer."""
    benchmark.group = "edges: encode response"
    benchmark.name = f"encode decision[{lines} lines]"
    decision = _decision(lines)
    response = Response(decision)
    serializer = _allocations_serializer()
    body = response.render(decision, MediaType.JSON, serializer)
    assert msgspec.json.decode(body, type=Decision) == decision
    benchmark(response.render, decision, MediaType.JSON, serializer)


def test_load_demo_rules(benchmark: BenchmarkFixture) -> None:
    """The demo folder read from disk, parsed, checked (warnings included) and compiled: what a
    reload costs before it swaps the rules in."""
    benchmark.group = "rules: load and compile"
    benchmark.name = "load, check, compile[demo rules/]"
    benchmark(load_rule_set, RULES)


@pytest.mark.parametrize("rules", [100, 1000])
def test_compile_synthetic(benchmark: BenchmarkFixture, rules: int) -> None:
    """Synthetic rule files (10 locations, 400 SKUs) parsed, checked and compiled from text."""
    benchmark.group = "rules: load and compile"
    benchmark.name = f"load, check, compile[synthetic, {rules} rules]"
    texts = [("synthetic.yaml", rule_text(10, rules))]
    benchmark(load_rule_set_texts, texts)
