"""`loom pack validate`'s engine: the file pass, the JSON Schema pass and the
semantic pass over a bundle folder, every problem in one list.

    problems = validate_bundle("apps/crm")          # [] when valid
    bundle = load_valid_bundle("apps/crm")          # or InvalidBundle(problems)

Each `Problem` has `file` (relative to the bundle folder, posix), `path`
(the JSON path from the file's root, '' for the whole file), `message` and
`code`; `str(problem)` is the `FILE:JSON-PATH: message` line of SPEC §2.
Nothing here touches a database; the only files read outside the bundle
are those of bundles it `requires` (next to it, or shipped under apps/).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from . import model
from .bundle import (
    FOLDERS, MANIFEST, BundleError, Problem, RawBundle, SourceFile, format_problem, parse_model, read_raw,
)
from .checks import Known, check_bundle
from .model import Bundle, BundleManifest, ObjectDef
from .schema import schema_problems

__all__ = ["InvalidBundle", "Problem", "load_valid_bundle", "satisfies", "validate_bundle"]

_NAME = re.compile(model.NAME_PATTERN)


class InvalidBundle(BundleError):
    """Raised by `load_valid_bundle`; `problems` lists every problem."""


def validate_bundle(path: str | os.PathLike[str], *, search_path: Sequence[str | os.PathLike[str]] | None = None) -> list[Problem]:
    """Every problem of the bundle at `path` (a folder, or its bundle.json);
    [] when it is valid. `search_path`: folders holding other bundles (as
    `<name>/bundle.json`) for `requires`; by default the folder around the
    bundle, then the packs shipped with Loom."""
    return _validate(Path(path), search_path)[1]


def load_valid_bundle(path: str | os.PathLike[str], *, search_path: Sequence[str | os.PathLike[str]] | None = None) -> Bundle:
    """The bundle at `path`, fully validated, or `InvalidBundle`."""
    bundle, problems = _validate(Path(path), search_path)
    if problems or bundle is None:
        raise InvalidBundle(problems)
    return bundle


# --- the passes ----------------------------------------------------------------------

def _validate(path: Path, search_path: Sequence[str | os.PathLike[str]] | None) -> tuple[Bundle | None, list[Problem]]:
    try:
        return _run(path, search_path)
    except Exception as exc:  # never a traceback: report it as a problem
        return None, [Problem(".", "", f"internal error: {type(exc).__name__}: {exc}", "internal_error")]


def _run(path: Path, search_path: Sequence[str | os.PathLike[str]] | None) -> tuple[Bundle | None, list[Problem]]:
    raw = read_raw(path)
    problems = list(raw.problems)
    if any(p.code in ("not_found", "not_a_folder") for p in problems):
        return None, problems
    fmt = format_problem(raw.manifest)
    if fmt:
        # Another format: nothing else can be judged by this version's rules.
        return None, _sorted(problems + [fmt])

    # bundle.json
    manifest: BundleManifest | None = None
    if raw.manifest is not None:
        found = schema_problems("manifest", raw.manifest.data, raw.manifest.rel)
        problems += found
        if not found:
            manifest, found = parse_model(BundleManifest, raw.manifest)
            problems += _invariant(found)
    manifest_ok = manifest is not None
    if manifest is None:
        manifest = _fallback_manifest(raw)

    # objects and workflows
    known = Known()
    objects: list[ObjectDef] = []
    object_files: list[str] = []
    for source in raw.objects:
        problems += _name_matches_file(source)
        found = schema_problems("object", source.data, source.rel)
        problems += found
        obj = None
        if not found:
            obj, found = parse_model(ObjectDef, source)
            problems += _invariant(found)
        if obj is not None:
            objects.append(obj)
            object_files.append(source.rel)
        else:
            _remember_broken(source, known)
    for problem in raw.problems:
        # Object files that could not be read at all: references to them are not checked.
        if problem.file.startswith("objects/") and problem.file.endswith(".json"):
            known.broken.setdefault(problem.file[len("objects/"): -len(".json")], set())
    named: dict[str, list] = {}
    files: dict[str, list[str]] = {}
    for folder, (kind, kind_model) in FOLDERS.items():
        if folder == "objects":
            continue
        named[folder], files[folder] = [], []
        for source in getattr(raw, folder):
            problems += _name_matches_file(source)
            found = schema_problems(kind, source.data, source.rel)
            problems += found
            if not found:
                item, found = parse_model(kind_model, source)
                problems += _invariant(found)
                if item is not None:
                    named[folder].append(item)
                    files[folder].append(source.rel)

    # bundles it requires
    if raw.manifest is not None:
        problems += _requirements(manifest, raw, known, search_path)

    bundle = Bundle(manifest=manifest, objects=objects, **named, data_files=[d.rel for d in raw.data])
    problems += check_bundle(bundle, files={"objects": object_files, **files}, manifest_file=MANIFEST,
                             data_files=raw.data, known=known)
    return (bundle if manifest_ok else None), _sorted(problems)


def _invariant(found: list[Problem]) -> list[Problem]:
    # The schema accepted the file, so the models must too (model.py's
    # invariant); if they do not, say so rather than pass it silently.
    return [Problem(p.file, p.path, f"{p.message} (accepted by the JSON Schema but not by the models: "
                                    "please report this)", p.code) for p in found]


def _fallback_manifest(raw: RawBundle) -> BundleManifest:
    """A stand-in for a bundle.json that is missing or broken, keeping what
    is usable (its name, its valid `requires`) for the other checks."""
    data: Any = raw.manifest.data if raw.manifest is not None else {}
    data = data if isinstance(data, dict) else {}
    name = data.get("name")
    requires = data.get("requires")
    valid_requires = {}
    if isinstance(requires, dict):
        for key, value in requires.items():
            try:
                BundleManifest(format=model.FORMAT, name="x", version="0.0.0", requires={key: value})
            except (ValidationError, TypeError):
                continue
            valid_requires[key] = value
    return BundleManifest(format=model.FORMAT, name=name if isinstance(name, str) and _NAME.match(name) else "bundle",
                          version="0.0.0", requires=valid_requires)


def _name_matches_file(source: SourceFile) -> list[Problem]:
    data = source.data
    stem = source.rel.rsplit("/", 1)[-1][: -len(".json")]
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        return []
    name = data["name"]
    if not _NAME.match(name) or name == stem:
        return []
    kind = FOLDERS[source.rel.split("/", 1)[0]][0]
    if not _NAME.match(stem):
        return [Problem(source.rel, "name", f"the file of the {kind} {name!r} must be named {name}.json",
                        "name_mismatch")]
    return [Problem(source.rel, "name", f"the {kind} in {source.rel} must be named {stem!r}, not {name!r} "
                                        f"(or rename the file to {name}.json)", "name_mismatch")]


def _remember_broken(source: SourceFile, known: Known) -> None:
    """An object file that failed the schema: keep the names it shows, so
    other files' references to it are not reported too, and salvage its
    valid part for expression scopes."""
    data = source.data
    stem = source.rel.rsplit("/", 1)[-1][: -len(".json")]
    if not isinstance(data, dict):
        known.broken.setdefault(stem, set())
        return
    name = data.get("name") if isinstance(data.get("name"), str) else stem
    fields = data.get("fields")
    names = {f["name"] for f in fields if isinstance(f, dict) and isinstance(f.get("name"), str)} \
        if isinstance(fields, list) else set()
    known.broken.setdefault(name, set()).update(names)
    partial = _salvage(data)
    if partial is not None:
        known.partial.setdefault(partial.name, partial)


_LIST_KEYS = ("fields", "validation_rules", "duplicate_rules", "indexes", "track_history")


def _salvage(data: dict[str, Any]) -> ObjectDef | None:
    current = dict(data)
    for _ in range(6):
        try:
            return ObjectDef.model_validate(current)
        except ValidationError as exc:
            drop_keys: set[str] = set()
            drop_items: dict[str, set[int]] = {}
            for error in exc.errors():
                loc = error["loc"]
                if not loc or loc[0] == "name":
                    return None
                head = loc[0]
                if head in _LIST_KEYS and len(loc) > 1 and isinstance(loc[1], int):
                    drop_items.setdefault(str(head), set()).add(loc[1])
                else:
                    drop_keys.add(str(head))
            for key in drop_keys:
                current.pop(key, None)
            for key, indexes in drop_items.items():
                if isinstance(current.get(key), list):
                    current[key] = [v for i, v in enumerate(current[key]) if i not in indexes]
        except Exception:
            return None
    return None


# --- requirements --------------------------------------------------------------------

def _shipped_apps() -> Path | None:
    try:
        from importlib.resources import files

        return Path(str(files("loomcrm.apps")))
    except Exception:
        return None


def _find_bundle(name: str, folders: Sequence[Path]) -> Path | None:
    for folder in folders:
        candidate = folder / name
        if (candidate / MANIFEST).is_file():
            return candidate
    return None


def _requirements(manifest: BundleManifest, raw: RawBundle, known: Known,
                  search_path: Sequence[str | os.PathLike[str]] | None) -> list[Problem]:
    if search_path is None:
        folders = [raw.root.parent]
        shipped = _shipped_apps()
        if shipped is not None:
            folders.append(shipped)
    else:
        folders = [Path(p) for p in search_path]
    problems: list[Problem] = []
    visited = {manifest.name}
    queue: list[tuple[str, str, bool]] = [(name, spec, True) for name, spec in manifest.requires.items()]
    while queue:
        name, spec, direct = queue.pop(0)
        if name in visited:
            continue
        visited.add(name)
        folder = _find_bundle(name, folders)
        if folder is None or folder.resolve() == raw.root:
            if direct:
                where = ", ".join(str(f) for f in folders) or "nowhere"
                problems.append(Problem(MANIFEST, f"requires.{name}", f"required bundle {name!r} not found "
                                                                    f"(looked in {where})", "unknown_requirement"))
            continue
        other = read_raw(folder)
        version = None
        if other.manifest is not None and isinstance(other.manifest.data, dict):
            sub, _ = parse_model(BundleManifest, other.manifest)
            if sub is not None:
                version = sub.version
                queue.extend((n, s, False) for n, s in sub.requires.items())
        if direct and version is not None and not satisfies(version, spec):
            problems.append(Problem(MANIFEST, f"requires.{name}", f"{name} {version} (in {folder}) does not "
                                                                f"satisfy {spec.strip()!r}", "unsatisfied_requirement"))
        for source in other.objects:
            obj, _ = parse_model(ObjectDef, source)
            if obj is not None and obj.name not in known.external:
                known.external[obj.name] = (name, obj)
        for source in other.reports:
            if isinstance(source.data, dict) and isinstance(source.data.get("name"), str):
                known.external_reports.setdefault(source.data["name"], name)
    return problems


_CLAUSE = re.compile(r"^\s*(==|>=|<=|>|<|!=|~=)?\s*(\d+(?:\.\d+){0,2})\s*$")


def _version_tuple(text: str) -> tuple[int, int, int]:
    core = re.split(r"[-+]", text.strip(), maxsplit=1)[0]
    parts = [int(p) for p in core.split(".")[:3]]
    return tuple(parts + [0] * (3 - len(parts)))  # type: ignore[return-value]


def satisfies(version: str, spec: str) -> bool:
    """Whether `version` ("1.2.0") is inside `spec` (">=1.0,<2", "~=1.2", "1.2")."""
    have = _version_tuple(version)
    for clause in spec.split(","):
        match = _CLAUSE.match(clause)
        if not match:
            return False
        op, number = match.group(1) or "==", match.group(2)
        want = _version_tuple(number)
        if op == "==":
            given = len(number.split("."))
            ok = have[:given] == want[:given]
        elif op == "!=":
            given = len(number.split("."))
            ok = have[:given] != want[:given]
        elif op == ">=":
            ok = have >= want
        elif op == "<=":
            ok = have <= want
        elif op == ">":
            ok = have > want
        elif op == "<":
            ok = have < want
        else:  # ~= : at least this, same release series
            given = len(number.split("."))
            keep = max(given - 1, 1)
            ok = have >= want and have[:keep] == want[:keep]
        if not ok:
            return False
    return True


# --- order -----------------------------------------------------------------------------

def _file_rank(file: str) -> tuple[int, str]:
    if file == ".":
        return (0, "")
    if file == MANIFEST:
        return (1, "")
    for rank, prefix in enumerate((*(f"{folder}/" for folder in FOLDERS), "data/"), start=2):
        if file.startswith(prefix):
            return (rank, file)
    return (len(FOLDERS) + 3, file)


def _sorted(problems: list[Problem]) -> list[Problem]:
    seen: set[Problem] = set()
    unique = []
    for problem in problems:
        if problem not in seen:
            seen.add(problem)
            unique.append(problem)
    return sorted(unique, key=lambda p: _file_rank(p.file))
