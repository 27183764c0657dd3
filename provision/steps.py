"""Idempotent steps: each probes the host's state and plans the commands that change it.

A step never touches the host itself and never decides check mode: it declares shell
probes (gathered with the facts, in the same round trip), then `plan(facts, probed)`
returns the actions that bring the host to the desired state. No actions means `ok`;
some means `changed`. The runner decides whether to run them.

Actions are data: `Command` (shell run as root), `WriteFile` (atomic: temp file in the
same directory, owner and mode set, then rename) and `Upload` (files streamed as one
tar into a directory, each appearing by rename). Tests assert on them directly.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .errors import StepError
from .report import plural
from .facts import HostFacts, version_key
from .wheels import canonical_name

q = shlex.quote


@dataclass
class Command:
    sh: str


@dataclass
class WriteFile:
    path: str
    content: bytes
    owner: str = "root"
    group: str = "root"
    mode: int = 0o644
    old: bytes | None = None
    secret: bool = False
    # sha256 the file must still have when it is replaced (read-modify-write steps): a
    # concurrent change in between fails the step instead of being lost
    expect_sha256: str | None = None


@dataclass
class Upload:
    files: list[Path]
    dest: str
    owner: str = "root"
    group: str = "root"
    mode: int = 0o644


@dataclass
class Plan:
    actions: list = field(default_factory=list)
    note: str = ""

    @property
    def changed(self) -> bool:
        return bool(self.actions)


class Step:
    """Base: a sentence for a name, probes, and a plan."""

    name = "Step"
    notify: tuple[str, ...] = ()
    # when True, the last line the step's commands print is added to its report line
    report_output = False

    def probes(self) -> dict[str, str]:
        return {}

    def plan(self, facts: HostFacts, probed: dict[str, str]) -> Plan:
        raise NotImplementedError


def _stat(path: str) -> str:
    return f"stat -c '%U %G %a' {q(path)}"


def _owner_mode_fix(path: str, current: str, owner: str, group: str, mode: int,
                    kept: str = "") -> Plan:
    """The chown/chmod a path needs, noted as ``fix owner/mode root:root 0700 -> pypi:pypi 0755``."""
    want = f"{owner} {group} {mode:o}"
    if current.strip() == want:
        return Plan(note=kept)
    parts = current.split()
    was = f"{parts[0]}:{parts[1]} {int(parts[2], 8):04o}" if len(parts) == 3 and \
        re.fullmatch(r"[0-7]{1,4}", parts[2]) else "unknown"
    return Plan([Command(f"chown {q(owner)}:{q(group)} {q(path)} && chmod {mode:04o} {q(path)}")],
                f"fix owner/mode {was} \u2192 {owner}:{group} {mode:04o}")


class Packages(Step):
    """OS packages through the host's package manager; names are per-family data."""

    def __init__(self, packages: dict[str, list[str]], install: dict[str, str]):
        self.packages = packages
        self.install = install
        self.name = "Ensure the OS packages are installed."

    def probes(self):
        deb = " ".join(q(p) for p in self.packages.get("Debian", []))
        rh = " ".join(q(p) for p in self.packages.get("RedHat", []))
        return {"pkgs": (
            "if command -v dpkg-query >/dev/null; then "
            f"dpkg-query -W -f='${{Package}} ${{db:Status-Status}}\\n' {deb}; "
            f"elif command -v rpm >/dev/null; then for p in {rh}; do "
            f"rpm -q --whatprovides \"$p\" >/dev/null && echo \"$p installed\"; done; fi"
        )}

    def plan(self, facts, probed):
        wanted = self.packages.get(facts.family, [])
        have = {parts[0] for parts in (line.split() for line in probed["pkgs"].splitlines())
                if len(parts) == 2 and parts[1] == "installed"}
        missing = [p for p in wanted if p not in have]
        if not missing:
            return Plan(note=f"{', '.join(wanted)} installed" if wanted else "none needed")
        cmd = self.install[facts.family].replace("{packages}", " ".join(q(p) for p in missing))
        return Plan([Command(cmd)], f"install {', '.join(missing)}")


