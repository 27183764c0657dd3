"""The trust boundary: every inventory variable and command-line value passes here first.

The inventory's author is trusted less than root on the host: a value from it may only
choose among safe outcomes, never run a command, write outside the service's own
directories or take over an account. So each role's variables are merged (defaults <
inventory < flags) and checked by `role_vars`, the one function every role calls before
it plans anything, and each refusal is one line (an InventoryError, exit 2) raised before
any host is touched. Values that pass are still quoted wherever they are written: shell
with `shlex.quote`, systemd unit lines with `systemd_quote`.

What cannot be decided here (does the account exist on the host, is the unit name taken)
is checked by guard steps in the role's first phase, before any change on that host.
"""

from __future__ import annotations

import difflib
import ipaddress
import posixpath
import re
import shlex
from functools import lru_cache
from pathlib import Path

from .errors import InventoryError

HERE = Path(__file__).resolve().parent
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_PATH_CHARS = re.compile(r"[A-Za-z0-9/._+-]+")
_SYSNAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
# DNS names, and ~/.ssh/config aliases (which may hold '_'); never a leading '-' (an option)
_HOSTNAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
                       r"(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?")
AUTH_ACTIONS = ("download", "list", "update")
# waitress's max_request_body_size (pypiserver passes no setting for it): uploads above it fail
WAITRESS_MAX_BODY = 1 << 30
# Ports below this need root or a capability; the service runs unprivileged with none.
FIRST_UNPRIVILEGED_PORT = 1024

# Directories a service path may never be (they hold the system, or other programs' state).
SYSTEM_DIRS = frozenset({
    "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32",
    "/media", "/mnt", "/opt", "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/tmp",
    "/usr", "/var", "/usr/local", "/usr/local/bin", "/usr/local/sbin", "/usr/local/lib",
    "/usr/local/share", "/usr/local/etc", "/usr/local/include", "/usr/local/src",
    "/var/lib", "/var/cache", "/var/opt", "/var/www", "/var/backups", "/var/local", "/var/mail",
    "/etc/default", "/etc/init.d", "/etc/profile.d", "/etc/ld.so.conf.d", "/etc/sysconfig",
    "/etc/yum.repos.d", "/etc/apt", "/etc/firewalld", "/etc/nginx", "/etc/pki", "/etc/ssl",
    "/etc/cron.d", "/etc/cron.daily", "/etc/cron.hourly", "/etc/cron.weekly", "/etc/cron.monthly",
    "/etc/logrotate.d", "/etc/sysctl.d", "/etc/modprobe.d", "/etc/udev", "/etc/xdg",
})
# Trees nothing of ours may live in: pseudo or volatile file systems, system binaries and
# libraries, login and privilege configuration, package managers' and our own state.
SYSTEM_TREES = (
    "/proc", "/sys", "/dev", "/run", "/boot", "/tmp", "/var/tmp", "/bin", "/sbin", "/lib",
    "/lib32", "/lib64", "/libx32", "/usr/bin", "/usr/sbin", "/usr/lib", "/usr/lib32",
    "/usr/lib64", "/usr/libexec", "/usr/share", "/usr/include", "/usr/src", "/root",
    "/etc/ssh", "/etc/systemd", "/etc/sudoers.d", "/etc/pam.d", "/etc/security", "/etc/selinux",
    "/var/lib/dpkg", "/var/lib/rpm", "/var/lib/apt", "/var/lib/yum", "/var/lib/dnf",
    "/var/lib/systemd", "/var/lib/provision", "/var/log", "/var/spool", "/var/run", "/var/lock",
)
DIR_VARS = ("pypiserver_venv", "pypiserver_wheels_dir", "pypiserver_packages_dir",
            "pypiserver_config_dir", "pypiserver_index_dir", "pypi_cache_dir")
#: prefixes of the role's own variables: a name with one that the defaults lack is a typo
VAR_PREFIXES = ("pypiserver_", "pypi_cache")


@lru_cache(maxsize=None)
def defaults() -> dict:
    import yaml

    return yaml.safe_load((HERE / "roles" / "pypiserver" / "defaults.yml").read_text())


def role_vars(target, overrides: dict | None = None) -> dict:
    """Defaults < the host's record of its last deploy < inventory variables < flags,
    every value checked.

    Raises InventoryError naming the host and the variable. The result holds normalised
    values (ints for ports, lists for arguments, normalised paths).
    """
    merged = {**defaults(), **getattr(target, "recorded", {}), **target.vars,
              **{k: v for k, v in (overrides or {}).items() if v is not None}}
    return check_vars(merged, target.name)


