"""Facts about ports: who listens on one, what firewalld and ufw allow."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .base import Fact


@dataclass(frozen=True)
class Listeners(Fact):
    """The programs listening on a TCP port: one tuple of (name, pid) per listening socket
    (empty when ss does not show the owner); None when the host has no `ss`."""

    port: int

    def command(self):
        return f"ss -ltnp 'sport = :{int(self.port)}'"

    def parse(self, text, rc) -> list[tuple[tuple[str, int], ...]] | None:
        if rc == 127:   # the shell's "command not found"
            return None
        # iproute2 >= 4.x prints ("name",pid=N,fd=M); older ones ("name",N,M)
        return [tuple((name, int(pid)) for name, pid in re.findall(r'\("([^"]+)",(?:pid=)?(\d+)', line))
                for line in text.splitlines() if line.startswith("LISTEN")]


@dataclass(frozen=True)
class FirewalldRuntimePort(Fact):
    """Is the TCP port open in firewalld's runtime configuration (default zone)?

    firewall-cmd costs ~0.2 s of Python start-up per call: firewalld is asked over D-Bus
    (busctl), with firewall-cmd only where busctl is missing."""

    port: int

    def command(self):
        p = int(self.port)
        return ("busctl call org.fedoraproject.FirewallD1 /org/fedoraproject/FirewallD1 "
                f"org.fedoraproject.FirewallD1.zone queryPort sss '' {p} tcp "
                f"|| {{ firewall-cmd -q --query-port={p}/tcp && echo 'b true' || echo 'b false'; }}")

    def parse(self, text, rc) -> bool:
        return text.strip() == "b true"


@dataclass(frozen=True)
class ZonePorts:
    zone: str
    ports: frozenset[tuple[int, str]]   # (port, protocol) in the zone's permanent file


@dataclass(frozen=True)
class FirewalldZone(Fact):
    """The default zone's permanent ports, read from its file (not firewall-cmd: see above)."""

    def command(self):
        return ("z=$(sed -n 's/^DefaultZone=//p' /etc/firewalld/firewalld.conf); z=${z:-public}; "
                "echo \"zone=$z\"; cat \"/etc/firewalld/zones/$z.xml\" 2>/dev/null "
                "|| cat \"/usr/lib/firewalld/zones/$z.xml\"")

    def parse(self, text, rc) -> ZonePorts:
        zone = re.search(r"^zone=(.*)$", text, re.M)
        ports = set()
        for attrs in re.findall(r"<port\s([^>]*)>", text):
            a = dict(re.findall(r'(\w+)="([^"]*)"', attrs))
            if a.get("port", "").isdigit():
                ports.add((int(a["port"]), a.get("protocol", "")))
        return ZonePorts(zone[1] if zone else "", frozenset(ports))


@dataclass(frozen=True)
class UfwRules:
    active: bool
    allowed: frozenset[str]   # rules ALLOWed, as ufw names them ("8000/tcp")


@dataclass(frozen=True)
class Ufw(Fact):
    """ufw's state, asked only on hosts without a running firewalld."""

    def command(self):
        return "systemctl -q is-active firewalld || { command -v ufw >/dev/null && ufw status; }"

    def parse(self, text, rc) -> UfwRules:
        allowed = frozenset(m[1] for m in re.finditer(r"^(\S+)\s+ALLOW\s", text, re.M))
        return UfwRules("Status: active" in text, allowed)
