"""The mirror role's step: distribution files placed in the packages directory."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

from ...facts import DirListing, FileText, HostFacts
from ...report import plural
from ...steps.base import Command, Plan, Step, Upload, WriteFile, q
from ...wheels import canonical_name


_DIST = re.compile(r"^(?P<name>.+?)-(?P<version>\d[^-]*?)(?:-[^-]+)*\.(?:whl|tar\.gz|tar\.bz2|tgz|zip|egg)$")


def project_of(filename: str) -> str | None:
    """The normalised project a distribution file belongs to, or None if it is not one."""
    if filename.endswith(".whl"):
        return canonical_name(filename.split("-", 1)[0])
    m = _DIST.match(filename)
    return canonical_name(m["name"]) if m else None


class MirroredFiles(Step):
    """Distribution files placed in the packages directory by `invoke mirror`.

    Compared by name and size with what the directory holds (in the facts round trip);
    only missing files are sent, as one tar stream whose files appear by rename. A
    manifest on the host lists the files mirror placed (one name per line) and nothing
    else. Every other file is an upload (or was put there by hand), and its project is
    private: mirror adds nothing to it (a public release beside a private one would
    shadow it), `overwrite` replaces only files mirror placed, `prune` removes only those.
    """

    MANIFEST = "/var/lib/provision/mirror-manifest"

    def __init__(self, dest: str, files: Callable[[HostFacts], list[Path]], owner: str,
                 overwrite: bool = False, prune: bool = False):
        self.dest, self.files, self.owner = dest, files, owner
        self.overwrite, self.prune = overwrite, prune
        self.prepared: list[Path] = []
        self.name = f"Ensure the mirrored distributions are in {dest}."

    def prepare(self, facts):
        self.prepared = self.files(facts)   # resolves and downloads here (cached)

    def probes(self):
        return {"ls": DirListing(self.dest), "manifest": FileText(self.MANIFEST)}

    def plan(self, facts, probed):
        have = probed["ls"]
        recorded = [n for n in (probed["manifest"] or "").split("\n") if n]
        placed = set(recorded) & set(have)
        private = {p for n in have if n not in placed and (p := project_of(n))}
        files = self.prepared
        skipped = sorted({project_of(f.name) for f in files if project_of(f.name) in private})
        files = [f for f in files if project_of(f.name) not in private]
        # every file of a public project that exists here was placed by mirror
        missing = [f for f in files if f.name not in have]
        differ = [f for f in files if f.name in have and have[f.name] != f.stat().st_size]
        send = missing + (differ if self.overwrite else [])
        wanted = {f.name for f in files}
        stale = sorted(n for n in placed if n not in wanted) if self.prune else []
        actions: list = []
        if send:
            actions.append(Upload(send, self.dest, self.owner, self.owner, 0o644))
        if stale:
            actions.append(Command("cd " + q(self.dest) + " && rm -f -- " + " ".join(q(n) for n in stale)))
        manifest = sorted((placed | {f.name for f in send}) - set(stale))
        if manifest != sorted(recorded):
            actions.append(Command(f"mkdir -p {q(str(Path(self.MANIFEST).parent))}"))
            actions.append(WriteFile(self.MANIFEST, "".join(n + "\n" for n in manifest).encode(),
                                     old="".join(n + "\n" for n in recorded).encode()))
        size = sum(f.stat().st_size for f in send)
        parts = [plural(len(files), "file"), f"{len(files) - len(missing) - len(differ)} present"]
        if send:
            shown = ", ".join(f.name for f in send[:3]) + (", ..." if len(send) > 3 else "")
            parts.append(f"send {plural(len(send), 'file')}, {size / 1e6:.1f} MB: {shown}")
        if differ and not self.overwrite:
            parts.append(f"kept {len(differ)} that differ (use --overwrite)")
        if stale:
            parts.append(f"prune {len(stale)}")
        gone = set(recorded) - set(have)
        if gone:
            parts.append(f"forget {len(gone)} removed by hand")
        if skipped:
            parts.append(f"skipped private project{'s' if len(skipped) > 1 else ''} "
                         f"{', '.join(skipped)} (uploads here: mirror adds nothing to it)")
        return Plan(actions, ", ".join(parts))
