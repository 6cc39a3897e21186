"""Set-up shared by the benchmarks: databases, a Loom installation with the
benchmark bundle, `loom serve` and baseline processes, and the load
generator. Nothing here measures anything."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Iterator

import httpx
import sqlalchemy as sa

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
BUNDLE = HERE / "bundle"
PYTHON = sys.executable
LOOM = str(Path(sys.executable).with_name("loom"))
POSTGRES_ADMIN_URL = os.environ.get("LOOM_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
MAVEN = REPO.parent / "shared" / "data" / "maven-crm"


def postgres_available() -> bool:
    try:
        engine = sa.create_engine(POSTGRES_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
        return True
    except Exception:
        return False


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A new PostgreSQL database, dropped afterwards."""
    name = f"loom_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.engine.make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextlib.contextmanager
def database(kind: str, folder: Path, name: str = "loom") -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{folder / (name + '.db')}"
    else:
        with postgres_database() as url:
            yield url


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loom_env(data_dir: Path, database_url: str) -> dict:
    env = {**os.environ, "LOOM_DATA_DIR": str(data_dir), "LOOM_DATABASE_URL": database_url}
    env.pop("CI", None)
    return env


def loom_cli(env: dict, *args: str, timeout: float = 3600) -> subprocess.CompletedProcess:
    result = subprocess.run([LOOM, *args], env=env, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"loom {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def install_loom(data_dir: Path, database_url: str, bundle: Path = BUNDLE) -> tuple[dict, str]:
    """The benchmark bundle installed, an admin user and its API token."""
    env = loom_env(data_dir, database_url)
    loom_cli(env, "pack", "install", str(bundle))
    loom_cli(env, "user", "create", "bench", "--role", "admin", "--password", "bench-password-1")
    token = loom_cli(env, "token", "create", "bench").stdout.strip()
    return env, token


@contextlib.contextmanager
def process(args: list[str], env: dict, health_url: str, log: Path, timeout: float = 60) -> Iterator[subprocess.Popen]:
    proc = subprocess.Popen(args, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{args[0]} exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
            try:
                if httpx.get(health_url, timeout=1).status_code < 500:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{args} did not answer within {timeout}s")
            time.sleep(0.2)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextlib.contextmanager
def loom_server(env: dict, folder: Path) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with process([LOOM, "serve", "--port", str(port)], env, f"{url}/healthz", folder / f"loom-{port}.log"):
        yield url


@contextlib.contextmanager
def baseline_server(database_url: str, folder: Path, script: str = "baseline_app.py") -> Iterator[str]:
    """A hand-written app beside this file (`baseline_app.py`, or another
    one serving GET /opportunity) under uvicorn, in its own process."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with process([PYTHON, str(HERE / script), database_url, str(port)], dict(os.environ),
                 f"{url}/opportunity?limit=1", folder / f"{Path(script).stem}-{port}.log"):
        yield url


def load(url: str, op: str, *, token: str = "", count: int, concurrency: int = 4, ids: list[str] | None = None,
         folder: Path, style: str) -> dict:
    """Run the load generator in its own process: `count` requests of one
    kind; returns {"rps", "p50", "p95", "errors", "ids"}."""
    spec = {"url": url, "op": op, "token": token, "count": count, "concurrency": concurrency, "ids": ids or [], "style": style}
    with tempfile.NamedTemporaryFile("w", suffix=".json", dir=folder, delete=False) as f:
        json.dump(spec, f)
    result = subprocess.run([PYTHON, str(HERE / "loadgen.py"), f.name], capture_output=True, text=True, timeout=1800)
    os.unlink(f.name)
    if result.returncode != 0:
        raise RuntimeError(f"loadgen failed: {result.stderr[-2000:]}")
    return json.loads(result.stdout)


def machine() -> str:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores, {cpu}"


def seed_opportunities(database_url: str, rows: int) -> None:
    """Bulk rows straight into Loom's generated table (PostgreSQL), for the
    benchmarks that measure reading and schema changes, not writing: one
    INSERT ... SELECT over generate_series, 1% of amounts empty."""
    engine = sa.create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(sa.text("""
            INSERT INTO o_opportunity (id, version, created_at, updated_at, name, amount, stage, close_date)
            SELECT md5(i::text), 1, now() - (i || ' seconds')::interval, now(), 'Deal ' || i,
                   CASE WHEN i % 100 = 0 THEN NULL ELSE round((random() * 100000)::numeric, 2) END,
                   (ARRAY['qualification','needs_analysis','proposal','negotiation','won','lost'])[1 + i % 6],
                   date '2030-01-01' + (i % 365)
            FROM generate_series(1, :rows) AS i"""), {"rows": rows})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE o_opportunity"))
    engine.dispose()


def add_users(conn: sa.Connection, count: int, role, prefix: str = "user", **columns) -> list[str]:
    """`count` users named prefix0, prefix1, ... (ids returned in that
    order); `role` and `columns` are values or functions of the number. On
    PostgreSQL also a temporary table `bench_people (n, id)` for seeding
    statements to give records to them by number."""
    from loomcrm.platform import auth, systemdb

    password = auth.hash_password("bench password")
    people = [uuid.uuid4().hex for _ in range(count)]
    conn.execute(sa.insert(systemdb.users), [
        {"id": p, "username": f"{prefix}{i}", "display_name": f"{prefix.title()} {i}", "password_hash": password,
         "locale": "en", "is_active": True, "role": role(i) if callable(role) else role,
         **{k: v(i) if callable(v) else v for k, v in columns.items()}}
        for i, p in enumerate(people)])
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("CREATE TEMP TABLE bench_people (n int PRIMARY KEY, id varchar(32))"))
        conn.execute(sa.text("INSERT INTO bench_people VALUES (:n, :id)"), [{"n": i, "id": p} for i, p in enumerate(people)])
    return people
