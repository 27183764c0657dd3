"""Idempotent steps: each probes the host's state and plans the commands that change it.

A step never touches the host itself and never decides check mode: it declares the typed
facts it needs (`probes()`, gathered with the host's in the same round trip), then
`plan(facts, probed)` gets them parsed, by its own keys, and returns the actions that bring
the host to the desired state. No actions means `ok`;
some means `changed`. The runner decides whether to run them.

Actions are data: `Command` (shell run as root), `WriteFile` (atomic: temp file in the
same directory, owner and mode set, then rename) and `Upload` (files streamed as one
tar into a directory, each appearing by rename). Tests assert on them directly.

Generic steps, by resource (files, packages, users, python, service, firewall); a step only
one role uses lives with that role (``roles/<role>/steps.py``).
"""

from .base import Command, Plan, Step, Upload, WriteFile
from .files import Absent, Directory, File
from .firewall import FirewallPort, PortFree
from .packages import Packages
from .python import PipRequirements, Venv, Wheelhouse
from .service import PortHandover, Restart, Service, ServiceOff, Trigger, UnitFileOwned
from .users import SystemUser

__all__ = ["Absent", "Command", "Directory", "File", "FirewallPort", "Packages", "PipRequirements", "Plan",
           "PortFree", "PortHandover", "Restart", "Service", "ServiceOff", "Step", "SystemUser", "Trigger", "UnitFileOwned", "Upload", "Venv",
           "Wheelhouse", "WriteFile"]
