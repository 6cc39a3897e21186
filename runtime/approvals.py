"""Approval processes (审批流, `approvals/<name>.json`) on any object.

A submit (by the record's owner, or by a save that makes the process's
`auto_submit` true) opens a request when the process's `entry` holds. Each
step whose `when` holds gets a task per approver: named users, every user
of some roles, the submitter's manager N levels up. In an `any` step the
first decision settles it (或签), in an `all` step every approver approves
(会签). An approver approves, rejects with a comment, sends the request back
to the submitter or to an earlier step (退回), adds an approver (加签) or
hands their task to someone else (转交); the submitter may recall it (撤回).
Every action lands in the record's history with its comment, and those who
must act next get a notification.

Each decision runs in one transaction that first locks the request row
(SQLite serialises writers), and takes the deciding task with an UPDATE
that only a pending task matches: of two approvers of an `any` step
clicking at once, exactly one decides. While a request is pending, the
fields the process locks refuse every writer but the step's approvers
(`locked_problems`, called by the record service); the values the process
sets (`on_submit`, `on_approve`, ...) are written through the record
service as the process's own writes.
"""

from __future__ import annotations

import contextvars
import dataclasses
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

import sqlalchemy as sa

from loomcrm.metadata.expressions import Scope
from loomcrm.metadata.model import ApprovalProcess, localized
from loomcrm.platform import i18n, systemdb
from loomcrm.platform.db import write_transaction

from .access import departments
from .expressions import compile_expression
from .expressions.context import default_context
from .records import Actor, Forbidden, NotFound, Origin, RecordError, record_title
from .rollups import db_fetch
from .rules.engine import RecordView

REQUESTS, TASKS, USERS = systemdb.approval_requests, systemdb.approval_tasks, systemdb.users
PENDING, APPROVED, REJECTED, RECALLED, RETURNED = "pending", "approved", "rejected", "recalled", "returned"
APPROVAL = Origin("approval")            # the process's own writes: past its locks
HISTORY_FIELD = "_approval"
BOXES = ("waiting", "submitted", "decided")
# what the people concerned are told, in their language
TEXTS = {
    "waiting": "%(record)s waits for your approval (%(process)s).",
    "approved": "%(record)s was approved (%(process)s).",
    "rejected": "%(record)s was rejected (%(process)s).",
    "returned": "%(record)s was sent back to you (%(process)s).",
    "reminder": "Reminder: %(record)s still waits for your approval (%(process)s).",
    "link": "Open it in Loom:",
}


class ApprovalError(RecordError):
    """A refused approval action: `code` says which (the API's `errors[0].code`)."""

    def __init__(self, code: str, message: str, status: int = 409):
        super().__init__(message, [{"field": None, "code": code, "message": message}], status)
        self.code = code


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def processes_of(schema, object_name: str) -> list[ApprovalProcess]:
    """The object's processes (every save asks: found once per metadata version)."""
    return schema.cached(("approval_processes", object_name),
                         lambda: [p for p in schema.approvals.values() if p.object == object_name])


def _process(schema, name: str) -> ApprovalProcess:
    process = schema.approvals.get(name) if isinstance(name, str) else None
    if process is None:
        raise NotFound(f"there is no approval process {str(name)[:63]!r}")
    return process


def _holds(schema, process: ApprovalProcess, source: str | None, row: dict[str, Any], conn, context=None) -> bool:
    """Whether the expression `source` (none: true) holds for the stored `row`."""
    if not source:
        return True
    compiled = schema.cached(("approval_expression", process.name, source), lambda: compile_expression(
        source, Scope(schema.objects, process.object, version=schema.version), expect="boolean"))
    view = RecordView(schema.objects, process.object, row, db_fetch(conn, schema))
    return compiled.evaluate(view, context=context or default_context()) is True


def _row(conn, schema, object_name: str, rid: str) -> dict[str, Any]:
    table = schema.table(object_name)
    query = sa.select(table).where(table.c.id == rid, table.c._deleted_at.is_(None))
    row = conn.execute(query).first()
    if row is None:
        raise NotFound(f"no {object_name} record {str(rid)[:40]!r}")
    return dict(row._mapping)


