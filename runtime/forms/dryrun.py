"""Check a form's values without saving them: the record service runs the
whole save (every rule, lookup and unique check) inside a transaction that
is always rolled back. Inline errors on blur are therefore the very errors
a submit, or the API, would give."""

from __future__ import annotations

from typing import Any

from ..records import RecordError


class _Rollback(Exception):
    pass


def check(runtime, object_name: str, rid: str | None, data: dict[str, Any], user, *,
          expected_version: int | None = None) -> tuple[int | None, list[dict[str, Any]]]:
    """(status, errors) of saving `data`; (None, []) when it would succeed."""
    outcome: tuple[int | None, list[dict[str, Any]]] = (None, [])
    with runtime.engine.connect() as conn:
        conn.info["write"] = True
        try:
            with conn.begin():
                try:
                    if rid is None:
                        runtime.records.create(object_name, data, user, conn=conn)
                    else:
                        runtime.records.update(object_name, rid, data, user, expected_version=expected_version, conn=conn)
                except RecordError as exc:
                    outcome = (exc.status, list(exc.errors) or [{"field": None, "code": "error", "message": exc.detail}])
                raise _Rollback  # never keep anything, whatever happened
        except _Rollback:
            pass
        finally:
            conn.info.pop("write", None)
    return outcome
