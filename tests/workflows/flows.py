"""Automation tests' world: a small bundle of its own (deals with a stage,
tasks that link to them), users to hand records to, a clock tests move by
hand. Workflows are published per test; `drain` runs everything due."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from loomcrm.metadata.model import Workflow
from loomcrm.metadata.versions import VersionStore
from loomcrm.platform import auth
from loomcrm.platform.settings import Settings
from loomcrm.runtime.install import bundle_from_json, install_bundle
from loomcrm.runtime.migrate.execute import publish
from loomcrm.workflows.engine import Automation

from loomcrm.platform import systemdb
from loomcrm.platform.db import create_engine

BUNDLE = {
    "manifest": {"format": "loom/1", "name": "flows", "version": "1.0.0"},
    "objects": [
        {"name": "deal", "title_field": "name", "track_history": ["stage"], "fields": [
            {"name": "name", "type": "text", "required": True},
            {"name": "amount", "type": "currency"},
            {"name": "region", "type": "picklist", "options": [{"value": "north"}, {"value": "south"}, {"value": "east"}]},
            {"name": "stage", "type": "stage", "stages": [
                {"value": "new", "category": "open", "probability": 10},
                {"value": "talks", "category": "open", "probability": 50},
                {"value": "won", "category": "won", "probability": 100},
                {"value": "lost", "category": "lost", "probability": 0}]},
            {"name": "hot", "type": "boolean"},
            {"name": "note", "type": "text", "max_length": 2000},
            {"name": "touches", "type": "integer"},
            {"name": "close_date", "type": "date"},
            {"name": "remind_at", "type": "datetime"},
            {"name": "contact_email", "type": "email"}],
         "validation_rules": [{"name": "no_forbidden_note", "check": "note != 'forbidden'", "message": "That note is not allowed",
                               "field": "note"}]},
        {"name": "task", "title_field": "subject", "fields": [
            {"name": "subject", "type": "text", "required": True, "max_length": 500},
            {"name": "due", "type": "date"},
            {"name": "deal", "type": "lookup", "to": "deal", "on_delete": "set_null"}],
         "validation_rules": [{"name": "no_secret", "check": "not contains(subject, 'secret')", "message": "No secrets in subjects",
                               "field": "subject"}]},
    ],
}


@dataclass
class Clock:
    """A clock tests move by hand; starts at the real time."""

    at: datetime

    def __call__(self) -> datetime:
        return self.at

    def advance(self, **delta) -> None:
        self.at += timedelta(**delta)


@dataclass
class World:
    automation: Automation
    clock: Clock
    users: dict[str, auth.User]

    @property
    def records(self):
        return self.automation.runtime.records

    @property
    def engine(self):
        return self.automation.engine

    def workflows(self, *flows: dict) -> None:
        """Publish exactly these workflows (with the bundle's objects)."""
        with self.engine.connect() as conn:
            _version, snapshot = VersionStore().published(conn)
        publish(self.engine, snapshot.model_copy(update={"workflows": [Workflow.model_validate(f) for f in flows]}))
        self.automation.runtime.invalidate()

    def drain(self, rounds: int = 50) -> int:
        """Dispatch, fire timers and run every run due now, until nothing is left; answers the runs executed."""
        ran = 0
        for _ in range(rounds):
            moved = self.automation.dispatch()[0] + self.automation.sweep()[0]
            while True:
                run_id, _ready = self.automation.execute_next()
                if run_id is None:
                    break
                ran += 1
            if not moved:
                return ran
        raise AssertionError("automation did not settle")


def make_settings(url: str, **overrides) -> Settings:
    values = {"database_url": url, "timezone": "Asia/Shanghai", "automation_retry_seconds": 1.0,
              "automation_lease_seconds": 30.0, "webhook_allow": "", **overrides}
    return Settings(**values)


def world_for(url: str, **settings) -> World:
    engine = create_engine(url)
    systemdb.upgrade(engine)
    install_bundle(engine, bundle_from_json(BUNDLE))
    users = {name: auth.create_user(engine, name, "admin" if name == "alice" else "user", "a long password",
                                    display_name=name.title()) for name in ("alice", "bob", "carol", "dave")}
    with engine.begin() as conn:
        conn.execute(systemdb.users.update().where(systemdb.users.c.username == "bob").values(email="bob@example.com", locale="zh-CN"))
        conn.execute(systemdb.users.update().where(systemdb.users.c.username == "carol").values(email="carol@example.com"))
    clock = Clock(datetime.now(timezone.utc))
    automation = Automation(engine, make_settings(url, **settings), clock=clock)
    automation.runtime.refresh_interval = 0
    return World(automation, clock, users)