_LATEST = (sa.select(REQUESTS).where(REQUESTS.c.object == sa.bindparam("object"), REQUESTS.c.record_id == sa.bindparam("rid"))
           .order_by(REQUESTS.c.submitted_at.desc(), REQUESTS.c.id.desc()).limit(1))
# the statements of a decision, built once (bind names start with "_": they never clash with a column)
_REQUEST = sa.select(REQUESTS).where(REQUESTS.c.id == sa.bindparam("_id"))
_REQUEST_LOCKED = _REQUEST.with_for_update()   # SQLite renders no lock: it serialises writers
_SETTLE = sa.update(REQUESTS).where(REQUESTS.c.id == sa.bindparam("_id")).values(
    status=sa.bindparam("_status"), decided_at=sa.bindparam("_now"))
_END_TASKS = sa.update(TASKS).where(TASKS.c.request_id == sa.bindparam("_id"), TASKS.c.status == PENDING).values(
    status=sa.bindparam("_status"), decided_at=sa.bindparam("_now"))
_STEP_TASKS = [TASKS.c.request_id == sa.bindparam("_id"), TASKS.c.step == sa.bindparam("_step"),
               TASKS.c.status == PENDING]
_MINE = TASKS.c.approver == sa.bindparam("_uid")
_TAKE = sa.update(TASKS).where(*_STEP_TASKS, _MINE).values(
    status=sa.bindparam("_status"), comment=sa.bindparam("_comment"), decided_at=sa.bindparam("_now"))
# ... and in an any step, the user's task taken and the others ended in one statement
_TAKE_ALL = sa.update(TASKS).where(*_STEP_TASKS, sa.select(TASKS.c.id).where(*_STEP_TASKS, _MINE).exists()).values(
    status=sa.case((_MINE, sa.bindparam("_status")), else_=sa.bindparam("_others")), decided_at=sa.bindparam("_now"),
    comment=sa.case((_MINE, sa.bindparam("_comment")), else_=TASKS.c.comment))


def _in_their_language(name: str):
    """The text bound for each locale (`_{name}0`, `_{name}1`, ... in the
    order of `i18n.LOCALE_NAMES`) that is the user's."""
    return sa.case(*((USERS.c.locale == loc, sa.bindparam(f"_{name}{i}", type_=sa.Text))
                     for i, loc in enumerate(i18n.LOCALE_NAMES)), else_=sa.bindparam(f"_{name}0", type_=sa.Text))


# one row per user named: an id from the statement's prefix and the user's own
_ROW_ID = sa.bindparam("_prefix", type_=sa.String) + sa.func.substr(USERS.c.id, 1, 16)
_NAMED = USERS.c.id.in_(sa.bindparam("_people", expanding=True))
_NOTE = systemdb.notifications
_NOTIFY = sa.insert(_NOTE).from_select(
    ["id", "user_id", "message", "object", "record_id", "created_at"],
    sa.select(_ROW_ID, USERS.c.id, _in_their_language("m"), sa.bindparam("_object", type_=sa.String),
              sa.bindparam("_rid", type_=sa.String), sa.bindparam("_now", type_=_NOTE.c.created_at.type))
    .where(_NAMED))
# ... and an e-mail to each of them who has an address (the automation pump delivers it)
_MAIL = systemdb.mail_outbox
_QUEUE_MAIL = sa.insert(_MAIL).from_select(
    ["id", "address", "subject", "body", "created_at", "next_at"],
    sa.select(_ROW_ID, USERS.c.email, _in_their_language("m"), _in_their_language("b"),
              sa.bindparam("_now", type_=_MAIL.c.created_at.type), sa.bindparam("_now", type_=_MAIL.c.next_at.type))
    .where(_NAMED, USERS.c.email.is_not(None), USERS.c.email != ""))
MAILED = ("waiting", "reminder")       # what the next approvers are also e-mailed
# the request whose own write (`_set`) is under way: its saves need not read it
_settling: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("approval_settling", default=None)


def latest(conn, object_name: str, rid: str) -> dict[str, Any] | None:
    """The record's last request, if any."""
    row = conn.execute(_LATEST, {"object": object_name, "rid": rid}).first()
    return dict(row._mapping) if row is not None else None


