"""Ports: open in the firewall (firewalld, else ufw), and free before we listen."""

from __future__ import annotations

from pathlib import Path

from ..errors import StepError
from ..facts import FileText, FirewalldRuntimePort, FirewalldZone, Listeners, ServiceState, Ufw
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
        return {"runtime": FirewalldRuntimePort(self.port), "permanent": FirewalldZone(),
                "ufw": Ufw(), "record": FileText(self.record)}

    def _old_ports(self, probed) -> list[int]:
        return sorted({int(w) for w in (probed["record"] or "").split()
                       if w.isdigit() and 0 < int(w) < 65536 and int(w) != self.port})

    def plan(self, facts, probed):
        old = self._old_ports(probed)
        if not facts.firewalld:
            return self._ufw(probed, old)
        runtime = probed["runtime"]
        permanent = (self.port, "tcp") in probed["permanent"].ports
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
        ufw = probed["ufw"]
        if not ufw.active:
            return Plan(note=f"no firewalld and no active ufw: {self.port}/tcp left to you")
        actions = []
        if f"{self.port}/tcp" not in ufw.allowed:
            actions.append(Command(f"ufw allow {self.port}/tcp"))
        actions += [Command(f"ufw delete allow {p}/tcp") for p in old if f"{p}/tcp" in ufw.allowed]
        return self._with_record(actions, probed, "ufw: open", old)

    def _with_record(self, actions: list, probed, note: str, old: list[int]) -> Plan:
        """Actions plus, when the record is not just this port, rewriting it."""
        if old:
            note += f"; close {', '.join(f'{p}/tcp' for p in old)} (opened here before)"
        recorded = (probed["record"] or "").strip()
        if actions or recorded.split() != [str(self.port)]:
            actions = actions + [Command(f"mkdir -p {q(str(Path(self.record).parent))}"),
                                 WriteFile(self.record, f"{self.port}\n".encode(),
                                           old=(recorded + "\n").encode() if recorded else b"")]
        return Plan(actions, note)


class PortFree(Step):
    """Guard: fail before changing anything if another program holds the port."""

    def __init__(self, port: int, service: str):
        self.port, self.service = port, service
        self.name = f"Ensure port {port} is free for {service}."

    def probes(self):
        return {"state": ServiceState(self.service), "listeners": Listeners(self.port)}

    def plan(self, facts, probed):
        listeners, ours = probed["listeners"], probed["state"].main_pid
        if listeners is None:
            raise StepError(f"cannot check port {self.port}: the host has no `ss` (install iproute2)")
        for users in listeners:
            if not users:
                raise StepError(f"port {self.port} is already in use (owner not shown by ss): "
                                f"choose another with --port")
            if all(pid != ours for _, pid in users):
                names = ", ".join(f"{n} (pid {p})" for n, p in users)
                raise StepError(f"port {self.port} is already used by {names}: stop it or "
                                f"choose another with --port")
        return Plan(note="free" if not ours else f"held by {self.service} (pid {ours})")
