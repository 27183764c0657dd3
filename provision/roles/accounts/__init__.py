"""Upload accounts in pypiserver's htpasswd file: add (or change), remove, list.

The password is hashed once, here, for every host of the run; only the hash line travels.
pypiserver re-reads the file when it changes, so no restart is needed.
"""

from __future__ import annotations

import threading

from ... import htpasswd
from .. import Role
from .steps import HtpasswdEntry, HtpasswdNames


class AccountsRole(Role):
    needs_deploy = True

    def __init__(self, action: str, user: str | None = None, password: str | None = None):
        self.action, self.user, self.password = action, user, password
        self.changes_hosts = action != "list"
        self._hash: str | None = None
        self.listed: dict[str, list[str]] = {}  # host -> account names (action "list")
        self._lock = threading.Lock()

    def _hasher(self) -> str:
        with self._lock:  # hosts plan in parallel threads: one hash (bcrypt is slow) for all
            if self._hash is None:
                self._hash = htpasswd.hash_password(self.password)
            return self._hash

    def phases(self, target):
        path = self.vars(target)["pypiserver_htpasswd"]
        if self.action == "list":
            return [[HtpasswdNames(path, lambda names: self.listed.__setitem__(target.name, names))]]
        password = self.password if self.action == "add" else None
        return [[HtpasswdEntry(path, self.user, password, self._hasher)]]
