"""Bundle folders (SPEC §3): reading them, file by file, with precise
problems; writing a `Bundle` back to a folder.

    bundle.json            the manifest
    objects/<name>.json    one object each
    workflows/<name>.json  one workflow each
    roles/<name>.json      one role each
    reports/<name>.json    one report each
    dashboards/<name>.json one dashboard each
    pools/<name>.json      one lead pool (公海) each
    approvals/<name>.json  one approval process (审批流) each
    calendars/<name>.json  one business calendar (working hours, holidays) each
    extensions/<object>.json  fields, rules and form sections added to an object of a required bundle
    surveys/<name>.json    one satisfaction survey (CSAT, NPS) each
    web_forms/<name>.json  one public web form (web-to-lead, web-to-case) each
    data/<object>.csv      optional sample data
    README*, LICENSE*, CHANGELOG*, NOTICE*   allowed, ignored

Hidden entries (".git", ".DS_Store", ...) are ignored; anything else is a
problem. A file is refused from its size alone (it is never read past the
limit), must be a regular file inside the folder (a symlink may not lead
out of it), UTF-8 (a byte-order mark is allowed), and JSON files must be
valid JSON without duplicate keys.

`read_raw` gives the parsed JSON of every readable file plus the file-level
problems; `validate.py` runs the schema and semantic passes on it.
`read_bundle` is the short path to a `Bundle` (no semantic checks).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from . import model
from .model import (
    ApprovalProcess, Bundle, BundleManifest, BusinessCalendar, Dashboard, ObjectDef, ObjectExtension, Pool, Report, Role,
    Survey, WebForm, Workflow, as_json,
)

MANIFEST = "bundle.json"
# the folders of JSON files, one definition each: folder -> (file kind, model)
FOLDERS = {"objects": ("object", ObjectDef), "workflows": ("workflow", Workflow), "roles": ("role", Role),
           "reports": ("report", Report), "dashboards": ("dashboard", Dashboard), "pools": ("pool", Pool),
           "approvals": ("approval", ApprovalProcess), "calendars": ("calendar", BusinessCalendar),
           "extensions": ("extension", ObjectExtension), "surveys": ("survey", Survey),
           "web_forms": ("web_form", WebForm)}
MAX_JSON_BYTES = 5 * 1024 * 1024
"""A metadata file larger than this is refused without being read."""
MAX_DATA_BYTES = 20 * 1024 * 1024
"""The same for sample data (`data/*.csv`)."""

_DOC_STEMS = ("readme", "license", "licence", "changelog", "notice", "authors")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# --- problems ----------------------------------------------------------------------

@dataclass(frozen=True)
class Problem:
    """One problem of a bundle. `file` is relative to the bundle folder
    (posix; "." for the folder itself), `path` the JSON path inside the file
    ('' for the file as a whole), `code` a stable snake_case code."""

    file: str
    path: str
    message: str
    code: str

    def __str__(self) -> str:
        """`FILE:JSON-PATH: message`, or `FILE: message` for a whole file."""
        return f"{self.file}:{self.path}: {self.message}" if self.path else f"{self.file}: {self.message}"

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


class BundleError(ValueError):
    """A bundle that cannot be used; `problems` says why."""

    def __init__(self, problems: Sequence[Problem]):
        self.problems = list(problems)
        lines = [str(p) for p in self.problems[:20]]
        if len(self.problems) > 20:
            lines.append(f"... and {len(self.problems) - 20} more")
        super().__init__(f"{len(self.problems)} problem(s) in the bundle:\n" + "\n".join(lines))


def json_path(parts: Iterable[str | int]) -> str:
    """`["fields", 3, "type"]` -> `fields[3].type`; odd keys are quoted: `label["zh-CN"]`."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENT.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part, ensure_ascii=False)}]"
    return out


# --- reading -------------------------------------------------------------------------

@dataclass
class SourceFile:
    """A JSON file of the bundle, parsed (plain dicts and lists)."""

    rel: str
    data: Any


@dataclass
class DataFile:
    """A `data/<object>.csv` file: its header row (names stripped)."""

    rel: str
    object_name: str
    header: list[str]


