"""Ports: open in the firewall (firewalld, else ufw), and free before we listen."""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import StepError
from .base import Command, Plan, Step, WriteFile, q


class FirewallPort(Step):
    """A TCP port open in firewalld, permanently and at runtime (both, or it drifts);
    on hosts without firewalld but with an active ufw, a ufw rule.

    The port opened is recorded on the host (`record`): when the port changes, the one
    this tool opened before is closed, so a move leaves no stale hole behind.
    """

    def __init__(self, port: int, record: str):
        self.port, self.record = port, record
        self.name = f"Ensure the firewall allows {port}/tcp."

    def probes(self):
        # firewall-cmd costs ~0.2 s of Python start-up per call: ask firewalld over D-Bus
        # for the runtime state, and read the permanent zone file, when we can.
        p = self.port
        return {
            "runtime": (
                "busctl call org.fedoraproject.FirewallD1 /org/fedoraproject/FirewallD1 "
                f"org.fedoraproject.FirewallD1.zone queryPort sss '' {p} tcp "
                f"|| {{ firewall-cmd -q --query-port={p}/tcp && echo 'b true' || echo 'b false'; }}"
            ),
            "permanent": (
                "z=$(sed -n 's/^DefaultZone=//p' /etc/firewalld/firewalld.conf); z=${z:-public}; "
                "echo \"zone=$z\"; cat \"/etc/firewalld/zones/$z.xml\" 2>/dev/null "
                "|| cat \"/usr/lib/firewalld/zones/$z.xml\""
            ),
            "ufw": "systemctl -q is-active firewalld || { command -v ufw >/dev/null && ufw status; }",
            "record": f"cat {q(self.record)}",
        }

    def _old_ports(self, probed) -> list[int]:
        return sorted({int(w) for w in probed.get("record", "").split()
                       if w.isdigit() and 0 < int(w) < 65536 and int(w) != self.port})

    def plan(self, facts, probed):
        old = self._old_ports(probed)
        if not facts.firewalld:
            return self._ufw(probed, old)
        runtime = probed["runtime"].strip() == "b true"
        permanent = bool(re.search(
            rf'<port\s+(?:protocol="tcp"\s+port="{self.port}"|port="{self.port}"\s+protocol="tcp")',
            probed["permanent"]))
        actions = []
        if not permanent:
            actions.append(Command(f"firewall-cmd -q --permanent --add-port={self.port}/tcp"))
        if not runtime:
            actions.append(Command(f"firewall-cmd -q --add-port={self.port}/tcp"))
        for p in old:
            actions.append(Command(f"firewall-cmd -q --permanent --remove-port={p}/tcp; "
                                   f"firewall-cmd -q --remove-port={p}/tcp; :"))
        missing = [w for w, have in (("permanent", permanent), ("runtime", runtime)) if not have]
        note = f"firewalld: open {' and '.join(missing)}" if missing else "firewalld: open"
        return self._with_record(actions, probed, note, old)

    def _ufw(self, probed, old) -> Plan:
        status = probed.get("ufw", "")
        if "Status: active" not in status:
            return Plan(note=f"no firewalld and no active ufw: {self.port}/tcp left to you")
        actions = []
        if not re.search(rf"^{self.port}/tcp\s+ALLOW\s", status, re.M):
            actions.append(Command(f"ufw allow {self.port}/tcp"))
        actions += [Command(f"ufw delete allow {p}/tcp") for p in old
                    if re.search(rf"^{p}/tcp\s+ALLOW\s", status, re.M)]
        return self._with_record(actions, probed, "ufw: open", old)

    def _with_record(self, actions: list, probed, note: str, old: list[int]) -> Plan:
        """Actions plus, when the record is not just this port, rewriting it."""
        if old:
            note += f"; close {', '.join(f'{p}/tcp' for p in old)} (opened here before)"
        if actions or probed.get("record", "").split() != [str(self.port)]:
            actions = actions + [Command(f"mkdir -p {q(str(Path(self.record).parent))}"),
                                 WriteFile(self.record, f"{self.port}\n".encode(),
                                           old=(probed.get("record", "").strip() + "\n").encode()
                                           if probed.get("record", "").strip() else b"")]
        return Plan(actions, note)


class PortFree(Step):
    """Guard: fail before changing anything if another program holds the port."""

    def __init__(self, port: int, service: str):
        self.port, self.service = port, service
        self.name = f"Ensure port {port} is free for {service}."

    def probes(self):
        return {"ss": (f"systemctl show -p MainPID {q(self.service)}; "
                       f"command -v ss >/dev/null || echo __no_ss__; "
                       f"ss -ltnp 'sport = :{self.port}'")}

    def plan(self, facts, probed):
        text = probed["ss"]
        if "__no_ss__" in text:
            raise StepError(f"cannot check port {self.port}: the host has no `ss` (install iproute2)")
        m = re.search(r"MainPID=(\d+)", text)
        ours = m[1] if m else "0"
        for line in text.splitlines():
            if not line.startswith("LISTEN"):
                continue
            # iproute2 >= 4.x prints ("name",pid=N,fd=M); older ones ("name",N,M)
            users = re.findall(r'\("([^"]+)",(?:pid=)?(\d+)', line)
            if not users:
                raise StepError(f"port {self.port} is already in use (owner not shown by ss): "
                                f"choose another with --port")
            if all(pid != ours for _, pid in users):
                names = ", ".join(f"{n} (pid {p})" for n, p in users)
                raise StepError(f"port {self.port} is already used by {names}: stop it or "
                                f"choose another with --port")
        return Plan(note="free" if ours == "0" else f"held by {self.service} (pid {ours})")
