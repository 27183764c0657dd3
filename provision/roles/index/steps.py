"""The index role's steps: one release's entry in the yank list, a full rebuild."""

from __future__ import annotations

import json

from ...errors import StepError
from ...facts import DirListing, FileState
from ...hostside.indexer import normalize, parse_filename
from ...steps.base import Command, Plan, Step, WriteFile, q

NOT_STATIC = ("the static index is off on this host (static_index: false, tls: false, or a "
              "password for reading): pypiserver's own pages cannot show it")


class YankEntry(Step):
    """A release yanked (with its reason) or not, in the host's yank list (PEP 592).

    The release must have files on the host (a typo yanks nothing silently otherwise);
    the version is matched as the file names spell it. The list is rewritten atomically,
    refusing if it changed since it was read, then the index is rebuilt at once."""

    def __init__(self, path: str, packages_dir: str, unit: str, project: str, version: str,
                 reason: str | None, enabled: bool = True):
        self.path, self.packages_dir, self.unit = path, packages_dir, unit
        self.project, self.version, self.reason, self.enabled = normalize(project), version, reason, enabled
        state = "yanked" if reason is not None else "not yanked"
        self.name = f"Ensure {self.project} {version} is {state} in the index."

    def probes(self):
        return {"list": FileState(self.path, content=True), "files": DirListing(self.packages_dir)}

    def plan(self, facts, probed):
        if not self.enabled:
            raise StepError(f"cannot yank: {NOT_STATIC}")
        have = probed["list"]
        if have is None:
            raise StepError(f"{self.path} not found: deploy again (invoke deploy) to create it")
        try:
            text = have.content.decode() if have.content.strip() else "{}"
            yanked = json.loads(text)
            if not isinstance(yanked, dict) or not all(isinstance(r, dict) for r in yanked.values()):
                raise ValueError
        except ValueError:
            raise StepError(f"{self.path} is not a yank list (JSON {{project: {{version: reason}}}}): "
                            f"fix or remove it") from None
        versions = sorted({p[1] for p in map(parse_filename, probed["files"]) if p and p[0] == self.project})
        version = next((v for v in versions if v == self.version), None) or \
            next((v for v in versions if v.lower() == self.version.lower()), None)
        releases = yanked.get(self.project, {})
        if version is None and self.reason is not None:
            have_versions = ", ".join(versions[-8:]) if versions else "none"
            raise StepError(f"{self.project} {self.version}: no such release on the host "
                            f"(versions: {have_versions}); nothing yanked")
        version = version or self.version
        if self.reason is None:
            if version not in releases:
                return Plan(note="not yanked")
            del releases[version]
            note = "unyank"
        else:
            if releases.get(version) == self.reason:
                return Plan(note="yanked already" + (f": {self.reason}" if self.reason else ""))
            note = ("change the reason" if version in releases else "yank") + \
                (f": {self.reason}" if self.reason else "")
            releases[version] = self.reason
        if releases:
            yanked[self.project] = releases
        else:
            yanked.pop(self.project, None)
        new = (json.dumps(yanked, indent=2, sort_keys=True) + "\n").encode()
        return Plan([WriteFile(self.path, new, have.stat.owner, have.stat.group, have.stat.mode,
                               old=have.content, expect_sha256=have.sha256),
                     # the pages say it when the task returns (the path unit would too, a
                     # moment later)
                     Command(f"systemctl start {q(self.unit)}")], note)


class Reindex(Step):
    """Render every page and metadata file again (the state file is what makes a run
    incremental: without it, every package file is read)."""

    def __init__(self, index_dir: str, unit: str, enabled: bool = True):
        self.index_dir, self.unit, self.enabled = index_dir, unit, enabled
        self.name = f"Rebuild the static index in {index_dir}."

    def plan(self, facts, probed):
        if not self.enabled:
            raise StepError(f"cannot rebuild: {NOT_STATIC}")
        return Plan([Command(f"rm -f {q(self.index_dir + '/state.json')}"),
                     Command(f"systemctl start {q(self.unit)}")], "every project, from the files")
