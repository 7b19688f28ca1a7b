"""Recorded carts for simulation tests and the demo: the demo carts and variations of them,
decided through `Checkout` on the demo snapshot with a `Recorder` taking every decision.

Deterministic (a seeded generator, a clock that ticks from NOW), so the shipped
`demo/recorded-carts.jsonl` can be made again:

    python -m tests.recorded demo/recorded-carts.jsonl 200
"""

from __future__ import annotations

import asyncio
import random
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import msgspec

from engine.checkout import Checkout
from engine.model import Cart, CartLine
from engine.policy import RuleSet, load_rule_set
from engine.record import Recorder
from engine.sources.snapshot import SnapshotSource
from tests.helpers import DEMO_AVAILABILITY, NOW, ROOT, RULES

DEMO_CARTS = ROOT / "demo" / "carts"
SKUS = (
    "TEE-BLK-M",
    "TEE-WHT-M",
    "HOODIE-GRY-L",
    "SNEAKER-RUN-42",
    "POWERBANK-20K",
    "LAMP-OAK",
    "CHEF-KNIFE-20",
    "VINYL-LTD-01",
    "GIFTCARD-50",
)
COUNTRIES = ("IE", "IE", "FR", "FR", "DE", "GB", "GB", "US", "NL", "SE")
QUANTITIES = (1, 1, 1, 2, 2, 3, 4, 6, 8)


def demo_carts() -> list[Cart]:
    return [
        msgspec.json.decode(path.read_bytes(), type=Cart)
        for path in sorted(DEMO_CARTS.glob("*.json"))
    ]


def carts(count: int, seed: int = 7) -> Iterator[Cart]:
    """The demo carts, then variations: a demo cart's lines to another country or in other
    quantities, or a new cart of one to five lines (some wholesale, some collected)."""
    rng = random.Random(seed)
    demo = demo_carts()
    for index in range(count):
        if index < len(demo):
            yield demo[index]
            continue
        cart_id = f"rec-{index:05d}"
        if rng.random() < 0.4:
            base = rng.choice(demo)
            factor = rng.choice((1, 1, 2))
            yield Cart(
                country=rng.choice((base.country, *COUNTRIES[:6])),  # type: ignore[arg-type]
                lines=tuple(
                    CartLine(line.sku, min(line.quantity * factor, 20)) for line in base.lines
                ),
                cart_id=cart_id,
                pickup_location=base.pickup_location,
            )
            continue
        skus = rng.sample(SKUS, rng.choice((1, 1, 1, 2, 2, 3, 5)))
        country = rng.choice(COUNTRIES)
        pickup = None
        if rng.random() < 0.04:
            pickup, country = "dub-dc", "IE"
        yield Cart(
            country=country,  # type: ignore[arg-type]
            lines=tuple(CartLine(sku, rng.choice(QUANTITIES)) for sku in skus),
            cart_id=cart_id,
            channel="wholesale" if rng.random() < 0.05 else None,
            pickup_location=pickup,
        )


def record(
    path: Path, count: int, rules: RuleSet | None = None, seed: int = 7, start: datetime = NOW
) -> Path:
    """Decide `count` carts through `Checkout` on the demo snapshot, recording every one to
    `path` (replaced): decided 37 s apart from `start`."""
    path.unlink(missing_ok=True)
    recorder = Recorder(path, 1.0, capacity=count + 1)
    ticks = iter(start + timedelta(seconds=37 * i) for i in range(count))
    checkout = Checkout(
        rules or load_rule_set(RULES),
        [SnapshotSource.from_file(DEMO_AVAILABILITY, start)],
        clock=lambda: next(ticks),
        recorder=recorder,
    )

    async def run() -> None:
        for cart in carts(count, seed):
            await checkout.allocate(cart)

    asyncio.run(run())
    recorder.close()
    return path


if __name__ == "__main__":
    target = Path(sys.argv[1])
    wanted = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    record(target, wanted)
    print(f"{target}: {wanted} recorded decisions", file=sys.stderr)
