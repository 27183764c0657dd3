"""`invoke uninstall`: the service removed cleanly, its data kept (unless --purge).

Removed: the services and units (pypiserver, the static index's builder and its path
unit, the pull-through cache's origin), our nginx site (nginx itself stays: it may serve other sites), the firewall ports
this tool opened, the venv and what lives beside it (wheels, the builder), the static index
(derived: a deploy rebuilds it), the pull-through cache (refetched on demand), the record of the last deploy. Kept: the packages, the
accounts (htpasswd), the TLS files, the yank list, backups; --purge removes those too. The
system user, nginx and SELinux rules stay. Every step is idempotent: a second run is all ok.
"""

from __future__ import annotations

import posixpath

from .. import RECORD_DIR, UNIT_DIR, Role, record_path
from ...steps import Absent, FirewallPort, ServiceOff
from ..pypiserver import NGINX_RELOAD, front
from ..pypiserver.cache import unit_name as cache_unit
from .steps import FolderIfEmpty


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
            ServiceOff(f"{cache_unit(service)}.service"),
            Absent(f"{UNIT_DIR}/{service}-index.path", on_change=reload_units),
            Absent(f"{UNIT_DIR}/{cache_unit(service)}.service", on_change=reload_units),
            Absent(f"{UNIT_DIR}/{service}-index.service", on_change=reload_units),
            Absent(f"{UNIT_DIR}/{service}.service",
                   on_change=reload_units + (f"systemctl reset-failed {service}.service 2>/dev/null || :",)),
            front.SiteRemoved(f"/etc/nginx/conf.d/{service}.conf", NGINX_RELOAD),
            FirewallPort([], record=f"{RECORD_DIR}/firewall-port-{service}"),
        ]
        # the venv and what the deploy put beside it, one by one; their folder only if
        # nothing else is left in it (a venv in /opt/venvs/pypiserver leaves /opt/venvs alone)
        venv = v["pypiserver_venv"]
        venv_home = posixpath.dirname(venv)
        ours = [venv, venv + ".next", venv + ".prev", venv + ".failed",
                f"{venv_home}/indexer.py", f"{venv_home}/pullthrough.py", f"{venv_home}/requirements.txt"]
        steps += [Absent(p, tree=not p.endswith((".py", ".txt"))) for p in ours]
        steps.append(Absent(v["pypiserver_wheels_dir"], tree=True))
        steps.append(FolderIfEmpty(venv_home, {posixpath.basename(p) for p in ours + [v["pypiserver_wheels_dir"]]
                                               if posixpath.dirname(p) == venv_home}))
        steps.append(Absent(v["pypiserver_index_dir"], tree=True))
        # the cache: nginx's two trees in it, then the folder if nothing else is there
        cache_dir = v["pypi_cache_dir"]
        steps += [Absent(f"{cache_dir}/{sub}", tree=True) for sub in ("pages", "files", "private")]
        steps += [Absent(f"{cache_dir}/upstream"), FolderIfEmpty(cache_dir, {"pages", "files", "private", "upstream"})]
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
            Absent(f"{RECORD_DIR}/restart-pending-{cache_unit(service)}"),
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
