"""Targets (目标管理): what a user or a department should reach in a month,
quarter or year, on the number a saved report counts (won amount,
collected amount, new leads, visits, ...). Attainment is that report run
by the same engine over the period (on the report's date field) and the
holder's records (the user's, or those owned in the department and below
it), through the viewer's record access.

Admins set every target; a department's manager sets those of the
department, the departments below it and their people.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa

from loomcrm.metadata.checks import value_type
from loomcrm.platform import audit, systemdb
from loomcrm.platform.db import write_transaction

from .access import departments, descendants
from .records import RecordError
from .reports import Narrowing, run_report

PERIODS = ("month", "quarter", "year")
TARGETS = systemdb.targets


def period_start(period: str, day: date) -> date:
    if period == "month":
        return day.replace(day=1)
    if period == "quarter":
        return date(day.year, (day.month - 1) // 3 * 3 + 1, 1)
    return date(day.year, 1, 1)


def period_end(period: str, start: date) -> date:
    """The period's last day."""
    months = {"month": 1, "quarter": 3, "year": 12}[period]
    month = start.month - 1 + months
    following = date(start.year + month // 12, month % 12 + 1, 1)
    return date.fromordinal(following.toordinal() - 1)


@dataclass(frozen=True)
class Holder:
    kind: str          # user or department
    id: str
    name: str


def _problem(field: str, code: str, message: str, status: int = 422) -> RecordError:
    return RecordError(f"{field}: {message}", errors=[{"field": field, "code": code, "message": message}], status=status)


def target_report(schema, name: str):
    """The saved report a target counts: one number (no groups)."""
    report = schema.reports.get(name)
    if report is None:
        raise _problem("report", "not_found", f"no report {name[:63]!r}")
    if report.group_by:
        raise _problem("report", "type", f"{name} groups its rows: a target counts a report of one number")
    return report


def managed_departments(conn: sa.Connection, user: Any) -> frozenset[str] | None:
    """The departments whose targets `user` may set; None: all (an admin)."""
    if getattr(user, "is_admin", False):
        return None
    tree = departments(conn)
    found: set[str] = set()
    for dept in tree.values():
        if dept["manager_id"] == getattr(user, "id", None):
            found |= descendants(tree, dept["id"])
    return frozenset(found)


def _holder(conn: sa.Connection, user: str | None, department: str | None) -> Holder:
    if bool(user) == bool(department):
        raise _problem("holder", "required", "a target is for one user or one department")
    if user:
        row = conn.execute(sa.select(systemdb.users.c.id, systemdb.users.c.display_name, systemdb.users.c.username,
                                     systemdb.users.c.department_id)
                           .where(sa.or_(systemdb.users.c.username == user, systemdb.users.c.id == user))).first()
        if row is None:
            raise _problem("user", "not_found", f"no user {user[:150]!r}")
        return Holder("user", row.id, row.display_name or row.username)
    row = conn.execute(sa.select(systemdb.departments.c.id, systemdb.departments.c.label)
                       .where(sa.or_(systemdb.departments.c.name == department,
                                     systemdb.departments.c.id == department))).first()
    if row is None:
        raise _problem("department", "not_found", f"no department {department[:63]!r}")
    return Holder("department", row.id, row.label)


def _may_set(conn: sa.Connection, actor: Any, holder: Holder) -> bool:
    managed = managed_departments(conn, actor)
    if managed is None:
        return True
    if holder.kind == "department":
        return holder.id in managed
    dept = conn.execute(sa.select(systemdb.users.c.department_id).where(systemdb.users.c.id == holder.id)).scalar()
    return dept in managed


def set_target(runtime, actor: Any, data: dict[str, Any]) -> dict[str, Any]:
    """Add or replace the target of `data`: {"report", "user" or
    "department" (a name), "period", "starts_on" (any day of it), "value"}."""
    schema = runtime.schema()
    report = target_report(schema, str(data.get("report") or ""))
    period = data.get("period")
    if period not in PERIODS:
        raise _problem("period", "invalid_option", "month, quarter or year")
    try:
        start = period_start(period, date.fromisoformat(str(data.get("starts_on") or "")))
    except ValueError:
        raise _problem("starts_on", "type", "a date (YYYY-MM-DD)") from None
    try:
        value = Decimal(str(data.get("value")))
    except (InvalidOperation, ValueError):
        raise _problem("value", "type", "a number") from None
    if not value.is_finite() or value < 0 or value >= Decimal(10) ** 16 or value != value.quantize(Decimal("0.01")):
        raise _problem("value", "max", "a number from 0 with at most 2 decimals")
    with write_transaction(runtime.engine) as conn:
        holder = _holder(conn, data.get("user"), data.get("department"))
        if not _may_set(conn, actor, holder):
            raise RecordError("only an admin or the department's manager sets this target", status=403)
        key = {"report": report.name, "holder_kind": holder.kind, "holder_id": holder.id, "period": period,
               "starts_on": start}
        values = {"value": value, "set_by": getattr(actor, "id", None), "updated_at": datetime.now(timezone.utc)}
        changed = conn.execute(sa.update(TARGETS).where(*[TARGETS.c[k] == v for k, v in key.items()]).values(**values))
        if changed.rowcount == 0:
            conn.execute(sa.insert(TARGETS).values(id=uuid.uuid4().hex, **key, **values))
        audit.record(conn, actor, "target.set", f"{holder.kind} {holder.name}",
                     {"report": report.name, "period": period, "starts_on": start.isoformat(), "value": str(value)})
    return {"report": report.name, "holder": holder.__dict__, "period": period, "starts_on": start.isoformat(),
            "value": value}


def delete_target(runtime, actor: Any, target_id: str) -> None:
    with write_transaction(runtime.engine) as conn:
        row = conn.execute(sa.select(TARGETS).where(TARGETS.c.id == target_id)).first()
        if row is None:
            raise RecordError("no such target", status=404)
        if not _may_set(conn, actor, Holder(row.holder_kind, row.holder_id, "")):
            raise RecordError("only an admin or the department's manager removes this target", status=403)
        conn.execute(sa.delete(TARGETS).where(TARGETS.c.id == target_id))
        audit.record(conn, actor, "target.delete", f"{row.holder_kind} {row.holder_id}", {"report": row.report})


def targets_on(runtime, viewer: Any, day: date, locale: str = "en") -> list[dict[str, Any]]:
    """The targets of the periods that hold `day` which `viewer` follows
    (their own, and those they may set), each with
    what was achieved: `{"id", "report", "label", "holder", "period",
    "starts_on", "ends_on", "value", "achieved", "attainment", "may_change"}`."""
    from loomcrm.metadata.model import localized

    schema = runtime.schema()
    access = runtime.access.of(viewer)
    starts = [period_start(p, day) for p in PERIODS]
    with runtime.engine.connect() as conn:
        managed = managed_departments(conn, viewer)
        rows = conn.execute(sa.select(TARGETS).where(
            sa.or_(*[sa.and_(TARGETS.c.period == p, TARGETS.c.starts_on == s) for p, s in zip(PERIODS, starts)]))
            .order_by(TARGETS.c.holder_kind.desc(), TARGETS.c.report)).all()
        users = dict(conn.execute(sa.select(systemdb.users.c.id, systemdb.users.c.department_id)).all())
        tree = departments(conn)
        names = {r.id: r.display_name or r.username for r in conn.execute(
            sa.select(systemdb.users.c.id, systemdb.users.c.display_name, systemdb.users.c.username))}
        shown = []
        for row in rows:
            dept = row.holder_id if row.holder_kind == "department" else users.get(row.holder_id)
            # a department's progress only to those who set it: through a
            # rep's access it would count the rep's own records alone
            mine = row.holder_kind == "user" and row.holder_id == getattr(viewer, "id", None)
            may_change = managed is None or dept in managed
            if not (mine or may_change):
                continue
            report = schema.reports.get(row.report)
            if report is None or not access.may_see_object(report.object):
                continue
            narrowing = Narrowing(date_from=row.starts_on, date_to=period_end(row.period, row.starts_on),
                                  owner=row.holder_id if row.holder_kind == "user" else None,
                                  departments=descendants(tree, row.holder_id) if row.holder_kind == "department"
                                  else frozenset())
            # the number the report shows: its chart's measure, else its first
            names_of = [m.name for m in report.measures]
            y = report.chart.y if report.chart and report.chart.y in names_of else names_of[0]
            try:
                result = run_report(conn, schema, report, access, locale, zone=runtime.context.timezone,
                                    narrowing=narrowing)
                achieved = (result["totals"] or [None] * len(names_of))[names_of.index(y)]
            except RecordError:   # the report no longer runs (a field it reads was dropped)
                achieved = None
            achieved = Decimal(str(achieved)) if achieved is not None else Decimal(0)
            holder = names.get(row.holder_id) if row.holder_kind == "user" else \
                (tree.get(row.holder_id) or {}).get("label", row.holder_id)
            measure = next(m for m in report.measures if m.name == y)
            obj = schema.objects[report.object]
            field = obj.field(measure.field) if measure.field else None
            money = measure.function in ("sum", "avg", "min", "max") and field is not None \
                and value_type(schema.objects, obj, field) == "currency"
            shown.append({"id": row.id, "report": row.report, "label": localized(report.label, locale, report.name),
                          "money": money,
                          "holder": {"kind": row.holder_kind, "id": row.holder_id, "name": holder},
                          "period": row.period, "starts_on": row.starts_on.isoformat(),
                          "ends_on": period_end(row.period, row.starts_on).isoformat(), "value": row.value,
                          "achieved": achieved,
                          "attainment": round(float(achieved / row.value), 4) if row.value else None,
                          "may_change": may_change})
    return shown
