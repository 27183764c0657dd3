"""Ports: open in the firewall (firewalld, else ufw), and free before we listen."""

from __future__ import annotations

from pathlib import Path

from ..errors import StepError
from ..facts import FileText, FirewalldRuntimePort, FirewalldZone, Listeners, PathExists, ServiceState, Ufw
from .base import Command, Plan, Step, WriteFile, q


class FirewallPort(Step):
    """TCP ports open in firewalld, permanently and at runtime (both, or it drifts); on
    hosts without firewalld but with an active ufw, ufw rules.

    The ports opened are recorded on the host (`record`): a port this tool opened before and
    no longer uses is closed, so a move leaves no stale hole behind.
    """

    def __init__(self, port: int | list[int], record: str):
        self.ports = [port] if isinstance(port, int) else list(port)
        self.record = record
        shown = ", ".join(f"{p}/tcp" for p in self.ports)
        self.name = f"Ensure the firewall allows {shown}." if self.ports else \
            "Ensure the ports this tool opened in the firewall are closed."

    def probes(self):
        return {**{f"runtime{p}": FirewalldRuntimePort(p) for p in self.ports},
                "permanent": FirewalldZone(), "ufw": Ufw(), "record": FileText(self.record)}

    def _old_ports(self, probed) -> list[int]:
        return sorted({int(w) for w in (probed["record"] or "").split()
                       if w.isdigit() and 0 < int(w) < 65536 and int(w) not in self.ports})

    def plan(self, facts, probed):
        old = self._old_ports(probed)
        if not facts.firewalld:
            return self._ufw(probed, old)
        actions, missing, opening = [], [], set()
        for p in self.ports:
            permanent = (p, "tcp") in probed["permanent"].ports
            runtime = probed[f"runtime{p}"]
            if not permanent:
                opening.add(p)
            if not permanent:
                actions.append(Command(f"firewall-cmd -q --permanent --add-port={p}/tcp"))
            if not runtime:
                actions.append(Command(f"firewall-cmd -q --add-port={p}/tcp"))
            gaps = [w for w, have in (("permanent", permanent), ("runtime", runtime)) if not have]
            if gaps:
                missing.append(f"{p}/tcp {' and '.join(gaps)}")
        for p in old:
            actions.append(Command(f"firewall-cmd -q --permanent --remove-port={p}/tcp; "
                                   f"firewall-cmd -q --remove-port={p}/tcp; :"))
        note = f"firewalld: open {'; '.join(missing)}" if missing else "firewalld: open"
        return self._with_record(actions, probed, note, old, opening)

    def _ufw(self, probed, old) -> Plan:
        ufw = probed["ufw"]
        shown = ", ".join(f"{p}/tcp" for p in self.ports)
        if not ufw.active:
            return Plan(note=f"no firewalld and no active ufw: {shown} left to you")
        opening = {p for p in self.ports if f"{p}/tcp" not in ufw.allowed}
        actions = [Command(f"ufw allow {p}/tcp") for p in sorted(opening)]
        actions += [Command(f"ufw delete allow {p}/tcp") for p in old if f"{p}/tcp" in ufw.allowed]
        return self._with_record(actions, probed, "ufw: open", old, opening)

    def _with_record(self, actions: list, probed, note: str, old: list[int], opening: set[int]) -> Plan:
        """Actions plus, when it changes, the record: the ports this tool opened (now, or in
        a run before) and still uses; a port that was open before it came is not recorded,
        so a move or an uninstall never closes it."""
        if old:
            note += f"; close {', '.join(f'{p}/tcp' for p in old)} (opened here before)"
        recorded = (probed["record"] or "").strip()
        before = {int(w) for w in recorded.split() if w.isdigit()}
        want = " ".join(str(p) for p in self.ports if p in opening or p in before)
        if actions or recorded.split() != want.split():
            actions = actions + [Command(f"mkdir -p {q(str(Path(self.record).parent))}"),
                                 WriteFile(self.record, f"{want}\n".encode(),
                                           old=(recorded + "\n").encode() if recorded else b"")]
        return Plan(actions, note)


class PortFree(Step):
    """Guard: fail before changing anything if another program holds the port."""

    def __init__(self, port: int, service: str, also: tuple[str, ...] = (), also_if: str | None = None):
        # also: other services of ours that may hold it (nginx in front of pypiserver);
        # also_if: only while this file of ours exists (our nginx site, being removed)
        self.port, self.service, self.also, self.also_if = port, service, also, also_if
        self.name = f"Ensure port {port} is free for {service}" + \
            (f" (or held by {', '.join(also)})." if also and not also_if else ".")

    def probes(self):
        return {"state": ServiceState(self.service), "listeners": Listeners(self.port),
                **{f"also{i}": ServiceState(s) for i, s in enumerate(self.also)},
                **({"also_if": PathExists(self.also_if)} if self.also_if else {})}

    def plan(self, facts, probed):
        listeners, ours = probed["listeners"], probed["state"].main_pid
        also = self.also if not self.also_if or probed["also_if"] else ()
        owners = {probed[f"also{i}"].main_pid: s for i, s in enumerate(also)}
        owners[ours] = self.service
        owners.pop(0, None)
        pids = set(owners)
        if listeners is None:
            raise StepError(f"cannot check port {self.port}: the host has no `ss` (install iproute2)")
        for users in listeners:
            if not users:
                raise StepError(f"port {self.port} is already in use (owner not shown by ss): "
                                f"choose another with --port")
            if all(pid not in pids for _, pid in users):
                names = ", ".join(f"{n} (pid {p})" for n, p in users)
                raise StepError(f"port {self.port} is already used by {names}: stop it or "
                                f"choose another with --port")
        held = [p for users in listeners for _, p in users if p in pids]
        return Plan(note=f"held by {owners[held[0]]} (pid {held[0]})" if held else "free")
