"""`invoke uninstall`: the service removed cleanly, its data kept (unless --purge).

Removed: the services and units (pypiserver, the static index's builder and its path
unit), our nginx site (nginx itself stays: it may serve other sites), the firewall ports
this tool opened, the venv and what lives beside it (wheels, the builder), the static index
(derived: a deploy rebuilds it), the record of the last deploy. Kept: the packages, the
accounts (htpasswd), the TLS files, the yank list, backups; --purge removes those too. The
system user, nginx and SELinux rules stay. Every step is idempotent: a second run is all ok.
"""

from __future__ import annotations

import posixpath

from .. import RECORD_DIR, UNIT_DIR, Role, record_path
from ...steps import Absent, FirewallPort, ServiceOff
from ..pypiserver import NGINX_RELOAD, front


def _inside(a: str, b: str) -> bool:
    return a == b or a.startswith(b.rstrip("/") + "/")


class UninstallRole(Role):

    def __init__(self, purge: bool = False):
        self.purge = purge

    def phases(self, target):
        v = self.vars(target)
        service = v["pypiserver_service"]
        reload_units = ("systemctl daemon-reload",)
        steps = [
            ServiceOff(f"{service}-index.path"),
            ServiceOff(f"{service}-index.service"),
            ServiceOff(service),
            Absent(f"{UNIT_DIR}/{service}-index.path", on_change=reload_units),
            Absent(f"{UNIT_DIR}/{service}-index.service", on_change=reload_units),
            Absent(f"{UNIT_DIR}/{service}.service",
                   on_change=reload_units + (f"systemctl reset-failed {service}.service 2>/dev/null || :",)),
            front.SiteRemoved(f"/etc/nginx/conf.d/{service}.conf", NGINX_RELOAD),
            FirewallPort([], record=f"{RECORD_DIR}/firewall-port-{service}"),
        ]
        kept = [v["pypiserver_packages_dir"], v["pypiserver_config_dir"], v["pypiserver_htpasswd"]]
        venv_home = posixpath.dirname(v["pypiserver_venv"])
        if not any(_inside(k, venv_home) for k in kept + [v["pypiserver_index_dir"]]):
            # the folder the deploy made for the venv, the builder and requirements.txt
            steps.append(Absent(venv_home, tree=True))
        else:
            steps += [Absent(v["pypiserver_venv"], tree=True), Absent(f"{venv_home}/indexer.py"),
                      Absent(f"{venv_home}/requirements.txt")]
        if not _inside(v["pypiserver_wheels_dir"], venv_home):
            steps.append(Absent(v["pypiserver_wheels_dir"], tree=True))
        steps.append(Absent(v["pypiserver_index_dir"], tree=True))
        if self.purge:
            steps += [Absent(v["pypiserver_packages_dir"], tree=True),
                      Absent(v["pypiserver_htpasswd"]),
                      Absent(v["pypiserver_config_dir"], tree=True),
                      Absent(f"{RECORD_DIR}/yanked-{service}.json"),
                      Absent("/var/lib/provision/mirror-manifest")]
        steps += [
            Absent(f"{RECORD_DIR}/restart-pending-{service}"),
            Absent(f"{RECORD_DIR}/restart-pending-nginx"),
            Absent(f"{RECORD_DIR}/restart-pending-{service}-index"),
            Absent(f"{RECORD_DIR}/firewall-port-{service}"),
            # last: the host is no longer deployed
            Absent(record_path(service)),
        ]
        return [steps]

    def summary(self, target, facts) -> list[str]:
        if self.purge:
            return ["purged: packages, accounts and TLS files removed too (the system user, nginx and "
                    "SELinux rules stay)"]
        v = self.vars(target)
        return [f"kept: the packages ({v['pypiserver_packages_dir']}), the accounts "
                f"({v['pypiserver_htpasswd']}), the TLS files and the yank list; a deploy serves them "
                "again; --purge removes them"]
