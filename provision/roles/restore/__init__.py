"""`invoke restore`: a backup folder onto a host, after a deploy where there is none.

The folder is verified against its manifest before anything is touched (tasks.py); the
deploy before it takes the backup's settings on a fresh host (`seed_record`); this role
then sends what the host lacks and checks it there."""

from __future__ import annotations

from pathlib import Path

from .. import RECORD_DIR, Role
from .steps import RestoreAccounts, RestorePackages, RestoreYanked


class RestoreRole(Role):
    needs_deploy = True

    def __init__(self, folder: Path, manifest: dict[str, str], overwrite: bool = False):
        self.folder, self.manifest, self.overwrite = folder, manifest, overwrite

    def phases(self, target):
        v = self.vars(target)
        user = v["pypiserver_user"]
        return [[
            RestorePackages(self.folder, self.manifest, v["pypiserver_packages_dir"], user, self.overwrite),
            RestoreAccounts(self.folder, v["pypiserver_htpasswd"], user, self.overwrite),
            RestoreYanked(self.folder, f"{RECORD_DIR}/yanked-{v['pypiserver_service']}.json"),
        ]]
