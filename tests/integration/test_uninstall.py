"""`invoke uninstall` on a real host: the service goes, the data stays (a redeploy serves it
again), --purge removes it, a second run is all ok."""

from __future__ import annotations

import pytest

from tests.external import write_inventory
from tests.helpers import http_get, invoke, make_wheel, recap, sh

pytestmark = pytest.mark.integration


def there(host, *paths) -> dict[str, bool]:
    out = sh(host, "; ".join(f"test -e {p} && echo yes || echo no" for p in paths)).stdout.split()
    return dict(zip(paths, (w == "yes" for w in out)))


def test_uninstall_keeps_the_data_and_purge_removes_it(host, tmp_path):
    inv = str(write_inventory([host], tmp_path / "inventory.yml", known_hosts=str(tmp_path / "known_hosts")))
    args = ["--inventory", inv, "-H", host.name]
    assert invoke("deploy", *args).returncode == 0
    assert invoke("add-user", "keeper", "--password-stdin", *args, input="Keep-me-123\n").returncode == 0
    wheel = make_wheel(tmp_path, "kept-pkg", "1.0")
    sh(host, f"cat > /srv/pypi/packages/{wheel.name} && chown pypi: /srv/pypi/packages/{wheel.name}",
       input=wheel.read_bytes())

    check = invoke("uninstall", "--check", *args)
    assert check.returncode == 0 and sh(host, "systemctl is-active pypiserver").stdout.strip() == "active"
    gone = invoke("uninstall", *args)
    assert gone.returncode == 0, gone.stdout + gone.stderr
    assert "kept: the packages (/srv/pypi/packages)" in gone.stdout
    state = there(host, "/etc/systemd/system/pypiserver.service", "/etc/systemd/system/pypiserver-index.path",
                  "/etc/nginx/conf.d/pypiserver.conf", "/opt/pypiserver", "/srv/pypi/index",
                  "/var/lib/provision/pypiserver.json",
                  f"/srv/pypi/packages/{wheel.name}", "/etc/pypiserver/htpasswd", "/etc/pypiserver/tls/server.key")
    assert [p for p, here in state.items() if here] == [
        f"/srv/pypi/packages/{wheel.name}", "/etc/pypiserver/htpasswd", "/etc/pypiserver/tls/server.key"], state
    assert "8000" not in sh(host, "firewall-cmd --list-ports; firewall-cmd --permanent --list-ports").stdout
    assert ":8000 " not in sh(host, "ss -ltnH").stdout
    assert sh(host, "systemctl is-active nginx").stdout.strip() == "active"      # nginx itself stays
    again = invoke("uninstall", *args)
    assert recap(again.stdout, host.name)[1:] == (0, 0), again.stdout
    # the tasks that need a deployed server now say so
    assert "pypiserver is not deployed" in invoke("list-users", *args).stderr

    back = invoke("deploy", *args)
    assert back.returncode == 0, back.stdout + back.stderr
    status, _, body = http_get(host.address, 8000, "/simple/kept-pkg/")
    assert status == 200 and wheel.name in body
    assert invoke("list-users", *args).stdout.split() == ["keeper"]

    refused = invoke("uninstall", "--purge", *args)
    assert refused.returncode == 2 and "confirm with --yes" in refused.stderr
    purged = invoke("uninstall", "--purge", "--yes", *args)
    assert purged.returncode == 0, purged.stdout + purged.stderr
    assert not any(there(host, "/srv/pypi/packages", "/etc/pypiserver", "/opt/pypiserver",
                         "/var/lib/provision/yanked-pypiserver.json").values())
    again = invoke("uninstall", "--purge", "--yes", *args)
    assert recap(again.stdout, host.name)[1:] == (0, 0), again.stdout
