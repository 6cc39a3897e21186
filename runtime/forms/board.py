"""The pipeline board of `layouts.kanban`: one column per stage or option
of `group_by`, each with its count and the sum of `sum`, computed by one
GROUP BY over the whole table; cards are the first rows of each column."""

from __future__ import annotations

from dataclasses import dataclass, field as dc_field
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from loomcrm.metadata.model import ObjectDef

from ..query import ListParams, build_select, list_records

CARDS_PER_COLUMN = 50


@dataclass
class Column:
    value: str | None
    option: Any                # the Stage or Option (None for "no value")
    count: int = 0
    total: Decimal | None = None
    cards: list[dict] = dc_field(default_factory=list)


def board_columns(obj: ObjectDef) -> list[tuple[str, Any]]:
    f = obj.field(obj.layouts.kanban.group_by)
    options = f.stages if f.type == "stage" else f.options
    return [(o.value, o) for o in options]


def sum_field(obj: ObjectDef):
    """The field a board sums, if the object (as the user knows it) has it."""
    layout = obj.layouts.kanban
    return obj.field(layout.sum) if layout is not None and layout.sum else None


def totals(conn, schema, obj: ObjectDef, params: ListParams, access=None) -> dict[str | None, tuple[int, Decimal | None]]:
    """{group value: (count, sum)} over every matching record the user may read."""
    layout = obj.layouts.kanban
    summed = sum_field(obj)
    _table, query = build_select(schema, obj, params, access, dialect=conn.dialect.name)
    sub = query.subquery()
    columns = [sub.c[layout.group_by], sa.func.count()]
    if summed is not None:
        columns.append(sa.func.sum(sub.c[summed.name]))
    out = {}
    for row in conn.execute(sa.select(*columns).group_by(sub.c[layout.group_by])):
        total = (Decimal(row[2]) if row[2] is not None else Decimal(0)) if summed is not None else None
        out[row[0]] = (row[1], total)
    return out


def build_board(conn, schema, obj: ObjectDef, params: ListParams, *, per_column: int = CARDS_PER_COLUMN,
                access=None) -> list[Column]:
    layout = obj.layouts.kanban
    summed = sum_field(obj)
    counts = totals(conn, schema, obj, params, access)
    columns = []
    for value, option in board_columns(obj):
        count, total = counts.get(value, (0, Decimal(0) if summed is not None else None))
        column = Column(value, option, count, total)
        if count:
            column_params = ListParams(limit=per_column, sort=params.sort, q=params.q, filter_expr=params.filter_expr,
                                       filters=params.filters + [(layout.group_by, "eq", value)])
            column.cards, _ = list_records(conn, schema, obj, column_params, access)
        columns.append(column)
    return columns