def request_of_save(ctx) -> dict[str, Any] | None:
    """The last request of the record a save updates, read once per save
    (`approval_status()` and the locks both ask)."""
    memo = ctx.__dict__
    if "_approval_request" not in memo:
        settling = _settling.get()
        memo["_approval_request"] = settling if settling is not None and settling["record_id"] == ctx.old["id"] \
            else latest(ctx.conn, ctx.obj.name, ctx.old["id"])
    return memo["_approval_request"]


def status_of(conn, object_name: str, rid: str | None) -> str | None:
    """`approval_status()`: the status of the record's last request."""
    if rid is None:
        return None
    found = latest(conn, object_name, rid)
    return found["status"] if found else None


# --- who approves ---------------------------------------------------------------------

def managers_above(conn, user_id: str, levels: int) -> str | None:
    """The manager `levels` up from the user: the manager of their
    department (or of the one above, when they manage it themselves), then
    of the departments above; None when the chain ends first."""
    department = conn.execute(sa.select(USERS.c.department_id).where(USERS.c.id == user_id)).scalar()
    tree = departments(conn)
    found: list[str] = []
    seen: set[str] = set()
    while department is not None and department in tree and department not in seen:
        seen.add(department)
        manager = tree[department]["manager_id"]
        if manager and manager != user_id and manager not in found:
            found.append(manager)
            if len(found) == levels:
                return manager
        department = tree[department]["parent_id"]
    return None


def approvers_of(conn, step, submitter: str | None) -> list[str]:
    """The active users a step's `approvers` name, in a stable order."""
    who = step.approvers
    ids: list[str] = []
    if who.users or who.roles:
        rows = conn.execute(sa.select(USERS.c.id).where(USERS.c.is_active.is_(True), sa.or_(
            USERS.c.username.in_(who.users), USERS.c.id.in_(who.users), USERS.c.role.in_(who.roles)))
            .order_by(USERS.c.username)).scalars().all()
        ids += rows
    if who.manager and submitter:
        manager = managers_above(conn, submitter, who.manager)
        active = manager and conn.execute(sa.select(USERS.c.id).where(USERS.c.id == manager,
                                                                      USERS.c.is_active.is_(True))).scalar()
        if active and manager not in ids:
            ids.append(manager)
    return ids


def _user_id(conn, name: Any) -> str:
    """An active user named by id or user name."""
    found = conn.execute(sa.select(USERS.c.id).where(sa.or_(USERS.c.id == str(name), USERS.c.username == str(name)),
                                                     USERS.c.is_active.is_(True))).scalar() if name else None
    if found is None:
        raise ApprovalError("unknown_user", f"name an active user, not {str(name)[:63]!r}", 422)
    return found


# --- submitting --------------------------------------------------------------------------

def submit(runtime, user, object_name: str, rid: str, *, process: str | None = None, comment: str | None = None,
           conn=None, now: datetime | None = None) -> dict[str, Any]:
    """Submit the record: to `process`, or to the first of its object's
    processes whose entry holds. The owner (or an admin) submits; the
    request as `request_json` answers."""
    if conn is None:
        with write_transaction(runtime.engine) as own:
            return submit(runtime, user, object_name, rid, process=process, comment=comment, conn=own, now=now)
    schema = runtime.schema()
    runtime.records.get(object_name, rid, user, conn=conn, schema=schema)   # 404 unless readable
    row = _row(conn, schema, object_name, rid)
    if getattr(user, "role", None) != "admin" and row.get("owner") != getattr(user, "id", None):
        raise Forbidden("only the record's owner submits it for approval")
    chosen = _entered(conn, schema, object_name, row, process)
    return _open(runtime, conn, schema, chosen, row, user, comment, now or utcnow())


def _entered(conn, schema, object_name: str, row: dict[str, Any], name: str | None) -> ApprovalProcess:
    candidates = [_process(schema, name)] if name else processes_of(schema, object_name)
    if not candidates or any(p.object != object_name for p in candidates):
        raise NotFound(f"{object_name} records have no approval process" + (f" {name!r}" if name else ""))
    for process in candidates:
        if _holds(schema, process, process.entry, row, conn):
            return process
    raise ApprovalError("not_needed", "the record does not need this approval (its entry condition is false)", 422)


