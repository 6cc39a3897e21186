"""End-user pages generated from metadata: lists, record pages, forms,
pipeline boards, search and the recycle bin (`/app/...`)."""

from pathlib import Path

from .views import build_forms_router, navigation

TEMPLATE_DIR = Path(__file__).with_name("templates")
STATIC_DIR = Path(__file__).with_name("static")

__all__ = ["STATIC_DIR", "TEMPLATE_DIR", "build_forms_router", "navigation"]
