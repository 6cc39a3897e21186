"""The cost of the rules in the save path: saving opportunities through the
record service with 10 validation rules, 3 formulas and 1 rollup, against
the same objects (same tables) saved with the rules hooks switched off, in
one run, alternating (see `harness.paired`). Goal: rules cost at most 15 %
(ratio >= 0.85). A second figure, the same rules and formulas without the
account's rollup against a baseline of its own, shows what keeping the
parent's sum costs. On SQLite, and on PostgreSQL too when it is reachable
(not with --quick). Not a timed test.

    .venv/bin/python tests/benchmarks/run.py rules [--quick]
    .venv/bin/python tests/benchmarks/bench_rules.py [--quick]
"""

from __future__ import annotations

import contextlib
import itertools
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import database, postgres_available  # noqa: E402
from harness import Figure, paired, print_table  # noqa: E402

BUNDLE = {
    "manifest": {"format": "loom/1", "name": "bench", "version": "1.0.0"},
    "objects": [
        {"name": "acct", "fields": [
            {"name": "name", "type": "text", "required": True},
            {"name": "pipeline", "type": "rollup", "from": "opp", "via": "acct", "function": "sum", "field": "amount",
             "filter": "stage_category(stage) == 'open'"}]},
        {"name": "opp", "fields": [
            {"name": "name", "type": "text", "required": True},
            {"name": "acct", "type": "lookup", "to": "acct", "required": True},
            {"name": "stage", "type": "stage", "stages": [
                {"value": "new", "probability": 10}, {"value": "qualified", "probability": 40},
                {"value": "won", "category": "won", "probability": 100},
                {"value": "lost", "category": "lost", "probability": 0}]},
            {"name": "amount", "type": "currency"},
            {"name": "discount", "type": "percent"},
            {"name": "budget", "type": "currency"},
            {"name": "close_date", "type": "date"},
            {"name": "source", "type": "picklist", "options": [{"value": "web"}, {"value": "fair"}, {"value": "referral"}]},
            {"name": "notes", "type": "text"},
            {"name": "net_amount", "type": "formula", "expression": "round(coalesce(amount, 0) * (100 - coalesce(discount, 0)) / 100, 2)",
             "returns": "currency", "scale": 2},
            {"name": "expected", "type": "formula", "expression": "round(coalesce(amount, 0) * stage_probability(stage) / 100, 2)",
             "returns": "currency", "scale": 2},
            {"name": "label", "type": "formula", "expression": "concat(upper(coalesce(source, 'n/a')), ': ', name)", "returns": "text"}],
         "validation_rules": [
             {"name": "amount_positive", "check": "is_blank(amount) or amount > 0", "message": "amount"},
             {"name": "discount_range", "check": "is_blank(discount) or (discount >= 0 and discount <= 30)", "message": "discount"},
             {"name": "budget_positive", "check": "is_blank(budget) or budget >= 0", "message": "budget"},
             {"name": "within_budget", "check": "amount <= budget * 2", "when": "not is_blank(amount) and not is_blank(budget)",
              "message": "budget"},
             {"name": "close_in_range", "check": "year(close_date) >= 2020 and year(close_date) <= 2100",
              "when": "not is_blank(close_date)", "message": "close"},
             {"name": "name_length", "check": "len(trim(name)) >= 2", "message": "name"},
             {"name": "notes_length", "check": "len(notes) <= 200", "message": "notes"},
             {"name": "won_has_amount", "check": "not is_blank(amount)", "when": "stage == 'won'", "message": "won"},
             {"name": "referral_note", "check": "not is_blank(notes)", "when": "source == 'referral'", "message": "referral"},
             {"name": "discount_when_changed", "check": "discount <= 20 or has_role('admin')",
              "when": "is_changed(discount) and not is_blank(discount)", "message": "discount"}]},
    ],
}

ACCOUNTS = 100


def _without_rollup(bundle: dict) -> dict:
    acct, opp = bundle["objects"]
    return {**bundle, "objects": [{**acct, "fields": [f for f in acct["fields"] if f["type"] != "rollup"]}, opp]}


def _setup(url: str, rules: bool, bundle: dict = BUNDLE):
    from loomcrm.platform import systemdb
    from loomcrm.platform.db import create_engine
    from loomcrm.runtime.install import bundle_from_json, install_bundle
    from loomcrm.runtime.records import Actor, RuleHooks
    from loomcrm.runtime.rules.hooks import Rules
    from loomcrm.runtime.state import Runtime

    engine = create_engine(url)
    systemdb.upgrade(engine)
    install_bundle(engine, bundle_from_json(json.loads(json.dumps(bundle))))
    runtime = Runtime(engine, refresh_interval=3600, hooks=Rules() if rules else RuleHooks())
    user = Actor(id=None, role="user")
    accounts = [runtime.records.create("acct", {"name": f"Account {i}"}, user)["id"] for i in range(ACCOUNTS)]
    counter = itertools.count()

    def save_batch(n: int):
        def go():
            for _ in range(n):
                i = next(counter)
                runtime.records.create("opp", {
                    "name": f"Deal {i}", "acct": accounts[i % ACCOUNTS], "stage": ("new", "qualified")[i % 2],
                    "amount": 1000 + i % 5000, "discount": i % 20, "budget": 5000 + i % 3000,
                    "close_date": "2027-06-30", "source": ("web", "fair", "referral")[i % 3], "notes": "follow up"}, user)
        return go

    save_batch(50)()   # not measured: the first save of a version compiles its rules
    return engine, save_batch


def run(quick: bool) -> list:
    total = 1_000 if quick else 10_000
    # many short alternating rounds: on a shared machine a burst of other
    # work then spoils a few rounds, not the median
    repeat = 5 if quick else 20
    per_round = total // repeat
    kinds = ["sqlite"] + (["postgresql"] if not quick and postgres_available() else [])
    figures = []
    for kind in kinds:
        label = "SQLite" if kind == "sqlite" else "PostgreSQL"
        with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
            # each figure against a baseline database of its own: both sides of
            # a pair hold as many rows when they are measured
            urls = [stack.enter_context(database(kind, Path(tmp), name)) for name in ("rules", "plain", "no_rollup", "plain2")]
            loom_engine, loom = _setup(urls[0], True)
            base_engine, base = _setup(urls[1], False)
            lean_engine, lean = _setup(urls[2], True, _without_rollup(BUNDLE))
            base2_engine, base2 = _setup(urls[3], False)
            try:
                result = paired(loom(per_round), base(per_round), repeat=repeat, warmup=0)
                without = paired(lean(per_round), base2(per_round), repeat=repeat, warmup=0)
            finally:
                for engine in (loom_engine, base_engine, lean_engine, base2_engine):
                    engine.dispose()
        figures += [
            Figure.from_costs(f"save opportunity: 10 rules, 3 formulas, 1 rollup vs none ({total:,} saves, {label})",
                              result.loom_median / per_round * 1000, result.baseline_median / per_round * 1000,
                              "ms/save", 0.85, result.spread),
            Figure.from_costs(f"save opportunity: the same without the rollup vs none ({total:,} saves, {label})",
                              without.loom_median / per_round * 1000, without.baseline_median / per_round * 1000,
                              "ms/save", 0.85, without.spread)]
    return figures


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print_table(run(args.quick))
