"""`benchmarks.compare`: regressions fail, a slower machine does not, renames are noticed, and the
scaling targets are checked. Small synthetic pytest-benchmark results; nothing is timed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks.compare import (
    CALIBRATION,
    CALLS_PER_ROUND,
    STATISTIC,
    THRESHOLD,
    decide_name,
    main,
    read_baseline,
    read_run,
    scaling_checks,
)

US = 1e-6

# Name -> µs: a calibration and a decide grid that meets every scaling target.
TIMES: dict[str, float] = {
    CALIBRATION: 70.0,
    decide_name(1, 10, 100): 12.0,
    decide_name(5, 10, 100): 40.0,
    decide_name(20, 10, 100): 250.0,
    decide_name(100, 10, 100): 780.0,
    decide_name(5, 5, 100): 30.0,
    decide_name(5, 20, 100): 55.0,
    decide_name(5, 100, 100): 28.0,
    decide_name(5, 10, 10): 40.0,
    decide_name(5, 10, 1000): 48.0,
    "decode cart[5 lines]": 8.0,
}


def result(times: dict[str, float], extra: dict[str, dict[str, Any]] | None = None) -> dict:
    """A pytest-benchmark JSON result with these times (µs) as every statistic."""
    benchmarks = []
    for name, us in times.items():
        stats = dict.fromkeys(("min", "max", "mean", "median"), us * US)
        benchmarks.append(
            {
                "group": "calibration" if name == CALIBRATION else "g",
                "name": name,
                "fullname": f"benchmarks/test_x.py::{name}",
                "stats": {**stats, "stddev": 0.0, "rounds": 5, "iterations": 1},
                "extra_info": (extra or {}).get(name, {}),
            }
        )
    return {
        "machine_info": {
            "python_implementation": "CPython",
            "python_version": "3.11.7",
            "system": "Linux",
            "cpu": {"brand_raw": "Test CPU", "count": 2},
        },
        "datetime": "2026-11-22T12:00:00+00:00",
        "benchmarks": benchmarks,
    }


def write(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.fixture
def baseline(tmp_path: Path) -> Path:
    path = tmp_path / "baseline.json"
    assert (
        main(
            [str(write(tmp_path / "base.json", result(TIMES))), "--baseline", str(path), "--update"]
        )
        == 0
    )
    return path


def run_against(tmp_path: Path, baseline: Path, times: dict[str, float]) -> int:
    return main([str(write(tmp_path / "run.json", result(times))), "--baseline", str(baseline)])


def test_identical_results_pass(tmp_path, baseline, capsys):
    assert run_against(tmp_path, baseline, TIMES) == 0
    out = capsys.readouterr().out
    assert "SLOWER" not in out
    assert "FAILED" not in out


def test_one_benchmark_three_times_slower_fails(tmp_path, baseline, capsys):
    name = decide_name(5, 10, 1000)
    slower = {**TIMES, "decode cart[5 lines]": TIMES["decode cart[5 lines]"] * 3}
    assert run_against(tmp_path, baseline, slower) == 1
    lines = capsys.readouterr().out.splitlines()
    [row] = [line for line in lines if line.startswith("decode cart[5 lines]")]
    assert "SLOWER" in row
    assert "3.00" in row
    assert not any("SLOWER" in line for line in lines if line.startswith(name))


def test_slowdown_just_under_the_threshold_passes(tmp_path, baseline):
    slower = {**TIMES, "decode cart[5 lines]": TIMES["decode cart[5 lines]"] * THRESHOLD * 0.98}
    assert run_against(tmp_path, baseline, slower) == 0


def test_a_uniformly_slower_machine_passes(tmp_path, baseline, capsys):
    assert run_against(tmp_path, baseline, {n: t * 2 for n, t in TIMES.items()}) == 0
    assert "SLOWER" not in capsys.readouterr().out


def test_a_slower_machine_does_not_hide_a_regression(tmp_path, baseline):
    times = {name: us * 2 for name, us in TIMES.items()}
    times["decode cart[5 lines]"] *= 3
    assert run_against(tmp_path, baseline, times) == 1


def test_a_benchmark_missing_from_the_run_fails_with_a_hint(tmp_path, baseline, capsys):
    renamed = {
        ("decode cart[5 lines, strict]" if n == "decode cart[5 lines]" else n): t
        for n, t in TIMES.items()
    }
    assert run_against(tmp_path, baseline, renamed) == 1
    out = capsys.readouterr().out
    [missing] = [line for line in out.splitlines() if line.startswith("decode cart[5 lines] ")]
    assert "MISSING" in missing
    assert "--update" in missing
    [new] = [line for line in out.splitlines() if line.startswith("decode cart[5 lines, strict]")]
    assert "new" in new


def test_a_new_benchmark_is_reported_not_failed(tmp_path, baseline, capsys):
    assert run_against(tmp_path, baseline, {**TIMES, "encode decision[5 lines]": 6.0}) == 0
    [row] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("encode")]
    assert "new" in row


def test_a_run_without_calibration_is_refused(tmp_path, baseline, capsys):
    times = {n: t for n, t in TIMES.items() if n != CALIBRATION}
    assert run_against(tmp_path, baseline, times) == 2
    assert CALIBRATION in capsys.readouterr().err


def test_another_python_is_noted(tmp_path, baseline, capsys):
    data = result(TIMES)
    data["machine_info"]["python_version"] = "3.13.1"
    assert main([str(write(tmp_path / "run.json", data)), "--baseline", str(baseline)]) == 0
    assert "recorded with CPython 3.11.7, this run is CPython 3.13.1" in capsys.readouterr().out


def test_update_writes_a_readable_baseline(tmp_path, baseline):
    costs, data = read_baseline(baseline)
    assert data["statistic"] == STATISTIC
    assert data["machine"]["cpu"] == "Test CPU"
    assert data["calibration_us"] == 70.0
    assert costs[CALIBRATION] == 1.0
    assert costs[decide_name(5, 10, 100)] == pytest.approx(40 / 70, rel=1e-3)
    assert json.loads(baseline.read_text())["benchmarks"]["decode cart[5 lines]"]["us"] == 8.0
    # One line per benchmark: a re-recorded baseline reads as a short diff.
    assert sum('"cost"' in line for line in baseline.read_text().splitlines()) == len(TIMES)


def test_best_of_several_runs_is_compared(tmp_path, baseline):
    """Noise only slows a run down: each benchmark's best over the runs given is used."""
    noisy = {**TIMES, "decode cart[5 lines]": TIMES["decode cart[5 lines]"] * 3}
    first = write(tmp_path / "first.json", result(noisy))
    second = write(tmp_path / "second.json", result(TIMES))
    assert main([str(first), "--baseline", str(baseline)]) == 1
    assert main([str(first), str(second), "--baseline", str(baseline)]) == 0
    assert main([str(second), str(first), "--baseline", str(baseline)]) == 0


