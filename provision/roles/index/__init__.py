"""The static index's own tasks: `yank` / `unyank` a release (PEP 592) and `reindex`.

The yank list lives on the host (``/var/lib/provision/yanked-<service>.json``, root's,
read by the index builder), so every rebuild keeps it. A change is written atomically and
the index is rebuilt before the step ends: when the task returns, the pages say it.
"""

from __future__ import annotations

from .. import RECORD_DIR, Role
from ...validate import static_index_on
from .steps import Reindex, YankEntry


def yank_list_path(service: str) -> str:
    return f"{RECORD_DIR}/yanked-{service}.json"


class IndexRole(Role):
    needs_deploy = True

    def __init__(self, action: str, project: str = "", version: str = "", reason: str = ""):
        self.action, self.project, self.version, self.reason = action, project, version, reason

    def phases(self, target):
        v = self.vars(target)
        service = v["pypiserver_service"]
        unit = f"{service}-index.service"
        enabled = static_index_on(v)
        if self.action == "reindex":
            return [[Reindex(v["pypiserver_index_dir"], unit, enabled)]]
        return [[YankEntry(yank_list_path(service), v["pypiserver_packages_dir"], unit, self.project,
                           self.version, self.reason if self.action == "yank" else None, enabled)]]
