"""Resolve a requirements file on the control machine and download what clients need.

One download target per (Python version, platform): the control machine's own (a plain
`pip download`, wheels where they exist and sdists otherwise), the server host's own and
any asked for with --python/--platform (binary wheels for that interpreter and platform:
pip cannot build an sdist for a foreign target). Files land in one shared cache; each
target's resolution is remembered by the hash of the requirements and the target, so a
second run with nothing new runs no pip at all.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import pipdownload
from .errors import MirrorError  # noqa: F401 - raised here

MIRROR_CACHE = Path(os.environ.get("PROVISION_MIRROR_CACHE",
                                   Path.home() / ".cache" / "provision" / "mirror"))
_lock = threading.Lock()


@dataclass(frozen=True)
class DownloadTarget:
    python: str | None = None          # "3.11"; None: this machine's interpreter
    platforms: tuple[str, ...] = ()    # pip --platform tags; () with python None: native

    @property
    def native(self) -> bool:
        return self.python is None and not self.platforms

    def label(self) -> str:
        if self.native:
            return f"this machine (cp{sys.version_info[0]}{sys.version_info[1]})"
        return f"cp{(self.python or '').replace('.', '')} {self.platforms[0] if self.platforms else 'any'}"


@dataclass
class Resolved:
    files: list[Path] = field(default_factory=list)
    downloaded: int = 0
    downloaded_bytes: int = 0


def _included(path: Path, seen: set[Path]) -> list[str]:
    """The text of a requirements file and of every file it pulls in with -r / -c."""
    path = path.resolve()
    if path in seen:
        return []
    seen.add(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise MirrorError(f"cannot read {path}: {exc.strerror or exc}") from exc
    texts = [text]
    for line in text.splitlines():
        m = re.match(r"^\s*(?:-r|-c|--requirement|--constraint)[\s=]+(\S+)", line)
        if m:
            texts += _included(path.parent / m[1], seen)
    return texts


def _key(texts: list[str], target: DownloadTarget) -> str:
    blob = json.dumps([texts, target.python, list(target.platforms)], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def native_covers(python: str, glibc: str, arch: str) -> bool:
    """Do this machine's own downloads fit a host with this Python, glibc and CPU?

    Same interpreter version and CPU, and a glibc at least as new as ours: every wheel pip
    picks here loads there, so resolving again for the host would only repeat the work.
    """
    import platform

    here = platform.libc_ver()
    if here[0] != "glibc" or not glibc:
        return False
    mine = tuple(int(x) for x in here[1].split(".")[:2])
    theirs = tuple(int(x) for x in glibc.split(".")[:2])
    return (python == f"{sys.version_info[0]}.{sys.version_info[1]}"
            and arch == platform.machine() and theirs >= mine)


def _pip_args(target: DownloadTarget) -> list[str]:
    if target.native:
        return []
    args = ["--only-binary=:all:", "--implementation", "cp"]
    if target.python:
        args += ["--python-version", target.python]
    for tag in target.platforms:
        args += ["--platform", tag]
    return args


def _culprit(output: str) -> str:
    for pattern in (r"No matching distribution found for (\S+)",
                    r"Could not find a version that satisfies the requirement (\S+)",
                    r"Cannot install (.+?) because", r"ResolutionImpossible"):
        m = re.search(pattern, output)
        if m:
            return m[1] if m.groups() else "the requirements (conflicting versions)"
    return ""


def resolve(requirements_file: Path, target: DownloadTarget, cache: Path | None = None,
            max_age: float = 12 * 3600) -> Resolved:
    """Files for one target, from the cache when this resolution was done less than
    MAX_AGE seconds ago (0: resolve again: unpinned requirements pick up new releases)."""
    cache = cache or MIRROR_CACHE
    texts = _included(requirements_file, set())
    files_dir, manifests = cache / "files", cache / "resolutions"
    manifest = manifests / f"{_key(texts, target)}.json"
    with _lock:
        if manifest.exists() and time.time() - manifest.stat().st_mtime < max_age:
            names = json.loads(manifest.read_text())
            if all((files_dir / n).exists() for n in names):
                return Resolved([files_dir / n for n in names])
        manifests.mkdir(parents=True, exist_ok=True)
        args = ["-q", "--find-links", str(files_dir), "-r", str(requirements_file.resolve()),
                *_pip_args(target)]
        # our cache is the only find-links; the user's index settings still apply
        env = {k: v for k, v in os.environ.items() if k not in ("PIP_FIND_LINKS", "PIP_NO_INDEX")}
        try:   # one retry: a broken download or a network hiccup, not an unresolvable name
            fetched = pipdownload.download(args, files_dir, cwd=requirements_file.resolve().parent,
                                           env=env, attempts=2, retry=lambda out: not _culprit(out))
        except pipdownload.DownloadTimeout as exc:
            raise MirrorError(f"{exc} ({target.label()})") from None
        if fetched.returncode != 0:
            culprit = _culprit(fetched.output)
            if culprit:
                raise MirrorError(f"cannot resolve {culprit} for {target.label()}: nothing was sent")
            raise MirrorError(f"pip download failed for {target.label()}: {fetched.last_line}")
        got = Resolved(files=fetched.files, downloaded=len(fetched.new),
                       downloaded_bytes=sum(f.stat().st_size for f in fetched.new))
        manifest.write_text(json.dumps([f.name for f in got.files]))
        return got
