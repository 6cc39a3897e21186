"""The `loom` command (SPEC §2)."""

from __future__ import annotations

import json
import secrets
import sys
from pathlib import Path

import typer
from rich.console import Console

from loomcrm.runtime.expressions.cli import expr_app

from . import auth
from .settings import Settings

app = typer.Typer(help="Loom, a low-code CRM platform.", no_args_is_help=True, add_completion=False)
user_app = typer.Typer(help="Manage users.", no_args_is_help=True)
token_app = typer.Typer(help="Manage API tokens.", no_args_is_help=True)
pack_app = typer.Typer(help="Validate, install and export metadata bundles.", no_args_is_help=True)
migrate_app = typer.Typer(help="Plan and publish the metadata draft.", no_args_is_help=True)
rollups_app = typer.Typer(help="Recompute rollup fields and check them for drift.", no_args_is_help=True)
automation_app = typer.Typer(help="The automation run log and replays.", no_args_is_help=True)
department_app = typer.Typer(help="Manage departments.", no_args_is_help=True)
webhook_app = typer.Typer(help="Webhook signing.", no_args_is_help=True)
app.add_typer(user_app, name="user")
app.add_typer(token_app, name="token")
app.add_typer(pack_app, name="pack")
app.add_typer(expr_app, name="expr")
app.add_typer(migrate_app, name="migrate")
app.add_typer(rollups_app, name="rollups")
app.add_typer(automation_app, name="automation")
app.add_typer(department_app, name="department")
app.add_typer(webhook_app, name="webhook")

err = Console(stderr=True)


def _fail(message: str) -> None:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(1)


def _settings() -> Settings:
    try:
        return Settings()
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        _fail(f"bad LOOM_* setting: {exc}")


def _engine(settings: Settings):
    from .app import open_database

    try:
        return open_database(settings)
    except Exception as exc:  # a database we cannot open is the user's to fix, not a traceback
        _fail(f"cannot open the database {settings.resolved_database_url}: {str(exc).splitlines()[0]}")


def _secret_key(engine, settings: Settings) -> str:
    from .app import ensure_secret_key

    return ensure_secret_key(engine, settings.secret_key)


@app.command()
def serve(host: str = typer.Option("127.0.0.1", help="Address to listen on."),
          port: int = typer.Option(8000, help="Port to listen on.")):
    """Start the web app (API, pages and designer)."""
    import uvicorn

    from loomcrm.runtime.commands import install_default_packs

    from .app import create_app, field_context

    settings = _settings()
    engine = _engine(settings)
    admin, password = None, None
    if auth.count_users(engine) == 0:
        password = secrets.token_urlsafe(12)
        admin = auth.create_user(engine, "admin", "admin", password)
    for installed in install_default_packs(engine, user_id=admin.id if admin else None, context=field_context(settings)):
        typer.echo(f"Installed the {installed.name} pack {installed.version} ({installed.rows_loaded} sample records).")
    if password:
        # Printed once: it is stored only as a hash.
        typer.echo(f"Created the administrator account. Sign in at http://{host}:{port}/login with\n"
                   f"  user name: admin\n  password:  {password}\nand keep the password somewhere safe: it is not shown again.")
    if settings.broker_url:
        typer.echo("Automation runs on Celery workers (LOOM_BROKER_URL is set): start them with `loom worker`.")
    uvicorn.run(create_app(settings, engine, run_automation=not settings.broker_url), host=host, port=port, log_level="info")


@app.command()
def worker(concurrency: int = typer.Option(2, min=1, max=64, help="Worker processes running automation.")):
    """A Celery worker for automation (needs LOOM_BROKER_URL); run any number, anywhere."""
    settings = _settings()
    if not settings.broker_url:
        _fail("loom worker needs LOOM_BROKER_URL (redis://... or amqp://...); without it `loom serve` runs automation itself")
    _engine(settings).dispose()   # the database must be reachable and migrated before workers start
    from loomcrm.workflows.tasks import worker_main

    worker_main(concurrency)


@user_app.command("create")
def user_create(name: str = typer.Argument(..., help="The user name, used to sign in."),
                role: str = typer.Option(..., help="admin, user, or a role an installed bundle defines."),
                department: str = typer.Option(None, help="The department (see `loom department create`)."),
                password: str = typer.Option(None, help="Prompted for when not given.")):
    """Create a user."""
    from . import directory

    settings = _settings()
    engine = _engine(settings)
    roles = _installed_roles(engine)
    try:
        directory.check_role(role, roles)
    except directory.DirectoryError as exc:
        _fail(str(exc))
    if password is None:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        user = directory.create_user(engine, name, role, password, roles=roles, department=department)
    except directory.DirectoryError as exc:
        _fail(str(exc))
    typer.echo(f"Created {user.role} {user.username}" + (f" in {department}." if department else "."))


