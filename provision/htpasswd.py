"""htpasswd content for pypiserver's upload accounts, hashed on the control machine.

bcrypt ($2b$, salted, cost 12) is what we write: pypiserver reads it through passlib
with bcrypt 4.0.1 in its venv. We call the `bcrypt` library directly here instead of
passlib, because passlib 1.7.4 breaks on the bcrypt 5 that Fabric's paramiko pulls in.
Passwords stay in this process: only the hash line ever leaves it.
"""

from __future__ import annotations

import re

from .errors import ProvisionError

_BAD_NAME = re.compile(r"[:\s\x00-\x1f\x7f]")


class AccountError(ProvisionError):
    """Raised for a user name or password we refuse to write."""


def check_name(name: str) -> str:
    if not name:
        raise AccountError("user name is empty")
    if _BAD_NAME.search(name):
        raise AccountError(f"user name {name!r} has a ':', whitespace or a control character")
    return name


def hash_password(password: str, rounds: int = 12) -> str:
    import bcrypt

    if not password:
        raise AccountError("password is empty")
    raw = password.encode()
    if len(raw) > 72:
        raise AccountError("password is longer than 72 bytes (bcrypt's limit)")
    return bcrypt.hashpw(raw, bcrypt.gensalt(rounds)).decode()


def parse(text: str) -> dict[str, str]:
    """name -> hash, in file order; lines that are not `name:hash` are dropped."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if ":" in line and not line.startswith("#"):
            name, hashed = line.split(":", 1)
            out[name] = hashed
    return out


def render(entries: dict[str, str]) -> str:
    return "".join(f"{name}:{hashed}\n" for name, hashed in entries.items())


def set_user(text: str, name: str, password: str) -> tuple[str, str]:
    """New file content with NAME's password set; and 'added' or 'updated'."""
    entries = parse(text)
    action = "updated" if check_name(name) in entries else "added"
    entries[name] = hash_password(password)
    return render(entries), action
