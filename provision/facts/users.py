"""Facts about accounts."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from .base import Fact


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    home: str
    shell: str


@dataclass(frozen=True)
class Passwd(Fact):
    """An account's passwd entry (None: no such account)."""

    user: str

    def command(self):
        return f"getent passwd {shlex.quote(self.user)}"

    def parse(self, text, rc) -> Account | None:
        fields = text.strip().split("\n")[0].split(":")
        if rc != 0 or len(fields) < 7:
            return None
        return Account(fields[0], int(fields[2]) if fields[2].isdigit() else 0, fields[5], fields[6])


@dataclass(frozen=True)
class UidMin(Fact):
    """The first UID of login accounts (login.defs' UID_MIN; 1000 when it does not say)."""

    def command(self):
        return "sed -n 's/^UID_MIN[[:space:]]*//p' /etc/login.defs"

    def parse(self, text, rc) -> int:
        m = re.match(r"\s*(\d+)", text)
        return int(m[1]) if m else 1000