def _installed_roles(engine) -> list[str]:
    from loomcrm.metadata.versions import VersionStore

    with engine.connect() as conn:
        return [r.name for r in VersionStore().published(conn)[1].roles]


@department_app.command("create")
def department_create(name: str = typer.Argument(..., help="The department's name: lower-case letters, digits and _."),
                      parent: str = typer.Option(None, help="The department it belongs to."),
                      label: str = typer.Option("", help="The name people read (default: NAME)."),
                      manager: str = typer.Option(None, help="The user name of its manager.")):
    """Create a department in the tree the record scopes read."""
    from . import directory

    settings = _settings()
    try:
        made = directory.create_department(_engine(settings), name, label=label, parent=parent, manager=manager)
    except directory.DirectoryError as exc:
        _fail(str(exc))
    typer.echo(f"Created department {made.name}" + (f" under {made.parent}." if made.parent else "."))


@token_app.command("create")
def token_create(username: str = typer.Argument(..., help="The user the token acts as."),
                 name: str = typer.Option("", help="What the token is for.")):
    """Create an API token; prints only the token, once."""
    settings = _settings()
    engine = _engine(settings)
    try:
        token = auth.create_token(engine, _secret_key(engine, settings), username, name)
    except auth.AuthError as exc:
        _fail(str(exc))
    typer.echo(token)


@pack_app.command("validate")
def pack_validate(path: Path = typer.Argument(..., help="The bundle folder."),
                  as_json: bool = typer.Option(False, "--json", help="Print the result as JSON.")):
    """Check a bundle without touching any database."""
    from loomcrm.metadata.validate import validate_bundle

    problems = validate_bundle(path)
    if as_json:
        typer.echo(json.dumps({"valid": not problems, "errors": [
            {"file": p.file, "path": p.path, "message": p.message, "code": p.code} for p in problems]}, ensure_ascii=False))
    else:
        for p in problems:
            # Problems of the folder itself name the folder as it was given.
            typer.echo(str(p) if p.file != "." else f"{path}: {p.message}")
        if not problems:
            typer.echo(f"{path}: valid")
    raise typer.Exit(1 if problems else 0)


def _confirmations(items: list[str]) -> dict[str, str]:
    decisions = {}
    for item in items:
        key, sep, decision = item.partition("=")
        if not sep or not key or not decision:
            _fail(f"--confirm takes STEP=DECISION (e.g. 3:amount=clear), not {item!r}")
        decisions[key] = decision
    return decisions


@pack_app.command("install")
def pack_install(path_or_name: str = typer.Argument(..., help="A bundle folder, or the name of a shipped pack such as crm."),
                 confirm: list[str] = typer.Option([], help="STEP=DECISION for a step the plan asks to confirm."),
                 as_json: bool = typer.Option(False, "--json", help="Print the result as JSON.")):
    """Validate, plan and apply a bundle in one transaction (upgrades keep admin customisations)."""
    from loomcrm.runtime.commands import pack_install as install

    settings = _settings()
    _engine(settings)
    try:
        result = install(settings.resolved_database_url, path_or_name, confirm=_confirmations(confirm), context=_field_context(settings))
    except Exception as exc:
        _report_refusal(exc)
    if as_json:
        typer.echo(json.dumps(result.as_json(), ensure_ascii=False, default=str))
    elif result.publish.plan.empty:
        typer.echo(f"{result.name} {result.version} is installed already: nothing to change.")
    else:
        typer.echo(result.publish.plan.describe())
        typer.echo(f"{'Upgraded' if result.upgraded else 'Installed'} {result.name} {result.version} "
                   f"as metadata version {result.metadata_version} ({result.rows_loaded} sample records).")


@pack_app.command("uninstall")
def pack_uninstall(name: str = typer.Argument(..., help="The installed bundle."),
                   confirm: list[str] = typer.Option([], help="STEP=DECISION for a step the plan asks to confirm.")):
    """Remove what a bundle brought (its objects' data goes to the archive); refused while another bundle requires it."""
    from loomcrm.runtime.commands import pack_uninstall as uninstall

    settings = _settings()
    _engine(settings)
    try:
        result = uninstall(settings.resolved_database_url, name, confirm=_confirmations(confirm),
                           context=_field_context(settings))
    except Exception as exc:
        _report_refusal(exc)
    typer.echo(result.plan.describe())
    typer.echo(f"Uninstalled {name} as metadata version {result.version}.")