class PythonFromRepos(Step):
    """Red Hat family: a Python that gets a current pypiserver, the newest the repos offer.

    Installed Pythons come from the facts. When none is current, the candidates are tried
    newest first; if the repos offer none of them, the release's python3 is installed and a
    marker records that, so the next run does not ask the repos again (delete the marker to).
    """

    MARKER = "/var/lib/provision/python-from-repos"
    report_output = True  # "installed python3.12": which one the repos offered

    def __init__(self, candidates: dict[str, list[str]], current: str, supported: list[str],
                 install: str):
        self.candidates, self.current = candidates, current
        self.supported, self.install = supported, install
        self.name = "Ensure a Python for pypiserver is installed (the newest the repos offer)."

    def probes(self):
        return {"marker": f"cat {q(self.MARKER)}"}

    def plan(self, facts, probed):
        if facts.family != "RedHat":
            return Plan(note="not the Red Hat family")
        have = sorted((v for v in facts.pythons if v in self.supported), key=version_key)
        if have and version_key(have[-1]) >= version_key(self.current):
            return Plan(note=f"python {have[-1]} installed")
        if have and probed["marker"].strip():
            return Plan(note=f"python {have[-1]}: the repos offered nothing newer")
        cands = self.candidates.get(facts.os_major, [])
        tries = "".join(
            f"if {self.install.replace('{packages}', q(p))} >/dev/null 2>&1; then "
            f"echo 'installed {p}'; exit 0; fi\n" for p in cands)
        cmd = (f"{tries}{self.install.replace('{packages}', 'python3')}\n"
               f"mkdir -p {q(str(Path(self.MARKER).parent))} && echo python3 > {q(self.MARKER)}")
        offer = ", ".join(cands + ["python3"])
        return Plan([Command(cmd)], f"install the first the repos offer of {offer}")


class VaultRepos(Step):
    """CentOS 7 after end of life: repo files using the dead mirrors point at the vault.

    Only files that use mirrorlist.centos.org or mirror.centos.org are edited (sed -i
    writes a new file and renames it; the original is kept as FILE.provision-orig), so
    a repo file pointing at your own mirror is left alone, and a second run finds nothing.
    x86_64's paths (/centos/7/) go to the vault's main tree; the other architectures'
    (/altarch/7/) to its altarch tree.

    yum refuses to work while an enabled repo has no URL, so "every enabled repo keeps a
    URL" is checked rather than hoped for: after the edit (a file that fails it is put back
    from its .provision-orig copy and the step fails, naming it), and by the probe (a file
    already left so, by hand or by an older version of this step, fails the step instead of
    being reported ok).
    """

    DEAD = r"^(mirrorlist=https?://mirrorlist\.centos\.org|baseurl=https?://mirror\.centos\.org)"
    # awk: for each file with enabled repos lacking an active baseurl=, mirrorlist= or
    # metalink= line, prints "FILE [repo] [repo]". As yum reads them: keys start the line
    # (an indented line continues the previous value), any case; enabled defaults to on.
    NO_URL = r"""
function end_repo() { if (repo != "" && on && !url) bad = bad " [" repo "]"; repo = "" }
function end_file() { end_repo(); if (bad != "") print file bad; bad = "" }
FNR == 1 { end_file(); file = FILENAME }
/^\[/ { end_repo(); repo = $0; sub(/^\[/, "", repo); sub(/\].*/, "", repo); on = 1; url = 0; next }
{ line = tolower($0) }
line ~ /^enabled[ \t]*=/ { on = line !~ /=[ \t]*(0|no|false|off)[ \t\r]*$/ }
line ~ /^(baseurl|mirrorlist|metalink)[ \t]*=[ \t]*[^ \t\r]/ { url = 1 }
END { end_file() }
"""

    def __init__(self, vault_url: str, vault_altarch_url: str, enabled: bool = True):
        self.vault_url, self.enabled = vault_url.rstrip("/"), enabled
        self.vault_altarch_url = vault_altarch_url.rstrip("/")
        self.name = "Ensure CentOS 7 repos point at the vault (its mirrors are gone)."

    def probes(self):
        return {"files": f"grep -lE {q(self.DEAD)} /etc/yum.repos.d/*.repo",
                "no_url": f"awk {q(self.NO_URL)} /etc/yum.repos.d/*.repo"}

    def plan(self, facts, probed):
        if facts.os_id != "centos" or facts.os_major != "7":
            return Plan(note="not CentOS 7")
        broken = probed["no_url"].splitlines()
        if broken:  # yum fails on these whatever we do (kept repos included): say why, now
            raise StepError(f"{'; '.join(broken)}: enabled repos with no baseurl, mirrorlist or "
                            f"metalink, yum cannot work: give them one (or put back the file's "
                            f".provision-orig copy if an earlier run left it so) and run again")
        files = probed["files"].split()
        if not files:
            return Plan(note="no repo file uses the dead mirrors")
        if not self.enabled:
            return Plan(note=f"{len(files)} repo files use the dead mirrors: kept (centos7_vault: false)")
        v, a = self.vault_url, self.vault_altarch_url
        sed = ("sed -i.provision-orig"
               r" -e 's|^\(mirrorlist=https\{0,1\}://mirrorlist\.centos\.org\)|#\1|'"
               rf" -e 's|^#* *baseurl=https\{{0,1\}}://mirror.centos.org/centos/\$releasever/|baseurl={v}/|'"
               rf" -e 's|^#* *baseurl=https\{{0,1\}}://mirror.centos.org/centos/7/|baseurl={v}/|'"
               rf" -e 's|^#* *baseurl=https\{{0,1\}}://mirror\.centos\.org/altarch/\$releasever/|baseurl={a}/|'"
               rf" -e 's|^#* *baseurl=https\{{0,1\}}://mirror\.centos\.org/altarch/7/|baseurl={a}/|'")
        cmds = [Command(f"{sed} {q(f)}\n"
                        f"bad=$(awk {q(self.NO_URL)} {q(f)})\n"
                        f"if [ -n \"$bad\" ]; then mv -f {q(f + '.provision-orig')} {q(f)}; "
                        f"echo \"$bad: enabled repos left with no baseurl, mirrorlist or metalink "
                        f"by the vault rewrite: original put back, give them a baseurl by hand\"; "
                        f"exit 1; fi") for f in files]
        url = v if facts.arch == "x86_64" else a
        return Plan(cmds + [Command("yum clean all -q")],
                    f"{len(files)} repo files -> {url} (mirrorlist.centos.org is gone)")


