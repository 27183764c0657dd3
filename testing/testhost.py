"""Throwaway Debian 12 hosts for real end-to-end tests, booted with systemd-nspawn.

Why this exists: the deploy tool's promises (sudo handling, firewalld ports,
systemd units surviving a reboot, idempotence over SSH) can only be checked
against a real init system and a real firewall.  Mocks of Fabric would test our
assumptions, not the hosts.  Full VMs are unavailable in CI, but a container
booted with ``systemd-nspawn --boot`` runs the genuine systemd, sshd and
firewalld of Debian 12, behind its own veth link, in a few seconds.

Design choices, and why:

* One base image per ``IMAGE_VERSION``, built with debootstrap once and cached
  under ``CACHE_DIR``: the debootstrap costs about a minute; each host then
  costs an overlayfs mount (or a reflink copy where overlayfs is unavailable).
* Each host gets its own /24 (``10.213.INDEX.0/24``, control side ``.1``, guest
  ``.2``) on a point-to-point veth, and no default route: the guest can reach
  nothing but the control side, so apt/pip in the guest fail fast instead of
  sending traffic anywhere.
* nspawn is started in a new session and its PID is kept in a state file, so
  hosts booted by ``python -m testing.testhost up`` outlive that process and
  ``down``/``destroy_all()`` can find them again after a crash.
* ``exec()`` uses nsenter, not SSH, so tests can inspect or sabotage a host
  independently of the transport the tool under test uses.

Everything here needs root.  Errors are raised as ``TestHostError`` with a
one-line message meant for the person running the tests.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

__all__ = [
    "CACHE_DIR", "IMAGE_VERSION", "TestHostError", "TestHost", "preflight",
    "ensure_image", "boot_hosts", "destroy_all", "write_inventory",
    "ssh_base_args", "list_hosts",
]

CACHE_DIR = Path(os.environ.get("PROVISION_TESTHOST_CACHE", "/var/cache/provision-testhost"))

#: Bump whenever the image recipe below changes: cached images of another
#: version are ignored and a fresh one is built.
IMAGE_VERSION = "3"

SUITE = "bookworm"
MIRROR = os.environ.get("PROVISION_TESTHOST_MIRROR", "http://deb.debian.org/debian")

# libpam-systemd: without it polkitd (pulled by firewalld) fails to configure.
# netbase: without /etc/protocols firewalld exits at start.
# curl: peer tools' benchmark runs it on the host.
PACKAGES = [
    "systemd", "systemd-sysv", "libpam-systemd", "dbus", "netbase",
    "openssh-server", "python3", "python3-venv", "firewalld", "sudo",
    "iproute2", "curl",
]

SSH_USER = "deploy"
PW_USER = "pwdeploy"
SUBNET_PREFIX = "10.213"          # host INDEX gets 10.213.INDEX.0/24
MAX_INDEX = 250
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,10}$")   # ve-NAME must fit IFNAMSIZ
BOOT_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
REBOOT_EXIT_STATUS = 133          # nspawn's exit status when the guest reboots

_GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_rootfs_mode: str | None = None    # "overlay" or "copy", learnt at first boot
_rootfs_mode_lock = threading.Lock()


class TestHostError(Exception):
    """A test host could not be built, booted, reached or removed (one-line message)."""

    __test__ = False  # not a pytest test class despite the name


# --------------------------------------------------------------------------- paths

def _hosts_dir() -> Path:
    return CACHE_DIR / "hosts"


def ssh_key_path() -> Path:
    """Private key authorized for ``deploy`` and ``pwdeploy`` in every image."""
    return CACHE_DIR / "id_ed25519"


def pwdeploy_password_path() -> Path:
    return CACHE_DIR / "pwdeploy.password"


def known_hosts_path() -> Path:
    return CACHE_DIR / "known_hosts"


def image_dir() -> Path:
    return CACHE_DIR / f"image-v{IMAGE_VERSION}"


_IMAGE_MARKER = ".testhost-image"


# --------------------------------------------------------------------------- helpers

def _run(cmd: list[str], what: str, **kw) -> subprocess.CompletedProcess:
    """Run a control-side command; failures become a one-line TestHostError."""
    kw.setdefault("stdin", subprocess.DEVNULL)
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    try:
        proc = subprocess.run(cmd, **kw)
    except FileNotFoundError:
        raise TestHostError(f"{what}: {cmd[0]} not found") from None
    if proc.returncode != 0:
        err = (proc.stderr or proc.stdout or "").strip().splitlines()
        last = err[-1] if err else f"exit status {proc.returncode}"
        raise TestHostError(f"{what}: {last}")
    return proc


@contextlib.contextmanager
def _flock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _proc_starttime(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":          # zombie: already dead for our purposes
        return None
    return fields[19]             # field 22 of stat(5)


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve())
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mnt = line.split()[4].replace("\\040", " ")
        if mnt == prefix or mnt.startswith(prefix + "/"):
            out.append(mnt)
    return sorted(out, key=len, reverse=True)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no console log)"
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)
    return " | ".join(l.strip() for l in text.strip().splitlines()[-lines:] if l.strip())


# --------------------------------------------------------------------------- preflight

def preflight() -> str | None:
    """Why test hosts cannot run on this machine, or None when they can."""
    if sys.platform != "linux":
        return "test hosts need Linux (systemd-nspawn)"
    if os.geteuid() != 0:
        return "not root: test hosts need root (systemd-nspawn, mounts, veth links)"
    missing = {
        "debootstrap": "debootstrap",
        "systemd-nspawn": "systemd-container",
        "nsenter": "util-linux",
        "ip": "iproute2",
        "ssh-keygen": "openssh-client",
    }
    absent = [b for b in missing if shutil.which(b) is None]
    if absent:
        pkgs = sorted({missing[b] for b in absent} | {"debootstrap", "systemd-container"})
        return f"{', '.join(absent)} missing: apt-get install {' '.join(pkgs)}"
    if not Path("/sys/fs/cgroup").is_dir():
        return "no /sys/fs/cgroup: systemd-nspawn cannot boot containers here"
    return None


def _require_preflight() -> None:
    reason = preflight()
    if reason:
        raise TestHostError(reason)


# --------------------------------------------------------------------------- image

_NET_SCRIPT = """\
#!/bin/sh
# Configure the veth guest end from /etc/testhost/net (written by the control
# side before each boot): one line "ADDRESS/PREFIX".  No default route on purpose.
set -e
addr=$(head -n1 /etc/testhost/net)
i=0
while ! ip link show host0 >/dev/null 2>&1; do
    i=$((i+1)); [ "$i" -gt 50 ] && { echo "testhost-net: no host0" >&2; exit 1; }
    sleep 0.1
