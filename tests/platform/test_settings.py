import pytest
from pydantic import ValidationError

from loomcrm.platform.settings import Settings


def test_embedded_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("LOOM_DATA_DIR", str(tmp_path))
    settings = Settings()
    assert settings.resolved_database_url == f"sqlite:///{tmp_path / 'loom.db'}"
    assert settings.timezone == "UTC" and settings.phone_region == "CN" and settings.broker_url == ""


def test_settings_come_from_loom_variables(monkeypatch):
    monkeypatch.setenv("LOOM_DATABASE_URL", "postgresql://loom@db/crm")
    monkeypatch.setenv("LOOM_TIMEZONE", "Asia/Shanghai")
    monkeypatch.setenv("LOOM_PHONE_REGION", "us")
    settings = Settings()
    assert settings.resolved_database_url == "postgresql://loom@db/crm"
    assert str(settings.zone) == "Asia/Shanghai" and settings.phone_region == "US"


@pytest.mark.parametrize("name, value", [("LOOM_TIMEZONE", "Mars/Olympus"), ("LOOM_PHONE_REGION", "CHN")])
def test_bad_settings_are_refused(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=name.removeprefix("LOOM_").lower()):
        Settings()
