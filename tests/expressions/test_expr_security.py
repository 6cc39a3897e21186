"""Hostile expressions: each is refused when compiled or stopped within its
budget, and the process carries on."""

from __future__ import annotations

import ast
import os
from datetime import date
from decimal import Decimal as D

import pytest

from loomcrm.metadata.expressions import ExpressionError
from loomcrm.runtime.expressions.adhoc import evaluate_with_vars
from loomcrm.runtime.expressions.interpreter import LoomInterpreter, prepare

from .helpers import ctx

REFUSED = {"syntax", "forbidden_syntax", "unknown_name", "unknown_function", "arity", "type_mismatch",
           "too_long", "too_deep", "value_too_large", "not_a_field"}
STOPPED = {"budget_exceeded", "value_too_large", "invalid_regex", "division_by_zero", "invalid_argument",
           "invalid_date", "invalid_number", "type_mismatch"}

HOSTILE = [
    # dunder walks
    "().__class__.__mro__[1].__subclasses__()", "().__class__", "''.__class__.__base__", "x.__class__",
    "[].__class__.__mro__", "(1).__class__.__bases__[0].__subclasses__()", "today.__globals__",
    "is_blank.__code__.co_consts", "concat.__module__", "now.__self__", "__builtins__", "__import__('os')",
    "__import__('os').system('id')", "_x", "a__b", "__class__", "x.__dict__", "len.__call__(x)",
    # format-string tricks
    "'{0.__class__}'.format(x)", "'{0.__init__.__globals__}'.format(is_blank)", "f'{x}'", "f'{x.__class__}'",
    "f'{x!r:{x}}'", "'%s' % x", "'%s%s' % (x, x)", "'%(a)s' % x", "'{}'.format", "format(x, '')",
    # growth
    "9**9**9", "'x'*10**9", "[0]*10**9", "1<<10**6", "'x' * 1000000000", "[0] * 1000000000", "x * 10**9",
    "2 ** 1000000", "10**10**10", "99999999999999999999999999 * 99999999999999999999999999 * 9999999999999999999999999 * 99999999999999999999999999 * 999999999999999999999999",
    "1" + "0" * 150, "1." + "0" * 120 + "1e999", "1e999999",
    # deep nesting and size
    "abs(" * 200 + "1" + ")" * 200, "(" * 300 + "1" + ")" * 300, "-" * 3000 + "1", "not " * 900 + "True",
    "x" * 4001, "+".join(["1"] * 2001), "[" * 100 + "]" * 100, "concat(" + ",".join(["'a'"] * 3000) + ")",
    # comprehensions, generators, lambdas, walrus
    "[x for x in range(10**9)]", "(x for x in range(10))", "{x: x for x in 'ab'}", "{x for x in 'ab'}",
    "[[0]*10**5 for _ in range(10**5)]", "lambda: 1", "(lambda f: f(f))(lambda f: f(f))", "(y := 1)",
    "[y := 1, y]", "min(*[1, 2])", "max(**{})", "concat(a=1)",
    # statements and builtins
    "raise SystemExit", "import os", "exec('1')", "eval('1')", "compile('1', '', 'eval')", "open('/etc/passwd')",
    "getattr(x, '__class__')", "type(x)", "type('X', (), {})", "id(x)", "hash(x)", "globals()", "locals()",
    "vars()", "dir()", "print(1)", "input()", "breakpoint()", "exit()", "quit()", "setattr(x, 'y', 1)",
    "del x", "x = 1", "def f(): pass", "with open('f') as f: pass", "try:\n pass\nexcept: pass", "assert False",
    "while True: pass", "for i in range(10): pass", "async def f(): pass", "await x", "yield 1",
    "x[0]", "x[0:10**9]", "{}.keys()", "{1, 2}", "b'bytes'", "1j", "...", "x if x else x.__class__",
    # full-width and other Unicode look-alikes of dunders
    "().\uff3f\uff3fclass\uff3f\uff3f", "\uff3f\uff3fimport\uff3f\uff3f('os')", "x.\U0001d5f0lass",
    "\ufe4d\ufe4dclass\ufe4d\ufe4d", "ｅｘｅｃ('1')", "ｏｐｅｎ('/etc/passwd')", "x.ｆｏｒｍａｔ()",
    # asteval advisories (GHSA-vp47-9734-prjw, GHSA-3wwr-3g9f-9gc7): format specs and
    # node attributes reaching interpreter internals
    "f'{print.__self__.symtable}'", "print.__self__.node_handlers", "f'{0:{x.__class__}}'",
    "(lambda: 0).__globals__", "ast.Module", "__self__", "asteval", "Interpreter()",
    "x.__getattribute__('__class__')", "''.join.__self__", "{0: 1}.__class__",
]


@pytest.mark.parametrize("source", HOSTILE, ids=[h[:50].encode("unicode_escape").decode() for h in HOSTILE])
def test_hostile_expression_is_refused(source):
    with pytest.raises(ExpressionError) as info:
        evaluate_with_vars(source, {"x": "x", "a": 1}, ctx())
    assert info.value.code in REFUSED | STOPPED, info.value


def test_there_are_at_least_sixty():
    assert len(HOSTILE) >= 60


