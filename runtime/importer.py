"""`loom import OBJECT FILE [--map COL=FIELD ...]`: CSV and XLSX files into
an object's records, every row through the record service (so rules,
history and outbox apply exactly as for an API write).

- Files: CSV in UTF-8, UTF-8 with a BOM or GB18030 (detected), and XLSX
  (the first worksheet). The first row names the columns; a column maps to
  the field of the same name (or label) unless `--map COL=FIELD` says
  otherwise; `--map COL=` skips a column. Columns that map to nothing are
  reported and skipped.
- Cells are read per field type: the record service coerces each cell's
  text once (the registry's `text_input` says what it is handed); a lookup
  cell names its target by the target's title field value or by its id
  (a column `FIELD.id`, as exports write beside `FIELD`, fills the lookup
  instead of `FIELD`); a user cell by user name or id.
- Valid rows are saved in batches, one transaction per batch, with the
  record service's `create_many` (checks and writes per batch, the same
  rules as one save at a time): a refused row never leaves anything
  behind and the others are still saved.
- Each rejected row goes to `FILE.rejected.csv` beside the input (or the
  file `--rejected` names): its
  original cells, then `line` (its line in the file) and `errors`. Cells
  that a spreadsheet would run as a formula are neutralised there.
- `ImportFileError` means the file cannot be read at all: nothing was saved.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import gc
import io
import os
import re
import time
import unicodedata
from dataclasses import dataclass, field as dc_field
from datetime import date, datetime, time as dtime
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import sqlalchemy as sa

from loomcrm.metadata.model import FieldDef, ObjectDef
from loomcrm.platform import systemdb
from loomcrm.platform.db import write_transaction

from .fields import FieldError, field_type
from .records import Origin, RecordError
from .tables import CompiledSchema

IMPORT = Origin("import")
BATCH_SIZE = 500
MAX_CELL = 16 * 1024 * 1024          # characters in one CSV cell before the row is refused
SNIFF_CHUNK = 1 << 20
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")
_NUMBER = re.compile(r"^[+-]?(\d+([.,]\d*)?|[.,]\d+)([eE][+-]?\d+)?$")
SYSTEM_COLUMNS = ("id", "version", "created_at", "updated_at", "created_by", "updated_by")

csv.field_size_limit(MAX_CELL)


class ImportFileError(Exception):
    """The file cannot be imported at all (unreadable, empty, bad mapping)."""


@dataclass
class ImportResult:
    object: str
    path: Path
    rows: int = 0
    saved: int = 0
    rejected: int = 0
    rejected_path: Path | None = None
    seconds: float = 0.0
    encoding: str = ""
    skipped_columns: list[str] = dc_field(default_factory=list)

    def summary(self) -> str:
        text = (f"Imported {self.saved} of {self.rows} rows into {self.object} in {self.seconds:.1f} s; "
                f"{self.rejected} rejected")
        if self.rejected_path is not None:
            text += f" (line and reasons in {self.rejected_path})"
        return text + "."


@dataclass
class _Row:
    line: int
    cells: list[str]
    errors: list[str] = dc_field(default_factory=list)
    values: dict[str, Any] | None = None


# --- reading files ----------------------------------------------------------------------------

def detect_encoding(path: Path) -> str:
    """utf-8-sig, utf-8 or gb18030, decided by decoding the whole file
    strictly; anything else is an ImportFileError naming the problem."""
    with path.open("rb") as raw:
        head = raw.read(4)
        if head[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
            raise ImportFileError(f"{path} is UTF-16 (or UTF-32): save it as UTF-8 CSV and import that")
        raw.seek(0)
        candidates = ["utf-8-sig" if head.startswith(codecs.BOM_UTF8) else "utf-8", "gb18030"]
        first_error = None
        for encoding in candidates:
            raw.seek(0)
            decoder = codecs.getincrementaldecoder(encoding)("strict")
            offset = 0
            suspicious = 0
            try:
                while chunk := raw.read(SNIFF_CHUNK):
                    if b"\x00" in chunk:
                        at = offset + chunk.index(b"\x00")
                        raise ImportFileError(f"{path} holds NUL bytes (at byte {at}): it is not a text CSV file")
                    text = decoder.decode(chunk)
                    if encoding == "gb18030":
                        suspicious += _non_chinese(text)
                    offset += len(chunk)
                decoder.decode(b"", final=True)
            except UnicodeDecodeError as exc:
                if first_error is None:
                    first_error = (offset + exc.start, exc.object[exc.start:exc.start + 4] if isinstance(exc.object, bytes) else b"")
                continue
            if encoding == "gb18030" and suspicious:
                # GB18030 maps almost any byte string to something; text that
                # decodes to anything but Chinese and common symbols is some
                # other encoding (Latin-1, Shift-JIS, ...).
                break
            return encoding
    at, sample = first_error or (0, b"")
    raise ImportFileError(f"{path} is not UTF-8 or GB18030 text (undecodable bytes {sample!r} at byte {at}): "
                          f"save it as CSV UTF-8 and import that")


def _non_chinese(text: str) -> int:
    bad = 0
    for ch in text:
        if ord(ch) < 0x80:
            continue
        if ("\u4e00" <= ch <= "\u9fff" or "\u3000" <= ch <= "\u303f" or "\uff00" <= ch <= "\uffef"
                or "\u3400" <= ch <= "\u4dbf" or "\u2000" <= ch <= "\u206f" or ch in "·×÷°±¥€£"
                or unicodedata.category(ch).startswith("P")):
            continue
        bad += 1
    return bad


class _Source:
    """A table of text cells from a CSV or XLSX file: `header`, then
    (line, cells) pairs, plus how far the reading has got (for progress)."""

    header: list[str]
    total: int
    encoding: str

    def rows(self) -> Iterator[tuple[int, list[str] | None, str | None]]:
        raise NotImplementedError

    def position(self) -> int:
        raise NotImplementedError

    def close(self) -> None:
        pass


class _CsvSource(_Source):
    def __init__(self, path: Path):
        self.encoding = detect_encoding(path)
        self.total = path.stat().st_size
        self._raw = path.open("rb")
        self._text = io.TextIOWrapper(self._raw, encoding=self.encoding, newline="")
        self._reader = csv.reader(self._text, strict=False)
        self._line = 1
        try:
            header = None
            for header in self._reader:
                if any(cell.strip() for cell in header):
                    break
                header = None
        except csv.Error as exc:
            self.close()
            raise ImportFileError(f"{path}: the header row cannot be read: {exc}") from None
        if header is None:
            self.close()
            raise ImportFileError(f"{path} is empty: it needs a header row naming the columns")
        self.header = header
        self._line = self._reader.line_num + 1

    def rows(self):
        reader = self._reader
        while True:
            start = self._line
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                self._line = reader.line_num + 1
                yield start, None, f"the row cannot be read: {exc}"
                continue
            self._line = reader.line_num + 1
            if not cells or (len(cells) == 1 and cells[0] == ""):
                continue   # a blank line
            yield start, cells, None

    def position(self) -> int:
        return self._raw.tell()

    def close(self) -> None:
        self._text.close()


class _XlsxSource(_Source):
    encoding = "xlsx"

    def __init__(self, path: Path):
        try:
            import openpyxl
        except ImportError:  # pragma: no cover - a dependency
            raise ImportFileError("reading XLSX needs the openpyxl package") from None
        try:
            self._book = openpyxl.load_workbook(path, read_only=True, data_only=True)
            sheet = self._book.worksheets[0]
        except Exception as exc:  # zipfile, XML and openpyxl errors alike: the file is not readable XLSX
            raise ImportFileError(f"{path} is not a readable XLSX workbook: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
        self.total = sheet.max_row or 0
        self._rows = sheet.iter_rows(values_only=True)
        self._line = 0
        header = None
        try:
            for values in self._rows:
                self._line += 1
                if any(v is not None and str(v).strip() for v in values):
                    header = [_cell_text(v) for v in values]
                    break
        except Exception as exc:
            self.close()
            raise ImportFileError(f"{path}: the first worksheet cannot be read: {exc}") from None
        if header is None:
            self.close()
            raise ImportFileError(f"{path} is empty: its first worksheet needs a header row naming the columns")
        while header and header[-1] == "":
            header.pop()
        self.header = header

    def rows(self):
        for values in self._rows:
            self._line += 1
            cells = [_cell_text(v) for v in values]
            while len(cells) > len(self.header) and cells[-1] == "":
                cells.pop()   # XLSX rows run to the sheet's widest column
            if not any(cells):
                continue
            if len(cells) < len(self.header):
                cells += [""] * (len(self.header) - len(cells))
            yield self._line, cells, None

    def position(self) -> int:
        return self._line

    def close(self) -> None:
        self._book.close()


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == dtime(0) and value.tzinfo is None else value.isoformat()
    if isinstance(value, (date, dtime)):
        return value.isoformat()
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    return str(value)


def open_source(path: Path) -> _Source:
    if not path.exists():
        raise ImportFileError(f"{path} does not exist")
    if not path.is_file():
        raise ImportFileError(f"{path} is not a file")
    try:
        with path.open("rb") as probe:
            magic = probe.read(4)
    except OSError as exc:
        raise ImportFileError(f"{path} cannot be read: {exc.strerror or exc}") from None
    if not magic:
        raise ImportFileError(f"{path} is empty: it needs a header row naming the columns")
    if path.suffix.lower() in (".xlsx", ".xlsm") or magic == b"PK\x03\x04":
        return _XlsxSource(path)
    if path.suffix.lower() == ".xls" or magic == b"\xd0\xcf\x11\xe0":
        raise ImportFileError(f"{path} is an old Excel .xls workbook: save it as .xlsx or CSV UTF-8")
    return _CsvSource(path)


# --- columns -----------------------------------------------------------------------------------

def parse_map(items: list[str]) -> dict[str, str]:
    """`COL=FIELD` pairs (`COL=` skips the column)."""
    mapping: dict[str, str] = {}
    for item in items:
        column, sep, target = item.partition("=")
        if not sep or not column.strip():
            raise ImportFileError(f"--map takes COL=FIELD (e.g. --map 'Deal Name=name'), not {item!r}")
        mapping[column.strip()] = target.strip()
    return mapping


def _label_texts(f: FieldDef) -> set[str]:
    label = f.label
    if label is None:
        return set()
    texts = [label] if isinstance(label, str) else list(label.values()) if isinstance(label, dict) else []
    return {t.strip().casefold() for t in texts if isinstance(t, str)}


def plan_columns(obj: ObjectDef, header: list[str], mapping: Mapping[str, str]) -> tuple[list[tuple[int, FieldDef | str]], list[str]]:
    """Which column fills which field: [(column index, FieldDef or 'owner')],
    and the columns skipped. Raises ImportFileError on a mapping that cannot work."""
    names = [h.strip() for h in header]
    for column, target in mapping.items():
        if column not in names:
            raise ImportFileError(f"--map {column}={target}: the file has no column {column!r} "
                                  f"(its columns: {', '.join(repr(n) for n in names[:30])})")
        if target:
            _target_field(obj, target, f"--map {column}={target}")
    plan: list[tuple[int, FieldDef | str]] = []
    skipped: list[str] = []
    used: dict[str, str] = {}
    # An export writes a lookup twice, as `FIELD` (the title) and `FIELD.id`:
    # the id links without ambiguity, so it fills the field.
    by_id = {name[:-3]: name for name in names
             if name.endswith(".id") and name not in mapping and (f := obj.field(name[:-3])) is not None
             and f.type == "lookup" and not _not_writable(f)}
    for index, name in enumerate(names):
        if name in by_id and name not in mapping:
            continue
        if name in by_id.values():
            plan.append((index, obj.field(name[:-3])))
            used[name[:-3]] = name
            continue
        if name in mapping:
            target = mapping[name]
            if not target:
                continue   # skipped on purpose: nothing to say
            f = _target_field(obj, target, f"--map {name}={target}")
        else:
            f = obj.field(name) if name else None
            if f is None:
                f = next((g for g in obj.fields if name and name.casefold() in _label_texts(g)), None)
            if f is None and name == "owner":
                f = "owner"
            if f is None or (f != "owner" and _not_writable(f)):
                skipped.append(name or f"(column {index + 1})")
                continue
        key = f if f == "owner" else f.name
        if key in used:
            raise ImportFileError(f"columns {used[key]!r} and {name!r} both fill {obj.name}.{key}: map one of them elsewhere "
                                  f"(--map '{name}=')")
        used[key] = name
        plan.append((index, f))
    if not plan:
        raise ImportFileError(f"no column of the file is a field of {obj.name}: map them with --map COL=FIELD "
                              f"(fields: {', '.join(f.name for f in obj.fields if not _not_writable(f))})")
    return plan, skipped


def _not_writable(f: FieldDef) -> bool:
    return not field_type(f).writable or bool(f.read_only)


def _target_field(obj: ObjectDef, target: str, where: str) -> FieldDef | str:
    if target == "owner":
        return "owner"
    f = obj.field(target)
    if f is None:
        hint = " (it is set by Loom)" if target in SYSTEM_COLUMNS else ""
        raise ImportFileError(f"{where}: {obj.name} has no field {target!r}{hint}; "
                              f"fields: {', '.join(f.name for f in obj.fields if not _not_writable(f))}")
    if _not_writable(f):
        raise ImportFileError(f"{where}: {obj.name}.{target} is a {f.type} field and cannot be imported")
    return f


# --- lookups -----------------------------------------------------------------------------------

class _Resolver:
    """Lookup cells by title or id, user cells by user name or id; each
    distinct value is looked up once per import."""

    def __init__(self, engine, schema: CompiledSchema):
        self.engine, self.schema = engine, schema
        self._cache: dict[tuple[str, str], tuple[str | None, str | None]] = {}

    def record(self, conn, target: str, cell: str) -> str:
        key = (target, cell)
        if key not in self._cache:
            self._cache[key] = self._find_record(conn, target, cell)
        rid, error = self._cache[key]
        if error:
            raise FieldError("not_found", error)
        return rid

    def _find_record(self, conn, target: str, cell: str):
        obj = self.schema.object(target)
        table = self.schema.tables.get(target)
        if obj is None or table is None:
            return None, f"there is no object {target!r}"
        alive = table.c._deleted_at.is_(None)
        title = obj.title_field or ("name" if obj.field("name") else None)
        if title and obj.field(title) is not None:
            found = conn.execute(sa.select(table.c.id).where(table.c[title] == cell, alive).limit(2)).scalars().all()
            if len(found) == 1:
                return found[0], None
            if len(found) > 1:
                return None, f"more than one {target} is titled {cell!r}: give its id"
        if len(cell) <= 32 and conn.execute(sa.select(table.c.id).where(table.c.id == cell, alive)).first() is not None:
            return cell, None
        return None, f"no {target} titled {cell!r} or with that id"

    def user(self, conn, cell: str) -> str:
        key = ("\x00user", cell)
        if key not in self._cache:
            users = systemdb.users
            row = conn.execute(sa.select(users.c.id).where(sa.or_(users.c.username == cell, users.c.id == cell[:32]))).first()
            self._cache[key] = (row[0], None) if row else (None, f"no user named {cell!r} or with that id")
        uid, error = self._cache[key]
        if error:
            raise FieldError("not_found", error)
        return uid


_LINKS = ("lookup", "user", "related_to")   # cells resolved to ids while reading, not coerced


def _parse_row(row: _Row, plan, resolver: _Resolver, conn, ctx, width: int) -> None:
    """The row's values as the record service takes them: lookups and users
    resolved to ids, other cells as text that the service coerces. A row
    refused here (a lookup that finds nothing) is never saved, so its other
    cells are coerced here to report every problem of the row at once."""
    if len(row.cells) != width:
        row.errors.append(f"the row has {len(row.cells)} cells, the header has {width}")
        return
    values: dict[str, Any] = {}
    errors: list[tuple[int, str]] = []
    for index, f, kind in plan:
        text = row.cells[index].strip()
        owner = kind is None   # the record's owner column
        name = "owner" if owner else f.name
        try:
            if not text:
                values[name] = None
            elif owner:
                values["owner"] = resolver.user(conn, text)
            elif f.type == "lookup":
                values[name] = resolver.record(conn, f.to, text)
            elif f.type == "user":
                values[name] = resolver.user(conn, text)
            elif f.type == "related_to":
                other, sep, ref = text.partition(":")
                if not sep or other.strip() not in (f.to or []):
                    raise FieldError("type", f"write it as OBJECT:TITLE-OR-ID, OBJECT one of {', '.join(f.to or [])}")
                values[name] = f"{other.strip()}:{resolver.record(conn, other.strip(), ref.strip())}"
            else:
                values[name] = kind.text_input(f, text, ctx)
        except FieldError as exc:
            errors.append((index, f"{name}: {exc.code}: {exc.message}"))
    if errors:
        failed = {index for index, _ in errors}
        for index, f, kind in plan:
            if kind is None or index in failed or f.type in _LINKS or values.get(f.name) is None:
                continue
            try:
                kind.coerce(f, values[f.name], ctx)
            except FieldError as exc:
                errors.append((index, f"{f.name}: {exc.code}: {exc.message}"))
        row.errors.extend(message for _, message in sorted(errors, key=lambda e: e[0]))
    row.values = values


# --- the rejected file -------------------------------------------------------------------------

def neutralise(cell: str) -> str:
    """A cell as a spreadsheet will show it but never run it (CSV injection)."""
    if cell and cell.startswith(FORMULA_START) and not _NUMBER.match(cell):
        return "'" + cell
    return cell


def rejected_path_for(path: Path) -> Path:
    return path.with_name(path.name + ".rejected.csv")


class _RejectedWriter:
    def __init__(self, path: Path, header: list[str]):
        self.path, self.header = path, header
        self._file = None
        self._writer = None

    def write(self, row: _Row) -> None:
        if self._writer is None:
            # UTF-8 with a BOM: spreadsheet programs then read Chinese correctly.
            self._file = self.path.open("w", encoding="utf-8-sig", newline="")
            self._writer = csv.writer(self._file)
            self._writer.writerow([neutralise(h) for h in self.header] + ["line", "errors"])
        cells = row.cells[:len(self.header)] + [""] * max(0, len(self.header) - len(row.cells))
        self._writer.writerow([neutralise(c) for c in cells] + [str(row.line), neutralise("; ".join(row.errors))])

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


# --- the import --------------------------------------------------------------------------------

def _record_errors(exc: RecordError) -> list[str]:
    if exc.errors:
        out = []
        for e in exc.errors:
            where = e.get("field") or ""
            extra = "".join(f" [{k} {e[k]}]" for k in ("rule", "stage") if e.get(k))
            out.append(f"{where}: {e.get('code')}: {e.get('message')}{extra}" if where else f"{e.get('code')}: {e.get('message')}")
        return out
    return [exc.detail]


def import_file(runtime, object_name: str, path: str | Path, mapping: Mapping[str, str] | None = None, *, user=None,
                batch_size: int = BATCH_SIZE, progress: Callable[[int, int], None] | None = None,
                on_start: Callable[[ImportResult, int], None] | None = None,
                rejected_path: str | Path | None = None) -> ImportResult:
    """Import one file into `object_name` through `runtime.records`.
    `progress(done, total)` is called after each batch, `total` in the
    source's own unit (bytes of CSV, rows of XLSX). Raises ImportFileError
    when nothing can be imported."""
    path = Path(path)
    started = time.perf_counter()
    schema = runtime.schema()
    obj = schema.object(object_name) if isinstance(object_name, str) else None
    if obj is None:
        raise ImportFileError(f"there is no object {object_name!r} (objects: {', '.join(sorted(schema.objects))})")
    source = open_source(path)
    result = ImportResult(object=obj.name, path=path, encoding=source.encoding)
    try:
        plan, result.skipped_columns = plan_columns(obj, source.header, mapping or {})
        if on_start is not None:
            on_start(result, source.total)
        rejected_path = Path(rejected_path) if rejected_path else rejected_path_for(path)
        if not os.access(rejected_path.parent, os.W_OK):
            raise ImportFileError(f"cannot write the rejected rows to {rejected_path} (the folder is read only): "
                                  f"name another file with --rejected")
        rejected_path.unlink(missing_ok=True)   # a stale one from an earlier run would mislead
        rejects = _RejectedWriter(rejected_path, source.header)
        resolver = _Resolver(runtime.engine, schema)
        ctx = runtime.context
        width = len(source.header)
        kinds = [(index, f, None) if isinstance(f, str) else (index, f, field_type(f)) for index, f in plan]
        batch: list[_Row] = []

        def reject(row: _Row) -> None:
            result.rejected += 1
            rejects.write(row)

        def flush() -> None:
            nonlocal batch
            good = [r for r in batch if not r.errors]
            if good:
                result.saved += _save_batch(runtime, schema, obj, good, user)
            for r in batch:   # in the file's order
                if r.errors:
                    reject(r)
            batch = []
            if progress is not None:
                progress(source.position(), source.total)

        with _settled_heap(), runtime.engine.connect() as read_conn:
            for line, cells, problem in source.rows():
                result.rows += 1
                row = _Row(line, cells if cells is not None else [])
                if problem:
                    row.errors.append(problem)
                else:
                    _parse_row(row, kinds, resolver, read_conn, ctx, width)
                    read_conn.rollback()   # never hold a read snapshot (or SQLite's lock) across batches
                batch.append(row)
                if len(batch) >= batch_size:
                    flush()
            flush()
        rejects.close()
        result.rejected_path = rejected_path if result.rejected else None
    finally:
        source.close()
    result.seconds = time.perf_counter() - started
    return result


@contextlib.contextmanager
def _settled_heap() -> Iterator[None]:
    """The objects alive when the import starts (metadata, SQLAlchemy's
    compiled statements, the modules) set aside from the garbage collector
    until it ends. A batch keeps its rows' objects alive, so the collector
    runs full collections during an import, and each walked that whole
    settled heap, which the import never frees: a fifth of its time. Left
    alone when something else already froze objects (a server that does it
    at start-up manages its own heap)."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _save_batch(runtime, schema, obj, rows: list[_Row], user) -> int:
    """One transaction for the batch, through the record service's
    `create_many`: the rows it refuses get its reasons, the others are saved."""
    with write_transaction(runtime.engine) as conn:
        outcomes = runtime.records.create_many(obj.name, [row.values for row in rows], user, conn=conn, schema=schema,
                                               origin=IMPORT)
    saved = 0
    for row, outcome in zip(rows, outcomes):
        if isinstance(outcome, RecordError):
            row.errors.extend(_record_errors(outcome))
        else:
            saved += 1
    return saved
