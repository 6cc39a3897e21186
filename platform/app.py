"""The application factory: assembles platform, runtime and UI into one
FastAPI app. Only this module and the CLI import every part of Loom."""

from __future__ import annotations

import contextlib
from datetime import datetime
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import sqlalchemy as sa
from fastapi import Depends, FastAPI, Form, HTTPException, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy.engine import Engine
from starlette.exceptions import HTTPException as StarletteHTTPException

from loomcrm.designer import views as designer_views
from loomcrm.runtime.api.openapi import install_openapi
from loomcrm.runtime.api.routes import build_api_router
from loomcrm.metadata.model import localized
from loomcrm.runtime.fields import FieldContext
from loomcrm.runtime import approvals, forms, pools, targets
from loomcrm.runtime.report_catalog import home_dashboard
from loomcrm.runtime.rules.hooks import Rules
from loomcrm.runtime.state import Runtime
from loomcrm.workflows import views as automation_views
from loomcrm.workflows.api import build_automation_router
from loomcrm.workflows.engine import Automation

from . import auth, i18n, lockout, systemdb
from .admin import build_admin_router
from .admin_pages import build_admin_pages
from .db import create_engine, write_transaction
from .settings import Settings

HERE = Path(__file__).parent
REPO_ROOT = HERE.parent
LOCALE_COOKIE = "loom_locale"
LOGIN_CSRF_COOKIE = "loom_login_csrf"
# Front-end libraries come from the npm registry (package.json), never
# from copies in the repository.
VENDOR_DIRS = {"htmx": REPO_ROOT / "node_modules" / "htmx.org" / "dist",
               "sortablejs": REPO_ROOT / "node_modules" / "sortablejs",
               "swagger-ui": REPO_ROOT / "node_modules" / "swagger-ui-dist",
               "echarts": REPO_ROOT / "node_modules" / "echarts" / "dist"}


@dataclass
class LoomState:
    """What every request handler may use: held on `app.state.loom`."""

    settings: Settings
    engine: Engine
    secret_key: str
    runtime: Runtime
    automation: Automation
    tokens: auth.TokenCache = field(default_factory=auth.TokenCache)


def ensure_secret_key(engine: Engine, configured: str) -> str:
    """LOOM_SECRET_KEY, or one generated once and kept in the database so
    that every process signs with the same key."""
    if configured:
        return configured
    table = systemdb.config_table
    with engine.connect() as conn:
        stored = conn.execute(sa.select(table.c.value).where(table.c.key == "secret_key")).scalar()
    if stored:
        return stored
    try:
        with write_transaction(engine) as conn:
            conn.execute(table.insert().values(key="secret_key", value=secrets.token_urlsafe(48)))
    except sa.exc.IntegrityError:
        pass  # another process won the race; use its key
    with engine.connect() as conn:
        return conn.execute(sa.select(table.c.value).where(table.c.key == "secret_key")).scalar_one()


def open_database(settings: Settings) -> Engine:
    engine = create_engine(settings.resolved_database_url)
    systemdb.upgrade(engine)
    return engine


