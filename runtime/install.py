"""Installing and exporting bundles (`loom pack install` / `export`, and
`POST/GET/DELETE /api/v1/_meta/bundles`), uninstalling, and the archive of dropped metadata.

Install validates the bundle, merges it into the published metadata (on
upgrade a three-way merge against the bundle as last shipped keeps admin
customisations), then plans and publishes it, records the bundle and loads
its sample data on first install, all in one transaction.

A bundle may extend the objects of the bundles it requires
(`extensions/<object>.json`): its fields, rules and form sections are
merged into those objects with uids of its own, so that its upgrades and
its uninstall touch only them, and the owner's upgrades keep them.
Uninstalling removes what a bundle brought (dropped data goes to the
archive, as any drop does) and is refused while another bundle requires it.

Sample rows go through the record service with the rules on, so their
defaults, formulas and rollups hold like any other record's; validation
rules, stage criteria and duplicate rules are skipped (and the skip is in
each row's history), because sample dates are fixed while rules such as
"the close date is not in the past" move with the calendar.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from loomcrm.metadata.bundle import FOLDERS
from loomcrm.metadata.checks import check_bundle
from loomcrm.metadata.model import SYSTEM_FIELDS, Bundle, BundleManifest, ObjectDef, ObjectExtension, as_json
from loomcrm.metadata.validate import load_valid_bundle, satisfies
from loomcrm.metadata.versions import Snapshot, VersionStore
from loomcrm.platform import systemdb
from loomcrm.platform.db import write_transaction

from .fields import DEFAULT_CONTEXT, FieldContext, FieldError, field_type
from .migrate.checks import check_snapshot
from .migrate.execute import PublishResult, plan_for, publish
from .access import AccessResolver
from .records import Origin, RecordError, RecordService
from .tables import build_schema

IMPORT = Origin("import")   # sample data is written as an import
# the definitions merged by name (objects merge field by field, extensions into their objects)
NAMED = tuple(folder for folder in FOLDERS if folder not in ("objects", "extensions"))


class BundleError(RecordError):
    status, title = 422, "Invalid bundle"


# --- reading bundles ------------------------------------------------------------------

def read_bundle(path: str | Path) -> Bundle:
    """A bundle folder, validated by `metadata.validate` when present."""
    try:
        return load_valid_bundle(Path(path))
    except Exception as exc:
        raise BundleError(f"{path}: {exc}") from None


def resolve_pack(path_or_name: str | Path) -> Path:
    """A folder, or the name of a pack shipped in `loomcrm.apps`."""
    candidate = Path(path_or_name)
    if candidate.is_dir():
        return candidate
    import loomcrm.apps

    shipped = Path(loomcrm.apps.__file__).parent / str(path_or_name)
    if shipped.is_dir() and (shipped / "bundle.json").exists():
        return shipped
    raise BundleError(f"no bundle folder or shipped pack {str(path_or_name)!r}")


def bundle_from_json(data: Any) -> Bundle:
    """A bundle uploaded as JSON: {"manifest": {...}, "objects": [...], "workflows": [...], "roles": [...],
    "reports": [...], "dashboards": [...], "data": {"object": "csv text"}}."""
    if not isinstance(data, dict) or "manifest" not in data:
        raise BundleError('send {"manifest": {...}, "objects": [...], "workflows": [...], "roles": [...]}')
    unknown = set(data) - {"manifest", *FOLDERS, "data"}
    if unknown:
        raise BundleError(f"unknown keys: {', '.join(sorted(map(str, unknown)))[:200]}")
    bundle = Bundle(manifest=BundleManifest.model_validate(data["manifest"]),
                    **{folder: [kind.model_validate(x) for x in data.get(folder) or []]
                       for folder, (_, kind) in FOLDERS.items()})
    inline = data.get("data") or {}
    if not isinstance(inline, dict) or not all(isinstance(v, str) for v in inline.values()):
        raise BundleError("data maps object names to CSV text")
    bundle.__dict__["inline_data"] = inline
    return bundle


# --- uids and the three-way merge --------------------------------------------------------

def _stable_uid(*parts: str) -> str:
    text = ".".join(parts)
    return text if len(text) <= 64 else hashlib.sha1(text.encode()).hexdigest()[:32]


def _field_uids(bundle_name: str, owner):
    return [f if f.uid else f.model_copy(update={"uid": _stable_uid(bundle_name, owner.name, f.name)})
            for f in owner.fields]


def with_bundle_uids(bundle: Bundle) -> list[ObjectDef]:
    """Authored bundles may omit uids: they get stable ones from the names."""
    name = bundle.manifest.name
    return [obj.model_copy(update={"uid": obj.uid or _stable_uid(name, obj.name), "fields": _field_uids(name, obj)})
            for obj in bundle.objects]


def extensions_with_uids(bundle: Bundle) -> list[ObjectExtension]:
    """The fields a bundle adds to other bundles' objects, with uids of its own."""
    return [ext.model_copy(update={"fields": _field_uids(bundle.manifest.name, ext)}) for ext in bundle.extensions]


