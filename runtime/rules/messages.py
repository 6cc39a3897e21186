"""The texts of the errors the rules layer writes itself, in the shipped
locales. Messages an admin declares (validation rules, criteria, duplicate
rules) come from the metadata, in the user's locale."""

from __future__ import annotations

from loomcrm.metadata.model import LocalizedText, localized

TEXTS: dict[str, dict[str, str]] = {
    "required": {"en": "{label} is required", "zh-CN": "{label}为必填项"},
    "read_only": {"en": "{label} cannot be changed now", "zh-CN": "{label}当前不可修改"},
    "stage_required": {"en": "{label} is required to leave the stage {stage}",
                       "zh-CN": "离开“{stage}”阶段前必须填写{label}"},
    "stage_criteria": {"en": "The stage {stage} requires: {rule}", "zh-CN": "“{stage}”阶段的条件未满足：{rule}"},
    "stage_backward": {"en": "The stage cannot move back from {old} to {new}",
                       "zh-CN": "销售阶段不能从“{old}”退回到“{new}”"},
    "rule": {"en": "The rule {rule} is not met", "zh-CN": "不满足验证规则 {rule}"},
    "duplicate": {"en": "A matching {object} already exists ({rule})", "zh-CN": "已存在重复的{object}（{rule}）"},
    "expression": {"en": "{what} could not be evaluated: {error}", "zh-CN": "{what}无法计算：{error}"},
}


def text(key: str, locale: str, **values: object) -> str:
    template = localized(TEXTS[key], locale)
    return template.format(**{k: "" if v is None else v for k, v in values.items()})


def label(item, locale: str) -> str:
    """The label of a field, stage or object in `locale`, else its name or value."""
    fallback = getattr(item, "name", None) or getattr(item, "value", "")
    return localized(getattr(item, "label", None), locale, fallback) or fallback


def declared(message: LocalizedText | None, locale: str) -> str | None:
    return localized(message, locale) if message is not None else None
