"""Pack composition: a bundle that requires another adds fields, rules and
form sections to the other's objects; installing, upgrading and
uninstalling either keeps the other's data and the admin's changes."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from loomcrm.metadata.model import ObjectDef
from loomcrm.metadata.validate import validate_bundle

from loomcrm.runtime.install import (
    BundleError, bundle_from_json, export_bundle, install_bundle, uninstall_bundle,
)
from loomcrm.runtime.migrate.execute import publish
from loomcrm.runtime.records import Actor, RecordError
from loomcrm.runtime.rules.hooks import Rules
from loomcrm.runtime.state import Runtime

from runtime_helpers import engine_for, published

ADMIN = Actor(None, "admin")


def base(version="1.0.0", extra_fields=()):
    return {"manifest": {"format": "loom/1", "name": "base", "version": version},
            "objects": [{"name": "account", "title_field": "name",
                         "fields": [{"name": "name", "type": "text", "required": True},
                                    {"name": "city", "type": "text"}, *extra_fields],
                         "layouts": {"form": [{"label": "Account", "fields": ["name", "city"]}],
                                     "list": {"columns": ["name", "city"]}}}]}


TIERS = [{"value": "standard"}, {"value": "gold"}]


def addon(version="1.0.0", tiers=TIERS, more=()):
    return {"manifest": {"format": "loom/1", "name": "addon", "version": version, "requires": {"base": ">=1.0"}},
            "objects": [{"name": "ticket", "title_field": "subject",
                         "fields": [{"name": "subject", "type": "text", "required": True},
                                    {"name": "account", "type": "lookup", "to": "account"}]}],
            "extensions": [{"name": "account",
                            "fields": [{"name": "support_tier", "type": "picklist", "options": tiers}, *more],
                            "validation_rules": [{"name": "gold_needs_city", "check": "support_tier != 'gold' or "
                                                  "not is_blank(city)", "message": "Gold customers need a city",
                                                  "field": "city"}],
                            "form": [{"label": "Support", "fields": ["support_tier"]}]}]}


def _account(engine):
    return published(engine)[1].object("account")


@pytest.fixture
def engine(database_url):
    engine = engine_for(database_url)
    yield engine
    engine.dispose()


def test_an_extension_needs_its_bundle_installed(engine):
    with pytest.raises(BundleError, match="addon requires the base bundle"):
        install_bundle(engine, bundle_from_json(addon()))
    install_bundle(engine, bundle_from_json(base()))
    too_new = addon()
    too_new["manifest"]["requires"] = {"base": ">=2"}
    with pytest.raises(BundleError, match="requires base >=2, and base 1.0.0 is installed"):
        install_bundle(engine, bundle_from_json(too_new))
    assert [f.name for f in _account(engine).fields] == ["name", "city"]


def test_install_upgrade_and_uninstall_round_trip(engine):
    install_bundle(engine, bundle_from_json(base()))
    runtime = Runtime(engine, refresh_interval=0, hooks=Rules())
    acme = runtime.records.create("account", {"name": "Acme", "city": "Hangzhou"}, ADMIN)

    install_bundle(engine, bundle_from_json(addon()))
    runtime.invalidate()
    account = _account(engine)
    assert [f.name for f in account.fields] == ["name", "city", "support_tier"]
    assert account.field("support_tier").uid == "addon.account.support_tier"
    assert [s.label for s in account.layouts.form] == ["Account", "Support"]
    assert runtime.records.get("account", acme["id"], ADMIN)["name"] == "Acme"
    updated = runtime.records.update("account", acme["id"], {"support_tier": "gold"}, ADMIN)
    assert updated["support_tier"] == "gold"
    with pytest.raises(RecordError) as refused:       # the extension's rule runs on the base's object
        runtime.records.update("account", acme["id"], {"city": None}, ADMIN)
    assert refused.value.errors[0]["rule"] == "gold_needs_city"
    ticket = runtime.records.create("ticket", {"subject": "Printer", "account": acme["id"]}, ADMIN)

    # the admin relabels the added field and adds one of their own
    version, snap = published(engine)
    account = snap.object("account")
    fields = [f.model_copy(update={"label": "Tier"}) if f.name == "support_tier" else f for f in account.fields]
    fields.append(account.field("city").model_copy(update={"name": "region", "uid": "admin_region"}))
    publish(engine, snap.with_object(account.model_copy(update={"fields": fields})))

    # addon 1.1 adds a field to account; the admin's label stays
    install_bundle(engine, bundle_from_json(addon("1.1.0", more=[{"name": "sla_plan", "type": "text"}])))
    account = _account(engine)
    assert [f.name for f in account.fields] == ["name", "city", "support_tier", "region", "sla_plan"]
    assert account.field("support_tier").label == "Tier"
    # base 1.1 adds a field too; the addon's fields and the data stay
    install_bundle(engine, bundle_from_json(base("1.1.0", [{"name": "website", "type": "url"}])))
    account = _account(engine)
    assert {"support_tier", "sla_plan", "region", "website"} <= {f.name for f in account.fields}
    runtime.invalidate()
    assert runtime.records.get("account", acme["id"], ADMIN)["support_tier"] == "gold"

    base_export = export_bundle(engine, "base")["objects"][0]     # the addon's fields stay out of the base's export
    assert [f["name"] for f in base_export["fields"]] == ["name", "city", "region", "website"]
    assert [x["label"] for x in base_export["layouts"]["form"]] == ["Account"]
    exported = export_bundle(engine, "addon")
    assert [f["name"] for f in exported["extensions"][0]["fields"]] == ["support_tier", "sla_plan"]
    assert exported["extensions"][0]["fields"][0]["label"] == "Tier"

    with pytest.raises(BundleError, match="addon requires base: uninstall it first"):
        uninstall_bundle(engine, "base")
    uninstall_bundle(engine, "addon")
    runtime.invalidate()
    account = _account(engine)
    assert [f.name for f in account.fields] == ["name", "city", "region", "website"]
    assert [s.label for s in account.layouts.form] == ["Account"]
    assert account.validation_rules == []
    assert runtime.schema().object("ticket") is None
    kept = runtime.records.get("account", acme["id"], ADMIN)
    assert kept["name"] == "Acme" and "support_tier" not in kept
    with engine.connect() as conn:
        archived = {(r.kind, r.object_name, r.field_name) for r in
                    conn.execute(sa.text("SELECT kind, object_name, field_name FROM loom_archives"))}
        assert conn.execute(sa.text("SELECT count(*) FROM loom_bundles WHERE name = 'addon'")).scalar() == 0
    assert ("object", "ticket", None) in archived and ("field", "account", "support_tier") in archived
    assert ticket["id"]

    # and it installs again over the same object
    install_bundle(engine, bundle_from_json(addon()))
    assert _account(engine).field("support_tier") is not None


def test_names_from_two_packs_cannot_clash(engine):
    install_bundle(engine, bundle_from_json(base()))
    clashing = addon()
    clashing["extensions"][0]["fields"].append({"name": "city", "type": "text"})
    with pytest.raises(BundleError, match="'account' already has a field 'city' that the addon bundle does not own"):
        install_bundle(engine, bundle_from_json(clashing))
    # an admin's own field of that name clashes the same way
    version, snap = published(engine)
    account = snap.object("account")
    publish(engine, snap.with_object(account.model_copy(update={"fields": [
        *account.fields, account.field("city").model_copy(update={"name": "support_tier", "uid": "mine"})]})))
    with pytest.raises(BundleError, match="already has a field 'support_tier'"):
        install_bundle(engine, bundle_from_json(addon()))
    assert published(engine)[1].object("ticket") is None
    # and so does an admin's rule of the same name (uninstalling would take it too)
    version, snap = published(engine)
    account = snap.object("account")
    mine = account.model_copy(update={"fields": [f for f in account.fields if f.uid != "mine"], "validation_rules": [
        ObjectDef.model_validate({"name": "x", "fields": [{"name": "y", "type": "text"}], "validation_rules": [
            {"name": "gold_needs_city", "check": "True", "message": "mine"}]}).validation_rules[0]]})
    publish(engine, snap.with_object(mine))
    with pytest.raises(BundleError, match="already has a rule 'gold_needs_city'"):
        install_bundle(engine, bundle_from_json(addon()))


def test_uninstall_is_refused_while_the_admin_uses_what_it_brings(engine):
    install_bundle(engine, bundle_from_json(base()))
    install_bundle(engine, bundle_from_json(addon()))
    version, snap = published(engine)
    account = snap.object("account")
    rule = account.validation_rules[0].model_copy(update={"name": "mine", "check": "support_tier != 'standard'"})
    publish(engine, snap.with_object(account.model_copy(update={"validation_rules": [*account.validation_rules, rule]})))
    with pytest.raises(BundleError) as refused:
        uninstall_bundle(engine, "addon")
    assert "unknown field 'support_tier'" in refused.value.detail
    assert published(engine)[1].object("ticket") is not None


def _write(folder, data):
    (folder / "objects").mkdir(parents=True)
    (folder / "bundle.json").write_text(json.dumps(data["manifest"]))
    for obj in data["objects"]:
        (folder / "objects" / f"{obj['name']}.json").write_text(json.dumps(obj))
    if data.get("extensions"):
        (folder / "extensions").mkdir()
        for ext in data["extensions"]:
            (folder / "extensions" / f"{ext['name']}.json").write_text(json.dumps(ext))
    return folder


def test_pack_validate_checks_extensions(tmp_path):
    _write(tmp_path / "base", base())
    good = _write(tmp_path / "addon", addon())
    assert validate_bundle(good) == []
    bad = addon()
    bad["manifest"]["name"] = "bad"
    bad["extensions"][0]["fields"].append({"name": "city", "type": "text"})
    bad["extensions"][0]["form"][0]["fields"].append("nowhere")
    bad["extensions"].append({"name": "acount", "fields": [{"name": "x", "type": "text"}]})
    problems = {(p.file, p.path, p.code) for p in validate_bundle(_write(tmp_path / "bad", bad))}
    assert problems == {("extensions/account.json", "fields[1].name", "name_clash"),
                        ("extensions/account.json", "form[0].fields[1]", "unknown_field"),
                        ("extensions/acount.json", "name", "unknown_object")}