def _dump(thing) -> dict:
    return thing.model_dump(mode="json", by_alias=True)


def merge_object(base: ObjectDef | None, ours: ObjectDef, theirs: ObjectDef) -> ObjectDef:
    """Theirs (the new bundle) wherever ours (installed) still equals base
    (the bundle as last shipped); ours wherever the admin changed it."""
    if base is None or _dump(ours) == _dump(base):
        return theirs
    b, o, t = _dump(base), _dump(ours), _dump(theirs)
    merged = {k: (t.get(k) if o.get(k) == b.get(k) else o.get(k)) for k in set(o) | set(t) if k != "fields"}
    base_fields = {f.uid: f for f in base.fields}
    their_fields = {f.uid: f for f in theirs.fields}
    fields = []
    for f in ours.fields:
        old = base_fields.get(f.uid)
        new = their_fields.get(f.uid)
        if old is not None and new is None and _dump(old) == _dump(f):
            continue  # the bundle removed it and the admin did not touch it
        if old is not None and new is not None and _dump(old) == _dump(f):
            fields.append(new)
        else:
            fields.append(f)
    present = {f.uid for f in fields}
    fields.extend(f for uid, f in their_fields.items() if uid not in present and uid not in base_fields)
    merged["fields"] = [_dump(f) for f in fields]
    return ObjectDef.model_validate({k: v for k, v in merged.items() if v is not None})


def merge_bundle(published: Snapshot, pristine: Snapshot | None, objects: list[ObjectDef],
                 shipped: Mapping[str, list] | None = None, extensions: list[ObjectExtension] = (),
                 bundle_name: str = "bundle") -> Snapshot:
    """The published metadata with the bundle's objects merged field by
    field, its extensions into the objects they extend, and its other
    definitions (`shipped`, by folder) by name."""
    result = list(published.objects)
    for theirs in objects:
        base = pristine.object_by_uid(theirs.uid) if pristine else None
        index = next((i for i, o in enumerate(result) if o.uid == theirs.uid), None)
        if index is None:
            if base is not None:
                continue  # the admin deleted it: keep it deleted
            clash = next((o for o in result if o.name == theirs.name), None)
            if clash is not None:
                raise BundleError(f"object {theirs.name!r} already exists and does not come from this bundle")
            result.append(theirs)
        else:
            result[index] = merge_object(base, result[index], theirs)
    if pristine is not None:  # objects the new version dropped and the admin left alone
        new_uids = {o.uid for o in objects}
        result = [o for o in result if not (pristine.object_by_uid(o.uid) is not None and o.uid not in new_uids
                                            and _dump(pristine.object_by_uid(o.uid)) == _dump(o))]
    result = merge_extensions(result, pristine.extensions if pristine else [], list(extensions), bundle_name)
    named = {folder: _merge_named(folder, getattr(published, folder), getattr(pristine, folder) if pristine else [],
                                  (shipped or {}).get(folder, []))
             for folder in NAMED}
    return Snapshot(objects=result, **named)


def merge_extensions(objects: list[ObjectDef], pristine: list[ObjectExtension], shipped: list[ObjectExtension],
                     bundle_name: str) -> list[ObjectDef]:
    """Each extension folded into the object it extends, three-way like an
    object's fields: the shipped version wherever the installed one still
    equals the one last shipped, the admin's wherever they changed it."""
    bases = {e.name: e for e in pristine}
    news = {e.name: e for e in shipped}
    result = list(objects)
    for name in dict.fromkeys([*bases, *news]):
        at = next((i for i, o in enumerate(result) if o.name == name), None)
        if at is None:
            if name in news:
                raise BundleError(f"extensions/{name}.json: there is no object {name!r} to extend; install the "
                                  f"bundle that defines it first")
            continue
        empty = ObjectExtension(name=name)
        result[at] = _merge_extension(result[at], bases.get(name, empty), news.get(name, empty), bundle_name)
    return result


