"""Hot reload of the rules: validate first, then swap, and never let a bad edit go live.

Merchandisers edit `rules/` while the service runs. A reload (a file changed, `POST
/v1/rules/reload`, or SIGHUP) reads and compiles the folder in a worker thread, so the event loop
keeps deciding carts; only a rule set that compiles without errors is put in force, together with
the sources built for it, in one assignment (`Checkout.replace_rules`). A cart reads the pair
once, so it decides with one rule set from start to end. A rejected attempt changes nothing: its
problems are logged and kept for `GET /v1/rules` until a good load replaces them, and the service
goes on with the last good set.

Reloads are serialised by a lock. The folder is watched by polling the name, modification time
and size of its rule files (no extra dependency, works on every file system); a burst of writes
(an editor saving several files, or one file in pieces) settles before it is read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

import msgspec

from engine.availability import Source
from engine.checkout import Checkout, Live
from engine.errors import EngineError, Problem, RuleSetError, Severity
from engine.policy import RuleSet, compile_files, load_folder
from engine.policy.load import rule_files

__all__ = (
    "DEFAULT_DEBOUNCE",
    "DEFAULT_POLL_INTERVAL",
    "HISTORY_LIMIT",
    "SLOW_LOOK",
    "SLOW_LOOKS",
    "WATCH_VARIABLE",
    "Attempt",
    "Fingerprint",
    "RuleProblem",
    "RuleReloader",
    "SourcesFor",
    "Trigger",
    "fingerprint",
    "keep_sources",
    "shown_problems",
    "watch_enabled",
)

log = logging.getLogger(__name__)

Trigger = Literal["startup", "file", "api", "signal"]
Outcome = Literal["loaded", "unchanged", "rejected"]
Fingerprint = tuple[tuple[str, int, int], ...]
"""(name, mtime_ns, size) of each rule file: what the watcher compares between two looks."""
SourcesFor = Callable[[RuleSet, Sequence[Source]], tuple[Source, ...]]
"""Builds the sources a rule set needs, given the current ones (to keep what did not change)."""

HISTORY_LIMIT: Final = 100
DEFAULT_POLL_INTERVAL: Final = 1.0
SLOW_LOOK: Final = 0.02
"""Seconds a look at the rules folder may hold the event loop (a local disk takes 0.1 ms)..."""
SLOW_LOOKS: Final = 3
"""...this many times in a row before the watcher looks from a thread instead."""
DEFAULT_DEBOUNCE: Final = 0.2
_SETTLE_ROUNDS: Final = 10
"""A folder still changing after this many debounce periods is read anyway."""
WATCH_VARIABLE: Final = "ENGINE_WATCH_RULES"
_OFF_WORDS: Final = frozenset({"0", "false", "no", "off"})


def watch_enabled(flag: bool | None, env: Mapping[str, str] | None = None) -> bool:
    """Whether to watch the rules folder: `--watch/--no-watch` when given, else
    `ENGINE_WATCH_RULES` (0, false, no or off turn it off), else on."""
    if flag is not None:
        return flag
    value = (os.environ if env is None else env).get(WATCH_VARIABLE, "")
    return value.strip().lower() not in _OFF_WORDS


def keep_sources(rules: RuleSet, current: Sequence[Source]) -> tuple[Source, ...]:
    """For sources that do not come from the rules (a snapshot file): keep them as they are."""
    return tuple(current)


def fingerprint(folder: Path) -> Fingerprint:
    """Name, modification time and size of each file the loader would read. A file that goes
    away between listing and looking is left out: the next look sees the folder settled."""
    try:
        files = rule_files(folder)
    except OSError:
        return ()
    seen: list[tuple[str, int, int]] = []
    for path in files:
        try:
            stat = path.stat()
        except OSError:
            continue
        seen.append((path.name, stat.st_mtime_ns, stat.st_size))
    return tuple(seen)


class RuleProblem(msgspec.Struct, frozen=True):
    """A problem of a rejected attempt, its file named within the rules folder."""

    file: str
    line: int
    column: int
    message: str
    severity: str = Severity.ERROR.value


def shown_problems(problems: Sequence[Problem]) -> tuple[RuleProblem, ...]:
    """Problems as an admin answer shows them: each file by its name, not where it is kept."""
    return tuple(
        RuleProblem(Path(p.file).name or p.file, p.line, p.column, p.message, p.severity.value)
        for p in problems
    )


class Attempt(msgspec.Struct, frozen=True):
    """One load of the rules folder and what came of it."""

    loaded_at: datetime
    """When the attempt finished (UTC)."""
    trigger: Trigger
    outcome: Outcome
    rule_set: str
    """The id of what was read (for a rejected attempt, the id it would have had)."""
    digest: str
    """SHA-256 of the files read, names and text."""
    live: str
    """The rule set in force after the attempt."""
    files: tuple[str, ...] = ()
    problems: tuple[RuleProblem, ...] = ()
    """Every problem of a rejected attempt; warnings of a loaded one."""


@dataclass(frozen=True, slots=True)
class _Read:
    """What the worker thread brings back: the new pair when there is one to put in force."""

    outcome: Outcome
    seen: Fingerprint
    digest: str
    files: tuple[str, ...]
    problems: tuple[Problem, ...] = ()
    live: Live | None = None


class RuleReloader:
    """Owns the rules folder of one `Checkout` (whose rules were just loaded from it): reloads
    it on request, by file watching and on SIGHUP, and remembers the last `HISTORY_LIMIT`
    attempts. `sources_for` builds the sources a new rule set needs (the default keeps the
    current ones: a snapshot does not depend on the rules)."""

    def __init__(
        self,
        folder: Path,
        checkout: Checkout,
        *,
        sources_for: SourcesFor = keep_sources,
        watch: bool = True,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        debounce: float = DEFAULT_DEBOUNCE,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if poll_interval <= 0 or debounce < 0:
            raise ValueError("the poll interval must be above 0 and the debounce at least 0")
        self.folder = folder
        self.checkout = checkout
        self.sources_for = sources_for
        self.watch = watch
        self.poll_interval = poll_interval
        self.debounce = debounce
        self._clock = clock
        rules = checkout.rules
        self._seen = fingerprint(folder)
        """The folder as it was when it was last read (the checkout's rules were just read)."""
        self.loaded_at = clock()
        self.history: deque[Attempt] = deque(maxlen=HISTORY_LIMIT)
        self.history.append(
            Attempt(
                self.loaded_at,
                "startup",
                "loaded",
                rules.id,
                rules.digest,
                rules.id,
                self._names(rules.files),
                shown_problems(rules.warnings),
            )
        )
        self.last_rejected: Attempt | None = None
        self._lock: asyncio.Lock | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._slow_looks = 0
        """Looks in a row that held the event loop longer than `SLOW_LOOK`."""
        self._pending: set[asyncio.Task[Any]] = set()
        self._signal_loop: asyncio.AbstractEventLoop | None = None

    # --- reloading --------------------------------------------------------------------------

    async def reload(self, trigger: Trigger) -> Attempt:
        """Read, check and compile the folder off the event loop; put the result in force only
        when it has no errors. Never raises for what is in the files."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            live = self.checkout.live
            read = await asyncio.to_thread(self._read, live)
            self._seen = read.seen
            now = self._clock()
            new = read.live if read.live is not None else live
            attempt = Attempt(
                now,
                trigger,
                read.outcome,
                read.digest[:12],
                read.digest,
                new.rules.id,
                read.files,
                shown_problems(read.problems),
            )
            self.history.append(attempt)
            if read.outcome == "rejected":
                self.last_rejected = attempt
                errors = [p for p in read.problems if p.severity is Severity.ERROR]
                log.warning(
                    "rules: %s reload rejected with %d error(s); rule set %s stays live",
                    trigger,
                    len(errors),
                    live.rules.id,
                )
                for problem in read.problems:
                    log.warning("%s", problem)
                return attempt
            self.last_rejected = None
            if read.live is None:
                log.info("rules: %s reload: unchanged, rule set %s", trigger, live.rules.id)
                return attempt
            # One assignment, on the event loop: a cart has the old pair or the new one.
            self.checkout.replace_rules(read.live.rules, read.live.sources)
            self.loaded_at = now
            log.info(
                "rules: %s reload: rule set %s is live (was %s)",
                trigger,
                read.live.rules.id,
                live.rules.id,
            )
            for problem in read.problems:
                log.warning("%s", problem)
            return attempt

    def _read(self, live: Live) -> _Read:
        """In a worker thread: the folder's files, checked and compiled, with the sources the
        new rule set needs. The fingerprint is taken first, so an edit made while reading is
        seen by the next look."""
        seen = fingerprint(self.folder)
        try:
            loaded = load_folder(self.folder)
            files = self._names(loaded.files)
            if loaded.digest == live.rules.digest:  # the same texts: the same rule set
                return _Read("unchanged", seen, loaded.digest, files)
            try:
                rules = compile_files(loaded)
            except RuleSetError as exc:
                return _Read("rejected", seen, loaded.digest, files, tuple(exc.problems))
            try:
                sources = self.sources_for(rules, live.sources)
            except EngineError as exc:
                message = f"the sources of these rules cannot be set up: {exc}"
                problem = Problem(str(self.folder), 1, 1, message)
                return _Read("rejected", seen, loaded.digest, files, (problem,))
            return _Read(
                "loaded", seen, rules.digest, files, tuple(rules.warnings), Live(rules, sources)
            )
        except Exception:
            # A bug must not take the service down with it: the live rules go on.
            log.exception("rules: reading %s failed unexpectedly", self.folder)
            message = "the rules could not be read (an internal error, logged); nothing changed"
            problem = Problem(str(self.folder), 1, 1, message)
            return _Read("rejected", seen, "", (), (problem,))

    @staticmethod
    def _names(files: Sequence[str]) -> tuple[str, ...]:
        """Files by their names within the rules folder, as `GET /v1/rules` names them: the
        service does not show where it keeps its folder."""
        return tuple(Path(f).name or f for f in files)

    # --- what the service shows -------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """For `GET /v1/rules`: when the live set was loaded, and the last rejected attempt
        while no good load has replaced it."""
        body: dict[str, Any] = {"loaded_at": self.loaded_at}
        rejected = self.last_rejected
        if rejected is not None:
            body["last_rejected"] = {
                "at": rejected.loaded_at,
                "trigger": rejected.trigger,
                "rule_set": rejected.rule_set,
                "digest": rejected.digest,
                "problems": rejected.problems,
            }
        return body

    def newest_first(self) -> list[Attempt]:
        return list(reversed(self.history))

    # --- watching and signals ---------------------------------------------------------------

    async def start(self) -> None:
        """On the service's startup: watch the folder (when asked) and reload on SIGHUP (where
        the platform and thread allow a signal handler)."""
        loop = asyncio.get_running_loop()
        self._lock = asyncio.Lock()
        if self.watch and self._watcher is None:
            self._watcher = loop.create_task(self._watch(), name="rules-watcher")
        sighup = getattr(signal, "SIGHUP", None)
        if sighup is not None:
            try:
                loop.add_signal_handler(sighup, self.on_signal)
            except (NotImplementedError, RuntimeError, ValueError) as exc:
                log.debug("rules: no SIGHUP reload here: %s", exc)
            else:
                self._signal_loop = loop

    async def stop(self) -> None:
        """On shutdown: stop watching, drop the signal handler, let go of pending reloads."""
        sighup = getattr(signal, "SIGHUP", None)
        if self._signal_loop is not None and sighup is not None:
            self._signal_loop.remove_signal_handler(sighup)
            self._signal_loop = None
        tasks = [*self._pending, *([self._watcher] if self._watcher is not None else [])]
        self._watcher = None
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._pending.clear()
        self._lock = None

    def on_signal(self) -> None:
        """SIGHUP: reload in a task (a signal handler must not wait)."""
        self.schedule("signal")

    def schedule(self, trigger: Trigger) -> asyncio.Task[Attempt]:
        """Start a reload without waiting for it; a reference is kept until it is done."""
        task = asyncio.get_running_loop().create_task(self.reload(trigger))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return task

    async def _watch(self) -> None:
        """Look at the folder every `poll_interval`; on a change, wait until it holds still
        for `debounce`, then reload. Never ends on an error: the next look tries again.

        A look (a listing and a `stat` per file, about 0.1 ms on a local disk) runs on the
        event loop itself. In a worker thread it made the loop wait for the interpreter lock at
        the hand-overs between the two threads: at half the service's maximum rate, the p99 of
        a cart was 2 to 5 ms with the look in a thread, about 1 ms without. A folder on a slow
        (network) file system would hold the loop instead: after `SLOW_LOOKS` looks in a row
        took more than `SLOW_LOOK`, the next ones are made in a thread, and the log says so."""
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                current = await self._look()
                if current == self._seen:
                    continue
                for _ in range(_SETTLE_ROUNDS):
                    await asyncio.sleep(self.debounce)
                    settled = await self._look()
                    if settled == current:
                        break
                    current = settled
                await self.reload("file")
            except Exception:
                log.exception("rules: watching %s failed; still watching", self.folder)

    async def _look(self) -> Fingerprint:
        """The folder's fingerprint: on the loop, or from a thread once `SLOW_LOOKS` looks in
        a row took more than `SLOW_LOOK` (one slow look can be the process, not the disk)."""
        if self._slow_looks >= SLOW_LOOKS:
            return await asyncio.to_thread(fingerprint, self.folder)
        started = time.perf_counter()
        try:
            return fingerprint(self.folder)
        finally:
            took = time.perf_counter() - started
            self._slow_looks = self._slow_looks + 1 if took > SLOW_LOOK else 0
            if self._slow_looks >= SLOW_LOOKS:
                log.warning(
                    "rules: looking at %s took %.0f ms, %d times in a row; looking from a "
                    "thread from now on (keep the rules folder on a local disk)",
                    self.folder,
                    took * 1000,
                    SLOW_LOOKS,
                )