def create_app(settings: Settings | None = None, engine: Engine | None = None, *, run_automation: bool = False) -> FastAPI:
    """The web app. With `run_automation` (embedded mode: `loom serve`
    without a broker) it also runs automation in its own threads; in
    production, `loom worker` processes run it and this app only writes."""
    settings = settings or Settings()
    engine = engine or open_database(settings)
    runtime = Runtime(engine, context=field_context(settings), hooks=Rules(timezone=settings.timezone))
    automation = Automation(engine, settings, runtime=runtime)
    state = LoomState(settings=settings, engine=engine, secret_key=ensure_secret_key(engine, settings.secret_key), runtime=runtime,
                      automation=automation)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        runner = None
        if run_automation:
            from loomcrm.workflows.runner import Runner

            runner = Runner(automation).start()
        elif settings.broker_url:
            from loomcrm.workflows.tasks import submit

            automation.on_ready = submit   # a replay wakes a worker at once
        yield
        if runner is not None:
            runner.stop()

    app = FastAPI(title="Loom", version="0.1.0", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.loom = state
    templates = _templates()
    report_pages = forms.ReportPages(runtime, forms.Pages(runtime, templates, page_context))

    # The more specific mounts first: "/static" would answer their paths with 404.
    for name, folder in VENDOR_DIRS.items():
        if folder.is_dir():
            app.mount(f"/static/vendor/{name}", StaticFiles(directory=folder), name=f"vendor-{name}")
    app.mount("/static/forms", StaticFiles(directory=forms.STATIC_DIR), name="static-forms")
    app.mount("/static/designer", StaticFiles(directory=designer_views.STATIC_DIR), name="static-designer")
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        if request.url.path.startswith("/api/"):
            return problem(exc.status_code, str(exc.detail), headers=exc.headers)
        if exc.status_code == 401:
            return RedirectResponse(f"/login?next={_safe_next(str(request.url.path))}", status_code=303)
        return templates.TemplateResponse(request, "error.html", page_context(request, status=exc.status_code, detail=exc.detail), status_code=exc.status_code)

    @app.get("/api/docs", include_in_schema=False)
    def api_docs():
        """Swagger UI from the npm-installed package: it works offline, never from a CDN."""
        # tags start folded: every installed object adds a tag of operations, and
        # Swagger UI stops drawing an OpenAPI 3.1 document of 140 unfolded ones
        return get_swagger_ui_html(openapi_url=app.openapi_url, title="Loom API",
                                   swagger_ui_parameters={"docExpansion": "none"},
                                   swagger_js_url="/static/vendor/swagger-ui/swagger-ui-bundle.js",
                                   swagger_css_url="/static/vendor/swagger-ui/swagger-ui.css",
                                   swagger_favicon_url="/static/vendor/swagger-ui/favicon-32x32.png")

    @app.get("/healthz", include_in_schema=False)
    def healthz():
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return {"status": "ok"}

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_page(request: Request, next: str = "/"):
        if auth.request_session(request):
            return RedirectResponse(_safe_next(next), status_code=303)
        return _login_form(request, templates, next=next)

    @app.post("/login", include_in_schema=False)
    def login(request: Request, username: str = Form(""), password: str = Form(""), csrf_token: str = Form(""), next: str = Form("/")):
        expected = request.cookies.get(LOGIN_CSRF_COOKIE)
        if not expected or not secrets.compare_digest(expected, csrf_token):
            return _login_form(request, templates, next=next, error="The form expired. Please sign in again.", status=400)
        address = request.client.host if request.client else None
        minutes = lockout.minutes_left(engine, username.strip(), address)
        if minutes:
            return _login_form(request, templates, next=next, username=username, status=429,
                               error="Too many failed sign-ins. Try again in %(n)s minutes.", error_n=minutes)
        user = auth.authenticate(engine, username.strip(), password)
        if user is None:
            lockout.failed(engine, username.strip(), address)
            return _login_form(request, templates, next=next, username=username, error="Wrong user name or password.", status=401)
        lockout.succeeded(engine, username.strip())
        session = auth.start_session(engine, state.secret_key, user, address=address,
                                     user_agent=request.headers.get("user-agent"))
        response = RedirectResponse(_safe_next(next), status_code=303)
        response.set_cookie(auth.SESSION_COOKIE, session.token, max_age=int(auth.SESSION_LIFETIME.total_seconds()),
                            httponly=True, samesite="lax", secure=_secure(request, settings), path="/")
        response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
        return response

    @app.post("/logout", include_in_schema=False)
    def logout(request: Request, csrf_token: str = Form("")):
        session = auth.request_session(request)
        if session is not None:
            auth.check_csrf(session, csrf_token)
            auth.end_session(engine, state.secret_key, session.token)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(auth.SESSION_COOKIE, path="/")
        return response

    @app.get("/locale/{locale}", include_in_schema=False)
    def switch_locale(request: Request, locale: str, next: str = "/"):
        if not i18n.supported(locale):
            raise HTTPException(status_code=404, detail=f"unknown locale {locale!r}")
        response = RedirectResponse(_safe_next(next), status_code=303)
        response.set_cookie(LOCALE_COOKIE, locale, max_age=365 * 86400, samesite="lax", secure=_secure(request, settings), path="/")
        return response

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def home(request: Request):
        session = auth.request_session(request)
        if session is None:
            return RedirectResponse("/login", status_code=303)
        # a role's home page may be a dashboard (SPEC 3.7), under this period's targets
        locale = request_locale(request)
        dashboard = home_dashboard(runtime.schema(), session.user)
        extra = {"targets": targets.targets_on(runtime, session.user, datetime.now(settings.zone).date(), locale),
                 "ui": report_pages.pages.display(runtime.schema(), locale)}
        if dashboard is not None:
            extra |= report_pages.dashboard_context(request, session.user, dashboard, locale)
        return templates.TemplateResponse(request, "home.html", page_context(request, **extra))

    @app.get("/api/v1/me", tags=["auth"])
    async def me(user: auth.User = Depends(auth.current_user)):
        """The acting user (a quick check that a token works)."""
        return {"id": user.id, "username": user.username, "role": user.role, "locale": user.locale}

    # The automation pages live under /app/_... : before the generated object pages.
    app.include_router(automation_views.build_automation_pages(automation, templates=templates, page_context=page_context))
    app.include_router(forms.build_sharing_router(runtime, templates=templates, page_context=page_context))
    app.include_router(forms.build_report_pages(runtime, templates=templates, page_context=page_context))
    app.include_router(forms.build_target_pages(runtime, templates=templates, page_context=page_context))
    app.include_router(forms.build_pool_pages(runtime, templates=templates, page_context=page_context))
    app.include_router(forms.build_conversion_pages(runtime, templates=templates, page_context=page_context))
    app.include_router(forms.build_approval_pages(runtime, templates=templates, page_context=page_context))
    app.include_router(forms.build_merge_pages(runtime, templates=templates, page_context=page_context))
    app.include_router(forms.build_public_pages(runtime, templates=templates, page_context=page_context))
    app.include_router(forms.build_forms_router(runtime, templates=templates, page_context=page_context,
                                                timeline_extras=automation_views.record_timeline(automation)))

    app.include_router(build_automation_router(automation, user_dependency=auth.current_user))
    app.include_router(build_admin_router(runtime, state.tokens))
    app.include_router(build_admin_pages(runtime, state.tokens, templates=templates, page_context=page_context))
    app.include_router(designer_views.build_designer(runtime, templates=templates, page_context=page_context))
    # After Loom's own /api/v1 routes: the generic router answers /api/v1/{object}.
    app.include_router(build_api_router(runtime, user_dependency=auth.current_user))
    install_openapi(app, runtime)
    return app


def field_context(settings: Settings) -> FieldContext:
    return FieldContext(timezone=settings.zone, phone_region=settings.phone_region)


def problem(status: int, detail: str, *, title: str | None = None, headers=None, **extra) -> JSONResponse:
    """An RFC 9457 problem response."""
    from http import HTTPStatus

    body = {"type": "about:blank", "status": status, "title": title or HTTPStatus(status).phrase, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type="application/problem+json", headers=headers)


def request_locale(request: Request) -> str:
    """The language switch's choice, else the browser's preference."""
    return i18n.supported(request.cookies.get(LOCALE_COOKIE)) or i18n.negotiate(request.headers.get("accept-language"))


def page_context(request: Request, **extra) -> dict:
    locale = request_locale(request)
    session = auth.request_session(request)
    nav, unread, pool_links, approvals_waiting = None, 0, [], None
    if session is not None:
        loom = request.app.state.loom
        schema = loom.runtime.schema()
        nav = forms.navigation(schema, locale, request.url.path, loom.runtime.access.of(session.user))
        unread = automation_views.unread(loom.automation, session.user.id)
        if schema.pools:
            pool_links = [(f"/app/_pools/{p.name}", localized(p.label, locale, p.name))
                          for p in pools.pools_for(loom.runtime, session.user)]
        if schema.approvals:
            approvals_waiting = approvals.waiting_count(loom.runtime, session.user.id)
    return {
        "locale": locale,
        "locales": i18n.LOCALE_NAMES,
        "_": lambda message: i18n.gettext(locale, message),
        "user": session.user if session else None,
        "csrf_token": session.csrf_token if session else "",
        "path": request.url.path,
        "nav": nav,
        "unread": unread,
        "pool_links": pool_links,
        "approvals_waiting": approvals_waiting,   # None: no approval process installed
        **extra,
    }


def _login_form(request: Request, templates: Jinja2Templates, *, next: str, username: str = "", error: str | None = None,
                status: int = 200, error_n: int | None = None) -> Response:
    token = secrets.token_urlsafe(32)
    context = page_context(request, next=_safe_next(next), username=username, error=error, error_n=error_n, login_csrf=token)
    response = templates.TemplateResponse(request, "login.html", context, status_code=status)
    response.set_cookie(LOGIN_CSRF_COOKIE, token, max_age=3600, httponly=True, samesite="strict",
                        secure=_secure(request, request.app.state.loom.settings), path="/login")
    return response


def _safe_next(target: str) -> str:
    """Only same-site paths: a login link must never redirect elsewhere."""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _secure(request: Request, settings: Settings) -> bool:
    if settings.cookie_secure is not None:
        return settings.cookie_secure
    return request.url.scheme == "https"


def _templates() -> Jinja2Templates:
    return Jinja2Templates(directory=[HERE / "templates", forms.TEMPLATE_DIR, automation_views.TEMPLATE_DIR,
                                      designer_views.TEMPLATE_DIR])