def _open(runtime, conn, schema, process: ApprovalProcess, row, user, comment, now) -> dict[str, Any]:
    if status_of(conn, process.object, row["id"]) == PENDING:
        raise ApprovalError("already_pending", "the record already waits for an approval")
    request = {"id": uuid.uuid4().hex, "process": process.name, "object": process.object, "record_id": row["id"],
               "submitter": getattr(user, "id", None), "status": PENDING, "step": -1, "submitted_at": now,
               "decided_at": None, "comment": _text(comment)}
    conn.execute(sa.insert(REQUESTS).values(request))
    _history(runtime, conn, process, row["id"], user, "submitted", comment)
    _set(runtime, conn, schema, process, request, process.on_submit, user)
    _advance(runtime, conn, schema, process, request, -1, user, now)
    return request_json(conn, runtime, _request(conn, request["id"]))


def _advance(runtime, conn, schema, process, request, after: int, user, now) -> None:
    """Open the first step after `after` whose condition holds, or, when
    none is left, approve the request. The record is read only when a
    step's condition needs it."""
    row = None
    for index in range(after + 1, len(process.steps)):
        step = process.steps[index]
        if step.when:
            row = row or _row(conn, schema, process.object, request["record_id"])
            if not _holds(schema, process, step.when, row, conn):
                continue
        people = approvers_of(conn, step, request["submitter"])
        if not people:
            raise ApprovalError("no_approver", f"step {step.name!r} of {process.name!r} names no active approver",
                                422)
        conn.execute(sa.update(REQUESTS).where(REQUESTS.c.id == request["id"]).values(step=index))
        request["step"] = index
        _tasks(runtime, conn, process, request, index, people, "step", now)
        return
    _finish(runtime, conn, schema, process, request, APPROVED, user, now)


def _tasks(runtime, conn, process, request, index: int, people: Iterable[str], origin: str, now) -> None:
    step = process.steps[index]
    due = now + timedelta(hours=step.timeout_hours) if step.timeout_hours else None
    people = list(people)
    _may_read(conn, process, request["record_id"], people, now)
    conn.execute(sa.insert(TASKS), [{"id": uuid.uuid4().hex, "request_id": request["id"], "step": index,
                                     "approver": person, "status": PENDING, "origin": origin, "created_at": now,
                                     "due_at": due, "reminded_at": None, "decided_at": None, "comment": None}
                                    for person in people])
    _tell(runtime, conn, process, request, people, "waiting", now)


def _may_read(conn, process, rid: str, people: list[str], now) -> None:
    """An approver reads what they approve: a read share for whoever lacks one."""
    shares = systemdb.shares
    have = set(conn.execute(sa.select(shares.c.user_id).where(
        shares.c.object == process.object, shares.c.record_id == rid, shares.c.user_id.in_(people))).scalars())
    missing = [p for p in people if p not in have]
    if missing:
        conn.execute(sa.insert(shares), [{"id": uuid.uuid4().hex, "object": process.object, "record_id": rid,
                                          "user_id": p, "access": "read", "created_by": None, "created_at": now}
                                         for p in missing])


def _finish(runtime, conn, schema, process, request, status: str, user, now) -> None:
    """Settle the request: its waiting tasks end, the record takes the
    process's values, the submitter is told."""
    conn.execute(_SETTLE, {"_id": request["id"], "_status": status, "_now": now})
    conn.execute(_END_TASKS, {"_id": request["id"], "_now": now,
                              "_status": "cancelled" if status in (RECALLED, RETURNED, REJECTED) else "skipped"})
    request["status"] = status
    values = {APPROVED: process.on_approve, REJECTED: process.on_reject}.get(status, process.on_recall)
    saved = _set(runtime, conn, schema, process, request, values, user)
    if status != RECALLED and request["submitter"]:
        _tell(runtime, conn, process, request, [request["submitter"]], status, now, record=saved)


