"""`invoke mirror`: a team's requirements, resolved here, cached on the servers.

Each host gets the files for this machine's Python and platform, its own Python and
glibc (so the server's own clients are served), and every --python/--platform asked for.
"""

from __future__ import annotations

from pathlib import Path

from ... import mirror, wheels
from ...errors import StepError
from ...report import plural
from .. import Role
from ..pypiserver import choose_python
from .steps import MirroredFiles


class MirrorRole(Role):
    needs_deploy = True

    def __init__(self, requirements: Path, pythons: list[str], platforms: list[str],
                 overwrite: bool = False, prune: bool = False, max_age: float = 12 * 3600):
        self.requirements, self.pythons, self.platforms = requirements, pythons, platforms
        self.overwrite, self.prune = overwrite, prune
        self.max_age = max_age
        self.downloaded = 0
        self.downloaded_bytes = 0

    def targets(self, facts) -> list[mirror.DownloadTarget]:
        found = [mirror.DownloadTarget()]
        if facts.glibc and facts.arch:
            chosen = choose_python(facts, predict=True)
            if chosen and not mirror.native_covers(chosen[0], facts.glibc, facts.arch):
                found.append(mirror.DownloadTarget(chosen[0], tuple(wheels.platform_tags(facts.glibc, facts.arch))))
        for py in self.pythons or ([None] if self.platforms else []):
            found.append(mirror.DownloadTarget(py, tuple(self.platforms)))
        unique: list[mirror.DownloadTarget] = []
        for t in found:
            if t not in unique:
                unique.append(t)
        return unique

    def files(self, facts) -> list[Path]:
        out: dict[str, Path] = {}
        try:
            for target in self.targets(facts):
                got = mirror.resolve(self.requirements, target, max_age=self.max_age)
                self.downloaded += got.downloaded
                self.downloaded_bytes += got.downloaded_bytes
                out.update((f.name, f) for f in got.files)
        except (mirror.MirrorError, ValueError) as exc:
            raise StepError(str(exc)) from exc
        return [out[n] for n in sorted(out)]

    def phases(self, target):
        v = self.vars(target)
        return [[MirroredFiles(v["pypiserver_packages_dir"], self.files, v["pypiserver_user"],
                               self.overwrite, self.prune)]]

    def summary(self, target, facts) -> list[str]:
        return [f"downloaded here: {plural(self.downloaded, 'file')}, "
                f"{self.downloaded_bytes / 1e6:.1f} MB (all hosts of this run)"]
