"""The one way this tool downloads with pip, on the control machine (offline wheels and the
mirror): `pip download` into a temporary folder inside the cache, bounded in time, and the
files moved into the cache by rename (same file system), so an interrupted run never leaves
a half-written file a later run would trust."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

TIMEOUT = 900  # seconds: a stuck index must not hang a run forever


class DownloadTimeout(Exception):
    """pip download ran past TIMEOUT (the caller words it: it knows what was asked)."""


@dataclass
class Fetched:
    returncode: int
    output: str                                       # stdout and stderr
    files: list[Path] = field(default_factory=list)   # every file pip left, now in the cache
    new: list[Path] = field(default_factory=list)     # those the cache did not hold before

    @property
    def last_line(self) -> str:
        """pip's last ERROR line, else its last line."""
        lines = [ln.strip() for ln in self.output.splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("ERROR")]
        return (errors or lines or ["pip gave no output"])[-1]


def download(args: list[str], into: Path, *, cwd: Path | None = None, env: dict | None = None,
             attempts: int = 1, retry: Callable[[str], bool] = lambda output: True,
             pattern: str = "*") -> Fetched:
    """``pip download ARGS`` with this Python; the files matching PATTERN end up in INTO.

    Up to ATTEMPTS runs while pip fails and ``retry(output)`` says it is worth it (a broken
    download, a network hiccup; not a requirement that cannot resolve). Raises
    DownloadTimeout. On failure nothing is moved: the returned ``files`` is empty.
    """
    into.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=into.parent))
    try:
        cmd = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check",
               "--no-input", "-d", str(tmp), *args]
        proc = None
        for _ in range(max(1, attempts)):
            try:
                proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                                      text=True, timeout=TIMEOUT, cwd=cwd, env=env)
            except subprocess.TimeoutExpired:
                raise DownloadTimeout(f"pip download timed out after {TIMEOUT} s") from None
            if proc.returncode == 0 or not retry(proc.stdout + proc.stderr):
                break
        got = Fetched(proc.returncode, proc.stdout + proc.stderr)
        if proc.returncode != 0:
            return got
        for path in sorted(tmp.glob(pattern)):
            dest = into / path.name
            if not dest.exists():
                got.new.append(dest)
                os.replace(path, dest)
            got.files.append(dest)
        return got
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
