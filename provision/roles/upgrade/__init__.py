"""`invoke upgrade`: pypiserver moved to the tested pin set for the host's Python (or the
version asked with --to) without risking the running service.

A new venv is built beside the old one (`<venv>.next`), with the pins installed; only
then is the service stopped, the old venv moved aside (`<venv>.prev`), the new one moved in
(its scripts' `#!` lines rewritten for the new place) and the service started. The health
check follows; if it fails, the old venv is moved back, the service started on it and the
run fails in one line. A failure while building touches nothing. Packages and accounts are
never touched. A host whose venv already holds exactly these pins is `ok`.
"""

from __future__ import annotations

from .. import Role, record_content, record_path
from ...steps import Service, Wheelhouse
from ..pypiserver import PypiserverRole, host_pins, host_python, offline_wheels
from .steps import SwitchVenv

SUFFIX_NEXT, SUFFIX_PREV, SUFFIX_FAILED = ".next", ".prev", ".failed"


class UpgradeRole(Role):
    needs_deploy = True

    def __init__(self, version: str = ""):
        # "" : the pin set's own pypiserver (the newest this Python runs)
        self.version = version
        self.deploy = PypiserverRole({"pypiserver_version": version})
        self.switched: dict[str, tuple[str, str]] = {}      # host -> (from, to) pypiserver

    def vars(self, target) -> dict:
        return self.deploy.vars(target)

    def phases(self, target):
        v = self.vars(target)
        offline = bool(v["offline"])

        def pins(facts):
            return host_pins(v, facts)

        def wheel_files(facts):
            return offline_wheels(v, facts)

        def switched(old, new):
            self.switched[target.name] = (old, new)
        steps = []
        if offline:
            steps.append(Wheelhouse(v["pypiserver_wheels_dir"], wheel_files))
        steps.append(SwitchVenv(v["pypiserver_venv"], v["pypiserver_service"], host_python, pins,
                                v["pypiserver_wheels_dir"] if offline else None,
                                record_path(v["pypiserver_service"]), record_content(v), switched))
        # a run cut off mid-switch left it stopped: the next one starts it
        steps.append(Service(v["pypiserver_service"]))
        return [steps]

    def verify(self, target, facts, check: bool, run=None):
        if target.name not in self.switched or check:
            return None
        old, new = self.switched[target.name]
        verdict = self.deploy.verify(target, facts, check, run=run)
        if verdict is None or verdict[0] == "ok":
            return verdict[0], f"Ensure pypiserver {new} answers (the health check).", verdict[2]
        why = verdict[2].split("\n")[0]
        v = self.vars(target)
        venv, service, record = v["pypiserver_venv"], v["pypiserver_service"], record_path(v["pypiserver_service"])
        run(SwitchVenv.rollback_script(venv, service, record))
        again = self.deploy.verify(target, facts, check, run=run)
        state = "serving again" if again and again[0] == "ok" else f"NOT answering either: {again[2].splitlines()[0]}"
        return ("failed", f"Ensure pypiserver {new} answers (the health check).",
                f"pypiserver {new} failed its health check ({why}): switched back to {old}, {state}; "
                f"the failed venv is in {venv}{SUFFIX_FAILED}")
