"""Bundles as files: an installed one (or what admins built) as a zip, and a
zip or folder installed after the full validation."""

from __future__ import annotations

import tempfile
from pathlib import Path

import sqlalchemy as sa
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from loomcrm.metadata.validate import validate_bundle
from loomcrm.metadata.versions import DraftConflict
from loomcrm.platform import auth, systemdb
from loomcrm.runtime.forms.views import N_
from loomcrm.runtime.install import install_bundle
from loomcrm.runtime.migrate.execute import PublishRefused
from loomcrm.runtime.records import RecordError

from . import bundles
from .pages import body_length, require_admin


def add_routes(router: APIRouter, pages) -> None:
    runtime, engine = pages.runtime, pages.engine
    render = pages.render

    # --- bundles ----------------------------------------------------------------------
    def bundles_view(request: Request, *, status: int = 200, problems=None, upload_error: str | None = None) -> Response:
        t = systemdb.bundles
        with engine.connect() as conn:
            installed = conn.execute(sa.select(t.c.name, t.c.version, t.c.installed_at).order_by(t.c.name)).all()
        return render(request, "designer/bundles.html", status=status, installed=installed, problems=problems or [],
                      upload_error=upload_error)

    @router.get("/bundles")
    def bundles_page(request: Request):
        return bundles_view(request)

    @router.get("/bundles/{name}.zip")
    def bundle_download(name: str):
        try:
            body = bundles.export_own(engine) if name == "_own" else bundles.export_zip(engine, name)
            name = bundles.OWN if name == "_own" else name
        except RecordError as exc:
            raise HTTPException(status_code=exc.status, detail=exc.detail) from None
        return Response(body, media_type="application/zip",
                        headers={"Content-Disposition": f'attachment; filename="{name}.zip"'})

    @router.post("/bundles")
    async def bundle_upload(request: Request, user=Depends(require_admin)):
        if body_length(request) > bundles.MAX_UNPACKED:
            raise HTTPException(status_code=413, detail=N_("The upload is too large."))
        form = await request.form()
        auth.check_csrf(auth.request_session(request), form.get("csrf_token"))
        uploads = [f for f in form.getlist("files") if hasattr(f, "read") and f.filename]
        try:
            if not uploads:
                raise bundles.UploadProblem(N_("Choose a zip file or a bundle folder."))
            if len(uploads) == 1 and uploads[0].filename.lower().endswith(".zip"):
                files = bundles.zip_members(await uploads[0].read())
            else:
                files = [(u.filename, await u.read()) for u in uploads]
            return await run_in_threadpool(install_upload, files, user)
        except bundles.UploadProblem as exc:
            return bundles_view(request, status=422, upload_error=str(exc))
        except ValidationProblems as exc:
            return bundles_view(request, status=422, problems=exc.rows)
        except PublishRefused as exc:
            return bundles_view(request, status=409, problems=[
                {"file": "—", "path": p["key"], "message": p["message"], "code": "needs_decision"} for p in exc.problems])
        except (RecordError, DraftConflict) as exc:
            return bundles_view(request, status=422, upload_error=getattr(exc, "detail", None) or str(exc))

    def install_upload(files: list[tuple[str, bytes]], user) -> Response:
        """Unpack, validate as `loom pack validate` does, then install: all
        of it, or nothing when any file is wrong."""
        with tempfile.TemporaryDirectory(prefix="loom-upload-") as tmp:
            folder = Path(tmp) / "bundle"
            folder.mkdir()
            bundles.unpack(files, folder)
            problems = validate_bundle(folder)
            if problems:
                raise ValidationProblems(bundles.problem_rows(problems))
            install_bundle(engine, folder, user_id=user.id, ctx=runtime.context)
        runtime.invalidate()
        return RedirectResponse("/designer/history?done=published", status_code=303)


class ValidationProblems(Exception):
    def __init__(self, rows: list[dict[str, str]]):
        self.rows = rows
        super().__init__(f"{len(rows)} problems")


