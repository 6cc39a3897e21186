"""Smoke run of the expression benchmark: it runs and writes its JSON
lines. Not a timed test: no figure is asserted."""

import json

from tests.benchmarks import bench_expressions


def test_benchmark_smoke(tmp_path):
    out = tmp_path / "bench.jsonl"
    assert bench_expressions.main(["--quick", "--out", str(out)]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 11
    assert all(set(line) == {"name", "loom", "baseline", "unit", "ratio", "goal", "met"} for line in lines)