def check_vars(values: dict, where: str) -> dict:
    known = defaults()
    for key in values:
        if key.startswith(VAR_PREFIXES) and key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise InventoryError(f"{where}: unknown variable {key}{hint}")
    out = dict(values)
    for key, check in CHECKS.items():
        try:
            out[key] = check(values[key])
        except ValueError as exc:
            raise InventoryError(f"{where}: {key} {exc}") from None
    _check_layout(out, where)
    return out


# -- single values ----------------------------------------------------------------------
def _text(value, what: str = "a string", limit: int = 4096) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be {what}, got {_show(value)}")
    if _CONTROL.search(value):
        raise ValueError(f"has a control character (newline, tab, NUL...): {_show(value)}")
    if len(value) > limit:
        raise ValueError(f"is longer than {limit} characters")
    return value


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def port(value, minimum: int = 1) -> int:
    """An integer 1..65535 (or a string of digits); booleans and floats are refused."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"must be a whole number, got {_show(value)}")
    if isinstance(value, str):
        if not re.fullmatch(r"[0-9]{1,5}", value.strip()):
            raise ValueError(f"must be a whole number, got {_show(value)}")
        value = int(value)
    if not 0 < value < 65536:
        raise ValueError(f"{value} is out of range (1-65535)")
    if value < minimum:
        raise ValueError(f"{value} is below {minimum}: the service runs unprivileged, "
                         f"with no capability to bind it; choose {minimum} or above")
    return value


def service_port(value) -> int:
    return port(value, FIRST_UNPRIVILEGED_PORT)


def listen_address(value) -> str:
    text = _text(value, "an IP address", 64)
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ValueError(f"must be an IP address (0.0.0.0, ::, 127.0.0.1...), got {_show(value)}") from None


def host_name(value) -> str:
    """A DNS name or an IP address (brackets allowed around IPv6)."""
    text = _text(value, "a host name or address", 253).strip()
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        pass
    if not _HOSTNAME.fullmatch(text):
        raise ValueError(f"must be a host name or an IP address, got {_show(value)}")
    return text


def optional_host(value) -> str:
    return "" if value in ("", None) else host_name(value)


def system_name(value) -> str:
    text = _text(value, "a name", 32)
    if not _SYSNAME.fullmatch(text):
        raise ValueError(f"{_show(value)} is not a valid name (lowercase letters, digits, _ and -, "
                         f"starting with a letter or _, at most 32)")
    return text


def service_user(value) -> str:
    name = system_name(value)
    if name == "root":
        raise ValueError("may not be root: the service runs as a system account of its own")
    return name


def authenticate(value) -> str:
    """pypiserver's -a: '.' (nothing) or a comma-separated subset of download, list, update."""
    text = _text(value, "a string", 64)
    if text == ".":
        return text
    items = text.split(",")
    if not all(i in AUTH_ACTIONS for i in items) or len(set(items)) != len(items):
        raise ValueError(f"must be '.' or a comma-separated list of {', '.join(AUTH_ACTIONS)}, "
                         f"got {_show(value)}")
    return text


def argument_list(value) -> list[str]:
    """Extra arguments: a list of strings, or one string split like a shell would."""
    if value in ("", None):
        return []
    if isinstance(value, str):
        _text(value)
        try:
            value = shlex.split(value)
        except ValueError as exc:
            raise ValueError(f"cannot be split into arguments ({exc}): {_show(value)}") from None
    if not isinstance(value, list):
        raise ValueError(f"must be a list of arguments or a string, got {_show(value)}")
    return [_text(arg, "a string (each argument)") for arg in value]


def boolean(value) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {_show(value)}")
    return value


def service_path(value, what: str = "directory") -> str:
    """An absolute, normalised path outside the system's own directories."""
    text = _text(value, "an absolute path", 255)
    if not text.startswith("/"):
        raise ValueError(f"must be an absolute path, got {_show(value)}")
    if not _PATH_CHARS.fullmatch(text):
        raise ValueError(f"may hold only letters, digits and /._+-, got {_show(value)}")
    parts = text.rstrip("/").split("/")[1:]
    if any(p in (".", "..", "") for p in parts):
        raise ValueError(f"must be normalised (no '.', '..' or '//'), got {_show(value)}")
    path = posixpath.normpath(text)
    if path in SYSTEM_DIRS:
        raise ValueError(f"{path} is a system directory: use a {what} of its own, e.g. "
                         f"{path.rstrip('/')}/pypi")
    for tree in SYSTEM_TREES:
        if path == tree or path.startswith(tree + "/"):
            raise ValueError(f"{path} is inside {tree}, which belongs to the system")
    if path.count("/") < 2:
        raise ValueError(f"must be two levels deep or more (like /srv/pypi), got {path}")
    return path