done
ip link set lo up
ip addr replace "$addr" dev host0
ip link set host0 up
"""

_NET_UNIT = """\
[Unit]
Description=Test host network (host0 from /etc/testhost/net)
DefaultDependencies=no
ConditionPathExists=/etc/testhost/net
# Firewall first, like a real host whose interfaces come up after firewalld:
# once sshd answers, firewalld is already filtering.
After=firewalld.service local-fs.target
Before=network-pre.target network.target network-online.target ssh.service
Wants=network-pre.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/testhost-net

[Install]
WantedBy=multi-user.target network-online.target
"""

_SSHD_CONF = """\
# testhost: key-only logins, many parallel sessions (Fabric runs hosts in threads)
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
UseDNS no
MaxStartups 100:30:200
MaxSessions 50
"""

_APT_CONF = """\
// testhost: the guest has no route outside its veth link; fail fast.
Acquire::Retries "0";
Acquire::http::Timeout "3";
Acquire::https::Timeout "3";
APT::Periodic::Enable "0";
"""

# Units that only cost boot time or try the network in a throwaway host.
_MASKED_UNITS = [
    "apt-daily.timer", "apt-daily-upgrade.timer", "apt-daily.service",
    "apt-daily-upgrade.service", "dpkg-db-backup.timer", "e2scrub_all.timer",
    "e2scrub_reap.service", "fstrim.timer", "systemd-firstboot.service",
    "man-db.timer",
]


def ensure_image() -> Path:
    """Return the cached base rootfs, building it first if missing or outdated.

    Safe to call from several processes at once: the build runs under an
    exclusive lock, into a temporary directory renamed into place when complete,
    so nobody ever sees a half-built image.
    """
    _require_preflight()
    img = image_dir()
    if (img / _IMAGE_MARKER).is_file():
        return img
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with _flock(CACHE_DIR / "image.lock"):
        if (img / _IMAGE_MARKER).is_file():
            return img
        _build_image(img)
        _prune_old_images(img)
    return img


def _build_image(img: Path) -> None:
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix=f"{img.name}.tmp-", dir=CACHE_DIR))
    os.chmod(tmp, 0o755)  # mkdtemp's 0700 would become the guest's "/"
    log = CACHE_DIR / "image-build.log"
    try:
        debs = CACHE_DIR / "debs"
        debs.mkdir(exist_ok=True)
        cmd = ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}",
               f"--cache-dir={debs}", SUITE, str(tmp), MIRROR]
        with open(log, "w") as fh:
            fh.write(" ".join(cmd) + "\n")
            fh.flush()
            rc = subprocess.call(cmd, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT)
        if rc != 0:
            raise TestHostError(f"debootstrap failed (exit {rc}): {_tail(log, 1)} (log: {log})")
        _configure_image(tmp)
        (tmp / _IMAGE_MARKER).write_text(
            f"version={IMAGE_VERSION}\nbuilt={time.strftime('%Y-%m-%dT%H:%M:%S')}\n"
            f"seconds={time.monotonic() - started:.1f}\n")
        os.rename(tmp, img)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _ensure_keypair() -> Path:
    key = ssh_key_path()
    if not key.is_file() or not key.with_suffix(".pub").is_file():
        for p in (key, key.with_suffix(".pub")):
            p.unlink(missing_ok=True)
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "provision-testhost",
              "-f", str(key)], "ssh-keygen")
    os.chmod(key, 0o600)
    return key


def _configure_image(root: Path) -> None:
    def chroot(*args: str, input: str | None = None) -> None:
        _run(["chroot", str(root), *args], f"image setup ({args[0]})", input=input,
             stdin=None if input is not None else subprocess.DEVNULL,
             env={"PATH": _GUEST_PATH, "LANG": "C"})

    pub = _ensure_keypair().with_suffix(".pub").read_text()
    password = secrets.token_urlsafe(18)
    _write_private(pwdeploy_password_path(), password + "\n")

    for user in (SSH_USER, PW_USER):
        chroot("useradd", "--create-home", "--shell", "/bin/bash", user)
        ssh_dir = root / "home" / user / ".ssh"
        ssh_dir.mkdir(mode=0o700)
        (ssh_dir / "authorized_keys").write_text(pub)
        os.chmod(ssh_dir / "authorized_keys", 0o600)
        chroot("chown", "-R", f"{user}:{user}", f"/home/{user}/.ssh")
    # '*' rather than the locked '!': key logins work, no password exists.
    chroot("usermod", "-p", "*", SSH_USER)
    chroot("chpasswd", input=f"{PW_USER}:{password}\n")

    sudoers = root / "etc/sudoers.d"
    (sudoers / "testhost-deploy").write_text(f"{SSH_USER} ALL=(ALL) NOPASSWD:ALL\n")
    (sudoers / "testhost-pwdeploy").write_text(f"{PW_USER} ALL=(ALL) ALL\n")
    for f in ("testhost-deploy", "testhost-pwdeploy"):
        os.chmod(sudoers / f, 0o440)

    (root / "etc/ssh/sshd_config.d/testhost.conf").write_text(_SSHD_CONF)
    # Host keys are generated per host at first boot (see TestHost._prepare_root).
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()

    (root / "usr/local/sbin/testhost-net").write_text(_NET_SCRIPT)
    os.chmod(root / "usr/local/sbin/testhost-net", 0o755)
    (root / "etc/testhost").mkdir(exist_ok=True)
    (root / "etc/systemd/system/testhost-net.service").write_text(_NET_UNIT)

    # A throwaway host must power off and reboot promptly: seen under load, the stop of a
    # login's user manager (user@1000.service) held a reboot for minutes.
    (root / "etc/systemd/system.conf.d").mkdir(parents=True, exist_ok=True)
    (root / "etc/systemd/system.conf.d/testhost.conf").write_text(
        "[Manager]\nDefaultTimeoutStopSec=5s\n")
    (root / "etc/systemd/system/user@.service.d").mkdir(parents=True, exist_ok=True)
    (root / "etc/systemd/system/user@.service.d/testhost.conf").write_text(
        "[Service]\nTimeoutStopSec=5s\n")

    _local_apt_repo(root)
    (root / "etc/apt/apt.conf.d/99testhost").write_text(_APT_CONF)
    (root / "etc/resolv.conf").unlink(missing_ok=True)
    (root / "etc/resolv.conf").write_text("# testhost: no DNS; the guest only reaches its veth peer\n")

    # Empty machine-id: each host gets its own, written before its first boot.
    (root / "etc/machine-id").write_text("")
    (root / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    (root / "etc/hostname").write_text("testhost\n")

    systemctl = ["systemctl", f"--root={root}"]
    _run([*systemctl, "enable", "testhost-net.service", "firewalld.service", "ssh.service"],
         "image setup (systemctl enable)")
    _run([*systemctl, "mask", *_MASKED_UNITS], "image setup (systemctl mask)")
    _run(["chroot", str(root), "apt-get", "clean"], "image setup (apt-get clean)",
         env={"PATH": _GUEST_PATH})


#: what deploys install from the host's package manager, offered by its local repository
LOCAL_REPO_PACKAGES = ["nginx"]
LOCAL_REPO = "/srv/testhost-apt"


def _local_apt_repo(root: Path) -> None:
    """The host's only package source: a local repository of the .deb files a deploy
    installs (nginx and what it needs beyond the image), downloaded here from the image's
    own suite and not installed, so a deploy's `apt-get install nginx` really runs."""
    import hashlib

    apt = ["chroot", str(root), "apt-get", "-q", "-o", "Acquire::Check-Valid-Until=false",
           "-o", "Acquire::Check-Date=false"]
    env = {"PATH": _GUEST_PATH, "LANG": "C", "DEBIAN_FRONTEND": "noninteractive"}
    _run([*apt, "clean"], "image setup (apt-get clean)", env=env)   # debootstrap's own debs
    _run([*apt, "update"], "image setup (apt-get update)", env=env)
    _run([*apt, "install", "-y", "--download-only", "--no-install-recommends", *LOCAL_REPO_PACKAGES],
         "image setup (apt-get --download-only)", env=env)
    repo = root / LOCAL_REPO.lstrip("/")
    repo.mkdir(parents=True, exist_ok=True)
    stanzas = []
    for deb in sorted((root / "var/cache/apt/archives").glob("*.deb")):
        target = repo / deb.name
        shutil.move(str(deb), target)
        data = target.read_bytes()
        control = _run(["dpkg-deb", "-f", str(target)], "dpkg-deb -f").stdout.rstrip("\n")
        stanzas.append(f"{control}\nFilename: ./{deb.name}\nSize: {len(data)}\n"
                       f"MD5sum: {hashlib.md5(data).hexdigest()}\n"
                       f"SHA256: {hashlib.sha256(data).hexdigest()}\n")
    if not stanzas:
        raise TestHostError("image setup: apt-get downloaded no .deb for the local repository")
    (repo / "Packages").write_text("\n".join(stanzas))
    (root / "etc/apt/sources.list").write_text(
        f"# testhost: no route outside the veth link; the packages deploys install, kept here\n"
        f"deb [trusted=yes] file:{LOCAL_REPO} ./\n")
    for f in (root / "etc/apt/sources.list.d").glob("*"):
        f.unlink()
    shutil.rmtree(root / "var/lib/apt/lists", ignore_errors=True)
    (root / "var/lib/apt/lists/partial").mkdir(parents=True, exist_ok=True)


