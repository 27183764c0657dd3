"""The accounts role's steps (and fact): one htpasswd entry, the list of names."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ... import htpasswd
from ...errors import StepError
from ...facts import Fact, FileState
from ...report import plural
from ...steps.base import Plan, Step, WriteFile, q


class HtpasswdEntry(Step):
    """One upload account in an htpasswd file (hash made on the control machine).

    The probe brings the file's hashes back (never a password; they travel inside the SSH
    channel and are never printed): an account whose hash already matches the password is
    left alone, so adding the same account twice changes nothing. The new file keeps the
    old one's owner and mode and replaces it atomically.
    """

    def __init__(self, path: str, user: str, password: str | None = None,
                 hasher: Callable[[], str] | None = None):
        self.path, self.user, self.password, self.hasher = path, user, password, hasher
        state = "absent from" if password is None else "present in"
        self.name = f"Ensure the upload account {user} is {state} {path}."

    def probes(self):
        return {"file": FileState(self.path, content=True)}

    def plan(self, facts, probed):
        have = probed["file"]
        if have is None:
            raise StepError(f"{self.path} not found: deploy pypiserver first (invoke deploy)")
        entries = htpasswd.parse(have.content.decode(errors="replace"))
        current = entries.get(self.user)
        if self.password is None:
            if current is None:
                return Plan(note=f"no account {self.user}")
            del entries[self.user]
            note = f"remove {self.user}"
        else:
            if current is not None and htpasswd.verify(self.password, current):
                return Plan(note=f"{self.user} has this password already")
            entries[self.user] = self.hasher()
            note = f"change the password of {self.user}" if current else f"add {self.user}"
        new = htpasswd.render(entries).encode()
        return Plan([WriteFile(self.path, new, have.stat.owner, have.stat.group, have.stat.mode,
                               secret=True, expect_sha256=have.sha256)], note)


@dataclass(frozen=True)
class AccountNames(Fact):
    """The account names of an htpasswd file, and only those (None: no such file)."""

    path: str

    def command(self):
        return f"cut -d: -f1 < {q(self.path)}"

    def parse(self, text, rc) -> list[str] | None:
        return [n for n in text.split() if n] if rc == 0 else None


class HtpasswdNames(Step):
    """Read-only: the account names in an htpasswd file (only names leave the host)."""

    def __init__(self, path: str, found: Callable[[list[str]], None] | None = None):
        self.path, self.found = path, found
        self.name = f"List the upload accounts in {path}."

    def probes(self):
        return {"names": AccountNames(self.path)}

    def plan(self, facts, probed):
        names = probed["names"]
        if names is None:
            raise StepError(f"{self.path} not found: deploy pypiserver first (invoke deploy)")
        if self.found:
            self.found(names)
        return Plan(note=plural(len(names), "account"))