def file_path(value) -> str:
    """A path whose folder is a service directory too: e.g. /etc/shadow (its folder is
    /etc) is refused; so is a venv at /opt/venv (its folder /opt would be chowned)."""
    path = service_path(value, "file")
    service_path(posixpath.dirname(path), "directory")
    return path


def host_list(value) -> list[str]:
    """Host names or addresses: a list, or one string of them separated by commas or spaces."""
    if value in ("", None):
        return []
    if isinstance(value, str):
        value = [v for v in re.split(r"[,\s]+", _text(value)) if v]
    if not isinstance(value, list):
        raise ValueError(f"must be a list of host names or addresses, got {_show(value)}")
    return [host_name(v) for v in value]


def optional_local_file(value) -> str:
    """A file on this (the control) machine, or empty."""
    return "" if value in ("", None) else local_path(value)


def _nginx_size(value, digits: int, examples: str) -> str:
    """Digits and an optional k, m or g, lowercased (as nginx reads sizes)."""
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else \
        _text(value, f"a size like {examples.split()[0]}", 16).strip()
    if not re.fullmatch(rf"[1-9][0-9]{{0,{digits - 1}}}[kmgKMG]?", text):
        raise ValueError(f"must be a size like {examples}, got {_show(value)}")
    return text.lower()


def size(value) -> str:
    """An upload size for nginx: 512m, 2g (pypiserver's server takes 1g at most)."""
    text = _nginx_size(value, 10, "512m or 1g")
    factor = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}.get(text[-1], 1)
    if int(text.rstrip("kmg")) * factor > WAITRESS_MAX_BODY:
        raise ValueError(f"{text} is over 1g: pypiserver's server (waitress) refuses larger requests")
    return text


def tri_state(value) -> bool | str:
    """true, false or auto (the role decides)."""
    if value == "auto" or isinstance(value, bool):
        return value
    raise ValueError(f"must be true, false or auto, got {_show(value)}")


# an upstream index URL: scheme, host, optional port and path; nothing a shell or a unit
# line would read as syntax
_URL = re.compile(r"https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?(?:/[A-Za-z0-9._~/%+-]*)?")


def fallback(value) -> str:
    """off, or the URL of an index clients are redirected to for names this one lacks."""
    text = _text(value, "off or a URL", 512)
    if text == "off" or _URL.fullmatch(text):
        return text if text == "off" or text.endswith("/") else text + "/"
    raise ValueError(f"must be off or an http(s) URL like https://pypi.org/simple/, got {_show(value)}")


def upstream_index(value) -> str:
    """The URL of an index to fetch from (pypi_cache_upstream): http(s), no password."""
    text = _text(value, "a URL", 512)
    if not _URL.fullmatch(text):
        raise ValueError(f"must be an http(s) URL like https://pypi.org/simple/ (no user or password "
                         f"in it), got {_show(value)}")
    return text if text.endswith("/") else text + "/"


_DURATION = re.compile(r"([0-9]{1,7})([smhdw]?)")
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def duration(value) -> str:
    """A time span as nginx writes them: 0, 90 (seconds), 30s, 10m, 12h, 3d, 2w."""
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else \
        _text(value, "a time like 3d", 16).strip().lower()
    if not _DURATION.fullmatch(text):
        raise ValueError(f"must be a time like 90s, 10m, 12h or 3d (0: off), got {_show(value)}")
    return text


def seconds(span: str) -> int:
    """The seconds of a checked duration."""
    number, unit = _DURATION.fullmatch(span).groups()
    return int(number) * _SECONDS[unit]


def positive_duration(value) -> str:
    text = duration(value)
    if seconds(text) == 0:
        raise ValueError(f"must be longer than 0, got {_show(value)}")
    return text


def cache_size(value) -> str:
    """An nginx size for a cache: 500m, 10g (7 digits at most: nginx's offsets do not overflow)."""
    return _nginx_size(value, 7, "500m or 10g")


_PATTERN = re.compile(r"[A-Za-z0-9._*?-]{1,100}")


