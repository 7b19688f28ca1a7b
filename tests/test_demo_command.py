"""`make run` is `python -m engine demo`: the simulator and the service, started and stopped as
a new user would, as real processes on 127.0.0.1."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from benchmarks.load import free_port_block
from tests.helpers import ROOT


def wait_for(url: str, process: subprocess.Popen[bytes], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, "the demo exited early"
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer")


def post(url: str, body: bytes) -> dict[str, object]:
    request = urllib.request.Request(
        url,
        data=body,
        headers={"content-type": "application/json", "authorization": "Bearer demo-checkout-key"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def port_is_closed(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_the_demo_serves_the_readme_carts_over_the_simulator_and_stops_cleanly():
    sim_port = free_port_block(6)  # the simulator's five, then the service's
    port = sim_port + 5
    command = [sys.executable, "-m", "engine", "demo", "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--simulator-port", str(sim_port), "--log-level", "warning"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(f"{base}/health", process)
        split = post(f"{base}/v1/allocations", (ROOT / "demo/carts/split.json").read_bytes())
        assert split["lines"][0]["allocations"] == [  # type: ignore[index]
            {"location_id": "dub-dc", "quantity": 5},
            {"location_id": "ams-dc", "quantity": 3},
        ]
        assert split["freshness"]["stale"] is False  # type: ignore[index]
        with urllib.request.urlopen(f"http://127.0.0.1:{sim_port}/counters", timeout=5) as r:
            assert json.loads(r.read())["dr-levels"]["total"] == 1
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=20)[0].decode()
    assert "Serving rule set" in output
    # The simulator went with the service: none of its ports is still listening.
    assert all(port_is_closed(p) for p in range(sim_port, sim_port + 5)), output
