"""Facts about the host as a whole, gathered for every run: OS, Pythons, init, SELinux..."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from .base import Fact, Output

FAMILIES = {
    # os-release ID / ID_LIKE word -> family
    "debian": "Debian", "ubuntu": "Debian",
    "rhel": "RedHat", "centos": "RedHat", "fedora": "RedHat", "rocky": "RedHat", "almalinux": "RedHat",
}


@dataclass(frozen=True)
class OsRelease(Fact):
    """/etc/os-release as a dict (values unquoted the way a shell would)."""

    def command(self):
        return "cat /etc/os-release"

    def parse(self, text, rc) -> dict:
        out = {}
        for line in text.splitlines():
            if "=" in line and not line.lstrip().startswith("#"):
                k, v = line.split("=", 1)
                try:
                    out[k.strip()] = shlex.split(v)[0] if v.strip() else ""
                except ValueError:
                    out[k.strip()] = v.strip().strip("\"'")
        return out


@dataclass(frozen=True)
class Pythons(Fact):
    """Python 3 interpreters by version: {'3.11': '/usr/bin/python3.11'}."""

    def command(self):
        return "ls -1 /usr/bin/python3* /usr/local/bin/python3*"

    def parse(self, text, rc) -> dict:
        found = {}
        for path in text.split():
            m = re.search(r"/python(3\.\d+)$", path)
            if m and m[1] not in found:
                found[m[1]] = path
        return found


@dataclass(frozen=True)
class DefaultPython(Fact):
    """Version of the distro's own python3 ('3.11'), which its python3-venv package serves."""

    def command(self):
        return "readlink -f /usr/bin/python3"

    def parse(self, text, rc) -> str:
        m = re.search(r"python(3\.\d+)$", text.strip())
        return m[1] if m else ""


@dataclass(frozen=True)
class InitSystem(Fact):
    """The name of PID 1 ('systemd')."""

    def command(self):
        return "cat /proc/1/comm"


@dataclass(frozen=True)
class SystemdVersion(Fact):
    def command(self):
        return "systemctl --version | head -n1"

    def parse(self, text, rc) -> int:
        m = re.search(r"systemd (\d+)", text)
        return int(m[1]) if m else 0


@dataclass(frozen=True)
class Selinux(Fact):
    """'enforcing', 'permissive', 'disabled', or 'absent' (no SELinux tools)."""

    def command(self):
        return "getenforce || echo absent"

    def parse(self, text, rc) -> str:
        return (text.strip().splitlines() or ["absent"])[0].lower()


@dataclass(frozen=True)
class FirewalldActive(Fact):
    def command(self):
        return "systemctl is-active firewalld"

    def parse(self, text, rc) -> bool:
        return text.strip() == "active"


@dataclass(frozen=True)
class Glibc(Fact):
    def command(self):
        return "getconf GNU_LIBC_VERSION"

    def parse(self, text, rc) -> str:
        m = re.search(r"(\d+\.\d+)", text)
        return m[1] if m else ""


@dataclass(frozen=True)
class Arch(Fact):
    def command(self):
        return "uname -m"


@dataclass(frozen=True)
class SshUser(Fact):
    """The account we came in as (sudo keeps it in SUDO_USER): never the service's account."""

    def command(self):
        return "echo \"${SUDO_USER:-$(id -un)}\""


#: HostFacts field -> the fact that fills it (the section keys of the gather script)
HOST_FACTS: dict[str, Fact] = {
    "os": OsRelease(), "pythons": Pythons(), "python_default": DefaultPython(),
    "init": InitSystem(), "systemd": SystemdVersion(), "selinux": Selinux(),
    "firewalld": FirewalldActive(), "glibc": Glibc(), "arch": Arch(), "ssh_user": SshUser(),
}


@dataclass
class HostFacts:
    """What the deployment needs to know about a host, parsed."""

    os: dict = field(default_factory=dict)
    pythons: dict = field(default_factory=dict)
    python_default: str = ""
    init: str = ""
    systemd: int = 0
    selinux: str = "absent"
    firewalld: bool = False
    glibc: str = ""
    arch: str = ""
    ssh_user: str = ""

    @property
    def family(self) -> str | None:
        words = [self.os.get("ID", "")] + self.os.get("ID_LIKE", "").split()
        for word in words:
            if word in FAMILIES:
                return FAMILIES[word]
        return None

    @property
    def os_id(self) -> str:
        return self.os.get("ID", "unknown")

    @property
    def os_major(self) -> str:
        return self.os.get("VERSION_ID", "").split(".")[0]

    @property
    def os_pretty(self) -> str:
        return self.os.get("PRETTY_NAME") or f"{self.os_id} {self.os.get('VERSION_ID', '')}".strip()

    @property
    def selinux_enabled(self) -> bool:
        return self.selinux in ("enforcing", "permissive")

    def summary(self) -> str:
        py = ", ".join(sorted(self.pythons, key=version_key)) or "no python3"
        fw = "firewalld running" if self.firewalld else "no firewalld"
        return (f"{self.os_pretty}, python {py}, systemd {self.systemd or '?'}, {fw}, "
                f"SELinux {self.selinux}")


def version_key(v: str) -> tuple:
    """'3.11' -> (3, 11): versions sort as numbers, not strings."""
    return tuple(int(x) for x in v.split(".") if x.isdigit())


def parse_host_facts(sections: dict[str, Output]) -> HostFacts:
    """HostFacts from the gathered sections (keyed by HostFacts field)."""
    return HostFacts(**{key: fact.parse(*sections.get(key, Output()))
                        for key, fact in HOST_FACTS.items()})


def host_fact_commands() -> dict[str, str]:
    return {key: fact.command() for key, fact in HOST_FACTS.items()}
