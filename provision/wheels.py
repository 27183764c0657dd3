"""Pinned wheel sets for the pypiserver venv, and a control-side wheelhouse.

Why this module exists: the hosts we deploy to range from CentOS 7 (Python 3.6,
glibc 2.17, pip 9.0.3 in a fresh venv) to Ubuntu 24.04 (Python 3.12). Letting each
host resolve ``pip install pypiserver[cache,passlib]`` on its own gives a different,
sometimes broken, result per host (pypiserver 2.1-2.3 "support" 3.6 but cannot install
there, watchdog 6 silently disables the cached-dir cache, bcrypt >= 4.1 breaks passlib).
So every supported Python gets one verified, complete pin set (``pins/pyX.Y.txt``),
and the control machine downloads exactly those wheels once, for the host's Python,
glibc and CPU, so hosts install offline (``--no-index --find-links``) and identically.

Everything here is a pure function of its arguments, the pins files and the cache
folder: stdlib only, nothing printed; failures are exceptions with one-line messages.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from . import pipdownload
from .errors import UnsupportedPython, WheelhouseError  # noqa: F401 - raised here
from .facts.host import version_key
from .facts.python import canonical_name  # noqa: F401 - the package's name for it

__all__ = [
    "PINS_DIR",
    "WHEEL_CACHE",
    "UnsupportedPython",
    "WheelhouseError",
    "supported_pythons",
    "pins_for",
    "platform_tags",
    "wheelhouse_dir",
    "ensure_wheelhouse",
]

#: The pin sets live next to this module so they ship inside the package.
PINS_DIR = Path(__file__).resolve().parent / "pins"

#: Where downloaded wheels are kept between runs, so a re-run of the playbook against
#: many hosts downloads each wheel once. Overridable for CI and tests.
WHEEL_CACHE = Path(
    os.environ.get("PROVISION_WHEEL_CACHE")
    or Path.home() / ".cache" / "provision" / "wheels"
).expanduser()

_PIN_FILE_RE = re.compile(r"^py(\d+)\.(\d+)\.txt$")
_PIN_LINE_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9][A-Za-z0-9.+!_-]*)$")
_GLIBC_RE = re.compile(r"^(\d+)\.(\d+)$")
_ARCH_ALIASES = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64", "i386": "i686"}
# Lowest glibc minor for which manylinux wheels exist per arch: x86 had manylinux1
# (glibc 2.5); every other arch starts at manylinux2014 (glibc 2.17).
_LEGACY_FLOOR = {"x86_64": 5, "i686": 5}
_LEGACY_ALIASES = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}


def supported_pythons() -> list[str]:
    """The "X.Y" versions that have a pins file, oldest first.

    Derived from the files themselves so adding ``pins/py3.14.txt`` is all it takes.
    """
    found = []
    for path in PINS_DIR.iterdir() if PINS_DIR.is_dir() else ():
        m = _PIN_FILE_RE.match(path.name)
        if m and path.is_file():
            found.append(f"{m.group(1)}.{m.group(2)}")
    return sorted(found, key=version_key)


def _pins_path(python_version: str) -> Path:
    """The pins file for "X.Y" (a full "X.Y.Z" is accepted and cut to "X.Y")."""
    version = str(python_version).strip()
    parts = version.split(".")
    if len(parts) >= 2 and all(p.isdigit() for p in parts[:2]):
        version = f"{int(parts[0])}.{int(parts[1])}"
    supported = supported_pythons()
    if version not in supported:
        raise UnsupportedPython(
            f"no pypiserver pin set for Python {python_version!s}; "
            f"supported: {', '.join(supported)}"
        )
    return PINS_DIR / f"py{version}.txt"


def pins_for(python_version: str) -> list[str]:
    """The ``name==version`` lines of the pin set, comments and blank lines dropped.

    Raises UnsupportedPython for a version without a pins file, and ValueError for a
    line that is not an exact ``name==version`` pin (the file must stay fully pinned).
    """
    path = _pins_path(python_version)
    pins = []
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if not _PIN_LINE_RE.match(line):
            raise ValueError(f"{path.name}:{lineno}: not a name==version pin: {raw.strip()!r}")
        pins.append(line)
    return pins


def _normalise_arch(arch: str) -> str:
    arch = str(arch).strip().lower()
    return _ARCH_ALIASES.get(arch, arch)


def _parse_glibc(glibc: str) -> tuple[int, int]:
    m = _GLIBC_RE.match(str(glibc).strip())
    if not m:
        raise ValueError(f"glibc version must look like '2.17', got {glibc!r}")
    return int(m.group(1)), int(m.group(2))


def platform_tags(glibc: str, arch: str) -> list[str]:
    """The manylinux platform tags a host with this glibc and machine can load, best first.

    Why: ``pip download --platform`` does not expand tags by itself, so we list every
    PEP 600 tag from the host's glibc down to the oldest manylinux, plus the legacy
    aliases (manylinux2014/2010/1) that older wheels such as bcrypt 4.0.1 or
    watchdog 2.2.1 are published under. Never a tag newer than the host's glibc:
    a manylinux_2_28 wheel on CentOS 7 (glibc 2.17) would install and then fail to load.
    """
    major, minor = _parse_glibc(glibc)
    machine = _normalise_arch(arch)
    if not re.match(r"^[a-z0-9_]+$", machine):
        raise ValueError(f"unexpected machine name {arch!r}")
    if major != 2:
        raise ValueError(f"only glibc 2.x is known to manylinux, got {glibc!r}")
    floor = _LEGACY_FLOOR.get(machine, 17)
    if minor < floor:
        raise ValueError(f"glibc {glibc} on {machine} is older than any manylinux tag")
    tags = []
    for m in range(minor, floor - 1, -1):
        tags.append(f"manylinux_2_{m}_{machine}")
        legacy = _LEGACY_ALIASES.get(m)
        if legacy and (m == 17 or machine in _LEGACY_FLOOR):
            tags.append(f"{legacy}_{machine}")
    return tags


def _cp_tag(python_version: str) -> str:
    major, minor = (int(p) for p in str(python_version).split(".")[:2])
    return f"cp{major}{minor}"


def wheelhouse_dir(python_version: str, glibc: str, arch: str) -> Path:
    """The cache folder for one target: ``WHEEL_CACHE/cp{XY}-{arch}-glibc{v}``.

    Keyed by everything that changes which wheel pip picks, so targets never share a
    folder and a folder never holds two candidates for one pin.
    """
    major, minor = _parse_glibc(glibc)
    return Path(WHEEL_CACHE) / f"{_cp_tag(python_version)}-{_normalise_arch(arch)}-glibc{major}.{minor}"


def _wheel_fits(filename: str, python_version: str, platforms: set[str]) -> bool:
    """Whether a wheel file name is installable on the target (python, abi, platform)."""
    parts = filename[:-4].split("-")
    if len(parts) not in (5, 6):
        return False
    py_tags, abi_tags, plat_tags = (p.split(".") for p in parts[-3:])
    if not set(plat_tags) & (platforms | {"any"}):
        return False
    major, minor = (int(p) for p in str(python_version).split(".")[:2])
    for py in py_tags:
        if py in ("py3", f"py{major}{minor}", f"cp{major}{minor}"):
            return True
        m = re.match(r"^cp3(\d+)$", py)
        if m and "abi3" in abi_tags and int(m.group(1)) <= minor:
            return True
    return False


def _wheel_for_pin(folder: Path, pin: str, python_version: str, platforms: list[str]) -> Path | None:
    """The wheel in ``folder`` that satisfies ``pin`` on the target, best platform first."""
    name, version = pin.split("==", 1)
    want_name, want_version = canonical_name(name), version.lower()
    candidates = []
    for path in folder.glob("*.whl") if folder.is_dir() else ():
        parts = path.name[:-4].split("-")
        if len(parts) < 5:
            continue
        if canonical_name(parts[0]) != want_name or parts[1].lower() != want_version:
            continue
        if _wheel_fits(path.name, python_version, set(platforms)):
            candidates.append(path)
    if not candidates:
        return None
    order = {tag: i for i, tag in enumerate(platforms + ["any"])}

    def rank(p: Path) -> tuple[int, str]:
        plats = p.name[:-4].split("-")[-1].split(".")
        return (min(order.get(t, len(order)) for t in plats), p.name)

    return sorted(candidates, key=rank)[0]


def _failed_pin(output: str, pins: list[str]) -> str:
    """Which pin pip choked on: the one its ERROR lines name, else the last one collected."""
    lines = [ln for ln in output.splitlines() if ln.strip()]
    for wanted in ("ERROR", "Collecting"):
        for line in reversed([ln for ln in lines if ln.lstrip().startswith(wanted)]):
            low = line.lower()
            for pin in pins:
                if re.search(r"(?<![a-z0-9._-])" + re.escape(pin.lower()) + r"(?![0-9a-z.])", low):
                    return pin
    return ", ".join(pins)


def pins_with(python_version: str, pypiserver: str = "") -> list[str]:
    """The pin set, with pypiserver at the version asked (an upgrade's --to) when given."""
    pins = pins_for(python_version)
    if not pypiserver:
        return pins
    return [f"pypiserver=={pypiserver}" if p.split("==")[0].lower() == "pypiserver" else p for p in pins]


def ensure_wheelhouse(python_version: str, glibc: str, arch: str, pins: list[str] | None = None) -> list[Path]:
    """Make sure every pinned wheel for the target is in the cache; return them in pin order.

    Runs ``pip download --only-binary=:all: --no-deps`` with the target's Python,
    implementation and platform tags (on the control machine, with the Python running
    this code), only when some pinned wheel is missing: a warm cache runs no pip at all.
    Downloads land in a temporary folder inside the cache and are moved in with
    ``os.replace``, so an interrupted run never leaves a half-written wheel that a later
    run would trust. Raises WheelhouseError (one line: the pin that failed and pip's
    last error line) when pip fails or a pin has no fitting wheel afterwards.
    """
    pins = pins if pins is not None else pins_for(python_version)
    platforms = platform_tags(glibc, arch)
    folder = wheelhouse_dir(python_version, glibc, arch)

    found = {pin: _wheel_for_pin(folder, pin, python_version, platforms) for pin in pins}
    missing = [pin for pin, wheel in found.items() if wheel is None]
    if not missing:
        return [found[pin] for pin in pins]

    major, minor = (int(p) for p in str(python_version).split(".")[:2])
    args = ["--only-binary=:all:", "--no-deps", "--python-version", f"{major}.{minor}",
            "--implementation", "cp"]
    for tag in platforms + ["any"]:
        args += ["--platform", tag]
    try:
        got = pipdownload.download([*args, *missing], folder, pattern="*.whl")
    except pipdownload.DownloadTimeout as exc:
        raise WheelhouseError(f"{exc} (wheels {', '.join(missing)})") from None
    if got.returncode != 0:
        raise WheelhouseError(
            f"cannot download {_failed_pin(got.output, missing)} for cp{major}{minor} "
            f"{_normalise_arch(arch)} glibc {glibc}: {got.last_line}"
        )

    result = []
    for pin in pins:
        wheel = _wheel_for_pin(folder, pin, python_version, platforms)
        if wheel is None:
            raise WheelhouseError(
                f"cannot download {pin} for cp{major}{minor} {_normalise_arch(arch)} "
                f"glibc {glibc}: pip succeeded but left no matching wheel"
            )
        result.append(wheel)
    return result
