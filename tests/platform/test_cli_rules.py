"""The rules from the command line: `loom import` saves through the rules
(and `--skip-rules REASON` lets an admin past them, on the record), and
`loom rollups check` / `recompute` find and repair drift. Runs the real
`loom` command on the crm pack."""

from __future__ import annotations

import json
import os
import subprocess
from decimal import Decimal

import pytest
import sqlalchemy as sa

from loomcrm.platform import systemdb
from loomcrm.platform.db import create_engine
from support import LOOM

HEADER = "name,account,stage,amount,close_date\n"


def loom(*args, data_dir):
    env = {**os.environ, "LOOM_DATA_DIR": str(data_dir)}
    env.pop("LOOM_DATABASE_URL", None)
    return subprocess.run([LOOM, *args], env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def crm(tmp_path_factory):
    """A data folder with the crm pack (and its sample data), an admin and a sales rep."""
    folder = tmp_path_factory.mktemp("crm")
    assert loom("pack", "install", "crm", data_dir=folder).returncode == 0
    for name, role in (("boss", "admin"), ("rep", "user")):
        assert loom("user", "create", name, "--role", role, "--password", f"{name}-password-1", data_dir=folder).returncode == 0
    return folder


def engine_of(folder):
    return create_engine(f"sqlite:///{folder / 'loom.db'}")


def account(engine, name: str) -> dict:
    with engine.connect() as conn:
        return dict(conn.execute(sa.text("SELECT * FROM o_account WHERE name = :n"), {"n": name}).mappings().one())


def test_sample_data_has_its_formulas_and_exact_rollups(crm):
    engine = engine_of(crm)
    with engine.connect() as conn:
        opportunities = conn.execute(sa.text("SELECT amount, expected_revenue, stage FROM o_opportunity")).mappings().all()
    assert any(o["amount"] for o in opportunities)
    assert all(o["expected_revenue"] is not None for o in opportunities)
    assert Decimal(str(account(engine, "杭州云帆电子商务有限公司")["open_pipeline"])) == Decimal("86000")
    checked = loom("rollups", "check", data_dir=crm)
    assert checked.returncode == 0 and "0 drifted values" in checked.stdout, checked.stdout + checked.stderr


def test_import_runs_the_rules_and_an_admin_may_skip_them_on_the_record(crm, tmp_path):
    engine = engine_of(crm)
    before = Decimal(str(account(engine, "佛山美家建材有限公司")["open_pipeline"]))
    file = tmp_path / "deals.csv"
    file.write_text(HEADER + "美家 门店扩容,佛山美家建材有限公司,initial_contact,12000,2099-01-31\n"
                             "美家 老系统迁移,佛山美家建材有限公司,initial_contact,3000,2001-01-31\n", "utf-8")

    plain = loom("import", "opportunity", str(file), "--user", "rep", data_dir=crm)
    assert plain.returncode == 0, plain.stderr
    assert "Imported 1 of 2 rows" in plain.stdout and "1 rejected" in plain.stdout
    rejected = (tmp_path / "deals.csv.rejected.csv").read_text("utf-8")
    assert "老系统迁移" in rejected and "close date cannot be in the past" in rejected
    # the saved row moved the account's rollup in the same transaction
    assert Decimal(str(account(engine, "佛山美家建材有限公司")["open_pipeline"])) == before + 12000

    retry = tmp_path / "retry.csv"
    retry.write_text(HEADER + "美家 老系统迁移,佛山美家建材有限公司,initial_contact,3000,2001-01-31\n", "utf-8")
    for args, message in ((["--user", "rep", "--skip-rules", "old data"], "only an administrator"),
                          (["--skip-rules", "old data"], "only an administrator"),
                          (["--user", "boss", "--skip-rules", "  "], "needs a reason")):
        refused = loom("import", "opportunity", str(retry), *args, data_dir=crm)
        assert refused.returncode == 1 and message in refused.stderr and "Traceback" not in refused.stderr, refused.stderr

    skipped = loom("import", "opportunity", str(retry), "--user", "boss", "--skip-rules", "migration from the old CRM", data_dir=crm)
    assert skipped.returncode == 0 and "Imported 1 of 1 rows" in skipped.stdout, skipped.stdout + skipped.stderr
    with engine.connect() as conn:
        rid = conn.execute(sa.text("SELECT id FROM o_opportunity WHERE name = '美家 老系统迁移'")).scalar_one()
        entry = conn.execute(sa.select(systemdb.history).where(systemdb.history.c.record_id == rid,
                                                               systemdb.history.c.field == "_rules")).mappings().one()
        boss = conn.execute(sa.select(systemdb.users.c.id).where(systemdb.users.c.username == "boss")).scalar_one()
    assert entry["note"] == "rules skipped: migration from the old CRM" and entry["changed_by"] == boss
    assert [p["rule"] for p in entry["new_value"]["problems"]] == ["close_date_not_past"]
    assert Decimal(str(account(engine, "佛山美家建材有限公司")["open_pipeline"])) == before + 15000


def test_rollups_check_reports_drift_and_recompute_repairs_it(crm):
    engine = engine_of(crm)
    right = account(engine, "广州鲜果汇食品有限公司")
    with engine.begin() as conn:  # what a bad manual fix in the database would do
        conn.execute(sa.text("UPDATE o_account SET open_pipeline = 1, open_opportunities = 99 WHERE id = :id"), {"id": right["id"]})

    checked = loom("rollups", "check", "--json", data_dir=crm)
    assert checked.returncode == 1
    drift = {(d["field"], d["id"]): d for d in json.loads(checked.stdout)["drift"]}
    assert set(drift) == {("open_pipeline", right["id"]), ("open_opportunities", right["id"])}
    assert Decimal(drift[("open_pipeline", right["id"])]["expected"]) == Decimal(str(right["open_pipeline"]))
    only_one = loom("rollups", "check", "account", "open_opportunities", data_dir=crm)
    assert only_one.returncode == 1 and "open_opportunities" in only_one.stdout and "open_pipeline" not in only_one.stdout

    for args, message in ((["nothing"], "there is no object 'nothing'"), (["account", "name"], "no rollup field 'name'")):
        wrong = loom("rollups", "recompute", *args, data_dir=crm)
        assert wrong.returncode == 1 and message in wrong.stderr and "Traceback" not in wrong.stderr, wrong.stderr

    repaired = loom("rollups", "recompute", "account", data_dir=crm)
    assert repaired.returncode == 0 and "records changed" in repaired.stdout, repaired.stdout + repaired.stderr
    after = account(engine, "广州鲜果汇食品有限公司")
    assert (after["open_pipeline"], after["open_opportunities"], after["version"]) == \
        (right["open_pipeline"], right["open_opportunities"], right["version"])
    assert loom("rollups", "check", data_dir=crm).returncode == 0
