"""What a run prints: one line per step and host, diffs on request, the recap.

The recap lines are an interface (scripts grep them): exactly
``<host> ok=<n> changed=<n> failed=<n> skipped=<n>``, one per host, after a ``RECAP`` line.
Colour only on a terminal, and never with NO_COLOR set (https://no-color.org; the tasks'
--no-color sets it).
"""

from __future__ import annotations

import difflib
import os
import re
import shutil
import sys
import threading
from dataclasses import dataclass

# what text read from a host may not send to the operator's terminal (escape sequences...)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
COLORS = {"ok": "32", "changed": "33", "failed": "31", "skipped": "36", "note": "36"}


def plural(n: int, word: str, words: str | None = None) -> str:
    """``1 file``, ``2 files``."""
    return f"{n} {word if n == 1 else (words or word + 's')}"


@dataclass
class Counts:
    ok: int = 0
    changed: int = 0
    failed: int = 0
    skipped: int = 0
    channels: int = 0
    seconds: float = 0.0


class Report:
    def __init__(self, stream=None, color: bool | None = None, width: int = 0, live: bool = True):
        self.stream = stream or sys.stdout
        # progress drawn in place (\r): only on a terminal, and only when one host prints
        self.live = live and self.stream.isatty()
        if color is None:
            color = self.stream.isatty() and not os.environ.get("NO_COLOR")
        self.color = color
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

    def step(self, host: str, status: str, name: str, note: str = "", detail: list[str] = ()) -> None:
        """A step's line, and indented detail lines under it (one write: never split)."""
        tail = f"  [{note}]" if note else ""
        label = self._paint(status, f"{status:<8}")
        lines = [f"{host:<{self.width}}  {label} {name}{tail}"]
        lines += ["    " + _CONTROL.sub("?", line) for line in detail]
        self.write("\n".join(lines))

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

    def progress(self, host: str, what: str, total: int, verb: str = "sending"):
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
                self.stream.write(f"\r{host:<{self.width}}  {verb:<8} [{bar:<30}] "
                                  f"{done / 1e6:6.1f}/{total / 1e6:.1f} MB{end}")
                self.stream.flush()
        return update

    def ticker(self, host: str) -> "Ticker":
        """Shows, on a terminal, which step a long silent apply is in and for how long."""
        return Ticker(self, host, self.live)

    def recap(self, results: dict[str, Counts]) -> None:
        self.write("RECAP")
        for host, c in results.items():
            self.write(f"{host} ok={c.ok} changed={c.changed} failed={c.failed} skipped={c.skipped}")


class Ticker:
    """``running  <step> (12 s)`` redrawn in place while a step is silent for over 2 s.

    start(step) / stop() around the silence; the line is erased before anything else is
    written, so logs stay clean. Does nothing off a terminal.
    """

    DELAY = 2.0    # seconds of silence before the line appears
    TICK = 0.5     # seconds between redraws

    def __init__(self, report: Report, host: str, enabled: bool):
        self.report, self.host, self.enabled = report, host, enabled
        self._what: str | None = None
        self._since = 0.0
        self._drawn = 0
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()

    def start(self, what: str | None) -> None:
        import time

        if not self.enabled or what is None:
            return
        with self.report._lock:
            self._what, self._since = what, time.monotonic()
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if not self.enabled:
            return
        with self.report._lock:
            self._what = None
            self._erase()

    def close(self) -> None:
        self.stop()
        self._stopped.set()

    def _erase(self) -> None:
        if self._drawn:
            self.report.stream.write("\r\033[K")   # back to column 0, clear to the line's end
            self.report.stream.flush()
            self._drawn = 0

    def _loop(self) -> None:
        import time

        while not self._stopped.wait(self.TICK):
            with self.report._lock:
                if self._what is None:
                    continue
                spent = time.monotonic() - self._since
                if spent < self.DELAY:
                    continue
                r = self.report
                # one terminal line, never wrapped: a wrapped line cannot be erased with \r
                tail = f" ({spent:.0f} s)"
                room = shutil.get_terminal_size((80, 24)).columns - 1
                head = f"{self.host:<{r.width}}  running  "     # as printed, colour aside
                what = self._what[:max(0, room - len(head) - len(tail))]
                self._erase()
                r.stream.write(f"{self.host:<{r.width}}  {r._paint('note', 'running ')} {what}{tail}")
                r.stream.flush()
                self._drawn = 1
