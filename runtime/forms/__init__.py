"""End-user pages generated from metadata: lists, record pages, forms,
pipeline boards, search, the recycle bin, records' sharing, reports,
dashboards, targets, lead pools, converting records, merging duplicates
and approvals (`/app/...`); and the public web forms and surveys (`/f/...`,
`/s/...`)."""

from pathlib import Path

from .approval_pages import build_approval_pages
from .conversion_pages import build_conversion_pages
from .merge_pages import build_merge_pages
from .pool_pages import build_pool_pages
from .public_pages import build_public_pages
from .report_pages import ReportPages, build_report_pages
from .sharing import build_sharing_router
from .target_pages import build_target_pages
from .views import Pages, build_forms_router, navigation

TEMPLATE_DIR = Path(__file__).with_name("templates")
STATIC_DIR = Path(__file__).with_name("static")

__all__ = ["STATIC_DIR", "TEMPLATE_DIR", "Pages", "ReportPages", "build_approval_pages", "build_conversion_pages", "build_forms_router",
           "build_merge_pages", "build_pool_pages", "build_public_pages", "build_report_pages", "build_sharing_router", "build_target_pages",
           "navigation"]