def _prune_old_images(keep: Path) -> None:
    """Drop images of other versions that no host still uses as overlay lower dir."""
    in_use = {h.image for h in list_hosts()}
    for old in CACHE_DIR.glob("image-v*"):
        if old != keep and old.is_dir() and str(old) not in in_use and ".tmp-" not in old.name:
            shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------- hosts

def _route_overlaps(net: ipaddress.IPv4Network, mine: str) -> bool:
    out = _run(["ip", "-4", "-o", "route", "show", "table", "all"], "ip route").stdout
    for line in out.splitlines():
        fields = line.split()
        dest = fields[0]
        if dest in ("default", "broadcast", "local", "unreachable", "blackhole", "prohibit"):
            dest = fields[1] if dest != "default" else ""
        if not dest or dest == "0.0.0.0/0":
            continue
        if "dev" in fields and fields[fields.index("dev") + 1] == mine:
            continue
        try:
            if ipaddress.ip_network(dest, strict=False).overlaps(net):
                return True
        except ValueError:
            continue
    return False


class TestHost:
    """One throwaway Debian 12 machine: a booted nspawn container behind its own veth.

    The object is a thin handle on the state directory ``CACHE_DIR/hosts/NAME``
    (``state.json``, ``console.log``, the overlay layers and the root), so a host
    can be driven from another process than the one that booted it: that is how
    ``python -m testing.testhost down`` finds hosts ``up`` left running.
    Connect to ``address`` as ``ssh_user`` with ``ssh_key``; use ``exec()`` for
    out-of-band root access that does not depend on SSH working.
    """

    __test__ = False  # not a pytest test class despite the name

    def __init__(self, name: str, index: int, *, image: Path | None = None):
        if not NAME_RE.match(name):
            raise TestHostError(f"bad host name {name!r}: must match {NAME_RE.pattern}")
        self.name = name
        self.index = index
        net = ipaddress.ip_network(f"{SUBNET_PREFIX}.{index}.0/24")
        self.network = net
        self.control_address = str(net.network_address + 1)
        self.address = str(net.network_address + 2)
        self.ssh_user = SSH_USER
        self.ssh_key = ssh_key_path()
        self.dir = _hosts_dir() / name
        self.root = self.dir / "root"
        self.console_log = self.dir / "console.log"
        self.image = str(image or image_dir())
        self.mode: str | None = None
        self.pid: int | None = None
        self.pid_start: str | None = None
        self.timings: dict[str, float] = {}
        self._proc: subprocess.Popen | None = None

    def __repr__(self) -> str:
        return f"<TestHost {self.name} {self.address} pid={self.pid}>"

    @property
    def veth(self) -> str:
        return f"ve-{self.name}"

    # -- state file ------------------------------------------------------------
    def _save(self, **extra) -> None:
        data = {
            "name": self.name, "index": self.index, "address": self.address,
            "control_address": self.control_address, "image": self.image,
            "mode": self.mode, "pid": self.pid, "pid_start": self.pid_start,
            "timings": self.timings,
        }
        old = self._load_state()
        data.update({k: v for k, v in old.items() if k not in data})
        data.update(extra)
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / "state.json.tmp"
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, self.dir / "state.json")

    def _load_state(self) -> dict:
        try:
            return json.loads((self.dir / "state.json").read_text())
        except (OSError, ValueError):
            return {}

    @classmethod
    def load(cls, name: str) -> "TestHost":
        """Handle on an existing host directory (booted by this or another process)."""
        path = _hosts_dir() / name / "state.json"
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            raise TestHostError(f"no test host {name!r} (no {path})") from None
        host = cls(data["name"], int(data["index"]), image=Path(data.get("image") or image_dir()))
        host.mode = data.get("mode")
        host.pid = data.get("pid")
        host.pid_start = data.get("pid_start")
        host.timings = data.get("timings") or {}
        return host

    @property
    def state(self) -> dict:
        return self._load_state()

    # -- process ---------------------------------------------------------------
    def running(self) -> bool:
        """True while this host's nspawn process is alive (PID reuse is checked)."""
        if self._proc is not None and self._proc.poll() is not None:
            return False
        return bool(self.pid) and self.pid_start is not None and \
            _proc_starttime(self.pid) == self.pid_start

    def _leader(self) -> int:
        """PID (control-side numbering) of the guest's init, for nsenter."""
        if not self.running():
            raise TestHostError(f"{self.name} is not running")
        todo = [self.pid]
        while todo:
            pid = todo.pop(0)
            for task in Path(f"/proc/{pid}/task").glob("*"):
                try:
                    kids = (task / "children").read_text().split()
                except OSError:
                    continue
                for kid in map(int, kids):
                    try:
                        status = Path(f"/proc/{kid}/status").read_text()
                    except OSError:
                        continue
                    m = re.search(r"^NSpid:\s+(.*)$", status, re.M)
                    if m and m.group(1).split()[-1] == "1" and len(m.group(1).split()) > 1:
                        return kid
                    todo.append(kid)
        raise TestHostError(f"{self.name}: guest init not found under nspawn pid {self.pid}")

    def _wait_exit(self, timeout: float) -> int | None:
        """Wait for nspawn to exit; its status when it is our child, else None."""
        deadline = time.monotonic() + timeout
        if self._proc is not None:
            try:
                return self._proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise TestHostError(f"{self.name}: nspawn did not exit within {timeout:.0f}s") from None
        while self.running():
            if time.monotonic() > deadline:
                raise TestHostError(f"{self.name}: nspawn did not exit within {timeout:.0f}s")
            time.sleep(0.1)
        return None

    # -- boot ------------------------------------------------------------------
    def _mount_root(self) -> None:
        global _rootfs_mode
        if self.root.is_dir() and (_mounts_under(self.root) or any(self.root.iterdir())):
            return  # already prepared (reboot, or re-boot of a stopped host)
        forced = os.environ.get("PROVISION_TESTHOST_ROOTFS")  # "overlay" | "copy"
        with _rootfs_mode_lock:
            mode = forced or _rootfs_mode or "overlay"
        t0 = time.monotonic()
        if mode == "overlay":
            upper, work = self.dir / "upper", self.dir / "work"
            for d in (upper, work, self.root):
                d.mkdir(parents=True, exist_ok=True)
            proc = subprocess.run(
                ["mount", "-t", "overlay", "overlay", "-o",
                 f"lowerdir={self.image},upperdir={upper},workdir={work}", str(self.root)],
                capture_output=True, text=True)
            if proc.returncode != 0:
                if forced:
                    raise TestHostError(f"overlay mount failed: {proc.stderr.strip()}")
                shutil.rmtree(upper, ignore_errors=True)
                shutil.rmtree(work, ignore_errors=True)
                mode = "copy"
        if mode == "copy":
            if self.root.exists():
                self.root.rmdir()
            _run(["cp", "-a", "--reflink=auto", self.image, str(self.root)], "copying image")
        self.mode = mode
        self.timings["rootfs"] = round(time.monotonic() - t0, 3)
        with _rootfs_mode_lock:
            _rootfs_mode = mode

    def _prepare_root(self) -> None:
        etc = self.root / "etc"
        (etc / "testhost").mkdir(exist_ok=True)
        (etc / "testhost/net").write_text(f"{self.address}/{self.network.prefixlen}\n")
        (etc / "hostname").write_text(self.name + "\n")
        (etc / "hosts").write_text(
            f"127.0.0.1\tlocalhost\n127.0.1.1\t{self.name}\n{self.address}\t{self.name}\n"
            "::1\tlocalhost ip6-localhost ip6-loopback\n")
        mid = etc / "machine-id"
        if not mid.read_text().strip():
            mid.write_text(uuid.uuid4().hex + "\n")
        if not (etc / "ssh/ssh_host_ed25519_key").exists():
            _run(["ssh-keygen", "-A", "-f", str(self.root)], "generating host keys")

    def _start(self) -> None:
        if self.running():
            raise TestHostError(f"{self.name} is already running (pid {self.pid})")
        cmd = ["systemd-nspawn", "--quiet", "-D", str(self.root), "--boot",
               "--register=no", "--keep-unit", "--network-veth", "-M", self.name,
               "--resolv-conf=off", "--timezone=off", "--link-journal=no"]
        with open(self.console_log, "ab") as log:
            log.write(f"\n=== testhost: boot {time.strftime('%H:%M:%S')}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True, cwd="/",
                env={"PATH": os.environ.get("PATH", _GUEST_PATH), "LANG": "C.UTF-8"})
        self.pid = self._proc.pid
        self.pid_start = _proc_starttime(self.pid)
        self._save()

    def _configure_link(self, deadline: float) -> None:
        link = Path("/sys/class/net") / self.veth
        while not link.exists():
            self._check_alive("veth link never appeared")
            if time.monotonic() > deadline:
                raise TestHostError(f"{self.name}: {self.veth} did not appear; console: {_tail(self.console_log)}")
            time.sleep(0.05)
        _run(["ip", "addr", "replace", f"{self.control_address}/{self.network.prefixlen}",
              "dev", self.veth], f"configuring {self.veth}")
        _run(["ip", "link", "set", self.veth, "up"], f"configuring {self.veth}")

    def _check_alive(self, what: str) -> None:
        if not self.running():
            rc = self._proc.poll() if self._proc else None
            raise TestHostError(f"{self.name}: nspawn exited (status {rc}) - {what}; "
                                f"console: {_tail(self.console_log)}")

    def _wait_ssh(self, deadline: float) -> None:
        while True:
            self._check_alive("while waiting for sshd")
            try:
                with socket.create_connection((self.address, 22), timeout=0.5) as s:
                    s.settimeout(2)
                    if s.recv(64).startswith(b"SSH-"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TestHostError(f"{self.name}: sshd on {self.address}:22 not answering after "
                                    f"{BOOT_TIMEOUT:.0f}s; console: {_tail(self.console_log)}")
            time.sleep(0.1)

    def _forget_known_host(self) -> None:
        """Drop stale keys of a previous host at this address (keeps accept-new useful)."""
        kh = known_hosts_path()
        if kh.is_file():
            with _flock(CACHE_DIR / "known_hosts.lock"):
                subprocess.run(["ssh-keygen", "-q", "-R", self.address, "-f", str(kh)],
                               capture_output=True)
                Path(str(kh) + ".old").unlink(missing_ok=True)

    def boot(self) -> "TestHost":
        """Prepare the root (first time only), start nspawn, wire the veth, wait for sshd."""
        _require_preflight()
        t0 = time.monotonic()
        self.dir.mkdir(parents=True, exist_ok=True)
        first = self.mode is None
        self._mount_root()
        self._prepare_root()
        if first:
            self._forget_known_host()
        return self._start_and_wait("boot", t0)

    def _start_and_wait(self, what: str, t0: float) -> "TestHost":
        """Start nspawn on the prepared root, wire the link, wait for sshd (or stop it)."""
        deadline = time.monotonic() + BOOT_TIMEOUT
        self._start()
        try:
            self._configure_link(deadline)
            self._wait_ssh(deadline)
        except BaseException:
            self._stop(timeout=5)
            raise
        self.timings[what] = round(time.monotonic() - t0, 3)
        self._save()
        return self

    # -- use -------------------------------------------------------------------
    def exec(self, cmd: str, input: bytes | None = None, check: bool = True,
             timeout: float | None = 120) -> subprocess.CompletedProcess:
        """Run ``sh -c cmd`` as root inside the guest, bypassing SSH (nsenter).

        stdout/stderr are captured as bytes.  The process is not in a guest
        systemd unit: for anything that must keep running, use
        ``exec("systemd-run --unit=NAME ...")``.
        """
        argv = ["nsenter", "-t", str(self._leader()), "-m", "-u", "-i", "-n", "-p", "-C",
                "-r", "-w", "--", "/usr/bin/env", "-i", f"PATH={_GUEST_PATH}", "HOME=/root",
                "LANG=C.UTF-8", "TERM=dumb", "/bin/sh", "-c", cmd]
        proc = subprocess.run(argv, input=input, capture_output=True, timeout=timeout,
                              stdin=None if input is not None else subprocess.DEVNULL)
        if check and proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip().splitlines()
            raise TestHostError(f"{self.name}: {cmd!r} exited {proc.returncode}"
                                + (f": {err[-1]}" if err else ""))
        return proc

    def known_hosts_lines(self) -> list[str]:
        """known_hosts entries for this host's SSH host keys (to pre-seed strict checking)."""
        return [f"{self.address} {' '.join(p.read_text().split()[:2])}"
                for p in sorted((self.root / "etc/ssh").glob("ssh_host_*_key.pub"))]

    def reboot(self) -> "TestHost":
        """Reboot like a VM: ``systemctl reboot`` in the guest, then boot the same root again."""
        t0 = time.monotonic()
        asked = self.exec("systemctl reboot", check=False)
        try:
            rc = self._wait_exit(10)
        except TestHostError:
            # seen under load: the reboot job did not take (a conflicting job was queued);
            # ask again, and say what the first attempt answered if this one fails too
            first = asked.stderr.decode(errors="replace").strip()
            self.exec("systemctl reboot", check=False)
            try:
                rc = self._wait_exit(STOP_TIMEOUT)
            except TestHostError as exc:
                raise TestHostError(f"{exc} (first `systemctl reboot`: rc {asked.returncode} "
                                    f"{first!r}); console: {_tail(self.console_log)}") from None
        if rc is not None and rc != REBOOT_EXIT_STATUS:
            raise TestHostError(f"{self.name}: nspawn exited {rc} instead of {REBOOT_EXIT_STATUS} "
                                f"on reboot; console: {_tail(self.console_log)}")
        self._proc = None
        self._prepare_root()
        return self._start_and_wait("reboot", t0)

    # -- teardown --------------------------------------------------------------
    def _stop(self, timeout: float = STOP_TIMEOUT) -> None:
        if self.running():
            # the guest's init, found while nspawn runs: nspawn's own process group does not
            # hold it, so a killed nspawn would leave the whole guest running, reparented
            # (its systemd, sshd, services and inotify instances, until the limit is hit)
            leader = None
            with contextlib.suppress(TestHostError):
                pid = self._leader()
                leader = (pid, _proc_starttime(pid))
            os.kill(self.pid, signal.SIGTERM)       # nspawn: clean guest poweroff
            try:
                self._wait_exit(timeout)
            except TestHostError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                with contextlib.suppress(TestHostError):
                    self._wait_exit(5)
            if leader is not None and _proc_starttime(leader[0]) == leader[1]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(leader[0], signal.SIGKILL)   # PID 1 of its namespace: all of it goes
                deadline = time.monotonic() + 5
                while _proc_starttime(leader[0]) == leader[1] and time.monotonic() < deadline:
                    time.sleep(0.05)
        elif self._proc is not None:
            self._proc.poll()
        subprocess.run(["ip", "link", "del", self.veth], capture_output=True)
        shutil.rmtree(Path("/run/systemd/nspawn/propagate") / self.name, ignore_errors=True)

    def stop(self) -> None:
        """Power the guest off but keep its root (``boot()`` starts it again)."""
        self._stop()
        self._save()

    def destroy(self) -> None:
        """Power off, unmount and delete everything of this host. Idempotent."""
        t0 = time.monotonic()
        self._stop()
        if self.dir.exists():
            for mnt in _mounts_under(self.dir):
                if subprocess.run(["umount", mnt], capture_output=True).returncode != 0:
                    subprocess.run(["umount", "-l", mnt], capture_output=True)
            left = _mounts_under(self.dir)
            if left:
                raise TestHostError(f"{self.name}: cannot unmount {left[0]}; not deleting {self.dir}")
            shutil.rmtree(self.dir, ignore_errors=True)
        self.timings["destroy"] = round(time.monotonic() - t0, 3)


# --------------------------------------------------------------------------- many hosts

def list_hosts() -> list[TestHost]:
    """Handles on every host directory under CACHE_DIR/hosts (running or not)."""
    out = []
    base = _hosts_dir()
    if base.is_dir():
        for d in sorted(base.iterdir()):
            if (d / "state.json").is_file():
                with contextlib.suppress(TestHostError, KeyError, ValueError):
                    out.append(TestHost.load(d.name))
    return out


def _allocate(names: list[str | None], prefix: str, extra: dict | None = None) -> list[TestHost]:
    """Reserve free indexes (and names) under a lock, by writing state files (plus ``extra``)."""
    hosts: list[TestHost] = []
    with _flock(CACHE_DIR / "hosts.lock"):
        base = _hosts_dir()
        base.mkdir(parents=True, exist_ok=True)
        taken_names = {d.name for d in base.iterdir()}
        taken_idx = set()
        for d in base.iterdir():
            with contextlib.suppress(OSError, ValueError, KeyError):
                taken_idx.add(int(json.loads((d / "state.json").read_text())["index"]))
        idx = 0
        for name in names:
            if name and (name in taken_names or not NAME_RE.match(name)):
                raise TestHostError(f"test host {name!r} already exists" if name in taken_names
                                    else f"bad host name {name!r}: must match {NAME_RE.pattern}")
            while True:
                idx += 1
                if idx > MAX_INDEX:
                    raise TestHostError(f"no free test host slot (max {MAX_INDEX}); "
                                        "run: python -m testing.testhost down --all")
                cand = name or f"{prefix}{idx}"
                if idx in taken_idx or cand in taken_names:
                    continue
                if _route_overlaps(ipaddress.ip_network(f"{SUBNET_PREFIX}.{idx}.0/24"), f"ve-{cand}"):
                    continue
                break
            host = TestHost(cand, idx)
            host._save(**(extra or {}))
            taken_idx.add(idx)
            taken_names.add(cand)
            hosts.append(host)
    return hosts


def boot_hosts(n: int = 1, prefix: str = "pt", names: list[str] | None = None,
               state: dict | None = None) -> list[TestHost]:
    """Boot n hosts in parallel; on any failure destroy them all and raise.

    ``state``: extra keys for each host's state.json, written when the name is
    reserved (before the boot), so other processes see them from the start.
    """
    _require_preflight()
    ensure_image()
    hosts = _allocate(list(names) if names else [None] * n, prefix, state)
    errors: list[BaseException] = []
    with ThreadPoolExecutor(max_workers=min(8, len(hosts))) as pool:
        for fut in [pool.submit(h.boot) for h in hosts]:
            try:
                fut.result()
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                errors.append(exc)
    if errors:
        for h in hosts:
            with contextlib.suppress(Exception):
                h.destroy()
        err = errors[0]
        raise err if isinstance(err, TestHostError) else TestHostError(f"boot failed: {err}")
    return hosts


def destroy_all(prefix: str | None = None) -> int:
    """Destroy every host under CACHE_DIR/hosts (e.g. left over by a crashed run).

    This includes hosts other processes are still using (``up``, a parallel
    pytest): pass ``prefix`` to limit it to names starting with it.
    """
    count = 0
    base = _hosts_dir()
    if not base.is_dir():
        return 0
    for d in sorted(base.iterdir()):
        if not d.is_dir() or (prefix and not d.name.startswith(prefix)):
            continue
        try:
            host = TestHost.load(d.name)
        except (TestHostError, KeyError, ValueError):
            host = None
        if host is not None:
            host.destroy()
        else:
            for mnt in _mounts_under(d):
                subprocess.run(["umount", "-l", mnt], capture_output=True)
            if not _mounts_under(d):
                shutil.rmtree(d, ignore_errors=True)
        count += 1
    return count


# --------------------------------------------------------------------------- clients

def write_inventory(hosts: list[TestHost], path: str | os.PathLike, **group_vars) -> Path:
    """Write a YAML inventory for ``hosts``; group_vars go under all.vars (override defaults)."""
    import yaml

    vars_: dict = {"known_hosts": str(known_hosts_path()), "offline": True}
    vars_.update({k: (str(v) if isinstance(v, Path) else v) for k, v in group_vars.items()})
    vars_ = {k: v for k, v in vars_.items() if v is not None}  # None: leave the default out
    entries = {}
    for h in hosts:  # TestHost, or anything shaped like it (tests' external hosts)
        entry = {"ssh_host": h.address, "ssh_user": h.ssh_user}
        if h.ssh_key is not None:
            entry["ssh_key"] = str(h.ssh_key)
        if getattr(h, "ssh_port", None):
            entry["ssh_port"] = h.ssh_port
        entries[h.name] = entry
    doc = {"all": {"vars": vars_, "hosts": entries}}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(doc, sort_keys=False, default_flow_style=False))
    os.replace(tmp, path)
    return path


