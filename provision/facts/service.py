"""Facts about systemd units."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from .base import Fact


@dataclass(frozen=True)
class UnitInfo:
    load: str = ""        # loaded, not-found, ...
    active: str = ""      # active, inactive, activating, failed, ...
    enabled: str = ""     # enabled, disabled, static, '' (no unit file)
    main_pid: int = 0
    fragment: str = ""    # the unit file systemd loaded it from


@dataclass(frozen=True)
class ServiceState(Fact):
    """A service's state, as systemd sees it (one `systemctl show`)."""

    service: str

    def command(self):
        unit = self.service if self.service.endswith((".path", ".timer", ".socket", ".service")) \
            else self.service + ".service"
        return (f"systemctl show -p LoadState -p ActiveState -p UnitFileState -p MainPID "
                f"-p FragmentPath {shlex.quote(unit)}")

    def parse(self, text, rc) -> UnitInfo:
        props = dict(re.findall(r"^(\w+)=(.*)$", text, re.M))
        pid = props.get("MainPID", "")
        return UnitInfo(props.get("LoadState", ""), props.get("ActiveState", ""),
                        props.get("UnitFileState", ""), int(pid) if pid.isdigit() else 0,
                        props.get("FragmentPath", "").strip())
