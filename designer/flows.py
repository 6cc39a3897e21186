"""The workflow editor's form and a workflow's bundle JSON, both ways.

Actions are numbered blocks (`action-3-type`, `action-3-to`, and for the
actions that set values `action-3-values-0-key` / `-expr`), read in page
order, so reordering the blocks reorders the actions."""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from loomcrm.metadata.model import Workflow, as_json
from loomcrm.runtime.forms.views import N_

from .edits import FormProblems, text_of, texts_of

ACTION_TYPES = ("update", "create", "assign", "route", "email", "webhook", "notify")
ACTION_TEXTS = {"update": "Update the record", "create": "Create a record", "assign": "Assign an owner",
                "route": "Route to the first matching record",
                "email": "Send an e-mail", "webhook": "Call a webhook", "notify": "Notify in Loom"}
TRIGGER_TEXTS = {"create": "When a record is created", "update": "When a record is changed",
                 "delete": "When a record is deleted", "restore": "When a record is restored",
                 "stage_change": "When the stage changes", "time": "At a time relative to a date field",
                 "schedule": "On a schedule"}
STRATEGY_TEXTS = {"round_robin": "In turn (round robin)", "load_balanced": "To the least loaded",
                  "by_field": "By a field's value"}
SOURCES = ("form", "api", "import", "automation")
_ACTION_INPUT = re.compile(r"action-(\d+)-(?:values-(\d+)-)?([a-z_]+)$")


def _lines(text: str) -> dict[str, str]:
    pairs = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip():
            pairs[key.strip()] = value.strip()
    return pairs


def action_inputs(form) -> list[dict[str, Any]]:
    """The action blocks' inputs grouped per action, in page order."""
    actions: dict[str, dict[str, Any]] = {}
    for key, value in form.multi_items():
        match = _ACTION_INPUT.match(key)
        if match is None or not isinstance(value, str):
            continue
        number, row, part = match.groups()
        action = actions.setdefault(number, {"n": number, "values": {}})
        if row is not None:
            action["values"].setdefault(row, {"m": row})[part] = value
        else:
            action[part] = value
    for action in actions.values():
        action["values"] = list(action["values"].values())
    return list(actions.values())


def _action(a: dict[str, Any]) -> dict[str, Any]:
    kind = a.get("type", "")
    out: dict[str, Any] = {"type": kind}
    values = {v.get("key", "").strip(): v.get("expr", "").strip() for v in a["values"] if v.get("key", "").strip()}
    if kind in ("update", "create", "webhook"):
        out["values"] = values
    if kind == "create":
        out["object"] = a.get("object", "")
    if kind == "assign":
        out["strategy"] = a.get("strategy") or "round_robin"
        out["users"] = [u.strip() for u in re.split(r"[,\s]+", a.get("users", "")) if u.strip()]
        for key in ("field", "load_filter", "team"):
            if a.get(key, "").strip():
                out[key] = a[key].strip()
        if mapping := _lines(a.get("mapping", "")):
            out["mapping"] = mapping
    if kind == "route":
        out["field"] = a.get("field", "").strip()
        out["match"] = _lines(a.get("match", ""))
        if a.get("order", "").strip():
            out["order"] = a["order"].strip()
    if kind in ("email", "notify"):
        out["to"] = a.get("to", "").strip()
    if kind == "email":
        out["subject"] = text_of(a, "subject") or ""
        out["body"] = text_of(a, "body") or ""
    if kind == "notify":
        out["message"] = text_of(a, "message") or ""
    if kind == "webhook":
        out["url"] = a.get("url", "").strip()
        out["method"] = a.get("method") or "POST"
    return out


