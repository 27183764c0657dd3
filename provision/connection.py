"""The one module that talks to Fabric and paramiko.

Everything else sees a `Remote`: run a shell script as root, stream files into a
directory. Both go through a single SSH transport and one exec channel each, and the
channels are counted, because round trips are what a redeploy costs.

Scripts travel on the channel's stdin (``sh -s``), never on the command line, so
nothing we send (file contents, hashes) shows up in the host's process list. A sudo
password, when one is needed, is written to sudo's stdin only after sudo prompts for
it with our marker prompt; the command then prints a ready marker before we send
the script, so the two never mix.
"""

from __future__ import annotations

import os
import shlex
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import (AuthError, ConnectError, ConnectionLost, HostKeyError, SudoError,
                     UnreachableError)

SUDO_PROMPT = "[provision-sudo-password]"
READY = "__provision_ready__"
CONNECT_TIMEOUT = 10


def silence_limit() -> float:
    """Seconds a host may leave a keepalive unanswered before it counts as lost
    (PROVISION_SSH_TIMEOUT, default 30). A quiet command (pip install) is not silence:
    the host's sshd answers keepalives while it runs."""
    try:
        return max(3.0, float(os.environ.get("PROVISION_SSH_TIMEOUT", "30")))
    except ValueError:
        return 30.0


class _Liveness:
    """Asks the host's sshd for a reply when nothing has arrived for a while; a host that
    does not reply within the silence limit is lost (a link down, a host frozen)."""

    def __init__(self, transport, limit: float):
        self.transport, self.limit = transport, limit
        self.quiet_since = time.monotonic()
        self.asked_at: float | None = None
        self.answered = threading.Event()

    def heard(self) -> None:
        self.quiet_since = time.monotonic()

    def check(self) -> str | None:
        """None while alive; otherwise why the host counts as lost."""
        now = time.monotonic()
        if not self.transport.is_active():
            return "the SSH connection closed"
        if self.asked_at is not None and self.answered.is_set():
            self.asked_at = None
            self.quiet_since = now
        if self.asked_at is None and now - self.quiet_since > self.limit / 3:
            self.asked_at, self.answered = now, threading.Event()
            answered = self.answered

            def ask():
                try:
                    self.transport.global_request("keepalive@openssh.com", wait=True)
                finally:
                    answered.set()
            threading.Thread(target=ask, daemon=True).start()
        if self.asked_at is not None and now - self.asked_at > self.limit:
            return f"no answer for {now - self.quiet_since:.0f} s (network down or host frozen?)"
        return None
_known_hosts_lock = threading.Lock()


@dataclass
class Result:
    rc: int
    stdout: str
    stderr: str


class _AcceptNewPolicy:
    """Like ssh's StrictHostKeyChecking=accept-new: record unknown keys, refuse changed ones.

    paramiko raises BadHostKeyException by itself for a changed key once the
    known_hosts file is loaded; this policy only decides about unknown hosts.
    """

    def __init__(self, path: Path, notes: list[str]):
        self.path = path
        self.notes = notes

    def missing_host_key(self, client, hostname, key):
        line = f"{hostname} {key.get_name()} {key.get_base64()}\n"
        with _known_hosts_lock:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with open(self.path, "a", encoding="ascii") as fh:
                fh.write(line)
        client.get_host_keys().add(hostname, key.get_name(), key)
        self.notes.append(
            f"new host key for {hostname} ({key.get_name()}) recorded in {self.path}"
        )


class _RejectPolicy:
    """StrictHostKeyChecking yes (or ask: we cannot ask): an unknown host is refused."""

    def __init__(self, path: Path, setting: str):
        self.path, self.setting = path, setting

    def missing_host_key(self, client, hostname, key):
        raise HostKeyError(
            f"host key for {hostname} is not in {self.path} and ~/.ssh/config says "
            f"StrictHostKeyChecking {self.setting}: refusing to connect; check the key and add it "
            f"(ssh {hostname} once, or ssh-keyscan after checking its fingerprint)")


def host_key_policy(setting: str | None, path: Path, notes: list[str]):
    """What ~/.ssh/config's StrictHostKeyChecking asks for unknown hosts. A changed key is
    refused whatever it says (stricter than OpenSSH's `no`)."""
    value = (setting or "accept-new").strip().lower()
    if value in ("yes", "ask", "true"):
        return _RejectPolicy(path, value)
    if value in ("accept-new", "no", "off", "false"):
        return _AcceptNewPolicy(path, notes)
    raise HostKeyError(f"StrictHostKeyChecking {setting!r} in ~/.ssh/config is not one we know "
                       f"(yes, accept-new, no, ask)")


