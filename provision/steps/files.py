"""Directories and files: exact content, owner and mode, written atomically."""

from __future__ import annotations

import hashlib

from ..facts import FileState, PathExists, Stat
from .base import Command, Plan, Step, WriteFile, _owner_mode_fix, q


class Directory(Step):
    def __init__(self, path: str, owner: str = "root", group: str = "root", mode: int = 0o755):
        self.path, self.owner, self.group, self.mode = path, owner, group, mode
        self.name = f"Ensure the directory {path} exists ({owner}:{group} {mode:04o})."

    def probes(self):
        return {"stat": Stat(self.path)}

    def plan(self, facts, probed):
        if probed["stat"] is None:
            cmd = f"install -d -o {q(self.owner)} -g {q(self.group)} -m {self.mode:04o} {q(self.path)}"
            if facts.selinux_enabled:
                cmd += f" && restorecon -R {q(self.path)}"
            return Plan([Command(cmd)], "create")
        return _owner_mode_fix(self.path, probed["stat"], self.owner, self.group, self.mode)


class File(Step):
    """A file with exact content, or (content=None) one that must exist, content untouched.

    For a non-secret file with content (small configuration files) the old content comes
    back with the facts, for the diff a change shows; a secret's never leaves the host."""

    def __init__(self, path: str, content: bytes | str | None, owner="root", group="root",
                 mode=0o644, secret=False, on_change: tuple[str, ...] = (),
                 notify: tuple[str, ...] = (), name: str | None = None):
        self.path = path
        self.content = content.encode() if isinstance(content, str) else content
        self.owner, self.group, self.mode = owner, group, mode
        self.secret = secret
        self.on_change, self.notify = on_change, notify
        self.name = name or f"Ensure the file {path} is up to date."

    def probes(self):
        return {"file": FileState(self.path, content=not self.secret and self.content is not None)}

    def plan(self, facts, probed):
        have = probed["file"]
        if self.content is None:
            if have is None:
                return Plan([WriteFile(self.path, b"", self.owner, self.group, self.mode,
                                       old=b"", secret=self.secret)], "create empty")
            return _owner_mode_fix(self.path, have.stat, self.owner, self.group, self.mode,
                                   kept="present, content kept")
        if have is None or have.sha256 != hashlib.sha256(self.content).hexdigest():
            old = b"" if have is None else have.content
            actions = [WriteFile(self.path, self.content, self.owner, self.group, self.mode,
                                 old=old, secret=self.secret)]
            actions += [Command(c) for c in self.on_change]
            return Plan(actions, "create" if have is None else "content differs")
        return _owner_mode_fix(self.path, have.stat, self.owner, self.group, self.mode)


class Absent(Step):
    """A path of ours that must not exist (uninstall): a file, or with `tree` a directory and
    everything in it. Only paths the validation function passed reach here (service
    directories, our own unit and record files)."""

    def __init__(self, path: str, tree: bool = False, on_change: tuple[str, ...] = (),
                 name: str | None = None):
        self.path, self.tree, self.on_change = path, tree, on_change
        self.name = name or f"Ensure {path} is absent."

    def probes(self):
        return {"there": PathExists(self.path)}

    def plan(self, facts, probed):
        if not probed["there"]:
            return Plan(note="absent")
        rm = f"rm -rf -- {q(self.path)}" if self.tree else f"rm -f -- {q(self.path)}"
        return Plan([Command(rm), *(Command(c) for c in self.on_change)], "remove")
