"""A simulator of the four upstream inventory APIs the engine reads, served over real HTTP.

Each API is served exactly as its documentation describes it (paths, parameters, headers,
payloads and error shapes), from a data file, with switches for the ways upstreams fail and
counters of what was asked. The demo runs against it, and the adapters' tests exercise the same
HTTP path as production, on 127.0.0.1.
"""

from __future__ import annotations

from engine.simulator.data import APIS, Api, UpstreamData, UpstreamFileError, load_upstream
from engine.simulator.faults import ApiCounters, Fault
from engine.simulator.server import DEFAULT_DATA, DEFAULT_PORT, Simulator, main, run

__all__ = (
    "APIS",
    "DEFAULT_DATA",
    "DEFAULT_PORT",
    "Api",
    "ApiCounters",
    "Fault",
    "Simulator",
    "UpstreamData",
    "UpstreamFileError",
    "load_upstream",
    "main",
    "run",
)
