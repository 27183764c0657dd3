"""Roles: what a task wants on its hosts, as phases of steps.

The runner asks a role for its phases and handlers, lets it refuse a host after the facts
(check_host) or after a phase (after_phase), explain a failed step, and verify the result.
A role that needs none of that inherits these defaults.

Every role also reads, with the facts, the host's record of its last deploy
(``/var/lib/provision/<service>.json``, written by the pypiserver role): `settle` adopts
its settings for every variable neither the inventory nor a flag sets, so what was
deployed is what every later run uses, and a role that needs a deployed server
(`needs_deploy`) refuses a host without one before planning anything.
"""

from __future__ import annotations

import json
import re

from ..errors import InventoryError, ProvisionError
from ..facts import Fact, FileText

RECORD_DIR = "/var/lib/provision"
#: Variables a deploy records on the host; `pypiserver_service` names the record itself.
RECORDED = ("pypiserver_port", "pypiserver_listen", "pypiserver_user", "pypiserver_venv",
            "pypiserver_wheels_dir", "pypiserver_packages_dir", "pypiserver_config_dir",
            "pypiserver_htpasswd", "pypiserver_authenticate", "pypiserver_extra_args",
            "pypiserver_url_host", "offline", "centos7_vault", "tls", "pypiserver_backend_port",
            "tls_names", "tls_cert", "tls_key", "upload_max_size", "https_redirect_port",
            "static_index", "pypiserver_index_dir", "pypiserver_fallback", "pypiserver_version",
            "pypi_cache", "pypi_cache_upstream", "pypi_cache_upstream_ca", "pypi_cache_allow",
            "pypi_cache_deny", "pypi_cache_min_age", "pypi_cache_index_ttl", "pypi_cache_max_size",
            "pypi_cache_dir", "pypi_cache_port")
# 2: static_index became a default (auto); a format 1 record's static_index: false was
# the preview's default, not a choice, so it is not adopted
RECORD_FORMAT = 2
UNIT_DIR = "/etc/systemd/system"


def index_url(v: dict, address: str) -> str:
    """``https://HOST:PORT/`` (``http`` with tls: false): the index clients use
    (pypiserver_url_host, else the address we reached the host at; a bare IPv6 address in
    brackets)."""
    host = v["pypiserver_url_host"] or address
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{'https' if v.get('tls') else 'http'}://{host}:{v['pypiserver_port']}/"


def tls_names(v: dict, target) -> list[str]:
    """Every name and address clients use for the host: the certificate's SANs."""
    names = [v["pypiserver_url_host"], target.resolved_host or "", target.ssh_host, *v["tls_names"]]
    out: list[str] = []
    for n in names:
        n = n.strip("[]")
        if n and n not in out:
            out.append(n)
    return out


def record_path(service: str) -> str:
    return f"{RECORD_DIR}/{service}.json"


def record_content(v: dict) -> str:
    """The record a deploy leaves: its settings, deterministic (a no-op redeploy keeps it)."""
    settings = {k: v[k] for k in RECORDED}
    return json.dumps({"format": RECORD_FORMAT, "service": v["pypiserver_service"],
                       "settings": settings}, indent=2, sort_keys=True) + "\n"


def parse_record(text: str, where: str) -> dict | None:
    """The settings of a record (None when there is none); InventoryError if unreadable."""
    if not text.strip():
        return None
    try:
        data = json.loads(text)
        settings, version = data["settings"], data["format"]
        if not isinstance(settings, dict) or not isinstance(version, int):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise InventoryError(f"{where} is not a record this tool wrote: remove it, then deploy "
                             "again") from None
    if version > RECORD_FORMAT:
        raise InventoryError(f"{where} was written by a newer version of this tool (format "
                             f"{version}): upgrade this one")
    if version < 2 and settings.get("static_index") is False:
        del settings["static_index"]
    return {k: settings[k] for k in RECORDED if k in settings}


