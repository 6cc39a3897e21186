"""What every benchmark shares: Loom and its baseline measured in the same
run, alternating, several repetitions; figures with their ratio and goal.

`ratio` is always "higher is better for Loom": the baseline's cost divided
by Loom's (time per operation), or Loom's throughput divided by the
baseline's. `goal` is the lowest acceptable ratio. Figures are printed as a
table and appended as JSON lines to the output file.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable


@dataclass
class Figure:
    name: str
    loom: float
    baseline: float
    unit: str
    ratio: float
    goal: float
    met: bool
    spread: str = ""  # (max - min) / median of each side, over the repetitions

    @classmethod
    def from_costs(cls, name: str, loom: float, baseline: float, unit: str, goal: float, spread: str = "") -> "Figure":
        """Costs (time per operation, bytes, ...): lower is better."""
        ratio = baseline / loom if loom else float("inf")
        return cls(name, loom, baseline, unit, round(ratio, 4), round(goal, 4), ratio >= goal, spread)

    @classmethod
    def from_rates(cls, name: str, loom: float, baseline: float, unit: str, goal: float, spread: str = "") -> "Figure":
        """Throughputs (operations per second): higher is better."""
        ratio = loom / baseline if baseline else float("inf")
        return cls(name, loom, baseline, unit, round(ratio, 4), round(goal, 4), ratio >= goal, spread)

    def as_json(self) -> dict:
        data = asdict(self)
        data.pop("spread")
        return data


@dataclass
class Paired:
    loom: list[float]
    baseline: list[float]

    @property
    def loom_median(self) -> float:
        return statistics.median(self.loom)

    @property
    def baseline_median(self) -> float:
        return statistics.median(self.baseline)

    @property
    def spread(self) -> str:
        def rel(values):
            median = statistics.median(values)
            return (max(values) - min(values)) / median if median else 0.0
        return f"±{rel(self.loom) * 50:.0f}% / ±{rel(self.baseline) * 50:.0f}%"


def paired(loom: Callable[[], object], baseline: Callable[[], object], *, repeat: int = 7, number: int = 1,
           warmup: int = 1) -> Paired:
    """Seconds per call of each side, `repeat` times, alternating which side
    goes first so that neither always runs on a warmer machine."""
    for _ in range(warmup):
        loom()
        baseline()
    result = Paired([], [])
    for round_ in range(repeat):
        order = [("loom", loom), ("baseline", baseline)]
        if round_ % 2:
            order.reverse()
        for side, fn in order:
            start = time.perf_counter()
            for _ in range(number):
                fn()
            getattr(result, side).append((time.perf_counter() - start) / number)
    return result


def print_table(figures: list[Figure]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Loom vs baseline (ratio > 1: Loom is better; goal: lowest acceptable ratio)")
    for column in ("figure", "loom", "baseline", "unit", "ratio", "goal", "met", "spread"):
        table.add_column(column, justify="left" if column in ("figure", "unit") else "right")
    for f in figures:
        table.add_row(f.name, f"{f.loom:.4g}", f"{f.baseline:.4g}", f.unit, f"{f.ratio:.3g}", f"{f.goal:.3g}",
                      "[green]yes[/green]" if f.met else "[red]no[/red]", f.spread)
    import sys

    Console(width=None if sys.stdout.isatty() else 220).print(table)


def write_jsonl(figures: list[Figure], path: str) -> None:
    with open(path, "a", encoding="utf-8") as out:
        for f in figures:
            out.write(json.dumps(f.as_json(), ensure_ascii=False) + "\n")


def p95(values: list[float]) -> float:
    values = sorted(values)
    return values[max(0, int(len(values) * 0.95) - 1)]


def alternate(ours: Callable, theirs: Callable, rounds: int, block: int) -> tuple[list[float], list[float]]:
    """Milliseconds per call of each side, in blocks of `block` calls taken
    in turn, the side going first swapping every round."""
    times: dict[str, list[float]] = {"ours": [], "theirs": []}
    for r in range(rounds):
        order = [("ours", ours), ("theirs", theirs)] if r % 2 == 0 else [("theirs", theirs), ("ours", ours)]
        for side, fn in order:
            for _ in range(block):
                start = time.perf_counter()
                fn()
                times[side].append((time.perf_counter() - start) * 1000)
    return times["ours"], times["theirs"]


def p95_figure(name: str, goal: float, ours: list[float], theirs: list[float], note: str = "") -> Figure:
    """Loom's p95 against the baseline's, with both medians."""
    return Figure.from_costs(name, round(p95(ours), 3), round(p95(theirs), 3), "ms p95", goal,
                             f"median {statistics.median(ours):.2f} / {statistics.median(theirs):.2f} ms{note}")
