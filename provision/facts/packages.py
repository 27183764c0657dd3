"""Facts about OS packages."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from .base import Fact

q = shlex.quote


@dataclass(frozen=True)
class InstalledPackages(Fact):
    """Which of these packages are installed: dpkg's names on Debian, rpm's capabilities
    (what `yum install NAME` would satisfy) on the Red Hat family."""

    debian: tuple[str, ...] = ()
    redhat: tuple[str, ...] = ()

    def command(self):
        deb = " ".join(q(p) for p in self.debian)
        rh = " ".join(q(p) for p in self.redhat)
        return ("if command -v dpkg-query >/dev/null; then "
                f"dpkg-query -W -f='${{Package}} ${{db:Status-Status}}\\n' {deb}; "
                f"elif command -v rpm >/dev/null; then for p in {rh}; do "
                f"rpm -q --whatprovides \"$p\" >/dev/null && echo \"$p installed\"; done; fi")

    def parse(self, text, rc) -> frozenset[str]:
        return frozenset(parts[0] for parts in (line.split() for line in text.splitlines())
                         if len(parts) == 2 and parts[1] == "installed")
