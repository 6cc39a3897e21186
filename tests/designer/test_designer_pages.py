"""The designer through its pages (FastAPI's test client, signed-in
sessions) on the crm pack: an admin builds an object, its fields and
rules; the plan says in words what publishing does and which rules a
change breaks; publishing, renaming, converting and rolling back keep the
data; two admins never overwrite each other; bad input changes nothing."""

from __future__ import annotations

import io
import json
import re
import subprocess
import zipfile
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from loomcrm.platform import auth, systemdb
from loomcrm.platform.app import create_app
from loomcrm.platform.db import create_engine
from loomcrm.platform.settings import Settings
from loomcrm.runtime.commands import pack_install
from support import LOOM


@pytest.fixture
def app(tmp_path):
    url = f"sqlite:///{tmp_path / 'loom.db'}"
    pack_install(url, "crm")
    engine = create_engine(url)
    auth.create_user(engine, "ada", "admin", "ada password")
    auth.create_user(engine, "bob", "admin", "bob password")
    auth.create_user(engine, "rep", "user", "rep password")
    application = create_app(Settings(data_dir=str(tmp_path), database_url=url), engine)
    yield application
    engine.dispose()


def signed_in(app, username: str, locale: str = "en") -> TestClient:
    client = TestClient(app, headers={"Accept-Language": locale})
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    home = client.post("/login", data={"username": username, "password": f"{username} password", "csrf_token": token,
                                       "next": "/"})
    assert home.status_code == 200, home.text[:300]
    client.csrf = re.search(r"X-CSRF-Token&#34;: &#34;([^&]+)&#34;", home.text).group(1)
    return client


def seen_of(page_text: str) -> str:
    """The object as the page showed it (the hidden `seen` input)."""
    raw = re.search(r'name="seen" value="([^"]*)"', page_text).group(1)
    return raw.replace("&#34;", '"').replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">").replace("&#39;", "'")


def post(client: TestClient, path: str, data: dict | list, **kwargs):
    if isinstance(data, dict):
        data = {**data, "csrf_token": client.csrf}
    else:   # repeated inputs (options, the field order)
        pairs, data = [*data, ("csrf_token", client.csrf)], {}
        for key, value in pairs:
            data.setdefault(key, []).append(value)
    return client.post(path, data=data, follow_redirects=False, **kwargs)


def field_form(page_text: str, **values) -> dict:
    return {"seen": seen_of(page_text), "type": "text", **values}


def draft(app):
    with app.state.loom.engine.connect() as conn:
        return app.state.loom.runtime.store.draft(conn)[1]


def publish(client, **confirm):
    return post(client, "/designer/publish", {"comment": "test", **confirm})


@pytest.fixture
def ada(app):
    return signed_in(app, "ada")


def make_project(ada) -> None:
    answer = post(ada, "/designer/objects", {"label_en": "Project", "label_zh": "项目", "name": "project", "starter": "project"})
    assert answer.status_code == 303, answer.text[:500]
    assert answer.headers["location"] == "/designer/objects/project?done=created"


def test_only_admins_open_the_designer(app):
    rep = signed_in(app, "rep")
    assert rep.get("/designer").status_code == 403
    assert post(rep, "/designer/objects", {"label_en": "X", "name": "x"}).status_code == 403
    assert post(rep, "/designer/publish", {}).status_code == 403


def test_create_from_a_starter_and_the_objects_list(app, ada):
    make_project(ada)
    project = draft(app).object("project")
    assert [f.name for f in project.fields] == ["name", "status", "start_date", "end_date", "budget", "description"]
    assert project.label == {"en": "Project", "zh-CN": "项目"}
    listing = ada.get("/designer")
    assert "New, not published" in listing.text and 'href="/designer/objects/project"' in listing.text
    # the same name twice, a bad name, no label: precise errors, nothing added
    again = post(ada, "/designer/objects", {"label_en": "Project", "name": "project", "starter": "blank"})
    assert again.status_code == 422 and "Another object has this name." in again.text
    bad = post(ada, "/designer/objects", {"label_en": "Bad", "name": "Bad Name!", "starter": "blank"})
    assert bad.status_code == 422 and "lower-case letters" in bad.text
    nolabel = post(ada, "/designer/objects", {"name": "thing", "starter": "blank"})
    assert nolabel.status_code == 422
    assert [o.name for o in draft(app).objects].count("project") == 1 and draft(app).object("thing") is None