def _set(runtime, conn, schema, process, request, values: dict[str, Any], user) -> dict[str, Any] | None:
    """The process's values on the record, as its own write (past its
    locks); the record as saved (None when there was nothing to set)."""
    if not values:
        return None
    token = _settling.set(request)
    try:
        return runtime.records.update(process.object, request["record_id"], dict(values),
                                      Actor(getattr(user, "id", None), "admin"), conn=conn, schema=schema,
                                      origin=APPROVAL)
    finally:
        _settling.reset(token)


# --- deciding ------------------------------------------------------------------------------

ACTIONS = ("approve", "reject", "send_back", "add", "hand", "recall")


def act(runtime, user, request_id: str, action: str, *, comment: str | None = None, to: Any = None,
        step: int | None = None, now: datetime | None = None) -> dict[str, Any]:
    """One approver's (or the submitter's) action on a pending request:
    approve, reject, send_back (to the submitter, or to an earlier `step`),
    add (加签: `to` approves too), hand (转交: `to` takes the task over) or
    recall (撤回, the submitter). Answers the request's new state in brief
    (`of_record` tells the rest)."""
    if action not in ACTIONS:
        raise ApprovalError("bad_action", f"action is one of {', '.join(ACTIONS)}", 422)
    now = now or utcnow()
    schema = runtime.schema()
    uid = getattr(user, "id", None)
    with write_transaction(runtime.engine) as conn:
        request = _request(conn, request_id, lock=True)
        process = _process(schema, request["process"])
        if request["status"] != PENDING:
            raise ApprovalError("not_pending", f"the request is {request['status']} already")
        if action == "recall":
            if request["submitter"] != uid and getattr(user, "role", None) != "admin":
                raise Forbidden("only the submitter recalls a request")
            _history(runtime, conn, process, request["record_id"], user, "recalled", comment)
            _finish(runtime, conn, schema, process, request, RECALLED, user, now)
            return _brief(process, request)
        if action == "add":
            _my_task(conn, request, uid)
            added = _user_id(conn, to)
            if added in _pending_approvers(conn, request):
                raise ApprovalError("already_approver", "that user already approves this step", 422)
            _history(runtime, conn, process, request["record_id"], user, "added", comment, to=added)
            _tasks(runtime, conn, process, request, request["step"], [added], "added", now)
            return _brief(process, request)
        if action == "hand":
            target = _user_id(conn, to)
            if target == uid or target in _pending_approvers(conn, request):
                raise ApprovalError("already_approver", "that user already approves this step", 422)
            _decide(conn, request, uid, "handed", comment, now)
            _history(runtime, conn, process, request["record_id"], user, "handed", comment, to=target)
            _tasks(runtime, conn, process, request, request["step"], [target], "handed", now)
            return _brief(process, request)
        if action == "reject":
            _decide(conn, request, uid, REJECTED, comment, now)
            _history(runtime, conn, process, request["record_id"], user, "rejected", comment)
            _finish(runtime, conn, schema, process, request, REJECTED, user, now)
        elif action == "send_back":
            if step is not None and not (isinstance(step, int) and 0 <= step < request["step"]):
                raise ApprovalError("bad_step", "send back to an earlier step (its index), or to the submitter", 422)
            _decide(conn, request, uid, RETURNED, comment, now)
            _history(runtime, conn, process, request["record_id"], user, "sent_back", comment,
                     step=process.steps[step].name if step is not None else None)
            if step is None:
                _finish(runtime, conn, schema, process, request, RETURNED, user, now)
            else:
                conn.execute(sa.update(TASKS).where(TASKS.c.request_id == request_id, TASKS.c.status == PENDING)
                             .values(status="cancelled", decided_at=now))
                _advance(runtime, conn, schema, process, request, step - 1, user, now)
        else:
            settles = process.steps[request["step"]].mode == "any"
            # in an any step one statement takes the user's task and ends the others
            _decide(conn, request, uid, APPROVED, comment, now, others="skipped" if settles else None)
            _history(runtime, conn, process, request["record_id"], user, "approved", comment)
            if settles or not _pending_approvers(conn, request):
                _advance(runtime, conn, schema, process, request, request["step"], user, now)
        return _brief(process, request)


