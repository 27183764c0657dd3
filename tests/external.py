"""Hosts the test suite does not boot itself: VMs (the project's Vagrantfile) or any server.

Set ``PROVISION_TEST_HOSTS`` to a comma-separated list of ``[USER@]HOST[:PORT]`` and the
real-host tests run against those hosts instead of booting systemd-nspawn containers:

    PROVISION_TEST_HOSTS      vagrant@192.168.56.10,vagrant@192.168.56.11 (USER defaults to
                              your login name; give it: ~/.ssh/config's User is not consulted)
    PROVISION_TEST_SSH_KEY    one private key for every host, or a comma-separated list
                              with one key per host, in the same order (optional: without
                              it, ssh and the tool use ~/.ssh/config, your keys, your agent)
    PROVISION_TEST_SUDO_PASSWORD   the users' sudo password; unset means passwordless sudo
    PROVISION_TEST_NO_REBOOT  1: skip the reboot test (hosts whose reboot does not come back)

Every host must be FRESH (nothing deployed yet) before each suite run, and each module
takes its own hosts: ``test_deploy.py`` needs 2, ``test_errors.py`` 1. ``destroy()``
deliberately leaves the host alone: recreate the VMs (``vagrant destroy -f && vagrant up``)
before the next run. ``HOST`` must be an address this machine reaches directly (the tests
talk HTTP to port 8000 on it), so use Vagrant's private-network addresses, not a
forwarded 127.0.0.1:2222.

:class:`ExternalHost` has the interface of :class:`testing.testhost.TestHost` the tests
use (``name``, ``address``, ``ssh_user``, ``ssh_key``, ``exec``, ``reboot``, ``destroy``)
built on the system ``ssh`` client: ``exec`` runs the command as root through ``sudo``.
"""
from __future__ import annotations

import atexit
import base64
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from testing import testhost as th

ENV_HOSTS = "PROVISION_TEST_HOSTS"
ENV_KEY = "PROVISION_TEST_SSH_KEY"
ENV_SUDO_PASSWORD = "PROVISION_TEST_SUDO_PASSWORD"
ENV_NO_REBOOT = "PROVISION_TEST_NO_REBOOT"

REBOOT_TIMEOUT = 180.0
_SPEC_RE = re.compile(r"^(?:(?P<user>[^@\s:]+)@)?(?P<host>\[[0-9a-fA-F:.]+\]|[^@\s:\[\]]+)(?::(?P<port>\d+))?$")
# What identifies one boot: the kernel's boot id (changes on a VM reboot) and PID 1's start
# time (changes when a container's init restarts, where the kernel's boot id does not).
_BOOT_MARK_CMD = "cat /proc/sys/kernel/random/boot_id; cut -d' ' -f22 /proc/1/stat"


class ExternalHostError(th.TestHostError):
    """An external test host is misconfigured or cannot be reached (one-line message)."""

    __test__ = False


def is_external(host) -> bool:
    """True for hosts this suite did not boot (they cannot be sabotaged or thrown away)."""
    return getattr(host, "is_external", False)


def reboot_disabled() -> bool:
    return os.environ.get(ENV_NO_REBOOT, "").strip() not in ("", "0")


