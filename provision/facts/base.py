"""The fact protocol: a command, a parser, and the one script that gathers them all.

A fact is a value (a frozen dataclass: its class and arguments are its identity) with a
shell `command()` and a `parse(text, rc)` that turns that command's output and exit
status into a typed value. Parsers are total: whatever a host prints, they return a value
(a missing file is `None`, an unreadable line is skipped), never raise.

The runner joins every fact a run needs into one script whose sections are separated by
marker lines (`section_script`), runs it once, and splits the output back
(`split_sections`), each section with its exit status. Two steps that ask for the same fact
share one section: a host is asked each question once per gather.
"""

from __future__ import annotations

import shlex
from typing import Any, NamedTuple

MARK = "@@@provision:"
RC = "rc "          # MARK + RC + status ends a section


class Output(NamedTuple):
    """What one section printed, and its exit status (None: the script ended before it)."""

    text: str = ""
    rc: int | None = None


#: the output of a section that never ran (tests' "absent" state)
MISSING = Output("", None)


class Fact:
    """A question to the host: `command()` asks it, `parse(text, rc)` reads the answer."""

    def command(self) -> str:
        raise NotImplementedError

    def parse(self, text: str, rc: int | None) -> Any:
        return text.strip()


def section_script(sections: dict[str, str]) -> str:
    """One script printing each command's output after a marker line naming it, and its
    exit status after it."""
    # stdin stays the script itself (sh -s): each section reads /dev/null instead
    lines = ["exec 2>/dev/null", "export LC_ALL=C"]
    for key, command in sections.items():
        lines.append(f"printf '\\n%s\\n' {shlex.quote(MARK + key)}")
        lines.append(f"{{ {command.strip()}\n}} </dev/null")
        lines.append(f"printf '\\n%s%s\\n' {shlex.quote(MARK + RC)} \"$?\"")
    lines.append(f"printf '\\n%s\\n' {shlex.quote(MARK + 'end')}")
    return "\n".join(lines) + "\n"


def split_sections(output: str) -> dict[str, Output]:
    parts: dict[str, Output] = {}
    key, buf, rc = None, [], None

    def close():
        if key is not None:
            parts[key] = Output("\n".join(buf).strip("\n"), rc)

    for line in output.splitlines():
        if line.startswith(MARK + RC) and key is not None:
            status = line[len(MARK + RC):].strip()
            rc = int(status) if status.isdigit() else None
        elif line.startswith(MARK):
            close()
            key, buf, rc = line[len(MARK):], [], None
        elif key is not None:
            buf.append(line)
    close()  # a script that stopped early (the lock was busy) has no end marker
    parts.pop("end", None)
    return parts
