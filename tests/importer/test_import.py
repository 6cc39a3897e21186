"""`loom import OBJECT FILE [--map COL=FIELD ...]`: the Maven pipeline into a
small bundle, every encoding and file kind, and hostile or broken input.
Runs the real command line (in-process through Typer, or as a process)."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from loomcrm.platform import systemdb
from loomcrm.platform.cli import app
from loomcrm.platform.db import create_engine
from loomcrm.runtime.importer import neutralise
from support import LOOM

HERE = Path(__file__).resolve().parent
BUNDLE = HERE / "pipeline"
MAVEN = HERE.parents[1].parent / "shared" / "data" / "maven-crm"
HEADER = "opportunity_id,sales_agent,product,account,deal_stage,engage_date,close_date,close_value\n"


def loom(env: dict, *args: str):
    result = CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)
    return result


@pytest.fixture
def env(tmp_path, sqlite_url):
    """A database with the pipeline bundle, its products and two accounts."""
    env = {"LOOM_DATA_DIR": str(tmp_path / "data"), "LOOM_DATABASE_URL": sqlite_url}
    assert loom(env, "pack", "install", str(BUNDLE)).exit_code == 0
    (tmp_path / "products.csv").write_text("name,series,sales_price\nGTX Basic,GTX,550\nMG Special,MG,55\n")
    (tmp_path / "accounts.csv").write_text("name,sector\nAcme Corporation,technolgy\n云端科技,软件\n")
    assert loom(env, "import", "product", str(tmp_path / "products.csv")).exit_code == 0
    assert loom(env, "import", "account", str(tmp_path / "accounts.csv")).exit_code == 0
    return env


def rows(env, object_name: str) -> list[dict]:
    engine = create_engine(env["LOOM_DATABASE_URL"])
    try:
        with engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.text(f"SELECT * FROM o_{object_name} ORDER BY created_at, id"))]
    finally:
        engine.dispose()


def rejected(path: Path) -> list[dict]:
    with path.with_name(path.name + ".rejected.csv").open(encoding="utf-8-sig", newline="") as f:
        return list(csv.DictReader(f))


# --- the shared pipeline ------------------------------------------------------------------------

def _import_maven(tmp_path: Path, env: dict, run) -> None:
    for name in ("accounts.csv", "products.csv", "sales_pipeline.csv"):
        shutil.copy(MAVEN / name, tmp_path / name)
    assert run("pack", "install", str(BUNDLE)).returncode == 0
    accounts = run("import", "account", str(tmp_path / "accounts.csv"), "--map", "account=name")
    assert accounts.returncode == 0, accounts.stderr
    assert "Imported 85 of 85 rows into account" in accounts.stdout and "0 rejected" in accounts.stdout
    products = run("import", "product", str(tmp_path / "products.csv"), "--map", "product=name")
    assert "Imported 7 of 7 rows into product" in products.stdout
    deals = run("import", "deal", str(tmp_path / "sales_pipeline.csv"), "--batch-size", "700")
    assert deals.returncode == 0, deals.stderr
    # The pipeline calls the product `GTXPro`, products.csv `GTX Pro`: those 1,480 rows are refused.
    assert "Imported 7320 of 8800 rows into deal" in deals.stdout and "1480 rejected" in deals.stdout
    refused = rejected(tmp_path / "sales_pipeline.csv")
    assert len(refused) == 1480
    assert {r["product"] for r in refused} == {"GTXPro"}
    assert refused[0]["line"] == "3" and refused[0]["opportunity_id"] == "Z063OYW0"
    assert refused[0]["errors"] == "product: not_found: no product titled 'GTXPro' or with that id"
    with (tmp_path / "sales_pipeline.csv").open(newline="") as f:
        lines = {str(i): r for i, r in enumerate(csv.DictReader(f), start=2)}
    assert all(lines[r["line"]]["opportunity_id"] == r["opportunity_id"] for r in refused)

    engine = create_engine(env["LOOM_DATABASE_URL"])
    try:
        with engine.connect() as conn:
            deals = conn.execute(sa.text("SELECT count(*), count(account), count(close_value) FROM o_deal")).one()
            # 1,425 deals have no account; Prospecting and Engaging rows have no value.
            assert deals[0] == 7320 and deals[1] < 7320 and deals[2] < 7320
            acme = conn.execute(sa.text("SELECT id FROM o_account WHERE name = 'Acme Corporation'")).scalar()
            assert conn.execute(sa.text("SELECT count(*) FROM o_deal WHERE account = :a"), {"a": acme}).scalar() > 0
            # Through the record service: history of tracked fields and one outbox event per record.
            events = conn.execute(sa.select(sa.func.count()).select_from(systemdb.outbox)
                                  .where(systemdb.outbox.c.object == "deal")).scalar()
            history = conn.execute(sa.select(sa.func.count()).select_from(systemdb.history)
                                   .where(systemdb.history.c.object == "deal", systemdb.history.c.field == "deal_stage")).scalar()
            assert events == 7320 and history == 7320
    finally:
        engine.dispose()


@pytest.mark.slow
def test_the_maven_pipeline_on_sqlite_and_postgresql(tmp_path, database_url):
    env = {**os.environ, "LOOM_DATA_DIR": str(tmp_path / "data"), "LOOM_DATABASE_URL": database_url}

    def run(*args):
        return subprocess.run([LOOM, *args], env=env, capture_output=True, text=True, timeout=600)

    _import_maven(tmp_path, env, run)


# --- encodings and file kinds ------------------------------------------------------------------

@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gb18030"])
def test_encodings(env, tmp_path, encoding):
    path = tmp_path / f"deals-{encoding}.csv"
    path.write_bytes((HEADER + "D1,王小明,GTX Basic,云端科技,Won,2016-10-20,2017-03-01,1054\n"
                      "D2,Ada,MG Special,Acme Corporation,Engaging,2016-10-21,,\n").encode(encoding))
    result = loom(env, "import", "deal", str(path))
    assert result.exit_code == 0, result.output
    assert "Imported 2 of 2 rows" in result.stdout and "0 rejected" in result.stdout
    saved = rows(env, "deal")
    assert [r["sales_agent"] for r in saved] == ["王小明", "Ada"]
    assert not path.with_name(path.name + ".rejected.csv").exists()


@pytest.mark.parametrize("content, message", [
    ((HEADER + "D1,José Müller,GTX Basic,,Won,,,\n").encode("utf-16"), "UTF-16"),
    ((HEADER + "D1,José Müller Ñandú,GTX Basic,,Won,,,\n").encode("latin-1"), "not UTF-8 or GB18030"),
    (HEADER.encode() + b"D1,\x00\x01\x02,GTX Basic,,Won,,,\n", "NUL bytes"),
    (b"", "is empty"),
    (b"\n\n  \n", "is empty"),
])
def test_files_that_cannot_be_read_exit_1_with_a_message(env, tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    result = loom(env, "import", "deal", str(path))
    assert result.exit_code == 1
    assert message in result.stderr and "Traceback" not in result.output
    assert rows(env, "deal") == []


def test_missing_file_unknown_object_and_bad_workbooks(env, tmp_path):
    assert "does not exist" in loom(env, "import", "deal", str(tmp_path / "nope.csv")).stderr
    assert "is not a file" in loom(env, "import", "deal", str(tmp_path)).stderr
    ok = tmp_path / "ok.csv"
    ok.write_text(HEADER)
    result = loom(env, "import", "nothing", str(ok))
    assert result.exit_code == 1 and "there is no object 'nothing'" in result.stderr
    broken = tmp_path / "broken.xlsx"
    broken.write_bytes(b"PK\x03\x04 this is no workbook")
    result = loom(env, "import", "deal", str(broken))
    assert result.exit_code == 1 and "not a readable XLSX workbook" in result.stderr
    old = tmp_path / "old.xls"
    old.write_bytes(b"\xd0\xcf\x11\xe0" + b"\x00" * 100)
    assert "old Excel .xls" in loom(env, "import", "deal", str(old)).stderr


def test_xlsx(env, tmp_path):
    import datetime

    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["Opportunity id", "product", "account", "deal_stage", "close_date", "close_value", "note"])
    sheet.append(["X1", "GTX Basic", "云端科技", "Won", datetime.datetime(2017, 3, 1), 1054, "=HYPERLINK(\"http://x\")"])
    sheet.append(["X2", "MG Special", None, "Lost", datetime.date(2017, 4, 2), 12.5, None])
    sheet.append([None, None, None, None, None, None, None])
    sheet.append(["X3", "GTXPro", None, "Won", "not a date", -3, None])
    sheet["G2"].data_type = "s"   # a text cell that reads like a formula
    sheet["H3"] = "=1+2"          # a real formula with no cached value: read as empty
    path = tmp_path / "deals.xlsx"
    book.save(path)
    result = loom(env, "import", "deal", str(path))
    assert result.exit_code == 0, result.output
    assert "Imported 2 of 3 rows" in result.stdout and "1 rejected" in result.stdout
    saved = {r["opportunity_id"]: r for r in rows(env, "deal")}   # the label "Opportunity id" names the field
    assert str(saved["X1"]["close_date"]) == "2017-03-01" and saved["X1"]["close_value"] == 1054
    assert saved["X2"]["close_value"] == pytest.approx(12.5)
    # Text that reads like a formula is stored as text, never run.
    assert saved["X1"]["note"] == '=HYPERLINK("http://x")'
    [bad] = rejected(path)
    assert bad["line"] == "5"
    assert "product: not_found" in bad["errors"] and "close_date:" in bad["errors"] and "close_value: min" in bad["errors"]


# --- columns and mapping -----------------------------------------------------------------------

def test_unknown_columns_are_skipped_and_said(env, tmp_path):
    path = tmp_path / "deals.csv"
    path.write_text("opportunity_id,product,deal_stage,colour,Opportunity Notes\nD1,GTX Basic,Won,red,hello\n")
    result = loom(env, "import", "deal", str(path))
    assert result.exit_code == 0 and "Imported 1 of 1 rows" in result.stdout
    assert "'colour' is not a field of deal: skipped" in result.stderr
    assert "'Opportunity Notes' is not a field of deal" in result.stderr
    path.write_text("opportunity_id,product,deal_stage,colour,Opportunity Notes\nD2,GTX Basic,Won,red,hello\n")
    result = loom(env, "import", "deal", str(path), "--map", "Opportunity Notes=note", "--map", "colour=")
    assert result.exit_code == 0 and "Imported 1 of 1 rows" in result.stdout and "colour" not in result.stderr
    assert [r["note"] for r in rows(env, "deal")] == [None, "hello"]


def test_mapping_mistakes_exit_1_before_anything_is_saved(env, tmp_path):
    path = tmp_path / "deals.csv"
    path.write_text("Deal,product,deal_stage\nD1,GTX Basic,Won\n")
    for args, message in [
        (["--map", "Deal=nonexistent"], "deal has no field 'nonexistent'"),
        (["--map", "Deal=id"], "it is set by Loom"),
        (["--map", "Missing=opportunity_id"], "the file has no column 'Missing'"),
        (["--map", "no-equals-sign"], "--map takes COL=FIELD"),
        (["--map", "Deal=product"], "both fill deal.product"),
        (["--map", "Deal=", "--map", "product=", "--map", "deal_stage="], "no column of the file is a field of deal"),
    ]:
        result = loom(env, "import", "deal", str(path), *args)
        assert result.exit_code == 1, (args, result.output)
        assert message in result.stderr, (args, result.stderr)
    assert rows(env, "deal") == []
    result = loom(env, "import", "deal", str(path), "--map", "Deal=opportunity_id")
    assert result.exit_code == 0 and "Imported 1 of 1 rows" in result.stdout


def test_header_only_is_zero_rows(env, tmp_path):
    path = tmp_path / "deals.csv"
    path.write_text(HEADER)
    result = loom(env, "import", "deal", str(path))
    assert result.exit_code == 0 and "Imported 0 of 0 rows" in result.stdout


# --- rows ----------------------------------------------------------------------------------------

def test_ragged_rows_quoted_newlines_and_line_numbers(env, tmp_path):
    path = tmp_path / "deals.csv"
    path.write_bytes((HEADER +
                      "D1,Ada,GTX Basic,,Won,,,\r\n"
                      "D2,Ada,GTX Basic,,Won\r\n"                       # line 3: too few cells
                      '"D3","Line one\r\nline two",GTX Basic,,Won,,,\r\n'  # lines 4-5: a quoted newline
                      "\r\n"                                             # line 6: blank, skipped
                      "D4,Ada,GTX Basic,,Won,,,,extra,cells\r\n"          # line 7: too many cells
                      "D5,Ada,GTX Basic,,Won,,,\r\n").encode())           # line 8
    result = loom(env, "import", "deal", str(path))
    assert result.exit_code == 0
    assert "Imported 3 of 5 rows" in result.stdout and "2 rejected" in result.stdout
    refused = rejected(path)
    assert [(r["line"], r["opportunity_id"], r["errors"]) for r in refused] == [
        ("3", "D2", "the row has 5 cells, the header has 8"),
        ("7", "D4", "the row has 10 cells, the header has 8")]
    assert [r["sales_agent"] for r in rows(env, "deal")] == ["Ada", "Line one\r\nline two", "Ada"]


def test_every_problem_of_a_row_is_reported(env, tmp_path):
    path = tmp_path / "deals.csv"
    path.write_text(HEADER +
                    "D1,Ada,Nope,Nobody Inc,Maybe,2016-13-01,yesterday,-5\n"
                    ",Ada,GTX Basic,,Won,,,\n"
                    "D3,Ada,GTX Basic,Acme Corporation,Won,2016-10-20,2017-03-01,1054.005\n"
                    ",Ada,GTX Basic,,Maybe,,someday,12\n")
    result = loom(env, "import", "deal", str(path))
    assert result.exit_code == 0 and "0 of 4 rows" in result.stdout and "4 rejected" in result.stdout
    first, second, third, fourth = rejected(path)
    # Refused while reading (a lookup finds nothing): the other cells are checked all the same, in column order.
    assert first["errors"].split("; ") == [
        "product: not_found: no product titled 'Nope' or with that id",
        "account: not_found: no account titled 'Nobody Inc' or with that id",
        "deal_stage: invalid_option: 'Maybe' is not an option of deal_stage",
        "engage_date: type: engage_date must be a date like 2024-12-31",
        "close_date: type: close_date must be a date like 2024-12-31",
        "close_value: min: close_value must be at least 0"]
    assert "opportunity_id: required" in second["errors"]
    assert third["errors"] == "close_value: scale: close_value takes at most 2 decimals"
    # Refused by the record service: bad cells and missing values together.
    for code in ("opportunity_id: required", "deal_stage: invalid_option", "close_date: type"):
        assert code in fourth["errors"], (code, fourth["errors"])


def test_lookups_by_title_or_id_and_duplicates_in_one_batch(env, tmp_path):
    [product] = [r for r in rows(env, "product") if r["name"] == "MG Special"]
    path = tmp_path / "deals.csv"
    path.write_text(HEADER +
                    f"D1,Ada,{product['id']},,Won,,,\n"
                    "D2,Ada,MG Special,,Won,,,\n"
                    "D1,Bob,GTX Basic,,Won,,,\n"          # the same opportunity_id again: unique
                    "D4,Ada,GTX Basic,,Won,,,\n")
    result = loom(env, "import", "deal", str(path))
    assert result.exit_code == 0 and "Imported 3 of 4 rows" in result.stdout
    [dup] = rejected(path)
    assert dup["line"] == "4" and "opportunity_id: unique" in dup["errors"]
    saved = rows(env, "deal")
    assert [r["opportunity_id"] for r in saved] == ["D1", "D2", "D4"]
    assert saved[0]["product"] == saved[1]["product"] == product["id"]
    # The refused row left nothing behind: one event and one history row per saved record.
    engine = create_engine(env["LOOM_DATABASE_URL"])
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(systemdb.outbox).where(systemdb.outbox.c.object == "deal")).scalar() == 3
    engine.dispose()
    # Importing the same file again: every row clashes, nothing is saved, the old rejected file is replaced.
    again = loom(env, "import", "deal", str(path))
    assert again.exit_code == 0 and "Imported 0 of 4 rows" in again.stdout and len(rejected(path)) == 4


# --- hostile cells -----------------------------------------------------------------------------

def test_formula_cells_are_stored_as_text_and_neutralised_in_the_rejected_file(env, tmp_path):
    path = tmp_path / "deals.csv"
    evil = "=cmd|' /C calc'!A0"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["opportunity_id", "product", "deal_stage", "note", "close_value"])
        writer.writerow(["F1", "GTX Basic", "Won", evil, ""])
        writer.writerow(["F2", "GTX Basic", "Won", "@SUM(1+1)*cmd|' /C calc'!A0", "=1+2"])
        writer.writerow(["=HYPERLINK(\"http://evil\")", "+GTX", "Won", "-2+3", "-5"])
    result = loom(env, "import", "deal", str(path))
    assert result.exit_code == 0 and "Imported 1 of 3 rows" in result.stdout
    [saved] = rows(env, "deal")
    assert saved["note"] == evil   # stored exactly as given: Loom never evaluates a cell
    refused = rejected(path)
    assert refused[0]["note"] == "'@SUM(1+1)*cmd|' /C calc'!A0" and refused[0]["close_value"] == "'=1+2"
    assert refused[1]["opportunity_id"] == "'=HYPERLINK(\"http://evil\")" and refused[1]["product"] == "'+GTX"
    assert refused[1]["note"] == "'-2+3" and refused[1]["close_value"] == "-5"   # a plain negative number stays
    assert all(not value.startswith(("=", "+", "@")) for r in refused for value in r.values())


def test_neutralise():
    assert neutralise("=1+1") == "'=1+1" and neutralise("\t=x") == "'\t=x" and neutralise("＝1") == "'＝1"
    assert neutralise("-12.5") == "-12.5" and neutralise("+86 138") == "'+86 138" and neutralise("plain") == "plain"


def test_one_megabyte_cells(env, tmp_path):
    path = tmp_path / "accounts.csv"
    big = "长" * 1_048_576
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["name", "notes"])
        writer.writerow(["Big Notes Ltd", "x" * 999_999])   # fits long_text's max_length of 1,000,000
        writer.writerow(["Too Big Ltd", big])
        writer.writerow([big, "short"])
        writer.writerow(["After Ltd", "fine"])
    result = loom(env, "import", "account", str(path))
    assert result.exit_code == 0, result.output
    assert "Imported 2 of 4 rows" in result.stdout and "2 rejected" in result.stdout
    refused = rejected(path)
    assert [r["line"] for r in refused] == ["3", "4"]
    assert "notes: too_long" in refused[0]["errors"] and "name: too_long" in refused[1]["errors"]
    assert len(refused[0]["notes"]) == 1_048_576   # the original cell is kept for fixing
    names = {r["name"]: r for r in rows(env, "account")}
    assert len(names["Big Notes Ltd"]["notes"]) == 999_999 and "After Ltd" in names


def test_the_rejected_file_can_go_elsewhere(env, tmp_path):
    path = tmp_path / "deals.csv"
    path.write_text(HEADER + "D1,Ada,Nope,,Won,,,\n")
    elsewhere = tmp_path / "out" / "refused.csv"
    elsewhere.parent.mkdir()
    result = loom(env, "import", "deal", str(path), "--rejected", str(elsewhere))
    assert result.exit_code == 0 and str(elsewhere) in result.stdout and "1 rejected" in result.stdout
    assert not path.with_name("deals.csv.rejected.csv").exists() and "product: not_found" in elsewhere.read_text()


def test_small_batches_keep_the_file_order_and_refuse_repeats_across_batches(env, tmp_path):
    path = tmp_path / "deals.csv"
    path.write_text(HEADER +
                    "D1,Ada,GTX Basic,,Won,,,\n"
                    "D2,Ada,GTX Basic,,Won,,,\n"
                    "D3,Ada,GTX Basic,,Won,,,\n"
                    "D3,Bob,GTX Basic,,Won,,,\n"       # line 5: repeats line 4 in the same batch
                    "D1,Cy,GTX Basic,,Won,,,\n"        # line 6: repeats line 2, saved in an earlier batch
                    "D6,Di,Nope,,Won,,,\n"             # line 7: refused while reading
                    "D7,Ed,GTX Basic,,Won,,,\n")
    result = loom(env, "import", "deal", str(path), "--batch-size", "2")
    assert result.exit_code == 0 and "Imported 4 of 7 rows" in result.stdout and "3 rejected" in result.stdout
    assert [(r["line"], r["errors"]) for r in rejected(path)] == [
        ("5", "opportunity_id: unique: another deal has this opportunity_id"),
        ("6", "opportunity_id: unique: another deal has this opportunity_id"),
        ("7", "product: not_found: no product titled 'Nope' or with that id")]
    assert [r["opportunity_id"] for r in rows(env, "deal")] == ["D1", "D2", "D3", "D7"]
