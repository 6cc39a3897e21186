"""Converting a record by its object's `conversion` (a qualified lead into an
account, a contact and maybe an opportunity), in one transaction through
the record service.

Each target, in order, is either a record that exists (`{"id": ...}`, for a
target marked `existing`: the preview proposes the ones its duplicate rules
find) or made from the source's values by the target's `fields`, its fixed
`values`, links to the targets made before it and a link back to the
source, with the user's own `values` on top. The source's activities and
tasks move to the `move_to` target; the source is marked (`mark`) and
keeps a link to each target; a history entry names them. Any refusal
undoes everything and says which target refused.
"""

from __future__ import annotations

from typing import Any

from loomcrm.metadata.model import ConversionTarget, ObjectDef
from loomcrm.platform.db import write_transaction

from .fields import FieldError, field_type
from .records import API, CONVERTED_FIELD, Conflict, NotFound, Origin, RecordError
from .rules.duplicates import find_matches

OWNER = "owner"


def conversion_of(schema, object_name: str):
    obj = schema.object(object_name) if isinstance(object_name, str) else None
    if obj is None:
        raise NotFound(f"there is no object {str(object_name)[:63]!r}")
    if obj.conversion is None:
        raise NotFound(f"{obj.name} records cannot be converted")
    return obj, obj.conversion


def converted(obj: ObjectDef, record: dict[str, Any]) -> bool:
    """Whether the record was converted (it links to a target)."""
    return any(record.get(t.link) for t in obj.conversion.targets)


def _mapped(target: ConversionTarget, made, source: dict[str, Any]) -> dict[str, Any]:
    """The target's values from the source record (JSON values) and its fixed ones."""
    values = {name: source.get(field) for name, field in target.fields.items()
              if made.field(name) is not None and source.get(field) not in (None, "", [])}
    return {**values, **target.values}


def preview(runtime, object_name: str, rid: str, user) -> dict[str, Any]:
    """What converting the record would make: per target the values it
    would take, the required fields they leave blank, and for a target that
    may exist the records its duplicate rules match."""
    schema = runtime.schema()
    obj, conversion = conversion_of(schema, object_name)
    source = runtime.records.get(obj.name, rid, user, schema=schema)
    out = []
    with runtime.engine.connect() as conn:
        for target in conversion.targets:
            made = schema.object(target.object)
            values = _mapped(target, made, source)
            matches: list[str] = []
            if target.existing:
                stored = _stored(made, values, runtime.context)
                for rule in made.duplicate_rules:
                    matches += [m for m in find_matches(conn, schema, made, rule, stored, None) if m not in matches]
            missing = [f.name for f in made.fields if f.required and f.default is None and not f.default_expr
                       and f.name not in values and f.name not in target.links]
            out.append({"object": target.object, "optional": target.optional, "existing": target.existing,
                        "values": values, "missing": missing, "matches": matches})
    return {"converted": converted(obj, source), "targets": out}


def _stored(obj: ObjectDef, values: dict[str, Any], ctx) -> dict[str, Any]:
    """JSON values as the record service stores them (`ctx`: the field
    context, a phone's default region), for the duplicate rules."""
    out = {}
    for name, value in values.items():
        f = obj.field(name)
        try:
            out[name] = field_type(f).coerce(f, value, ctx) if f is not None and value is not None else value
        except FieldError:   # a value the target refuses matches nothing; saving it says why
            out[name] = None
    return out


def convert(runtime, object_name: str, rid: str, body: Any, user, *, origin: Origin = API) -> dict[str, Any]:
    """Convert the record as `body` says: per target object name, {"id": an
    existing record} (a target marked `existing`), {"values": {...}} to make
    it with these values over the mapped ones, or null to leave an optional
    target out (an optional target left unnamed is left out too). Answers
    the source and each target record, by object name."""
    schema = runtime.schema()
    obj, conversion = conversion_of(schema, object_name)
    if body is None:
        body = {}
    known = {t.object for t in conversion.targets}
    if not isinstance(body, dict) or any(k not in known for k in body):
        raise RecordError(f"send an object whose keys are targets of the conversion: {', '.join(sorted(known))}",
                          status=422)
    records = runtime.records
    with write_transaction(runtime.engine) as conn:
        source = records.get(obj.name, rid, user, conn=conn, schema=schema)
        if converted(obj, source):
            raise Conflict(f"this {obj.name} was converted already")
        made: dict[str, dict[str, Any]] = {}
        for target in conversion.targets:
            choice = body.get(target.object, {} if not target.optional else None)
            if choice is None:
                if not target.optional:
                    raise RecordError(f"{target.object} cannot be left out of the conversion", status=422)
                continue
            made[target.object] = _target(runtime, conn, schema, obj, target, source, choice, made, user, origin)
        kept = conversion.move_to and made.get(conversion.move_to)
        if kept:
            records.move_links(conn, schema, obj, rid, schema.object(conversion.move_to), kept["id"], user,
                               lookups=False, origin=origin)
        marks = {**conversion.mark, **{t.link: made[t.object]["id"] for t in conversion.targets if t.object in made}}
        try:
            result = {obj.name: records.update(obj.name, rid, marks, user, conn=conn, schema=schema, origin=origin)}
        except RecordError as exc:
            raise exc.restated(f"the {obj.name} could not be marked converted", object=obj.name) from None
        records.mark(conn, obj, rid, CONVERTED_FIELD, {name: r["id"] for name, r in made.items()}, user)
        # as they are now: the moved activities count on the target they went to
        return result | {name: records.get(name, r["id"], user, conn=conn, schema=schema) for name, r in made.items()}


def _target(runtime, conn, schema, obj, target: ConversionTarget, source, choice, made, user, origin):
    records = runtime.records
    if not isinstance(choice, dict) or set(choice) - {"id", "values"} or ("id" in choice and "values" in choice):
        raise RecordError(f'{target.object}: send {{"id": ...}} or {{"values": {{...}}}}', status=422)
    if "id" in choice:
        if not target.existing:
            raise RecordError(f"{target.object} is always made new by the conversion", status=422)
        return records.get(target.object, choice["id"], user, conn=conn, schema=schema)
    given = choice.get("values", {})
    if not isinstance(given, dict):
        raise RecordError(f"{target.object}: values is an object", status=422)
    other = schema.object(target.object)
    data = _mapped(target, other, source)
    data |= {name: made[to]["id"] for name, to in target.links.items() if to in made}
    if target.back:
        data[target.back] = source["id"]
    if source.get(OWNER):
        data[OWNER] = source[OWNER]
    data |= given
    try:
        return records.create(target.object, data, user, conn=conn, schema=schema, origin=origin)
    except RecordError as exc:
        raise exc.restated(f"the {target.object} could not be made", object=target.object) from None
