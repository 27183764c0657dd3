"""The uninstall role's own step: a folder the deploy made, removed only when empty."""

from __future__ import annotations

from dataclasses import dataclass

from ...facts import Fact
from ...steps.base import Command, Plan, Step, q


@dataclass(frozen=True)
class DirNames(Fact):
    """The names in a directory (None: no such directory)."""

    path: str

    def command(self):
        return f"[ -d {q(self.path)} ] && ls -A1 -- {q(self.path)}"

    def parse(self, text, rc) -> list[str] | None:
        return [n for n in text.split("\n") if n] if rc == 0 else None


class FolderIfEmpty(Step):
    """A folder the deploy made (the venv's), removed when it holds nothing but what this
    run removes; anything else in it keeps it."""

    def __init__(self, path: str, ours: set[str]):
        self.path, self.ours = path, ours
        self.name = f"Ensure {path} is absent if nothing else is in it."

    def probes(self):
        return {"names": DirNames(self.path)}

    def plan(self, facts, probed):
        names = probed["names"]
        if names is None:
            return Plan(note="absent")
        others = sorted(set(names) - self.ours)
        if others:
            return Plan(note=f"kept: it holds {', '.join(others[:3])}" + (" ..." if len(others) > 3 else ""))
        return Plan([Command(f"rmdir -- {q(self.path)}")], "remove (empty once ours are gone)")