def name_patterns(value) -> list[str]:
    """Project name patterns (* and ? wildcards): a list, or one string of them separated by
    commas or spaces; normalised as PEP 503 names are (lowercase, runs of -_. as one -)."""
    if value in ("", None):
        return []
    if isinstance(value, str):
        value = [v for v in re.split(r"[,\s]+", _text(value)) if v]
    if not isinstance(value, list):
        raise ValueError(f"must be a list of name patterns like django-*, got {_show(value)}")
    out = []
    for item in value:
        text = _text(item, "a name pattern", 100)
        if not _PATTERN.fullmatch(text):
            raise ValueError(f"{_show(item)} is not a name pattern (letters, digits, '.', '_', '-', "
                             f"and the wildcards * and ?)")
        out.append(re.sub(r"[-_.]+", "-", text).lower())
    return out


def read_auth(v: dict) -> bool:
    """A password is needed to read (list or download): every read goes through pypiserver."""
    return any(w in v["pypiserver_authenticate"].split(",") for w in ("download", "list"))


def static_index_on(v: dict) -> bool:
    """The static index is served: static_index true, or auto (the default) with TLS on
    and no password for reading (nginx serves the pages without asking one)."""
    if v["static_index"] == "auto":
        return bool(v["tls"]) and not read_auth(v)
    return bool(v["static_index"])


def optional_port(value) -> int:
    """0 (off) or a port."""
    return 0 if value in (0, "0", "", None) else port(value)


CHECKS = {
    "pypiserver_port": service_port,
    "pypiserver_listen": listen_address,
    "pypiserver_user": service_user,
    "pypiserver_venv": file_path,
    "pypiserver_wheels_dir": service_path,
    "pypiserver_packages_dir": service_path,
    "pypiserver_config_dir": service_path,
    "pypiserver_htpasswd": file_path,
    "pypiserver_authenticate": authenticate,
    "pypiserver_service": system_name,
    "pypiserver_extra_args": argument_list,
    "pypiserver_url_host": optional_host,
    "offline": boolean,
    "centos7_vault": boolean,
    "tls": boolean,
    "pypiserver_backend_port": service_port,
    "tls_names": host_list,
    "tls_cert": optional_local_file,
    "tls_key": optional_local_file,
    "upload_max_size": size,
    "https_redirect_port": optional_port,
    "static_index": tri_state,
    "pypiserver_fallback": fallback,
    "pypiserver_version": lambda v: "" if v in ("", None) else _version_value(v),
    "pypiserver_index_dir": service_path,
    "pypi_cache": boolean,
    "pypi_cache_upstream": upstream_index,
    "pypi_cache_upstream_ca": optional_local_file,
    "pypi_cache_allow": name_patterns,
    "pypi_cache_deny": name_patterns,
    "pypi_cache_min_age": duration,
    "pypi_cache_index_ttl": positive_duration,
    "pypi_cache_max_size": cache_size,
    "pypi_cache_dir": service_path,
    "pypi_cache_port": service_port,
}


def _inside(a: str, b: str) -> bool:
    return a == b or a.startswith(b.rstrip("/") + "/")


def _check_layout(v: dict, where: str) -> None:
    """The service's directories are distinct: none inside another (the packages dir is
    the service user's; the others are root's). The htpasswd file lives in neither the
    packages dir nor the venv or wheels. The ports are distinct; a certificate comes with
    its key."""
    ports = {"pypiserver_port": v["pypiserver_port"]}
    if v["tls"]:
        ports["pypiserver_backend_port"] = v["pypiserver_backend_port"]
        if v["https_redirect_port"]:
            ports["https_redirect_port"] = v["https_redirect_port"]
        if v["pypi_cache"]:
            ports["pypi_cache_port"] = v["pypi_cache_port"]
    seen: dict[int, str] = {}
    for k, p in ports.items():
        if p in seen:
            raise InventoryError(f"{where}: {k} {p} is also {seen[p]}: give each its own port")
        seen[p] = k
    if v["static_index"] is True and not v["tls"]:
        raise InventoryError(f"{where}: static_index needs tls: true (nginx serves the static index)")
    if v["static_index"] is True and read_auth(v):
        raise InventoryError(f"{where}: static_index serves pages without a password: it cannot go with "
                             f"pypiserver_authenticate {v['pypiserver_authenticate']}")
    if v["pypi_cache"] and not static_index_on(v):
        why = "tls: false" if not v["tls"] else "static_index: false" if v["static_index"] is False else \
            f"pypiserver_authenticate {v['pypiserver_authenticate']} (reading needs a password)"
        raise InventoryError(f"{where}: pypi_cache needs the static index (nginx tells private names from "
                             f"upstream ones with it), which is off here: {why}")
    for have, lacks in (("tls_cert", "tls_key"), ("tls_key", "tls_cert")):
        if v[have] and not v[lacks]:
            raise InventoryError(f"{where}: {have} is set without {lacks}: set both, or neither "
                                 f"(a private CA then signs one)")
    dirs = {k: v[k] for k in DIR_VARS}
    for a, pa in dirs.items():
        for b, pb in dirs.items():
            if a != b and _inside(pa, pb):
                raise InventoryError(f"{where}: {a} {pa} is inside {b} {pb}: give each its own directory")
    for k in ("pypiserver_packages_dir", "pypiserver_venv", "pypiserver_wheels_dir"):
        if _inside(v["pypiserver_htpasswd"], v[k]):
            raise InventoryError(f"{where}: pypiserver_htpasswd {v['pypiserver_htpasswd']} is inside "
                                 f"{k} {v[k]}: keep it in pypiserver_config_dir")


