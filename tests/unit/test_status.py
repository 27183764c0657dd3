"""`invoke status`: its facts against real commands here, the health rules, the table and
the JSON's stable shape."""

from __future__ import annotations

import json
import os
import time

import pytest

from provision.facts import UnitInfo
from provision.facts.firewall import UfwRules
from provision.facts.python import VenvInfo
from provision.inventory import Target
from provision.roles.status import StatusRole, json_rows, table
from provision.facts import DirFiles as PackageFiles
from provision.roles.status.steps import Disk, MTime, NginxVersion, Uptime
from provision.validate import role_vars
from tests.unit.conftest import ask, distro_facts


def test_facts_read_real_files_and_commands(tmp_path):
    (tmp_path / "Demo_Pkg-1.0-py3-none-any.whl").write_bytes(b"x" * 10)
    (tmp_path / "demo-pkg-1.1.tar.gz").write_bytes(b"y" * 5)
    (tmp_path / "other-2.0.zip").write_bytes(b"z")
    (tmp_path / ".hidden").write_bytes(b"h")
    files = ask(PackageFiles(str(tmp_path)))
    assert sorted((n, s) for n, s, _ in files) == [("Demo_Pkg-1.0-py3-none-any.whl", 10),
                                                   ("demo-pkg-1.1.tar.gz", 5), ("other-2.0.zip", 1)]
    assert all(abs(m - time.time()) < 60 for _, _, m in files)
    assert ask(PackageFiles(str(tmp_path / "none"))) == []
    size, free = ask(Disk(str(tmp_path)))
    assert 0 < free <= size
    assert ask(Disk(str(tmp_path / "none"))) is None
    assert ask(MTime(str(tmp_path / "other-2.0.zip"))) == int(os.stat(tmp_path / "other-2.0.zip").st_mtime)
    assert ask(MTime(str(tmp_path / "none"))) is None
    assert NginxVersion().parse("nginx version: nginx/1.22.1", 0) == "1.22.1"
    assert NginxVersion().parse("sh: nginx: not found", 127) is None
    up = Uptime("x").parse("ActiveEnterTimestampMonotonic=5000000\nActiveState=active\nNow=65.25", 0)
    assert up == pytest.approx(60.25)
    assert Uptime("x").parse("ActiveEnterTimestampMonotonic=0\nActiveState=failed\nNow=65.25", 0) is None


def probed(**over):
    from provision import tls

    ca = tls.ensure_ca()
    pair = tls.issue(ca, ["192.0.2.10"])
    base = {
        "service": UnitInfo("loaded", "active", "enabled", 977), "uptime": 7500.0,
        "venv": VenvInfo(True, "3.11", True, True, {"pypiserver": "2.4.2"}),
        "files": [("demo_pkg-1.0-py3-none-any.whl", 1000, 1_700_000_000.0), ("demo-pkg-1.1.tar.gz", 500, 1_700_000_100.0)],
        "accounts": ["alice", "bob"], "disk": (100 * 10**9, 40 * 10**9), "ufw": UfwRules(False, frozenset()),
        "port8000": True, "nginx": UnitInfo("loaded", "active", "enabled", 12), "nginx_version": "1.22.1",
        "cert": pair.cert_pem.decode(), "index": 1_700_000_100,
    }
    return base | over


def summary(firewalld=True, **over):
    target = Target(name="pypi1", ssh_host="192.0.2.10", vars={})
    v = role_vars(target)
    facts = distro_facts("rocky-9")
    facts.firewalld = firewalld
    return StatusRole.summarize("pypi1", v, "https://192.0.2.10:8000/simple/", [8000], facts, probed(**over))


