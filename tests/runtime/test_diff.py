"""The metadata diff, without a database."""

from loomcrm.metadata import diff as d
from loomcrm.metadata.model import ObjectDef


def obj(name, *fields, uid=None, **keys):
    return ObjectDef.model_validate({"name": name, "uid": uid or name, "fields": list(fields), **keys})


def kinds(ops):
    return [op.kind for op in ops]


def test_no_change_no_operation():
    a = obj("lead", {"name": "name", "uid": "f1", "type": "text"})
    assert d.diff([a], [a]) == []


def test_rename_is_a_rename_not_drop_and_add():
    a = obj("lead", {"name": "name", "uid": "f1", "type": "text"})
    b = obj("lead", {"name": "full_name", "uid": "f1", "type": "text"})
    ops = d.diff([a], [b])
    assert kinds(ops) == ["rename_field"]
    assert ops[0].describe() == "rename field lead.name to full_name"


def test_type_change_and_unique_and_index():
    a = obj("lead", {"name": "n", "uid": "f1", "type": "text", "unique": True}, {"name": "m", "uid": "f2", "type": "text"})
    b = obj("lead", {"name": "n", "uid": "f1", "type": "integer", "unique": True}, {"name": "m", "uid": "f2", "type": "text", "indexed": True})
    assert kinds(d.diff([a], [b])) == ["drop_unique", "change_type", "add_unique", "add_index"]


def test_object_ops_in_order_and_deferred_lookups():
    a = obj("account", {"name": "name", "uid": "a1", "type": "text"})
    contact = obj("contact", {"name": "boss", "uid": "c1", "type": "lookup", "to": "deal"})
    deal = obj("deal", {"name": "who", "uid": "d1", "type": "lookup", "to": "contact"})
    ops = d.diff([a], [contact, deal])
    assert kinds(ops)[:1] == ["drop_object"]
    creates = [op for op in ops if op.kind == "create_object"]
    assert len(creates) == 2
    assert sum(len(op.deferred_lookups) for op in creates) == 1
    assert "add_foreign_key" in kinds(ops)


def test_restore_from_archive():
    f = {"name": "score", "uid": "f9", "type": "integer"}
    a = obj("lead", {"name": "name", "uid": "f1", "type": "text"})
    b = obj("lead", {"name": "name", "uid": "f1", "type": "text"}, f)
    archive = d.Archive(fields={("lead", "f9"): ObjectDef.model_validate({"name": "x", "fields": [f]}).fields[0]})
    assert kinds(d.diff([a], [b], archive)) == ["restore_field"]


def test_metadata_only_change():
    a = obj("lead", {"name": "name", "uid": "f1", "type": "text", "label": "Name"})
    b = obj("lead", {"name": "name", "uid": "f1", "type": "text", "label": "Full name"})
    ops = d.diff([a], [b])
    assert kinds(ops) == ["update_object"]
    assert "name (label)" in ops[0].describe()


def test_max_length_and_lookup_target():
    acc = obj("account", {"name": "name", "uid": "a1", "type": "text"})
    org = obj("org", {"name": "name", "uid": "o1", "type": "text"})
    a = obj("lead", {"name": "t", "uid": "f1", "type": "text", "max_length": 50}, {"name": "l", "uid": "f2", "type": "lookup", "to": "account"})
    b = obj("lead", {"name": "t", "uid": "f1", "type": "text", "max_length": 20}, {"name": "l", "uid": "f2", "type": "lookup", "to": "org"})
    ops = d.diff([acc, org, a], [acc, org, b])
    assert set(kinds(ops)) >= {"change_max_length", "change_lookup_target"}


def test_renamed_lookup_target_is_not_a_target_change():
    acc = obj("account", {"name": "name", "uid": "a1", "type": "text"}, uid="A")
    org = obj("org", {"name": "name", "uid": "a1", "type": "text"}, uid="A")
    a = obj("lead", {"name": "l", "uid": "f2", "type": "lookup", "to": "account"})
    b = obj("lead", {"name": "l", "uid": "f2", "type": "lookup", "to": "org"})
    ops = d.diff([acc, a], [org, b])
    assert "change_lookup_target" not in kinds(ops)
    assert "rename_object" in kinds(ops)