def _merge_by(current: list, base: list, new: list, key, clash) -> list:
    """Items of `current` with `base`'s replaced by `new`'s where untouched,
    dropped where `new` dropped them, and `new`'s new ones appended."""
    base_items = {key(x): x for x in base}
    new_items = {key(x): x for x in new}
    out = []
    for item in current:
        old = base_items.get(key(item))
        if old is None or _dump(old) != _dump(item):
            out.append(item)             # not the bundle's, or the admin changed it
        elif key(item) in new_items:
            out.append(new_items[key(item)])
    present = {key(x) for x in out}
    for k, item in new_items.items():
        if k in base_items:
            continue                     # shipped before: merged above (or removed by the admin)
        clash(item)                      # new here: nothing of its name may exist yet
        if k not in present:
            out.append(item)
    return out


def _merge_extension(obj: ObjectDef, base: ObjectExtension, new: ObjectExtension, bundle_name: str) -> ObjectDef:
    def clash(kind: str, name: str, existing) -> None:
        if existing:
            raise BundleError(f"extensions/{obj.name}.json: {obj.name!r} already has a {kind} {name!r} that the "
                              f"{bundle_name} bundle does not own; rename one of them")

    fields = _merge_by(obj.fields, base.fields, new.fields, lambda f: f.uid,
                       lambda f: clash("field", f.name, obj.field(f.name)))
    rules = _merge_by(obj.validation_rules, base.validation_rules, new.validation_rules, lambda r: r.name,
                      lambda r: clash("rule", r.name, any(x.name == r.name for x in obj.validation_rules)))
    shipped_before = [_dump(s) for s in base.form]
    form = [s for s in obj.layouts.form if _dump(s) not in shipped_before]
    kept = [_dump(s) for s in form]
    removed = [d for d in shipped_before if d not in [_dump(s) for s in obj.layouts.form]]
    form += [s for s in new.form if _dump(s) not in kept and _dump(s) not in removed]
    return obj.model_copy(update={"fields": fields, "validation_rules": rules,
                                  "layouts": obj.layouts.model_copy(update={"form": form})})


def without_bundle(published: Snapshot, pristine: Snapshot) -> Snapshot:
    """The published metadata without what a bundle brought: its objects,
    the fields, rules and form sections it added to others, its definitions."""
    uids = {o.uid for o in pristine.objects}
    objects = [o for o in published.objects if o.uid not in uids]
    for ext in pristine.extensions:
        at = next((i for i, o in enumerate(objects) if o.name == ext.name), None)
        if at is None:
            continue
        obj = objects[at]
        field_uids = {f.uid for f in ext.fields}
        rule_names = {r.name for r in ext.validation_rules}
        sections = [_dump(s) for s in ext.form]
        fields = [f for f in obj.fields if f.uid not in field_uids]
        kept = {f.name for f in fields} | set(SYSTEM_FIELDS)
        # sections the admin changed lose the bundle's fields, and go when nothing is left
        form = [section.model_copy(update={"fields": [n for n in section.fields if n in kept]})
                for section in obj.layouts.form if _dump(section) not in sections]
        listed = obj.layouts.list_
        if listed is not None:
            listed = listed.model_copy(update={"columns": [n for n in listed.columns if n in kept] or [fields[0].name]})
        objects[at] = obj.model_copy(update={
            "fields": fields,
            "validation_rules": [r for r in obj.validation_rules if r.name not in rule_names],
            "track_history": [n for n in obj.track_history if n in kept],
            "layouts": obj.layouts.model_copy(update={"form": [s for s in form if s.fields], "list_": listed})})
    named = {folder: [x for x in getattr(published, folder)
                      if x.name not in {y.name for y in getattr(pristine, folder)}] for folder in NAMED}
    return Snapshot(objects=objects, **named)


def _merge_named(folder: str, published: list, pristine: list, shipped: list) -> list:
    """Workflows, roles, reports, ...: the new bundle's, unless the admin
    changed the installed one; one of the same name from elsewhere (another
    bundle, the admin) is a clash."""
    current = {x.name: x for x in published}
    bases = {x.name: x for x in pristine}
    for item in shipped:
        base = bases.get(item.name)
        if item.name in current and base is None:
            raise BundleError(f"{folder}/{item.name}.json: a {FOLDERS[folder][0]} named {item.name!r} already exists "
                              f"and does not come from this bundle")
        if item.name not in current or _dump(base) == _dump(current[item.name]):
            current[item.name] = item
    return list(current.values())