@pack_app.command("export")
def pack_export(name: str = typer.Argument(..., help="The installed bundle."),
                out: Path = typer.Option(..., "--out", help="The folder to write; must be empty or missing.")):
    """Write an installed bundle, with admin customisations, back to files."""
    from loomcrm.runtime.commands import pack_export as export

    settings = _settings()
    _engine(settings)
    try:
        folder = export(settings.resolved_database_url, name, out)
    except Exception as exc:
        _report_refusal(exc)
    typer.echo(f"Exported {name} to {folder}")


@migrate_app.command("plan")
def migrate_plan(as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON.")):
    """Show what publishing the draft would do to the database."""
    from loomcrm.runtime.commands import migrate_plan as plan_for

    settings = _settings()
    _engine(settings)
    plan = plan_for(settings.resolved_database_url, context=_field_context(settings))
    typer.echo(json.dumps(plan.as_json(), ensure_ascii=False, default=str) if as_json else plan.describe())


@migrate_app.command("publish")
def migrate_publish(confirm: list[str] = typer.Option([], help="STEP=DECISION for a step the plan asks to confirm."),
                    comment: str = typer.Option("", help="Why: kept with the metadata version.")):
    """Apply the draft: one atomic migration and a new metadata version."""
    from loomcrm.runtime.commands import migrate_publish as publish

    settings = _settings()
    _engine(settings)
    try:
        result = publish(settings.resolved_database_url, confirm=_confirmations(confirm), comment=comment,
                         context=_field_context(settings))
    except Exception as exc:
        _report_refusal(exc)
    typer.echo(f"Published metadata version {result.version}.")


@app.command("import")
def import_(object_name: str = typer.Argument(..., metavar="OBJECT", help="The object to import into, e.g. opportunity."),
            file: Path = typer.Argument(..., metavar="FILE", help="A CSV (UTF-8, UTF-8 with BOM or GB18030) or XLSX file."),
            map_: list[str] = typer.Option([], "--map", metavar="COL=FIELD", help="Fill FIELD from column COL (COL= skips the column)."),
            user: str = typer.Option("", "--user", help="Import as this user (owner and created_by); default: none."),
            batch_size: int = typer.Option(500, "--batch-size", min=1, max=100_000, help="Rows per transaction."),
            rejected: Path = typer.Option(None, "--rejected", help="Where to write rejected rows (default: FILE.rejected.csv)."),
            skip_rules_reason: str = typer.Option(None, "--skip-rules", metavar="REASON",
                                                  help="Save rows that break validation rules, stage criteria or duplicate "
                                                       "rules (admins only); each skip is recorded in history with REASON.")):
    """Import rows from a file; rejected rows go to FILE.rejected.csv with their line and reasons.

    Every row goes through the record service with the rules on, as a save
    through the API would."""
    import contextlib

    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

    from loomcrm.runtime.importer import ImportFileError, import_file, parse_map
    from loomcrm.runtime.rules.hooks import Rules, skip_rules
    from loomcrm.runtime.state import Runtime

    settings = _settings()
    if skip_rules_reason is not None and not skip_rules_reason.strip():
        _fail("--skip-rules needs a reason, e.g. --skip-rules 'migration from the old CRM'")
    engine = _engine(settings)
    actor = auth.find_user(engine, user) if user else None
    if user and actor is None:
        _fail(f"there is no user {user!r}")
    if skip_rules_reason is not None and (actor is None or actor.role != "admin"):
        _fail("only an administrator may skip rules: add --user with an admin's user name")
    runtime = Runtime(engine, context=_field_context(settings), hooks=Rules(timezone=settings.timezone))
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), TaskProgressColumn(), TimeRemainingColumn(),
                        console=err, transient=True)
    task = None

    def on_start(result, total):
        nonlocal task
        for column in result.skipped_columns:
            err.print(f"note: column {column!r} is not a field of {result.object}: skipped "
                      f"(use --map '{column}=FIELD' to import it)", highlight=False, markup=False, soft_wrap=True)
        progress.start()
        task = progress.add_task(f"{result.path.name} -> {result.object}", total=total or None)

    skipping = skip_rules(skip_rules_reason) if skip_rules_reason is not None else contextlib.nullcontext()
    try:
        with skipping:
            result = import_file(runtime, object_name, file, parse_map(map_), user=actor, batch_size=batch_size,
                                 progress=lambda done, total: progress.update(task, completed=done, total=total or None),
                                 on_start=on_start, rejected_path=rejected)
    except (ImportFileError, OSError) as exc:
        message = str(exc) if isinstance(exc, ImportFileError) else f"{file}: {exc.strerror or exc}"
        err.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    finally:
        if task is not None:
            progress.stop()
        engine.dispose()
    typer.echo(result.summary())


