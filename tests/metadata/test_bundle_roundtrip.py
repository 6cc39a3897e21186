"""Writing bundles back to folders (export), uids, and the shipped crm pack."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loomcrm.metadata.bundle import bundle_files, ensure_uids, read_bundle, write_bundle
from loomcrm.metadata.model import as_json
from loomcrm.metadata.validate import load_valid_bundle, validate_bundle

REPO = Path(__file__).resolve().parents[2]
CRM = REPO / "apps" / "crm"


def _strip_uids(bundle):
    data = {rel: value for rel, value in bundle_files(bundle).items()}
    for rel, value in data.items():
        if rel.startswith("objects/"):
            value.pop("uid", None)
            for fld in value["fields"]:
                fld.pop("uid", None)
    return data


def test_round_trip(bundle_dir, tmp_path):
    bundle = load_valid_bundle(bundle_dir.root)
    before = _strip_uids(bundle)
    ensure_uids(bundle)
    out = tmp_path / "export"
    csv = (bundle_dir.root / "data" / "account.csv").read_bytes()
    write_bundle(bundle, out, data={"data/account.csv": csv})
    assert validate_bundle(out) == []
    again = read_bundle(out)
    assert _strip_uids(again) == before
    assert [o.uid for o in again.objects] == [o.uid for o in bundle.objects]
    assert again.data_files == ["data/account.csv"]
    assert (out / "data" / "account.csv").read_bytes() == csv


def test_written_files_read_well(bundle_dir, tmp_path):
    bundle = load_valid_bundle(bundle_dir.root)
    write_bundle(bundle, tmp_path / "out")
    text = (tmp_path / "out" / "objects" / "opportunity.json").read_text(encoding="utf-8")
    assert "商机" in text  # not \u escapes
    data = json.loads(text)
    assert list(data)[0] == "name"
    assert list(data["fields"][0])[:2] == ["name", "type"]
    assert "required" not in data["fields"][4]  # defaults left out
    assert data["fields"][9].get("scale") == 2


def test_write_refuses_a_non_empty_folder(bundle_dir, tmp_path):
    bundle = load_valid_bundle(bundle_dir.root)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        write_bundle(bundle, out)


def test_replace_removes_stale_files_only(bundle_dir, tmp_path):
    bundle = load_valid_bundle(bundle_dir.root)
    out = tmp_path / "out"
    write_bundle(bundle, out)
    (out / "objects" / "gone.json").write_text("{}")
    (out / "README.md").write_text("mine")
    bundle.objects = [o for o in bundle.objects if o.name != "task"]
    bundle.workflows = [w for w in bundle.workflows if w.name != "big_deal_follow_up"]
    write_bundle(bundle, out, replace=True)
    assert sorted(p.name for p in (out / "objects").iterdir()) == ["account.json", "contact.json", "opportunity.json"]
    assert (out / "README.md").read_text() == "mine"


def test_ensure_uids_is_stable_and_keeps_given_ones(bundle_dir):
    first = ensure_uids(load_valid_bundle(bundle_dir.root))
    second = ensure_uids(load_valid_bundle(bundle_dir.root))
    uids = [o.uid for o in first.objects] + [f.uid for o in first.objects for f in o.fields]
    assert uids == [o.uid for o in second.objects] + [f.uid for o in second.objects for f in o.fields]
    assert len(set(uids)) == len(uids)
    assert first.object("opportunity").uid == "sample.opportunity"
    assert first.object("opportunity").field("amount").uid == "sample.opportunity.amount"

    bundle = load_valid_bundle(bundle_dir.root)
    bundle.objects[0].uid = "sample.contact"  # taken by hand: the generated one steps aside
    bundle.objects[0].fields[0].uid = "keep-me"
    ensure_uids(bundle)
    assert bundle.objects[0].uid == "sample.contact"
    assert bundle.objects[0].fields[0].uid == "keep-me"
    assert bundle.object("contact").uid == "sample.contact-2"


def test_long_names_give_short_uids(bundle_dir):
    bundle = load_valid_bundle(bundle_dir.root)
    bundle.objects[0].fields[0].name = "n" * 63
    ensure_uids(bundle)
    assert len(bundle.objects[0].fields[0].uid) <= 64


@pytest.mark.skipif(not (CRM / "bundle.json").exists(), reason="apps/crm/bundle.json is not written yet")
def test_shipped_crm_pack_is_valid():
    problems = validate_bundle(CRM)
    assert problems == [], "\n".join(map(str, problems))


@pytest.mark.skipif(not (CRM / "bundle.json").exists(), reason="apps/crm/bundle.json is not written yet")
def test_shipped_crm_pack_round_trips(tmp_path):
    bundle = ensure_uids(load_valid_bundle(CRM))
    data = {rel: (CRM / rel).read_bytes() for rel in bundle.data_files}
    write_bundle(bundle, tmp_path / "crm", data=data)
    problems = validate_bundle(tmp_path / "crm")
    assert problems == [], "\n".join(map(str, problems))
    assert [as_json(o) for o in read_bundle(tmp_path / "crm").objects] == [as_json(o) for o in bundle.objects]