def ssh_base_args(host: TestHost, known_hosts: str | os.PathLike | None = None) -> list[str]:
    """argv prefix for the system ssh client: ``[*ssh_base_args(h, kh), "cmd"]``."""
    kh = str(known_hosts or known_hosts_path())
    return ["ssh", "-i", str(host.ssh_key), "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=accept-new",
            "-o", f"UserKnownHostsFile={kh}", "-o", "ConnectTimeout=10",
            "-o", "LogLevel=ERROR", f"{host.ssh_user}@{host.address}"]


# --------------------------------------------------------------------------- CLI
#
# Hosts booted by ``up`` belong to the checkout that booted them: their state.json
# records ``owner``, the resolved directory that holds the inventory file (a checkout's
# ``.testhost/``).  ``up`` and ``down`` only list, reuse or destroy hosts of their own
# owner, so two checkouts on one machine never deploy to (or tear down) each other's
# hosts; ``down --all`` is the one way to remove every host on the machine.

#: Name ``up`` gives a new host when none is asked for (then pypi-test2, pypi-test3...).
DEFAULT_NAME = "pypi-test"
_ALL_HINT = "`python -m testing.testhost down --all` removes every test host on this machine"


def _inventory_default() -> str:
    return os.environ.get("PROVISION_TESTHOST_INVENTORY", ".testhost/inventory.yml")


