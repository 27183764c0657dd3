"""The step interface and its actions (data the runner turns into shell)."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from ..facts import HostFacts


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


class Plan:
    actions: list = field(default_factory=list)
    note: str = ""

    @property
    def changed(self) -> bool:
        return bool(self.actions)


class Step:
    """Base: a sentence for a name, probes, and a plan."""

    name = "Step"
    notify: tuple[str, ...] = ()
    # when True, the last line the step's commands print is added to its report line
    report_output = False

    def probes(self) -> dict[str, str]:
        return {}

    def prepare(self, facts: HostFacts) -> None:
        """Work on this machine before planning (downloads, rendering), so `plan` stays pure:
        a function of the facts, the probes and what `prepare` kept. Raises StepError."""

    def plan(self, facts: HostFacts, probed: dict[str, str]) -> Plan:
        raise NotImplementedError


def _stat(path: str) -> str:
    return f"stat -c '%U %G %a' {q(path)}"


def _owner_mode_fix(path: str, current: str, owner: str, group: str, mode: int,
                    kept: str = "") -> Plan:
    """The chown/chmod a path needs, noted as ``fix owner/mode root:root 0700 -> pypi:pypi 0755``."""
    want = f"{owner} {group} {mode:o}"
    if current.strip() == want:
        return Plan(note=kept)
    parts = current.split()
    was = f"{parts[0]}:{parts[1]} {int(parts[2], 8):04o}" if len(parts) == 3 and \
        re.fullmatch(r"[0-7]{1,4}", parts[2]) else "unknown"
    return Plan([Command(f"chown {q(owner)}:{q(group)} {q(path)} && chmod {mode:04o} {q(path)}")],
                f"fix owner/mode {was} \u2192 {owner}:{group} {mode:04o}")
