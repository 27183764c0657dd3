"""The status role's facts and its one read-only step."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from ...facts import Fact
from ...hostside.indexer import parse_filename
from ...steps.base import Plan, Step, q


@dataclass(frozen=True)
class Uptime(Fact):
    """Seconds a unit has been active (None: not active)."""

    service: str

    def command(self):
        return (f"systemctl show -p ActiveEnterTimestampMonotonic -p ActiveState {shlex.quote(self.service)}; "
                f"echo \"Now=$(cut -d' ' -f1 /proc/uptime)\"")

    def parse(self, text, rc) -> float | None:
        props = dict(re.findall(r"^(\w+)=(.*)$", text, re.M))
        since, now = props.get("ActiveEnterTimestampMonotonic", ""), props.get("Now", "")
        if props.get("ActiveState") != "active" or not since.isdigit() or not re.fullmatch(r"[0-9.]+", now):
            return None
        return max(0.0, float(now) - int(since) / 1e6)


@dataclass(frozen=True)
class Disk(Fact):
    """(size, available) bytes of the file system holding a path (None: no answer)."""

    path: str

    def command(self):
        return f"df -Pk {q(self.path)} | tail -n 1"

    def parse(self, text, rc) -> tuple[int, int] | None:
        fields = text.split()
        if rc != 0 or len(fields) < 4 or not (fields[1].isdigit() and fields[3].isdigit()):
            return None
        return int(fields[1]) * 1024, int(fields[3]) * 1024


@dataclass(frozen=True)
class NginxVersion(Fact):
    def command(self):
        return "nginx -v 2>&1"

    def parse(self, text, rc) -> str | None:
        m = re.search(r"nginx/(\S+)", text)
        return m[1] if m else None


@dataclass(frozen=True)
class MTime(Fact):
    """A file's modification time (None: no such file)."""

    path: str

    def command(self):
        return f"stat -c %Y {q(self.path)}"

    def parse(self, text, rc) -> int | None:
        return int(text.strip()) if rc == 0 and text.strip().isdigit() else None


class Status(Step):
    """Read-only: everything `invoke status` shows, read in the facts' one round trip; the
    values go to `found(dict)`."""

    def __init__(self, name: str, probes: dict[str, Fact], summarize, found):
        self.name, self._probes, self.summarize, self.found = name, probes, summarize, found

    def probes(self):
        return dict(self._probes)

    def plan(self, facts, probed):
        data = self.summarize(facts, probed)
        self.found(data)
        return Plan(note=data["summary"])


def projects(files: list[tuple[str, int, float]]) -> int:
    return len({p[0] for p in (parse_filename(n) for n, _, _ in files) if p})