def test_fields_rules_publish_and_a_user_governed_by_the_rule(app, ada):
    make_project(ada)
    page = ada.get("/designer/objects/project/fields/new?type=formula")
    # a formula with a typo: refused with the line and column, nothing saved
    typo = post(ada, "/designer/objects/project/fields", field_form(
        page.text, type="formula", name="budget_k", label_en="Budget (k)", expression="budgt / 1000"))
    assert typo.status_code == 422
    assert "unknown field &#39;budgt&#39;" in typo.text or "unknown field 'budgt'" in typo.text
    assert "line 1, column 1" in typo.text
    assert draft(app).object("project").field("budget_k") is None
    saved = post(ada, "/designer/objects/project/fields", field_form(
        page.text, type="formula", name="budget_k", label_en="Budget (k)", expression="budget / 1000"))
    assert saved.status_code == 303, saved.text[:800]
    formula = draft(app).object("project").field("budget_k")
    assert formula.returns == "decimal"          # inferred from the expression
    # a picklist with options and colours, a lookup
    page = ada.get("/designer/objects/project")
    picklist = post(ada, "/designer/objects/project/fields", [
        ("seen", seen_of(page.text)), ("type", "picklist"), ("name", "priority"), ("label_en", "Priority"),
        ("label_zh", "优先级"), ("option_value", "high"), ("option_label_en", "High"), ("option_label_zh", "高"),
        ("option_color", "#dc2626"), ("option_value", "low"), ("option_label_en", "Low"), ("option_label_zh", "低"),
        ("option_color", "#000000")])
    assert picklist.status_code == 303, picklist.text[:800]
    page = ada.get("/designer/objects/project")
    lookup = post(ada, "/designer/objects/project/fields", field_form(
        page.text, type="lookup", name="account", label_en="Account", to="account", on_delete="set_null"))
    assert lookup.status_code == 303, lookup.text[:800]
    project = draft(app).object("project")
    priority = project.field("priority")
    assert [(o.value, o.color) for o in priority.options] == [("high", "#dc2626"), ("low", None)]
    assert project.field("account").to == "account" and project.field("account").on_delete == "set_null"

    # a rule: a typo refused at its column, then saved
    page = ada.get("/designer/objects/project/rules/new")
    rule = {"seen": seen_of(page.text), "name": "budget_cap", "message_en": "At most 1,000,000.", "active": "on"}
    bad = post(ada, "/designer/objects/project/rules", {**rule, "check": "budget <= 1000000 and prioritty != 'x'"})
    assert bad.status_code == 422 and "line 1, column 23" in bad.text
    ok = post(ada, "/designer/objects/project/rules", {**rule, "check": "budget == None or budget <= 1000000"})
    assert ok.status_code == 303, ok.text[:800]

    plan = ada.get("/designer/plan")
    assert "Create object Project (project) (fields: 9)" in plan.text
    published = publish(ada)
    assert published.status_code == 303, published.text[:2000]
    assert draft(app).object("project").validation_rules[-1].name == "budget_cap"

    # a user creates records the rule then governs
    token = auth.create_token(app.state.loom.engine, app.state.loom.secret_key, "ada")
    api = TestClient(app, headers={"Authorization": f"Bearer {token}"})
    refused = api.post("/api/v1/project", json={"name": "Big", "budget": 5_000_000})
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["rule"] == "budget_cap"
    made = api.post("/api/v1/project", json={"name": "Small", "budget": 12_000, "priority": "high"})
    assert made.status_code == 201 and Decimal(str(made.json()["budget_k"])) == Decimal("12")


def test_live_check_and_completion(app, ada):
    make_project(ada)
    headers = {"X-CSRF-Token": ada.csrf}
    typo = ada.post("/designer/check", json={"object": "project", "source": "(budget > 0 and\n  statu == 'done')",
                                            "kind": "rule"}, headers=headers).json()
    assert typo["errors"][0]["line"] == 2 and typo["errors"][0]["column"] == 3
    assert "status" in typo["errors"][0]["message"]      # the suggestion
    fields = ada.post("/designer/check", json={"object": "project", "source": "bud", "kind": "rule", "cursor": 3},
                      headers=headers).json()
    assert fields["token"] == "bud" and fields["completions"][0]["insert"] == "budget"
    funcs = ada.post("/designer/check", json={"object": "opportunity", "source": "rou", "kind": "formula", "cursor": 3},
                     headers=headers).json()
    assert any(c["label"] == "round" and "round(" in c["detail"] for c in funcs["completions"])
    through = ada.post("/designer/check", json={"object": "opportunity", "source": "account.ind", "kind": "rule",
                                               "cursor": 11}, headers=headers).json()
    assert [c["insert"] for c in through["completions"]] == ["account.industry"]
    typed = ada.post("/designer/check", json={"object": "opportunity", "source": "amount * 2", "kind": "formula"},
                     headers=headers).json()
    assert typed == {"ok": True, "type": "number", "errors": []}
    not_bool = ada.post("/designer/check", json={"object": "opportunity", "source": "amount * 2", "kind": "rule"},
                        headers=headers).json()
    assert not_bool["errors"][0]["code"] == "type_mismatch"
    huge = ada.post("/designer/check", json={"object": "opportunity", "source": "a" * 5000, "kind": "rule"},
                    headers=headers).json()
    assert huge["errors"][0]["code"] == "too_long"
    # without the CSRF header: refused
    assert ada.post("/designer/check", json={"object": "project", "source": "1"}).status_code == 403


def test_try_it_on_a_real_record(app, ada):
    token = auth.create_token(app.state.loom.engine, app.state.loom.secret_key, "ada")
    api = TestClient(app, headers={"Authorization": f"Bearer {token}"})
    account = api.post("/api/v1/account", json={"name": "Acme", "industry": "wholesale_retail"}).json()
    deal = api.post("/api/v1/opportunity", json={"name": "Deal", "account": account["id"], "amount": 1200,
                                                "close_date": "2027-01-31"}).json()
    headers = {"X-CSRF-Token": ada.csrf}
    answer = ada.post("/designer/try", json={"object": "opportunity", "record": deal["id"],
                                             "source": "amount * 2 if account.industry == 'wholesale_retail' else 0"},
                      headers=headers).json()
    assert Decimal(answer["value"]) == 2400
    broken = ada.post("/designer/try", json={"object": "opportunity", "record": deal["id"], "source": "amount / 0"},
                      headers=headers).json()
    assert "error" in broken
    missing = ada.post("/designer/try", json={"object": "opportunity", "record": "nope", "source": "amount"},
                       headers=headers).json()
    assert "error" in missing


