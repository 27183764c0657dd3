"""The step interface and its actions (data the runner turns into shell)."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..facts import Fact, HostFacts, PathInfo


q = shlex.quote


@dataclass
class Command:
    sh: str


@dataclass
class WriteFile:
    path: str
    content: bytes
    owner: str = "root"
    group: str = "root"
    mode: int = 0o644
    old: bytes | None = None
    secret: bool = False
    # sha256 the file must still have when it is replaced (read-modify-write steps): a
    # concurrent change in between fails the step instead of being lost
    expect_sha256: str | None = None


@dataclass
class Upload:
    files: list[Path]
    dest: str
    owner: str = "root"
    group: str = "root"
    mode: int = 0o644


@dataclass
class Transfer:
    """A stream between this machine and the host on a channel of its own (a backup's
    files): ``run(remote, progress) -> None | why it failed``, run by the runner where an
    Upload would be; ``total`` bytes for the progress bar; ``label`` for --check/--diff."""
    run: Callable
    total: int = 0
    label: str = ""


@dataclass
class Plan:
    actions: list = field(default_factory=list)
    note: str = ""

    @property
    def changed(self) -> bool:
        return bool(self.actions)


class Step:
    """Base: a sentence for a name, the facts it needs (`probes`), and a plan."""

    name = "Step"
    notify: tuple[str, ...] = ()
    # when True, the last line the step's commands print is added to its report line
    report_output = False

    def probes(self) -> dict[str, Fact]:
        """The facts this step plans from, by the step's own keys (gathered with the host's)."""
        return {}

    def prepare(self, facts: HostFacts) -> None:
        """Work on this machine before planning (downloads, rendering), so `plan` stays pure:
        a function of the facts, the probes and what `prepare` kept. Raises StepError."""

    def plan(self, facts: HostFacts, probed: dict) -> Plan:
        """The actions from the host facts and the parsed `probes()` (same keys); pure."""
        raise NotImplementedError


def _owner_mode_fix(path: str, current: PathInfo, owner: str, group: str, mode: int,
                    kept: str = "") -> Plan:
    """The chown/chmod a path needs, noted as ``fix owner/mode root:root 0700 -> pypi:pypi 0755``."""
    want = PathInfo(owner, group, mode)
    if current == want:
        return Plan(note=kept)
    return Plan([Command(f"chown {q(owner)}:{q(group)} {q(path)} && chmod {mode:04o} {q(path)}")],
                f"fix owner/mode {current} \u2192 {want}")
