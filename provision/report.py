"""What a run prints: one line per step and host, diffs on request, the recap.

The recap lines are an interface (scripts grep them): exactly
``<host> ok=<n> changed=<n> failed=<n>``, one per host, after a ``RECAP`` line.
"""

from __future__ import annotations

import difflib
import sys
import threading
from dataclasses import dataclass

COLORS = {"ok": "32", "changed": "33", "failed": "31", "skipped": "36", "note": "36"}


@dataclass
class Counts:
    ok: int = 0
    changed: int = 0
    failed: int = 0
    channels: int = 0
    seconds: float = 0.0


class Report:
    def __init__(self, stream=None, color: bool | None = None, width: int = 0):
        self.stream = stream or sys.stdout
        self.color = self.stream.isatty() if color is None else color
        self.width = width
        self._lock = threading.Lock()

    def _paint(self, status: str, text: str) -> str:
        if not self.color or status not in COLORS:
            return text
        return f"\033[{COLORS[status]}m{text}\033[0m"

    def write(self, text: str) -> None:
        with self._lock:
            self.stream.write(text + "\n")
            self.stream.flush()

    def step(self, host: str, status: str, name: str, note: str = "") -> None:
        tail = f"  [{note}]" if note else ""
        label = self._paint(status, f"{status:<8}")
        self.write(f"{host:<{self.width}}  {label} {name}{tail}")

    def note(self, host: str, text: str) -> None:
        self.write(f"{host:<{self.width}}  {self._paint('note', 'note    ')} {text}")

    def diff(self, host: str, path: str, old: bytes | None, new: bytes, secret: bool) -> None:
        if secret:
            self.write(f"    --- {path}: content not shown (secret)")
            return
        if old is None:
            self.write(f"    --- {path}: content differs (old content not read)")
            return
        lines = difflib.unified_diff(
            old.decode(errors="replace").splitlines(), new.decode(errors="replace").splitlines(),
            f"{path} (on {host})", f"{path} (wanted)", lineterm="")
        for line in lines:
            status = "ok" if line.startswith("+") else "failed" if line.startswith("-") else ""
            self.write("    " + self._paint(status, line))

    def progress(self, host: str, what: str, total: int):
        """A callback(sent | None) drawing a progress bar on a terminal, for long transfers."""
        if not self.stream.isatty() or total < 2_000_000:
            return None
        import time

        state = {"last": 0.0}

        def update(sent):
            now = time.monotonic()
            if sent is not None and now - state["last"] < 0.2:
                return
            state["last"] = now
            done = total if sent is None else min(sent, total)
            bar = "#" * int(30 * done / total)
            end = "\n" if sent is None else ""
            with self._lock:
                self.stream.write(f"\r{host:<{self.width}}  sending  [{bar:<30}] "
                                  f"{done / 1e6:6.1f}/{total / 1e6:.1f} MB{end}")
                self.stream.flush()
        return update

    def recap(self, results: dict[str, Counts]) -> None:
        self.write("RECAP")
        for host, c in results.items():
            self.write(f"{host} ok={c.ok} changed={c.changed} failed={c.failed}")