# --- install ---------------------------------------------------------------------------

@dataclass
class InstallResult:
    name: str
    version: str
    metadata_version: int
    upgraded: bool
    rows_loaded: int
    publish: PublishResult

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "metadata_version": self.metadata_version,
                "upgraded": self.upgraded, "rows_loaded": self.rows_loaded, "plan": self.publish.plan.as_json()}


class _SystemActor:
    id = None
    role = "admin"


def install_bundle(engine: Engine, bundle: Bundle | str | Path, *, user_id: str | None = None,
                   confirm: Mapping[str, str] | None = None, ctx: FieldContext | None = None,
                   load_data: bool = True) -> InstallResult:
    """Validate, plan and apply a bundle in one transaction."""
    source: Path | None = None
    if not isinstance(bundle, Bundle):
        source = resolve_pack(bundle)
        bundle = read_bundle(source)
    ctx = ctx or DEFAULT_CONTEXT
    name = bundle.manifest.name
    objects = with_bundle_uids(bundle)
    extensions = extensions_with_uids(bundle)
    store = VersionStore()
    with engine.connect() as conn:
        _, published = store.published(conn)
        installed = {r.name: r for r in conn.execute(sa.select(systemdb.bundles)).fetchall()}
    _check_requirements(bundle.manifest, installed)
    row = installed.get(name)
    pristine = Snapshot.from_json(row.pristine) if row is not None else None
    shipped = {folder: list(getattr(bundle, folder)) for folder in NAMED}
    merged = merge_bundle(published, pristine, objects, shipped, extensions, name)
    check_snapshot(merged)
    pristine_new = Snapshot(objects=objects, extensions=extensions, **shipped)
    loaded = {"rows": 0}

    def after(conn: sa.Connection, version: int, plan) -> None:
        values = {"version": bundle.manifest.version, "manifest": as_json(bundle.manifest),
                  "pristine": pristine_new.to_json(), "installed_by": user_id}
        if row is None:
            conn.execute(sa.insert(systemdb.bundles).values(name=name, **values))
        else:
            conn.execute(sa.update(systemdb.bundles).where(systemdb.bundles.c.name == name).values(**values))
        if row is None and load_data:
            schema = build_schema(merged.objects, version)
            loaded["rows"] = _load_sample_data(conn, schema, bundle, source, ctx)

    if row is not None and row.version == bundle.manifest.version:
        plan = plan_for(engine, merged, ctx=ctx)
        if plan.empty:
            # The same version again: nothing to publish, no new metadata version.
            with engine.connect() as conn:
                current = store.published_version(conn)
            return InstallResult(name=name, version=bundle.manifest.version, metadata_version=current,
                                 upgraded=False, rows_loaded=0, publish=PublishResult(version=current, plan=plan))
    result = publish(engine, merged, comment=f"install {name} {bundle.manifest.version}", user_id=user_id,
                     confirm=confirm, ctx=ctx, after=after)
    return InstallResult(name=name, version=bundle.manifest.version, metadata_version=result.version,
                         upgraded=row is not None, rows_loaded=loaded["rows"], publish=result)


def _check_requirements(manifest: BundleManifest, installed: Mapping[str, Any]) -> None:
    for other, spec in manifest.requires.items():
        row = installed.get(other)
        if row is None:
            raise BundleError(f"{manifest.name} requires the {other} bundle ({spec}); install it first")
        if not satisfies(row.version, spec):
            raise BundleError(f"{manifest.name} requires {other} {spec}, and {other} {row.version} is installed; "
                              f"upgrade it first")