def test_calls_per_round_reads_per_call(tmp_path):
    extra = {"gather x100[5 lines]": {CALLS_PER_ROUND: 100}}
    times = {CALIBRATION: 70.0, "gather x100[5 lines]": 30_000.0}
    run = read_run([write(tmp_path / "run.json", result(times, extra))])
    assert run.times["gather x100[5 lines]"] == pytest.approx(300.0)


def test_scaling_targets_pass_on_linear_data(tmp_path):
    run = read_run([write(tmp_path / "run.json", result(TIMES))])
    checks = scaling_checks(run)
    assert len(checks) == 3
    assert not any(check.failed for check in checks)
    assert all(check.value is not None for check in checks)


@pytest.mark.parametrize(
    ("name", "us", "check"),
    [
        # Rules scanned per cart: 1,000 rules cost 3x 10 rules.
        (decide_name(5, 10, 1000), 120.0, "1000 rules / 10 rules"),
        # Quadratic in lines: 20x the lines at 40x the cost (2x per line).
        (decide_name(100, 10, 100), 1600.0, "100 lines"),
        # Quadratic in locations: 10x the locations at 20x the cost.
        (decide_name(5, 100, 100), 800.0, "100 locations"),
    ],
)
def test_scaling_targets_fail_when_violated(tmp_path, capsys, name, us, check):
    run = read_run([write(tmp_path / "run.json", result({**TIMES, name: us}))])
    [failed] = [c for c in scaling_checks(run) if c.failed]
    assert check in failed.name
    # The same data through the command: exit 1, even with the run as its own baseline.
    path = tmp_path / "baseline.json"
    data = write(tmp_path / "violating.json", result({**TIMES, name: us}))
    assert main([str(data), "--baseline", str(path), "--update"]) == 1
    assert main([str(data), "--baseline", str(path)]) == 1
    assert "FAILED" in capsys.readouterr().out


def test_a_scaling_target_lacking_its_benchmarks_is_skipped(tmp_path):
    times = {n: t for n, t in TIMES.items() if n != decide_name(5, 10, 1000)}
    run = read_run([write(tmp_path / "run.json", result(times))])
    [rules] = [c for c in scaling_checks(run) if "rules" in c.name]
    assert rules.value is None
    assert not rules.failed
