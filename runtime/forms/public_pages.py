"""Pages anyone may open, without signing in: public web forms
(`/f/{name}`, embeddable in a company's site with an iframe) and
satisfaction surveys (`/s/{signed id}`, the link of the survey e-mail)."""

from __future__ import annotations

from typing import Callable

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from loomcrm.metadata.model import localized

from .. import surveys, web_forms
from ..records import NotFound, RecordError
from .refs import record_title
from .views import Pages, localize_errors

CONTROLS = {"long_text": "textarea", "picklist": "select", "boolean": "checkbox", "integer": "number",
            "decimal": "number", "currency": "number", "percent": "number", "date": "date", "email": "email",
            "phone": "tel", "url": "url"}


def build_public_pages(runtime, *, templates, page_context: Callable[..., dict]) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    pages = Pages(runtime, templates, page_context)

    def secret(request: Request) -> str:
        return request.app.state.loom.secret_key

    def render(request: Request, template: str, status: int = 200, **context) -> HTMLResponse:
        # nobody is signed in here, even when the visitor is: no navigation, no session
        locale = page_context(request)["locale"]
        return pages.render(request, template, status=status, user=None, nav=None, csrf_token="",
                            text=lambda t: localized(t, locale, ""), **context)

    async def posted(request: Request) -> dict[str, str]:
        # visitors send a few short fields, never files
        form = await request.form(max_files=0, max_fields=64, max_part_size=web_forms.MAX_TEXT * 4)
        return {k: v for k, v in form.items() if isinstance(v, str)}

    # --- web forms ------------------------------------------------------------------------------
    def form_page(request: Request, name: str, *, values=None, errors=None, status: int = 200, done: bool = False):
        schema = runtime.schema()
        try:
            form = web_forms.form_of(schema, name)
        except NotFound:
            return render(request, "forms/public_form.html", status=404, form=None)
        locale = page_context(request)["locale"]
        obj = schema.object(form.object)
        fields = [obj.field(n) for n in form.fields if obj.field(n) is not None]
        return render(request, "forms/public_form.html", status=status, form=form, obj=obj, fields=fields,
                      values=values or {}, errors=errors or {}, done=done, honeypot=web_forms.HONEYPOT,
                      controls=CONTROLS, ui=pages.display(schema, locale))

    @router.get("/f/{name}", response_class=HTMLResponse)
    def web_form(request: Request, name: str):
        return form_page(request, name)

    @router.post("/f/{name}", response_class=HTMLResponse)
    async def web_form_post(request: Request, name: str):
        data = await posted(request)
        address = request.client.host if request.client else None
        try:
            await run_in_threadpool(web_forms.submit, runtime, secret(request), name, data, address)
        except NotFound:
            return form_page(request, name)
        except web_forms.TooManyPosts:
            return form_page(request, name, values=data, status=429,
                             errors={None: ["Too many posts from your address; please try again in an hour."]})
        except RecordError as exc:
            locale = page_context(request)["locale"]
            form = web_forms.form_of(runtime.schema(), name)
            errors: dict = {}
            for field_name, messages in localize_errors(exc.errors, runtime.schema().object(form.object), locale).items():
                # a rule on a field the visitor does not see is told with the form
                errors.setdefault(field_name if field_name in form.fields else None, []).extend(messages)
            return form_page(request, name, values=data, errors=errors or {None: [exc.detail]}, status=422)
        return form_page(request, name, done=True)

    # --- surveys ------------------------------------------------------------------------------------
    def survey_page(request: Request, token: str, *, values=None, problems=(), status: int = 200, closed=None):
        if closed is not None:
            return render(request, "forms/survey.html", status=status, closed=closed)
        try:
            survey, record, _ = surveys.open_survey(runtime, secret(request), token)
        except surveys.SurveyRefused as exc:
            return render(request, "forms/survey.html", status=exc.status, closed=surveys.TEXTS[exc.reason])
        obj = runtime.schema().object(survey.object)
        return render(request, "forms/survey.html", status=status, closed=None, survey=survey, token=token,
                      about=record_title(obj, record), values=values or {}, problems=problems)

    @router.get("/s/{token}", response_class=HTMLResponse)
    def survey(request: Request, token: str):
        return survey_page(request, token)

    @router.post("/s/{token}", response_class=HTMLResponse)
    async def survey_post(request: Request, token: str):
        data = await posted(request)
        try:
            answered, _ = await run_in_threadpool(surveys.answer, runtime, secret(request), token, data)
        except surveys.SurveyRefused as exc:
            return survey_page(request, token, closed=surveys.TEXTS[exc.reason], status=exc.status)
        except RecordError as exc:
            return survey_page(request, token, values=data, problems=[e.get("field") for e in exc.errors],
                               status=422)
        thanks = localized(answered.thanks, page_context(request)["locale"], "") if answered.thanks else ""
        return survey_page(request, token, closed=thanks or surveys.TEXTS["thanks"])

    return router
