"""The objects an admin may start from instead of a blank one. Each is a
function of the name the admin chose, answering bundle JSON."""

from __future__ import annotations

from typing import Any, Callable


def _text(en: str, zh: str) -> dict[str, str]:
    return {"en": en, "zh-CN": zh}


def blank(name: str, label: dict) -> dict[str, Any]:
    return {"name": name, "label": label, "title_field": "name",
            "fields": [{"name": "name", "type": "text", "label": _text("Name", "名称"), "required": True}]}


def project(name: str, label: dict) -> dict[str, Any]:
    return {
        "name": name, "label": label, "icon": "briefcase", "title_field": "name",
        "fields": [
            {"name": "name", "type": "text", "label": _text("Name", "名称"), "required": True},
            {"name": "status", "type": "picklist", "label": _text("Status", "状态"), "default": "planned", "options": [
                {"value": "planned", "label": _text("Planned", "计划中"), "color": "#6b7280"},
                {"value": "active", "label": _text("Active", "进行中"), "color": "#2563eb"},
                {"value": "on_hold", "label": _text("On hold", "暂停"), "color": "#d97706"},
                {"value": "done", "label": _text("Done", "已完成"), "color": "#16a34a"}]},
            {"name": "start_date", "type": "date", "label": _text("Start date", "开始日期")},
            {"name": "end_date", "type": "date", "label": _text("End date", "结束日期")},
            {"name": "budget", "type": "currency", "label": _text("Budget", "预算"), "min": 0},
            {"name": "description", "type": "long_text", "label": _text("Description", "描述")},
        ],
        "validation_rules": [{"name": "ends_after_start", "check": "end_date == None or start_date == None or end_date >= start_date",
                              "field": "end_date", "message": _text("The end date is before the start date.",
                                                                     "结束日期早于开始日期。")}],
    }


def course(name: str, label: dict) -> dict[str, Any]:
    return {
        "name": name, "label": label, "icon": "book", "title_field": "name",
        "fields": [
            {"name": "name", "type": "text", "label": _text("Name", "名称"), "required": True},
            {"name": "code", "type": "auto_number", "label": _text("Code", "编号"), "prefix": "C-", "digits": 4},
            {"name": "starts_on", "type": "date", "label": _text("Starts on", "开课日期")},
            {"name": "seats", "type": "integer", "label": _text("Seats", "名额"), "min": 1},
            {"name": "fee", "type": "currency", "label": _text("Fee", "学费"), "min": 0},
            {"name": "level", "type": "picklist", "label": _text("Level", "级别"), "options": [
                {"value": "beginner", "label": _text("Beginner", "初级")},
                {"value": "intermediate", "label": _text("Intermediate", "中级")},
                {"value": "advanced", "label": _text("Advanced", "高级")}]},
        ],
    }


STARTERS: dict[str, Callable[[str, dict], dict[str, Any]]] = {"blank": blank, "project": project, "course": course}
STARTER_TEXTS = {"blank": "Blank", "project": "Project", "course": "Course"}
