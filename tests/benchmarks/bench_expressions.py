"""Benchmark: Loom's expression evaluation against native Python `eval` of a
cached code object and stock asteval with a pre-parsed tree, over five
typical rule shapes, in one run: paired, alternating repetitions, median
and spread (see `harness.paired`). Prints ratios; not a timed test.

    .venv/bin/python tests/benchmarks/run.py expressions [--quick]
    .venv/bin/python tests/benchmarks/bench_expressions.py [--out FILE] [--quick]

Goal: Loom at most 15x native eval on the median shape (ratio >= 1/15).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path

import asteval

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Figure, paired, print_table, write_jsonl  # noqa: E402

from loomcrm.metadata.expressions import Scope  # noqa: E402
from loomcrm.runtime.expressions import EvalContext, compile_expression  # noqa: E402
from loomcrm.runtime.expressions.library import FUNCTIONS  # noqa: E402

GOAL = 1 / 15   # Loom at most 15x native eval on the median shape

RECORD = {"amount": Decimal("12500.00"), "stage": "Negotiation", "close_date": date(2031, 3, 1), "probability": Decimal("60"),
          "first_name": "Ada", "last_name": "Lovelace", "discount": Decimal("12.5"), "region": "EMEA", "email": "ada@example.com"}
TYPES = {"amount": "currency", "stage": "text", "close_date": "date", "probability": "percent", "first_name": "text",
         "last_name": "text", "discount": "percent", "region": "text", "email": "text"}
SHAPES = {
    "validation": "amount > 10000 and stage == 'Negotiation' and not is_blank(close_date)",
    "criterion": "close_date >= today() and discount <= 20",
    "formula": "amount * probability / 100",
    "text": "concat(first_name, ' ', upper(last_name))",
    "condition": "stage in ('Won', 'Lost') or (region == 'EMEA' and coalesce(discount, 0) > 10 and contains(email, '@'))",
}


class _Bare:
    """What the library functions need when called outside the evaluator."""

    def __init__(self, ctx: EvalContext):
        self.ctx, self.tz = ctx, ctx.tz

    def now(self):
        from datetime import datetime
        return datetime.now(self.tz)


def _loop(fn, inner: int):
    def run():
        for _ in range(inner):
            fn()
    return run


def _us(values: list[float], inner: int) -> list[float]:
    return [v / inner * 1e6 for v in values]


def run(quick: bool = False) -> list[Figure]:
    inner, repeat = (200, 3) if quick else (5000, 9)
    # The 10 ms budget is wall-clock time: on a busy machine a preempted
    # evaluation crosses it now and then, which would end the run. A wider
    # budget costs nothing here (the same checks run).
    ctx = EvalContext(timezone="UTC", budget_ms=1000.0)
    bare = _Bare(ctx)
    # Native and stock asteval call the same library, bound to a context, so
    # only the evaluation machinery differs.
    library = {name: (lambda f: (lambda *a: f(bare, *a)))(fn) for name, fn in FUNCTIONS.items()}
    scope = Scope(objects={}, object_name="", extra_names=TYPES)
    figures: list[Figure] = []
    native_ratios = []
    for name, source in SHAPES.items():
        compiled = compile_expression(source, scope)
        code = compile(source, "<expr>", "eval")
        namespace = {"__builtins__": {}, **library}
        stock = asteval.Interpreter(use_numpy=False, minimal=True)
        stock.symtable.update(library)
        stock.symtable.update(RECORD)
        tree = stock.parse(source)
        values = [compiled.evaluate(RECORD, context=ctx), eval(code, namespace, RECORD), stock.run(tree)]
        assert values[0] == values[1] == values[2], (name, values)
        loom = _loop(lambda: compiled.evaluate(RECORD, context=ctx), inner)
        vs_native = paired(loom, _loop(lambda: eval(code, namespace, RECORD), inner), repeat=repeat)
        vs_stock = paired(loom, _loop(lambda: stock.run(tree), inner), repeat=repeat)
        l_us, n_us = statistics.median(_us(vs_native.loom, inner)), statistics.median(_us(vs_native.baseline, inner))
        figure = Figure.from_costs(f"expr_{name}_vs_native", round(l_us, 3), round(n_us, 3), "us", GOAL, vs_native.spread)
        figures.append(figure)
        native_ratios.append(figure)
        ls_us, s_us = statistics.median(_us(vs_stock.loom, inner)), statistics.median(_us(vs_stock.baseline, inner))
        # Against stock asteval Loom should simply not be slower.
        figures.append(Figure.from_costs(f"expr_{name}_vs_stock_asteval", round(ls_us, 3), round(s_us, 3), "us", 1.0, vs_stock.spread))
    middle = sorted(native_ratios, key=lambda f: f.ratio)[len(native_ratios) // 2]
    figures.append(Figure.from_costs("expr_median_vs_native", middle.loom, middle.baseline, "us", GOAL,
                                     f"the median shape: {middle.name.removeprefix('expr_').removesuffix('_vs_native')}"))
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench-results.jsonl")
    parser.add_argument("--quick", action="store_true", help="few iterations (a smoke run)")
    args = parser.parse_args(argv)
    figures = run(args.quick)
    Path(args.out).unlink(missing_ok=True)
    write_jsonl(figures, args.out)
    print_table(figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
