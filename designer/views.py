"""The browser designer under `/designer` (administrators only): objects,
their fields, stages, layouts and validation rules, workflows, the plan of
the draft in plain words with the rules a change breaks, publishing, the
history of published versions with rollback, and bundles as zips.

Every change goes to the metadata draft through `runtime.drafts` (the
same path as `PUT _meta/objects`), and is published through the migration
planner; the designer has no path of its own to the database. Each form
carries the object as the admin saw it, so that a change made meanwhile by
another admin is named, never overwritten. One module per screen group
(`object_pages`, `workflow_pages`, `bundle_pages`, `publish_pages`), with
what they share in `pages`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from fastapi import APIRouter, Depends

from . import bundle_pages, object_pages, publish_pages, workflow_pages
from .pages import require_admin, shared

TEMPLATE_DIR = Path(__file__).with_name("templates")
STATIC_DIR = Path(__file__).with_name("static")


def build_designer(runtime, *, templates, page_context: Callable[..., dict]) -> APIRouter:
    router = APIRouter(prefix="/designer", include_in_schema=False, dependencies=[Depends(require_admin)])
    pages = shared(runtime, templates, page_context)
    for screens in (object_pages, workflow_pages, bundle_pages, publish_pages):
        screens.add_routes(router, pages)
    return router