@dataclass
class RawBundle:
    root: Path
    manifest: SourceFile | None = None
    objects: list[SourceFile] = field(default_factory=list)
    workflows: list[SourceFile] = field(default_factory=list)
    roles: list[SourceFile] = field(default_factory=list)
    reports: list[SourceFile] = field(default_factory=list)
    dashboards: list[SourceFile] = field(default_factory=list)
    pools: list[SourceFile] = field(default_factory=list)
    approvals: list[SourceFile] = field(default_factory=list)
    calendars: list[SourceFile] = field(default_factory=list)
    extensions: list[SourceFile] = field(default_factory=list)
    surveys: list[SourceFile] = field(default_factory=list)
    web_forms: list[SourceFile] = field(default_factory=list)
    data: list[DataFile] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


class _Obj(dict):
    """A JSON object while parsing; remembers keys it saw twice."""

    duplicates: list[str]


def _pairs(pairs: list[tuple[str, Any]]) -> _Obj:
    obj = _Obj()
    obj.duplicates = []
    for key, value in pairs:
        if key in obj and key not in obj.duplicates:
            obj.duplicates.append(key)
        obj[key] = value
    return obj


class _BadConstant(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise _BadConstant(name)


def _line_col(text: str, index: int) -> tuple[int, int]:
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


def decode_utf8(raw: bytes, rel: str) -> tuple[str | None, Problem | None]:
    """The text of a file, or a `not_utf8` problem saying where it breaks."""
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        start = exc.start
        line = raw.count(b"\n", 0, start) + 1
        column = start - (raw.rfind(b"\n", 0, start) + 1) + 1
        return None, Problem(rel, "", f"not UTF-8: byte 0x{raw[start]:02x} at line {line}, column {column} "
                                     f"(byte offset {start}); save the file as UTF-8", "not_utf8")


def parse_json(raw: bytes, rel: str) -> tuple[Any, list[Problem]]:
    """Decode and parse one JSON file. Returns (data, problems); data is None
    when the file could not be parsed at all."""
    text, problem = decode_utf8(raw, rel)
    if problem:
        return None, [problem]
    assert text is not None
    try:
        data = json.loads(text, object_pairs_hook=_pairs, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        return None, [Problem(rel, "", f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
                              "invalid_json")]
    except _BadConstant as exc:
        where = ""
        for match in re.finditer(re.escape(str(exc)), text):
            before = text[text.rfind("\n", 0, match.start()) + 1: match.start()]
            if before.count('"') % 2 == 0:
                line, column = _line_col(text, match.start())
                where = f" (line {line}, column {column})"
                break
        return None, [Problem(rel, "", f"invalid JSON: {exc} is not a JSON value{where}", "invalid_json")]
    except RecursionError:
        return None, [Problem(rel, "", "invalid JSON: nested too deeply", "invalid_json")]
    problems: list[Problem] = []
    return _plain(data, [], rel, problems), problems


def _plain(value: Any, path: list[str | int], rel: str, problems: list[Problem]) -> Any:
    """Turn parser objects into plain dicts, reporting duplicate keys."""
    stack: list[tuple[Any, list[str | int], Any, Any]] = []  # iterative: deep files must not recurse
    root: list[Any] = [None]
    stack.append((value, path, root, 0))
    while stack:
        node, where, parent, slot = stack.pop()
        if isinstance(node, dict):
            for key in getattr(node, "duplicates", ()):
                problems.append(Problem(rel, json_path(where + [key]),
                                        "duplicate key (the last one would silently win)", "duplicate_key"))
            out: Any = dict(node)
            parent[slot] = out
            for key, item in node.items():
                if isinstance(item, (dict, list)):
                    stack.append((item, where + [key], out, key))
        elif isinstance(node, list):
            out = list(node)
            parent[slot] = out
            for index, item in enumerate(node):
                if isinstance(item, (dict, list)):
                    stack.append((item, where + [index], out, index))
        else:
            parent[slot] = node
    return root[0]


def _is_doc(name: str) -> bool:
    return name.split(".")[0].lower() in _DOC_STEMS


def _ignored(name: str) -> bool:
    return name.startswith(".") or name == "__pycache__"


def _check_file(root: Path, path: Path, rel: str, limit: int) -> Problem | None:
    """A problem when `path` may not be read: outside the folder, not a
    regular file, or larger than `limit` (from `stat`, never read)."""
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return Problem(rel, "", "cannot be read (a broken or looping link)", "unreadable")
    if real != root and root not in real.parents:
        return Problem(rel, "", "is a link leading out of the bundle folder", "outside_bundle")
    try:
        info = os.stat(real)
    except OSError as exc:
        return Problem(rel, "", f"cannot be read: {exc.strerror}", "unreadable")
    if not stat.S_ISREG(info.st_mode):
        return Problem(rel, "", "is not a regular file", "not_a_file")
    if info.st_size > limit:
        return Problem(rel, "", f"is too large ({info.st_size:,} bytes; the limit is {limit:,})", "too_large")
    return None


def _read_bytes(root: Path, path: Path, rel: str, limit: int) -> tuple[bytes | None, Problem | None]:
    problem = _check_file(root, path, rel, limit)
    if problem:
        return None, problem
    try:
        with open(path, "rb") as handle:
            raw = handle.read(limit + 1)
    except OSError as exc:
        return None, Problem(rel, "", f"cannot be read: {exc.strerror}", "unreadable")
    if len(raw) > limit:  # it grew after `stat`
        return None, Problem(rel, "", f"is too large (over {limit:,} bytes)", "too_large")
    return raw, None


def _read_json(root: Path, path: Path, rel: str, problems: list[Problem]) -> SourceFile | None:
    raw, problem = _read_bytes(root, path, rel, MAX_JSON_BYTES)
    if problem:
        problems.append(problem)
        return None
    assert raw is not None
    data, found = parse_json(raw, rel)
    problems.extend(found)
    if data is None:
        return None
    if isinstance(data, dict) and isinstance(data.get("$schema"), str):
        del data["$schema"]  # for editors only
    return SourceFile(rel, data)


def _read_csv(root: Path, path: Path, rel: str, problems: list[Problem]) -> DataFile | None:
    raw, problem = _read_bytes(root, path, rel, MAX_DATA_BYTES)
    if problem:
        problems.append(problem)
        return None
    assert raw is not None
    text, problem = decode_utf8(raw, rel)
    if problem:
        problems.append(problem)
        return None
    assert text is not None
    try:
        rows = csv.reader(io.StringIO(text, newline=""))
        header = next(rows, None)
        if not header or not any(cell.strip() for cell in header):
            problems.append(Problem(rel, "", "has no header row (the first row names the fields)", "bad_csv"))
            return None
        for row in rows:
            if row and len(row) != len(header):
                problems.append(Problem(rel, "", f"line {rows.line_num} has {len(row)} columns, "
                                                 f"the header {len(header)}", "bad_csv"))
                break
    except csv.Error as exc:
        problems.append(Problem(rel, "", f"not valid CSV: {exc}", "bad_csv"))
        return None
    return DataFile(rel, path.stem, [cell.strip() for cell in header])


def _listing(folder: Path) -> list[os.DirEntry[str]]:
    with os.scandir(folder) as entries:
        return sorted((e for e in entries if not _ignored(e.name)), key=lambda e: e.name)


def read_raw(path: str | os.PathLike[str]) -> RawBundle:
    """Read every file of the bundle at `path` (a folder, or its bundle.json)."""
    given = Path(path)
    if given.is_file() and given.name == MANIFEST:
        given = given.parent
    raw = RawBundle(root=given)
    if not given.exists():
        raw.problems.append(Problem(".", "", f"no such folder: {given}", "not_found"))
        return raw
    if not given.is_dir():
        raw.problems.append(Problem(".", "", f"not a bundle folder: {given}", "not_a_folder"))
        return raw
    root = given.resolve()
    raw.root = root
    problems = raw.problems
    try:
        top = _listing(root)
    except OSError as exc:
        problems.append(Problem(".", "", f"cannot list the folder: {exc.strerror}", "unreadable"))
        return raw
    names = {e.name for e in top}
    if MANIFEST not in names:
        problems.append(Problem(MANIFEST, "", "missing: a bundle folder needs a bundle.json "
                                              '({"format": "loom/1", "name": ..., "version": ...})',
                                "missing_manifest"))
    for entry in top:
        entry_path = root / entry.name
        if entry.name == MANIFEST:
            raw.manifest = _read_json(root, entry_path, MANIFEST, problems)
        elif entry.name in (*FOLDERS, "data"):
            if not entry.is_dir():
                problems.append(Problem(entry.name, "", "should be a folder", "unexpected_file"))
                continue
            real = entry_path.resolve()
            if real != root and root not in real.parents:
                problems.append(Problem(entry.name, "", "is a link leading out of the bundle folder",
                                        "outside_bundle"))
                continue
            suffix = ".csv" if entry.name == "data" else ".json"
            try:
                inner = _listing(entry_path)
            except OSError as exc:
                problems.append(Problem(entry.name, "", f"cannot list the folder: {exc.strerror}", "unreadable"))
                continue
            for item in inner:
                rel = f"{entry.name}/{item.name}"
                if item.is_dir() or not item.name.endswith(suffix):
                    what = "sample data files (<object>.csv)" if entry.name == "data" else "JSON files"
                    problems.append(Problem(rel, "", f"unexpected here: {entry.name}/ holds only {what}",
                                            "unexpected_file"))
                elif entry.name == "data":
                    data_file = _read_csv(root, entry_path / item.name, rel, problems)
                    if data_file:
                        raw.data.append(data_file)
                else:
                    source = _read_json(root, entry_path / item.name, rel, problems)
                    if source:
                        getattr(raw, entry.name).append(source)
        elif _is_doc(entry.name) and entry.is_file():
            continue
        else:
            problems.append(Problem(entry.name, "", "unexpected in a bundle folder (it holds bundle.json, "
                                                    "objects/, workflows/, roles/, reports/, dashboards/, pools/, "
                                                    "approvals/, calendars/, data/ and README, LICENSE, CHANGELOG "
                                                    "files)",
                                    "unexpected_file"))
    return raw


def format_problem(manifest: SourceFile | None) -> Problem | None:
    """An `unknown_format` problem when bundle.json names another format."""
    if manifest is None or not isinstance(manifest.data, dict):
        return None
    fmt = manifest.data.get("format")
    if isinstance(fmt, str) and fmt != model.FORMAT:
        return Problem(manifest.rel, "format", f"unknown bundle format {fmt!r}: this version of Loom reads "
                                               f"{model.FORMAT!r} bundles", "unknown_format")
    return None


def model_problems(exc: ValidationError, data: Any, rel: str) -> list[Problem]:
    """Pydantic's errors as problems, with JSON paths of the file (union tags
    and other steps that are not keys of the data are left out)."""
    problems = []
    for error in exc.errors():
        node, parts = data, []
        for step in error["loc"]:
            if isinstance(node, dict) and step in node:
                node = node[step]
                parts.append(step)
            elif isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node):
                node = node[step]
                parts.append(step)
            elif error["type"] == "extra_forbidden" and step == error["loc"][-1]:
                parts.append(step)
        code = "unknown_key" if error["type"] == "extra_forbidden" else "schema"
        message = "unknown key" if code == "unknown_key" else error["msg"]
        problems.append(Problem(rel, json_path(parts), message, code))
    return problems


def parse_model(cls: type[BaseModel], source: SourceFile) -> tuple[Any, list[Problem]]:
    try:
        return cls.model_validate(source.data), []
    except ValidationError as exc:
        return None, model_problems(exc, source.data, source.rel)


def read_bundle(path: str | os.PathLike[str]) -> Bundle:
    """The bundle at `path` as a `Bundle`, or `BundleError` with the file and
    model problems. No semantic checks: use `validate.load_valid_bundle` for
    a bundle about to be installed."""
    raw = read_raw(path)
    problems = list(raw.problems)
    fmt = format_problem(raw.manifest)
    if fmt:
        raise BundleError(problems + [fmt])
    manifest = None
    if raw.manifest is not None:
        manifest, found = parse_model(BundleManifest, raw.manifest)
        problems += found
    named = {}
    for folder, (_, kind_model) in FOLDERS.items():
        named[folder] = []
        for source in getattr(raw, folder):
            item, found = parse_model(kind_model, source)
            problems += found
            named[folder].append(item)
    if problems or manifest is None:
        raise BundleError(problems)
    return Bundle(manifest=manifest, **named, data_files=[d.rel for d in raw.data])


# --- writing ---------------------------------------------------------------------------

_FIRST_KEYS = ("format", "name", "type")


def _ordered(value: Any) -> Any:
    """Authors' key order: `name` and `type` first, the rest as the models list them."""
    if isinstance(value, list):
        return [_ordered(v) for v in value]
    if isinstance(value, dict):
        first = {k: value[k] for k in _FIRST_KEYS if k in value}
        return {**{k: _ordered(v) for k, v in first.items()},
                **{k: _ordered(v) for k, v in value.items() if k not in first}}
    return value


def bundle_files(bundle: Bundle) -> dict[str, Any]:
    """The JSON files of `bundle`: relative path -> JSON data."""
    files: dict[str, Any] = {MANIFEST: _ordered(as_json(bundle.manifest))}
    for folder in FOLDERS:
        for item in getattr(bundle, folder):
            files[f"{folder}/{item.name}.json"] = _ordered(as_json(item))
    return files


def dump_json(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def write_bundle(bundle: Bundle, folder: str | os.PathLike[str], *,
                 data: Mapping[str, bytes | str] | None = None, replace: bool = False) -> Path:
    """Write `bundle` as a bundle folder that `validate_bundle` accepts again.

    `data` maps sample data files (`"data/lead.csv"`) to their contents; the
    `Bundle` itself only lists their names. A folder that is not empty is
    refused unless `replace`; then the bundle files Loom owns there
    (bundle.json, the JSON files of FOLDERS, data/*.csv) are replaced
    and stale ones removed, and anything else is left alone."""
    target = Path(folder)
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(str(target))
    if target.exists() and any(not _ignored(p.name) for p in target.iterdir()) and not replace:
        raise FileExistsError(f"{target} is not empty")
    files = bundle_files(bundle)
    contents: dict[str, bytes] = {rel: dump_json(value).encode("utf-8") for rel, value in files.items()}
    for rel, body in (data or {}).items():
        if not re.fullmatch(r"data/[a-z][a-z0-9_]*\.csv", rel):
            raise ValueError(f"not a sample data file name: {rel!r}")
        contents[rel] = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    target.mkdir(parents=True, exist_ok=True)
    if replace:
        for sub, suffix in (*((folder, ".json") for folder in FOLDERS), ("data", ".csv")):
            folder_path = target / sub
            if folder_path.is_dir():
                for old in folder_path.iterdir():
                    if old.is_file() and old.name.endswith(suffix) and f"{sub}/{old.name}" not in contents:
                        old.unlink()
    for rel, body in contents.items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.tmp")
        temp.write_bytes(body)
        os.replace(temp, path)
    return target


# --- uids --------------------------------------------------------------------------------

def _uid(*parts: str) -> str:
    candidate = ".".join(parts)
    if len(candidate) <= 64:
        return candidate
    return f"{parts[0][:20]}.{hashlib.sha256(candidate.encode()).hexdigest()[:40]}"


def ensure_uids(bundle: Bundle) -> Bundle:
    """Give every object and field without a uid one, in place; returns `bundle`.

    Generated uids derive from the names (`crm.lead`, `crm.lead.email`), so
    installing the same uid-less bundle again, or a newer version of it,
    yields the same uids and the upgrade is matched field by field. A
    derived uid already taken by another object or field gets a suffix."""
    taken = {o.uid for o in bundle.objects if o.uid} | {f.uid for o in bundle.objects for f in o.fields if f.uid}
    prefix = bundle.manifest.name

    def fresh(*parts: str) -> str:
        uid = _uid(prefix, *parts)
        n = 2
        while uid in taken:
            uid = _uid(prefix, *parts[:-1], f"{parts[-1]}-{n}")
            n += 1
        taken.add(uid)
        return uid

    for obj in bundle.objects:
        if not obj.uid:
            obj.uid = fresh(obj.name)
        for fld in obj.fields:
            if not fld.uid:
                fld.uid = fresh(obj.name, fld.name)
    return bundle
