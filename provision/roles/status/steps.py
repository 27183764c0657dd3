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


@dataclass(frozen=True)
class CacheUsage(Fact):
    """The pull-through cache's files on disk: {"files", "bytes", "projects"} (None: no cache
    directory). nginx names its cache files by hash; the project comes from the key line
    each file starts with (read up to the first match only)."""

    files_dir: str

    def command(self):
        d = q(self.files_dir)
        return (f"if [ -d {d} ]; then find {d} -type f -printf '%s\\n' | "
                f"awk '{{n++; b+=$1}} END {{printf \"files %d %.0f\\n\", n, b}}'; "
                f"find {d} -type f -exec grep -a -m1 -h -o '^KEY: /pypi-cache/[a-z0-9-]*/' {{}} + | "
                f"sort -u | wc -l | sed 's/^/projects /'; fi")

    def parse(self, text, rc) -> dict | None:
        m = re.search(r"^files (\d+) (\d+)$", text, re.M)
        p = re.search(r"^projects +(\d+)$", text, re.M)
        if not m:
            return None
        return {"files": int(m[1]), "bytes": int(m[2]), "projects": int(p[1]) if p else 0}


#: nginx's $upstream_cache_status values that were answered from the cache
CACHE_HITS = ("HIT", "STALE", "UPDATING", "REVALIDATED")


@dataclass(frozen=True)
class CacheLog(Fact):
    """Requests the cache answered, by nginx's cache status, from its log: {status: count}
    (since the log was last rotated; empty when there is none)."""

    path: str

    def command(self):
        return f"[ ! -f {q(self.path)} ] || awk '{{n[$2]++}} END {{for (k in n) print k, n[k]}}' {q(self.path)}"

    def parse(self, text, rc) -> dict[str, int]:
        return {k: int(n) for k, n in re.findall(r"^(\S+) (\d+)$", text, re.M)}


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
