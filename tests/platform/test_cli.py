import os
import re
import subprocess

import httpx

from support import LOOM, start_server, stop_server


def loom(*args, data_dir, input=None, **settings):
    env = {**os.environ, "LOOM_DATA_DIR": str(data_dir)}
    env.pop("LOOM_DATABASE_URL", None)
    env.update(settings)
    return subprocess.run([LOOM, *args], env=env, input=input, capture_output=True, text=True, timeout=120)


def test_serve_creates_an_admin_once_and_prints_its_login(live_server, tmp_path):
    banner = live_server.banner
    password = re.search(r"password:\s+(\S+)", banner).group(1)
    assert "user name: admin" in banner
    client = httpx.Client(base_url=live_server.url)
    form = client.get("/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    signed_in = client.post("/login", data={"username": "admin", "password": password, "csrf_token": csrf, "next": "/"}, follow_redirects=True)
    assert signed_in.status_code == 200 and "Signed in as" in signed_in.text
    stop_server(live_server)

    again = start_server(tmp_path / "data")
    try:
        assert "password" not in again.banner
    finally:
        stop_server(again)


def test_user_and_token_commands(tmp_path):
    created = loom("user", "create", "liwei", "--role", "user", "--password", "s3cret-pass", data_dir=tmp_path)
    assert created.returncode == 0, created.stderr
    token = loom("token", "create", "liwei", data_dir=tmp_path)
    assert token.returncode == 0 and re.fullmatch(r"loom_\S+\n", token.stdout)

    server = start_server(tmp_path)
    try:
        me = httpx.get(f"{server.url}/api/v1/me", headers={"Authorization": f"Bearer {token.stdout.strip()}"})
        assert me.json()["username"] == "liwei"
    finally:
        stop_server(server)


def test_user_create_prompts_for_the_password(tmp_path):
    created = loom("user", "create", "chen", "--role", "admin", data_dir=tmp_path, input="long-password\nlong-password\n")
    assert created.returncode == 0, created.stderr + created.stdout


def test_cli_errors_are_messages_not_tracebacks(tmp_path):
    for args in (["user", "create", "x", "--role", "root", "--password", "whatever1"],
                 ["user", "create", "bad name", "--role", "user", "--password", "whatever1"],
                 ["token", "create", "nobody"]):
        result = loom(*args, data_dir=tmp_path)
        assert result.returncode == 1 and "Traceback" not in result.stderr and "error:" in result.stderr, (args, result.stderr)
    for setting in ({"LOOM_DATABASE_URL": "mysql://root@localhost/crm"}, {"LOOM_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"},
                    {"LOOM_TIMEZONE": "Mars/Olympus"}):
        result = loom("token", "create", "x", data_dir=tmp_path, **setting)
        assert result.returncode == 1 and "Traceback" not in result.stderr and "error:" in result.stderr, (setting, result.stderr)