def test_rename_keeps_values_and_text_to_decimal_shows_the_blockers(app, ada):
    make_project(ada)
    assert publish(ada).status_code == 303
    token = auth.create_token(app.state.loom.engine, app.state.loom.secret_key, "ada")
    api = TestClient(app, headers={"Authorization": f"Bearer {token}"})
    ids = [api.post("/api/v1/project", json={"name": n, "description": d}).json()["id"]
           for n, d in (("A", "12.5"), ("B", "about ten"), ("C", "7"))]

    page = ada.get("/designer/objects/project/fields/description")
    renamed = post(ada, "/designer/objects/project/fields/description", field_form(
        page.text, type="long_text", name="remarks", label_en="Remarks"))
    assert renamed.status_code == 303, renamed.text[:800]
    plan = ada.get("/designer/plan")
    assert "Rename Description (description) to Remarks (remarks) on Project (project): values kept" in plan.text
    assert publish(ada).status_code == 303
    assert api.get(f"/api/v1/project/{ids[0]}").json()["remarks"] == "12.5"

    page = ada.get("/designer/objects/project/fields/remarks")
    retyped = post(ada, "/designer/objects/project/fields/remarks", field_form(
        page.text, type="decimal", name="remarks", label_en="Remarks", precision="12", scale="2"))
    assert retyped.status_code == 303, retyped.text[:800]
    plan = ada.get("/designer/plan")
    assert "Change Remarks (remarks) of Project (project) from Long text to Decimal number" in plan.text
    assert "1 of 3 records cannot convert" in plan.text
    assert f'href="/app/project/{ids[1]}"' in plan.text                 # see them
    unconfirmed = publish(ada)
    assert unconfirmed.status_code == 422 and "Type the name exactly as shown" in unconfirmed.text
    assert api.get(f"/api/v1/project/{ids[1]}").json()["remarks"] == "about ten"      # nothing changed
    step = re.search(r'name="(confirm_\d+)"', plan.text).group(1)
    assert publish(ada, **{step: "project"}).status_code == 303
    assert Decimal(str(api.get(f"/api/v1/project/{ids[0]}").json()["remarks"])) == Decimal("12.5")
    assert api.get(f"/api/v1/project/{ids[1]}").json()["remarks"] is None
    with app.state.loom.engine.connect() as conn:                        # the lost value is archived
        archived = conn.execute(sa.select(systemdb.archives.c.kind, systemdb.archives.c.rows)).all()
    assert any(kind == "values" and rows == 1 for kind, rows in archived) or archived

    # roll back to the version before the rename: the plan goes back, values stay
    history = ada.get("/designer/history")
    versions = [int(v) for v in re.findall(r'data-version="(\d+)"', history.text)]
    assert versions == sorted(versions, reverse=True) and len(versions) >= 4
    before_rename = versions[2]
    rolled = post(ada, f"/designer/history/{before_rename}/rollback",
                  {"draft_tag": re.search(r'name="draft_tag" value="([^"]+)"', history.text).group(1)})
    assert rolled.status_code == 303 and rolled.headers["location"].startswith("/designer/plan")
    plan = ada.get("/designer/plan")
    assert "Rename Remarks (remarks) to Description (description)" in plan.text
    step = re.search(r'name="(confirm_\d+)"', plan.text).group(1)
    assert publish(ada, **{step: "project"}).status_code == 303, plan.text
    assert api.get(f"/api/v1/project/{ids[0]}").json()["description"] == "12.50"   # converted to decimal and back


def test_a_change_that_breaks_a_rule_elsewhere_is_shown_and_not_published(app, ada):
    page = ada.get("/designer/objects/opportunity/fields/amount")
    renamed = post(ada, "/designer/objects/opportunity/fields/amount", field_form(
        page.text, type="currency", name="deal_amount", label_en="Amount"))
    assert renamed.status_code == 303, renamed.text[:800]
    plan = ada.get("/designer/plan")
    assert "Rules this change breaks" in plan.text
    assert "unknown field &#39;amount&#39; of &#39;opportunity&#39;" in plan.text
    assert "objects/account.json:fields[" in plan.text        # the rule's place
    refused = publish(ada)
    assert refused.status_code == 409
    with app.state.loom.engine.connect() as conn:
        version, snapshot = app.state.loom.runtime.store.published(conn)
    assert snapshot.object("opportunity").field("amount") is not None


def test_two_admins_on_one_object_get_a_conflict_naming_the_change(app, ada):
    bob = signed_in(app, "bob")
    ada_page = ada.get("/designer/objects/lead")
    bob_page = bob.get("/designer/objects/lead")
    first = post(bob, "/designer/objects/lead/fields", field_form(bob_page.text, name="line_id", label_en="LINE"))
    assert first.status_code == 303
    second = post(ada, "/designer/objects/lead/fields", field_form(ada_page.text, name="qq", label_en="QQ"))
    assert second.status_code == 409
    assert "bob changed this since you opened it" in second.text and "add field lead.line_id (text)" in second.text
    lead = draft(app).object("lead")
    assert lead.field("line_id") is not None and lead.field("qq") is None
    # on another object, no conflict
    other = post(ada, "/designer/objects/contact/fields", field_form(ada.get("/designer/objects/contact").text,
                                                                       name="qq", label_en="QQ"))
    assert other.status_code == 303


def test_the_api_draft_etag(app, ada):
    token = auth.create_token(app.state.loom.engine, app.state.loom.secret_key, "ada")
    api = TestClient(app, headers={"Authorization": f"Bearer {token}"})
    first = api.get("/api/v1/_meta/draft")
    tag = first.headers["etag"]
    lead = api.get("/api/v1/_meta/objects/lead").json()
    lead["fields"].append({"name": "line_id", "type": "text"})
    assert api.put("/api/v1/_meta/objects/lead", json=lead, headers={"If-Match": tag}).status_code == 200
    lead["fields"].append({"name": "qq", "type": "text"})
    stale = api.put("/api/v1/_meta/objects/lead", json=lead, headers={"If-Match": tag})
    assert stale.status_code == 412 and stale.json()["changed_by"] == "ada"


