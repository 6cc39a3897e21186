"""Server-side render of a generated record page: a 40-field record with
three related lists and its timeline, from metadata (`record_page` plus the
`forms/record.html` template: loading, lookup titles, related lists, history,
formatting per field type and locale), against a hand-written page for the
same object: hand-written SQL and a Jinja template that spells out each of
the 40 fields with its label and formatter (written out below once, as a
developer would type it). Same database, same data, same base layout, one
run, alternating. Goal: Loom at most 1.5x the hand-written page (ratio >= 1/1.5).
Not a timed test.

    .venv/bin/python tests/benchmarks/run.py forms [--quick]
"""

from __future__ import annotations

import json
import random
import sys
import tempfile
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness import Figure, paired, print_table  # noqa: E402

GOAL = 1 / 1.5
KINDS = (["text"] * 10 + ["currency"] * 5 + ["date"] * 5 + ["picklist"] * 5 + ["integer"] * 5 + ["long_text"] * 3
         + ["lookup"] * 2 + ["boolean"] * 3 + ["email", "url"])
OPTIONS = [{"value": f"o{i}", "label": {"en": f"Option {i}", "zh-CN": f"选项{i}"}, "color": "#2f5bea"} for i in range(5)]


def _field(i: int, kind: str) -> dict:
    f = {"name": f"f{i:02d}", "type": kind, "label": {"en": f"Field {i}", "zh-CN": f"字段{i}"}}
    if kind == "picklist":
        f["options"] = OPTIONS
    if kind == "lookup":
        f["to"] = "company"
        f["on_delete"] = "set_null"
    return f


def bundle() -> dict:
    deal_fields = [{"name": "name", "type": "text", "label": {"en": "Name", "zh-CN": "名称"}, "required": True}]
    deal_fields += [_field(i, kind) for i, kind in enumerate(KINDS[1:], start=1)]
    names = [f["name"] for f in deal_fields]
    children = []
    for child in ("note", "quote", "visit"):
        children.append({"name": child, "label": child.title(), "plural_label": child.title() + "s", "title_field": "name", "fields": [
            {"name": "name", "type": "text"},
            {"name": "deal", "type": "lookup", "to": "deal", "on_delete": "cascade"},
            {"name": "amount", "type": "currency"}, {"name": "day", "type": "date"},
            {"name": "kind", "type": "picklist", "options": OPTIONS}, {"name": "body", "type": "long_text"}],
            "layouts": {"list": {"columns": ["name", "amount", "day", "kind"], "sort": "-day"}}})
    return {
        "manifest": {"format": "loom/1", "name": "bench_forms", "version": "1.0.0"},
        "objects": [
            {"name": "company", "title_field": "name", "fields": [{"name": "name", "type": "text"}]},
            {"name": "deal", "label": {"en": "Deal", "zh-CN": "交易"}, "title_field": "name", "fields": deal_fields,
             "layouts": {"form": [{"label": f"Section {s}", "columns": 2, "fields": names[s * 10:(s + 1) * 10]} for s in range(4)]},
             "track_history": ["f11", "f21"]},
            *children,
        ],
    }


def _value(kind: str, i: int, rng: random.Random, companies: list[str]):
    return {"text": f"text value {i} 文本", "currency": Decimal(rng.randint(1, 10**7)) / 100,
            "date": (date(2026, 1, 1) + timedelta(days=rng.randint(0, 700))).isoformat(), "picklist": f"o{rng.randint(0, 4)}",
            "integer": rng.randint(0, 10**6), "long_text": "Line one\nline two of a longer note " * 3,
            "lookup": rng.choice(companies), "boolean": rng.random() < 0.5, "email": f"user{i}@example.com",
            "url": f"https://example.com/{i}"}[kind]


