"""The command-line tasks (invoke). Thin: parse flags, pick hosts, call the runner."""

from __future__ import annotations

import getpass

from invoke import Collection, Exit, task

from .errors import ProvisionError

HOST_HELP = "[USER@]HOST[:SSHPORT], an inventory host or group; repeatable; default: the inventory's hosts"
INVENTORY_HELP = "inventory YAML (default: inventory.yml, else the local test host's)"


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
    help={
        "host": HOST_HELP,
        "inventory": INVENTORY_HELP,
        "port": "PORT pypiserver listens on and firewalld opens (default 8000)",
        "check": "show what would change; change nothing",
        "diff": "show file differences",
        "offline": "ship wheels from this machine; the host needs no internet",
        "ask-sudo-pass": "prompt for the sudo password of the SSH user",
        "keep-repos": "CentOS 7: keep repo files that use the dead mirrors (no vault)",
    },
)
def deploy(c, host=None, inventory=None, port=None, check=False, diff=False, offline=False,
           ask_sudo_pass=False, keep_repos=False):
    """Turn hosts into private PyPI servers (pypiserver behind systemd and firewalld)."""
    from .roles.pypiserver import PypiserverRole
    from .runner import Options, run

    try:
        overrides = {"pypiserver_port": port, "offline": True if offline else None,
                     "centos7_vault": False if keep_repos else None}
        targets = _targets(host, inventory, overrides)
        role = PypiserverRole(diff=diff)
        for t in targets:
            role.vars(t)  # validate every host's variables before touching any host
        opts = Options(check=check, diff=diff, sudo_password=_sudo_password(ask_sudo_pass))
        results = run(targets, role, opts)
    except ProvisionError as exc:
        raise Exit(f"error: {exc}", code=2) from None
    except KeyboardInterrupt:
        raise Exit("interrupted", code=130) from None
    if any(r.failed for r in results.values()):
        raise Exit(code=2)


@task(help={"name": "machine name of the test host (default pypi-test)"})
def testhost_up(c, name="pypi-test"):
    """Boot a local throwaway Debian 12 host (systemd-nspawn) and write .testhost/inventory.yml."""
    from . import testhost

    _testhost_cli(testhost, ["up", name])


@task(help={"name": "the test host to stop (default: all of them)"})
def testhost_down(c, name=""):
    """Stop and delete local test hosts."""
    from . import testhost

    _testhost_cli(testhost, ["down", name] if name else ["down", "--all"])


def _testhost_cli(testhost, argv):
    try:
        code = testhost.main(argv)
    except testhost.TestHostError as exc:
        raise Exit(f"error: {exc}", code=2) from None
    if code:
        raise Exit(code=code)


ns = Collection(deploy, testhost_up, testhost_down)
