"""htpasswd content for pypiserver's upload accounts, hashed on the control machine.

bcrypt ($2b$, salted, cost 12) is what we write: pypiserver reads it through passlib
with bcrypt 4.0.1 in its venv. We call the `bcrypt` library directly here instead of
passlib, because passlib 1.7.4 breaks on the bcrypt 5 that Fabric's paramiko pulls in.
Passwords stay in this process: only the hash line ever leaves it.
"""

from __future__ import annotations

import re

from .errors import AccountError  # noqa: F401 - raised here

_BAD_NAME = re.compile(r"[:\s\x00-\x1f\x7f]")


def check_name(name: str) -> str:
    if not name:
        raise AccountError("user name is empty")
    if _BAD_NAME.search(name):
        raise AccountError(f"user name {name[:60]!r} has a ':', whitespace or a control character")
    if name.startswith("#"):  # pypiserver's htpasswd reader skips such lines as comments
        raise AccountError(f"user name {name[:60]!r} starts with '#': htpasswd would read it as a comment")
    if len(name) > 255:
        raise AccountError(f"user name is {len(name)} characters long: at most 255")
    return name


def hash_password(password: str, rounds: int = 12) -> str:
    import bcrypt

    return bcrypt.hashpw(check_password(password).encode(), bcrypt.gensalt(rounds)).decode()


def verify(password: str, hashed: str) -> bool:
    """Does PASSWORD match a bcrypt HASHED? Other schemes ({SHA}, apr1) never match, so
    setting the same password again upgrades such an entry to bcrypt."""
    import bcrypt

    if not hashed.startswith(("$2a$", "$2b$", "$2y$")):
        return False
    try:
        return bcrypt.checkpw(password.encode(), hashed.encode())
    except ValueError:
        return False


def check_password(password: str) -> str:
    if not password:
        raise AccountError("password is empty")
    if len(password.encode()) > 72:
        raise AccountError("password is longer than 72 bytes (bcrypt's limit)")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in password):
        raise AccountError("password has a control character (a stray newline or tab?)")
    return password


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

