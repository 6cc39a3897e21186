"""Rich text (`long_text` with `format: html`): structure and emphasis kept,
everything that could run or restyle the page removed on every save, the
words searchable without their markup."""

from __future__ import annotations

import pytest

from loomcrm.runtime.fields.text import plain_text, sanitized
from loomcrm.runtime.forms.display import Display
from loomcrm.runtime.install import bundle_from_json, install_bundle
from loomcrm.runtime.records import Actor
from loomcrm.runtime.rules.hooks import Rules
from loomcrm.runtime.search import ranked
from loomcrm.runtime.state import Runtime

from runtime_helpers import engine_for

ADMIN = Actor(None, "admin")
HOSTILE = [
    ('<p onclick="steal()">Hi</p>', "<p>Hi</p>"),
    ("<script>alert(1)</script><p>ok</p>", "<p>ok</p>"),
    ('<a href="javascript:alert(1)">x</a>', '<a rel="noopener noreferrer">x</a>'),
    ('<img src=x onerror=alert(1)>', ""),
    ('<iframe src="https://evil.example"></iframe>', ""),
    ('<p style="position:fixed;top:0">cover</p>', "<p>cover</p>"),
    ("<svg><script>alert(1)</script></svg>", ""),
    ('<a href="https://kb.example.com/a" target="_blank">doc</a>', '<a href="https://kb.example.com/a" rel="noopener noreferrer">doc</a>'),
    ("<ol><li><strong>Step</strong> one</li></ol>", "<ol><li><strong>Step</strong> one</li></ol>"),
    ("<p>unclosed <em>tags", "<p>unclosed <em>tags</em></p>"),
]


@pytest.mark.parametrize("given, kept", HOSTILE)
def test_hostile_markup_is_removed(given, kept):
    assert sanitized(given) == kept


def test_plain_text_given_to_rich_text_keeps_its_paragraphs():
    from loomcrm.runtime.fields import field_type
    from loomcrm.runtime.fields.registry import FieldContext
    from loomcrm.metadata.model import ObjectDef

    f = ObjectDef.model_validate({"name": "a", "fields": [{"name": "b", "type": "long_text", "format": "html",
                                                           "max_length": 60}]}).fields[0]
    coerce = lambda v: field_type(f).coerce(f, v, FieldContext())       # noqa: E731
    assert coerce("Restart it.\nThen wait.\n\n1 < 2 & done") == "<p>Restart it.<br>Then wait.</p><p>1 &lt; 2 &amp; done</p>"
    with pytest.raises(Exception):      # the limit counts what is stored (escaping makes it longer)
        coerce("&" * 50)


def test_plain_text_reads_the_words():
    assert plain_text("<p>打开<strong>后盖</strong></p><ul><li>A&amp;B</li></ul>").split() == ["打开", "后盖", "A&B"]


@pytest.fixture
def kb(database_url):
    engine = engine_for(database_url)
    install_bundle(engine, bundle_from_json({
        "manifest": {"format": "loom/1", "name": "kb", "version": "1.0.0"},
        "objects": [{"name": "article", "title_field": "title", "search": ["title", "body"], "fields": [
            {"name": "title", "type": "text", "required": True},
            {"name": "body", "type": "long_text", "format": "html", "max_length": 2000}]}]}))
    yield Runtime(engine, refresh_interval=0, hooks=Rules())
    engine.dispose()


def test_every_save_sanitises_and_search_skips_the_markup(kb):
    saved = kb.records.create("article", {"title": "Jams", "body": '<p onmouseover="x()">Open the <b>rear</b> cover'
                                                                   '<script>strong()</script></p>'}, ADMIN)
    assert saved["body"] == "<p>Open the <b>rear</b> cover</p>"
    schema = kb.schema()
    with kb.engine.connect() as conn:
        assert [r["title"] for r in ranked(conn, schema, schema.object("article"), "rear cover")] == ["Jams"]
        assert ranked(conn, schema, schema.object("article"), "strong") == []     # a tag name is no word
        assert ranked(conn, schema, schema.object("article"), "onmouseover") == []
    with pytest.raises(Exception) as refused:                               # the limit counts what was sent
        kb.records.create("article", {"title": "Long", "body": "<p>" + "x" * 2000 + "</p>"}, ADMIN)
    assert "longer than 2000" in str(getattr(refused.value, "errors", refused.value))
    shown = Display(schema.objects, "en", None).cell(schema.object("article"), schema.object("article").field("body"),
                                                     '<p>stored <script>before</script></p>')
    assert str(shown) == '<div class="prose rich"><p>stored </p></div>'