class ExternalHost:
    """A host reached with the system ssh client; ``exec`` runs as root through sudo."""

    kind = "external"
    is_external = True

    def __init__(self, spec: str, *, ssh_key: str | None = None,
                 sudo_password: str | None = None, known_hosts: str | os.PathLike):
        m = _SPEC_RE.match(spec.strip())
        if not m:
            raise ExternalHostError(f"{ENV_HOSTS}: bad entry {spec!r}: expected [USER@]HOST[:PORT]")
        self.spec = spec.strip()
        self.address = m["host"].strip("[]")
        self.ssh_port = int(m["port"]) if m["port"] else None
        if self.ssh_port is not None and not 0 < self.ssh_port < 65536:
            raise ExternalHostError(f"{ENV_HOSTS}: bad SSH port in {spec!r}")
        self.ssh_user = m["user"] or os.environ.get("USER") or "root"
        self.ssh_key = Path(os.path.expanduser(ssh_key)).resolve() if ssh_key else None
        if self.ssh_key is not None and not self.ssh_key.is_file():
            raise ExternalHostError(f"{ENV_KEY}: no such key file {self.ssh_key}")
        self.sudo_password = sudo_password
        self.known_hosts = Path(known_hosts)
        # An inventory-friendly name, distinct from the address: literal USER@ADDRESS hosts
        # in the tests must not resolve to the inventory entry.
        self.name = "ext-" + re.sub(r"[^a-zA-Z0-9]+", "-", self.address).strip("-") + (
            f"-{self.ssh_port}" if self.ssh_port else "")
        self.timings: dict[str, float] = {}

    def __repr__(self) -> str:
        return f"<ExternalHost {self.name} {self.ssh_user}@{self.address}:{self.ssh_port or 22}>"

    # -- ssh ------------------------------------------------------------------------
    def ssh_args(self, connect_timeout: int = 10) -> list[str]:
        """argv prefix for the system ssh client: ``[*h.ssh_args(), "remote command"]``."""
        args = ["ssh", "-T", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=accept-new",
                "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", f"ConnectTimeout={connect_timeout}",
                "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3",
                "-o", "LogLevel=ERROR"]
        if self.ssh_key is not None:
            args += ["-i", str(self.ssh_key), "-o", "IdentitiesOnly=yes"]
        if self.ssh_port is not None:
            args += ["-p", str(self.ssh_port)]
        return [*args, f"{self.ssh_user}@{self.address}"]

    def _remote(self, cmd: str) -> str:
        """The remote command line for ``sh -c cmd`` as root.

        The command travels base64-encoded, so sudo's log (journal, /var/log/secure) never
        holds a secret a test puts on the command line (the tests grep the host for them).
        """
        b64 = base64.b64encode(cmd.encode()).decode()
        inner = shlex.quote(f'eval "$(echo {b64} | base64 -d)"')
        if self.ssh_user == "root":
            return f"sh -c {inner}"
        if self.sudo_password is not None:
            # -k: always ask (a cached credential would leave the password line to the command)
            return f"sudo -k -S -p '' sh -c {inner}"
        return f"sudo -n sh -c {inner}"

    def exec(self, cmd: str, input: bytes | None = None, check: bool = True,
             timeout: float | None = 120, connect_timeout: int = 10) -> subprocess.CompletedProcess:
        """Run ``sh -c cmd`` as root on the host over ssh; stdout/stderr captured as bytes."""
        stdin = input
        if self.ssh_user != "root" and self.sudo_password is not None:
            stdin = self.sudo_password.encode() + b"\n" + (input or b"")
        argv = [*self.ssh_args(connect_timeout), self._remote(cmd)]
        proc = subprocess.run(argv, input=stdin, capture_output=True, timeout=timeout,
                              stdin=None if stdin is not None else subprocess.DEVNULL)
        proc = subprocess.CompletedProcess(argv[:-1] + [cmd], proc.returncode, proc.stdout, proc.stderr)
        if check and proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip().splitlines()
            where = "ssh failed" if proc.returncode == 255 else f"exited {proc.returncode}"
            raise ExternalHostError(f"{self.name} ({self.ssh_user}@{self.address}): {cmd!r} {where}"
                                    + (f": {err[-1]}" if err else ""))
        return proc

    def check_usable(self) -> None:
        """Fail with one line unless ssh works and sudo gives root without a prompt."""
        res = self.exec("id -u", check=False, timeout=60)
        if res.returncode != 0 or res.stdout.strip() != b"0":
            err = res.stderr.decode(errors="replace").strip().splitlines()
            hint = err[-1] if err else f"exit status {res.returncode}"
            raise ExternalHostError(
                f"external test host {self.spec} is not usable as root over ssh: {hint} "
                f"(check {ENV_KEY}, and {ENV_SUDO_PASSWORD} if sudo needs a password)")

    def forget_host_key(self) -> None:
        """Drop this host's key from our known_hosts (after a test regenerated the host keys)."""
        target = self.address if self.ssh_port in (None, 22) else f"[{self.address}]:{self.ssh_port}"
        subprocess.run(["ssh-keygen", "-q", "-R", target, "-f", str(self.known_hosts)],
                       capture_output=True)
        Path(str(self.known_hosts) + ".old").unlink(missing_ok=True)

    # -- life cycle -----------------------------------------------------------------
    def _boot_mark(self) -> bytes | None:
        try:
            res = self.exec(_BOOT_MARK_CMD, check=False, timeout=20, connect_timeout=5)
        except subprocess.TimeoutExpired:
            return None
        return res.stdout if res.returncode == 0 and res.stdout.strip() else None

    def reboot(self) -> "ExternalHost":
        """``systemctl reboot`` on the host, then wait (up to 180 s) until ssh answers from the new boot."""
        t0 = time.monotonic()
        before = self._boot_mark()
        if before is None:
            raise ExternalHostError(f"{self.name}: cannot read the boot id before rebooting")
        try:
            self.exec("systemctl reboot", check=False, timeout=30)  # ssh drops: status 255
        except subprocess.TimeoutExpired:
            pass
        deadline = t0 + REBOOT_TIMEOUT
        while time.monotonic() < deadline:
            mark = self._boot_mark()
            if mark is not None and mark != before:
                self.timings["reboot"] = round(time.monotonic() - t0, 3)
                return self
            time.sleep(2)
        raise ExternalHostError(f"{self.name}: ssh did not come back from a new boot within "
                                f"{REBOOT_TIMEOUT:.0f} s after `systemctl reboot`")

    def destroy(self) -> None:
        """Nothing: the suite never deletes a host it did not create.

        Whatever the tests deployed stays; recreate the host before the next run
        (``vagrant destroy -f && vagrant up``).
        """


