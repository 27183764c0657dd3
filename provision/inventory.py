"""Which hosts a run addresses, and the variables each one gets.

Precedence, lowest first: the role's defaults, the inventory's ``all.vars``, a group's
``vars``, the host's own variables, then command-line flags. The inventory is YAML in
Ansible's shape::

    all:
      vars: {pypiserver_port: 8000}
      hosts:
        pypi1: {ssh_host: 192.168.56.10, ssh_user: vagrant}
      children:
        prod:
          vars: {...}
          hosts: {pypi2: {}, pypi3: {ssh_port: 2222}}

With no --inventory we read ``inventory.yml`` if it exists, else the first fallback that
exists: a checkout's tasks.py registers its throwaway test host's inventory there (see
``FALLBACKS``), so a newcomer's first ``invoke deploy`` has a target.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from . import validate as check
from .errors import InventoryError

DEFAULT_INVENTORIES = ("inventory.yml",)
#: (path, hint) of inventories read when no other exists; their all.vars are not inherited by
#: a literal --host, and the hint completes the "no hosts" error. Empty in the installed tool.
FALLBACKS: list[tuple[str, str]] = []
CONNECTION_VARS = ("ssh_host", "ssh_user", "ssh_port", "ssh_key", "known_hosts")
_HOST_RE = re.compile(r"^(?:(?P<user>[^@\s:]+)@)?(?P<host>\[[0-9a-fA-F:.]+\]|[^@\s:\[\]]+)(?::(?P<port>\d+))?$")


@dataclass
class Target:
    """One host to address: how to reach it, and its variables."""

    name: str
    ssh_host: str
    ssh_user: str | None = None
    ssh_port: int | None = None
    ssh_key: str | None = None
    known_hosts: str | None = None
    vars: dict = field(default_factory=dict)
    # what ~/.ssh/config resolved ssh_host to (HostName), once connected
    resolved_host: str | None = None
    # the settings the host's last deploy recorded (read with the facts; see roles.Role.settle)
    recorded: dict = field(default_factory=dict)
    # whether pypiserver is deployed there (None: not known yet)
    deployed: bool | None = None


def parse_host(spec: str, base_vars: dict | None = None) -> Target:
    """`[USER@]HOST[:SSHPORT]` -> Target (user/port None means: ~/.ssh/config decides)."""
    m = _HOST_RE.match(spec.strip())
    if not m:
        raise InventoryError(f"bad host {spec!r}: expected [USER@]HOST[:SSHPORT]")
    host = m["host"].strip("[]")
    port = int(m["port"]) if m["port"] else None
    if port is not None and not 0 < port < 65536:
        raise InventoryError(f"bad SSH port in {spec!r}")
    vars_ = dict(base_vars or {})
    return _target(host, {**vars_, "ssh_host": host, "ssh_user": m["user"] or vars_.get("ssh_user"),
                          "ssh_port": port or vars_.get("ssh_port")})


def _target(name: str, vars_: dict) -> Target:
    """A Target with its connection variables checked (validate.py: the trust boundary)."""
    label = check.label(name, "host")

    def conn(key, fn):
        value = vars_.get(key)
        if value is None:
            return None
        try:
            return fn(value)
        except ValueError as exc:
            raise InventoryError(f"{label}: {key} {exc}") from None

    return Target(
        name=label,
        ssh_host=conn("ssh_host", check.host_name) or _name_as_host(label),
        ssh_user=conn("ssh_user", check.ssh_user),
        ssh_port=conn("ssh_port", check.port),
        ssh_key=conn("ssh_key", check.local_path),
        known_hosts=conn("known_hosts", check.local_path),
        vars={k: v for k, v in vars_.items() if k not in CONNECTION_VARS},
    )


def _name_as_host(name: str) -> str:
    try:
        return check.host_name(name)
    except ValueError:
        raise InventoryError(f"host {name!r} has no ssh_host and its name is not a host name "
                             f"or address") from None


def find_inventory(path: str | None) -> Path | None:
    if path:
        p = Path(path)
        if not p.is_file():
            raise InventoryError(f"inventory {path} not found")
        return p
    for candidate in (*DEFAULT_INVENTORIES, *(path for path, _ in FALLBACKS)):
        if Path(candidate).is_file():
            return Path(candidate)
    return None


def load(path: Path) -> tuple[dict[str, list[tuple[str, dict]]], dict]:
    """Parse an inventory file -> ({group: [(host, merged vars)]}, all.vars); 'all' is a group."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        first = str(exc).splitlines()[0]
        raise InventoryError(f"cannot read inventory {path}: {first}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("all", {}), dict):
        raise InventoryError(f"inventory {path}: the top level must be a mapping with 'all'")
    groups: dict[str, list[tuple[str, dict]]] = {}

    def walk(name: str, node: dict, inherited: dict) -> list[tuple[str, dict]]:
        if not isinstance(node, dict):
            raise InventoryError(f"inventory {path}: group {name!r} must be a mapping")
        for key in ("vars", "hosts", "children"):
            if not isinstance(node.get(key) or {}, dict):
                raise InventoryError(f"inventory {path}: {key} of group {name!r} must be a mapping")
        vars_ = {**inherited, **(node.get("vars") or {})}
        members: list[tuple[str, dict]] = []
        for host, hvars in (node.get("hosts") or {}).items():
            check.label(host, "host")
            if hvars is not None and not isinstance(hvars, dict):
                raise InventoryError(f"inventory {path}: host {host!r} must map to variables")
            members.append((str(host), {**vars_, **(hvars or {})}))
        for child, cnode in (node.get("children") or {}).items():
            check.label(child, "group")
            members.extend(walk(str(child), cnode or {}, vars_))
        groups[name] = members
        return members

    walk("all", data.get("all") or {}, {})
    return groups, dict((data.get("all") or {}).get("vars") or {})


def select(host_specs: list[str] | None, inventory: str | None, overrides: dict) -> list[Target]:
    """The targets of a run: --host values (inventory names, groups or addresses), else all."""
    path = find_inventory(inventory)
    groups, inventory_vars = load(path) if path else ({"all": []}, {})
    known = {name: vars_ for name, vars_ in groups["all"]}
    chosen: list[Target] = []
    if not host_specs:
        if not known:
            hints = "".join(f", or {hint}" for _, hint in FALLBACKS)
            raise InventoryError(f"no hosts: pass --host [USER@]HOST[:PORT] or write inventory.yml "
                                 f"(see inventory.example.yml){hints}")
        specs = [name for name in known]
    else:
        specs = [s.strip() for spec in host_specs for s in spec.split(",") if s.strip()]
        if not specs:
            raise InventoryError(f"--host {','.join(host_specs)!r} names no host: give "
                                 f"[USER@]HOST[:PORT], an inventory host or a group")
    # a literal address inherits all.vars of a chosen inventory, not of a fallback's
    all_vars = inventory_vars if path and str(path) not in {p for p, _ in FALLBACKS} else {}
    for spec in specs:
        if spec in groups:
            members = groups[spec]
        elif spec in known:
            members = [(spec, known[spec])]
        else:
            target = parse_host(spec, all_vars)
            if path:
                _check_typo(spec, target.ssh_host, path, list(groups) + list(known))
            chosen.append(_with_overrides(target, overrides, path))
            continue
        for name, vars_ in members:
            chosen.append(_with_overrides(_target(name, vars_), overrides, path))
    seen, unique = set(), []
    for t in chosen:
        if t.name not in seen:
            seen.add(t.name)
            unique.append(t)
    return unique


def _check_typo(spec: str, host: str, path: Path, names: list[str]) -> None:
    """A --host that is no inventory name must at least resolve, else it is a typo: say so."""
    import difflib

    if _resolves(host):
        return
    close = difflib.get_close_matches(spec, [n for n in names if n != "all"], n=3, cutoff=0.6)
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    raise InventoryError(f"{spec!r} is not a host or group in {path}{hint} and does not resolve "
                         f"as a host name")


def _resolves(host: str) -> bool:
    """An address, a name DNS or /etc/hosts knows, or an alias in ~/.ssh/config."""
    import ipaddress
    import os
    import socket

    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    for cfg in (os.path.expanduser("~/.ssh/config"), "/etc/ssh/ssh_config"):
        try:
            import paramiko

            config = paramiko.SSHConfig.from_path(cfg)
        except (OSError, ValueError, paramiko.SSHException, ImportError):
            continue
        if host in config.get_hostnames():  # a Host alias of its own (HostName, ProxyJump...)
            return True
    try:
        socket.getaddrinfo(host, None)
        return True
    except (socket.gaierror, UnicodeError, OSError):
        return False


#: Variables a flag may set, by flag. A flag that contradicts the inventory is refused: the
#: next run without it would silently undo what it deployed.
FLAGS = {"pypiserver_port": "--port"}


def _with_overrides(t: Target, overrides: dict, path: Path | None = None) -> Target:
    given = {k: v for k, v in overrides.items() if v is not None}
    for key, flag in FLAGS.items():
        if key in given and key in t.vars and _same(t.vars[key], given[key]) is False:
            raise InventoryError(
                f"{t.name}: {flag} {given[key]} differs from {key}: {t.vars[key]} in {path or 'the inventory'}: "
                f"change it there instead (a deploy without {flag} would put {t.vars[key]} back)")
    t.vars.update(given)
    return t


def _same(a, b) -> bool | None:
    """Whether two values of a variable are equal once normalised (None: one is invalid)."""
    try:
        return str(check.port(a)) == str(check.port(b))
    except ValueError:
        return None