@rollups_app.command("recompute")
def rollups_recompute(object_name: str = typer.Argument(None, metavar="[OBJECT]", help="Only this object's rollups."),
                      field_name: str = typer.Argument(None, metavar="[FIELD]", help="Only this rollup field.")):
    """Rebuild rollups from their children, and what depends on them, in one transaction."""
    from loomcrm.runtime import commands

    settings = _settings()
    try:
        changed = commands.rollups_recompute(settings.resolved_database_url, object_name, field_name)
    except LookupError as exc:
        _fail(str(exc.args[0]))
    typer.echo(f"Recomputed rollups: {changed} records changed.")


@rollups_app.command("check")
def rollups_check(object_name: str = typer.Argument(None, metavar="[OBJECT]", help="Only this object's rollups."),
                  field_name: str = typer.Argument(None, metavar="[FIELD]", help="Only this rollup field."),
                  limit: int = typer.Option(1000, min=1, help="Report at most this many drifted values."),
                  as_json: bool = typer.Option(False, "--json", help="Print the drift as JSON.")):
    """Report stored rollup values that differ from a recomputation; exit 1 on drift."""
    from loomcrm.runtime import commands

    settings = _settings()
    try:
        drift = commands.rollups_check(settings.resolved_database_url, object_name, field_name, limit=limit)
    except LookupError as exc:
        _fail(str(exc.args[0]))
    if as_json:
        typer.echo(json.dumps({"drift": [d.as_json() for d in drift]}, ensure_ascii=False, default=str))
    else:
        for d in drift:
            typer.echo(f"{d.object}.{d.field} {d.id}: stored {d.as_json()['stored']!r}, expected {d.as_json()['expected']!r}")
        typer.echo(f"{len(drift)} drifted values" + (" (run `loom rollups recompute` to fix them)" if drift else "."))
    raise typer.Exit(1 if drift else 0)


@automation_app.command("runs")
def automation_runs(workflow: str = typer.Option(None, help="Only this workflow's runs."),
                    record: str = typer.Option(None, help="Only runs about this record (id)."),
                    status: str = typer.Option(None, help="Only runs in this state (pending, done, failed, dead, ...)."),
                    limit: int = typer.Option(50, min=1, max=10_000, help="At most this many runs, newest first."),
                    as_json: bool = typer.Option(False, "--json", help="One JSON object per run, as the API answers.")):
    """The automation run log, newest first."""
    from loomcrm.workflows import runs

    settings = _settings()
    engine = _engine(settings)
    if status and status not in runs.STATUSES:
        _fail(f"status is one of {', '.join(runs.STATUSES)}, not {status!r}")
    with engine.connect() as conn:
        found, _cursor = runs.listing(conn, workflow=workflow, record=record, status=status, limit=limit)
    for run in found:
        if as_json:
            typer.echo(json.dumps(run, ensure_ascii=False, default=str))
        else:
            where = f"{run['object']} {run['record']}" if run["record"] else run["object"]
            line = f"{run['created_at']}  {run['id']}  {run['workflow']}[{run['action_index']}] {run['action']}  {where}  {run['status']}"
            if run["attempts"] > 1:
                line += f" ({run['attempts']} tries)"
            if run["error"]:
                line += f"  {run['error']}"
            typer.echo(line)
    if not as_json and not found:
        typer.echo("No runs.")


@automation_app.command("replay")
def automation_replay(run_id: str = typer.Argument(..., metavar="RUN_ID", help="A dead run's id.")):
    """Run a dead run again (with a full set of tries)."""
    from loomcrm.workflows.engine import Automation

    settings = _settings()
    engine = _engine(settings)
    refused = Automation(engine, settings).replay(run_id)
    if refused:
        _fail(f"run {run_id}: {refused}")
    typer.echo(f"Run {run_id} will run again.")


@webhook_app.command("secret")
def webhook_secret():
    """Print the secret every webhook is signed with (Standard Webhooks, `whsec_...`)."""
    from loomcrm.workflows.engine import webhook_secret as secret_of

    settings = _settings()
    typer.echo(secret_of(_engine(settings), settings))


def _field_context(settings: Settings):
    from .app import field_context

    return field_context(settings)


def _report_refusal(exc: Exception) -> None:
    """Refusals of install, export and publish, as messages (never a traceback)."""
    problems = getattr(exc, "problems", None) or getattr(exc, "errors", None) or []
    for problem in problems:
        if isinstance(problem, dict):
            err.print(f"  {problem.get('key') or problem.get('field') or ''}: {problem.get('message')}", highlight=False, markup=False)
        else:
            err.print(f"  {problem}", highlight=False, markup=False)
    _fail(str(getattr(exc, "detail", None) or exc).splitlines()[0] if str(exc) else type(exc).__name__)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
