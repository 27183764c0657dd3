"""A backup folder on this machine: its layout, manifest and verification (backup and
restore share them).

    DIR/MANIFEST.sha256      sha256sum's format, one line per file of the backup
    DIR/packages/<file>      the distribution files
    DIR/htpasswd             the accounts (0600: bcrypt hashes)
    DIR/record.json          the host's record of its last deploy (its settings)
    DIR/yanked.json          the yank list
    DIR/.state.json          the host's name, and {file: [size, mtime, sha256]}: what the host
                             had when it was taken (a file whose size and mtime are unchanged,
                             with a local copy of that size, is not sent again)

DIR is 0700. Every file appears by rename; the manifest is written last, so an interrupted
backup leaves the previous manifest, which still verifies.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from .errors import BackupError
# the host-side builder's two helpers (standard library only): one implementation of each
from .hostside.indexer import sha256_file, write_atomic

MANIFEST = "MANIFEST.sha256"
STATE = ".state.json"
EXTRAS = {"htpasswd": 0o600, "record.json": 0o644, "yanked.json": 0o644}
_LINE = re.compile(r"^([0-9a-f]{64})  (\S.*)$")


def ensure_dir(folder: Path, host: str) -> None:
    """The folder, 0700 when we make it (an existing one keeps its mode), for one host only:
    a folder holding another host's backup is refused."""
    if not folder.exists():
        folder.mkdir(parents=True, mode=0o700)
        os.chmod(folder, 0o700)
    owner = load_state(folder).get("host")
    if owner and owner != host:
        raise BackupError(f"{folder} holds the backup of {owner}: give {host} its own folder (--to)")
    (folder / "packages").mkdir(exist_ok=True)


def load_state(folder: Path) -> dict:
    """{"host": name, "files": {file: [size, mtime, sha256]}} ({} when there is none)."""
    try:
        data = json.loads((folder / STATE).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or not isinstance(data.get("files", {}), dict):
        return {}
    return data


def save_state(folder: Path, host: str, files: dict) -> None:
    write_atomic(folder / STATE, json.dumps({"host": host, "files": files}, sort_keys=True).encode())


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
        if not m or not allowed_name(m[2]):
            raise BackupError(f"{path}:{n} is not a manifest line (sha256, two spaces, then packages/FILE, "
                              f"htpasswd, record.json or yanked.json)")
        out[m[2]] = m[1]
    return out


def allowed_name(name: str) -> bool:
    """What a backup may hold: packages/<one file name>, or one of the known extras."""
    if name in EXTRAS:
        return True
    head, sep, file = name.partition("/")
    return head == "packages" and sep == "/" and file not in ("", ".", "..") and "/" not in file \
        and "\0" not in file and not file.startswith(".")


def write_manifest(folder: Path, entries: dict[str, str]) -> None:
    text = "".join(f"{sha}  {name}\n" for name, sha in sorted(entries.items()))
    write_atomic(folder / MANIFEST, text.encode())


def verify(folder: Path) -> tuple[dict[str, str], list[str]]:
    """(the manifest, what is wrong: missing or corrupt files, by name)."""
    entries = read_manifest(folder)
    wrong = []
    for name, sha in sorted(entries.items()):
        path = folder / name
        if path.is_symlink() or (path.exists() and not path.is_file()):
            wrong.append(f"{name} is not a regular file")
        elif not path.is_file():
            wrong.append(f"{name} is missing")
        elif sha256_file(path) != sha:
            wrong.append(f"{name} does not match its sha256 (corrupt)")
    return entries, wrong
