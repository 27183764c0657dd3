"""The restore role's steps and fact: packages, accounts and yank list from a verified
backup folder onto a host; nothing the host has is replaced without --overwrite."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ... import htpasswd
from ...errors import StepError
from ...facts import Fact, FileState
from ...report import plural
from ...steps.base import Command, Plan, Step, Upload, WriteFile, q


@dataclass(frozen=True)
class FileHashes(Fact):
    """{name: sha256} of those of `names` a directory holds."""

    path: str
    names: tuple[str, ...]

    def command(self):
        listed = " ".join(q(n) for n in self.names)
        return (f"cd {q(self.path)} 2>/dev/null && for f in {listed}; do "
                f"[ -f \"$f\" ] && sha256sum -- \"$f\"; done; :")

    def parse(self, text, rc) -> dict[str, str]:
        out = {}
        for line in text.splitlines():
            sha, _, name = line.partition("  ")
            if len(sha) == 64 and name:
                out[name] = sha
        return out


class RestorePackages(Step):
    """The backup's distribution files in the packages directory: missing ones sent (one
    tar stream, each by rename), then every sent file's sha256 checked on the host; a file
    the host has with other content is refused unless `overwrite`."""

    def __init__(self, folder: Path, manifest: dict[str, str], packages_dir: str, owner: str,
                 overwrite: bool = False):
        self.folder, self.packages_dir, self.owner, self.overwrite = folder, packages_dir, owner, overwrite
        self.files = {n.split("/", 1)[1]: sha for n, sha in manifest.items() if n.startswith("packages/")}
        self.name = f"Ensure the backup's {plural(len(self.files), 'distribution file')} are in {packages_dir}."

    def probes(self):
        return {"have": FileHashes(self.packages_dir, tuple(sorted(self.files)))}

    def plan(self, facts, probed):
        have = probed["have"]
        differ = sorted(n for n, sha in self.files.items() if n in have and have[n] != sha)
        if differ and not self.overwrite:
            shown = ", ".join(differ[:5]) + (f" and {len(differ) - 5} more" if len(differ) > 5 else "")
            raise StepError(f"{plural(len(differ), 'file')} on the host differ from the backup's: {shown}; "
                            f"nothing was replaced (--overwrite replaces them)")
        send = sorted(n for n in self.files if n not in have) + differ
        if not send:
            return Plan(note=f"all {len(self.files)} there, same sha256")
        check = "".join(f"{self.files[n]}  {n}\n" for n in send)
        verify = (f"cd {q(self.packages_dir)} && sha256sum -c --quiet <<'__PROVISION_SUMS__'\n"
                  f"{check}__PROVISION_SUMS__")
        note = f"send {plural(len(send), 'file')}" + (f" ({len(differ)} replaced)" if differ else "") + \
            f"; {len(self.files) - len(send)} there already; sha256 checked on the host"
        return Plan([Upload([self.folder / "packages" / n for n in send], self.packages_dir, self.owner,
                            self.owner, 0o644), Command(verify)], note)


class RestoreAccounts(Step):
    """The backup's accounts in the host's htpasswd (bcrypt hashes: the old passwords work).
    An account the host has with another password keeps it unless `overwrite`."""

    def __init__(self, folder: Path, path: str, group: str, overwrite: bool = False):
        self.folder, self.path, self.group, self.overwrite = folder, path, group, overwrite
        self.name = f"Ensure the backup's accounts are in {path}."

    def probes(self):
        return {"file": FileState(self.path, content=True)}

    def plan(self, facts, probed):
        try:
            theirs = htpasswd.parse((self.folder / "htpasswd").read_text())
        except OSError:
            return Plan(note="no accounts in the backup")
        have = probed["file"]
        ours = htpasswd.parse(have.content.decode(errors="replace")) if have else {}
        added = [u for u in theirs if u not in ours]
        differ = [u for u in theirs if u in ours and ours[u] != theirs[u]]
        merged = dict(ours)
        for u in added + (differ if self.overwrite else []):
            merged[u] = theirs[u]
        if merged == ours:
            note = f"all {len(theirs)} there"
            if differ:
                note += f"; {plural(len(differ), 'account')} with another password here kept (--overwrite replaces)"
            return Plan(note=note)
        new = htpasswd.render(merged).encode()
        note = f"add {', '.join(added)}" if added else ""
        if differ and self.overwrite:
            note += ("; " if note else "") + f"replace {', '.join(differ)}"
        owner, group, mode = (have.stat.owner, have.stat.group, have.stat.mode) if have else ("root", self.group, 0o640)
        return Plan([WriteFile(self.path, new, owner, group, mode, old=have.content if have else b"",
                               secret=True, expect_sha256=have.sha256 if have else None)], note)


class RestoreYanked(Step):
    """The backup's yanked releases added to the host's yank list (the host's own entries
    stay); the path unit then rebuilds the index."""

    def __init__(self, folder: Path, path: str):
        self.folder, self.path = folder, path
        self.name = f"Ensure the backup's yanked releases are in {path}."

    def probes(self):
        return {"file": FileState(self.path, content=True)}

    def plan(self, facts, probed):
        def load(data: bytes) -> dict:
            try:
                got = json.loads(data.decode() or "{}")
                return got if isinstance(got, dict) else {}
            except ValueError:
                return {}
        try:
            theirs = load((self.folder / "yanked.json").read_bytes())
        except OSError:
            theirs = {}
        have = probed["file"]
        ours = load(have.content) if have else {}
        merged = {p: dict(v) for p, v in ours.items() if isinstance(v, dict)}
        for project, releases in theirs.items():
            if isinstance(releases, dict):
                for version, reason in releases.items():
                    merged.setdefault(project, {}).setdefault(version, reason)
        if merged == ours:
            return Plan(note="nothing to add")
        new = (json.dumps(merged, indent=2, sort_keys=True) + "\n").encode()
        return Plan([WriteFile(self.path, new, "root", "root", 0o644, old=have.content if have else b"",
                               expect_sha256=have.sha256 if have else None)], "add the backup's")
