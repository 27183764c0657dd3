"""systemd services: enabled and running, restarted by handler, units we own."""

from __future__ import annotations

from pathlib import Path

from ..errors import StepError
from ..facts import FileState, Listeners, PathExists, ServiceState
from .base import Command, Plan, Step, q


class UnitFileOwned(Step):
    """Guard: the unit we write is ours, or does not exist yet. A pypiserver_service that
    names another unit (sshd, say) would otherwise overwrite it and restart it."""

    HEADER = "Managed by provision"

    def __init__(self, service: str, path: str):
        self.service, self.path = service, path
        self.name = f"Ensure {service}.service is ours to manage."

    def probes(self):
        return {"state": ServiceState(self.service), "file": FileState(self.path, content=True)}

    def plan(self, facts, probed):
        have, fragment = probed["file"], probed["state"].fragment
        if have is not None and self.HEADER.encode() not in (have.content or b"")[:200]:
            raise StepError(f"{self.path} exists and is not managed by provision: choose another "
                            f"pypiserver_service, or remove that unit yourself")
        if fragment not in ("", self.path):
            raise StepError(f"a unit {self.service}.service already exists ({fragment}): "
                            f"choose another pypiserver_service")
        return Plan(note="ours" if have is not None else "not installed yet")


class Service(Step):
    def __init__(self, service: str):
        self.service = service
        self.name = f"Ensure the service {service} is enabled and running."

    def probes(self):
        return {"state": ServiceState(self.service)}

    def plan(self, facts, probed):
        enabled, active = probed["state"].enabled, probed["state"].active
        actions = []
        if enabled != "enabled":
            actions.append(Command(f"systemctl enable {q(self.service)}"))
        if active in ("failed", "activating"):
            # crash-looping (auto-restart) or past its start limit: a plain start would be
            # refused ("start request repeated too quickly") until the limit is reset
            actions.append(Command(f"systemctl reset-failed {q(self.service)} || :"))
        if active != "active":
            actions.append(Command(f"systemctl start {q(self.service)}"))
        return Plan(actions, "enable and start" if actions else "enabled, active")


class ServiceOff(Step):
    """A service of ours that a setting turned off: stopped and disabled (its unit file and
    its data stay; turning the setting on again starts it). A missing unit is fine."""

    def __init__(self, service: str):
        self.service = service
        self.name = f"Ensure the service {service} is stopped and disabled."

    def probes(self):
        return {"state": ServiceState(self.service)}

    def plan(self, facts, probed):
        state = probed["state"]
        actions = []
        if state.enabled == "enabled":
            actions.append(Command(f"systemctl disable {q(self.service)}"))
        if state.active in ("active", "activating", "reloading"):
            actions.append(Command(f"systemctl stop {q(self.service)}"))
        if not actions:
            return Plan(note="no such unit" if state.load == "not-found" else "stopped, disabled")
        return Plan(actions, "stop and disable")


class PortHandover(Step):
    """A service moving off a port to another of ours (pypiserver leaving the public port to
    nginx when HTTPS comes in front): restarted now, with its new unit, so the port is free
    when the next step starts the newcomer; restart handlers run only at the end of a run."""

    def __init__(self, port: int, service: str, successor: str):
        self.port, self.service, self.successor = port, service, successor
        self.name = f"Ensure {service} leaves port {port} to {successor}."

    def probes(self):
        return {"state": ServiceState(self.service), "listeners": Listeners(self.port)}

    def plan(self, facts, probed):
        pid = probed["state"].main_pid
        holds = bool(pid) and any(p == pid for users in probed["listeners"] or [] for _, p in users)
        if not holds:
            return Plan(note=f"not on port {self.port}")
        return Plan([Command(f"systemctl restart {q(self.service)}")],
                    f"restart it on its new address (it holds {self.port})")


class Restart(Step):
    """Handler: restart a service that was already running when its inputs changed.

    A service that was not running is started by its Service step with the new
    inputs already in place, so it needs no restart. Steps that notify a handler also
    leave a marker on the host (`mark()`), removed only by the restart: a run that
    dies between the change and the restart leaves the restart owed to the next run.
    """

    def __init__(self, service: str, handler: str, reload: str | None = None):
        # reload: the shell that reloads it instead (nginx: test the configuration first)
        self.service, self.handler, self.reload = service, handler, reload
        self.marker = f"/var/lib/provision/restart-pending-{service}"
        self.name = f"{'Reload' if reload else 'Restart'} {service} (handler: {handler})."

    def probes(self):
        return {"state": ServiceState(self.service), "pending": PathExists(self.marker)}

    def pending(self, probed) -> bool:
        return probed["pending"]

    def mark(self) -> Command:
        return Command(f"mkdir -p {q(str(Path(self.marker).parent))} && touch {q(self.marker)}")

    def plan(self, facts, probed):
        clear = Command(f"rm -f {q(self.marker)}")
        if probed["state"].active != "active":
            return Plan([clear], "was not running: started with the new configuration")
        if self.reload:
            return Plan([Command(self.reload), clear], "inputs changed")
        # daemon-reload first: a run that died between writing the unit and reloading
        # systemd left the old unit loaded, and a plain restart would bring it back
        return Plan([Command(f"systemctl daemon-reload && systemctl restart {q(self.service)}"), clear],
                    "inputs changed")


class Trigger(Restart):
    """Handler: run a oneshot service once when its inputs changed (a static index is
    rebuilt right away, not at the next change of the directory it watches)."""

    def plan(self, facts, probed):
        return Plan([Command(f"systemctl start {q(self.service + '.service')}"),
                     Command(f"rm -f {q(self.marker)}")], "inputs changed")
