"""The Celery application of `loom worker` (production mode:
`LOOM_BROKER_URL` set). The database is the source of truth: a Celery
message only says "run X may run now", and losing one loses nothing (the
pump wakes any run left due; see `runner`).

Settings that matter, and why:
- `task_acks_late` with `task_reject_on_worker_lost`: a message is
  acknowledged when its task returns, and goes back to the queue if the
  process running it dies (kill -9, out of memory), so another worker
  wakes the run (which the reaper hands back once its lease runs out);
- `worker_prefetch_multiplier = 1`: a worker process reserves one message
  at a time, so a slow webhook never holds others' work hostage;
- `visibility_timeout` (Redis) longer than any countdown: Redis redelivers
  an unacknowledged message after it, so it must outlast the longest wait
  before a retry (an hour) or the retry would run twice as early;
- one queue per database (`loom-` and a hash of its URL): Loom
  installations sharing a broker never take each other's messages.
"""

from __future__ import annotations

import hashlib

from celery import Celery

from loomcrm.platform.settings import Settings

from .runs import RETRY_CAP

VISIBILITY_TIMEOUT = int(RETRY_CAP.total_seconds() * 2)


def queue_name(settings: Settings) -> str:
    return "loom-" + hashlib.sha256(settings.resolved_database_url.encode()).hexdigest()[:12]


def make_celery(settings: Settings) -> Celery:
    app = Celery("loom", broker=settings.broker_url, include=["loomcrm.workflows.tasks"])
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT},
        broker_connection_timeout=3,
        broker_connection_retry_on_startup=True,
        task_default_queue=queue_name(settings),
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    return app