class Remote:
    """A lazily opened SSH connection to one host, running everything as root."""

    def __init__(self, target, sudo_password: str | None = None):
        self.target = target
        self.sudo_password = sudo_password
        self.channels = 0
        self.notes: list[str] = []
        self._conn = None

    # -- connection ---------------------------------------------------------------
    def open(self) -> None:
        if self._conn is not None:
            return
        import logging

        import paramiko
        from fabric import Config, Connection

        # paramiko logs transport errors with tracebacks; we report them as one line
        logging.getLogger("paramiko").addHandler(logging.NullHandler())
        logging.getLogger("paramiko").propagate = False

        t = self.target
        connect_kwargs = {"banner_timeout": CONNECT_TIMEOUT, "auth_timeout": CONNECT_TIMEOUT}
        if t.ssh_key:
            connect_kwargs["key_filename"] = [os.path.expanduser(str(t.ssh_key))]
        conn = Connection(
            t.ssh_host,
            user=t.ssh_user,
            port=t.ssh_port,
            connect_timeout=CONNECT_TIMEOUT,
            connect_kwargs=connect_kwargs,
            config=Config(),
        )
        known_hosts = self._known_hosts_path(conn)
        if known_hosts.exists():
            try:
                conn.client.load_host_keys(str(known_hosts))
            except (OSError, paramiko.SSHException) as exc:
                raise ConnectError(f"cannot read known_hosts {known_hosts}: {exc}") from exc
        conn.client.set_missing_host_key_policy(
            host_key_policy(conn.ssh_config.get("stricthostkeychecking"), known_hosts, self.notes))
        where = f"{conn.user}@{conn.host}:{conn.port}"
        try:
            conn.open()
        except HostKeyError:
            raise
        except paramiko.BadHostKeyException as exc:
            raise HostKeyError(
                f"host key for {conn.host} has CHANGED (now {exc.key.get_name()} "
                f"{exc.key.get_fingerprint().hex()}): refusing to connect; if the host was "
                f"rebuilt, remove its old line from {known_hosts}"
            ) from exc
        except paramiko.AuthenticationException as exc:
            raise AuthError(
                f"authentication failed for {where}: no key or agent identity was accepted "
                f"({exc})"
            ) from exc
        except (socket.timeout, TimeoutError) as exc:
            raise UnreachableError(f"cannot reach {where}: timed out after {CONNECT_TIMEOUT} s") from exc
        except paramiko.ssh_exception.NoValidConnectionsError as exc:
            reason = "; ".join(sorted({e.strerror or str(e) for e in exc.errors.values()}))
            raise UnreachableError(f"cannot reach {where}: {reason}") from exc
        except socket.gaierror as exc:
            raise UnreachableError(f"cannot resolve {conn.host}: {exc.strerror}") from exc
        except OSError as exc:
            raise UnreachableError(f"cannot reach {where}: {exc.strerror or exc}") from exc
        except paramiko.SSHException as exc:
            raise ConnectError(f"SSH to {where} failed: {exc}") from exc
        self._conn = conn
        self.user = conn.user
        self.hostname = conn.host

    def _known_hosts_path(self, conn) -> Path:
        if self.target.known_hosts:
            return Path(os.path.expanduser(str(self.target.known_hosts)))
        configured = conn.ssh_config.get("userknownhostsfile")
        if configured:
            first = configured.split()[0] if isinstance(configured, str) else configured[0]
            return Path(os.path.expanduser(first))
        return Path.home() / ".ssh" / "known_hosts"

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- commands -----------------------------------------------------------------
    def _wrap(self, inner: str, root: bool = True) -> str:
        """The command line for `inner` as root; it prints READY on stderr first."""
        body = f"echo {READY} >&2; {inner}"
        if self.user == "root" or not root:
            return f"sh -c {shlex.quote(body)}"
        return f"sudo -S -p {shlex.quote(SUDO_PROMPT)} -- sh -c {shlex.quote(body)}"

    def run_script(self, script: str, on_line=None, timeout: float | None = None) -> Result:
        """Run a shell script as root; `on_line(line)` sees stdout lines as they arrive."""
        return self._exec("sh -s", script.encode(), on_line=on_line, timeout=timeout)

    def run_as_user(self, script: str, timeout: float | None = 30) -> Result:
        """Run a read-only shell script as the SSH user: no sudo, so no password asked."""
        return self._exec("sh -s", script.encode(), timeout=timeout, root=False)

    def stream(self, inner: str, producer, timeout: float | None = None) -> Result:
        """Run `inner` as root with stdin fed by `producer(write)` (e.g. a tar stream)."""
        return self._exec(inner, producer, timeout=timeout)

    def fetch(self, inner: str, on_data, data: bytes = b"", timeout: float | None = None) -> Result:
        """Run `inner` as root, its stdout handed to `on_data(chunk)` as it arrives (never
        held in memory: a backup's tar stream); stdin gets `data`."""
        return self._exec(inner, data, timeout=timeout, on_data=on_data)

    def _exec(self, inner: str, data, on_line=None, timeout=None, root: bool = True, on_data=None) -> Result:
        self.open()
        import paramiko

        try:
            return self._exec_on_channel(inner, data, on_line, timeout, root, on_data)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise ConnectError(f"connection to {self.hostname} lost: {exc or type(exc).__name__}") from exc

    def _exec_on_channel(self, inner: str, data, on_line, timeout, root: bool = True, on_data=None) -> Result:
        transport = self._conn.transport
        try:
            # (paramiko's default window: a 16 MB one made a backup's stream twice as slow)
            chan = transport.open_session(timeout=CONNECT_TIMEOUT)
        except Exception as exc:  # paramiko raises bare SSHException/EOFError here
            raise ConnectError(f"{self.hostname}: cannot open an SSH channel: {exc}") from exc
        self.channels += 1
        # a send that cannot progress (link down, window full) fails instead of hanging
        chan.settimeout(silence_limit())
        chan.exec_command(self._wrap(inner, root))
        out, err = bytearray(), bytearray()
        deadline = time.monotonic() + timeout if timeout else None
        alive = _Liveness(transport, silence_limit())

        def pump(wait=0.002):
            got = False
            if chan.recv_ready():
                chunk = chan.recv(65536)
                got = True
                if on_data is not None:
                    # (before READY nothing comes on stdout: the wrapper echoes it on stderr)
                    on_data(chunk)
                    chunk = b""
                out.extend(chunk)
                if on_line is not None:
                    while b"\n" in out[pump.seen:]:
                        nl = out.index(b"\n", pump.seen)
                        on_line(out[pump.seen:nl].decode(errors="replace"))
                        pump.seen = nl + 1
            if chan.recv_stderr_ready():
                err.extend(chan.recv_stderr(65536))
                got = True
            if got:
                alive.heard()
            else:
                if deadline and time.monotonic() > deadline:
                    chan.close()
                    raise ConnectError(f"{self.hostname}: command timed out after {timeout:.0f} s")
                lost = alive.check()
                if lost:
                    chan.close()
                    raise ConnectionLost(f"connection to {self.hostname} lost: {lost}")
                time.sleep(wait)
            return got

        pump.seen = 0
        self._handshake(chan, err, pump)
        del err[: err.index(READY.encode()) + len(READY) + 1]
        if callable(data):
            data(chan.sendall)
        elif data:
            chan.sendall(data)
        chan.shutdown_write()
        while not (chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready()):
            pump()
        while pump(0):
            pass
        rc = chan.recv_exit_status()
        chan.close()
        if on_line is not None and pump.seen < len(out):
            on_line(out[pump.seen:].decode(errors="replace"))
        return Result(rc, out.decode(errors="replace"), err.decode(errors="replace"))

    def _handshake(self, chan, err: bytearray, pump) -> None:
        """Wait for READY, answering sudo's prompt once if it asks for a password."""
        answered = False
        prompt = SUDO_PROMPT.encode()
        while READY.encode() not in err:
            if chan.exit_status_ready() and not chan.recv_stderr_ready() and not chan.recv_ready():
                text = err.decode(errors="replace").replace(SUDO_PROMPT, "").strip()
                if "password is required" in text or "no password was provided" in text:
                    raise SudoError(
                        f"sudo on {self.hostname} needs a password for {self.user}: "
                        f"rerun with --ask-sudo-pass (or allow NOPASSWD sudo)"
                    )
                if "must have a tty" in text:
                    raise SudoError(f"sudo on {self.hostname} requires a tty for {self.user} "
                                    f"(Defaults requiretty): remove that for this user")
                if "incorrect password" in text or "Sorry, try again" in text:
                    raise SudoError(f"sudo on {self.hostname} rejected the password for {self.user}")
                last = text.splitlines()[-1] if text else f"exit status {chan.recv_exit_status()}"
                raise SudoError(f"sudo on {self.hostname} failed for {self.user}: {last}")
            pump()
            if prompt in err:
                if answered or self.sudo_password is None:
                    chan.close()
                    if answered:
                        raise SudoError(f"sudo on {self.hostname} rejected the password for {self.user}")
                    raise SudoError(
                        f"sudo on {self.hostname} needs a password for {self.user}: "
                        f"rerun with --ask-sudo-pass (or allow NOPASSWD sudo)"
                    )
                chan.sendall((self.sudo_password + "\n").encode())
                answered = True
                del err[: err.index(prompt) + len(prompt)]
