"""Facts about a host, gathered in one round trip and parsed here.

A fact is a shell command and a `process(text)` that parses its output locally. The
runner joins every fact's command and every step's probe into one script whose
sections are separated by marker lines, runs it once, and splits the output back
(`split_sections`). Tests feed `process` real outputs captured per distro.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

MARK = "@@@provision:"

FAMILIES = {
    # os-release ID / ID_LIKE word -> family
    "debian": "Debian", "ubuntu": "Debian",
    "rhel": "RedHat", "centos": "RedHat", "fedora": "RedHat", "rocky": "RedHat", "almalinux": "RedHat",
}


def section_script(sections: dict[str, str]) -> str:
    """One script printing each command's output after a marker line naming it."""
    # stdin stays the script itself (sh -s): each section reads /dev/null instead
    lines = ["exec 2>/dev/null", "export LC_ALL=C"]
    for key, command in sections.items():
        lines.append(f"printf '\\n%s\\n' {shlex.quote(MARK + key)}")
        lines.append(f"{{ {command.strip()}\n}} </dev/null")
    lines.append(f"printf '\\n%s\\n' {shlex.quote(MARK + 'end')}")
    return "\n".join(lines) + "\n"


def split_sections(output: str) -> dict[str, str]:
    parts: dict[str, str] = {}
    key, buf = None, []
    for line in output.splitlines():
        if line.startswith(MARK):
            if key is not None:
                parts[key] = "\n".join(buf).strip("\n")
            key, buf = line[len(MARK):], []
        elif key is not None:
            buf.append(line)
    if key is not None:  # a script that stopped early (the lock was busy) has no end marker
        parts[key] = "\n".join(buf).strip("\n")
    parts.pop("end", None)
    return parts


class Fact:
    """A command run on the host and the parser of its output."""

    command = ""

    @staticmethod
    def process(text: str):
        return text.strip()


class OsRelease(Fact):
    command = "cat /etc/os-release"

    @staticmethod
    def process(text: str) -> dict:
        out = {}
        for line in text.splitlines():
            if "=" in line and not line.lstrip().startswith("#"):
                k, v = line.split("=", 1)
                try:
                    out[k.strip()] = shlex.split(v)[0] if v.strip() else ""
                except ValueError:
                    out[k.strip()] = v.strip().strip("\"'")
        return out


class Pythons(Fact):
    """Python 3 interpreters by version: {'3.11': '/usr/bin/python3.11'}."""

    command = "ls -1 /usr/bin/python3* /usr/local/bin/python3*"

    @staticmethod
    def process(text: str) -> dict:
        found = {}
        for path in text.split():
            m = re.search(r"/python(3\.\d+)$", path)
            if m and m[1] not in found:
                found[m[1]] = path
        return found


class DefaultPython(Fact):
    """Version of the distro's own python3 ('3.11'), which its python3-venv package serves."""

    command = "readlink -f /usr/bin/python3"

    @staticmethod
    def process(text: str) -> str:
        m = re.search(r"python(3\.\d+)$", text.strip())
        return m[1] if m else ""


class SystemdVersion(Fact):
    command = "systemctl --version | head -n1"

    @staticmethod
    def process(text: str) -> int:
        m = re.search(r"systemd (\d+)", text)
        return int(m[1]) if m else 0


class Selinux(Fact):
    """'enforcing', 'permissive', 'disabled', or 'absent' (no SELinux tools)."""

    command = "getenforce || echo absent"

    @staticmethod
    def process(text: str) -> str:
        return (text.strip().splitlines() or ["absent"])[0].lower()


class ServiceActive(Fact):
    @staticmethod
    def process(text: str) -> bool:
        return text.strip() == "active"


class Glibc(Fact):
    command = "getconf GNU_LIBC_VERSION"

    @staticmethod
    def process(text: str) -> str:
        m = re.search(r"(\d+\.\d+)", text)
        return m[1] if m else ""


HOST_FACTS: dict[str, tuple[str, type[Fact]]] = {
    "os_release": (OsRelease.command, OsRelease),
    "pythons": (Pythons.command, Pythons),
    "python_default": (DefaultPython.command, DefaultPython),
    "init": ("cat /proc/1/comm", Fact),
    "systemd": (SystemdVersion.command, SystemdVersion),
    "selinux": (Selinux.command, Selinux),
    "firewalld": ("systemctl is-active firewalld", ServiceActive),
    "glibc": (Glibc.command, Glibc),
    "arch": ("uname -m", Fact),
    # the account we came in as (sudo keeps it in SUDO_USER): never the service's account
    "ssh_user": ("echo \"${SUDO_USER:-$(id -un)}\"", Fact),
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


def parse_host_facts(sections: dict[str, str]) -> HostFacts:
    values = {key: parser.process(sections.get(key, "")) for key, (_, parser) in HOST_FACTS.items()}
    return HostFacts(
        os=values["os_release"], pythons=values["pythons"],
        python_default=values["python_default"], init=values["init"],
        systemd=values["systemd"], selinux=values["selinux"], firewalld=values["firewalld"],
        glibc=values["glibc"], arch=values["arch"], ssh_user=values["ssh_user"],
    )


def host_fact_commands() -> dict[str, str]:
    return {key: command for key, (command, _) in HOST_FACTS.items()}