class SystemUser(Step):
    """The service's system account: created with no login, or an existing one that
    already is a no-login system account. Never root, the SSH user, or an account with a
    login shell or a UID in the login range (usermod on those would lock their owner out).
    """

    NO_LOGIN = ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false", "/usr/bin/false")

    def __init__(self, user: str, home: str, shells: dict[str, str], guard: bool = False):
        # guard: only refuse (a role's first phase, before any change); create nothing
        self.user, self.home, self.shells, self.guard = user, home, shells, guard
        self.name = (f"Ensure {user} is free or a no-login system account." if guard else
                     f"Ensure the system user {user} exists (no login).")

    def probes(self):
        return {"passwd": f"getent passwd {q(self.user)}",
                "uid_min": "sed -n 's/^UID_MIN[[:space:]]*//p' /etc/login.defs"}

    def plan(self, facts, probed):
        shell = self.shells.get(facts.family, "/usr/sbin/nologin")
        fields = probed["passwd"].strip().split(":")
        if len(fields) < 7 and self.guard:
            return Plan(note="no such account yet")
        if len(fields) < 7:
            return Plan([Command(
                f"useradd --system --user-group --no-create-home --home-dir {q(self.home)} "
                f"--shell {q(shell)} {q(self.user)}")], f"create {self.user}")
        uid = int(fields[2]) if fields[2].isdigit() else 0
        uid_min = int(probed["uid_min"].split()[0]) if probed["uid_min"].split()[:1] and \
            probed["uid_min"].split()[0].isdigit() else 1000
        why = None
        if uid == 0 or self.user == facts.ssh_user:
            why = "is root or the SSH user"
        elif uid >= uid_min:
            why = f"is a login account (uid {uid}, login UIDs start at {uid_min})"
        elif fields[6] not in self.NO_LOGIN:
            why = f"has the login shell {fields[6]}"
        if why:
            raise StepError(f"pypiserver_user {self.user} {why}: the service needs a system account "
                            f"of its own; choose another name (the default pypi is created for you)")
        return Plan(note=f"uid {uid}, no login")


class UnitFileOwned(Step):
    """Guard: the unit we write is ours, or does not exist yet. A pypiserver_service that
    names another unit (sshd, say) would otherwise overwrite it and restart it."""

    HEADER = "Managed by provision"

    def __init__(self, service: str, path: str):
        self.service, self.path = service, path
        self.name = f"Ensure {service}.service is ours to manage."

    def probes(self):
        return {"unit": f"systemctl show -p FragmentPath {q(self.service + '.service')}; "
                        f"echo __head__; head -c 200 {q(self.path)}"}

    def plan(self, facts, probed):
        text = probed["unit"]
        fragment = re.search(r"^FragmentPath=(.*)$", text, re.M)
        head = text.split("__head__", 1)[1] if "__head__" in text else ""
        if head.strip() and self.HEADER not in head:
            raise StepError(f"{self.path} exists and is not managed by provision: choose another "
                            f"pypiserver_service, or remove that unit yourself")
        if fragment and fragment[1].strip() not in ("", self.path):
            raise StepError(f"a unit {self.service}.service already exists ({fragment[1].strip()}): "
                            f"choose another pypiserver_service")
        return Plan(note="ours" if head.strip() else "not installed yet")