def test_a_healthy_host():
    d = summary()
    assert d["healthy"] and d["problems"] == []
    assert d["packages"] == {"files": 2, "bytes": 1500, "projects": 1, "last_upload": "2023-11-14T22:15:00Z"}
    assert d["versions"] == {"pypiserver": "2.4.2", "python": "3.11", "nginx": "1.22.1"}
    assert d["disk"]["used_percent"] == 60.0 and d["accounts"] == 2
    assert 390 <= d["tls"]["certificate_days_left"] <= 397
    assert d["index"] == {"static": True, "lag_seconds": 0}
    assert d["firewall"] == {"tool": "firewalld", "ports": {"8000": "open"}}
    assert summary(port8000=False)["firewall"]["ports"] == {"8000": "closed"}
    assert summary(firewalld=False, ufw=UfwRules(True, frozenset({"8000/tcp"})))["firewall"] == \
        {"tool": "ufw", "ports": {"8000": "open"}}
    assert summary(firewalld=False)["firewall"] == {"tool": None, "ports": {"8000": "no firewall"}}


@pytest.mark.parametrize("over,problem", [
    ({"service": UnitInfo("loaded", "failed", "enabled", 0), "uptime": None}, "pypiserver is failed"),
    ({"nginx": UnitInfo("loaded", "inactive", "enabled", 0)}, "nginx is inactive"),
    ({"disk": (100, 9)}, "disk 91 % full"),
    ({"cert": ""}, "no readable certificate"),
    ({"index": None}, "the static index was never built"),
])
def test_what_makes_a_host_unhealthy(over, problem):
    d = summary(**over)
    assert not d["healthy"] and d["problems"] == [problem]


def test_an_expiring_certificate(monkeypatch):
    from provision import tls

    monkeypatch.setattr(tls, "days_left", lambda pem: 13)
    assert summary()["problems"] == ["certificate expires in 13 days"]


def test_index_lag_and_the_table_and_json():
    d = summary(index=1_700_000_040)
    assert d["index"]["lag_seconds"] == 60
    text = table([d, summary(service=UnitInfo("loaded", "failed", "enabled", 0), uptime=None)])
    head, first, second, problem = text.splitlines()
    assert head.split()[:3] == ["HOST", "HEALTH", "SERVICE"]
    assert "pypi1" in first and " ok " in first and "2h 5m" in first and "2.4.2/py3.11/nginx 1.22.1" in first
    assert "UNHEALTHY" in second and problem == "pypi1: pypiserver is failed"
    rows = json.loads(json.dumps(json_rows([d])))
    assert set(rows[0]) == {"host", "healthy", "problems", "service", "versions", "url", "tls", "packages",
                            "accounts", "disk", "index", "firewall", "cache"}


def test_cache_facts_read_real_files(tmp_path):
    """The cache's facts, their commands run here on files shaped as nginx writes them."""
    import subprocess

    from provision.roles.status.steps import CacheLog, CacheUsage

    files = tmp_path / "files"
    for i, (name, size) in enumerate([("alpha", 100), ("alpha", 50), ("beta-two", 1000)]):
        d = files / str(i) / "ab"
        d.mkdir(parents=True)
        (d / f"hash{i}").write_bytes(b"\x05\x00binary header\x00\nKEY: /pypi-cache/%s/f%d.whl\nHTTP/1.1 200 OK\n"
                                     % (name.encode(), i) + b"x" * size)
    (files / "nothing").mkdir()

    def run(fact):
        res = subprocess.run(["sh", "-c", fact.command()], capture_output=True, text=True)
        return fact.parse(res.stdout, res.returncode)

    usage = run(CacheUsage(str(files)))
    assert usage["files"] == 3 and usage["projects"] == 2
    assert usage["bytes"] == sum(p.stat().st_size for p in files.rglob("hash*"))
    assert run(CacheUsage(str(tmp_path / "none"))) is None
    log = tmp_path / "cache.log"
    log.write_text("2026-12-04T10:00:00+00:00 MISS 200 10 /pypi-cache/a/a.whl\n"
                   "2026-12-04T10:00:01+00:00 HIT 200 10 /pypi-cache/a/a.whl\n"
                   "2026-12-04T10:00:02+00:00 STALE 200 10 /simple/a/\n"
                   "2026-12-04T10:00:03+00:00 HIT 200 10 /pypi-cache/a/a.whl\n")
    assert run(CacheLog(str(log))) == {"MISS": 1, "HIT": 2, "STALE": 1}
    assert run(CacheLog(str(tmp_path / "none.log"))) == {}