def _brief(process, request: dict[str, Any]) -> dict[str, Any]:
    """What an action answers: the request's state now."""
    step = request["step"]
    return {"id": request["id"], "process": request["process"], "object": request["object"],
            "record_id": request["record_id"], "status": request["status"],
            "step": process.steps[step].name if 0 <= step < len(process.steps) else None}


def _request(conn, request_id: str, *, lock: bool = False) -> dict[str, Any]:
    row = conn.execute(_REQUEST_LOCKED if lock else _REQUEST, {"_id": request_id}).first() \
        if isinstance(request_id, str) else None
    if row is None:
        raise NotFound(f"no approval request {str(request_id)[:40]!r}")
    return dict(row._mapping)


def _my_task(conn, request, uid) -> dict[str, Any]:
    rows = conn.execute(sa.select(TASKS).where(TASKS.c.request_id == request["id"], TASKS.c.step == request["step"],
                                               TASKS.c.approver == uid)).fetchall()
    pending = [r for r in rows if r.status == PENDING]
    if pending:
        return dict(pending[0]._mapping)
    if rows:
        raise ApprovalError("decided", "this step was decided already")
    raise ApprovalError("not_approver", "you do not approve this step", 403)


def _decide(conn, request, uid, status: str, comment, now, *, others: str | None = None) -> None:
    """Take the user's task of the current step (and with `others`, end
    the step's other waiting tasks so): only a pending task matches, so of
    two decisions one wins; else say why not."""
    params = {"_id": request["id"], "_step": request["step"], "_uid": uid, "_status": status,
              "_comment": _text(comment), "_now": now}
    taken = conn.execute(_TAKE, params) if others is None else conn.execute(_TAKE_ALL, params | {"_others": others})
    if taken.rowcount < 1:
        _my_task(conn, request, uid)   # raises: not an approver, or decided already
        raise ApprovalError("decided", "someone decided this step first")


def _pending_approvers(conn, request) -> set[str]:
    return set(conn.execute(sa.select(TASKS.c.approver).where(
        TASKS.c.request_id == request["id"], TASKS.c.step == request["step"], TASKS.c.status == PENDING)).scalars())


def _text(comment: Any) -> str | None:
    return str(comment)[:4000] if comment not in (None, "") else None


def _history(runtime, conn, process, rid: str, user, action: str, comment, **more) -> None:
    obj = runtime.schema().object(process.object)
    runtime.records.mark(conn, obj, rid, HISTORY_FIELD,
                         {"action": action, "process": process.name, **({"comment": _text(comment)} if comment else {}),
                          **{k: v for k, v in more.items() if v is not None}}, user)


def _tell(runtime, conn, process, request, people: list[str], what: str, now, *, record=None) -> None:
    """A notification to each of `people`, in their language, in one statement."""
    if not people:
        return
    schema = runtime.schema()
    obj = schema.object(process.object)
    title = record_title(obj, record or _row(conn, schema, process.object, request["record_id"]))

    def said(locale: str) -> str:
        return (i18n.gettext(locale, TEXTS[what]).replace("%(record)s", title)
                .replace("%(process)s", localized(process.label, locale, process.name)))
    texts = {f"_m{i}": said(loc) for i, loc in enumerate(i18n.LOCALE_NAMES)}
    conn.execute(_NOTIFY, {"_prefix": uuid.uuid4().hex[:16], "_object": process.object, "_rid": request["record_id"],
                           "_now": now, "_people": list(people), **texts})
    if what in MAILED:
        link = f"/app/{process.object}/{request['record_id']}"
        conn.execute(_QUEUE_MAIL, {"_prefix": uuid.uuid4().hex[:16], "_now": now, "_people": list(people), **texts,
                                   **{f"_b{i}": f"{said(loc)}\n\n{i18n.gettext(loc, TEXTS['link'])} {link}\n"
                                      for i, loc in enumerate(i18n.LOCALE_NAMES)}})


# --- reading -------------------------------------------------------------------------------

