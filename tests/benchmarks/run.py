"""`make bench` / `make bench-quick`: run every benchmark module
(`bench_*.py` beside this file, each with `run(quick: bool) -> list[Figure]`),
print the table and write `bench-results.jsonl` (or `--out FILE`).

These are measurements, never pass/fail tests: a missed goal is printed,
not raised.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness import print_table, write_jsonl  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run of a few seconds each")
    parser.add_argument("--out", default="bench-results.jsonl", help="JSON lines output (appended)")
    parser.add_argument("only", nargs="*", help="run only these modules, e.g. expressions api")
    args = parser.parse_args(argv)

    modules = sorted(p.stem for p in HERE.glob("bench_*.py"))
    if args.only:
        modules = [m for m in modules if m.removeprefix("bench_") in args.only or m in args.only]
    Path(args.out).unlink(missing_ok=True)
    figures, failed = [], []
    for name in modules:
        print(f"== {name} ({'quick' if args.quick else 'full'})", flush=True)
        try:
            module_figures = importlib.import_module(name).run(quick=args.quick)
        except Exception:
            traceback.print_exc()
            failed.append(name)
            continue
        write_jsonl(module_figures, args.out)
        figures.extend(module_figures)
    print_table(figures)
    print(f"{len(figures)} figures written to {args.out}")
    if failed:
        print(f"benchmarks that crashed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
