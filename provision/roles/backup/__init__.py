"""`invoke backup`: a host's packages, accounts, settings and yank list copied into a folder
on this machine, with a manifest of sha256 hashes; incremental (see `BackupFiles`)."""

from __future__ import annotations

from pathlib import Path

from .. import RECORD_DIR, Role, record_path
from .steps import BackupFiles


class BackupRole(Role):
    needs_deploy = True
    changes_hosts = False

    def __init__(self, dest: str | None = None, per_host: bool = False):
        # dest: the folder (one host), or the folder of the hosts' folders (per_host)
        self.dest, self.per_host = dest, per_host
        self.fetched: dict[str, int] = {}     # host -> files sent (tests count them)

    def folder(self, target) -> Path:
        if not self.dest:
            return Path("backups") / target.name
        return Path(self.dest) / target.name if self.per_host else Path(self.dest)

    def phases(self, target):
        v = self.vars(target)
        service = v["pypiserver_service"]

        def sent(n):
            self.fetched[target.name] = n
        return [[BackupFiles(self.folder(target), v["pypiserver_packages_dir"], v["pypiserver_htpasswd"],
                             record_path(service), f"{RECORD_DIR}/yanked-{service}.json", sent,
                             host=target.name)]]
