"""Installing, upgrading and exporting bundles; the shipped crm pack."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from loomcrm.runtime.commands import install_default_packs, migrate_plan, pack_export, pack_install
from loomcrm.runtime.install import bundle_from_json, export_bundle, install_bundle, read_bundle
from loomcrm.runtime.migrate.execute import publish
from loomcrm.runtime.state import Runtime

from runtime_helpers import engine_for, published


def test_crm_pack_installs_and_works(database_url, tmp_path):
    result = pack_install(database_url, "crm")
    assert result.rows_loaded > 0 and result.metadata_version == 1
    engine = engine_for(database_url)
    rt = Runtime(engine, refresh_interval=0)
    assert set(rt.schema().objects) >= {"account", "contact", "lead", "opportunity"}
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM o_account")).scalar() > 0
    # installing the same version again changes nothing
    again = pack_install(database_url, "crm")
    assert again.publish.plan.empty and again.rows_loaded == 0
    out = pack_export(database_url, "crm", tmp_path / "crm")
    exported = read_bundle(out)
    assert {o.name for o in exported.objects} == {o.name for o in read_bundle(Path(__file__).parents[2] / "apps" / "crm").objects}
    assert all(o.uid and all(f.uid for f in o.fields) for o in exported.objects)
    assert migrate_plan(database_url).empty
    assert install_default_packs(engine) == []
    engine.dispose()


def _bundle(version, fields, label="Account"):
    return bundle_from_json({"manifest": {"format": "loom/1", "name": "mini", "version": version},
                             "objects": [{"name": "account", "label": label, "fields": fields}]})


def test_upgrade_keeps_admin_customisations(sqlite_url):
    engine = engine_for(sqlite_url)
    install_bundle(engine, _bundle("1.0.0", [{"name": "name", "type": "text"}, {"name": "city", "type": "text"}]))
    # the admin relabels the city field and adds a field of their own
    _, snap = published(engine)
    account = snap.object("account")
    fields = [f.model_copy(update={"label": "Town"}) if f.name == "city" else f for f in account.fields]
    fields.append(account.fields[0].model_copy(update={"name": "vip", "uid": "admin_vip"}))
    publish(engine, snap.with_object(account.model_copy(update={"fields": fields})))
    # version 2 of the bundle adds a field and relabels the object
    result = install_bundle(engine, _bundle("1.1.0", [{"name": "name", "type": "text"}, {"name": "city", "type": "text"},
                                                      {"name": "phone", "type": "phone"}], label="Customer"))
    assert result.upgraded
    account = published(engine)[1].object("account")
    assert [f.name for f in account.fields] == ["name", "city", "vip", "phone"]
    assert account.field("city").label == "Town" and account.label == "Customer"
    assert export_bundle(engine, "mini")["manifest"]["version"] == "1.1.0"
    engine.dispose()


def test_a_failing_install_applies_nothing(sqlite_url):
    engine = engine_for(sqlite_url)
    bad = bundle_from_json({"manifest": {"format": "loom/1", "name": "bad", "version": "1.0.0"},
                            "objects": [{"name": "thing", "fields": [{"name": "n", "type": "integer"}]}],
                            "data": {"thing": "n\n1\nnot-a-number\n"}})
    with pytest.raises(Exception):
        install_bundle(engine, bad)
    assert published(engine)[0] == 0
    assert "o_thing" not in sa.inspect(engine).get_table_names()
    engine.dispose()
