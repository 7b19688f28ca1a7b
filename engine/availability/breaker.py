"""A circuit breaker per source: stop calling an upstream that keeps failing, probe to come back.

Closed, the breaker keeps the outcome of the last `window` upstream calls. Once at least
`min_calls` of them are known and the failed share reaches `failure_rate`, it opens: no call is
made for `open_for` seconds, and the cache serves what it has. Then one call goes through as a
probe (half-open): its success closes the breaker, its failure opens it again. A probe that has
not reported `open_for` seconds after it was let through is given up on: the next caller becomes
the probe.

Every permit is stamped with the breaker's epoch, which moves on each time it opens, lets a probe
through or closes. A report on a permit of an earlier epoch (a call under way when the breaker
opened, even one that ends after an open -> probe -> close cycle, or a probe given up on) is
ignored: it belongs to a window that is gone, and only the current probe decides.

What counts as a failure is the caller's business (see `CachedSource`): a call whose outcome
says nothing about the source's health is `release`d, neither failure nor success.
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
    """Seconds without calls before a probe (and how long a probe may take to report before
    another is let through)."""


@dataclass(frozen=True, slots=True)
class Permit:
    """Leave to make one upstream call; `probe` when it decides whether the breaker closes.
    `epoch` is the breaker's epoch when it was granted."""

    probe: bool = False
    epoch: int = 0


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
        self._probe_since = 0.0
        self._epoch = 0
        self._permit = Permit(epoch=0)
        """The permit every call of the current closed epoch gets (they are all alike)."""
        self.opened = 0
        """How many times the breaker has opened (a failed probe opens it again)."""

    @property
    def state(self) -> BreakerState:
        return self._state

    def blocked(self, now: float | None = None) -> bool:
        """True when no call may be made now: open and not yet due for a probe, or half-open
        with a probe under way that is not overdue. Changes nothing."""
        now = self._clock() if now is None else now
        if self._state is BreakerState.OPEN:
            return now < self._opened_at + self.settings.open_for
        return (
            self._state is BreakerState.HALF_OPEN
            and self._probing
            and now < self._probe_since + self.settings.open_for
        )

    def acquire(self, now: float | None = None) -> Permit | None:
        """Leave to call now, or None. When the breaker is open and due (or its probe is
        overdue), the caller becomes the probe, and every other caller is refused until it
        reports."""
        now = self._clock() if now is None else now
        if self._state is BreakerState.CLOSED:
            return self._permit
        if self.blocked(now):
            return None
        self._state = BreakerState.HALF_OPEN
        self._probing = True
        self._probe_since = now
        self._epoch += 1  # an overdue probe's late report is not this probe's
        return Permit(probe=True, epoch=self._epoch)

    def record(self, permit: Permit, failed: bool, now: float | None = None) -> None:
        """Report how a call made with `permit` went."""
        if permit.epoch != self._epoch:
            return  # granted before the breaker last changed: not this window's, not the probe
        now = self._clock() if now is None else now
        if permit.probe:
            self._probing = False
            if failed:
                self._open(now)
            else:
                self._close()
            return
        self._outcomes.append(failed)
        calls = len(self._outcomes)
        if calls >= self.settings.min_calls and (
            sum(self._outcomes) >= self.settings.failure_rate * calls
        ):
            self._open(now)

    def release(self, permit: Permit) -> None:
        """The call made with `permit` says nothing about the source's health (it was cut short
        by our own queueing, or refused with a `Retry-After`): it is not counted, and a probe
        leaves its place to the next caller."""
        if permit.probe and permit.epoch == self._epoch:
            self._probing = False

    def abandon(self, permit: Permit, now: float | None = None) -> None:
        """The call made with `permit` will never report (cancelled, or ended by a bug of
        ours). A probe counts as failed, so the breaker is not left half-open for good: it opens
        again and probes after `open_for`. Any other call is forgotten: its end is ours, not the
        source's."""
        if permit.probe:
            self.record(permit, True, now)

    def _open(self, now: float) -> None:
        self._state = BreakerState.OPEN
        self._opened_at = now
        self._outcomes.clear()
        self._epoch += 1
        self.opened += 1

    def _close(self) -> None:
        self._state = BreakerState.CLOSED
        self._outcomes.clear()
        self._epoch += 1
        self._permit = Permit(epoch=self._epoch)

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