def _owner(inventory: str | os.PathLike) -> str:
    """The checkout an inventory path belongs to: the resolved directory holding it."""
    return str(Path(inventory).resolve().parent)


def _cli_hosts(owner: str | None = None) -> list[TestHost]:
    """Running hosts booted by ``up`` (only those of ``owner`` when given)."""
    out = []
    for h in list_hosts():
        st = h.state
        if st.get("cli") and (owner is None or st.get("owner") == owner) and h.running():
            out.append(h)
    return out


def _owned_hosts(owner: str) -> list[TestHost]:
    """Every host ``up`` booted for ``owner``, running or not."""
    return [h for h in list_hosts() if h.state.get("cli") and h.state.get("owner") == owner]


def _existing(name: str) -> TestHost | None:
    """Handle on host ``name`` if its directory exists, None if the name is free."""
    if not (_hosts_dir() / name).exists():
        return None
    try:
        return TestHost.load(name)
    except (TestHostError, KeyError, ValueError):
        raise TestHostError(f"test host {name!r} exists but its state is unreadable "
                            f"({_hosts_dir() / name}); {_ALL_HINT}") from None


def _not_ours(host: TestHost, owner: str) -> str | None:
    """Why ``host`` is not this checkout's to reuse or destroy, or None when it is."""
    st = host.state
    if st.get("cli") and st.get("owner") == owner:
        return None
    if st.get("cli") and st.get("owner"):
        return f"test host {host.name!r} belongs to another checkout ({st['owner']})"
    if st.get("cli"):
        return (f"test host {host.name!r} belongs to no known checkout (booted before hosts "
                "recorded their checkout)")
    return f"test host {host.name!r} belongs to a test or benchmark run, not to a checkout"


