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

_env = ImmutableSandboxedEnvironment(autoescape=False, undefined=ChainableUndefined)
MAX_OUTPUT = 100_000


def render(text: LocalizedText, locale: str, record: dict[str, Any], **more: Any) -> str:
    """`text` in `locale` (else English), rendered with `record`."""
    source = localized(text, locale)
    try:
        out = _env.from_string(source).render(record=record, **more)
    except TemplateError as exc:
        raise Dead(f"the template cannot be rendered: {exc}", "template") from None
    return out[:MAX_OUTPUT]
