"""The side-by-side report's "together" lines: the figures issue 13's target is read from."""

from __future__ import annotations

import pytest

from benchmarks.run import ORIGINAL, SIDES, together


def _rows(side: str, rep: int, add: float, process: float) -> list[dict]:
    return [
        {"workload": "A-add", "side": side, "rep": rep, "proxy_cpu_ms_per_job": add},
        {"workload": "B-process", "side": side, "rep": rep, "proxy_cpu_ms_per_job": process},
    ]


# Repetition 0 of both systems, complete.
FIRST = [*_rows("proxy", 0, 0.2, 0.3), *_rows(SIDES[ORIGINAL], 0, 0.1, 0.2)]


def test_each_repetition_and_the_pool_of_them(capsys: pytest.CaptureFixture[str]) -> None:
    together([*FIRST, *_rows("proxy", 1, 0.1, 0.2), *_rows(SIDES[ORIGINAL], 1, 0.1, 0.1)])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("together (rep 0) proxy")
    assert "0.500 ms/job = 1.67x the original's 0.300 (add 2.00x, process 1.50x)" in lines[0]
    assert "0.300 ms/job = 1.50x the original's 0.200 (add 1.00x, process 2.00x)" in lines[1]
    # Pooled: sums of each phase over both repetitions, not a mean of the ratios.
    assert lines[2].startswith("together (pooled, 2 reps) proxy")
    assert "0.800 ms/job = 1.60x the original's 0.500 (add 1.50x, process 1.67x)" in lines[2]


def test_a_repetition_missing_a_phase_is_left_out(capsys: pytest.CaptureFixture[str]) -> None:
    # The original's process phase of repetition 1 did not run: no ratio can be made.
    together([*FIRST, *_rows("proxy", 1, 0.1, 0.2), _rows(SIDES[ORIGINAL], 1, 0.1, 0.1)[0]])
    lines = capsys.readouterr().out.splitlines()
    # One usable repetition: its line, and no pool of one.
    assert len(lines) == 1
    assert lines[0].startswith("together (rep 0) proxy")
