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
app.add_typer(user_app, name="user")
app.add_typer(token_app, name="token")
app.add_typer(pack_app, name="pack")
app.add_typer(expr_app, name="expr")

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

    from .app import create_app

    settings = _settings()
    engine = _engine(settings)
    if auth.count_users(engine) == 0:
        password = secrets.token_urlsafe(12)
        auth.create_user(engine, "admin", "admin", password, display_name="Administrator")
        # Printed once: it is stored only as a hash.
        typer.echo(f"Created the administrator account. Sign in at http://{host}:{port}/login with\n"
                   f"  user name: admin\n  password:  {password}\nand keep the password somewhere safe: it is not shown again.")
    uvicorn.run(create_app(settings, engine), host=host, port=port, log_level="info")


@user_app.command("create")
def user_create(name: str = typer.Argument(..., help="The user name, used to sign in."),
                role: str = typer.Option(..., help="admin or user."),
                password: str = typer.Option(None, help="Prompted for when not given.")):
    """Create a user."""
    if role not in auth.ROLES:
        _fail(f"role must be one of {', '.join(auth.ROLES)}, not {role!r}")
    if password is None:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    settings = _settings()
    try:
        user = auth.create_user(_engine(settings), name, role, password)
    except auth.AuthError as exc:
        _fail(str(exc))
    typer.echo(f"Created {user.role} {user.username}.")


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


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
