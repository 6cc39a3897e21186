"""Text, long text, e-mail, phone and URL fields."""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import nh3
import phonenumbers
import sqlalchemy as sa
from email_validator import EmailNotValidError, validate_email

from .registry import TEXT_OPS, FieldContext, FieldError, FieldType, register

try:  # linear-time matching for patterns written by admins
    import re2 as _re2
except ImportError:  # pragma: no cover - google-re2 is a dependency
    _re2 = None

MAX_TEXT = 1_000_000


def _fullmatch(pattern: str, value: str) -> bool:
    if _re2 is not None:
        try:
            return _re2.fullmatch(pattern, value) is not None
        except Exception:
            pass
    return re.fullmatch(pattern, value) is not None


def _as_str(field, value: Any) -> str:
    if not isinstance(value, str):
        raise FieldError("type", f"{field.name} must be text")
    if "\x00" in value:
        raise FieldError("type", f"{field.name} must not contain NUL characters")
    return value


@register
class TextType(FieldType):
    name = "text"
    searchable = True
    operators = TEXT_OPS

    def column_type(self, field, objects):
        return sa.String(field.max_length)

    def python_type(self, field):
        return str

    def json_schema(self, field):
        schema = {"type": "string", "maxLength": field.max_length}
        if field.pattern:
            schema["pattern"] = field.pattern
        return schema

    def coerce(self, field, value, ctx):
        value = _as_str(field, value)
        if len(value) > field.max_length:
            raise FieldError("too_long", f"{field.name} is longer than {field.max_length} characters")
        if field.pattern and not _fullmatch(field.pattern, value):
            raise FieldError("pattern", f"{field.name} does not match the required pattern")
        return value


@register
class LongTextType(FieldType):
    name = "long_text"
    searchable = True
    operators = TEXT_OPS

    def column_type(self, field, objects):
        return sa.Text()

    def python_type(self, field):
        return str

    def json_schema(self, field):
        return {"type": "string", "maxLength": field.max_length or MAX_TEXT}

    def coerce(self, field, value, ctx):
        value = _as_str(field, value)
        if field.format == "html":
            # plain text (an import, a conversion from a plain field) keeps its paragraphs
            value = sanitized(value if _MARKUP.search(value) else paragraphs(value))
        limit = field.max_length or MAX_TEXT
        if len(value) > limit:
            raise FieldError("too_long", f"{field.name} is longer than {limit} characters")
        return value


# Rich text keeps structure and emphasis, never scripts, styles, frames or
# event handlers; links get rel="noopener noreferrer".
RICH_TAGS = {"p", "br", "strong", "b", "em", "i", "u", "s", "ul", "ol", "li", "h2", "h3", "h4", "blockquote", "code",
             "pre", "a", "hr"}
RICH_ATTRIBUTES = {"a": {"href", "title"}}
_MARKUP = re.compile(r"<[a-zA-Z!/]")          # a tag, a comment: the text is HTML


def sanitized(html_text: str) -> str:
    """Rich text made safe to show: only RICH_TAGS, links to http(s) and mail."""
    return nh3.clean(html_text, tags=RICH_TAGS, attributes=RICH_ATTRIBUTES, url_schemes={"http", "https", "mailto"})


def paragraphs(text: str) -> str:
    """Plain text as rich text: blank lines part paragraphs, line ends stay."""
    parts = [p.strip() for p in re.split(r"\n\s*\n", text.replace("\r\n", "\n")) if p.strip()]
    return "".join("<p>" + html.escape(p).replace("\n", "<br>") + "</p>" for p in parts)


def plain_text(html_text: str) -> str:
    """Rich text's words, without markup (for full-text search)."""
    return html.unescape(nh3.clean(html_text.replace("<", " <"), tags=set()))


@register
class EmailType(FieldType):
    name = "email"
    searchable = True
    operators = TEXT_OPS

    def column_type(self, field, objects):
        return sa.String(320)

    def python_type(self, field):
        return str

    def json_schema(self, field):
        return {"type": "string", "format": "email", "maxLength": 320}

    def coerce(self, field, value, ctx):
        value = _as_str(field, value).strip()
        if len(value) > 320:
            raise FieldError("too_long", f"{field.name} is longer than 320 characters")
        try:
            result = validate_email(value, check_deliverability=False)
        except EmailNotValidError as exc:
            raise FieldError("type", f"{field.name} is not a valid e-mail address: {exc}") from None
        return result.normalized


_PHONE_SEPARATORS = re.compile(r"[\s()./\-\u3000]")
_PHONE_DIGITS = re.compile(r"^\+?\d{3,}$")


@register
class PhoneType(FieldType):
    name = "phone"
    searchable = True
    operators = TEXT_OPS

    def column_type(self, field, objects):
        return sa.String(32)

    def python_type(self, field):
        return str

    def json_schema(self, field):
        return {"type": "string", "maxLength": 64}

    def search_text(self, text):
        # Stored in E.164 (+8613912345678): "139 1234 5678" and "139-1234-5678" are its digits.
        digits = _PHONE_SEPARATORS.sub("", text)
        if not _PHONE_DIGITS.match(digits):
            return None
        return digits.lstrip("+")

    def coerce(self, field, value, ctx: FieldContext):
        value = _as_str(field, value).strip()
        if len(value) > 64:
            raise FieldError("too_long", f"{field.name} is too long for a phone number")
        try:
            number = phonenumbers.parse(value, ctx.phone_region)
        except phonenumbers.NumberParseException:
            raise FieldError("type", f"{field.name} is not a phone number") from None
        if not phonenumbers.is_valid_number(number):
            raise FieldError("type", f"{field.name} is not a valid phone number")
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@register
class UrlType(FieldType):
    name = "url"
    searchable = True
    operators = TEXT_OPS

    def column_type(self, field, objects):
        return sa.String(2048)

    def python_type(self, field):
        return str

    def json_schema(self, field):
        return {"type": "string", "format": "uri", "maxLength": 2048}

    def coerce(self, field, value, ctx):
        value = _as_str(field, value).strip()
        if len(value) > 2048:
            raise FieldError("too_long", f"{field.name} is longer than 2048 characters")
        if "://" not in value:
            if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:(?!\d)", value):
                raise FieldError("type", f"{field.name} must be an http or https URL")
            value = "https://" + value
        try:
            parts = urlsplit(value)
            host = parts.hostname
            parts.port  # noqa: B018 - raises on a malformed port
        except ValueError:
            raise FieldError("type", f"{field.name} is not a valid URL") from None
        if parts.scheme.lower() not in ("http", "https") or not host or any(c.isspace() for c in value):
            raise FieldError("type", f"{field.name} must be an http or https URL")
        netloc = parts.netloc
        userinfo, _, hostport = netloc.rpartition("@")
        netloc = (userinfo + "@" if userinfo else "") + hostport.lower()
        return urlunsplit((parts.scheme.lower(), netloc, parts.path or "/", parts.query, parts.fragment))
