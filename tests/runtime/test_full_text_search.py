"""Full-text search over an object's `search` fields, in English and
Chinese, on SQLite (FTS5) and PostgreSQL (a GIN index): ranked, kept in step
with saves, never past the user's access, and the list search uses it."""

from __future__ import annotations

import pytest
from fastapi import FastAPI, Header
from fastapi.testclient import TestClient

from loomcrm.metadata.validate import validate_bundle
from loomcrm.platform import directory
from loomcrm.runtime.api.routes import build_api_router
from loomcrm.runtime.install import bundle_from_json, install_bundle
from loomcrm.runtime.query import ListParams, list_records
from loomcrm.runtime.records import Actor
from loomcrm.runtime.rules.hooks import Rules
from loomcrm.runtime.search import ranked, tokens
from loomcrm.runtime.state import Runtime

from runtime_helpers import engine_for

BUNDLE = {
    "manifest": {"format": "loom/1", "name": "kb", "version": "1.0.0"},
    "objects": [{"name": "article", "title_field": "title", "search": ["title", "body"], "fields": [
        {"name": "title", "type": "text", "required": True},
        {"name": "body", "type": "long_text", "max_length": 100000},
        {"name": "secret", "type": "text"}]}],
    "roles": [{"name": "reader", "objects": {"article": {"read": "own", "create": True}}},
              {"name": "blind", "objects": {"article": {"read": "all"}}, "fields": {"article.body": "hidden"}}],
}
ADMIN = Actor(None, "admin")
ARTICLES = [
    ("打印机卡纸怎么处理", "打开后盖，顺着进纸方向取出卡住的纸张。"),
    ("打印纸的规格", "常用 A4 纸，克重 70–80 g。"),
    ("Printer jams in tray 2", "Open the rear cover and pull the sheet out along the paper path."),
    ("ERP 订单同步失败", "检查天猫授权是否过期，然后手动补单。The printer is unrelated."),
]


@pytest.fixture
def kb(database_url):
    engine = engine_for(database_url)
    install_bundle(engine, bundle_from_json(BUNDLE))
    runtime = Runtime(engine, refresh_interval=0, hooks=Rules())
    ids = [runtime.records.create("article", {"title": t, "body": b}, ADMIN)["id"] for t, b in ARTICLES]
    yield runtime, ids
    engine.dispose()


def _titles(runtime, text, user=ADMIN):
    schema = runtime.schema()
    with runtime.engine.connect() as conn:
        return [r["title"] for r in ranked(conn, schema, schema.object("article"), text, runtime.access.of(user))]


def test_tokens_are_words_and_chinese_pairs():
    assert tokens("打印机卡纸 ERP-3, OK!") == ["打印", "印机", "机卡", "卡纸", "erp", "3", "ok"]
    assert tokens("纸") == ["纸"] and tokens("  --  ") == []


def test_search_in_chinese_and_english_ranked(kb):
    runtime, ids = kb
    assert _titles(runtime, "打印机") == ["打印机卡纸怎么处理"]          # not 打印纸: every pair must match
    assert set(_titles(runtime, "打印")) == {"打印机卡纸怎么处理", "打印纸的规格"}
    assert _titles(runtime, "printer")[0] == "Printer jams in tray 2"  # in the title beats in the body
    assert set(_titles(runtime, "PRINTER")) == {"Printer jams in tray 2", "ERP 订单同步失败"}
    assert _titles(runtime, "paper path rear") == ["Printer jams in tray 2"]
    # the last word may be unfinished, or a lone character
    assert _titles(runtime, "paper pa") == ["Printer jams in tray 2"]
    assert _titles(runtime, "授") == ["ERP 订单同步失败"] and set(_titles(runtime, "打")) == {"打印机卡纸怎么处理",
                                                                                         "打印纸的规格"}
    assert _titles(runtime, "") == [] and _titles(runtime, "!!! ***") == []
    # hostile text is only words to look for
    assert _titles(runtime, "\" OR 1=1 -- ') & | ! NEAR(") == []


