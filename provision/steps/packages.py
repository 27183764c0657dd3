"""OS packages through the host's package manager."""

from __future__ import annotations

from .base import Command, Plan, Step, q


class Packages(Step):
    """OS packages through the host's package manager; names are per-family data."""

    def __init__(self, packages: dict[str, list[str]], install: dict[str, str]):
        self.packages = packages
        self.install = install
        self.name = "Ensure the OS packages are installed."

    def probes(self):
        deb = " ".join(q(p) for p in self.packages.get("Debian", []))
        rh = " ".join(q(p) for p in self.packages.get("RedHat", []))
        return {"pkgs": (
            "if command -v dpkg-query >/dev/null; then "
            f"dpkg-query -W -f='${{Package}} ${{db:Status-Status}}\\n' {deb}; "
            f"elif command -v rpm >/dev/null; then for p in {rh}; do "
            f"rpm -q --whatprovides \"$p\" >/dev/null && echo \"$p installed\"; done; fi"
        )}

    def plan(self, facts, probed):
        wanted = self.packages.get(facts.family, [])
        have = {parts[0] for parts in (line.split() for line in probed["pkgs"].splitlines())
                if len(parts) == 2 and parts[1] == "installed"}
        missing = [p for p in wanted if p not in have]
        if not missing:
            return Plan(note=f"{', '.join(wanted)} installed" if wanted else "none needed")
        cmd = self.install[facts.family].replace("{packages}", " ".join(q(p) for p in missing))
        return Plan([Command(cmd)], f"install {', '.join(missing)}")