class Directory(Step):
    def __init__(self, path: str, owner: str = "root", group: str = "root", mode: int = 0o755):
        self.path, self.owner, self.group, self.mode = path, owner, group, mode
        self.name = f"Ensure the directory {path} exists ({owner}:{group} {mode:04o})."

    def probes(self):
        return {"stat": _stat(self.path)}

    def plan(self, facts, probed):
        if not probed["stat"].strip():
            cmd = f"install -d -o {q(self.owner)} -g {q(self.group)} -m {self.mode:04o} {q(self.path)}"
            if facts.selinux_enabled:
                cmd += f" && restorecon -R {q(self.path)}"
            return Plan([Command(cmd)], "create")
        return _owner_mode_fix(self.path, probed["stat"], self.owner, self.group, self.mode)


class File(Step):
    """A file with exact content, or (content=None) one that must exist, content untouched."""

    def __init__(self, path: str, content: bytes | str | None, owner="root", group="root",
                 mode=0o644, secret=False, diff=False, on_change: tuple[str, ...] = (),
                 notify: tuple[str, ...] = (), name: str | None = None):
        self.path = path
        self.content = content.encode() if isinstance(content, str) else content
        self.owner, self.group, self.mode = owner, group, mode
        self.secret, self.diff = secret, diff
        self.on_change, self.notify = on_change, notify
        self.name = name or f"Ensure the file {path} is up to date."

    def probes(self):
        cmd = f"{_stat(self.path)} && sha256sum < {q(self.path)}"
        if self.diff and not self.secret and self.content is not None:
            cmd += f" && echo __content__ && base64 < {q(self.path)}"
        return {"file": cmd}

    def plan(self, facts, probed):
        import base64

        lines = probed["file"].splitlines()
        exists = len(lines) >= 2
        if self.content is None:
            if not exists:
                return Plan([WriteFile(self.path, b"", self.owner, self.group, self.mode,
                                       secret=self.secret)], "create empty")
            return _owner_mode_fix(self.path, lines[0], self.owner, self.group, self.mode,
                                   kept="present, content kept")
        want = hashlib.sha256(self.content).hexdigest()
        if not exists or lines[1].split()[0] != want:
            old = None
            if "__content__" in lines:
                old = base64.b64decode("".join(lines[lines.index("__content__") + 1:]))
            actions = [WriteFile(self.path, self.content, self.owner, self.group, self.mode,
                                 old=old if exists else b"", secret=self.secret)]
            actions += [Command(c) for c in self.on_change]
            return Plan(actions, "content differs" if exists else "create")
        return _owner_mode_fix(self.path, lines[0], self.owner, self.group, self.mode)


class Venv(Step):
    """A virtualenv made by the chosen interpreter; rebuilt if its Python changed."""

    def __init__(self, path: str, python: Callable[[HostFacts], tuple[str, str]], notify=(),
                 without_pip: bool = False):
        self.path, self.python, self.notify = path, python, notify
        # offline, the pinned pip wheel installs pip and everything else in one go: saves
        # ensurepip's install and the upgrade after it (~2.5 s of a fresh deploy)
        self.without_pip = without_pip
        self.name = f"Ensure the virtualenv {path} exists."

    def probes(self):
        # bin/pip is the last thing `python -m venv` makes: without it (ensurepip died
        # half-way) the venv is rebuilt rather than trusted
        p = q(self.path)
        return {"cfg": f"cat {p}/pyvenv.cfg && test -x {p}/bin/python && test -x {p}/bin/pip && echo __exe__"}

    def plan(self, facts, probed):
        version, interpreter = self.python(facts)
        m = venv_version(probed["cfg"])
        if m and m[1] == version and "__exe__" in probed["cfg"]:
            return Plan(note=f"python {version}")
        cmd = f"{q(interpreter)} -m venv{' --without-pip' if self.without_pip else ''} {q(self.path)}"
        if m or probed["cfg"].strip():
            cmd = f"rm -rf {q(self.path)} && {cmd}"
        if facts.selinux_enabled:
            cmd += f" && restorecon -R {q(self.path)}"
        why = f"python {m[1]} -> {version}" if m else f"create with python {version}"
        return Plan([Command(cmd)], why)


def venv_version(pyvenv_cfg: str):
    return re.search(r"^version(?:_info)?\s*=\s*(\d+\.\d+)", pyvenv_cfg, re.M)