def uninstall_bundle(engine: Engine, name: str, *, user_id: str | None = None,
                     confirm: Mapping[str, str] | None = None, ctx: FieldContext | None = None) -> PublishResult:
    """Remove what a bundle brought, in one transaction; the data of its
    objects and of the fields it added goes to the archive."""
    store = VersionStore()
    with engine.connect() as conn:
        _, published = store.published(conn)
        installed = {r.name: r for r in conn.execute(sa.select(systemdb.bundles)).fetchall()}
    row = installed.get(name)
    if row is None:
        raise BundleError(f"no installed bundle {name[:63]!r}", status=404)
    dependants = sorted(other for other, r in installed.items() if name in (r.manifest or {}).get("requires", {}))
    if dependants:
        raise BundleError(f"{', '.join(dependants)} {'require' if len(dependants) > 1 else 'requires'} {name}: "
                          f"uninstall {'them' if len(dependants) > 1 else 'it'} first", status=409)
    remaining = without_bundle(published, Snapshot.from_json(row.pristine))
    check_snapshot(remaining)
    left = Bundle(manifest=BundleManifest(format="loom/1", name="metadata", version="0.0.0"),
                  **{folder: getattr(remaining, folder) for folder in ("objects", *NAMED)})
    problems = check_bundle(left)
    if problems:
        raise BundleError(f"uninstalling {name} would leave definitions that use what it brings; change them first: "
                          + "; ".join(str(p) for p in problems[:5]),
                          [{"field": None, "code": p.code, "message": str(p)} for p in problems], status=409)

    def after(conn: sa.Connection, version: int, plan) -> None:
        conn.execute(sa.delete(systemdb.bundles).where(systemdb.bundles.c.name == name))

    return publish(engine, remaining, comment=f"uninstall {name} {row.version}", user_id=user_id,
                   confirm=confirm, ctx=ctx or DEFAULT_CONTEXT, after=after)


def _load_sample_data(conn, schema, bundle: Bundle, source: Path | None, ctx: FieldContext) -> int:
    """data/<object>.csv, in the order objects are listed (parents first).
    A column `id` names a row, so that later files can link to it by that name."""
    texts: dict[str, str] = dict(bundle.__dict__.get("inline_data", {}))
    if source is not None:
        for rel in bundle.data_files:
            texts[Path(rel).stem] = (source / rel).read_text("utf-8-sig")
    if not texts:
        return 0

    class _Runtime:
        engine = None
        context = ctx
        access = AccessResolver(None, lambda: (0, {}))   # sample data is written by the system: every right

    from .rules.hooks import Rules, skip_rules

    service = RecordService(_Runtime(), Rules())
    keys: dict[tuple[str, str], str] = {}
    count = 0
    for obj in schema.objects.values():
        text = texts.get(obj.name)
        if text is None:
            continue
        for line, row in enumerate(csv.DictReader(io.StringIO(text)), start=2):
            values: dict[str, Any] = {}
            key = row.pop("id", None)
            for column, cell in row.items():
                f = obj.field(column) if column else None
                if f is None:
                    raise BundleError(f"data/{obj.name}.csv line {line}: unknown column {column!r}")
                try:
                    if f.type == "lookup":
                        values[column] = _resolve_link(conn, schema, f.to, cell.strip(), keys) if cell.strip() else None
                    else:
                        values[column] = field_type(f).parse_csv(f, cell, ctx)
                except FieldError as exc:
                    raise BundleError(f"data/{obj.name}.csv line {line}: {column}: {exc.message}") from None
            try:
                with skip_rules(f"sample data of the {bundle.manifest.name} pack"):
                    record = service.create(obj.name, {k: v for k, v in values.items() if field_type(obj.field(k)).writable},
                                            _SystemActor(), conn=conn, schema=schema, origin=IMPORT)
            except RecordError as exc:
                raise BundleError(f"data/{obj.name}.csv line {line}: {exc.detail}", exc.errors) from None
            if key:
                keys[(obj.name, key)] = record["id"]
            count += 1
    return count


def _resolve_link(conn, schema, target: str, cell: str, keys: dict) -> str:
    """A lookup cell names its target by the `id` column of the target's
    file, by the target's title field, or is an id."""
    if (target, cell) in keys:
        return keys[(target, cell)]
    obj = schema.object(target)
    title = obj.title_field if obj is not None and obj.title_field else "name"
    if obj is not None and obj.field(title) is not None:
        table = schema.table(target)
        found = conn.execute(sa.select(table.c.id).where(table.c[title] == cell).limit(2)).scalars().all()
        if len(found) == 1:
            return found[0]
    return cell


# --- export ----------------------------------------------------------------------------

