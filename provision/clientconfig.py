"""A developer machine's pip and twine configuration for the private index.

Rendered from templates/ (pip.conf.j2, pypirc.j2), then either printed or merged into the
user's files: only the keys we own are set, every other section, setting and comment is
kept, multi-valued keys (trusted-host, extra-index-url, index-servers) gain our value
without losing theirs, a timestamped backup keeps what was replaced, and the new file is
written atomically (.pypirc mode 0600: it may hold a password).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from .errors import ProvisionError

MULTI = {"trusted-host", "extra-index-url", "index-servers"}
_SECTION = re.compile(r"^\s*\[([^\]]+)\]\s*$")
_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
DEPENDENCY_CONFUSION = (
    "warning: with extra-index-url pip takes the highest version from the private index OR "
    "PyPI, so anyone can shadow a private name by publishing it on PyPI (dependency "
    "confusion). The default, index-url with pypiserver's fallback, keeps private names private."
)


class ClientConfigError(ProvisionError):
    """Raised for a bad --name/--url or a config file we cannot read or write."""


def index_urls(base: str) -> tuple[str, str]:
    """(the pip index URL, the twine repository URL) of a server base URL."""
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ClientConfigError(f"bad index URL {base!r}: expected http(s)://HOST[:PORT]/")
    root = base.rstrip("/") + "/"
    if root.endswith("/simple/"):
        root = root[: -len("simple/")]
    return root + "simple/", root


def render(base_url: str, name: str, username: str | None, password: str | None,
           extra: bool) -> tuple[str, str]:
    from .roles.pypiserver import render as render_template

    if not _NAME.match(name):
        raise ClientConfigError(f"bad repository name {name!r}: letters, digits and ._- only")
    simple, repository = index_urls(base_url)
    parts = urlsplit(simple)
    trusted = parts.hostname if parts.scheme == "http" else ""  # pip refuses plain http else
    pip_conf = render_template("pip.conf.j2", url=simple, extra=extra, trusted_host=trusted)
    pypirc = render_template("pypirc.j2", name=name, repository=repository,
                             username=username or "", password=password or "")
    return pip_conf, pypirc


def settings(text: str) -> list[tuple[str, str, str]]:
    """(section, key, value) of an INI text, continuation lines folded into the value."""
    out: list[tuple[str, str, str]] = []
    section = None
    for line in text.splitlines():
        m = _SECTION.match(line)
        if m:
            section = m[1]
        elif section and line[:1] in (" ", "\t") and line.strip() and out:
            s, k, v = out[-1]
            out[-1] = (s, k, f"{v}\n{line.strip()}".strip())
        elif section and "=" in line and not line.lstrip().startswith(("#", ";")):
            k, v = line.split("=", 1)
            out.append((section, k.strip(), v.strip()))
    return out


def _key_re(key: str):
    return re.compile(rf"^\s*{'[-_]'.join(map(re.escape, re.split(r'[-_]', key)))}\s*[=:]", re.I)


def merge(existing: str, wanted: str) -> str:
    """EXISTING with every setting of WANTED applied, everything else kept."""
    lines = existing.splitlines()
    for section, key, value in settings(wanted):
        lines = _apply(lines, section, key, value)
    text = "\n".join(lines)
    return text + "\n" if text else ""


def _apply(lines: list[str], section: str, key: str, value: str) -> list[str]:
    start = next((i for i, ln in enumerate(lines) if (m := _SECTION.match(ln)) and m[1] == section), None)
    if start is None:
        tail = [""] if lines and lines[-1].strip() else []
        return lines + tail + [f"[{section}]"] + _format(key, value.split())
    end = next((i for i in range(start + 1, len(lines)) if _SECTION.match(lines[i])), len(lines))
    key_re = _key_re(key)
    for i in range(start + 1, end):
        if key_re.match(lines[i]):
            j = i + 1
            while j < end and lines[j][:1] in (" ", "\t") and lines[j].strip():
                j += 1
            old = " ".join([lines[i].split("=", 1)[-1] if "=" in lines[i] else lines[i].split(":", 1)[-1]]
                           + lines[i + 1:j]).split()
            new = value.split()
            if key in MULTI:
                new = old + [v for v in new if v not in old]
            if new == old:
                return lines
            return lines[:i] + _format(key, new) + lines[j:]
    last = start
    for i in range(start + 1, end):
        if lines[i].strip():
            last = i
    return lines[: last + 1] + _format(key, value.split()) + lines[last + 1:]


def _format(key: str, values: list[str]) -> list[str]:
    if key in MULTI and len(values) > 1 or key == "index-servers":
        return [f"{key} ="] + [f"    {v}" for v in values]
    return [f"{key} = {' '.join(values)}"]


def default_paths() -> tuple[Path, Path]:
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return config / "pip" / "pip.conf", Path.home() / ".pypirc"


def write_merged(path: Path, wanted: str, mode: int | None = None) -> str:
    """Merge WANTED into PATH; returns what happened, for the report."""
    try:
        existing = path.read_text() if path.exists() else ""
    except (OSError, UnicodeDecodeError) as exc:
        raise ClientConfigError(f"cannot read {path}: {exc}") from exc
    new = merge(existing, wanted) if existing.strip() else wanted
    if new == existing:
        return f"ok       {path} (already set)"
    note = ""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            backup = path.with_name(f"{path.name}.bak-{time.strftime('%Y%m%dT%H%M%S')}")
            shutil.copy2(path, backup)
            note = f" (previous version kept as {backup})"
            if mode is None:
                mode = path.stat().st_mode & 0o777
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            os.fchmod(fd, 0o644 if mode is None else mode)
            with os.fdopen(fd, "w") as fh:
                fh.write(new)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as exc:
        raise ClientConfigError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return f"changed  {path}{note}"
