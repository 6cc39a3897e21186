"""End-user pages generated from metadata: lists, record pages, forms,
pipeline boards, search, the recycle bin and records' sharing (`/app/...`)."""

from pathlib import Path

from .sharing import build_sharing_router
from .views import build_forms_router, navigation

TEMPLATE_DIR = Path(__file__).with_name("templates")
STATIC_DIR = Path(__file__).with_name("static")

__all__ = ["STATIC_DIR", "TEMPLATE_DIR", "build_forms_router", "build_sharing_router", "navigation"]