@contextlib.contextmanager
def _cli_lock() -> Iterator[None]:
    """Serialise up/down on this machine: each decides from the hosts it sees, then acts."""
    path = CACHE_DIR / "cli.lock"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(path, "a")
    except OSError as exc:
        raise TestHostError(f"cannot lock {path}: {exc.strerror} (test hosts need root)") from None
    with fh:                          # closing the file releases the lock
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _sync_inventory(owner: str, inventory: str | os.PathLike) -> Path | None:
    """Write the inventory of ``owner``'s running hosts, or remove it when there is none."""
    hosts = _cli_hosts(owner)
    if hosts:
        return write_inventory(hosts, inventory)
    Path(inventory).unlink(missing_ok=True)
    return None


def _up(name: str | None, inventory: str) -> tuple[TestHost, bool]:
    """(host, reused): this checkout's running host, or a freshly booted one."""
    owner = _owner(inventory)
    state = {"cli": True, "owner": owner, "inventory": str(Path(inventory).resolve())}

    def boot(cand: str) -> TestHost:
        (host,) = boot_hosts(1, prefix="th", names=[cand], state=state)
        return host

    if name:
        if not NAME_RE.match(name):
            raise TestHostError(f"bad host name {name!r}: must match {NAME_RE.pattern}")
        host = _existing(name)
        if host is not None:
            why = _not_ours(host, owner)
            if why:
                raise TestHostError(f"{why}: choose another name")
            if host.running():
                return host, True
            host.destroy()            # ours but dead (machine rebooted, nspawn killed...)
        return boot(name), False
    mine = _cli_hosts(owner)
    if mine:
        return mine[0], True
    for i in range(1, 100):           # pypi-test99 is the longest name NAME_RE allows
        cand = DEFAULT_NAME if i == 1 else f"{DEFAULT_NAME}{i}"
        try:
            host = _existing(cand)
        except TestHostError:
            continue                  # unreadable leftover: not ours, try the next name
        if host is None:
            return boot(cand), False
        if _not_ours(host, owner) is None:   # ours and not running (running ones reused above)
            host.destroy()
            return boot(cand), False
    raise TestHostError(f"no free test host name {DEFAULT_NAME}..{DEFAULT_NAME}99: "
                        f"name one (up NAME), or {_ALL_HINT}")