@pytest.mark.parametrize("source, vars_, kw", [
    ("matches(s, '(a+)+$')", {"s": "a" * 50000 + "b"}, {}),             # linear engine: a plain False
    ("matches(s, '(x+x+)+y')", {"s": "x" * 50000}, {}),
    ("matches(s, '^(a|aa)+$')", {"s": "a" * 50000 + "!"}, {}),
    ("concat(s, s)", {"s": "x" * 60000}, {}),                            # value_too_large
    ("upper(s)", {"s": "ß" * 60000}, {}),                                # grows past the limit
    ("text(s)", {"s": ["x" * 50000, "y" * 50000, "z"]}, {}),
    ("matches('x', p)", {"p": "(" * 20000}, {}),                          # invalid or too large pattern
    ("matches('x', p)", {"p": "a{1000}{1000}{1000}"}, {}),
    ("n * n * n * n * n", {"n": 10 ** 30}, {}),
    ("n * n", {"n": D("9" * 60)}, {}),
    ("add_months(d, n)", {"d": date(2024, 1, 1), "n": 10 ** 20}, {}),
    ("add_days(d, n)", {"d": date(2024, 1, 1), "n": 10 ** 20}, {}),
    ("round(n, 30)", {"n": D("1" * 90)}, {}),
    ("len(concat(s, s, s))", {"s": "a"}, {"max_steps": 2}),               # step budget
    ("is_blank(s) or is_blank(s)", {"s": "a"}, {"budget_ms": 0}),         # time budget
])
def test_runaway_values_are_stopped(source, vars_, kw):
    try:
        result = evaluate_with_vars(source, vars_, ctx(**kw))
    except ExpressionError as exc:
        assert exc.code in STOPPED, exc
    else:
        assert type(result) in (bool, int, D, str)


def test_step_budget_stops_an_evaluation():
    with pytest.raises(ExpressionError) as info:
        evaluate_with_vars("len(concat(s, s, s))", {"s": "a"}, ctx(max_steps=1))
    assert info.value.code == "budget_exceeded"


@pytest.mark.parametrize("source", ["f(x=1)", "a ** b", "a is b", "nope(1)", "x.y(1)", "[*a]", "a[0]", "lambda: 1"])
def test_the_evaluator_refuses_what_the_checker_refuses(source):
    """Defence in depth: a tree that got past the checker still does not run."""
    with pytest.raises(ExpressionError) as info:
        prepare(ast.parse(source, mode="eval"))
    assert info.value.code == "forbidden_syntax"


def test_the_interpreter_has_only_the_library():
    interp = LoomInterpreter()
    from loomcrm.runtime.expressions.library import FUNCTIONS
    assert set(interp.symtable) == set(FUNCTIONS)


def test_process_alive_and_no_side_effects(tmp_path):
    marker = tmp_path / "pwned"
    for source in (f"open('{marker}', 'w')", f"__import__('os').system('touch {marker}')"):
        with pytest.raises(ExpressionError):
            evaluate_with_vars(source, {}, ctx())
    assert not marker.exists()
    assert evaluate_with_vars("1 + 1", {}, ctx()) == 2
    assert os.getpid() > 0


def test_nothing_an_author_writes_becomes_source_of_the_fast_path():
    """The generated function (`straight`) names its values from a table:
    text, numbers and field names written by the author never appear in
    the source it compiles, whatever they hold."""
    import io
    import keyword
    import tokenize

    from loomcrm.metadata.expressions import Scope, analyze
    from loomcrm.runtime.expressions.compiled import Compiled

    hostile = ["\"'); __import__('os').system('id'); ('\"", "'\\n    import os\\n'", "'\"\"\"'", "'#'", "'\\\\'"]
    scope = Scope(objects={}, object_name="", extra_names={"name": "text", "amount": "number"})
    allowed = {"run", "ev", "get", "record", "type", "PLAIN", "NUMBERS", "Decimal", "quantize", "admit_read", "tz", "fail",
               "GAVE_UP", "Exception", "clock", "done", "outcomes", "out", "_now", "max_steps", "ticks", "deadline",
               "budget", "int", "DECIMALS", "add", "subtract", "multiply", "divide", "HIGH", "LOW", "TOP"}
    for text in hostile:
        for source in [f"concat(name, {text}) == {text}", f"{text} in [name, {text}]",
                       f"(amount + 1 if contains(name, {text}) else 2) > 1"]:
            fast = Compiled(analyze(source, scope))._run.fast
            assert fast is not None, source
            tokens = list(tokenize.generate_tokens(io.StringIO(fast.source).readline))
            assert not [t for t in tokens if t.type == tokenize.STRING], fast.source
            names = {t.string for t in tokens if t.type == tokenize.NAME} - set(keyword.kwlist)
            assert {n for n in names if not (n[0] in "Kv" and n[1:].isdigit())} <= allowed, fast.source


def test_the_fast_path_keeps_the_time_budget_after_each_call(monkeypatch):
    """A slow library call stops the generated function as it stops the
    closures: after the call that crossed the budget, not at the end."""
    import time

    from loomcrm.metadata.expressions import Scope, analyze
    from loomcrm.runtime.expressions import library
    from loomcrm.runtime.expressions.compiled import Compiled

    calls = []

    def slow_trim(ev, s):
        calls.append(s)
        time.sleep(0.005)
        return library.trim(ev, s)

    monkeypatch.setitem(library.FUNCTIONS, "trim", slow_trim)
    compiled = Compiled(analyze("concat(" + ", ".join(["trim(s)"] * 40) + ")",
                                Scope(objects={}, object_name="", extra_names={"s": "text"})))
    assert compiled._run.fast is not None
    with pytest.raises(ExpressionError) as caught:
        compiled.evaluate({"s": " a "}, context=ctx(budget_ms=10))
    assert caught.value.errors[0].code == "budget_exceeded"
    assert len(calls) <= 10   # a few calls of the fast path, a few of the closures, not 40 and 40
