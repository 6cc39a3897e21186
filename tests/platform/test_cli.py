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
    assert "user name: admin" in banner and "Installed the crm pack" in banner
    client = httpx.Client(base_url=live_server.url)
    form = client.get("/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    signed_in = client.post("/login", data={"username": "admin", "password": password, "csrf_token": csrf, "next": "/"}, follow_redirects=True)
    # the crm pack makes its sales dashboard the admin's home page
    assert signed_in.status_code == 200 and "Welcome" in signed_in.text and "Sales overview" in signed_in.text
    stop_server(live_server)

    again = start_server(tmp_path / "data")
    try:
        assert "password" not in again.banner and "Installed" not in again.banner
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


def test_pack_install_export_and_migrate_commands(tmp_path):
    installed = loom("pack", "install", "crm", data_dir=tmp_path)
    assert installed.returncode == 0, installed.stderr
    assert "create object opportunity" in installed.stdout and "Installed crm 1.0.0 as metadata version 1" in installed.stdout
    again = loom("pack", "install", "crm", data_dir=tmp_path)
    assert again.returncode == 0 and "installed already: nothing to change" in again.stdout
    assert "Nothing to change" in loom("migrate", "plan", data_dir=tmp_path).stdout

    out = tmp_path / "export"
    exported = loom("pack", "export", "crm", "--out", str(out), data_dir=tmp_path)
    assert exported.returncode == 0, exported.stderr
    assert '"uid"' in (out / "objects" / "opportunity.json").read_text()
    assert loom("pack", "validate", str(out), data_dir=tmp_path).returncode == 0

    for args in (["pack", "install", str(tmp_path / "missing")], ["pack", "export", "nope", "--out", str(tmp_path / "x")],
                 ["pack", "install", "crm", "--confirm", "no-equals-sign"]):
        result = loom(*args, data_dir=tmp_path)
        assert result.returncode == 1 and "Traceback" not in result.stderr and "error:" in result.stderr, (args, result.stderr)


def test_the_api_serves_the_installed_pack_to_a_token(tmp_path):
    assert loom("user", "create", "rep", "--role", "user", "--password", "rep-password", data_dir=tmp_path).returncode == 0
    token = loom("token", "create", "rep", data_dir=tmp_path).stdout.strip()
    server = start_server(tmp_path)
    try:
        headers = {"Authorization": f"Bearer {token}"}
        leads = httpx.get(f"{server.url}/api/v1/lead", headers=headers)
        assert leads.status_code == 200 and len(leads.json()["data"]) > 0
        created = httpx.post(f"{server.url}/api/v1/lead", headers=headers,
                             json={"name": "王芳", "company": "杭州云帆", "phone": "177 0000 4242", "source": "trade_show", "status": "new"})
        assert created.status_code == 201, created.text
        assert created.json()["phone"] == "+8617700004242"
        wrong = httpx.post(f"{server.url}/api/v1/lead", headers=headers, json={"name": "x", "source": "fax", "status": "new"})
        assert wrong.status_code == 422 and wrong.json()["errors"][0]["field"] == "source"
        openapi = httpx.get(f"{server.url}/openapi.json").json()
        assert "/api/v1/opportunity" in openapi["paths"]
    finally:
        stop_server(server)