class PipRequirements(Step):
    """Exact pins installed in a venv (pip itself first: old pips cannot read new wheels)."""

    def __init__(self, venv: str, pins: Callable[[HostFacts], list[str]], requirements: str,
                 find_links: Callable[[HostFacts], str | None], notify=(),
                 python_version: Callable[[HostFacts], str] | None = None):
        self.venv, self.pins, self.requirements = venv, pins, requirements
        self.find_links, self.notify = find_links, notify
        self.python_version = python_version
        self.name = f"Ensure the pinned packages are installed in {venv}."

    def probes(self):
        v = q(self.venv)
        return {"dists": f"cat {v}/pyvenv.cfg; ls -1 {v}/lib/python3*/site-packages | grep -i 'dist-info$'",
                "requirements": f"cat {q(self.requirements)}"}

    def plan(self, facts, probed):
        pins = self.pins(facts)
        have = {}
        venv = venv_version(probed["dists"])
        # a venv about to be rebuilt for another Python has none of its packages
        rebuilt = self.python_version and (not venv or venv[1] != self.python_version(facts))
        for line in ([] if rebuilt else probed["dists"].split()):
            m = re.match(r"(.+)-([^-]+)\.dist-info$", line)
            if m:
                have[canonical_name(m[1])] = m[2]
        wanted = {canonical_name(p.split("==")[0]): p.split("==")[1] for p in pins}
        wrong = sorted(n for n, v in wanted.items() if have.get(n) != v)
        if not wrong:
            return Plan(note=f"{len(wanted)} pins match")
        py = f"{q(self.venv)}/bin/python -m pip"
        # wheels only: every pin has one (checked per Python); a source build would need a
        # compiler on the server and fail late and obscurely
        opts = "--disable-pip-version-check --no-input -q --only-binary=:all:"
        links = self.find_links(facts)
        if links:
            opts += f" --no-index --find-links {q(links)}"
        pip_pin = next((p for p in pins if canonical_name(p.split("==")[0]) == "pip"), None)
        text = "".join(p + "\n" for p in pins).encode()
        old = probed.get("requirements", "")
        actions = [WriteFile(self.requirements, text, mode=0o644,
                             old=(old + "\n").encode() if old else b"")]
        if links and pip_pin and "pip" not in have:
            # a venv made --without-pip: pip runs from its own wheel and installs all pins
            wheel = f"{links}/pip-{wanted['pip']}-py3-none-any.whl/pip"
            actions.append(Command(f"{q(self.venv)}/bin/python {q(wheel)} install {opts} "
                                   f"-r {q(self.requirements)}"))
            note = f"install {len(wanted)} pins"
        else:
            if pip_pin and have.get("pip") != wanted["pip"]:
                actions.append(Command(f"{py} install {opts} {q(pip_pin)}"))
            actions.append(Command(f"{py} install {opts} -r {q(self.requirements)}"))
            note = ""
        if facts.selinux_enabled:  # new files under the venv get their default labels
            actions.append(Command(f"restorecon -R {q(self.venv)}"))
        if note:
            return Plan(actions, note)
        shown = ", ".join(f"{n}=={wanted[n]}" for n in wrong[:4]) + (" ..." if len(wrong) > 4 else "")
        return Plan(actions, f"install {shown}")


class Wheelhouse(Step):
    """Wheels shipped from the control machine, so an offline host can install."""

    def __init__(self, dest: str, files: Callable[[HostFacts], list[Path] | None]):
        self.dest, self.files = dest, files
        self.name = f"Ensure the wheelhouse {dest} holds the pinned wheels."

    def probes(self):
        return {"ls": f"find {q(self.dest)} -maxdepth 1 -type f -name '*.whl' -printf '%f %s\\n'"}

    def plan(self, facts, probed):
        files = self.files(facts)
        if files is None:
            return Plan(note="online: the host installs from its index")
        have = dict(line.rsplit(" ", 1) for line in probed["ls"].splitlines() if " " in line)
        missing = [f for f in files if have.get(f.name) != str(f.stat().st_size)]
        if not missing:
            return Plan(note=f"{len(files)} wheels present")
        size = sum(f.stat().st_size for f in missing)
        return Plan([Upload(missing, self.dest)], f"send {len(missing)} wheels, {size / 1e6:.1f} MB")


class Service(Step):
    def __init__(self, service: str):
        self.service = service
        self.name = f"Ensure the service {service} is enabled and running."

    def probes(self):
        s = q(self.service)
        return {"state": f"systemctl is-enabled {s}; systemctl is-active {s}"}

    def plan(self, facts, probed):
        state = probed["state"].split()
        enabled = state[0] if state else ""
        active = state[1] if len(state) > 1 else ""
        actions = []
        if enabled != "enabled":
            actions.append(Command(f"systemctl enable {q(self.service)}"))
        if active in ("failed", "activating"):
            # crash-looping (auto-restart) or past its start limit: a plain start would be
            # refused ("start request repeated too quickly") until the limit is reset
            actions.append(Command(f"systemctl reset-failed {q(self.service)} || :"))
        if active != "active":
            actions.append(Command(f"systemctl start {q(self.service)}"))
        return Plan(actions, "enable and start" if actions else "enabled, active")


