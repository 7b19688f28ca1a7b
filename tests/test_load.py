"""The load test (`python -m benchmarks.load`) in its quickest mode, with its own generator (wrk
may be missing): both endpoints measured without errors, and every process it started gone
afterwards, whether it finished, failed or was interrupted."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.load import alive, engine_cost
from tests.helpers import ROOT

COMMAND = [sys.executable, "-m", "benchmarks.load", "--quick", "--generator", "asyncio"]
STARTED = re.compile(r"started (\w+) \(pid (\d+)\): .* --port (\d+)")


def started(output: str) -> dict[str, tuple[int, int]]:
    """name -> (pid, port) of each process the run says it started."""
    return {m[1]: (int(m[2]), int(m[3])) for m in STARTED.finditer(output)}


def gone(pids: list[int], seconds: float = 5) -> bool:
    deadline = time.monotonic() + seconds
    while any(alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def closed(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_a_quick_run_measures_both_endpoints_and_stops_everything(tmp_path: Path):
    out = tmp_path / "load.json"
    run = subprocess.run(
        [*COMMAND, "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads(out.read_text())

    closed_runs = result["max_rate"]["runs"]
    fixed_runs = result["fixed_rate"]
    assert [r["endpoint"] for r in closed_runs] == ["null", "engine", "null", "engine"]
    assert {r["endpoint"] for r in fixed_runs} == {"null", "engine"}
    for r in closed_runs + fixed_runs:
        assert r["tool"] == "asyncio"
        assert r["errors"] == {}, r
        assert r["ok"] > 0
        assert r["rate"] > 0
        latency = [r["latency_ms"][k] for k in ("p50", "p90", "p99", "p99.9", "max")]
        assert 0 < latency[0] <= latency[1] <= latency[2] <= latency[3] <= latency[4], r
    for r in fixed_runs:
        assert r["ok"] == r["sent"]  # every request due was answered
    assert result["max_rate"]["null"] > 0
    assert result["max_rate"]["engine"] > 0
    assert result["max_rate"]["ratio"] > 0
    assert result["max_rate"]["engine_cost_us"] == (
        result["max_rate"]["engine_us_per_request"] - result["max_rate"]["null_us_per_request"]
    )
    assert "the engine's own" in run.stdout
    assert result["answer_bytes"] > 500  # the null endpoint answers the engine's answer
    assert "Maximum rate" in run.stdout
    assert "Fixed rate" in run.stdout
    # /metrics moved with the load: every answer the generator saw was counted, and a decision
    # with it (a run may end with answers the server counted and the generator did not read).
    counted = result["metrics"]
    assert counted["answered"] == sum(
        r["ok"] for r in closed_runs + fixed_runs if r["endpoint"] == "engine"
    )
    assert 0 <= counted["requests"] - counted["answered"] <= counted["in_flight_allowance"]
    assert counted["decisions"] == counted["requests"]
    assert "(consistent:" in run.stdout

    processes = result["processes"]
    assert len(processes) >= 3  # the simulator, the engine and the null app at least
    assert gone(processes)
    assert all(closed(port) for _, port in started(run.stdout).values())


def test_an_interrupted_run_stops_everything_it_started():
    process = subprocess.Popen(
        COMMAND, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: list[str] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if line.startswith("Phase 1"):
                break
        process.send_signal(signal.SIGINT)  # Ctrl-C
        rest = process.communicate(timeout=30)[0]
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    output = "".join(lines) + rest
    assert process.returncode == 130, output
    assert "interrupted" in output
    children = started(output)
    assert set(children) == {"simulator", "engine", "null"}, output
    assert gone([pid for pid, _ in children.values()]), output
    assert all(closed(port) for _, port in children.values())


def test_a_failed_run_stops_everything_it_started(tmp_path: Path):
    cart = tmp_path / "bad-cart.json"
    cart.write_text('{"country": "FR", "lines": []}')  # refused by the engine: no lines
    run = subprocess.run(
        [*COMMAND, "--cart", str(cart)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 1, run.stdout + run.stderr
    assert "load test failed" in run.stderr
    children = started(run.stdout)
    assert {"simulator", "engine"} <= set(children), run.stdout
    assert gone([pid for pid, _ in children.values()])
    assert all(closed(port) for _, port in children.values())


def test_the_engines_own_time_is_its_time_per_request_less_the_nulls():
    # 4,000/s is 250 µs a request, 2,000/s 500 µs; at 0.80 of 4,000/s (3,200/s, 312.5 µs)
    # the engine would have 62.5 µs of its own.
    assert engine_cost(4000.0, 2000.0) == {
        "null_us_per_request": 250.0,
        "engine_us_per_request": 500.0,
        "engine_cost_us": 250.0,
        "engine_budget_us": 62.5,
    }
    # Two workers, both busy at the maximum rate: each request held one for 2 / rate.
    assert engine_cost(4000.0, 2000.0, workers=2)["engine_cost_us"] == 500.0