def setup(url: str):
    from loomcrm.platform import systemdb
    from loomcrm.platform.auth import User
    from loomcrm.platform.db import create_engine
    from loomcrm.runtime.install import bundle_from_json, install_bundle
    from loomcrm.runtime.state import Runtime

    engine = create_engine(url)
    systemdb.upgrade(engine)
    install_bundle(engine, bundle_from_json(json.loads(json.dumps(bundle()))))
    runtime = Runtime(engine, refresh_interval=3600)
    user = User(id=None, username="bench", role="admin")
    rng = random.Random(7)
    records = runtime.records
    companies = [records.create("company", {"name": f"公司 {i}"}, user)["id"] for i in range(5)]
    deal = {"name": "大客户 年度框架合同"}
    for i, kind in enumerate(KINDS[1:], start=1):
        deal[f"f{i:02d}"] = _value(kind, i, rng, companies)
    deal_id = records.create("deal", json.loads(json.dumps(deal, default=str)), user)["id"]
    for step in range(6):
        records.update("deal", deal_id, {"f11": str(Decimal(step * 1000 + 1)), "f21": "o1" if step % 2 else "o2"}, user)
    for child in ("note", "quote", "visit"):
        for n in range(12):
            records.create(child, {"name": f"{child} {n}", "deal": deal_id, "amount": str(Decimal(n * 137) / 10),
                                   "day": (date(2026, 3, 1) + timedelta(days=n)).isoformat(), "kind": f"o{n % 5}",
                                   "body": "Some words " * 5}, user)
    return engine, runtime, deal_id


def templates():
    from fastapi.templating import Jinja2Templates

    from loomcrm.platform.app import HERE as PLATFORM
    from loomcrm.runtime.forms import TEMPLATE_DIR

    return Jinja2Templates(directory=[PLATFORM / "templates", TEMPLATE_DIR]).env


def page_globals(locale: str) -> dict:
    from loomcrm.platform import i18n
    from loomcrm.platform.auth import User

    return {"locale": locale, "locales": i18n.LOCALE_NAMES, "_": lambda m: i18n.gettext(locale, m),
            "user": User(id="u", username="bench", role="admin"), "csrf_token": "t", "path": "/app/deal/x", "nav": []}


def loom_page(env, runtime, deal_id: str, locale: str):
    from loomcrm.runtime.forms.refs import record_title
    from loomcrm.runtime.forms.views import record_page

    template = env.get_template("forms/record.html")
    schema = runtime.schema()

    def render() -> str:
        context = record_page(runtime, schema, schema.object("deal"), deal_id, locale)
        return template.render(**page_globals(locale), record_title=record_title, **context)

    return render


def handwritten_template(obj) -> str:
    """The page a developer would write for this one object: every field by
    hand, in the same markup as the generated page."""
    from loomcrm.metadata.model import localized

    fmt = {"currency": "money", "date": "day", "integer": "number", "boolean": "yesno", "picklist": "option",
           "lookup": "company", "url": "link", "email": "mail", "long_text": "prose", "text": "plain"}
    sections = []
    for section in obj.layouts.form:
        rows = []
        for name in section.fields:
            f = obj.field(name)
            rows.append(f'<div class="detail"><dt>{localized(f.label, "en")}</dt><dd>{{{{ r.{name} | {fmt[f.type]} }}}}</dd></div>')
        sections.append(f'<section class="panel section"><h2>{section.label}</h2><dl class="details cols-2">{"".join(rows)}</dl></section>')
    related = """{% for rel in related %}<section class="panel related"><header><h2>{{ rel.title }} <span class="count">{{ rel.count }}</span></h2>
<a class="button small" href="/app/{{ rel.name }}/new?deal={{ r.id }}">New</a></header><ul class="related-rows">{% for c in rel.rows %}
<li><a href="/app/{{ rel.name }}/{{ c.id }}">{{ c.name }}</a><span class="meta"><span>{{ c.amount | money }}</span><span>{{ c.day | day }}</span>
<span>{{ c.kind | option }}</span></span></li>{% endfor %}</ul></section>{% endfor %}"""
    timeline = """<section class="panel timeline"><h2>Timeline</h2><ol>{% for h in history %}<li><time>{{ h.changed_at | moment }}</time>
<p><strong>{{ h.field }}</strong>: {{ h.old_value }} → {{ h.new_value }}</p></li>{% endfor %}</ol></section>"""
    return ('{% extends "base.html" %}{% block main %}<section class="page record-page"><header class="record-head"><h1>{{ r.name }}</h1>'
            '<a class="button primary" href="/app/deal/{{ r.id }}/edit">Edit</a></header><div class="record-body"><div class="record-main">'
            + "".join(sections) + '</div><aside class="record-side">' + related + timeline + "</aside></div></section>{% endblock %}")


