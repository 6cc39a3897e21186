"""Saved reports and dashboards: who sees which, saving and deleting them,
and the dashboard that is a user's home page.

Reports and dashboards are metadata (they install and export with bundles),
but they change no table: saving one writes the next published version at
once, without a migration, so a sales manager can save a report without
an admin's publish. An admin's draft based on the version before is carried
along (the report goes into it too), so the draft never turns stale.
"""

from __future__ import annotations

from typing import Any

from loomcrm.metadata.model import Dashboard, Report
from loomcrm.metadata.versions import DraftConflict, Snapshot, VersionStore
from loomcrm.platform import audit
from loomcrm.platform.db import write_transaction

from .records import RecordError
from .reports import check_report


def may_see(item: Report | Dashboard, user: Any) -> bool:
    """Admins see everything; others what they created or what is shared
    with everyone or with their role."""
    if getattr(user, "is_admin", False) or (item.created_by and item.created_by == getattr(user, "username", None)):
        return True
    return item.shared_with == "everyone" or getattr(user, "role", None) in item.shared_with


def may_change(item: Report | Dashboard, user: Any) -> bool:
    return getattr(user, "is_admin", False) or bool(item.created_by) and item.created_by == getattr(user, "username", None)


def reports_for(schema, user: Any, access) -> list[Report]:
    """The saved reports `user` may run, over objects the user may see."""
    return [r for r in schema.reports.values() if may_see(r, user) and access.may_see_object(r.object)]


def report_for(schema, user: Any, access, name: str) -> Report:
    report = schema.reports.get(name)
    if report is None or not may_see(report, user) or not access.may_see_object(report.object):
        raise RecordError(f"no report {name[:63]!r}", status=404)
    return report


def dashboards_for(schema, user: Any) -> list[Dashboard]:
    return [d for d in schema.dashboards.values() if may_see(d, user)]


def dashboard_for(schema, user: Any, name: str) -> Dashboard:
    dashboard = schema.dashboards.get(name)
    if dashboard is None or not may_see(dashboard, user):
        raise RecordError(f"no dashboard {name[:63]!r}", status=404)
    return dashboard


def home_dashboard(schema, user: Any) -> Dashboard | None:
    """The first dashboard that is the home page of the user's role."""
    role = getattr(user, "role", None)
    return next((d for d in schema.dashboards.values() if role in d.home_of and may_see(d, user)), None)


def save_report(runtime, user: Any, report: Report) -> Report:
    """Add or replace a report (its creator or an admin may replace it)."""
    schema = runtime.schema()
    access = runtime.access.of(user)
    if not access.may_see_object(report.object):
        raise RecordError(f"no object {report.object[:63]!r}", status=404)
    before = schema.reports.get(report.name)
    if before is not None and not may_change(before, user):
        raise RecordError(f"the report {report.name!r} belongs to someone else: save it under another name",
                          status=409)
    report = _stamped(report, before, user)
    check_report(report, access.objects(schema.objects) if not access.everything else schema.objects)
    _write(runtime, user, "report.save", report.name, lambda s: _with(s, "reports", report))
    return report


def delete_report(runtime, user: Any, name: str) -> None:
    _deletable(runtime.schema().reports, user, name, "report")
    users = [d.name for d in runtime.schema().dashboards.values() if any(w.report == name for w in d.widgets)]
    if users:
        raise RecordError(f"the dashboard {users[0]!r} shows this report: take it off first", status=409)
    _write(runtime, user, "report.delete", name, lambda s: _without(s, "reports", name))


def save_dashboard(runtime, user: Any, dashboard: Dashboard) -> Dashboard:
    schema = runtime.schema()
    before = schema.dashboards.get(dashboard.name)
    if before is not None and not may_change(before, user):
        raise RecordError(f"the dashboard {dashboard.name!r} belongs to someone else", status=409)
    if dashboard.home_of and not getattr(user, "is_admin", False):
        raise RecordError("only an admin makes a dashboard a role's home page", status=403)
    for i, widget in enumerate(dashboard.widgets):
        if widget.report not in schema.reports:
            raise RecordError(f"widgets[{i}].report: no report {widget.report!r}",
                              errors=[{"field": f"widgets[{i}].report", "code": "not_found",
                                       "message": f"no report {widget.report!r}"}])
    dashboard = _stamped(dashboard, before, user)
    _write(runtime, user, "dashboard.save", dashboard.name, lambda s: _with(s, "dashboards", dashboard))
    return dashboard


def delete_dashboard(runtime, user: Any, name: str) -> None:
    _deletable(runtime.schema().dashboards, user, name, "dashboard")
    _write(runtime, user, "dashboard.delete", name, lambda s: _without(s, "dashboards", name))


def _stamped(item, before, user: Any):
    """`item` with its creator: the one it had, else the user saving it."""
    return item.model_copy(update={"created_by": before.created_by if before is not None and before.created_by
                                   else getattr(user, "username", None)})


def _deletable(items: dict, user: Any, name: str, kind: str) -> None:
    item = items.get(name)
    if item is None or not may_see(item, user):
        raise RecordError(f"no {kind} {name[:63]!r}", status=404)
    if not may_change(item, user):
        raise RecordError(f"only its creator or an admin may delete this {kind}", status=403)


def _with(snapshot: Snapshot, folder: str, item) -> Snapshot:
    items = list(getattr(snapshot, folder))
    at = next((i for i, x in enumerate(items) if x.name == item.name), None)
    if at is None:
        items.append(item)
    else:
        items[at] = item
    return snapshot.model_copy(update={folder: items})


def _without(snapshot: Snapshot, folder: str, name: str) -> Snapshot:
    return snapshot.model_copy(update={folder: [x for x in getattr(snapshot, folder) if x.name != name]})


def _write(runtime, user: Any, action: str, target: str, change) -> int:
    """The next published version with `change` made, and the draft based
    on the version before carried along; retried once if a publish raced."""
    store = VersionStore()
    for attempt in (1, 2):
        try:
            with write_transaction(runtime.engine) as conn:
                base, published = store.published(conn)
                version = store.record_version(conn, change(published), expected_base=base,
                                               comment=f"{action} {target}", user_id=getattr(user, "id", None))
                draft_base, draft, exists = store.draft(conn)
                if exists and draft_base == base:
                    store.save_draft(conn, change(draft), version, getattr(user, "id", None))
                audit.record(conn, user, action, target)
            break
        except DraftConflict:
            if attempt == 2:
                raise RecordError("the metadata changed meanwhile: try again", status=409) from None
    runtime.invalidate()
    return version