def _down(names: list[str], all_: bool, inventory: str) -> None:
    owner = _owner(inventory)
    if all_:
        others = {h.state.get("inventory") for h in list_hosts() if h.state.get("cli")}
        print(f"destroyed {destroy_all()} host(s)")
        # every host is gone: inventories other checkouts' `up` wrote would now name
        # addresses the next host booted anywhere here gets
        mine = Path(inventory).resolve()
        for other in sorted(p for p in others if p and Path(p) != mine):
            if Path(other).is_file():
                Path(other).unlink()
                print(f"removed {other}")
    elif names:
        hosts = [TestHost.load(n) for n in names]   # a missing name: error, nothing destroyed
        for h in hosts:
            why = _not_ours(h, owner)
            if why:
                raise TestHostError(f"{why}; {_ALL_HINT}")
        for h in hosts:
            h.destroy()
            print(f"destroyed {h.name}")
    else:
        hosts = _owned_hosts(owner)
        for h in hosts:
            h.destroy()
        print(f"destroyed {len(hosts)} host(s) of this checkout ({owner})")
    _sync_inventory(owner, inventory)


def main(argv: list[str] | None = None) -> int:
    """``up [NAME]``, ``down [NAME...|--all]``, ``status``, ``image``.

    up and down act on this checkout's hosts only (the owner is the directory of
    ``--inventory``); ``down --all`` removes every test host on the machine.
    """
    ap = argparse.ArgumentParser(prog="python -m testing.testhost",
                                 description="Throwaway Debian 12 test hosts (systemd-nspawn). "
                                 "Hosts belong to the checkout that booted them: the directory "
                                 "of --inventory.")
    ap.add_argument("--inventory", default=_inventory_default(),
                    help="inventory written by up/down; its directory identifies this checkout "
                    "(default %(default)s; env PROVISION_TESTHOST_INVENTORY)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p_up = sub.add_parser("up", help="reuse this checkout's running host, or boot one that stays "
                          "up after this command exits (NAME: that host; default: any of this "
                          f"checkout's, else a new {DEFAULT_NAME}, {DEFAULT_NAME}2...)")
    p_up.add_argument("name", nargs="?")
    p_down = sub.add_parser("down", help="destroy this checkout's hosts (all of them, or NAME...)")
    p_down.add_argument("names", nargs="*")
    p_down.add_argument("--all", action="store_true",
                        help="every host under the cache dir, whichever checkout or test run it belongs to")
    sub.add_parser("status", help="list hosts")
    sub.add_parser("image", help="build the base image now (cached)")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "image":
            t0 = time.monotonic()
            print(f"{ensure_image()} ({time.monotonic() - t0:.1f}s)")
        elif args.cmd == "up":
            t0 = time.monotonic()
            _require_preflight()
            with _cli_lock():
                host, reused = _up(args.name, args.inventory)
                inv = _sync_inventory(_owner(args.inventory), args.inventory)
            print(f"{host.name} {host.address} {inv} ({time.monotonic() - t0:.1f}s)"
                  + (" already up" if reused else ""))
        elif args.cmd == "down":
            with _cli_lock():
                _down(args.names, args.all, args.inventory)
        elif args.cmd == "status":
            owner = _owner(args.inventory)
            hosts = list_hosts()
            if not hosts:
                print("no test hosts")
            for h in hosts:
                st = h.state
                run = "running" if h.running() else "stopped"
                whose = ""
                if st.get("cli"):
                    whose = ("cli this-checkout" if st.get("owner") == owner
                             else f"cli owner={st.get('owner') or '?'}")
                print(f"{h.name:12} {h.address:15} {run:8} pid={h.pid} mode={h.mode} {whose}".rstrip())
    except TestHostError as exc:
        print(f"testhost: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
