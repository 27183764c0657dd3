"""`invoke restore`: a backup folder onto a host, after a deploy where there is none.

The folder is verified against its manifest before anything is touched (tasks.py); the
role is the deploy's, taking the backup's settings on a fresh host (`seed_record`), with
one more phase that sends what the host lacks and checks it there."""

from __future__ import annotations

from pathlib import Path

from .. import RECORD_DIR
from ..pypiserver import PypiserverRole
from .steps import RestoreAccounts, RestorePackages, RestoreYanked


class RestoreRole(PypiserverRole):
    """A deploy (with the backup's settings on a fresh host), then one more phase that sends
    what the host lacks: one run, one gather when the host is deployed already."""

    def __init__(self, folder: Path, manifest: dict[str, str], overwrite: bool = False,
                 seed: dict | None = None, seed_source: str = ""):
        super().__init__()
        self.folder, self.manifest, self.overwrite = folder, manifest, overwrite
        self.seed_record, self.seed_source = seed or {}, seed_source

    def phases(self, target):
        v = self.vars(target)
        user = v["pypiserver_user"]
        return super().phases(target) + [[
            RestorePackages(self.folder, self.manifest, v["pypiserver_packages_dir"], user, self.overwrite),
            RestoreAccounts(self.folder, v["pypiserver_htpasswd"], user, self.overwrite),
            RestoreYanked(self.folder, f"{RECORD_DIR}/yanked-{v['pypiserver_service']}.json"),
        ]]
