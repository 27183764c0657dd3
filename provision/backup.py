"""A backup folder on this machine: its layout, manifest and verification (backup and
restore share them).

    DIR/MANIFEST.sha256      sha256sum's format, one line per file of the backup
    DIR/packages/<file>      the distribution files
    DIR/htpasswd             the accounts (0600: bcrypt hashes)
    DIR/record.json          the host's record of its last deploy (its settings)
    DIR/yanked.json          the yank list
    DIR/.state.json          {file: [size, mtime, sha256]}: what the host had when it was
                             taken (a file whose size and mtime are unchanged is not sent again)

DIR is 0700. Every file appears by rename; the manifest is written last, so an interrupted
backup leaves the previous manifest, which still verifies.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path

from .errors import BackupError

MANIFEST = "MANIFEST.sha256"
STATE = ".state.json"
EXTRAS = {"htpasswd": 0o600, "record.json": 0o644, "yanked.json": 0o644}
_LINE = re.compile(r"^([0-9a-f]{64})  (\S.*)$")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def ensure_dir(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    (folder / "packages").mkdir(exist_ok=True)


def load_state(folder: Path) -> dict[str, list]:
    try:
        data = json.loads((folder / STATE).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def save_state(folder: Path, state: dict) -> None:
    write_atomic(folder / STATE, json.dumps(state, sort_keys=True).encode())


def read_manifest(folder: Path) -> dict[str, str]:
    """{relative path: sha256}; BackupError when it is missing or not sha256sum's format."""
    path = folder / MANIFEST
    try:
        text = path.read_text()
    except OSError:
        raise BackupError(f"{path} not found: not a backup folder (invoke backup makes one)") from None
    out = {}
    for n, line in enumerate(text.splitlines(), 1):
        m = _LINE.match(line)
        if not m or m[2].startswith("/") or ".." in m[2].split("/"):
            raise BackupError(f"{path}:{n} is not a manifest line (sha256, two spaces, a relative path)")
        out[m[2]] = m[1]
    return out


def write_manifest(folder: Path, entries: dict[str, str]) -> None:
    text = "".join(f"{sha}  {name}\n" for name, sha in sorted(entries.items()))
    write_atomic(folder / MANIFEST, text.encode())


def verify(folder: Path) -> tuple[dict[str, str], list[str]]:
    """(the manifest, what is wrong: missing or corrupt files, by name)."""
    entries = read_manifest(folder)
    wrong = []
    for name, sha in sorted(entries.items()):
        path = folder / name
        if not path.is_file():
            wrong.append(f"{name} is missing")
        elif sha256_file(path) != sha:
            wrong.append(f"{name} does not match its sha256 (corrupt)")
    return entries, wrong
