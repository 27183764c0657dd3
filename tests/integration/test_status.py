"""`invoke status` on a real host: healthy, then with the service stopped; the table and
the JSON; a bare host is refused."""

from __future__ import annotations

import json

import pytest

from tests.external import deployed_inventory
from tests.helpers import invoke, make_wheel, sh

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def deployed(host, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("status")
    inv = deployed_inventory([host], tmp / "inventory.yml", known_hosts=str(tmp / "known_hosts"))
    assert invoke("add-user", "alice", "--password-stdin", "--inventory", str(inv), "-H", host.name,
                  input="Status-pw-1\n").returncode == 0
    for version in ("1.0", "1.1"):
        wheel = make_wheel(tmp, "status-pkg", version)
        sh(host, f"cat > /srv/pypi/packages/{wheel.name} && chown pypi: /srv/pypi/packages/{wheel.name}",
           input=wheel.read_bytes())
    return host, str(inv)


def test_a_healthy_host_as_a_table_and_as_json(deployed):
    host, inv = deployed
    res = invoke("status", "--inventory", inv, "-H", host.name)
    assert res.returncode == 0, res.stdout + res.stderr
    head, row = res.stdout.splitlines()
    assert head.startswith("HOST") and row.split()[:3] == [host.name, "ok", "active"]
    assert f"{host.name} ok=2 changed=0 failed=0" in res.stderr          # the report: stderr
    out = invoke("status", "--json", "--inventory", inv, "-H", host.name)
    assert out.returncode == 0
    (d,) = json.loads(out.stdout)
    assert d["healthy"] and d["service"]["state"] == "active" and d["service"]["uptime_seconds"] >= 0
    assert d["packages"]["files"] == 2 and d["packages"]["projects"] == 1 and d["accounts"] == 1
    assert d["versions"]["pypiserver"] and d["versions"]["python"] == "3.11" and d["versions"]["nginx"]
    assert 390 <= d["tls"]["certificate_days_left"] <= 397
    assert d["index"]["static"] and d["index"]["lag_seconds"] is not None
    assert d["firewall"] == {"tool": "firewalld", "ports": {"8000": "open"}}
    assert d["url"] == f"https://{host.address}:8000/simple/"
    assert d["disk"]["free_bytes"] > 0


def test_a_stopped_service_is_unhealthy(deployed):
    host, inv = deployed
    sh(host, "systemctl stop pypiserver")
    try:
        res = invoke("status", "--inventory", inv, "-H", host.name)
        assert res.returncode == 1, res.stdout + res.stderr
        assert "UNHEALTHY" in res.stdout and f"{host.name}: pypiserver is inactive" in res.stdout
        (d,) = json.loads(invoke("status", "--json", "--inventory", inv, "-H", host.name).stdout)
        assert d["healthy"] is False and d["service"]["uptime_seconds"] is None
    finally:
        sh(host, "systemctl start pypiserver")


def test_logs_show_the_journal_and_nginx_and_follow(deployed):
    import subprocess
    import sys
    import time

    from tests.helpers import REPO, http_get

    host, inv = deployed
    http_get(host.address, 8000, "/simple/status-pkg/")
    res = invoke("logs", "--inventory", inv, "-H", host.name)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "pypi-server" in res.stdout or "pypiserver" in res.stdout
    assert "-- nginx: /var/log/nginx/pypiserver.access.log" in res.stdout and "GET /simple/status-pkg/" in res.stdout
    since = invoke("logs", "--since", "1 hour ago", "--inventory", inv, "-H", host.name)
    assert since.returncode == 0 and "GET /simple/status-pkg/" in since.stdout
    bad = invoke("logs", "--since", "$(id)", "--inventory", inv, "-H", host.name)
    assert bad.returncode == 2 and "is not a time" in bad.stderr
    follow = subprocess.Popen([sys.executable, "-m", "invoke", "logs", "--follow", "--inventory", inv, "-H", host.name],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(3)
        http_get(host.address, 8000, "/simple/followed-name/")
        deadline = time.monotonic() + 20
        seen = ""
        while time.monotonic() < deadline and "followed-name" not in seen:
            seen += follow.stdout.readline()
        assert "nginx: " in seen and "GET /simple/followed-name/" in seen, seen[-2000:]
    finally:
        follow.terminate()
        follow.wait(timeout=20)
