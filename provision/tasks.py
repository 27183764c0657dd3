"""The command-line tasks (invoke). Thin: parse flags, pick hosts, call the runner.

Every task goes through `cli.task` (one boundary: no --dry, no traceback, exit 2 on a
usage error); hosts are ``-H/--host``, so ``-h`` is always help.
"""

from __future__ import annotations

import getpass
import os
import re
import sys

from invoke import Collection, Exit

from . import __version__
from .cli import task

HOST_HELP = "[USER@]HOST[:SSHPORT], an inventory host or group; repeatable; default: the inventory's hosts"
INVENTORY_HELP = "inventory YAML (default: inventory.yml)"
NO_COLOR_HELP = "no colour (also: the NO_COLOR environment variable)"


def _targets(host, inventory, overrides):
    from . import inventory as inv

    return inv.select(list(host or []), inventory, overrides)


def _sudo_password(ask: bool) -> str | None:
    if not ask:
        return None
    try:
        return getpass.getpass("sudo password: ")
    except (EOFError, KeyboardInterrupt):
        raise Exit("no sudo password given", code=2) from None


@task(
    iterable=["host"],
    kinds={"port": int},
    help={
        "host": HOST_HELP,
        "inventory": INVENTORY_HELP,
        "port": "TCP port pypiserver listens on and the firewall opens (default 8000, or what "
                "the host's last deploy recorded)",
        "check": "show what would change; change nothing",
        "diff": "show file differences",
        "offline": "ship wheels from this machine; the host needs no internet",
        "ask-sudo-pass": "prompt for the sudo password of the SSH user",
        "keep-repos": "CentOS 7: keep repo files that use the dead mirrors (no vault)",
        "cache": "also a pull-through cache of PyPI (pypi_cache: true; see docs/cache.md)",
        "no-color": NO_COLOR_HELP,
    },
)
def deploy(c, host=None, inventory=None, port=None, check=False, diff=False, offline=False,
           ask_sudo_pass=False, keep_repos=False, cache=False, no_color=False):
    """Turn hosts into private PyPI servers (pypiserver behind systemd and firewalld)."""
    from .roles.pypiserver import PypiserverRole

    overrides = {"pypiserver_port": port, "offline": True if offline else None,
                 "centos7_vault": False if keep_repos else None, "pypi_cache": True if cache else None}
    _run_role(PypiserverRole(), host, inventory, check, ask_sudo_pass, diff=diff,
              overrides=overrides)


def _run_role(role, host, inventory, check: bool, ask_sudo_pass: bool, diff: bool = False,
              overrides: dict | None = None, stream=None) -> dict:
    """Hosts, runner, recap and exit status: the same for every task that touches hosts.
    Every host's variables are checked before any host is touched."""
    from .runner import Options, run

    targets = _targets(host, inventory, overrides or {})
    for t in targets:
        role.vars(t)
    opts = Options(check=check, diff=diff, sudo_password=_sudo_password(ask_sudo_pass))
    results = run(targets, role, opts, stream=stream)
    if any(r.failed for r in results.values()):
        raise Exit(code=2)
    return results


def _read_password(password_stdin: bool) -> str:
    """One line from stdin, or a no-echo prompt typed twice; never an argument."""
    from .htpasswd import check_password

    if password_stdin:
        line = sys.stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        password = password[:-1] if password.endswith("\r") else password
    else:
        if not sys.stdin.isatty():
            raise Exit("error: no terminal to prompt on: give the password on stdin with "
                       "--password-stdin", code=2)
        try:
            password = getpass.getpass("New password: ")
            again = getpass.getpass("Repeat it: ")
        except (EOFError, KeyboardInterrupt):
            raise Exit("error: no password given: nothing changed", code=2) from None
        if password != again:
            raise Exit("error: the two passwords differ: nothing changed", code=2)
    check_password(password)
    return password


HOSTS_HELP = {
    "host": HOST_HELP,
    "inventory": INVENTORY_HELP,
    "check": "show what would change; change nothing",
    "ask-sudo-pass": "prompt for the sudo password of the SSH user",
    "no-color": NO_COLOR_HELP,
}


@task(iterable=["host"], help={**HOSTS_HELP, "name": "the account's user name",
                               "password-stdin": "read the password as one line from stdin"})