_state: dict = {}


def _state_dir() -> Path:
    if "dir" not in _state:
        path = Path(tempfile.mkdtemp(prefix="provision-external-"))
        atexit.register(shutil.rmtree, path, True)
        _state["dir"] = path
    return _state["dir"]


def external_hosts() -> list[ExternalHost] | None:
    """The hosts listed in PROVISION_TEST_HOSTS, or None when it is unset or empty.

    Raises ExternalHostError (one line) for a bad entry or key list.
    """
    specs = [s.strip() for s in os.environ.get(ENV_HOSTS, "").split(",") if s.strip()]
    if not specs:
        return None
    keys = [k.strip() for k in os.environ.get(ENV_KEY, "").split(",") if k.strip()]
    if len(keys) > 1 and len(keys) != len(specs):
        raise ExternalHostError(f"{ENV_KEY} lists {len(keys)} keys for {len(specs)} hosts in "
                                f"{ENV_HOSTS}: give one key for all, or one per host")
    password = os.environ.get(ENV_SUDO_PASSWORD)
    known_hosts = _state_dir() / "known_hosts"
    hosts = []
    for i, spec in enumerate(specs):
        key = keys[i] if len(keys) > 1 else (keys[0] if keys else None)
        hosts.append(ExternalHost(spec, ssh_key=key, sudo_password=password, known_hosts=known_hosts))
    names = [h.name for h in hosts]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ExternalHostError(f"{ENV_HOSTS} lists the same host twice: {', '.join(dupes)}")
    return hosts


def write_inventory(hosts, path: str | os.PathLike, **group_vars) -> Path:
    """A YAML inventory our tool reads, for test hosts of either kind.

    Only nspawn hosts: exactly :func:`testing.testhost.write_inventory`. With external
    hosts: ``ssh_host`` = address, ``ssh_user``, ``ssh_key`` (when known), ``ssh_port``
    (when given); ``offline: true`` by default (it works everywhere); group_vars whose value
    is None are left out (e.g. ``ssh_key`` when PROVISION_TEST_SSH_KEY is unset).
    """
    if not all(is_external(h) for h in hosts):
        return th.write_inventory(hosts, path, **group_vars)
    # external only: no harness known_hosts file unless the caller names one
    return th.write_inventory(hosts, path, **{"known_hosts": None, **group_vars})


def deployed_inventory(hosts, path: str | os.PathLike, **group_vars) -> Path:
    """`write_inventory`, then `invoke deploy` on it, which must succeed; the inventory."""
    from tests.helpers import invoke

    inv = write_inventory(hosts, path, **group_vars)
    res = invoke("deploy", "--inventory", str(inv))
    assert res.returncode == 0, res.stdout + res.stderr
    return inv
