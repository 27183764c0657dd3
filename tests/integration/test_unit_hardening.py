"""The sandboxed unit on a real host: `systemd-analyze security` rates it 3.0 or better, and
the index still does everything (waitress answers, uploads land world-readable, watchdog
sees files copied in), with no seccomp or permission error in the journal.

One fresh host, deployed the way test_deploy.py does it (a subprocess running `invoke
deploy` with an inventory from tests.external.write_inventory: offline, wheels shipped from
this machine). About 15 s on a local nspawn host.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest

from tests.external import write_inventory
from tests.helpers import ca_file, clean_env, http_get, index, invoke, make_wheel, sh

pytestmark = pytest.mark.integration

PORT = 8000
PASSWORD = "h4rdened-Upl0ad-pw"
PACKAGES = "/srv/pypi/packages"
MAX_EXPOSURE = 3.0


def systemd_version(host) -> int:
    return int(re.match(r"systemd (\d+)", sh(host, "systemctl --version").stdout)[1])


def listed(host, needle: str, path: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while True:
        status, _, body = http_get(host.address, PORT, path)
        assert status == 200, body
        if needle in body:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


@pytest.mark.integration
def test_hardened_unit_rates_well_and_still_serves_uploads(testhost, tmp_path):
    host = testhost
    inventory = write_inventory([host], tmp_path / "inventory.yml",
                                known_hosts=str(tmp_path / "known_hosts"))
    res = invoke("deploy", "--inventory", str(inventory), "--host", host.name)
    assert res.returncode == 0, res.stdout + res.stderr
    systemd = systemd_version(host)
    unit = sh(host, "cat /etc/systemd/system/pypiserver.service").stdout
    if systemd < 232:  # issue item 21: no no_new_privs on EL 7 (SELinux, systemd #3845)
        assert "NoNewPrivileges=" not in unit and "SystemCallFilter=" not in unit

    # the score (systemd-analyze security exists from systemd 240; measured on 252)
    if systemd >= 252:
        out = sh(host, "systemd-analyze security --no-pager pypiserver").stdout
        m = re.search(r"Overall exposure level for pypiserver\.service: (\d+\.\d+)", out)
        assert m, out
        assert float(m[1]) <= MAX_EXPOSURE, out

    # the process runs as sandboxed as the unit says
    pid = sh(host, "systemctl show -p MainPID --value pypiserver").stdout.strip()
    status = sh(host, f"cat /proc/{pid}/status").stdout
    assert re.search(r"^CapEff:\s+0+$", status, re.M), status
    if systemd >= 232:
        assert re.search(r"^NoNewPrivs:\s+1$", status, re.M), status
        assert re.search(r"^Seccomp:\s+2$", status, re.M), status
    else:
        assert re.search(r"^NoNewPrivs:\s+0$", status, re.M), status

    # waitress answers (behind nginx, on the loopback)
    code, headers, _ = http_get(host.address, PORT, "/")
    assert code == 200 and headers.get("Server", "").startswith("nginx")
    assert "Server: waitress" in sh(host, "curl -sS -D - -o /dev/null http://127.0.0.1:18000/").stdout

    # an upload (reads the root:pypi 0640 htpasswd, writes the packages dir) lands 0644
    res = invoke("add-user", "hardener", "--password-stdin", "--inventory", str(inventory),
                 "--host", host.name, input=PASSWORD + "\n")
    assert res.returncode == 0, res.stdout + res.stderr
    wheel = make_wheel(tmp_path, "hardened-pkg", "1.0")
    env = {**clean_env(), "TWINE_USERNAME": "hardener", "TWINE_PASSWORD": PASSWORD}
    up = subprocess.run([sys.executable, "-m", "twine", "upload", "--non-interactive",
                         "--disable-progress-bar", "--repository-url", index(host),
                         "--cert", ca_file(), str(wheel)],
                        capture_output=True, text=True, env=env, timeout=120)
    assert up.returncode == 0, up.stdout + up.stderr
    assert listed(host, wheel.name, "/simple/hardened-pkg/", 3.0)
    mode = sh(host, f"stat -c '%U:%G %a' {PACKAGES}/{wheel.name}").stdout.strip()
    assert mode == "pypi:pypi 644"  # UMask=0022: a web server in front can serve it

    # watchdog (ctypes + inotify, under MemoryDenyWriteExecute=) still sees a copied file
    assert listed(host, "hardened-pkg", "/simple/", 1.0)  # the cache is warm
    copied = make_wheel(tmp_path, "copied-hardened", "1.0")
    sh(host, f"cat > {PACKAGES}/{copied.name} && chown pypi:pypi {PACKAGES}/{copied.name}",
       input=copied.read_bytes())
    # (seconds, not the index's ~80 ms: this asks whether it is seen at all; a loaded CI
    # machine once took over 1 s)
    assert listed(host, "copied-hardened", "/simple/", 5.0)
    fds = sh(host, f"ls -l /proc/{pid}/fd").stdout
    assert "anon_inode:inotify" in fds, fds

    # nothing was killed or refused on the way
    state = sh(host, "systemctl show -p ActiveState -p NRestarts -p MainPID pypiserver").stdout
    assert "ActiveState=active" in state and "NRestarts=0" in state and f"MainPID={pid}" in state
    journal = sh(host, "journalctl -u pypiserver --no-pager -o cat").stdout
    for bad in ("SECCOMP", "status=31/SYS", "Permission denied", "Operation not permitted",
                "Traceback", "NAMESPACE"):
        assert bad not in journal, journal