def workflow_from(form, object_name: str) -> dict[str, Any]:
    """A workflow's bundle JSON from the editor; FormProblems on shape errors
    (the semantic checks run after, on the whole draft)."""
    data: dict[str, Any] = {"name": str(form.get("name") or "").strip(), "object": object_name,
                            "active": form.get("active") in ("on", "true", "1")}
    for key in ("label", "description"):
        if text := text_of(form, key):
            data[key] = text
    sources = [s for s in form.getlist("sources") if s in SOURCES]
    if sources and sorted(sources) != sorted(SOURCES):
        data["sources"] = sources
    if run_as := str(form.get("run_as") or "").strip():
        data["run_as"] = run_as
    trigger: dict[str, Any] = {"on": str(form.get("trigger_on") or "create")}
    fields = [f for f in form.getlist("trigger_fields") if f]
    if fields:
        trigger["fields"] = fields
    stages = [s.strip() for s in str(form.get("trigger_to") or "").split(",") if s.strip()]
    if stages:
        trigger["to"] = stages
    for key in ("cron", "field", "offset"):
        if value := str(form.get(f"trigger_{key}") or "").strip():
            trigger[key] = value
    data["trigger"] = trigger
    if condition := str(form.get("condition") or "").strip():
        data["condition"] = condition
    data["actions"] = [_action(a) for a in action_inputs(form)]
    try:
        Workflow.model_validate(data)
    except ValidationError as exc:
        found: dict[str | None, str] = {}
        for e in exc.errors():
            loc = [str(p) for p in e["loc"]]
            if loc[:1] == ["actions"] and len(loc) > 1:
                number = action_inputs(form)[int(loc[1])]["n"] if loc[1].isdigit() and int(loc[1]) < len(action_inputs(form)) else "0"
                rest = [p for p in loc[2:] if p not in ACTION_TYPES]
                found.setdefault(f"action-{number}-{rest[0] if rest else 'type'}", e["msg"])
            elif loc[:1] == ["trigger"] and len(loc) > 1:
                found.setdefault(f"trigger_{loc[1]}", e["msg"])
            else:
                found.setdefault(loc[0] if loc else None, e["msg"])
        if not data["actions"]:
            found[None] = N_("A workflow needs at least one action.")
        raise FormProblems(found) from None
    return data


def workflow_inputs(flow: dict[str, Any]) -> dict[str, Any]:
    """A workflow's JSON as the editor's input values."""
    trigger = flow.get("trigger", {})
    to = trigger.get("to")
    values: dict[str, Any] = {
        "name": flow.get("name", ""), "active": "on" if flow.get("active", True) else "",
        **texts_of("label", flow.get("label")), **texts_of("description", flow.get("description")),
        "sources": flow.get("sources") or list(SOURCES), "run_as": flow.get("run_as", ""),
        "trigger_on": trigger.get("on", "create"), "trigger_fields": trigger.get("fields", []),
        "trigger_to": ", ".join(to if isinstance(to, list) else [to] if to else []),
        "trigger_cron": trigger.get("cron", ""), "trigger_field": trigger.get("field", ""),
        "trigger_offset": trigger.get("offset", ""), "condition": flow.get("condition", ""), "actions": []}
    for n, action in enumerate(flow.get("actions", [])):
        a: dict[str, Any] = {"n": str(n), **{k: v for k, v in action.items() if isinstance(v, str)}}
        a["values"] = [{"m": str(m), "key": k, "expr": v} for m, (k, v) in enumerate(action.get("values", {}).items())]
        a["users"] = ", ".join(action.get("users", []))
        a["mapping"] = "\n".join(f"{k}={v}" for k, v in action.get("mapping", {}).items())
        a["match"] = "\n".join(f"{k}={v}" for k, v in action.get("match", {}).items())
        for key in ("subject", "body", "message"):
            a |= texts_of(key, action.get(key))
        values["actions"].append(a)
    return values


def form_values(form) -> dict[str, Any]:
    """The submitted editor, shaped as `workflow_inputs` shapes a workflow."""
    values: dict[str, Any] = {k: str(v) for k, v in form.items() if isinstance(v, str)}
    values["sources"] = form.getlist("sources")
    values["trigger_fields"] = form.getlist("trigger_fields")
    values["actions"] = action_inputs(form)
    return values


def as_flow_json(flow: Workflow | None) -> dict[str, Any] | None:
    return as_json(flow) if flow is not None else None