class Restart(Step):
    """Handler: restart a service that was already running when its inputs changed.

    A service that was not running is started by its Service step with the new
    inputs already in place, so it needs no restart. Steps that notify a handler also
    leave a marker on the host (`mark()`), removed only by the restart: a run that
    dies between the change and the restart leaves the restart owed to the next run.
    """

    def __init__(self, service: str, handler: str):
        self.service, self.handler = service, handler
        self.marker = f"/var/lib/provision/restart-pending-{service}"
        self.name = f"Restart {service} (handler: {handler})."

    def probes(self):
        return {"active": f"systemctl is-active {q(self.service)}; test -e {q(self.marker)} && echo __pending__"}

    def pending(self, probed) -> bool:
        return "__pending__" in probed.get("active", "")

    def mark(self) -> Command:
        return Command(f"mkdir -p {q(str(Path(self.marker).parent))} && touch {q(self.marker)}")

    def plan(self, facts, probed):
        clear = Command(f"rm -f {q(self.marker)}")
        if probed["active"].split()[:1] != ["active"]:
            return Plan([clear], "was not running: started with the new configuration")
        # daemon-reload first: a run that died between writing the unit and reloading
        # systemd left the old unit loaded, and a plain restart would bring it back
        return Plan([Command(f"systemctl daemon-reload && systemctl restart {q(self.service)}"), clear],
                    "inputs changed")


class FirewallPort(Step):
    """A TCP port open in firewalld, permanently and at runtime (both, or it drifts);
    on hosts without firewalld but with an active ufw, a ufw rule.

    The port opened is recorded on the host (`record`): when the port changes, the one
    this tool opened before is closed, so a move leaves no stale hole behind.
    """

    def __init__(self, port: int, record: str):
        self.port, self.record = port, record
        self.name = f"Ensure the firewall allows {port}/tcp."

    def probes(self):
        # firewall-cmd costs ~0.2 s of Python start-up per call: ask firewalld over D-Bus
        # for the runtime state, and read the permanent zone file, when we can.
        p = self.port
        return {
            "runtime": (
                "busctl call org.fedoraproject.FirewallD1 /org/fedoraproject/FirewallD1 "
                f"org.fedoraproject.FirewallD1.zone queryPort sss '' {p} tcp "
                f"|| {{ firewall-cmd -q --query-port={p}/tcp && echo 'b true' || echo 'b false'; }}"
            ),
            "permanent": (
                "z=$(sed -n 's/^DefaultZone=//p' /etc/firewalld/firewalld.conf); z=${z:-public}; "
                "echo \"zone=$z\"; cat \"/etc/firewalld/zones/$z.xml\" 2>/dev/null "
                "|| cat \"/usr/lib/firewalld/zones/$z.xml\""
            ),
            "ufw": "systemctl -q is-active firewalld || { command -v ufw >/dev/null && ufw status; }",
            "record": f"cat {q(self.record)}",
        }

    def _old_ports(self, probed) -> list[int]:
        return sorted({int(w) for w in probed.get("record", "").split()
                       if w.isdigit() and 0 < int(w) < 65536 and int(w) != self.port})

    def plan(self, facts, probed):
        old = self._old_ports(probed)
        if not facts.firewalld:
            return self._ufw(probed, old)
        runtime = probed["runtime"].strip() == "b true"
        permanent = bool(re.search(
            rf'<port\s+(?:protocol="tcp"\s+port="{self.port}"|port="{self.port}"\s+protocol="tcp")',
            probed["permanent"]))
        actions = []
        if not permanent:
            actions.append(Command(f"firewall-cmd -q --permanent --add-port={self.port}/tcp"))
        if not runtime:
            actions.append(Command(f"firewall-cmd -q --add-port={self.port}/tcp"))
        for p in old:
            actions.append(Command(f"firewall-cmd -q --permanent --remove-port={p}/tcp; "
                                   f"firewall-cmd -q --remove-port={p}/tcp; :"))
        missing = [w for w, have in (("permanent", permanent), ("runtime", runtime)) if not have]
        note = f"firewalld: open {' and '.join(missing)}" if missing else "firewalld: open"
        return self._with_record(actions, probed, note, old)

    def _ufw(self, probed, old) -> Plan:
        status = probed.get("ufw", "")
        if "Status: active" not in status:
            return Plan(note=f"no firewalld and no active ufw: {self.port}/tcp left to you")
        actions = []
        if not re.search(rf"^{self.port}/tcp\s+ALLOW\s", status, re.M):
            actions.append(Command(f"ufw allow {self.port}/tcp"))
        actions += [Command(f"ufw delete allow {p}/tcp") for p in old
                    if re.search(rf"^{p}/tcp\s+ALLOW\s", status, re.M)]
        return self._with_record(actions, probed, "ufw: open", old)

    def _with_record(self, actions: list, probed, note: str, old: list[int]) -> Plan:
        """Actions plus, when the record is not just this port, rewriting it."""
        if old:
            note += f"; close {', '.join(f'{p}/tcp' for p in old)} (opened here before)"
        if actions or probed.get("record", "").split() != [str(self.port)]:
            actions = actions + [Command(f"mkdir -p {q(str(Path(self.record).parent))}"),
                                 WriteFile(self.record, f"{self.port}\n".encode(),
                                           old=(probed.get("record", "").strip() + "\n").encode()
                                           if probed.get("record", "").strip() else b"")]
        return Plan(actions, note)


