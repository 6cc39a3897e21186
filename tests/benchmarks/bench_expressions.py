"""Benchmark: Loom's expression evaluation against native Python `eval` of a
cached code object and stock asteval with a pre-parsed tree, over five
typical rule shapes, in one run. Prints ratios; not a timed test.

    .venv/bin/python -m tests.benchmarks.bench_expressions [--out FILE] [--quick]

Writes JSON lines {"name", "loom", "baseline", "unit", "ratio", "goal", "met"}
(ratio = baseline cost / Loom cost) to bench-results.jsonl or --out FILE.
"""

from __future__ import annotations

import argparse
import json
import statistics
import timeit
from datetime import date
from decimal import Decimal

import asteval

from loomcrm.metadata.expressions import Scope
from loomcrm.runtime.expressions import EvalContext, compile_expression
from loomcrm.runtime.expressions.library import FUNCTIONS

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


def _per_call(fn, repeat: int, number: int) -> float:
    return min(timeit.repeat(fn, repeat=repeat, number=number)) / number * 1e6


def run(quick: bool = False) -> list[dict]:
    number, repeat = (200, 2) if quick else (20000, 5)
    ctx = EvalContext(timezone="UTC")
    bare = _Bare(ctx)
    # Native and stock asteval call the same library, bound to a context, so
    # only the evaluation machinery differs.
    library = {name: (lambda f: (lambda *a: f(bare, *a)))(fn) for name, fn in FUNCTIONS.items()}
    scope = Scope(objects={}, object_name="", extra_names=TYPES)
    results = []
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
        loom = _per_call(lambda: compiled.evaluate(RECORD, context=ctx), repeat, number)
        native = _per_call(lambda: eval(code, namespace, RECORD), repeat, number)
        asteval_us = _per_call(lambda: stock.run(tree), repeat, number)
        results.append({"name": f"expr_{name}_vs_native", "loom": round(loom, 3), "baseline": round(native, 3), "unit": "us",
                        "ratio": round(native / loom, 4), "goal": round(GOAL, 4), "met": native / loom >= GOAL})
        results.append({"name": f"expr_{name}_vs_stock_asteval", "loom": round(loom, 3), "baseline": round(asteval_us, 3),
                        "unit": "us", "ratio": round(asteval_us / loom, 4), "goal": None, "met": None})
    natives = [r for r in results if r["name"].endswith("_vs_native")]
    median = statistics.median(r["ratio"] for r in natives)
    results.append({"name": "expr_median_vs_native", "loom": statistics.median(r["loom"] for r in natives),
                    "baseline": statistics.median(r["baseline"] for r in natives), "unit": "us",
                    "ratio": round(median, 4), "goal": round(GOAL, 4), "met": median >= GOAL})
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench-results.jsonl")
    parser.add_argument("--quick", action="store_true", help="few iterations (a smoke run)")
    args = parser.parse_args(argv)
    results = run(args.quick)
    with open(args.out, "a", encoding="utf-8") as out:
        for r in results:
            out.write(json.dumps(r) + "\n")
    for r in results:
        times = f"{r['loom']:.2f} us vs {r['baseline']:.2f} us"
        slower = (f"Loom = {1 / r['ratio']:.1f}x native" if "native" in r["name"]
                  else f"Loom {r['ratio']:.1f}x faster than stock asteval")
        goal = "" if r["goal"] is None else f"  goal <= 15x: {'met' if r['met'] else 'NOT met'}"
        print(f"{r['name']:<36} {times:<26} {slower}{goal}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
