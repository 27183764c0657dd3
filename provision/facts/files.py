"""Facts about paths: owner and mode, a file's hash and content, a directory's listing."""

from __future__ import annotations

import base64
import binascii
import re
import shlex
from dataclasses import dataclass

from .base import Fact

q = shlex.quote


@dataclass(frozen=True)
class PathInfo:
    owner: str
    group: str
    mode: int

    def __str__(self) -> str:
        return f"{self.owner}:{self.group} {self.mode:04o}"


def _path_info(line: str) -> PathInfo | None:
    parts = line.split()
    if len(parts) == 3 and re.fullmatch(r"[0-7]{1,4}", parts[2]):
        return PathInfo(parts[0], parts[1], int(parts[2], 8))
    return None


@dataclass(frozen=True)
class Stat(Fact):
    """Owner, group and mode of a path (None: it does not exist)."""

    path: str

    def command(self):
        return f"stat -c '%U %G %a' {q(self.path)}"

    def parse(self, text, rc) -> PathInfo | None:
        return _path_info(text.strip()) if rc == 0 else None


@dataclass(frozen=True)
class FileInfo:
    stat: PathInfo
    sha256: str
    content: bytes | None = None   # only when the fact asked for it


@dataclass(frozen=True)
class FileState(Fact):
    """A regular file's owner, mode and sha256, and (content=True) its bytes (None: no file).

    The content travels base64-encoded inside the SSH channel; ask for it only where a diff
    or a read-modify-write needs it."""

    path: str
    content: bool = False

    def command(self):
        p = q(self.path)
        return f"stat -c '%U %G %a' {p} && sha256sum < {p}" + (f" && base64 < {p}" if self.content else "")

    def parse(self, text, rc) -> FileInfo | None:
        lines = text.splitlines()
        if rc != 0 or len(lines) < 2 or not (info := _path_info(lines[0])):
            return None
        digest = (lines[1].split() or [""])[0]
        content = None
        if self.content:
            try:
                content = base64.b64decode("".join(lines[2:]), validate=True)
            except (binascii.Error, ValueError):
                return None
        return FileInfo(info, digest, content)


@dataclass(frozen=True)
class FileText(Fact):
    """A small text file's content (None: no such file)."""

    path: str

    def command(self):
        return f"cat {q(self.path)}"

    def parse(self, text, rc) -> str | None:
        return text if rc == 0 else None


@dataclass(frozen=True)
class PathExists(Fact):
    path: str

    def command(self):
        return f"test -e {q(self.path)}"

    def parse(self, text, rc) -> bool:
        return rc == 0


@dataclass(frozen=True)
class DirListing(Fact):
    """A directory's regular files, not hidden: {name: size} ({} when it does not exist).

    NUL-separated; a name holding a newline could forge a section line: left out."""

    path: str

    def command(self):
        return _find_files(self.path, "%s %f")

    def parse(self, text, rc) -> dict[str, int]:
        out = {}
        for entry in text.strip("\n").split("\0"):
            size, _, name = entry.partition(" ")
            if name and size.isdigit():
                out[name] = int(size)
        return out


@dataclass(frozen=True)
class DirFiles(Fact):
    """A directory's regular files, not hidden, with their modification times:
    [(name, size, mtime)] ([] when it does not exist). Same listing as DirListing."""

    path: str

    def command(self):
        return _find_files(self.path, "%s %T@ %f")

    def parse(self, text, rc) -> list[tuple[str, int, float]]:
        out = []
        for entry in text.strip("\n").split("\0"):
            size, _, rest = entry.partition(" ")
            mtime, _, name = rest.partition(" ")
            if name and size.isdigit():
                try:
                    out.append((name, int(size), float(mtime)))
                except ValueError:
                    continue
        return out


def _find_files(path: str, fields: str) -> str:
    """find's NUL-separated listing of a directory's regular, not hidden files; a name
    holding a newline (it could forge a section line) is left out."""
    return (f"find {q(path)} -maxdepth 1 -type f ! -name '.*' "
            f"! -name \"$(printf '*\\n*')\" -printf '{fields}\\0'")
