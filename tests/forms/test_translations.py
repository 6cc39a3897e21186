"""Every piece of the generated pages' chrome has a Simplified Chinese text."""

import re
from pathlib import Path

from loomcrm.designer import checking, flows, pages as designer_pages, publish_pages, starters, words
from loomcrm.platform import admin_pages, i18n
from loomcrm.runtime import approvals, handover, pools, reports
from loomcrm.runtime.forms import approval_pages, pool_pages, report_pages, sharing, target_pages
from loomcrm.runtime.forms.views import CLOCK_TEXTS, ERROR_TEXTS, EXPRESSION_TEXTS
from loomcrm.runtime.slas import TEXTS as SLA_TEXTS
from loomcrm.runtime.surveys import TEXTS as SURVEY_TEXTS
from loomcrm.workflows.views import SOURCE_TEXTS, STATUS_TEXTS

REPO = Path(__file__).resolve().parents[2]
TEMPLATES = [*(REPO / "runtime" / "forms" / "templates").rglob("*.html"), *(REPO / "platform" / "templates").rglob("*.html"),
             *(REPO / "workflows" / "templates").rglob("*.html"), *(REPO / "designer" / "templates").rglob("*.html")]
SOURCES = [REPO / "runtime" / "forms" / "views.py", REPO / "runtime" / "forms" / "display.py", REPO / "workflows" / "views.py",
           REPO / "runtime" / "forms" / "sharing.py", REPO / "runtime" / "forms" / "report_pages.py",
           REPO / "runtime" / "forms" / "target_pages.py", REPO / "runtime" / "forms" / "public_pages.py",
           REPO / "platform" / "admin_pages.py", *(REPO / "designer").glob("*.py")]
TEXT_TABLES = [admin_pages.PROBLEM_TEXTS, admin_pages.SCOPE_TEXTS, admin_pages.FIELD_RIGHT_TEXTS, admin_pages.ACCESS_TEXTS,
               admin_pages.ACTION_TEXTS, admin_pages.DONE_TEXTS, admin_pages.BUILTIN_ROLE_TEXTS, sharing.NOTICE_TEXTS, sharing.REASON_TEXTS, sharing.ACTION_TEXTS, sharing.ACCESS_TEXTS, sharing.SCOPE_TEXTS,
               words.TYPE_TEXTS, words.STEP_TEXTS, words.PREFLIGHT_TEXTS, designer_pages.NOTICE_TEXTS,
               designer_pages.PROBLEM_TEXTS, starters.STARTER_TEXTS, flows.ACTION_TEXTS, flows.TRIGGER_TEXTS,
               flows.STRATEGY_TEXTS, words.CHANGE_TEXTS, publish_pages.FLOW_CHANGE_TEXTS, checking.PROBLEM_TEXTS,
               report_pages.FUNCTION_TEXTS, report_pages.BUCKET_TEXTS, report_pages.CHART_TEXTS,
               reports.SYSTEM_LABELS, report_pages.NOTICE_TEXTS, report_pages.ANALYTICS_TEXTS, report_pages.PROBLEM_TEXTS,
               target_pages.PERIOD_TEXTS, target_pages.NOTICE_TEXTS, pool_pages.NOTICE_TEXTS, pool_pages.REFUSAL_TEXTS,
               pools.TEXTS, handover.TEXTS, approvals.TEXTS, approval_pages.STATUS_TEXTS, approval_pages.BOX_TEXTS,
               approval_pages.REFUSAL_TEXTS, CLOCK_TEXTS, SLA_TEXTS,
               SURVEY_TEXTS]


def chrome_texts() -> set[str]:
    texts = set()
    for path in TEMPLATES:
        texts |= set(re.findall(r"_\('((?:[^'\\]|\\.)+)'\)", path.read_text()))
    for path in SOURCES:
        source = path.read_text()
        texts |= set(re.findall(r'_\("((?:[^"\\]|\\.)+)"\)', source))
        texts |= set(re.findall(r'gettext\([^,()]+, "((?:[^"\\]|\\.)+)"', source))
    for table in TEXT_TABLES:
        texts |= set(table.values())
    return texts | set(ERROR_TEXTS.values()) | set(EXPRESSION_TEXTS.values()) | set(STATUS_TEXTS.values()) | set(SOURCE_TEXTS.values())


def test_every_chrome_text_is_translated():
    texts = chrome_texts()
    assert len(texts) > 80
    missing = sorted(t for t in texts if i18n.gettext("zh-CN", t) == t)
    assert missing == []


def test_placeholders_survive_translation():
    for text in chrome_texts():
        for placeholder in re.findall(r"%\(\w+\)s", text):
            assert placeholder in i18n.gettext("zh-CN", text), text