def add_user(c, name, password_stdin=False, host=None, inventory=None, check=False,
             ask_sudo_pass=False, no_color=False):
    """Add an upload account, or change its password (hashed here with bcrypt)."""
    from .htpasswd import check_name
    from .roles.accounts import AccountsRole

    check_name(name)
    password = _read_password(password_stdin)
    _run_role(AccountsRole("add", name, password), host, inventory, check, ask_sudo_pass)


@task(iterable=["host"], help={**HOSTS_HELP, "name": "the account to remove"})
def remove_user(c, name, host=None, inventory=None, check=False, ask_sudo_pass=False,
                no_color=False):
    """Remove an upload account (a missing one is fine)."""
    from .htpasswd import check_name
    from .roles.accounts import AccountsRole

    check_name(name)
    _run_role(AccountsRole("remove", name), host, inventory, check, ask_sudo_pass)


@task(iterable=["host"], help={**{k: v for k, v in HOSTS_HELP.items() if k != "check"},
                               "json": "print {host: [names]} as JSON"})
def list_users(c, host=None, inventory=None, ask_sudo_pass=False, json=False, no_color=False):
    """List the upload accounts: names on stdout, one per line (the run's report on stderr)."""
    import json as json_

    from .roles.accounts import AccountsRole

    role = AccountsRole("list")
    results = _run_role(role, host, inventory, False, ask_sudo_pass, stream=sys.stderr)
    if json:
        print(json_.dumps({h: role.listed.get(h, []) for h in results}, indent=2))
        return
    several = len(results) > 1
    for h in results:
        for name in role.listed.get(h, []):
            print(f"{h} {name}" if several else name)


