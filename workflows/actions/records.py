"""`update` writes the triggering record, `create` a new one: both through
the record service, with every rule, as the workflow's user. A save the
rules refuse is a dead run with the rules' messages: trying again would
be refused again."""

from __future__ import annotations

from typing import Any

from loomcrm.runtime.records import Conflict, PreconditionFailed, RecordError

from . import Act, Dead, Retry


def _values(act: Act) -> dict[str, Any]:
    return {key: act.value(f"values.{key}") for key in act.action.values}


def _refused(exc: RecordError, what: str) -> Exception:
    problems = "; ".join(f"{e.get('field') or ''}: {e.get('message')}".lstrip(": ") for e in exc.errors) or exc.detail
    if isinstance(exc, (PreconditionFailed, Conflict)) and not any(e.get("code") in ("duplicate", "unique") for e in exc.errors):
        return Retry(f"{what} clashed with another change: {problems}")
    return Dead(f"{what} was refused: {problems}", "refused")


def update_record(act: Act) -> dict[str, Any]:
    if act.deleted:
        raise Dead("the record was deleted before the update could run", "deleted")
    values = _values(act)
    try:
        saved = act.automation.runtime.records.update(act.flow.obj.name, act.record["id"], values, act.user,
                                                      conn=act.conn, origin=act.origin)
    except RecordError as exc:
        raise _refused(exc, f"the update of {act.flow.obj.name} {act.record['id']}") from None
    return {"updated": {"object": act.flow.obj.name, "id": saved["id"], "fields": sorted(values)}}


def create_record(act: Act) -> dict[str, Any]:
    target = act.action.object
    values = _values(act)
    obj = act.schema.object(target)
    if obj is None:
        raise Dead(f"there is no object {target!r} any more", "unknown_object")
    # the new record belongs to the triggering record's owner unless the action says otherwise
    if "owner" not in values and act.record.get("owner"):
        values["owner"] = act.record["owner"]
    try:
        saved = act.automation.runtime.records.create(target, values, act.user, conn=act.conn, origin=act.origin)
    except RecordError as exc:
        raise _refused(exc, f"creating a {target}") from None
    return {"created": {"object": target, "id": saved["id"]}}
