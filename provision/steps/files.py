"""Directories and files: exact content, owner and mode, written atomically."""

from __future__ import annotations

import hashlib

from .base import Command, Plan, Step, WriteFile, _owner_mode_fix, _stat, q


class Directory(Step):
    def __init__(self, path: str, owner: str = "root", group: str = "root", mode: int = 0o755):
        self.path, self.owner, self.group, self.mode = path, owner, group, mode
        self.name = f"Ensure the directory {path} exists ({owner}:{group} {mode:04o})."

    def probes(self):
        return {"stat": _stat(self.path)}

    def plan(self, facts, probed):
        if not probed["stat"].strip():
            cmd = f"install -d -o {q(self.owner)} -g {q(self.group)} -m {self.mode:04o} {q(self.path)}"
            if facts.selinux_enabled:
                cmd += f" && restorecon -R {q(self.path)}"
            return Plan([Command(cmd)], "create")
        return _owner_mode_fix(self.path, probed["stat"], self.owner, self.group, self.mode)


class File(Step):
    """A file with exact content, or (content=None) one that must exist, content untouched."""

    def __init__(self, path: str, content: bytes | str | None, owner="root", group="root",
                 mode=0o644, secret=False, diff=False, on_change: tuple[str, ...] = (),
                 notify: tuple[str, ...] = (), name: str | None = None):
        self.path = path
        self.content = content.encode() if isinstance(content, str) else content
        self.owner, self.group, self.mode = owner, group, mode
        self.secret, self.diff = secret, diff
        self.on_change, self.notify = on_change, notify
        self.name = name or f"Ensure the file {path} is up to date."

    def probes(self):
        cmd = f"{_stat(self.path)} && sha256sum < {q(self.path)}"
        if self.diff and not self.secret and self.content is not None:
            cmd += f" && echo __content__ && base64 < {q(self.path)}"
        return {"file": cmd}

    def plan(self, facts, probed):
        import base64

        lines = probed["file"].splitlines()
        exists = len(lines) >= 2
        if self.content is None:
            if not exists:
                return Plan([WriteFile(self.path, b"", self.owner, self.group, self.mode,
                                       secret=self.secret)], "create empty")
            return _owner_mode_fix(self.path, lines[0], self.owner, self.group, self.mode,
                                   kept="present, content kept")
        want = hashlib.sha256(self.content).hexdigest()
        if not exists or lines[1].split()[0] != want:
            old = None
            if "__content__" in lines:
                old = base64.b64decode("".join(lines[lines.index("__content__") + 1:]))
            actions = [WriteFile(self.path, self.content, self.owner, self.group, self.mode,
                                 old=old if exists else b"", secret=self.secret)]
            actions += [Command(c) for c in self.on_change]
            return Plan(actions, "content differs" if exists else "create")
        return _owner_mode_fix(self.path, lines[0], self.owner, self.group, self.mode)