def request_json(conn, runtime, request: dict[str, Any]) -> dict[str, Any]:
    """A request with its tasks, steps named."""
    process = runtime.schema().approvals.get(request["process"])
    tasks = conn.execute(sa.select(TASKS, USERS.c.username).select_from(TASKS.outerjoin(USERS, USERS.c.id == TASKS.c.approver))
                         .where(TASKS.c.request_id == request["id"]).order_by(TASKS.c.created_at, TASKS.c.id)).fetchall()
    step_name = (lambda i: process.steps[i].name if process is not None and 0 <= i < len(process.steps) else None)
    return {"id": request["id"], "process": request["process"], "object": request["object"],
            "record_id": request["record_id"], "submitter": request["submitter"], "status": request["status"],
            "step": step_name(request["step"]), "submitted_at": _iso(request["submitted_at"]),
            "decided_at": _iso(request["decided_at"]), "comment": request["comment"],
            "tasks": [{"id": t.id, "step": step_name(t.step), "approver": t.approver, "username": t.username,
                       "status": t.status, "origin": t.origin, "comment": t.comment, "decided_at": _iso(t.decided_at),
                       "due_at": _iso(t.due_at)} for t in tasks]}


def _iso(value) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.isoformat().replace("+00:00", "Z")


def of_record(runtime, user, object_name: str, rid: str) -> dict[str, Any]:
    """The record's requests, newest first, and what `user` may do now."""
    schema = runtime.schema()
    record = runtime.records.get(object_name, rid, user, schema=schema)
    uid = getattr(user, "id", None)
    with runtime.engine.connect() as conn:
        rows = conn.execute(sa.select(REQUESTS).where(REQUESTS.c.object == object_name, REQUESTS.c.record_id == rid)
                            .order_by(REQUESTS.c.submitted_at.desc(), REQUESTS.c.id.desc()).limit(20)).fetchall()
        requests = [request_json(conn, runtime, dict(r._mapping)) for r in rows]
        row = _row(conn, schema, object_name, rid)
        open_ = requests[0] if requests and requests[0]["status"] == PENDING else None
        settled = bool(requests) and requests[0]["status"] == APPROVED
        may_submit = open_ is None and not settled and bool(processes_of(schema, object_name)) and (
            getattr(user, "role", None) == "admin" or record.get("owner") == uid) and any(
            _holds(schema, p, p.entry, row, conn) for p in processes_of(schema, object_name))
    current = open_ and {t["approver"] for t in open_["tasks"] if t["status"] == PENDING and t["step"] == open_["step"]}
    return {"requests": requests, "may_submit": may_submit,
            "may_decide": bool(current and uid in current),
            "may_recall": bool(open_ and (open_["submitter"] == uid or getattr(user, "role", None) == "admin"))}


def inbox(runtime, user, box: str = "waiting", *, limit: int = 100) -> list[dict[str, Any]]:
    """What waits for the user's decision, what they submitted, or what they decided, newest first."""
    if box not in BOXES:
        raise ApprovalError("bad_box", f"box is one of {', '.join(BOXES)}", 422)
    uid = getattr(user, "id", None)
    if box == "submitted":
        where = [REQUESTS.c.submitter == uid]
    else:
        statuses = [PENDING] if box == "waiting" else [APPROVED, REJECTED, RETURNED, "handed"]
        mine = sa.select(TASKS.c.request_id).where(TASKS.c.approver == uid, TASKS.c.status.in_(statuses))
        if box == "waiting":
            mine = mine.where(TASKS.c.step == REQUESTS.c.step)
            where = [REQUESTS.c.status == PENDING, sa.exists(mine.where(TASKS.c.request_id == REQUESTS.c.id))]
        else:
            where = [REQUESTS.c.id.in_(mine)]
    schema = runtime.schema()
    out = []
    with runtime.engine.connect() as conn:
        rows = conn.execute(sa.select(REQUESTS).where(*where).order_by(REQUESTS.c.submitted_at.desc())
                            .limit(limit)).fetchall()
        for r in rows:
            obj = schema.object(r.object)
            if obj is None:
                continue
            try:
                record = runtime.records.get(r.object, r.record_id, user, conn=conn, schema=schema)
            except NotFound:
                continue
            out.append(request_json(conn, runtime, dict(r._mapping)) | {"title": record_title(obj, record), "record": record})
    return out