def test_the_index_follows_saves_and_the_bin(kb):
    runtime, ids = kb
    runtime.records.update("article", ids[1], {"title": "复印纸的规格"}, ADMIN)
    assert _titles(runtime, "打印") == ["打印机卡纸怎么处理"]
    assert _titles(runtime, "复印纸") == ["复印纸的规格"]
    runtime.records.delete("article", ids[0], ADMIN)
    assert _titles(runtime, "卡纸") == []
    runtime.records.restore("article", ids[0], ADMIN)
    assert _titles(runtime, "卡纸") == ["打印机卡纸怎么处理"]


def test_search_respects_access_and_hidden_fields(kb):
    runtime, ids = kb
    roles = ["reader", "blind"]
    reader = directory.create_user(runtime.engine, "reader", "reader", "a long password", roles=roles)
    blind = directory.create_user(runtime.engine, "blind", "blind", "a long password", roles=roles)
    runtime.records.create("article", {"title": "我的打印机笔记", "body": "卡纸"}, reader)
    assert _titles(runtime, "打印机", reader) == ["我的打印机笔记"]       # only what they may read

    schema = runtime.schema()
    article = schema.object("article")
    access = runtime.access.of(blind)
    with runtime.engine.connect() as conn:
        # the body is hidden from them: the list search does not look in it
        rows, _ = list_records(conn, schema, access.view(article), ListParams(q="paper"), access)
        assert rows == []
        rows, _ = list_records(conn, schema, access.view(article), ListParams(q="tray"), access)
        assert [r["title"] for r in rows] == ["Printer jams in tray 2"]
        # an admin's list search goes through the index
        rows, _ = list_records(conn, schema, article, ListParams(q="打印机"), runtime.access.of(ADMIN))
    assert {r["title"] for r in rows} == {"打印机卡纸怎么处理", "我的打印机笔记"}


def test_the_search_endpoint(kb):
    runtime, ids = kb

    def admin(authorization: str | None = Header(default=None)):
        return ADMIN

    app = FastAPI()
    app.include_router(build_api_router(runtime, user_dependency=admin))
    client = TestClient(app)
    answer = client.get("/api/v1/article/_search", params={"q": "打印机 卡纸", "limit": 5})
    assert answer.status_code == 200
    assert [r["title"] for r in answer.json()["data"]] == ["打印机卡纸怎么处理"]
    assert client.get("/api/v1/article/_search", params={"q": "x", "limit": 0}).status_code == 400
    long = client.get("/api/v1/article/_search", params={"q": "长" * 5_000})
    assert long.status_code == 200, long.text


def test_pack_validate_checks_search_fields(tmp_path):
    import json

    folder = tmp_path / "kb"
    (folder / "objects").mkdir(parents=True)
    (folder / "bundle.json").write_text(json.dumps(BUNDLE["manifest"]))
    article = json.loads(json.dumps(BUNDLE["objects"][0]))
    article["search"] = ["title", "bodyy"]
    article["fields"].append({"name": "views", "type": "integer"})
    article["search"].append("views")
    (folder / "objects" / "article.json").write_text(json.dumps(article))
    assert {(p.path, p.code) for p in validate_bundle(folder)} == {("search[1]", "unknown_field"),
                                                                  ("search[2]", "wrong_field_type")}


def test_publishing_search_fields_indexes_the_records_there_are(kb):
    from loomcrm.runtime.migrate.execute import publish

    from runtime_helpers import published

    runtime, ids = kb
    _, snapshot = published(runtime.engine)
    article = snapshot.object("article")
    publish(runtime.engine, snapshot.with_object(article.model_copy(update={"search": ["title"]})))
    runtime.invalidate()
    assert _titles(runtime, "打印机") == ["打印机卡纸怎么处理"]
    assert _titles(runtime, "rear cover") == []              # the body is no longer searched
    _, snapshot = published(runtime.engine)
    publish(runtime.engine, snapshot.with_object(snapshot.object("article").model_copy(update={"search": ["body"]})))
    runtime.invalidate()
    assert _titles(runtime, "rear cover") == ["Printer jams in tray 2"]