def legacy_record(unit: str) -> dict:
    """What a unit deployed before records existed says: its port (``"--port" "8080"``)."""
    m = re.search(r'^ExecStart=.*?"?--port"?\s+"?(\d{1,5})"?(?:\s|$)', unit, re.M)
    return {"pypiserver_port": int(m[1])} if m else {}


class Role:
    # a run that may change its hosts holds each host's lock from its facts to its end
    changes_hosts = True
    # accounts and mirror act on a deployed server: refused (one line) on a bare host
    needs_deploy = False
    # settings a host without a record of its own takes (restore: the backup's), and where
    # they come from (named in the notes)
    seed_record: dict = {}
    seed_source = ""

    def vars(self, target) -> dict:
        """The target's variables, checked by the one validation function every role uses."""
        from ..validate import role_vars

        return role_vars(target)

    def phases(self, target) -> list[list]:
        raise NotImplementedError

    def handlers(self, target) -> dict:
        return {}

    # -- the host's record of its last deploy ------------------------------------------
    def probes(self, target) -> dict[str, Fact]:
        """Read with the facts: the record, and the unit (hosts deployed before records)."""
        service = self.vars(target).get("pypiserver_service")
        if not service:  # a role without the pypiserver variables (tests' own roles)
            return {}
        return {"record": FileText(record_path(service)),
                "unit": FileText(f"{UNIT_DIR}/{service}.service")}

    def settle(self, target, probed: dict) -> tuple[bool, list[str]]:
        """Adopt the host's record: (the variables changed, notes naming what came from it).

        Precedence, lowest first: defaults, the record, the inventory, flags.
        """
        from ..validate import check_vars, defaults

        before = self.vars(target)
        if "pypiserver_service" not in before:
            return False, []
        path = record_path(before["pypiserver_service"])
        recorded = parse_record(probed.get("record") or "", f"{target.name}:{path}")
        unit = probed.get("unit")
        target.deployed = recorded is not None or unit is not None
        if self.needs_deploy and not target.deployed:
            raise ProvisionError(f"pypiserver is not deployed on {target.name}: deploy first "
                                 f"(invoke deploy -H {target.name})")
        if recorded is None and unit is not None:
            # deployed before hosts kept a record: its unit still says which port it serves
            recorded, source = legacy_record(unit), "unit"
            path = f"{UNIT_DIR}/{before['pypiserver_service']}.service"
        elif recorded is None and self.seed_record:
            # a fresh host restored from a backup: the backed-up server's settings
            recorded, source, path = dict(self.seed_record), "backup", self.seed_source
        else:
            source = "record"
        target.recorded = recorded or {}
        try:
            after = self.vars(target)
        except InventoryError as exc:
            raise InventoryError(f"{exc} (read from {path})") from None
        default = check_vars(dict(defaults()), "defaults")
        where = f"the backup's record ({path})" if source == "backup" else \
            f"the host's {source} of its last deploy ({path})"
        notes = [f"{k} {_show(after[k])} from {where}; "
                 f"set it in the inventory to change it"
                 for k in RECORDED if k in target.recorded and k not in target.vars
                 and after[k] != default[k] and after[k] == _checked(k, target.recorded[k])]
        return after != before, notes

    # -- after the facts ----------------------------------------------------------------
    def check_host(self, facts) -> None:
        return None

    def after_phase(self, phase: int, facts, check: bool) -> None:
        return None

    def explain_failure(self, step, why: str, facts) -> str:
        return why

    def verify(self, target, facts, check: bool, run=None):
        """(status, label, note) of a check after the changes, or None for none.

        ``run(shell) -> stdout`` runs a read-only command on the host (one channel each)."""
        return None

    def summary(self, target, facts) -> list[str]:
        return []


def _checked(key: str, value):
    """A recorded value as the validation normalises it (None if it does not pass)."""
    from ..validate import CHECKS

    try:
        return CHECKS[key](value)
    except ValueError:
        return None


def _show(value) -> str:
    if isinstance(value, list):
        return " ".join(value) or '""'
    return str(value) if value != "" else '""'