def waiting_count(runtime, user_id: str | None) -> int:
    """How many requests wait for the user's decision (the navigation's badge)."""
    if not user_id:
        return 0
    with runtime.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count(sa.distinct(TASKS.c.request_id)))
                            .select_from(TASKS.join(REQUESTS, REQUESTS.c.id == TASKS.c.request_id))
                            .where(TASKS.c.approver == user_id, TASKS.c.status == PENDING,
                                   REQUESTS.c.status == PENDING, TASKS.c.step == REQUESTS.c.step)).scalar() or 0


# --- the record service's side ------------------------------------------------------------------

def locked_problems(ctx, changed: set[str]) -> list[dict[str, Any]]:
    """The fields of `changed` a pending request locks against the saving
    user: all of them unless they approve its current step (or the write
    is the process's own)."""
    if ctx.origin.source == APPROVAL.source or not changed:
        return []
    processes = {p.name: p for p in processes_of(ctx.schema, ctx.obj.name)}
    if not processes:
        return []
    request = request_of_save(ctx)
    if request is None or request["status"] != PENDING or request["process"] not in processes:
        return []
    obj, conn, user = ctx.obj, ctx.conn, ctx.user
    process = processes[request["process"]]
    locked = set(process.locked_fields) or {f.name for f in obj.fields} | {"owner"}
    hit = sorted(changed & locked)
    if not hit or getattr(user, "id", None) in _pending_approvers(conn, request):
        return []
    return [{"field": name, "code": "locked", "message": f"{name} is locked while the record waits for approval"}
            for name in hit]


def auto_submit(runtime, conn, schema, obj, row: dict[str, Any], old: dict[str, Any] | None, user) -> bool:
    """After a save (`old`: the record before it, None for a create): submit
    the record to the first process whose `auto_submit` (which may ask
    `is_changed`) and entry hold, unless it is pending already. Whether it did."""
    processes = [p for p in processes_of(schema, obj.name) if p.auto_submit]
    if not processes:
        return False
    context = dataclasses.replace(default_context(), is_new=old is None, prior=old)
    for process in processes:
        if _holds(schema, process, process.auto_submit, row, conn, context) \
                and _holds(schema, process, process.entry, row, conn) and status_of(conn, obj.name, row["id"]) != PENDING:
            _open(runtime, conn, schema, process, row, user, None, utcnow())
            return True
    return False


# --- timeouts -------------------------------------------------------------------------------------

def run_timeouts(runtime, *, now: datetime | None = None) -> int:
    """Remind the approvers of tasks past their step's timeout, and where
    the step escalates, add each one's manager; each task once."""
    now = now or utcnow()
    schema = runtime.schema()
    if not schema.approvals:
        return 0
    done = 0
    with write_transaction(runtime.engine) as conn:
        due = conn.execute(sa.select(TASKS, REQUESTS.c.process, REQUESTS.c.record_id, REQUESTS.c.submitter,
                                     REQUESTS.c.step.label("current"))
                           .select_from(TASKS.join(REQUESTS, REQUESTS.c.id == TASKS.c.request_id))
                           .where(TASKS.c.status == PENDING, TASKS.c.due_at < now, TASKS.c.reminded_at.is_(None),
                                  REQUESTS.c.status == PENDING, TASKS.c.step == REQUESTS.c.step)
                           .order_by(TASKS.c.due_at).limit(1000)).fetchall()
        for task in due:
            process = schema.approvals.get(task.process)
            if process is None:
                continue
            request = {"id": task.request_id, "record_id": task.record_id, "submitter": task.submitter,
                       "step": task.current}
            conn.execute(sa.update(TASKS).where(TASKS.c.id == task.id).values(reminded_at=now))
            _tell(runtime, conn, process, request, [task.approver], "reminder", now)
            if process.steps[task.step].escalate:
                boss = managers_above(conn, task.approver, 1)
                if boss and boss not in _pending_approvers(conn, request):
                    _history(runtime, conn, process, task.record_id, Actor(None, "admin"), "escalated", None, to=boss)
                    _tasks(runtime, conn, process, request, task.step, [boss], "escalated", now)
            done += 1
    return done
