"""What a formula's value is stored as: the formula's declared type, at
its scale."""

from __future__ import annotations

from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from loomcrm.metadata.model import FormulaField


_QUANTA = {scale: Decimal(1).scaleb(-scale) for scale in range(19)}


def _quantum(scale: int) -> Decimal:
    quantum = _QUANTA.get(scale)
    return quantum if quantum is not None else Decimal(1).scaleb(-scale)


def formula_value(f: FormulaField, value: Any) -> Any:
    """A formula's result in the form its column stores; ValueError when
    the expression gave a value of another kind."""
    if value is None:
        return None
    kind = f.returns
    if kind == "text":
        return value if isinstance(value, str) else str(value)
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        raise ValueError("the formula gave no true/false value")
    if kind in ("integer", "decimal", "currency", "percent"):
        if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
            raise ValueError("the formula gave no number")
        number = Decimal(value)
        try:
            if kind == "integer":
                return int(number.quantize(Decimal(1), rounding=ROUND_HALF_UP))
            return number.quantize(_quantum(f.scale if f.scale is not None else 6), rounding=ROUND_HALF_UP)
        except InvalidOperation:
            raise ValueError("the number is too large") from None
    if kind == "date":
        if isinstance(value, datetime):
            return value.date()
        if isinstance(value, date):
            return value
        raise ValueError("the formula gave no date")
    if kind == "datetime":
        if isinstance(value, datetime):
            return value
        raise ValueError("the formula gave no date and time")
    return value
