"""OS packages through the host's package manager."""

from __future__ import annotations

from ..facts import InstalledPackages
from .base import Command, Plan, Step, q


class Packages(Step):
    """OS packages through the host's package manager; names are per-family data."""

    def __init__(self, packages: dict[str, list[str]], install: dict[str, str]):
        self.packages = packages
        self.install = install
        self.name = "Ensure the OS packages are installed."

    def probes(self):
        return {"pkgs": InstalledPackages(tuple(self.packages.get("Debian", [])),
                                          tuple(self.packages.get("RedHat", [])))}

    def plan(self, facts, probed):
        wanted = self.packages.get(facts.family, [])
        missing = [p for p in wanted if p not in probed["pkgs"]]
        if not missing:
            return Plan(note=f"{', '.join(wanted)} installed" if wanted else "none needed")
        cmd = self.install[facts.family].replace("{packages}", " ".join(q(p) for p in missing))
        return Plan([Command(cmd)], f"install {', '.join(missing)}")
