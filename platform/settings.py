"""Settings from `LOOM_*` environment variables (SPEC §1)."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOOM_", extra="ignore")

    data_dir: Path = Path(".loom")
    database_url: str = ""
    broker_url: str = ""
    # Empty: generated once and stored in the database, so every process shares it.
    secret_key: str = ""
    timezone: str = "UTC"
    phone_region: str = "CN"
    # Marks cookies Secure. Unset: Secure whenever the request came over
    # HTTPS (behind a proxy, run uvicorn with --proxy-headers).
    cookie_secure: bool | None = None
    # Automation (SPEC §1): e-mail and webhooks.
    smtp_url: str = ""
    # Where people reach Loom: the start of links in e-mail (survey links).
    base_url: str = "http://127.0.0.1:8000"
    mail_from: str = "Loom <loom@localhost>"
    # Empty: generated once and stored in the database.
    webhook_secret: str = ""
    webhook_allow: str = ""
    # How long a worker may hold a run before another takes it over, and
    # the first retry's delay (doubled, with jitter, for each further try).
    automation_lease_seconds: float = 120.0
    automation_retry_seconds: float = 10.0

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("phone_region")
    @classmethod
    def _region(cls, value: str) -> str:
        value = value.upper()
        if len(value) != 2 or not value.isalpha():
            raise ValueError(f"phone region must be a two-letter country code, not {value!r}")
        return value

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'loom.db'}"

    @cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)
