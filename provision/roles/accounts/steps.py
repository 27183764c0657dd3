"""The accounts role's steps: one htpasswd entry, the list of names."""

from __future__ import annotations

import hashlib
from typing import Callable

from ...errors import StepError
from ...report import plural
from ...steps.base import Plan, Step, WriteFile, _stat, q


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
        p = q(self.path)
        return {"file": f"{_stat(self.path)} && echo __content__ && base64 < {p}"}

    def plan(self, facts, probed):
        import base64

        from ... import htpasswd

        lines = probed["file"].splitlines()
        if "__content__" not in lines:
            raise StepError(f"{self.path} not found: deploy pypiserver first (invoke deploy)")
        owner, group, mode = lines[0].split()
        text = base64.b64decode("".join(lines[lines.index("__content__") + 1:])).decode()
        entries = htpasswd.parse(text)
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
        read = hashlib.sha256(text.encode()).hexdigest()
        return Plan([WriteFile(self.path, new, owner, group, int(mode, 8), secret=True,
                               expect_sha256=read)], note)


class HtpasswdNames(Step):
    """Read-only: the account names in an htpasswd file (only names leave the host)."""

    def __init__(self, path: str, found: Callable[[list[str]], None] | None = None):
        self.path, self.found = path, found
        self.name = f"List the upload accounts in {path}."

    def probes(self):
        return {"names": f"test -f {q(self.path)} && echo __file__ && cut -d: -f1 {q(self.path)}"}

    def plan(self, facts, probed):
        lines = probed["names"].split()
        if "__file__" not in lines:
            raise StepError(f"{self.path} not found: deploy pypiserver first (invoke deploy)")
        names = [n for n in lines[lines.index("__file__") + 1:] if n]
        if self.found:
            self.found(names)
        return Plan(note=plural(len(names), "account"))
