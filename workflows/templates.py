"""Texts of e-mail and notification actions: Jinja2 templates with
`{{ record.FIELD }}` placeholders, rendered in an immutable sandbox. Only
the admin's template is template code; a record's values are handed in as
data and printed as they are, so `{{ 7*7 }}` typed into a field stays
those characters."""

from __future__ import annotations

from typing import Any

from jinja2 import ChainableUndefined, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from loomcrm.metadata.model import LocalizedText, localized

from .actions import Dead

MAX_OUTPUT = 100_000


class _Sandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, where `*` and `**` cannot build huge values
    (the sandbox already caps `range()`)."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context, operator, left, right):
        if operator == "**" and isinstance(right, (int, float)) and abs(right) > 100:
            raise TemplateError("the power is too large")
        if operator == "*":
            for sized, times in ((left, right), (right, left)):
                if isinstance(sized, (str, list, tuple)) and isinstance(times, int) and len(sized) * times > MAX_OUTPUT:
                    raise TemplateError("the value would be too large")
        return super().call_binop(context, operator, left, right)


_env = _Sandbox(autoescape=False, undefined=ChainableUndefined)


def render(text: LocalizedText, locale: str, record: dict[str, Any], **more: Any) -> str:
    """`text` in `locale` (else English), rendered with `record`."""
    source = localized(text, locale)
    out, size = [], 0
    try:
        # piece by piece, stopping at MAX_OUTPUT: a template's loops cannot run up memory
        for piece in _env.from_string(source).generate(record=record, **more):
            out.append(piece)
            size += len(piece)
            if size >= MAX_OUTPUT:
                break
    except (TemplateError, MemoryError, OverflowError) as exc:
        raise Dead(f"the template cannot be rendered: {exc}", "template") from None
    return "".join(out)[:MAX_OUTPUT]
