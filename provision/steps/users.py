"""System accounts."""

from __future__ import annotations

from ..errors import StepError
from ..facts import Passwd, UidMin
from .base import Command, Plan, Step, q


class SystemUser(Step):
    """The service's system account: created with no login, or an existing one that
    already is a no-login system account. Never root, the SSH user, or an account with a
    login shell or a UID in the login range (usermod on those would lock their owner out).
    """

    NO_LOGIN = ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false", "/usr/bin/false")

    def __init__(self, user: str, home: str, shells: dict[str, str], guard: bool = False):
        # guard: only refuse (a role's first phase, before any change); create nothing
        self.user, self.home, self.shells, self.guard = user, home, shells, guard
        self.name = (f"Ensure {user} is free or a no-login system account." if guard else
                     f"Ensure the system user {user} exists (no login).")

    def probes(self):
        return {"passwd": Passwd(self.user), "uid_min": UidMin()}

    def plan(self, facts, probed):
        shell = self.shells.get(facts.family, "/usr/sbin/nologin")
        account, uid_min = probed["passwd"], probed["uid_min"]
        if account is None and self.guard:
            return Plan(note="no such account yet")
        if account is None:
            return Plan([Command(
                f"useradd --system --user-group --no-create-home --home-dir {q(self.home)} "
                f"--shell {q(shell)} {q(self.user)}")], f"create {self.user}")
        uid = account.uid
        why = None
        if uid == 0 or self.user == facts.ssh_user:
            why = "is root or the SSH user"
        elif uid >= uid_min:
            why = f"is a login account (uid {uid}, login UIDs start at {uid_min})"
        elif account.shell not in self.NO_LOGIN:
            why = f"has the login shell {account.shell}"
        if why:
            raise StepError(f"pypiserver_user {self.user} {why}: the service needs a system account "
                            f"of its own; choose another name (the default pypi is created for you)")
        return Plan(note=f"uid {uid}, no login")
