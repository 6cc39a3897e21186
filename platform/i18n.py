"""The two shipped locales, en and zh-CN.

Texts live in gettext catalogs (`locales/<locale>.po`, extractable and
editable with Babel's and translators' usual tools); they are read once at
start-up. Dates and numbers are formatted by Babel per locale.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

from babel.dates import format_date, format_datetime
from babel.messages.pofile import read_po
from babel import Locale
from babel.numbers import format_decimal

LOCALES = ("en", "zh-CN")
DEFAULT_LOCALE = "en"
LOCALE_NAMES = {"en": "English", "zh-CN": "简体中文"}
_CATALOG_DIR = Path(__file__).with_name("locales")


@lru_cache(maxsize=None)
def _catalog(locale: str) -> dict[str, str]:
    path = _CATALOG_DIR / f"{locale}.po"
    if not path.exists():
        return {}
    with path.open("rb") as handle:
        catalog = read_po(handle, locale=locale.replace("-", "_"))
    return {message.id: message.string for message in catalog if message.id and message.string}


def gettext(locale: str, message: str) -> str:
    return _catalog(locale).get(message, message)


def negotiate(accept_language: str | None) -> str:
    """The best shipped locale for an Accept-Language header."""
    if not accept_language:
        return DEFAULT_LOCALE
    ranked = []
    for position, part in enumerate(accept_language.split(",")):
        tag, _, params = part.strip().partition(";")
        try:
            quality = float(params.strip()[2:]) if params.strip().startswith("q=") else 1.0
        except ValueError:
            quality = 0.0
        ranked.append((-quality, position, tag.strip().lower()))
    for _, _, tag in sorted(ranked):
        # Every Chinese variant reads Simplified Chinese better than English.
        if tag.startswith("zh"):
            return "zh-CN"
        if tag.startswith("en"):
            return "en"
    return DEFAULT_LOCALE


def supported(locale: str | None) -> str | None:
    return locale if locale in LOCALES else None


def _babel(locale: str) -> str:
    return locale.replace("-", "_")


def format_day(value: date, locale: str) -> str:
    # Chinese users read ISO dates (2026-11-22); English users a medium date.
    return value.isoformat() if locale == "zh-CN" else format_date(value, "medium", locale=_babel(locale))


def format_moment(value: datetime, locale: str, tz) -> str:
    if locale == "zh-CN":
        return value.astimezone(tz).strftime("%Y-%m-%d %H:%M")
    return format_datetime(value, "medium", tzinfo=tz, locale=_babel(locale))


def format_money(value: Decimal, locale: str, currency: str = "CNY") -> str:
    # babel's format_currency, minus finding the locale's pattern each time
    # (a report's table formats hundreds of amounts)
    babel_locale = _babel_locale(locale)
    return babel_locale.currency_formats["standard"].apply(value, babel_locale, currency=currency)


@lru_cache(maxsize=16)
def _babel_locale(locale: str) -> Locale:
    return Locale.parse(_babel(locale))


def format_number(value, locale: str) -> str:
    return format_decimal(value, locale=_babel(locale))
