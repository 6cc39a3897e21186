"""Sales analytics over the stage history Loom records (`track_history` of a
stage field): the funnel with stage-to-stage conversion, the time deals
spend in each stage and where open deals stall, and win rate and cycle
length by owner. Each is one SQL statement over the history and the
object's table, through the user's record access, like a report.

A record's path through the stages is its history rows of the stage field
(the value it was created with, then each change) in time order; a record
without history counts from its current stage, entered when it was created.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa

from loomcrm.metadata.model import StageField, localized
from loomcrm.platform import systemdb

from .records import RecordError
from .reports import Narrowing, _bucket, _day_start, _local, _plain

HISTORY = systemdb.history


@dataclass(frozen=True)
class Pipeline:
    """The object, its stage field and what the user may read of it."""

    table: sa.Table
    field: StageField
    conditions: list

    @property
    def open_stages(self) -> list[str]:
        return [s.value for s in self.field.stages if s.category == "open"]

    def label(self, value: str, locale: str) -> str:
        stage = next((s for s in self.field.stages if s.value == value), None)
        return localized(stage.label, locale, value) if stage is not None else value


def pipeline_of(schema, object_name: str, access, narrowing: Narrowing | None = None, zone=timezone.utc) -> Pipeline:
    obj = schema.object(object_name)
    if obj is None or not access.may_see_object(object_name):
        raise RecordError(f"no object {object_name[:63]!r}", status=404)
    field = next((f for f in obj.fields if isinstance(f, StageField)), None)
    if field is None:
        raise RecordError(f"{object_name} has no stage field", status=422)
    if field.name not in obj.track_history:
        raise RecordError(f"{object_name}.{field.name} keeps no history (add it to track_history)", status=422)
    table = schema.table(object_name)
    conditions = [table.c._deleted_at.is_(None)]
    clause = access.clause(table, object_name, "read")
    if clause is not None:
        conditions.append(clause)
    narrowing = narrowing or Narrowing()
    if narrowing.owner:
        conditions.append(table.c.owner == narrowing.owner)
    if narrowing.date_from:
        conditions.append(table.c.created_at >= _day_start(narrowing.date_from, zone))
    if narrowing.date_to:
        conditions.append(table.c.created_at < _day_start(narrowing.date_to + timedelta(days=1), zone))
    return Pipeline(table, field, conditions)


def _text(column, dialect: str):
    """A JSON string value as SQL text."""
    if dialect == "postgresql":
        return sa.type_coerce(column.op("#>>")(sa.literal_column("'{}'")), sa.Text)
    return sa.func.json_extract(column, "$")


def _entries(pipeline: Pipeline, object_name: str, dialect: str):
    """(record_id, stage, entered_at, seq) of every stage a readable record entered."""
    table = pipeline.table
    readable = sa.select(table.c.id).where(*pipeline.conditions)
    logged = sa.select(HISTORY.c.record_id.label("record_id"), _text(HISTORY.c.new_value, dialect).label("stage"),
                       HISTORY.c.changed_at.label("entered_at"), HISTORY.c.id.label("seq")) \
        .where(HISTORY.c.object == object_name, HISTORY.c.field == pipeline.field.name,
               HISTORY.c.record_id.in_(readable))
    unlogged = sa.select(table.c.id.label("record_id"), table.c[pipeline.field.name].label("stage"),
                         table.c.created_at.label("entered_at"), sa.literal(0).label("seq")) \
        .where(*pipeline.conditions, ~sa.exists().where(HISTORY.c.object == object_name,
                                                        HISTORY.c.field == pipeline.field.name,
                                                        HISTORY.c.record_id == table.c.id))
    return sa.union_all(logged, unlogged).subquery("entries")


def funnel(conn: sa.Connection, schema, object_name: str, access, locale: str = "en",
           narrowing: Narrowing | None = None, zone=timezone.utc) -> dict[str, Any]:
    """How many records reached each open stage and won, and the share of
    each step that went on to the next: `{"steps": [{"stage", "label",
    "reached", "conversion"}]}` (conversion to the next step, None last)."""
    pipeline = pipeline_of(schema, object_name, access, narrowing, zone)
    ordered = pipeline.open_stages + [s.value for s in pipeline.field.stages if s.category == "won"]
    depth_of = {value: i for i, value in enumerate(ordered)}
    entries = _entries(pipeline, object_name, conn.dialect.name)
    depth = sa.func.max(sa.case(depth_of, value=entries.c.stage, else_=-1)).label("depth")
    per_record = sa.select(entries.c.record_id, depth).group_by(entries.c.record_id).subquery()
    counts = dict(conn.execute(sa.select(per_record.c.depth, sa.func.count()).group_by(per_record.c.depth)).all())
    steps, reached = [], 0
    for i in reversed(range(len(ordered))):
        reached += counts.get(i, 0)
        steps.append({"stage": ordered[i], "label": pipeline.label(ordered[i], locale), "reached": reached})
    steps.reverse()
    for step, following in zip(steps, steps[1:] + [None]):
        step["conversion"] = (round(following["reached"] / step["reached"], 4)
                              if following is not None and step["reached"] else None)
    return {"steps": steps}


def stage_times(conn: sa.Connection, schema, object_name: str, access, locale: str = "en",
                narrowing: Narrowing | None = None, zone=timezone.utc, now: datetime | None = None) -> dict[str, Any]:
    """Days spent in each stage, from the history: `{"stages": [{"stage",
    "label", "passed", "avg_days", "open", "open_avg_days", "max_open_days"}]}`;
    `passed` counts the stays that ended (the deal moved on), `open` the
    deals in the stage now, with how long they have been there (where
    deals stall)."""
    pipeline = pipeline_of(schema, object_name, access, narrowing, zone)
    dialect = conn.dialect.name
    entries = _entries(pipeline, object_name, dialect)
    left = sa.func.lead(entries.c.entered_at).over(partition_by=entries.c.record_id,
                                                   order_by=(entries.c.entered_at, entries.c.seq))
    stays = sa.select(entries.c.record_id, entries.c.stage, entries.c.entered_at, left.label("left_at")).subquery()
    now = now or datetime.now(timezone.utc)
    if dialect == "postgresql":
        def days(a, b):
            return sa.func.extract("epoch", b - a) / 86400.0
        until = sa.func.coalesce(stays.c.left_at, sa.literal(now, sa.DateTime(timezone=True)))
    else:
        def days(a, b):
            return sa.func.julianday(b) - sa.func.julianday(a)
        until = sa.func.coalesce(stays.c.left_at, sa.literal(now.replace(tzinfo=None).isoformat(" ")))
    ended = stays.c.left_at.is_not(None)
    open_stages = pipeline.open_stages
    statement = sa.select(
        stays.c.stage,
        sa.func.count().filter(ended).label("passed"),
        sa.func.avg(days(stays.c.entered_at, stays.c.left_at)).filter(ended).label("avg_days"),
        sa.func.count().filter(~ended).label("open"),
        sa.func.avg(days(stays.c.entered_at, until)).filter(~ended).label("open_avg_days"),
        sa.func.max(days(stays.c.entered_at, until)).filter(~ended).label("max_open_days"),
    ).where(stays.c.stage.in_(open_stages)).group_by(stays.c.stage)
    found = {row.stage: row for row in conn.execute(statement)}

    def rounded(value):
        return round(float(value), 1) if value is not None else None
    return {"stages": [{"stage": s, "label": pipeline.label(s, locale),
                        "passed": found[s].passed if s in found else 0,
                        "avg_days": rounded(found[s].avg_days) if s in found else None,
                        "open": found[s].open if s in found else 0,
                        "open_avg_days": rounded(found[s].open_avg_days) if s in found else None,
                        "max_open_days": rounded(found[s].max_open_days) if s in found else None}
                       for s in open_stages]}


def win_rates(conn: sa.Connection, schema, object_name: str, access, locale: str = "en",
              narrowing: Narrowing | None = None, zone=timezone.utc, by: str | None = None) -> dict[str, Any]:
    """Per owner (and per `by` month, quarter or year of closing), of the
    deals closed (won or lost, by when they closed): `{"owners": [{"owner",
    "period", "won", "lost", "win_rate", "avg_cycle_days"}]}`; the cycle runs
    from a won deal's creation to its win."""
    if by not in (None, "month", "quarter", "year"):
        raise RecordError("by is month, quarter or year", errors=[
            {"field": "by", "code": "invalid_option", "message": "month, quarter or year"}], status=400)
    pipeline = pipeline_of(schema, object_name, access, Narrowing(owner=(narrowing or Narrowing()).owner), zone)
    dialect = conn.dialect.name
    table = pipeline.table
    won = [s.value for s in pipeline.field.stages if s.category == "won"]
    lost = [s.value for s in pipeline.field.stages if s.category == "lost"]
    entries = _entries(pipeline, object_name, dialect)
    closing = sa.select(entries.c.record_id, sa.func.max(entries.c.entered_at).label("closed_at")) \
        .where(entries.c.stage.in_(won + lost)).group_by(entries.c.record_id).subquery()
    stage = table.c[pipeline.field.name]
    narrowing = narrowing or Narrowing()
    conditions = [stage.in_(won + lost)]
    if narrowing.date_from:
        conditions.append(closing.c.closed_at >= _day_start(narrowing.date_from, zone))
    if narrowing.date_to:
        conditions.append(closing.c.closed_at < _day_start(narrowing.date_to + timedelta(days=1), zone))
    if dialect == "postgresql":
        cycle = sa.func.extract("epoch", closing.c.closed_at - table.c.created_at) / 86400.0
    else:
        cycle = sa.func.julianday(closing.c.closed_at) - sa.func.julianday(table.c.created_at)
    is_won = stage.in_(won)
    period = _bucket(_local(closing.c.closed_at, zone, dialect), by, dialect) if by else sa.null()
    statement = sa.select(
        table.c.owner, period.label("period"),
        sa.func.count().filter(is_won).label("won"),
        sa.func.count().filter(~is_won).label("lost"),
        sa.func.avg(cycle).filter(is_won).label("cycle"),
    ).select_from(table.join(closing, closing.c.record_id == table.c.id)) \
        .where(*pipeline.conditions, *conditions)
    keys = [table.c.owner, period] if by else [table.c.owner]
    statement = statement.group_by(*keys).order_by(*keys)
    owners = []
    for row in conn.execute(statement):
        closed = row.won + row.lost
        owners.append({"owner": row.owner, "period": _plain(row.period), "won": row.won, "lost": row.lost,
                       "win_rate": round(row.won / closed, 4) if closed else None,
                       "avg_cycle_days": round(float(row.cycle), 1) if row.cycle is not None else None})
    return {"owners": owners}