class PortFree(Step):
    """Guard: fail before changing anything if another program holds the port."""

    def __init__(self, port: int, service: str):
        self.port, self.service = port, service
        self.name = f"Ensure port {port} is free for {service}."

    def probes(self):
        return {"ss": (f"systemctl show -p MainPID {q(self.service)}; "
                       f"command -v ss >/dev/null || echo __no_ss__; "
                       f"ss -ltnp 'sport = :{self.port}'")}

    def plan(self, facts, probed):
        text = probed["ss"]
        if "__no_ss__" in text:
            raise StepError(f"cannot check port {self.port}: the host has no `ss` (install iproute2)")
        m = re.search(r"MainPID=(\d+)", text)
        ours = m[1] if m else "0"
        for line in text.splitlines():
            if not line.startswith("LISTEN"):
                continue
            # iproute2 >= 4.x prints ("name",pid=N,fd=M); older ones ("name",N,M)
            users = re.findall(r'\("([^"]+)",(?:pid=)?(\d+)', line)
            if not users:
                raise StepError(f"port {self.port} is already in use (owner not shown by ss): "
                                f"choose another with --port")
            if all(pid != ours for _, pid in users):
                names = ", ".join(f"{n} (pid {p})" for n, p in users)
                raise StepError(f"port {self.port} is already used by {names}: stop it or "
                                f"choose another with --port")
        return Plan(note="free" if ours == "0" else f"held by {self.service} (pid {ours})")


class HtpasswdEntry(Step):
    """One upload account in an htpasswd file (hash made on the control machine).

    The probe brings the file's hashes back (never a password; they travel inside the SSH
    channel and are never printed): an account whose hash already matches the password is
    left alone, so adding the same account twice changes nothing. The new file keeps the
    old one's owner and mode and replaces it atomically.
    """

    def __init__(self, path: str, user: str, password: str | None = None,
                 hasher: Callable[[], str] | None = None):
        self.path, self.user, self.password, self.hasher = path, user, password, hasher
        state = "absent from" if password is None else "present in"
        self.name = f"Ensure the upload account {user} is {state} {path}."

    def probes(self):
        p = q(self.path)
        return {"file": f"{_stat(self.path)} && echo __content__ && base64 < {p}"}

    def plan(self, facts, probed):
        import base64

        from . import htpasswd

        lines = probed["file"].splitlines()
        if "__content__" not in lines:
            raise StepError(f"{self.path} not found: deploy pypiserver first (invoke deploy)")
        owner, group, mode = lines[0].split()
        text = base64.b64decode("".join(lines[lines.index("__content__") + 1:])).decode()
        entries = htpasswd.parse(text)
        current = entries.get(self.user)
        if self.password is None:
            if current is None:
                return Plan(note=f"no account {self.user}")
            del entries[self.user]
            note = f"remove {self.user}"
        else:
            if current is not None and htpasswd.verify(self.password, current):
                return Plan(note=f"{self.user} has this password already")
            entries[self.user] = self.hasher()
            note = f"change the password of {self.user}" if current else f"add {self.user}"
        new = htpasswd.render(entries).encode()
        read = hashlib.sha256(text.encode()).hexdigest()
        return Plan([WriteFile(self.path, new, owner, group, int(mode, 8), secret=True,
                               expect_sha256=read)], note)


