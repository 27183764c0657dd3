"""The HTTPS front: nginx with TLS before pypiserver (tls: true, the default).

nginx listens on the public port with TLS, serves ``/packages/`` from disk and proxies the
rest to pypiserver, which listens on 127.0.0.1 only. The certificate comes from the user
(tls_cert/tls_key, checked here before any host is touched) or from a private CA on this
machine, reissued when it nears expiry or no longer covers the names clients use. On the Red
Hat family: EPEL for CentOS 7 (archived like its base repos), and persistent SELinux rules.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from dataclasses import dataclass
from typing import Callable

from ... import tls
from ...errors import StepError, TlsError
from ...facts import Fact, FileState, FileText, PathExists, ServiceState
from ...steps.base import Command, Plan, Step, WriteFile

q = shlex.quote


class TlsMaterial:
    """The certificate source of one host, resolved once (on this machine)."""

    def __init__(self, cert_file: str, key_file: str, names: Callable[[], list[str]]):
        self.cert_file, self.key_file, self.names = cert_file, key_file, names
        self.user: tls.Pair | None = None
        self.ca: tls.CA | None = None
        self._loaded = False

    def load(self) -> None:
        if self._loaded:
            return
        try:
            if self.cert_file:
                self.user = tls.load_user_pair(self.cert_file, self.key_file, self.names())
            else:
                self.ca = tls.ensure_ca()
        except TlsError as exc:
            raise StepError(str(exc)) from None
        self._loaded = True

    def ca_pem(self) -> bytes:
        self.load()
        return self.ca.cert_pem


class TlsInputs(Step):
    """Guard (first phase): the user's certificate and key are usable, or the private CA is
    there (made on first use), before anything changes on the host."""

    def __init__(self, material: TlsMaterial):
        self.material = material
        self.name = "Ensure the TLS certificate's source is usable."

    def prepare(self, facts):
        self.material.load()

    def plan(self, facts, probed):
        m = self.material
        if m.user is not None:
            return Plan(note=f"your certificate {m.cert_file} (key matches, covers "
                             f"{', '.join(m.names())})")
        return Plan(note=f"private CA {m.ca.path}")


class ServerCertificate(Step):
    """The server's certificate and key on the host (key root 0600, certificate 0644).

    Yours: written when the host's differ. The private CA's: reissued (new key) when the host
    has none, it expires within 30 days, no longer covers every name, or another CA signed it.
    """

    def __init__(self, material: TlsMaterial, cert_path: str, key_path: str, notify=()):
        self.material, self.cert_path, self.key_path = material, cert_path, key_path
        self.notify = notify
        self.name = f"Ensure the TLS certificate {cert_path} is current."

    def probes(self):
        return {"cert": FileState(self.cert_path, content=True), "key": FileState(self.key_path)}

    def prepare(self, facts):
        self.material.load()

    def plan(self, facts, probed):
        m, cert, key = self.material, probed["cert"], probed["key"]
        if m.user is not None:
            same = cert is not None and cert.sha256 == hashlib.sha256(m.user.cert_pem).hexdigest() \
                and key is not None and key.sha256 == hashlib.sha256(m.user.key_pem).hexdigest()
            if same and key.stat.mode == 0o600 and key.stat.owner == "root":
                return Plan(note=f"your certificate, {tls.days_left(m.user.cert_pem)} days left")
            pair, why = m.user, "install your certificate"
        else:
            try:
                why = tls.renewal_reason(cert.content if cert else None, m.ca, m.names())
            except TlsError as exc:
                raise StepError(str(exc)) from None
            if why is None and key is None:
                why = "its key is missing"
            elif why is None and _paired_key(cert.content) != key.sha256:
                # a run that died between writing the key and the certificate
                why = "the key on the host is not the certificate's"
            if why is None:
                if key.stat.mode != 0o600 or key.stat.owner != "root":
                    return Plan([Command(f"chown root:root {q(self.key_path)} && "
                                         f"chmod 0600 {q(self.key_path)}")],
                                f"fix the key's owner/mode {key.stat} \u2192 root:root 0600")
                return Plan(note=f"{tls.days_left(cert.content)} days left, covers "
                                 f"{', '.join(m.names())}")
            try:
                issued = tls.issue(m.ca, m.names())
            except TlsError as exc:
                raise StepError(str(exc)) from None
            # the key's sha256 in the certificate file's explanatory text (RFC 7468: PEM readers
            # skip it): a key and certificate from different runs are seen as not a pair
            pair = tls.Pair(f"# key sha256 {hashlib.sha256(issued.key_pem).hexdigest()}\n".encode()
                            + issued.cert_pem, issued.key_pem)
            why = f"issue ({why}) for {', '.join(m.names())}"
        d = q(self.key_path.rsplit("/", 1)[0])
        return Plan([Command(f"install -d -o root -g root -m 0755 {d}"),
                     WriteFile(self.key_path, pair.key_pem, mode=0o600, secret=True),
                     WriteFile(self.cert_path, pair.cert_pem, mode=0o644,
                               old=cert.content if cert else b"")], why)


def _paired_key(cert_pem: bytes | None) -> str | None:
    """The key sha256 a certificate file of ours names (see ServerCertificate.plan)."""
    first = (cert_pem or b"").split(b"\n", 1)[0].decode(errors="replace")
    return first[len("# key sha256 "):].strip() if first.startswith("# key sha256 ") else None


# -- CentOS 7: EPEL from its archive -----------------------------------------------------
EPEL7_ARCHIVE = "https://archives.fedoraproject.org/pub/archive/epel/7"
EPEL7_REPO = f"""# Managed by provision: EPEL 7 reached end of life and left its mirrors for the archive.
[epel]
name=Extra Packages for Enterprise Linux 7 - $basearch (archive)
baseurl={EPEL7_ARCHIVE}/$basearch
enabled=1
gpgcheck=1
gpgkey={EPEL7_ARCHIVE}/RPM-GPG-KEY-EPEL-7
"""


@dataclass(frozen=True)
class EpelRepoFiles(Fact):
    """The yum repo files that define an [epel] repo: {file: already on the archive}."""

    def command(self):
        return ("for f in $(grep -l '^\\[epel\\]' /etc/yum.repos.d/*.repo); do "
                f"if grep -q '^baseurl={EPEL7_ARCHIVE}/' \"$f\"; then echo \"archive $f\"; "
                "else echo \"dead $f\"; fi; done")

    def parse(self, text, rc) -> dict[str, bool]:
        return {parts[1]: parts[0] == "archive" for parts in (line.split(" ", 1) for line in
                text.splitlines()) if len(parts) == 2}


class Epel7Archive(Step):
    """CentOS 7: nginx comes from EPEL 7, archived like the base repos. An [epel] repo
    defined elsewhere (epel-release's metalink is dead) is pointed at the archive the way
    the vault step does it (sed -i, original kept as .provision-orig); with none, a repo
    file of ours is written. centos7_vault: false leaves repo files alone."""

    PATH = "/etc/yum.repos.d/epel-provision.repo"

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.name = "Ensure EPEL 7 (for nginx) points at its archive (CentOS 7)."

    def probes(self):
        return {"files": EpelRepoFiles(), "ours": FileState(self.PATH, content=True)}

    def plan(self, facts, probed):
        if facts.os_id != "centos" or facts.os_major != "7":
            return Plan(note="not CentOS 7")
        files = {f: ok for f, ok in probed["files"].items() if f != self.PATH}
        if not self.enabled:
            return Plan(note="kept as it is (centos7_vault: false)")
        if files:
            a = EPEL7_ARCHIVE
            dead = [f for f, ok in files.items() if not ok]
            if not dead:
                return Plan(note=f"{', '.join(files)} -> {a}")
            sed = ("sed -i.provision-orig"
                   r" -e 's|^\(metalink=https\{0,1\}://mirrors\.fedoraproject\.org.*\)|#\1|'"
                   rf" -e 's|^#* *baseurl=https\{{0,1\}}://[^/]*/pub/epel/7/|baseurl={a}/|'")
            return Plan([Command(f"{sed} {q(f)}") for f in dead] + [Command("yum clean all -q")],
                        f"{len(dead)} repo files -> {a} (EPEL 7's mirrors are gone)")
        ours = probed["ours"]
        if ours is not None and ours.content == EPEL7_REPO.encode():
            return Plan(note=f"{self.PATH} -> {EPEL7_ARCHIVE}")
        return Plan([WriteFile(self.PATH, EPEL7_REPO.encode(), old=ours.content if ours else b"")],
                    f"write {self.PATH} -> {EPEL7_ARCHIVE}")


# -- SELinux (Red Hat family, enforcing or permissive) -----------------------------------
@dataclass(frozen=True)
class SelinuxBoolean(Fact):
    """An SELinux boolean's value (None: no getsebool, SELinux tools absent)."""

    name: str

    def command(self):
        return f"getsebool {q(self.name)}"

    def parse(self, text, rc) -> bool | None:
        if rc != 0:
            return None
        return text.strip().endswith("--> on")


class SelinuxFront(Step):
    """nginx may connect to the loopback backend, bind the public port(s), read the packages
    and the certificate, keep the pull-through cache (pypi_cache): persistent rules (setsebool -P, semanage port/fcontext, then
    restorecon), never setenforce 0.

    semanage costs ~1 s of Python per call, so a no-op does not ask it: the rules this step
    applied are recorded on the host (`record`, one per line), and only a rule missing from
    the record is applied (each command is idempotent: -a, else -m). The boolean is read
    every time (getsebool is cheap)."""

    def __init__(self, ports: list[int], content_dirs: list[str], tls_dir: str, record: str,
                 cache_dirs: list[str] = ()):
        self.ports, self.content_dirs, self.tls_dir, self.record = ports, content_dirs, tls_dir, record
        self.cache_dirs = list(cache_dirs)
        self.name = "Ensure SELinux lets nginx serve the index (persistent rules)."

    def rules(self) -> dict[str, str]:
        """rule (as recorded) -> the command that applies it"""
        out = {}
        for p in self.ports:
            out[f"port tcp/{int(p)} http_port_t"] = (
                f"semanage port -a -t http_port_t -p tcp {int(p)} 2>/dev/null || "
                f"semanage port -m -t http_port_t -p tcp {int(p)}")
        for path, kind in [*((d, "httpd_sys_content_t") for d in self.content_dirs), (self.tls_dir, "cert_t"),
                           *((d, "httpd_cache_t") for d in self.cache_dirs)]:
            # a regular expression: the '.' and '+' a path may hold are literal
            spec = re.sub(r"([.+])", r"\\\1", path) + "(/.*)?"
            out[f"fcontext {spec} {kind}"] = (
                f"{{ semanage fcontext -a -t {kind} {q(spec)} 2>/dev/null || "
                f"semanage fcontext -m -t {kind} {q(spec)}; }} && "
                f"{{ [ ! -e {q(path)} ] || restorecon -R {q(path)}; }}")
        return out

    def probes(self):
        return {"connect": SelinuxBoolean("httpd_can_network_connect"), "record": FileText(self.record)}

    def plan(self, facts, probed):
        if facts.family != "RedHat" or not facts.selinux_enabled:
            return Plan(note="SELinux not enabled" if facts.family == "RedHat" else "not the Red Hat family")
        cmds, notes = [], []
        if not probed["connect"]:
            cmds.append(Command("setsebool -P httpd_can_network_connect 1"))
            notes.append("httpd_can_network_connect on")
        done = set((probed["record"] or "").splitlines())
        rules = self.rules()
        for rule, cmd in rules.items():
            if rule not in done:
                cmds.append(Command(cmd))
                notes.append(rule)
        if not cmds:
            return Plan(note="rules in place")
        if any(r not in done for r in rules):
            text = "".join(f"{r}\n" for r in sorted(done | set(rules)))
            cmds += [Command(f"mkdir -p {q(self.record.rsplit('/', 1)[0])}"),
                     WriteFile(self.record, text.encode(), old=(probed["record"] or "").encode())]
        return Plan(cmds, ", ".join(notes))


class SiteRemoved(Step):
    """tls: false after HTTPS: our nginx site goes, and nginx lets go of the public port now
    (a reload that waits for the old workers), before pypiserver's restart takes the port at
    the end of the run. nginx itself stays: it may serve other sites."""

    def __init__(self, path: str, reload: str):
        self.path, self.reload = path, reload
        self.name = f"Ensure the nginx site {path} is absent (plain http: pypiserver serves the port)."

    def probes(self):
        return {"site": PathExists(self.path), "nginx": ServiceState("nginx")}

    def plan(self, facts, probed):
        if not probed["site"]:
            return Plan(note="no site")
        actions = [Command(f"rm -f {q(self.path)}")]
        if probed["nginx"].active == "active":
            actions.append(Command(self.reload))
        return Plan(actions, "remove it" + (", reload nginx" if len(actions) > 1 else ""))


@dataclass(frozen=True)
class DebianSiteState(Fact):
    """Debian's default nginx site: "absent" (not enabled), "stock" (enabled, the package's
    own file, md5 as dpkg recorded it, serving only the welcome page) or "modified"
    (enabled, and changed by someone or serving their files)."""

    link: str
    site: str

    def command(self):
        # stock: the package's file, serving only the package's welcome page (a
        # /var/www/html with anything else in it is someone's site: "modified")
        return (f"if [ -L {q(self.link)} ]; then _p_md5=$(md5sum < {q(self.site)} | cut -d' ' -f1); "
                f"if dpkg-query -W -f='${{Conffiles}}\\n' nginx-common | "
                f"grep -q \"^ *{self.site} $_p_md5\\( \\|$\\)\" && "
                f"[ -z \"$(ls -A /var/www/html 2>/dev/null | grep -vx 'index.nginx-debian.html')\" ]; "
                f"then echo stock; else echo modified; fi; else echo absent; fi")

    def parse(self, text, rc) -> str:
        return text.strip() if text.strip() in ("stock", "modified") else "absent"


class DebianDefaultSite(Step):
    """Debian's nginx enables a default site (a welcome page on port 80, default_server) when
    it is installed. It is disabled (the link in sites-enabled; the site stays in
    sites-available) when it is the package's own, unmodified: nginx is here for the index,
    not to greet port 80. A site someone changed is theirs and stays, unless the redirect
    port is 80, which it would otherwise take."""

    LINK = "/etc/nginx/sites-enabled/default"
    SITE = "/etc/nginx/sites-available/default"

    def __init__(self, redirect_80: bool = False, notify=()):
        self.redirect_80, self.notify = redirect_80, notify
        self.name = "Ensure Debian's default nginx site serves nothing of its own."

    def probes(self):
        return {"state": DebianSiteState(self.LINK, self.SITE)}

    def plan(self, facts, probed):
        state = probed["state"]
        if facts.family != "Debian" or state == "absent":
            return Plan(note="no default site enabled")
        if state == "modified" and not self.redirect_80:
            return Plan(note="enabled and changed by someone: left alone")
        why = "port 80 is the redirect's" if self.redirect_80 else "the package's welcome page"
        return Plan([Command(f"rm -f {q(self.LINK)}")], f"disable it ({why}; sites-available/default kept)")