def handwritten_page(env, engine, runtime, deal_id: str, locale: str):
    import sqlalchemy as sa
    from markupsafe import Markup

    from loomcrm.platform import i18n, systemdb

    schema = runtime.schema()
    obj = schema.object("deal")
    page_env = env.overlay()
    labels = {o["value"]: o["label"]["en"] for o in OPTIONS}
    tz = runtime.context.timezone
    names: dict[str, str] = {}
    page_env.filters.update({
        "money": lambda v: "—" if v is None else i18n.format_money(v, locale),
        "day": lambda v: "—" if v is None else i18n.format_day(v, locale),
        "moment": lambda v: i18n.format_moment(v, locale, tz),
        "number": lambda v: "—" if v is None else i18n.format_number(v, locale),
        "yesno": lambda v: "Yes" if v else "No",
        "option": lambda v: Markup('<span class="chip">{}</span>').format(labels.get(v, v)) if v else "—",
        "company": lambda v: Markup('<a href="/app/company/{}">{}</a>').format(v, names.get(v, v)) if v else "—",
        "link": lambda v: Markup('<a href="{}">{}</a>').format(v, v) if v and v.startswith(("http://", "https://")) else (v or "—"),
        "mail": lambda v: Markup('<a href="mailto:{}">{}</a>').format(v, v) if v else "—",
        "prose": lambda v: Markup('<span class="prose">{}</span>').format(v) if v else "—",
        "plain": lambda v: v if v else "—",
    })
    template = page_env.from_string(handwritten_template(obj))
    deal, company = schema.table("deal"), schema.table("company")
    children = [(name, schema.table(name)) for name in ("note", "quote", "visit")]
    history = systemdb.history

    def render() -> str:
        with engine.connect() as conn:
            r = conn.execute(sa.select(deal).where(deal.c.id == deal_id, deal.c._deleted_at.is_(None))).first()
            ids = [r.f29, r.f30]
            names.update({row.id: row.name for row in conn.execute(sa.select(company.c.id, company.c.name).where(company.c.id.in_(ids)))})
            related = []
            for name, table in children:
                alive = sa.and_(table.c.deal == deal_id, table.c._deleted_at.is_(None))
                rows = conn.execute(sa.select(table).where(alive).order_by(table.c.day.desc()).limit(5)).fetchall()
                count = conn.execute(sa.select(sa.func.count()).select_from(table).where(alive)).scalar()
                related.append({"name": name, "title": name.title() + "s", "rows": rows, "count": count})
            events = conn.execute(sa.select(history).where(history.c.object == "deal", history.c.record_id == deal_id)
                                  .order_by(history.c.changed_at.desc()).limit(30)).fetchall()
        return template.render(**page_globals(locale), r=r, related=related, history=events)

    return render


def run(quick: bool = False) -> list[Figure]:
    repeat, number = (3, 5) if quick else (9, 60)
    figures = []
    with tempfile.TemporaryDirectory(prefix="loom-bench-forms-") as tmp:
        engine, runtime, deal_id = setup(f"sqlite:///{tmp}/forms.db")
        env = templates()
        try:
            for locale in ("en", "zh-CN"):
                loom, hand = loom_page(env, runtime, deal_id, locale), handwritten_page(env, engine, runtime, deal_id, locale)
                assert "大客户" in loom() and "大客户" in hand()
                result = paired(loom, hand, repeat=repeat, number=number)
                figures.append(Figure.from_costs(f"record page, 40 fields + 3 related lists ({locale})",
                                                 result.loom_median * 1000, result.baseline_median * 1000, "ms/page", GOAL,
                                                 result.spread))
        finally:
            engine.dispose()
    return figures


if __name__ == "__main__":
    figures = run(quick="--quick" in sys.argv)
    print_table(figures)
