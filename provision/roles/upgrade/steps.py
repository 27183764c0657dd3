"""The upgrade's step: a new venv built beside the running one, then switched in."""

from __future__ import annotations

from ...facts import FileText, VenvState
from ...facts.python import VenvInfo
from ...steps.base import Command, Plan, Step, WriteFile, q
from ...steps.python import PipRequirements, Venv
from ...wheels import canonical_name


class SwitchVenv(Step):

    def __init__(self, venv: str, service: str, python, pins, find_links: str | None, record: str,
                 record_text: str, switched=None):
        self.venv, self.service, self.python, self.pins = venv, service, python, pins
        self.find_links, self.record, self.record_text, self.switched = find_links, record, record_text, switched
        self.next, self.prev = venv + ".next", venv + ".prev"
        self.name = f"Ensure {venv} holds the pins (a new venv built beside it, then switched in)."

    def probes(self):
        return {"venv": VenvState(self.venv), "record": FileText(self.record)}

    def plan(self, facts, probed):
        version, _ = self.python(facts)
        pins = self.pins(facts)
        wanted = {canonical_name(p.split("==")[0]): p.split("==")[1] for p in pins}
        venv = probed["venv"]
        old = venv.dists.get("pypiserver", "?")
        new = wanted.get("pypiserver", "?")
        same_python = venv.version == version
        if same_python and all(venv.dists.get(n) == v for n, v in wanted.items()):
            actions = []
            if (probed["record"] or "").strip() != self.record_text.strip():
                actions.append(WriteFile(self.record, self.record_text.encode(), old=(probed["record"] or "").encode()))
            return Plan(actions, f"pypiserver {old}: the {len(wanted)} pins match" +
                        ("; record updated" if actions else ""))
        n, v, s = q(self.next), q(self.venv), q(self.service)
        # built as a deploy builds a venv: its own two steps, planned for an empty place (what
        # may be at .next from an earlier try is replaced)
        requirements = self.next + "/provision-requirements.txt"
        build = Venv(self.next, self.python, without_pip=bool(self.find_links)).plan(
            facts, {"venv": VenvInfo(present=True)}).actions
        build += PipRequirements(self.next, lambda _: pins, requirements, lambda _: self.find_links).plan(
            facts, {"venv": VenvInfo(), "requirements": None}).actions
        # the scripts' #! lines name the venv's path: rewritten for the new place (regular
        # files only: bin/python is a link)
        fix = (f"for f in {v}/bin/*; do [ -f \"$f\" ] && [ ! -L \"$f\" ] && "
               f"sed -i \"1s|^#!{self.next}/bin/|#!{self.venv}/bin/|\" \"$f\"; done; :")
        relabel = f" && restorecon -R {v}" if facts.selinux_enabled else ""
        # one block: if anything fails after the old venv moved aside, it moves back and the
        # service starts on it (the run then fails at this step)
        switch = [
            Command(f"cp -p {q(self.record)} {q(self.record + '.prev-upgrade')}"),
            Command(f"systemctl stop {s}"),
            Command(f"rm -rf {q(self.prev)} && mv {v} {q(self.prev)}"),
            Command(f"if mv {n} {v} && {fix} && cp {q(self.venv + '/provision-requirements.txt')} "
                    f"{q(self.venv.rsplit('/', 1)[0] + '/requirements.txt')}{relabel}; then :; else "
                    f"rm -rf {v}; mv {q(self.prev)} {v}; systemctl start {s}; exit 1; fi"),
            WriteFile(self.record, self.record_text.encode(), old=(probed["record"] or "").encode()),
            Command(f"systemctl start {s}"),
        ]
        if self.switched:
            self.switched(old, new)
        why = f"pypiserver {old} -> {new}" if old != new else "the pins changed"
        if not same_python:
            why += f" (python {venv.version} -> {version})"
        return Plan(build + switch, why + f"; the old venv kept as {self.prev}")

    @staticmethod
    def rollback_script(venv: str, service: str, record: str) -> str:
        v, p, f = q(venv), q(venv + ".prev"), q(venv + ".failed")
        return (f"systemctl stop {q(service)}; rm -rf {f}; mv {v} {f} && mv {p} {v}; "
                f"[ -f {q(record + '.prev-upgrade')} ] && mv {q(record + '.prev-upgrade')} {q(record)}; "
                f"systemctl reset-failed {q(service)} 2>/dev/null; systemctl start {q(service)}; :")