def test_reorder_settings_delete_and_restore(app, ada):
    make_project(ada)
    page = ada.get("/designer/objects/project")
    names = [f.name for f in draft(app).object("project").fields]
    order = post(ada, "/designer/objects/project/order", [("seen", seen_of(page.text))] +
                 [("field", n) for n in reversed(names)])
    assert order.status_code == 303
    assert [f.name for f in draft(app).object("project").fields] == list(reversed(names))
    page = ada.get("/designer/objects/project")
    settings = post(ada, "/designer/objects/project/settings", {
        "seen": seen_of(page.text), "name": "project", "label_en": "Project", "label_zh": "项目",
        "plural_label_en": "Projects", "plural_label_zh": "项目", "icon": "briefcase", "title_field": "name"})
    assert settings.status_code == 303
    assert draft(app).object("project").plural_label == {"en": "Projects", "zh-CN": "项目"}
    assert publish(ada).status_code == 303
    page = ada.get("/designer/objects/project")
    wrong = post(ada, "/designer/objects/project/delete", {"seen": seen_of(page.text), "confirm": "projects"})
    assert wrong.status_code == 422 and draft(app).object("project") is not None
    gone = post(ada, "/designer/objects/project/delete", {"seen": seen_of(page.text), "confirm": "project"})
    assert gone.status_code == 303 and draft(app).object("project") is None
    plan = ada.get("/designer/plan")
    step = re.search(r'name="(confirm_\d+)"', plan.text).group(1)
    assert "Remove object Project (project)" in plan.text
    assert publish(ada, **{step: "project"}).status_code == 303
    listing = ada.get("/designer")
    entry = re.search(r'/designer/archive/([^/]+)/restore', listing.text).group(1)
    assert post(ada, f"/designer/archive/{entry}/restore", {}).status_code == 303
    assert draft(app).object("project") is not None


def test_hostile_input_changes_nothing(app, ada):
    page = ada.get("/designer/objects/lead")
    before = draft(app).to_json()
    damaged = post(ada, "/designer/objects/lead/fields", {"seen": "{not json", "type": "text", "name": "x", "label_en": "X"})
    assert damaged.status_code == 400
    huge = post(ada, "/designer/objects/lead/fields", field_form(page.text, name="x", label_en="X" * 600_000))
    assert huge.status_code == 413
    system = post(ada, "/designer/objects/lead/fields", field_form(page.text, name="owner", label_en="Owner"))
    assert system.status_code == 422
    script = post(ada, "/designer/objects/lead/fields", field_form(page.text, name="x<script>", label_en="<script>alert(1)</script>"))
    assert script.status_code == 422 and "<script>alert(1)</script>" not in script.text
    no_csrf = ada.post("/designer/objects/lead/fields", data=field_form(page.text, name="y", label_en="Y"), follow_redirects=False)
    assert no_csrf.status_code == 403
    assert draft(app).to_json() == before
    assert ada.get("/designer/objects/nope").status_code == 404
    assert ada.get("/designer/objects/lead/fields/nope").status_code == 404


def test_the_designer_in_chinese(app):
    ada_zh = signed_in(app, "ada", locale="zh-CN")
    page = ada_zh.get("/designer/objects/opportunity")
    assert "字段" in page.text and "校验规则" in page.text
    make_project(ada_zh)
    plan = ada_zh.get("/designer/plan")
    assert "创建对象" in plan.text


def upload(client: TestClient, files: list[tuple[str, bytes]], content_type: str = "application/octet-stream"):
    return client.post("/designer/bundles", data={"csrf_token": client.csrf},
                       files=[("files", (name, body, content_type)) for name, body in files], follow_redirects=False)