def export_bundle(engine: Engine, name: str) -> dict[str, Any]:
    """The installed bundle with admin customisations: {"manifest", "objects",
    "workflows", "roles", "reports", "dashboards"}."""
    with engine.connect() as conn:
        rows = {r.name: r for r in conn.execute(sa.select(systemdb.bundles)).fetchall()}
        _, published = VersionStore().published(conn)
    row = rows.get(name)
    if row is None:
        raise RecordError(f"no installed bundle {name[:63]!r}", status=404)
    pristine = Snapshot.from_json(row.pristine)
    for other, other_row in rows.items():   # what other bundles add to its objects is theirs
        if other != name:
            published = without_bundle(published, Snapshot(extensions=Snapshot.from_json(other_row.pristine).extensions))
    uids = {o.uid for o in pristine.objects}
    exported = {"manifest": row.manifest,
                "objects": [as_json(o) | {"name": o.name, "uid": o.uid} for o in published.objects if o.uid in uids]}
    for folder in NAMED:
        shipped = {x.name for x in getattr(pristine, folder)}
        exported[folder] = [as_json(x) for x in getattr(published, folder) if x.name in shipped]
    exported["extensions"] = []
    for ext in pristine.extensions:
        obj = published.object(ext.name)
        if obj is None:
            continue
        uids, rules, sections = {f.uid for f in ext.fields}, {r.name for r in ext.validation_rules}, \
            [_dump(x) for x in ext.form]
        current = ObjectExtension(name=ext.name, fields=[f for f in obj.fields if f.uid in uids],
                                  validation_rules=[r for r in obj.validation_rules if r.name in rules],
                                  form=[x for x in obj.layouts.form if _dump(x) in sections])
        exported["extensions"].append(as_json(current) | {"name": ext.name})
    return exported


def write_bundle(data: Mapping[str, Any], out_dir: str | Path) -> Path:
    out = Path(out_dir)
    (out / "objects").mkdir(parents=True, exist_ok=True)
    (out / "bundle.json").write_text(json.dumps(data["manifest"], indent=2, ensure_ascii=False) + "\n", "utf-8")
    for obj in data["objects"]:
        (out / "objects" / f"{obj['name']}.json").write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", "utf-8")
    for kind in (*NAMED, "extensions"):
        if data.get(kind):
            (out / kind).mkdir(exist_ok=True)
            for item in data[kind]:
                (out / kind / f"{item['name']}.json").write_text(json.dumps(item, indent=2, ensure_ascii=False) + "\n", "utf-8")
    return out


# --- the archive -------------------------------------------------------------------------

def list_archive(engine: Engine) -> list[dict[str, Any]]:
    t = systemdb.archives
    with engine.connect() as conn:
        rows = conn.execute(sa.select(t).where(t.c.restored_at.is_(None)).order_by(t.c.archived_at.desc())).fetchall()
    return [{"id": r.id, "kind": r.kind, "object": r.object_name, "field": r.field_name, "rows": r.rows,
             "metadata_version": r.metadata_version, "archived_at": r.archived_at.isoformat() if r.archived_at else None,
             "definition": r.definition} for r in rows]


def restore_into_draft(runtime, entry_id: str, user_id: str | None) -> dict[str, Any]:
    """Put an archived object or field back into the draft (with its uid);
    publishing the draft then restores its data."""
    t = systemdb.archives
    with write_transaction(runtime.engine) as conn:
        row = conn.execute(sa.select(t).where(t.c.id == entry_id, t.c.restored_at.is_(None))).first()
        if row is None or row.kind not in ("field", "object"):
            raise RecordError(f"no restorable archive entry {entry_id[:40]!r}", status=404)
        published_version, _ = runtime.store.published(conn)
        base, snapshot, _ = runtime.store.draft(conn)
        if row.kind == "object":
            obj = ObjectDef.model_validate(row.definition)
            if snapshot.object(obj.name) is not None:
                raise RecordError(f"an object named {obj.name!r} exists; rename it first", status=409)
            snapshot = snapshot.with_object(obj)
        else:
            obj = next((o for o in snapshot.objects if o.uid == row.object_uid), None)
            if obj is None:
                raise RecordError(f"object {row.object_name!r} is not in the draft", status=409)
            f = ObjectDef.model_validate({"name": "x", "fields": [row.definition]}).fields[0]
            if obj.field(f.name) is not None:
                raise RecordError(f"{obj.name} already has a field {f.name!r}", status=409)
            snapshot = snapshot.with_object(obj.model_copy(update={"fields": [*obj.fields, f]}))
        runtime.store.save_draft(conn, snapshot, published_version, user_id)
    return {"restored_into_draft": row.kind, "object": row.object_name, "field": row.field_name}