# -- command-line values of the index tasks ------------------------------------------------
_PROJECT = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,98}[A-Za-z0-9])?")
_VERSION = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.!+_-]{0,62}[A-Za-z0-9])?")


def _matching(value, pattern, what: str, limit: int, hint: str) -> str:
    text = _text(value, what, limit)
    if not pattern.fullmatch(text):
        raise ValueError(f"{_show(value)} is not {hint}")
    return text


def _version_value(value) -> str:
    """A version as file names spell it (PEP 440's characters); a YAML number is taken as text."""
    text = str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    return _matching(text, _VERSION, "a version", 64, "a version (like 1.2.0, 2.0rc1, 1!3.0+local)")


def _cli(check, value, what: str) -> str:
    try:
        return check(value)
    except ValueError as exc:
        raise InventoryError(f"{what} {exc}") from None


def project_name(value) -> str:
    """A project name as PEP 508 spells them (letters, digits, '.', '_', '-')."""
    return _cli(lambda v: _matching(v, _PROJECT, "a project name", 100,
                                    "a project name (letters, digits, '.', '_' and '-')"), value, "name")


def release_version(value) -> str:
    return _cli(_version_value, value, "version")


def folder_option(value, what: str) -> str:
    """A folder on this machine given on the command line (--to, --from)."""
    return _cli(local_path, value, what)


def since_time(value) -> str:
    """A journalctl time: "2026-12-04 10:00", "1h ago", "yesterday", "-2h" (quoted where used)."""
    def check(v):
        text = _text(v, "a time", 40)
        if not re.fullmatch(r"[A-Za-z0-9 :.+-]{1,40}", text) or text.startswith("-") and not \
                re.fullmatch(r"-[0-9]+[a-z]*", text):
            raise ValueError(f"{_show(v)} is not a time (like '2026-12-04 10:00', '1h ago', yesterday)")
        return text
    return _cli(check, value, "--since")


def yank_reason(value) -> str:
    """Free text for clients (escaped where it is written): one line, 500 characters at most."""
    return _cli(lambda v: _text(v, "text", 500), value, "reason")


# -- connection values (inventory.py) ----------------------------------------------------
def ssh_user(value) -> str:
    text = _text(value, "a user name", 64)
    if not re.fullmatch(r"[A-Za-z0-9_.][A-Za-z0-9_.-]*\$?", text):
        raise ValueError(f"{_show(value)} is not a valid user name")
    return text


def local_path(value) -> str:
    text = _text(value, "a path", 4096)
    if not text:
        raise ValueError("is empty")
    return text


def label(value, what: str) -> str:
    """A host or group name from the inventory: shown in every line of output."""
    text = str(value)
    if not text or _CONTROL.search(text) or len(text) > 253 or text.startswith("-"):
        raise InventoryError(f"bad {what} name {_show(value)}")
    return text


# -- unit files --------------------------------------------------------------------------
def systemd_quote(arg: str) -> str:
    """One argument for an ExecStart= line, taken literally by systemd (219 and later):
    double-quoted with C escapes, `%` doubled (specifiers) and `$` doubled (variables)."""
    if _CONTROL.search(arg):
        raise ValueError(f"control character in unit argument {_show(arg)}")
    escaped = arg.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    return f'"{escaped}"'