def zipped(files: dict[str, bytes | str]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, body in files.items():
            archive.writestr(name, body)
    return out.getvalue()


def test_export_with_customisations_validates_and_installs_again(app, ada, tmp_path):
    page = ada.get("/designer/objects/lead")
    assert post(ada, "/designer/objects/lead/fields", field_form(page.text, name="line_id", label_en="LINE")).status_code == 303
    assert publish(ada).status_code == 303
    listing = ada.get("/designer/bundles")
    assert 'href="/designer/bundles/crm.zip"' in listing.text
    download = ada.get("/designer/bundles/crm.zip")
    assert download.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(download.content)) as archive:
        archive.extractall(tmp_path / "out")
        lead = json.loads(archive.read("crm/objects/lead.json"))
    assert any(f["name"] == "line_id" for f in lead["fields"])
    checked = subprocess.run([LOOM, "pack", "validate", str(tmp_path / "out" / "crm")], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # the same zip installs again: nothing to change
    again = upload(ada, [("crm.zip", download.content)], "application/zip")
    assert again.status_code == 303, again.text[-2000:]


def test_a_broken_bundle_names_each_file_and_path_and_installs_nothing(app, ada):
    manifest = json.dumps({"format": "loom/1", "name": "school", "version": "1.0.0"})
    course = {"name": "course", "fields": [{"name": "name", "type": "text"},
                                           {"name": "fee", "type": "currency", "min": "free"},
                                           {"name": "total", "type": "formula", "returns": "decimal", "expression": "fe * 2"}]}
    broken = upload(ada, [("school.zip", zipped({"school/bundle.json": manifest, "school/objects/course.json": json.dumps(course),
                                                 "school/objects/room.json": "{not json"}))], "application/zip")
    assert broken.status_code == 422
    assert "objects/room.json" in broken.text and "objects/course.json" in broken.text
    assert "fields[1].min" in broken.text or "fields[2].expression" in broken.text
    with app.state.loom.engine.connect() as conn:
        assert conn.execute(sa.select(systemdb.bundles.c.name).where(systemdb.bundles.c.name == "school")).first() is None
    # fixed, as a folder's files: installed and published
    course["fields"][1].pop("min")
    course["fields"][2]["expression"] = "fee * 2"
    fixed = upload(ada, [("school/bundle.json", manifest.encode()), ("school/objects/course.json", json.dumps(course).encode())])
    assert fixed.status_code == 303, fixed.text[-2000:]
    with app.state.loom.engine.connect() as conn:
        assert app.state.loom.runtime.store.published(conn)[1].object("course") is not None


def test_hostile_uploads_are_refused(app, ada):
    manifest = json.dumps({"format": "loom/1", "name": "evil", "version": "1.0.0"})
    traversal = upload(ada, [("evil.zip", zipped({"bundle.json": manifest, "../../etc/evil.json": "{}"}))], "application/zip")
    assert traversal.status_code == 422 and "outside the bundle" in traversal.text
    not_zip = upload(ada, [("evil.zip", b"PK\x03\x04 not really")], "application/zip")
    assert not_zip.status_code == 422 and "not a zip file" in not_zip.text
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("evil/bundle.json", manifest)
        archive.writestr("evil/objects/big.json", b"0" * 30_000_000)
    refused = upload(ada, [("evil.zip", bomb.getvalue())], "application/zip")
    assert refused.status_code == 422 and "larger than" in refused.text
    nothing = upload(ada, [])
    assert nothing.status_code == 422
    with app.state.loom.engine.connect() as conn:
        assert conn.execute(sa.select(systemdb.bundles.c.name).where(systemdb.bundles.c.name == "evil")).first() is None


def stage_form(page_text: str, fld: dict) -> list[tuple[str, str]]:
    """The stage editor's inputs for `fld`, as the page would send them."""
    from loomcrm.designer.object_pages import field_inputs

    values = field_inputs(fld)
    pairs = [("seen", seen_of(page_text)), ("type", "stage"), ("name", fld["name"]), ("label_en", values.get("label_en", "")),
             ("label_zh", values.get("label_zh", "")), ("allow_backward", values["allow_backward"])]
    pairs += [(flag, "on") for flag in ("required", "unique", "indexed") if values.get(flag) == "on"]
    for stage in values["stages"]:
        base = f"stages-{stage['n']}-"
        pairs += [(base + k, stage.get(k, "")) for k in ("value", "label_en", "label_zh", "category", "probability", "color",
                                                          "guidance_en", "guidance_zh")]
        pairs += [(base + "required_fields", name) for name in stage["required_fields"]]
        for kind in ("exit", "entry"):
            for c in stage[kind]:
                pairs += [(f"{base}{kind}-{c['n']}-{k}", c.get(k, ""))
                          for k in ("check", "name", "field", "message_en", "message_zh")]
    return pairs


def test_the_stage_editor_round_trips_and_checks_criteria(app, ada):
    from loomcrm.metadata.model import as_json

    before = as_json(draft(app).object("opportunity").field("stage"))
    page = ada.get("/designer/objects/opportunity/fields/stage")
    assert page.text.count("data-stage>") == len(before["stages"])
    same = post(ada, "/designer/objects/opportunity/fields/stage", stage_form(page.text, before))
    assert same.status_code == 303
    assert as_json(draft(app).object("opportunity").field("stage")) == before        # nothing lost on the way
    # reordered (the inputs' order, not their numbers), a criterion with a typo
    changed = dict(before)
    changed["stages"] = [before["stages"][1], before["stages"][0], *before["stages"][2:]]
    pairs = stage_form(page.text, changed)
    at = pairs.index(next(p for p in pairs if p[0] == "stages-2-value"))     # a new third stage, open
    pairs[at:at] = [("stages-9-value", "review"), ("stages-9-category", "open"), ("stages-9-exit-0-check", "amout > 0")]
    check_at = at + 2
    refused = post(ada, "/designer/objects/opportunity/fields/stage", pairs)
    assert refused.status_code == 422 and "unknown field &#39;amout&#39;" in refused.text
    assert 'id="err-stages-9-exit-0-check"' in refused.text and "line 1, column 1" in refused.text
    assert as_json(draft(app).object("opportunity").field("stage")) == before
    pairs[check_at] = ("stages-9-exit-0-check", "amount > 0")
    saved = post(ada, "/designer/objects/opportunity/fields/stage", pairs)
    assert saved.status_code == 303, saved.text[-1500:]
    stages = draft(app).object("opportunity").field("stage").stages
    assert [s.value for s in stages[:2]] == [before["stages"][1]["value"], before["stages"][0]["value"]]
    assert stages[2].value == "review" and stages[2].exit_criteria[0].check == "amount > 0"
    # a stage out of order (open after the closed ones) is refused when saved, with its place
    page = ada.get("/designer/objects/opportunity/fields/stage")
    late = stage_form(page.text, changed) + [("stages-9-value", "late"), ("stages-9-category", "open")]
    refused = post(ada, "/designer/objects/opportunity/fields/stage", late)
    assert refused.status_code == 422 and "stages[" in refused.text and "late" in refused.text


def layout_form(page_text: str, obj) -> list[tuple[str, str]]:
    """The layout editor's inputs for `obj`, in page order."""
    from loomcrm.designer import layouts

    state = layouts.editor_state(obj)
    pairs = [("seen", seen_of(page_text))]
    for s in state["sections"]:
        label = s["label"] if isinstance(s["label"], dict) else {"en": s["label"]} if s["label"] else {}
        pairs += [(f"section-{s['n']}-label_en", label.get("en", "")), (f"section-{s['n']}-label_zh", label.get("zh-CN", "")),
                  (f"section-{s['n']}-columns", str(s["columns"])), ("item", f"@form:{s['n']}")]
        pairs += [("item", n) for n in s["fields"]]
    pairs += [("item", "@form-pool"), *[("item", n) for n in state["form_pool"]]]
    pairs += [("item", "@list"), *[("item", n) for n in state["columns"]], ("item", "@list-pool"),
              *[("item", n) for n in state["list_pool"]]]
    pairs += [("sort_field", state["sort_field"])] + ([("sort_desc", "on")] if state["sort_desc"] else [])
    pairs += [("group_by", state["group_by"]), ("sum", state["sum"])]
    pairs += [("item", "@card"), *[("item", n) for n in state["card"]], ("item", "@card-pool"),
              *[("item", n) for n in state["card_pool"]]]
    return pairs


def test_the_layout_editor_round_trips_moves_and_previews(app, ada):
    from loomcrm.metadata.model import as_json

    before = as_json(draft(app).object("opportunity"))["layouts"]
    page = ada.get("/designer/objects/opportunity/layout")
    assert page.status_code == 200
    same = post(ada, "/designer/objects/opportunity/layout", layout_form(page.text, draft(app).object("opportunity")))
    assert same.status_code == 303, same.text[-1500:]
    assert as_json(draft(app).object("opportunity"))["layouts"] == before
    # the description moves to the first section, the amount leaves the list
    pairs = layout_form(page.text, draft(app).object("opportunity"))
    pairs.remove(("item", "description"))
    pairs.insert(pairs.index(("item", "@form:0")) + 1, ("item", "description"))
    at = pairs.index(("item", "amount"), pairs.index(("item", "@list")))
    pairs.insert(pairs.index(("item", "@list-pool")), pairs.pop(at))
    assert post(ada, "/designer/objects/opportunity/layout", pairs).status_code == 303
    layouts = draft(app).object("opportunity").layouts
    assert layouts.form[0].fields[0] == "description" and "amount" not in layouts.list_.columns
    assert all("description" not in s.fields for s in layouts.form[1:])
    # an unknown field or board grouping is refused, nothing changes
    pairs[0] = ("seen", seen_of(ada.get("/designer/objects/opportunity/layout").text))
    bad = post(ada, "/designer/objects/opportunity/layout", [*pairs[:-1], ("item", "nope")])
    assert bad.status_code == 422
    bad_group = post(ada, "/designer/objects/opportunity/layout", [(k, "amount" if k == "group_by" else v) for k, v in pairs])
    assert bad_group.status_code == 422
    assert draft(app).object("opportunity").layouts == layouts
    # the preview: a real record laid out as the draft says
    token = auth.create_token(app.state.loom.engine, app.state.loom.secret_key, "ada")
    api = TestClient(app, headers={"Authorization": f"Bearer {token}"})
    account = api.post("/api/v1/account", json={"name": "Acme"}).json()
    deal = api.post("/api/v1/opportunity", json={"name": "Preview deal", "account": account["id"], "amount": 1000,
                                                 "close_date": "2027-01-31"}).json()
    preview = ada.get(f"/designer/objects/opportunity/layout/preview?record={deal['id']}")
    assert preview.status_code == 200 and "Preview deal" in preview.text
    assert preview.text.index('<dt>Notes</dt>') < preview.text.index('<dt>Opportunity name</dt>')


def workflow_form(page_text: str, flow: dict) -> list[tuple[str, str]]:
    from loomcrm.designer import flows

    v = flows.workflow_inputs(flow)
    pairs = [("seen", seen_of(page_text)), ("object", flow["object"]), ("name", v["name"]), ("trigger_on", v["trigger_on"]),
             ("condition", v["condition"]), ("trigger_to", v["trigger_to"]), ("trigger_offset", v["trigger_offset"]),
             ("trigger_field", v["trigger_field"]), ("trigger_cron", v["trigger_cron"])]
    pairs += [(k, v[k]) for k in ("label_en", "label_zh", "description_en", "description_zh") if k in v]
    pairs += [("active", "on")] if v["active"] else []
    pairs += [("sources", s) for s in v["sources"]] + [("trigger_fields", f) for f in v["trigger_fields"]]
    for a in v["actions"]:
        base = f"action-{a['n']}-"
        pairs += [(base + k, a[k]) for k in ("type", "strategy", "users", "field", "mapping", "load_filter", "to", "subject_en",
                                             "subject_zh", "body_en", "body_zh", "message_en", "message_zh", "url", "method",
                                             "object") if k in a]
        for row in a["values"]:
            pairs += [(f"{base}values-{row['m']}-key", row["key"]), (f"{base}values-{row['m']}-expr", row["expr"])]
    return pairs


def test_workflows_round_trip_and_a_new_one_is_checked_then_published(app, ada):
    from loomcrm.metadata.model import as_json

    for flow in draft(app).workflows:
        before = as_json(flow)
        page = ada.get(f"/designer/workflows/{flow.name}")
        assert post(ada, f"/designer/workflows/{flow.name}", workflow_form(page.text, before)).status_code == 303
        assert as_json(draft(app).workflow(flow.name)) == before, flow.name
    page = ada.get("/designer/workflows/new?object=opportunity")
    assert "Notify in Loom" in page.text
    new = {"name": "big_deal_task", "label": {"en": "Big deal follow-up"}, "object": "opportunity", "active": True,
           "trigger": {"on": "update", "fields": ["amount"]}, "condition": "amout > 100000",
           "actions": [{"type": "create", "object": "task", "values": {"subject": "concat('Review ', name)", "due_date": "today()"}},
                       {"type": "notify", "to": "owner", "message": {"en": "A big deal needs a review."}}]}
    typo = post(ada, "/designer/workflows", workflow_form(page.text, new))
    assert typo.status_code == 422 and "condition: unknown field &#39;amout&#39;" in typo.text
    assert draft(app).workflow("big_deal_task") is None
    new["condition"] = "amount > 100000"
    saved = post(ada, "/designer/workflows", workflow_form(page.text, new))
    assert saved.status_code == 303, saved.text[-1500:]
    assert as_json(draft(app).workflow("big_deal_task")) == {k: v for k, v in new.items() if k != "active"}   # the default
    assert publish(ada).status_code == 303
    with app.state.loom.engine.connect() as conn:
        assert app.state.loom.runtime.store.published(conn)[1].workflow("big_deal_task").active
    # no action at all: refused with a message, nothing saved
    empty = [p for p in workflow_form(page.text, {**new, "name": "empty_flow"}) if not p[0].startswith("action-")]
    refused = post(ada, "/designer/workflows", empty)
    assert refused.status_code == 422 and draft(app).workflow("empty_flow") is None


def test_a_picklist_value_renamed_moves_its_records_and_a_retired_one_stays_on_old_records(app, ada):
    page = ada.get("/designer/objects/lead/fields/new?type=picklist")
    made = post(ada, "/designer/objects/lead/fields", {
        "seen": seen_of(page.text), "type": "picklist", "name": "tier", "label_en": "Tier",
        "option_value": ["gold", "silver", "bronze"], "option_label_en": ["Gold", "Silver", "Bronze"],
        "option_label_zh": ["", "", ""], "option_color": ["#000000"] * 3, "option_was": ["", "", ""],
        "option_previous": ["", "", ""], "option_state": ["active"] * 3})
    assert made.status_code == 303, made.text[-1500:]
    page = ada.get("/designer/objects/lead/fields/new?type=multi_picklist")
    made = post(ada, "/designer/objects/lead/fields", {
        "seen": seen_of(page.text), "type": "multi_picklist", "name": "channels", "label_en": "Channels",
        "option_value": ["wechat", "phone", "mail"], "option_label_en": ["", "", ""], "option_label_zh": ["", "", ""],
        "option_color": ["#000000"] * 3, "option_was": ["", "", ""], "option_previous": ["", "", ""],
        "option_state": ["active"] * 3})
    assert made.status_code == 303, made.text[-1500:]
    assert publish(ada).status_code == 303
    token = auth.create_token(app.state.loom.engine, app.state.loom.secret_key, "ada")
    api = TestClient(app, headers={"Authorization": f"Bearer {token}"})
    lead = {"name": "Tier lead", "source": "website", "status": "new", "email": "tier@example.com"}
    gold = api.post("/api/v1/lead", json={**lead, "tier": "gold", "channels": ["mail", "wechat"]}).json()
    bronze = api.post("/api/v1/lead", json={**lead, "email": "b@example.com", "tier": "bronze", "channels": ["phone"]}).json()
    assert "id" in gold and "id" in bronze, gold

    # gold becomes platinum (records follow); bronze is retired; wechat becomes weixin
    for name, rows in (("tier", [("platinum", "gold", "active"), ("silver", "silver", "active"), ("bronze", "bronze", "retired")]),
                       ("channels", [("weixin", "wechat", "active"), ("phone", "phone", "active"), ("mail", "mail", "active")])):
        page = ada.get(f"/designer/objects/lead/fields/{name}")
        changed = post(ada, f"/designer/objects/lead/fields/{name}", {
            "seen": seen_of(page.text), "type": "picklist" if name == "tier" else "multi_picklist", "name": name,
            "label_en": name.title(), "option_value": [r[0] for r in rows], "option_was": [r[1] for r in rows],
            "option_state": [r[2] for r in rows], "option_label_en": [""] * 3, "option_label_zh": [""] * 3,
            "option_color": ["#000000"] * 3, "option_previous": [""] * 3})
        assert changed.status_code == 303, changed.text[-1500:]
    plan = ada.get("/designer/plan")
    assert "Rename the value gold of Tier (tier) on Lead (lead) to platinum: the records holding it follow" in plan.text
    assert publish(ada).status_code == 303
    assert api.get(f"/api/v1/lead/{gold['id']}").json()["tier"] == "platinum"
    assert api.get(f"/api/v1/lead/{gold['id']}").json()["channels"] == ["weixin", "mail"]
    # the retired value stays on its record, which still saves; it is refused anew
    assert api.patch(f"/api/v1/lead/{bronze['id']}", json={"name": "Renamed", "tier": "bronze"}).status_code == 200
    refused = api.post("/api/v1/lead", json={**lead, "email": "c@example.com", "tier": "bronze"})
    assert refused.status_code == 422 and refused.json()["errors"][0]["code"] == "invalid_option"
    moved = api.patch(f"/api/v1/lead/{gold['id']}", json={"tier": "bronze"})
    assert moved.status_code == 422
    form = ada.get(f"/app/lead/{bronze['id']}/edit").text
    assert 'value="bronze"' in form
    assert 'value="bronze"' not in ada.get("/app/lead/new").text


def test_renaming_an_object_carries_its_references_and_keeps_its_records(app, ada):
    token = auth.create_token(app.state.loom.engine, app.state.loom.secret_key, "ada")
    api = TestClient(app, headers={"Authorization": f"Bearer {token}"})
    account = api.post("/api/v1/account", json={"name": "Acme"}).json()
    page = ada.get("/designer/objects/account")
    renamed = post(ada, "/designer/objects/account/settings", {
        "seen": seen_of(page.text), "name": "customer", "label_en": "Customer", "label_zh": "客户", "title_field": "name"})
    assert renamed.status_code == 303, renamed.text[-1500:]
    snapshot = draft(app)
    assert snapshot.object("opportunity").field("account").to == "customer"
    assert all("account" not in role.objects for role in snapshot.roles)
    assert any("customer" in role.objects for role in snapshot.roles)
    plan = ada.get("/designer/plan")
    assert "Rename object Account (account) to Customer (customer): records kept" in plan.text
    assert "Rules this change breaks" not in plan.text, re.findall(r"<li><strong>[^<]*</strong>[^<]*", plan.text)[:5]
    assert publish(ada).status_code == 303
    assert api.get(f"/api/v1/customer/{account['id']}").json()["name"] == "Acme"


def test_what_admins_built_downloads_as_its_own_bundle_that_validates(app, ada, tmp_path):
    make_project(ada)
    page = ada.get("/designer/objects/project/fields/new?type=picklist")
    # an option typed with only a label takes its value from it
    made = post(ada, "/designer/objects/project/fields", {
        "seen": seen_of(page.text), "type": "picklist", "name": "risk", "label_en": "Risk",
        "option_value": ["", "low"], "option_label_en": ["Very High", "Low"]})
    assert made.status_code == 303, made.text[-1500:]
    assert [o.value for o in draft(app).object("project").field("risk").options] == ["very_high", "low"]
    page = ada.get("/designer/objects/project/fields/new?type=lookup")
    assert post(ada, "/designer/objects/project/fields", field_form(page.text, type="lookup", name="account",
                                                                    label_en="Account", to="account")).status_code == 303
    assert publish(ada).status_code == 303
    download = ada.get("/designer/bundles/_own.zip")
    assert download.status_code == 200 and 'filename="custom.zip"' in download.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(download.content)) as archive:
        names = archive.namelist()
        archive.extractall(tmp_path / "out")
    assert "custom/objects/project.json" in names and "custom/objects/lead.json" not in names
    checked = subprocess.run([LOOM, "pack", "validate", str(tmp_path / "out" / "custom")], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_renaming_an_object_carries_the_reports_on_it():
    from loomcrm.designer.edits import object_renamed
    from loomcrm.metadata.model import ObjectDef, Report
    from loomcrm.metadata.versions import Snapshot

    snapshot = Snapshot(objects=[ObjectDef.model_validate({"name": "deal", "fields": [{"name": "name", "type": "text"}]})],
                        reports=[Report.model_validate({"name": "deals", "object": "deal",
                                                        "measures": [{"name": "n", "function": "count"}]})])
    renamed = object_renamed(snapshot, "deal", "opportunity")
    assert renamed.report("deals").object == "opportunity"


def test_the_plan_names_the_reports_a_dropped_field_breaks():
    from loomcrm.designer.pages import place_of, rule_problems
    from loomcrm.metadata.versions import Snapshot
    from loomcrm.runtime.install import read_bundle

    crm = read_bundle(Path(__file__).parents[2] / "apps" / "crm")
    snapshot = Snapshot(objects=crm.objects, workflows=crm.workflows, roles=crm.roles, reports=crm.reports,
                        dashboards=crm.dashboards)
    opportunity = snapshot.object("opportunity")
    dropped = opportunity.model_copy(update={"fields": [f for f in opportunity.fields if f.name != "close_date"]})
    problems = [p for p in rule_problems(snapshot.with_object(dropped)) if p["file"].startswith("reports/")]
    assert {(p["file"], p["path"]) for p in problems} >= {("reports/forecast_by_month.json", "group_by[0]")}
    forecast = next(p for p in problems if p["file"] == "reports/forecast_by_month.json")
    assert place_of(snapshot, forecast, "zh-CN").startswith("按预计成交月份的销售预测")


def test_editing_a_field_keeps_what_its_form_does_not_show():
    from loomcrm.designer.edits import with_field
    from loomcrm.metadata.model import ObjectDef

    obj = ObjectDef.model_validate({"name": "lead", "fields": [
        {"name": "phone", "type": "phone"},
        {"name": "city", "type": "text", "fill_from_phone": {"field": "phone", "part": "city"}}]})
    edited = with_field(obj, {"name": "city", "type": "text", "label": {"en": "Town"}}, "city")
    assert edited.field("city").fill_from_phone.part == "city" and edited.field("city").label == {"en": "Town"}
    picked = ObjectDef.model_validate({"name": "account", "fields": [
        {"name": "region", "type": "picklist", "options": [{"value": "east"}, {"value": "south"}]},
        {"name": "province", "type": "picklist", "depends_on": "region",
         "options": [{"value": "jiangsu", "parents": ["east"]}, {"value": "gd", "parents": ["south"]}]}]})
    edited = with_field(picked, {"name": "province", "type": "picklist", "options": [
        {"value": "jiangsu"}, {"value": "guangdong", "previous": ["gd"]}, {"value": "hainan"}]}, "province")
    province = edited.field("province")
    assert province.depends_on == "region"
    assert [(o.value, o.parents) for o in province.options] == [("jiangsu", ["east"]), ("guangdong", ["south"]),
                                                                ("hainan", [])]


def test_a_renamed_field_is_followed_by_its_dependents_and_the_conversion_map():
    from loomcrm.designer.edits import with_field
    from loomcrm.metadata.model import ObjectDef

    lead = ObjectDef.model_validate({"name": "lead", "fields": [
        {"name": "company", "type": "text"},
        {"name": "status", "type": "picklist", "options": [{"value": "new"}, {"value": "won"}]},
        {"name": "stage", "type": "picklist", "depends_on": "status", "options": [{"value": "a", "parents": ["new"]}]},
        {"name": "to_account", "type": "lookup", "to": "account"}],
        "conversion": {"targets": [{"object": "account", "link": "to_account", "fields": {"name": "company"}}],
                       "mark": {"status": "won"}}})
    renamed = with_field(lead, {"name": "state", "type": "picklist", "options": [{"value": "new"}, {"value": "won"}]},
                         "status")
    renamed = with_field(renamed, {"name": "firm", "type": "text"}, "company")
    renamed = with_field(renamed, {"name": "account_made", "type": "lookup", "to": "account"}, "to_account")
    assert renamed.field("stage").depends_on == "state"
    target = renamed.conversion.targets[0]
    assert (target.link, target.fields, renamed.conversion.mark) == ("account_made", {"name": "firm"}, {"state": "won"})
