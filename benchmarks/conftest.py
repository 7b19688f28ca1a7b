"""What several benchmark modules share."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """One event loop per module: a coroutine's round runs on it with `run_until_complete`,
    as a loop made per call would cost more than what is measured."""
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()