@task(help={
    "host": "the server: [USER@]HOST or an inventory host (default: the inventory's only host)",
    "inventory": INVENTORY_HELP,
    "username": "the account to upload with (twine asks otherwise)",
    "name": "the repository's name in .pypirc, for `twine upload -r NAME` (default private)",
    "extra": "pip: extra-index-url instead of index-url (the dependency-confusion hole)",
    "write": "merge into your pip.conf and ~/.pypirc instead of printing",
    "password-stdin": "read the upload password from stdin and store it in .pypirc (0600)",
    "pip-conf": "pip config file to write (default ~/.config/pip/pip.conf)",
    "pypirc": ".pypirc to write (default ~/.pypirc)",
    "url": "the index's base URL if clients reach it otherwise (e.g. https://pypi.example.org/); "
           "default: what the host's last deploy recorded",
    "no-verify": "do not check that the index answers first",
    "ca": "the CA certificate (PEM) the index's certificate chains to, with --url; default: "
          "the private CA the host's deploy made (read over SSH), or none (publicly trusted)",
    "uv": "also write uv's uv.toml (~/.config/uv/uv.toml): uv reads no pip.conf",
})
def client_config(c, host=None, inventory=None, username=None, name="private", extra=False,
                  write=False, password_stdin=False, pip_conf=None, pypirc=None, url=None,
                  no_verify=False, ca=None, uv=False):
    """Print (or --write) the pip.conf, .pypirc (and uv settings) that point pip, twine and
    uv at the server, with the CA they verify it with."""
    from pathlib import Path

    from . import clientconfig as cc

    ca_pem = None
    if ca:
        try:
            ca_pem = Path(ca).read_bytes()
        except OSError as exc:
            raise Exit(f"error: cannot read --ca {ca}: {exc.strerror}", code=2) from None
        if b"BEGIN CERTIFICATE" not in ca_pem:
            raise Exit(f"error: --ca {ca} holds no PEM certificate", code=2)
    if not url:
        targets = _targets([host] if host else None, inventory, {})
        if len(targets) != 1:
            raise Exit("error: client-config takes one server: pass --host", code=2)
        url, notes, host_ca = cc.deployed_url(targets[0])
        ca_pem = ca_pem or host_ca
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
    # bad values are refused before anything is asked or checked
    simple, _ = cc.index_urls(url)
    if username is not None:
        cc.check_username(username)
    if not no_verify:
        print(f"index: {cc.verify_index(url, ca_pem=ca_pem)}", file=sys.stderr)
    password = _read_password(True) if password_stdin else None
    default_pip, default_rc = cc.default_paths()
    pip_path, rc_path = Path(pip_conf or default_pip), Path(pypirc or default_rc)
    # the private CA goes beside pip.conf, in a bundle with the public roots
    bundle = pip_path.parent / "provision-ca.pem" if ca_pem else None
    pip_text, pypirc_text = cc.render(url, name, username, password, extra,
                                      cert=str(bundle) if bundle else None)
    if extra:
        print(cc.DEPENDENCY_CONFUSION, file=sys.stderr)
    uv_text = cc.uv_toml(simple, name)
    uv_path = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "uv" / "uv.toml"
    if not write:
        shown = pypirc_text.replace(f"password = {password}", "password = (hidden; written with --write)") \
            if password else pypirc_text
        print(f"# --- {pip_path} ---\n{pip_text}\n# --- {rc_path} ---\n{shown}", end="")
        if bundle:
            print(f"\n# --- {bundle} (with --write): this machine's public roots + the server's CA ---")
        print(f"\n# --- uv (reads no pip.conf): {uv_path} with --uv, or in the environment ---\n"
              f"{cc.uv_settings(simple, str(bundle) if bundle else None)}", end="")
        return
    # every file read and checked before any is written: a refusal leaves them all untouched
    updates = [cc.prepare(pip_path, pip_text), cc.prepare(rc_path, pypirc_text, mode=0o600)]
    if bundle:
        updates.append(cc.Update(bundle, bundle, cc.read_config(bundle),
                                 cc.ca_bundle(bundle, ca_pem), 0o644))
        if cc.public_roots()[0] is None:
            print("warning: this machine has no public root certificates (install ca-certificates): "
                  f"{bundle} holds only the private CAs, so names the index redirects to PyPI will "
                  "not verify", file=sys.stderr)
    if uv:
        existing = cc.read_config(uv_path)
        if existing is not None and not existing.startswith("# Managed by provision"):
            raise Exit(f"error: {uv_path} is yours: add the index to it by hand:\n{uv_text}", code=2)
        updates.append(cc.Update(uv_path, uv_path, existing, uv_text, 0o644))
    for update in updates:
        print(update.apply())
    overriding = [k for k in ("PIP_CERT", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE") if os.environ.get(k)]
    if bundle and overriding:
        print(f"warning: {', '.join(overriding)} set in your environment override{'s' if len(overriding) == 1 else ''} "
              f"the cert/ca_cert written here (pip reads PIP_CERT first; twine's requests prefers "
              f"REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE): unset {'it' if len(overriding) == 1 else 'them'} or "
              f"point {'it' if len(overriding) == 1 else 'them'} at {bundle}", file=sys.stderr)
    if bundle:
        print(f"uv: export SSL_CERT_FILE={bundle}" + ("" if uv else f" UV_DEFAULT_INDEX={simple}"))


@task(iterable=["host", "python", "platform"], help={
    **HOSTS_HELP,
    "requirement": "requirements file to mirror (pip's format)",
    "python": "also for this Python version, e.g. 3.6 (repeatable)",
    "platform": "also for this platform tag, e.g. manylinux2014_x86_64 (repeatable)",
    "overwrite": "replace files that exist on the server with another size",
    "prune": "remove files mirror placed before that the requirements no longer need",
    "diff": "list the files that would be sent (with --check)",
    "refresh": "resolve again now (a resolution is otherwise reused for 12 hours)",
})
def mirror(c, requirement, host=None, inventory=None, python=None, platform=None, check=False,
           diff=False, overwrite=False, prune=False, refresh=False, ask_sudo_pass=False,
           no_color=False):
    """Cache the packages of a requirements file (with dependencies) on the servers."""
    from pathlib import Path

    from .roles.mirror import MirrorRole

    req = Path(requirement)
    if not req.is_file():
        raise Exit(f"error: requirements file {requirement} not found", code=2)
    for py in python or []:
        if not re.fullmatch(r"3\.\d{1,2}", py):
            raise Exit(f"error: --python takes a version like 3.11, got {py!r}", code=2)
    for tag in platform or []:
        if not re.fullmatch(r"[a-z0-9_]{1,64}", tag):
            raise Exit(f"error: --platform takes a tag like manylinux2014_x86_64, got {tag[:60]!r}",
                       code=2)
    role = MirrorRole(req, list(python or []), list(platform or []), overwrite, prune,
                      max_age=0 if refresh else 12 * 3600)
    _run_role(role, host, inventory, check, ask_sudo_pass, diff=diff)


@task(iterable=["host"], help={**HOSTS_HELP, "name": "the project (any spelling: Foo_Bar is foo-bar)",
                               "version": "the release, as its file names spell it",
                               "reason": "why, shown to pip and uv users (PEP 592)"})
def yank(c, name, version, reason="", host=None, inventory=None, check=False, ask_sudo_pass=False,
         no_color=False):
    """Yank a release (PEP 592): installs that do not pin it skip it; `==VERSION` still gets it."""
    _index_task("yank", name, version, reason, host, inventory, check, ask_sudo_pass)


@task(iterable=["host"], help={**HOSTS_HELP, "name": "the project", "version": "the release"})
def unyank(c, name, version, host=None, inventory=None, check=False, ask_sudo_pass=False,
           no_color=False):
    """Undo a yank: the release is offered to every install again."""
    _index_task("unyank", name, version, None, host, inventory, check, ask_sudo_pass)


@task(iterable=["host"], help=HOSTS_HELP)
def reindex(c, host=None, inventory=None, check=False, ask_sudo_pass=False, no_color=False):
    """Rebuild the static index from the package files (it otherwise follows every change)."""
    from .roles.index import IndexRole

    _run_role(IndexRole("reindex"), host, inventory, check, ask_sudo_pass)


def _index_task(action, name, version, reason, host, inventory, check, ask_sudo_pass):
    from .roles.index import IndexRole
    from .validate import project_name, release_version, yank_reason

    role = IndexRole(action, project_name(name), release_version(version),
                     yank_reason(reason) if reason is not None else None)
    _run_role(role, host, inventory, check, ask_sudo_pass)


@task(iterable=["host"], help={**{k: v for k, v in HOSTS_HELP.items() if k != "check"},
                               "json": "print the state as JSON (a list, one object per host)"})
def status(c, host=None, inventory=None, json=False, ask_sudo_pass=False, no_color=False):
    """Each server's state in one round trip: service, versions, certificate, packages,
    accounts, disk, index, firewall. Exit 1 when a host is unhealthy (down, disk over 90 %
    full, certificate under 14 days), 2 when one cannot be read."""
    import json as json_

    from .roles.status import StatusRole, json_rows, table

    role = StatusRole()
    failed = None
    try:
        results = _run_role(role, host, inventory, False, ask_sudo_pass, stream=sys.stderr)
    except Exit as exc:        # a host could not be read: show the others, then fail
        failed, results = exc, None
    names = list(results) if results else list(role.found)
    rows = [role.found[h] for h in names if h in role.found]
    if json:
        print(json_.dumps(json_rows(rows), indent=2, sort_keys=True))
    elif rows:
        print(table(rows))
    if failed is not None:
        raise failed
    if any(not r["healthy"] for r in rows):
        raise Exit(code=1)


@task(iterable=["host"], help={**{k: v for k, v in HOSTS_HELP.items()},
                               "host": "the host(s) to uninstall from: required (never the whole inventory by default)",
                               "purge": "also remove the packages, accounts, TLS files and yank list",
                               "yes": "with --purge: do not ask for confirmation"})
def uninstall(c, host=None, inventory=None, purge=False, yes=False, check=False, ask_sudo_pass=False,
              no_color=False):
    """Remove the service (units, venv, nginx site, firewall ports, static index); keep the
    packages and accounts unless --purge. A second run changes nothing."""
    from .roles.uninstall import UninstallRole

    if not host:
        raise Exit("error: uninstall needs -H/--host (it never defaults to every host of the inventory)", code=2)
    if purge and not yes and not check:
        if not sys.stdin.isatty():
            raise Exit("error: --purge removes the packages and accounts: confirm with --yes (no terminal "
                       "to ask on)", code=2)
        answer = input(f"--purge removes the packages, accounts and TLS files on {', '.join(host)}. "
                       f"Type yes to go on: ")
        if answer.strip() != "yes":
            raise Exit("error: not confirmed: nothing changed", code=2)
    _run_role(UninstallRole(purge), host, inventory, check, ask_sudo_pass)


@task(iterable=["host"], help={
    "host": HOST_HELP, "inventory": INVENTORY_HELP,
    "follow": "keep streaming new lines (Ctrl-C ends)",
    "since": "from this time on (journalctl's: '2026-12-04 10:00', '1h ago', yesterday); default: the "
             "last 100 lines",
    "ask-sudo-pass": "prompt for the sudo password of the SSH user", "no-color": NO_COLOR_HELP,
})
def logs(c, host=None, inventory=None, follow=False, since=None, ask_sudo_pass=False, no_color=False):
    """The service's journal (and nginx's access log when it fronts the service), streamed."""
    from .logs import stream
    from .validate import role_vars, since_time

    since = since_time(since) if since else None
    targets = _targets(host, inventory, {})
    services = {t.name: role_vars(t)["pypiserver_service"] for t in targets}
    try:
        code = stream(targets, lambda t: services[t.name], follow, since, _sudo_password(ask_sudo_pass))
    except KeyboardInterrupt:
        raise Exit(code=130) from None
    if code:
        raise Exit(code=code)


@task(iterable=["host"], help={
    "host": HOST_HELP, "inventory": INVENTORY_HELP,
    "to": "the backup folder (default ./backups/HOST; with several hosts, DIR/HOST each)",
    "ask-sudo-pass": "prompt for the sudo password of the SSH user", "no-color": NO_COLOR_HELP,
})
def backup(c, host=None, inventory=None, to=None, ask_sudo_pass=False, no_color=False):
    """Copy each server's packages, accounts, settings and yank list into a folder here, with
    a MANIFEST.sha256; only new or changed files are sent."""
    from .roles.backup import BackupRole
    from .validate import folder_option

    if to is not None:
        to = folder_option(to, "--to")
    targets = _targets(host, inventory, {})
    role = BackupRole(to, per_host=len(targets) > 1)
    _run_role(role, host, inventory, False, ask_sudo_pass)


@task(iterable=["host"], help={
    "from": "the backup folder (made by invoke backup)",
    "host": "the host(s) to restore onto: required", "inventory": INVENTORY_HELP,
    "overwrite": "replace files (and account passwords) the host has with other content",
    "check": "verify the backup and show what would change; change nothing",
    "ask-sudo-pass": "prompt for the sudo password of the SSH user", "no-color": NO_COLOR_HELP,
})
def restore(c, from_=None, host=None, inventory=None, overwrite=False, check=False, ask_sudo_pass=False,
            no_color=False):
    """Restore a backup onto a host: verified first, deployed if needed (with the backup's
    settings), then what the host lacks is sent and checked there."""
    from pathlib import Path

    from . import backup as bk
    from .roles import parse_record
    from .roles.restore import RestoreRole
    from .validate import folder_option

    if not from_:
        raise Exit("error: restore needs --from DIR (a folder invoke backup made)", code=2)
    if not host:
        raise Exit("error: restore needs -H/--host (it never defaults to every host of the inventory)", code=2)
    folder = Path(folder_option(from_, "--from"))
    manifest, wrong = bk.verify(folder)
    if wrong:
        raise Exit(f"error: the backup in {folder} does not verify: {'; '.join(wrong[:5])}"
                   f"{f' (and {len(wrong) - 5} more)' if len(wrong) > 5 else ''}: nothing was touched", code=2)
    print(f"backup {folder}: {len(manifest)} files verified against {bk.MANIFEST}")
    seed = {}
    record = folder / "record.json"
    if record.is_file():
        seed = parse_record(record.read_text(), str(record)) or {}
        # the old server's names and certificate: the new host gets one for its own names
        for k in ("pypiserver_url_host", "tls_names", "tls_cert", "tls_key"):
            seed.pop(k, None)
    _run_role(RestoreRole(folder, manifest, overwrite, seed, str(record)), host, inventory, check, ask_sudo_pass)


@task(iterable=["host"], help={**HOSTS_HELP,
                               "to": "pypiserver's version to move to (default: the tested pin set's, the "
                                     "newest this host's Python runs)"})
def upgrade(c, host=None, inventory=None, to=None, check=False, ask_sudo_pass=False, no_color=False):
    """Move pypiserver to the tested pins (or --to VERSION): a new venv built beside the
    old one, switched in, health-checked; switched back automatically if the check fails."""
    from .roles.upgrade import UpgradeRole
    from .validate import release_version

    _run_role(UpgradeRole(release_version(to) if to else ""), host, inventory, check, ask_sudo_pass)


@task
def version(c):
    """Print this tool's version (`invoke --version` prints invoke's own)."""
    import invoke

    print(f"provision-pypiserver {__version__} (invoke {invoke.__version__}, Python "
          f"{sys.version.split()[0]})")


ns = Collection(deploy, add_user, remove_user, list_users, client_config, mirror, yank, unyank,
                reindex, status, uninstall, logs, backup, restore, upgrade, version)
