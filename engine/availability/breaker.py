"""A circuit breaker per source: stop calling an upstream that keeps failing, probe to come back.

Closed, the breaker keeps the outcome of the last `window` upstream calls. Once at least
`min_calls` of them are known and the failed share reaches `failure_rate`, it opens: no call is
made for `open_for` seconds, and the cache serves what it has. Then one call goes through as a
probe (half-open): its success closes the breaker, its failure opens it again. A call that was
already under way when the breaker opened does not count: only the probe decides.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = ("BreakerSettings", "BreakerState", "CircuitBreaker", "Permit")


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    failure_rate: float = 0.5
    """Open when at least this share of the calls in the window failed..."""
    window: int = 20
    """...of the last this many calls..."""
    min_calls: int = 5
    """...and at least this many calls are in the window."""
    open_for: float = 5.0
    """Seconds without calls before a probe."""


@dataclass(frozen=True, slots=True)
class Permit:
    """Leave to make one upstream call; `probe` when it decides whether the breaker closes."""

    probe: bool = False


_CALL = Permit()
_PROBE = Permit(probe=True)


class CircuitBreaker:
    """Decides whether a source may be called now, from how its recent calls went."""

    def __init__(
        self, settings: BreakerSettings | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings or BreakerSettings()
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._outcomes: deque[bool] = deque(maxlen=max(1, self.settings.window))
        """True for a failure, newest last."""
        self._opened_at = 0.0
        self._probing = False
        self.opened = 0
        """How many times the breaker has opened (a failed probe opens it again)."""

    @property
    def state(self) -> BreakerState:
        return self._state

    def blocked(self, now: float | None = None) -> bool:
        """True when no call may be made now: open and not yet due for a probe, or half-open
        with the probe under way. Changes nothing."""
        now = self._clock() if now is None else now
        if self._state is BreakerState.OPEN:
            return now < self._opened_at + self.settings.open_for
        return self._state is BreakerState.HALF_OPEN and self._probing

    def acquire(self, now: float | None = None) -> Permit | None:
        """Leave to call now, or None. When the breaker is open and due, the caller becomes the
        probe (and every other caller is refused until it reports)."""
        now = self._clock() if now is None else now
        if self._state is BreakerState.CLOSED:
            return _CALL
        if self.blocked(now):
            return None
        self._state = BreakerState.HALF_OPEN
        self._probing = True
        return _PROBE

    def record(self, permit: Permit, failed: bool, now: float | None = None) -> None:
        """Report how a call made with `permit` went."""
        now = self._clock() if now is None else now
        if permit.probe:
            self._probing = False
            if failed:
                self._open(now)
            else:
                self._state = BreakerState.CLOSED
                self._outcomes.clear()
            return
        if self._state is not BreakerState.CLOSED:
            return  # under way before the breaker opened: the probe decides, not this
        self._outcomes.append(failed)
        calls = len(self._outcomes)
        if calls >= self.settings.min_calls and (
            sum(self._outcomes) >= self.settings.failure_rate * calls
        ):
            self._open(now)

    def _open(self, now: float) -> None:
        self._state = BreakerState.OPEN
        self._opened_at = now
        self._outcomes.clear()
        self.opened += 1

    def describe(self, now: float | None = None) -> dict[str, Any]:
        """The state, for the metrics endpoint."""
        now = self._clock() if now is None else now
        report: dict[str, Any] = {
            "state": str(self._state),
            "calls": len(self._outcomes),
            "failures": sum(self._outcomes),
            "opened": self.opened,
        }
        if self._state is BreakerState.OPEN:
            due = self._opened_at + self.settings.open_for - now
            report["probe_in_ms"] = max(0, round(due * 1000))
        return report