class HtpasswdNames(Step):
    """Read-only: the account names in an htpasswd file (only names leave the host)."""

    def __init__(self, path: str, found: Callable[[list[str]], None] | None = None):
        self.path, self.found = path, found
        self.name = f"List the upload accounts in {path}."

    def probes(self):
        return {"names": f"test -f {q(self.path)} && echo __file__ && cut -d: -f1 {q(self.path)}"}

    def plan(self, facts, probed):
        lines = probed["names"].split()
        if "__file__" not in lines:
            raise StepError(f"{self.path} not found: deploy pypiserver first (invoke deploy)")
        names = [n for n in lines[lines.index("__file__") + 1:] if n]
        if self.found:
            self.found(names)
        return Plan(note=plural(len(names), "account"))


_DIST = re.compile(r"^(?P<name>.+?)-(?P<version>\d[^-]*?)(?:-[^-]+)*\.(?:whl|tar\.gz|tar\.bz2|tgz|zip|egg)$")


def project_of(filename: str) -> str | None:
    """The normalised project a distribution file belongs to, or None if it is not one."""
    if filename.endswith(".whl"):
        return canonical_name(filename.split("-", 1)[0])
    m = _DIST.match(filename)
    return canonical_name(m["name"]) if m else None


class MirroredFiles(Step):
    """Distribution files placed in the packages directory by `invoke mirror`.

    Compared by name and size with what the directory holds (in the facts round trip);
    only missing files are sent, as one tar stream whose files appear by rename. A
    manifest on the host lists the files mirror placed (one name per line) and nothing
    else. Every other file is an upload (or was put there by hand), and its project is
    private: mirror adds nothing to it (a public release beside a private one would
    shadow it), `overwrite` replaces only files mirror placed, `prune` removes only those.
    """

    MANIFEST = "/var/lib/provision/mirror-manifest"

    def __init__(self, dest: str, files: Callable[[HostFacts], list[Path]], owner: str,
                 overwrite: bool = False, prune: bool = False):
        self.dest, self.files, self.owner = dest, files, owner
        self.overwrite, self.prune = overwrite, prune
        self.name = f"Ensure the mirrored distributions are in {dest}."

    def probes(self):
        # NUL-separated; a name holding a newline could forge a section line: left out
        return {"ls": (f"find {q(self.dest)} -maxdepth 1 -type f ! -name '.*' "
                       f"! -name \"$(printf '*\\n*')\" -printf '%s %f\\0'"),
                "manifest": f"cat {q(self.MANIFEST)}"}

    def plan(self, facts, probed):
        have = dict(reversed(e.split(" ", 1)) for e in probed["ls"].strip("\n").split("\0")
                    if " " in e)
        placed = {n for n in probed["manifest"].split("\n") if n} & set(have)
        private = {p for n in have if n not in placed and (p := project_of(n))}
        files = self.files(facts)
        skipped = sorted({project_of(f.name) for f in files if project_of(f.name) in private})
        files = [f for f in files if project_of(f.name) not in private]
        # every file of a public project that exists here was placed by mirror
        missing = [f for f in files if f.name not in have]
        differ = [f for f in files if f.name in have and have[f.name] != str(f.stat().st_size)]
        send = missing + (differ if self.overwrite else [])
        wanted = {f.name for f in files}
        stale = sorted(n for n in placed if n not in wanted) if self.prune else []
        actions: list = []
        if send:
            actions.append(Upload(send, self.dest, self.owner, self.owner, 0o644))
        if stale:
            actions.append(Command("cd " + q(self.dest) + " && rm -f -- " + " ".join(q(n) for n in stale)))
        manifest = sorted((placed | {f.name for f in send}) - set(stale))
        recorded = [n for n in probed["manifest"].split("\n") if n]
        if manifest != sorted(recorded):
            actions.append(Command(f"mkdir -p {q(str(Path(self.MANIFEST).parent))}"))
            actions.append(WriteFile(self.MANIFEST, "".join(n + "\n" for n in manifest).encode(),
                                     old="".join(n + "\n" for n in recorded).encode()))
        size = sum(f.stat().st_size for f in send)
        parts = [plural(len(files), "file"), f"{len(files) - len(missing) - len(differ)} present"]
        if send:
            shown = ", ".join(f.name for f in send[:3]) + (", ..." if len(send) > 3 else "")
            parts.append(f"send {plural(len(send), 'file')}, {size / 1e6:.1f} MB: {shown}")
        if differ and not self.overwrite:
            parts.append(f"kept {len(differ)} that differ (use --overwrite)")
        if stale:
            parts.append(f"prune {len(stale)}")
        gone = set(recorded) - set(have)
        if gone:
            parts.append(f"forget {len(gone)} removed by hand")
        if skipped:
            parts.append(f"skipped private project{'s' if len(skipped) > 1 else ''} "
                         f"{', '.join(skipped)} (uploads here: mirror adds nothing to it)")
        return Plan(actions, ", ".join(parts))
