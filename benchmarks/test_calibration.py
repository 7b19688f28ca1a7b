"""How fast this machine runs Python: a fixed workload that `benchmarks.compare` divides every
benchmark by, so that a slower (or busier) machine alone does not read as a regression.

It must not change with the engine, so it uses nothing from it: dictionary look-ups and small
objects in interpreted loops (what `decide` mostly does), a msgspec decode (the edges) and a
sort (ranking). Changing this workload invalidates the baseline: re-record it with `--update`.
"""

from __future__ import annotations

import msgspec
from pytest_benchmark.fixture import BenchmarkFixture

from benchmarks.compare import CALIBRATION


class _Item(msgspec.Struct, frozen=True):
    sku: str
    quantity: int
    tags: tuple[str, ...]


class _Slot:
    __slots__ = ("left", "location")

    def __init__(self, location: str, left: int) -> None:
        self.location = location
        self.left = left


_KEYS = [f"loc-{i:03d}" for i in range(10)]
_TABLE = {key: i for i, key in enumerate(_KEYS)}
_PAYLOAD = msgspec.json.encode(
    [{"sku": f"SKU-{i:05d}", "quantity": i % 7 + 1, "tags": ["home", "outlet"]} for i in range(20)]
)
_DECODER = msgspec.json.Decoder(list[_Item])
_WORDS = [f"{(i * 7919) % 1009:04d}" for i in range(200)]


def workload() -> int:
    total = 0
    for _ in range(20):
        for key in _KEYS:
            total += _TABLE.get(key, 0)
    slots = [_Slot(key, i) for i, key in enumerate(_KEYS * 5)]
    for slot in slots:
        total += slot.left
    total += len(_DECODER.decode(_PAYLOAD))
    total += len(sorted(_WORDS))
    return total


ROUNDS = 1000
"""Fixed, short mode or not: about a tenth of a second here, so the fastest round is one where
nothing else ran, and the machine's speed is read the same way in every mode."""


def test_calibration(benchmark: BenchmarkFixture) -> None:
    benchmark.group = "calibration"
    benchmark.name = CALIBRATION
    assert workload() == workload()
    benchmark.pedantic(workload, rounds=ROUNDS)
