"""Facts about a virtualenv: the Python it was made by, its executables, its packages."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from .base import Fact


def canonical_name(name: str) -> str:
    """PEP 503 name normalisation, so ``importlib_resources`` matches ``importlib-resources``."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class VenvInfo:
    present: bool = False          # pyvenv.cfg exists: something is there to replace
    version: str | None = None     # 'X.Y' of the Python that made it
    python: bool = False           # bin/python is executable
    pip: bool = False              # bin/pip is executable (the last thing `python -m venv` makes)
    dists: dict[str, str] = field(default_factory=dict)   # canonical name -> version

    @property
    def complete(self) -> bool:
        return self.present and self.python and self.pip


@dataclass(frozen=True)
class VenvState(Fact):
    """One line per item: ``cfg:`` pyvenv.cfg's lines, ``exe:`` executables, ``dist:``
    installed distributions (their .dist-info names)."""

    path: str

    def command(self):
        p = shlex.quote(self.path)
        return (f"sed 's/^/cfg:/' {p}/pyvenv.cfg; "
                f"for f in python pip; do test -x {p}/bin/$f && echo \"exe:$f\"; done; "
                f"ls -1 {p}/lib/ | grep '^python3' | while read -r d; do "
                f"ls -1 {p}/lib/\"$d\"/site-packages; done | sed -n 's/\\.dist-info$//p' | sed 's/^/dist:/'")

    def parse(self, text, rc) -> VenvInfo:
        info = VenvInfo()
        for line in text.splitlines():
            kind, _, value = line.partition(":")
            if kind == "cfg":
                info.present = True
                m = re.match(r"version(?:_info)?\s*=\s*(\d+\.\d+)", value)
                if m and info.version is None:
                    info.version = m[1]
            elif kind == "exe":
                setattr(info, value, True) if value in ("python", "pip") else None
            elif kind == "dist":
                m = re.match(r"(.+)-([^-]+)$", value)
                if m:
                    info.dists[canonical_name(m[1])] = m[2]
        return info
