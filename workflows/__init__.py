"""Automation: the workflows bundles declare (SPEC §3.5), run from the
outbox the record service writes in every save's transaction.

    outbox event ──dispatch──▶ runs (one per workflow, event and action)
    due timers ───sweep─────▶ runs                         │
    cron ticks ───schedule──▶ runs                         ▼
                                          execute: claim with a lease, act,
                                          mark done in the same transaction

- `definitions`: the workflows of one metadata version, checked and compiled.
- `outbox`: claims outbox events, matches triggers and conditions, writes
  runs and keeps the due timers, marking each event done in one transaction.
- `timers` and `schedule`: time triggers and cron triggers.
- `runs`: the run table (claiming, leases, retries, the run log).
- `executor` and `actions/`: what each action does; `assignment` hands
  records out.
- `engine.Automation`: all of it for one database; `runner` drives it in
  `loom serve` (embedded) or beside Celery (`celery_app`, `tasks`).
- `api` and `views`: the run log, replays and in-app notifications.

Nothing in `runtime` imports this package.
"""
