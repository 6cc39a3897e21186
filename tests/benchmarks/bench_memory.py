"""Memory: resident memory of one Loom process after BENCH_PUBLISHES
(default 1,000; 30 quick) publishes of metadata changes, each followed by
API reads that build the new version's tables and models, against its
resident memory after the first few publishes (the warm-up). Runs in a
process of its own (`memory_probe.py`) so the runner's memory stays out.
Goal: growth under 10% (ratio = before / after >= 1/1.1)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from harness import Figure

HERE = Path(__file__).resolve().parent


def run(quick: bool = False) -> list[Figure]:
    publishes = int(os.environ.get("BENCH_PUBLISHES", 30 if quick else 1000))
    with tempfile.TemporaryDirectory(prefix="loom-bench-memory-") as tmp:
        result = subprocess.run([sys.executable, str(HERE / "memory_probe.py"), tmp, str(publishes)],
                                capture_output=True, text=True, timeout=3600)
    if result.returncode != 0:
        raise RuntimeError(f"memory_probe failed:\n{result.stderr[-3000:]}")
    data = json.loads(result.stdout.strip().splitlines()[-1])
    return [Figure.from_costs(f"memory_after_{publishes}_publishes", round(data["after_mb"], 1), round(data["warm_mb"], 1), "MB RSS",
                              1 / 1.1, f"{data['warm_at']} publishes warm-up; {data['seconds']:.0f} s; "
                                       f"peak {data['peak_mb']:.1f} MB")]
