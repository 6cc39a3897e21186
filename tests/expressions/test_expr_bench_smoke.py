"""Smoke run of the expression benchmark: it runs and writes its JSON
lines. Not a timed test: no figure is asserted."""

import importlib.util
import json
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_expressions.py"


def test_benchmark_smoke(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_expressions", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "bench.jsonl"
    assert bench.main(["--quick", "--out", str(out)]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 11
    assert all(set(line) == {"name", "loom", "baseline", "unit", "ratio", "goal", "met"} for line in lines)
    # ratio is the baseline's cost over Loom's: higher is better for Loom.
    for line in lines:
        assert line["ratio"] == round(line["baseline"] / line["loom"], 4) and isinstance(line["met"], bool)
        assert line["met"] == (line["ratio"] >= line["goal"]) or abs(line["ratio"] - line["goal"]) < 1e-3
