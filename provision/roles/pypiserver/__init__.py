"""The pypiserver deployment, as steps.

Phase 1 installs OS packages (then facts are re-gathered if it changed anything,
because the Python it installed decides the pins); phase 2 is everything else, in
the order an operator would do it by hand. Per-family values live in
``vars/<Family>.yml`` beside this file; defaults in ``defaults.yml`` beside it.
"""

from __future__ import annotations

import http.client
import re
import shlex
import ssl
import time
from urllib.parse import urlsplit
from functools import lru_cache
from pathlib import Path

import yaml

from ... import wheels
from .. import RECORD_DIR, Role, index_url, record_content, record_path, tls_names
from ...errors import StepError, UnsupportedHost
from ...facts import HostFacts, version_key
from ...render import render
from ...validate import defaults, read_auth, role_vars, seconds, static_index_on, systemd_quote
from ...steps import (Directory, File, FirewallPort, Packages, PipRequirements, PortFree, PortHandover,
                      Restart, Service, ServiceOff, SystemUser, Trigger, UnitFileOwned, Venv, Wheelhouse)
from . import cache, front
from .steps import PythonFromRepos, VaultRepos

HERE = Path(__file__).resolve().parent        # this role's folder: defaults.yml, vars/
FAMILIES = ("Debian", "RedHat")
SUPPORTED = "Debian 11+, Ubuntu 20.04+, CentOS 7, RHEL/Rocky/Alma 8 and 9"
RESTART = "restart pypiserver"
RELOAD_NGINX = "reload nginx"
REINDEX = "rebuild the static index"
# test the configuration, reload, and wait (5 s at most) until only new workers accept: a
# reload only signals the master, and the health check (or a client) must not meet an old
# worker (one still accepting is titled exactly "nginx: worker process"; then "... is
# shutting down")
NGINX_RELOAD = ("old=\" $(pgrep -d ' ' -f '^nginx: worker process$' || :) \"; nginx -t -q && "
                "systemctl reload nginx && for _ in $(seq 50); do stale=; "
                "for p in $(pgrep -f '^nginx: worker process$' || :); do "
                "case \"$old\" in *\" $p \"*) stale=1;; esac; done; "
                "[ -z \"$stale\" ] && break; sleep 0.1; done")
HEALTH_TIMEOUT = 30


@lru_cache(maxsize=None)
def family_vars(family: str) -> dict:
    return yaml.safe_load((HERE / "vars" / f"{family}.yml").read_text())


def choose_python(facts: HostFacts, predict: bool = False) -> tuple[str, str] | None:
    """The interpreter for the venv: one we have a tested pin set for.

    Debian/Ubuntu take the distro's python3 (python3-venv serves only that one); the Red
    Hat family takes the newest installed.

    With `predict`, a host without one yet gets the python3 its OS package will install
    (from vars/<Family>.yml), so --check can show the venv and pins a deploy would make.
    """
    supported = set(wheels.supported_pythons())
    usable = [v for v in facts.pythons if v in supported]
    prefer_default = facts.family and family_vars(facts.family).get("prefer_default_python")
    if prefer_default and facts.python_default in usable:
        return facts.python_default, facts.pythons[facts.python_default]
    if usable:
        best = max(usable, key=version_key)
        return best, facts.pythons[best]
    if predict and facts.family:
        by_release = family_vars(facts.family).get("python_by_release", {})
        version = by_release.get(facts.os.get("VERSION_ID", "")) or by_release.get(facts.os_major)
        if version in supported:
            return version, f"/usr/bin/python{version}"
    return None


def host_python(facts: HostFacts) -> tuple[str, str]:
    """(version, interpreter) the venv is made with (predicted on a host without one yet)."""
    return choose_python(facts, predict=True) or ("3", "python3")


def host_pins(v: dict, facts: HostFacts) -> list[str]:
    """The pins for the host's Python, pypiserver at `pypiserver_version` when set."""
    chosen = choose_python(facts, predict=True)
    return wheels.pins_with(chosen[0], v["pypiserver_version"]) if chosen else []


def offline_wheels(v: dict, facts: HostFacts) -> list | None:
    """The wheels an offline host gets (downloaded here, cached); None when online."""
    chosen = choose_python(facts, predict=True)
    if not v["offline"] or chosen is None:
        return None
    try:
        return wheels.ensure_wheelhouse(chosen[0], facts.glibc, facts.arch, host_pins(v, facts))
    except (wheels.WheelhouseError, ValueError) as exc:
        raise StepError(f"cannot prepare the offline wheels: {exc}") from exc


class PypiserverRole(Role):

    def __init__(self, overrides: dict | None = None):
        self.overrides = overrides or {}

    def vars(self, target) -> dict:
        return role_vars(target, self.overrides)

    # -- steps --------------------------------------------------------------------
    def phases(self, target):
        v = self.vars(target)
        user, port, venv = v["pypiserver_user"], v["pypiserver_port"], v["pypiserver_venv"]
        fam = {f: family_vars(f) for f in FAMILIES}
        offline = bool(v["offline"])

        def wheel_files(facts):
            return offline_wheels(v, facts)

        def pins(facts):
            return host_pins(v, facts)

        python = host_python

        tls_on = bool(v["tls"])
        service = v["pypiserver_service"]
        # behind nginx, pypiserver listens on the loopback only
        listen, backend = ("127.0.0.1", v["pypiserver_backend_port"]) if tls_on else \
            (v["pypiserver_listen"], port)

        # names the index lacks: pypiserver's default redirect to PyPI needs no flag
        extra = v["pypiserver_extra_args"]
        fallback = [] if v["pypiserver_fallback"] == defaults()["pypiserver_fallback"] or \
            "--disable-fallback" in extra else \
            ["--disable-fallback"] if v["pypiserver_fallback"] == "off" else \
            ["--fallback-url", v["pypiserver_fallback"]]

        def unit(facts):
            argv = [f"{venv}/bin/pypi-server", "run", "--host", listen,
                    "--port", str(backend), "--passwords", v["pypiserver_htpasswd"],
                    "--authenticate", v["pypiserver_authenticate"], "--server", "auto",
                    "--backend", "cached-dir", *fallback, *extra,
                    v["pypiserver_packages_dir"]]
            return render("pypiserver/pypiserver.service.j2", user=user, packages_dir=v["pypiserver_packages_dir"],
                          exec_start=" ".join(systemd_quote(a) for a in argv), systemd=facts.systemd)

        unit_path = f"/etc/systemd/system/{v['pypiserver_service']}.service"
        packages = Packages({f: fam[f]["packages"] + (fam[f]["front_packages"] if tls_on else [])
                             for f in FAMILIES}, {f: fam[f]["install"] for f in FAMILIES})
        rh = fam["RedHat"]
        tls_dir = f"{v['pypiserver_config_dir']}/tls"
        material = front.TlsMaterial(v["tls_cert"], v["tls_key"], lambda: tls_names(v, target))
        # guards first: phase 1 is planned whole before anything runs, so a refusal here
        # leaves the host untouched
        # nginx may hold the public port: ours with TLS, or, with tls: false, while our site is
        # still there (an HTTPS deploy turned back to plain http: the site is removed before
        # pypiserver takes the port)
        site = f"/etc/nginx/conf.d/{service}.conf"
        system = [
            PortFree(port, service, also=("nginx",), also_if=None if tls_on else site),
            *([PortFree(backend, service)] if tls_on else []),
            *([PortFree(v["pypi_cache_port"], f"{cache.unit_name(service)}")] if v["pypi_cache"] else []),
            *([PortFree(v["https_redirect_port"], "nginx")] if tls_on and v["https_redirect_port"] else []),
            *([front.TlsInputs(material)] if tls_on else []),
            UnitFileOwned(service, unit_path),
            VaultRepos(rh["vault_url"], rh["vault_altarch_url"], enabled=bool(v["centos7_vault"])),
            *([front.Epel7Archive(enabled=bool(v["centos7_vault"]))] if tls_on else []),
            packages,
            PythonFromRepos(rh["python_candidates"], rh["current_python"],
                            wheels.supported_pythons(), rh["install"]),
        ]
        account = dict(user=user, home=str(Path(v["pypiserver_packages_dir"]).parent),
                       shells={f: fam[f]["nologin"] for f in FAMILIES})
        system.insert(2, SystemUser(**account, guard=True))
        rest = [
            SystemUser(**account),
            Directory(v["pypiserver_packages_dir"], user, user, 0o755),
            Directory(v["pypiserver_config_dir"], "root", "root", 0o755),
            Directory(str(Path(venv).parent), "root", "root", 0o755),
        ]
        if offline:
            rest.append(Wheelhouse(v["pypiserver_wheels_dir"], wheel_files))
        rest += [
            Venv(venv, python, notify=(RESTART,), without_pip=offline),
            PipRequirements(venv, pins, str(Path(venv).parent / "requirements.txt"),
                            lambda facts: v["pypiserver_wheels_dir"] if offline else None,
                            notify=(RESTART,), python_version=lambda facts: python(facts)[0]),
            File(v["pypiserver_htpasswd"], None, "root", user, 0o640, secret=True,
                 name=f"Ensure the htpasswd file {v['pypiserver_htpasswd']} exists (root:{user} 0640)."),
            _Rendered(unit_path, unit, on_change=("systemctl daemon-reload",),
                      notify=(RESTART,), name=f"Ensure the systemd unit {unit_path} is up to date."),
            Service(service),
        ]
        static = static_index_on(v)
        index_dir = v["pypiserver_index_dir"]
        if static:
            rest += self._static_index(v)
        else:   # turned off (or never on): its builder no longer follows the packages
            rest.append(ServiceOff(f"{service}-index.path"))
        rest += cache.steps(v)
        if tls_on:
            conf = render("pypiserver/nginx.conf.j2", service=service, backend_port=backend,
                          index_dir=index_dir if static else "",
                          # a password for reading: every read goes through pypiserver's check
                          read_auth=read_auth(v),
                          port=port, listen=_nginx_address(v["pypiserver_listen"]),
                          redirect_port=v["https_redirect_port"], cert=f"{tls_dir}/server.crt",
                          key=f"{tls_dir}/server.key", upload_max_size=v["upload_max_size"],
                          packages_dir=v["pypiserver_packages_dir"], cache=cache.nginx_context(v))
            rest += [
                front.ServerCertificate(material, f"{tls_dir}/server.crt", f"{tls_dir}/server.key",
                                        notify=(RELOAD_NGINX,)),
                # what clients trust, for client-config to fetch (the private CA only)
                *([_Rendered(f"{tls_dir}/ca.crt", lambda facts: material.ca_pem().decode(),
                             name=f"Ensure the CA certificate clients trust is in {tls_dir}/ca.crt.")]
                  if not v["tls_cert"] else []),
                # after the files it labels exist, before nginx binds the port(s)
                front.SelinuxFront([port] + ([v["https_redirect_port"]] if v["https_redirect_port"] else []),
                                   [v["pypiserver_packages_dir"]] + ([index_dir] if static else []), tls_dir,
                                   cache_dirs=[v["pypi_cache_dir"]] if v["pypi_cache"] else [],
                                   record=f"{RECORD_DIR}/selinux-rules-{service}"),
                front.DebianDefaultSite(v["https_redirect_port"] == 80, notify=(RELOAD_NGINX,)),
                File(site, conf, "root", "root", 0o644,
                     notify=(RELOAD_NGINX,), name=f"Ensure the nginx site {site} is up to date."),
                # from plain http: pypiserver still serves the public port until restarted
                PortHandover(port, service, "nginx"),
                Service("nginx"),
            ]
        else:
            rest.append(front.SiteRemoved(site, NGINX_RELOAD))
        ports = [port] + ([v["https_redirect_port"]] if tls_on and v["https_redirect_port"] else [])
        rest += [
            FirewallPort(ports, record=f"{RECORD_DIR}/firewall-port-{service}"),
            # last: what later runs (client-config, mirror, a plain deploy) take as deployed
            Directory(RECORD_DIR, "root", "root", 0o755),
            File(record_path(v["pypiserver_service"]), record_content(v), "root", "root", 0o644,
                 name=f"Record the deployed settings in {record_path(v['pypiserver_service'])}."),
        ]
        return [system, rest]

    def _static_index(self, v: dict) -> list:
        """The static index (static_index): the builder shipped from this
        package, a oneshot service that runs it as the service's user, and a path unit that
        starts it on every change of the packages directory or the yank list."""
        service, venv, user = v["pypiserver_service"], v["pypiserver_venv"], v["pypiserver_user"]
        index_dir, packages_dir = v["pypiserver_index_dir"], v["pypiserver_packages_dir"]
        indexer = str(Path(venv).parent / "indexer.py")
        yanked = f"{RECORD_DIR}/yanked-{service}.json"
        unit_dir = "/etc/systemd/system"

        def index_unit(facts):
            argv = [f"{venv}/bin/python", indexer, packages_dir, index_dir, "--yanked", yanked]
            return render("pypiserver/index.service.j2", service=service, user=user,
                          index_dir=index_dir, systemd=facts.systemd,
                          exec_start=" ".join(systemd_quote(a) for a in argv))

        path_unit = render("pypiserver/index.path.j2", service=service, packages_dir=packages_dir,
                           yanked=yanked)
        from ...hostside import indexer as indexer_module
        return [
            Directory(index_dir, user, user, 0o755),
            # (the cache's origin imports it: it restarts too)
            File(indexer, Path(indexer_module.__file__).read_bytes(), "root", "root", 0o755,
                 notify=(REINDEX,) + ((cache.RESTART_CACHE,) if v["pypi_cache"] else ()), name=f"Ensure the static index builder {indexer} is up to date."),
            File(yanked, None, "root", "root", 0o644,
                 name=f"Ensure the yank list {yanked} exists."),
            _Rendered(f"{unit_dir}/{service}-index.service", index_unit, on_change=("systemctl daemon-reload",),
                      notify=(REINDEX,), name=f"Ensure the unit {service}-index.service is up to date."),
            File(f"{unit_dir}/{service}-index.path", path_unit, on_change=("systemctl daemon-reload",),
                 name=f"Ensure the unit {service}-index.path is up to date."),
            Service(f"{service}-index.path"),
        ]

    def handlers(self, target):
        v = self.vars(target)
        out = {RESTART: Restart(v["pypiserver_service"], RESTART)}
        if static_index_on(v):
            out[REINDEX] = Trigger(f"{v['pypiserver_service']}-index", REINDEX)
        if v["pypi_cache"]:
            unit = cache.unit_name(v["pypiserver_service"])
            out[cache.RESTART_CACHE] = Restart(unit, cache.RESTART_CACHE)
        if v["tls"]:   # after pypiserver's restart: it frees the public port for nginx
            out[RELOAD_NGINX] = Restart("nginx", RELOAD_NGINX, reload=NGINX_RELOAD)
        return out

    # -- host checks --------------------------------------------------------------
    def check_host(self, facts: HostFacts) -> None:
        if facts.family is None:
            raise UnsupportedHost(f"unsupported OS {facts.os_pretty} (ID={facts.os_id}); "
                                  f"supported: {SUPPORTED}")
        if facts.os_id == "centos" and facts.os_major == "8":
            # their mirrors are gone and nothing redirects them (the vault rewrite is CentOS 7
            # only), so the first yum would fail half-way through: refuse before any change
            raise UnsupportedHost("CentOS Linux 8 / CentOS Stream 8 reached end of life and their "
                                  "mirrors are gone: use Rocky or AlmaLinux 8 (or 9)")
        if facts.init != "systemd":
            raise UnsupportedHost(f"unsupported init system {facts.init or 'unknown'}: the service "
                                  f"needs systemd")

    def after_phase(self, phase: int, facts: HostFacts, check: bool) -> None:
        """After the OS packages: a usable Python must be there (or, in check mode, predicted)."""
        if phase == 0 and choose_python(facts, predict=check) is None:
            have = ", ".join(sorted(facts.pythons, key=version_key)) or "none"
            raise UnsupportedHost(f"no Python 3 obtainable on this host: installed {have}; "
                                  f"supported {', '.join(wheels.supported_pythons())}")

    def explain_failure(self, step, why: str, facts: HostFacts) -> str:
        if isinstance(step, (Packages, PythonFromRepos)):
            # the Red Hat family's Packages brings no Python (only tar): not a Python failure
            python_step = isinstance(step, PythonFromRepos) or facts.family != "RedHat"
            if python_step and choose_python(facts) is None:
                return f"no Python 3 obtainable through the package manager: {why}"
            if "nginx" in why:
                return (f"nginx (the HTTPS front) could not be installed: {why}: the host's package "
                        f"repositories do not offer it or are unreachable; give it one that does "
                        f"(a local mirror on an offline host), or deploy with tls: false")
            return f"installing OS packages failed: {why}"
        return why

    # -- after the changes --------------------------------------------------------
    def url(self, target) -> str:
        return index_url(self.vars(target), target.resolved_host or target.ssh_host)

    def verify(self, target, facts, check: bool, run=None):
        """GET / until waitress answers 200 (HEALTH_TIMEOUT s); on failure, say why.

        ``run(shell) -> stdout`` reaches the host: while the index does not answer, the
        service's state is read every few seconds (a unit that failed will not recover:
        no point waiting), and a failure ends with its state and last journal lines.
        """
        v = self.vars(target)
        host = v["pypiserver_url_host"] or target.resolved_host or target.ssh_host
        port = v["pypiserver_port"]
        service = v["pypiserver_service"]
        tls_on = bool(v["tls"])
        label = f"Ensure the index answers at {self.url(target)} " + \
            ("(nginx, TLS verified)." if tls_on else "(waitress).")
        context = self._tls_context(v) if tls_on else None
        start = time.monotonic()
        deadline = start + (0 if check else HEALTH_TIMEOUT)
        next_look, restarts = start + 3, None
        last = "no answer"
        while True:
            try:
                if context is not None:
                    conn = http.client.HTTPSConnection(host.strip("[]"), port, timeout=5, context=context)
                else:
                    conn = http.client.HTTPConnection(host, port, timeout=5)
                conn.request("GET", "/", headers={"Connection": "close"})
                # the handshake is done: the certificate served (the socket goes with the response)
                served = conn.sock.getpeercert(binary_form=True) if context is not None else None
                resp = conn.getresponse()
                body = resp.read()
                server = resp.getheader("Server", "")
                conn.close()
                wrong = self._wrong_certificate(v, served) if context is not None else ""
                if wrong:
                    # nginx's reload is asynchronous: old workers may answer for a moment
                    last = wrong
                elif context is not None and resp.status == 200 and b"pypiserver" in body:
                    return "ok", label, f"HTTP 200 over TLS from {server or 'nginx'}, pypiserver behind it"
                elif context is None and resp.status == 200 and "waitress" in server.lower():
                    return "ok", label, f"HTTP 200 from {server}"
                else:
                    last = f"HTTP {resp.status} from {server or 'unknown server'}"
                    if resp.status == 200:
                        return "failed", label, (f"answers, but not with waitress ({last})" if context is None
                                                 else f"answers, but not with pypiserver's page ({last})")
            except ssl.SSLCertVerificationError as exc:
                # (an old nginx worker may still serve the certificate being replaced)
                last = f"the certificate does not verify: {exc.verify_message}"
            except (OSError, http.client.HTTPException) as exc:
                last = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            now = time.monotonic()
            if check and now > deadline:
                return "skipped", label, f"check mode: not answering yet ({last})"
            if run is not None and now > next_look:
                # a unit that failed, or keeps crashing (Restart=on-failure), will not answer
                next_look = now + 3
                state = dict(re.findall(r"^(\w+)=(.*)$", run(
                    f"systemctl show -p ActiveState -p NRestarts {shlex.quote(service)}"), re.M))
                count = int(state["NRestarts"]) if state.get("NRestarts", "").isdigit() else None
                if state.get("ActiveState") == "failed":
                    return "failed", label, (f"{service} failed after {now - start:.0f} s "
                                             f"({last}){self.diagnose(service, run)}")
                if restarts is None:
                    restarts = count
                elif count is not None and count - restarts >= 2:
                    return "failed", label, (f"{service} keeps crashing: systemd restarted it "
                                             f"{count - restarts} times in {now - start:.0f} s "
                                             f"({last}){self.diagnose(service, run)}")
            if now > deadline:
                return "failed", label, (f"no healthy answer within {HEALTH_TIMEOUT} s: {last}"
                                         f"{self.diagnose(service, run)}"
                                         f"{self.diagnose('nginx', run) if tls_on else ''}")
            time.sleep(0.25)

    @staticmethod
    def _tls_context(v: dict) -> ssl.SSLContext:
        """The private CA's certificate verifies the host's; a certificate of yours is
        compared with the one nginx serves instead (your CA is not ours to know)."""
        from ... import tls

        if v["tls_cert"]:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return context
        return ssl.create_default_context(cafile=str(tls.ensure_ca().path))

    @staticmethod
    def _wrong_certificate(v: dict, served: bytes | None) -> str:
        from ... import tls

        if not v["tls_cert"] or served is None:
            return ""
        import hashlib
        from pathlib import Path as P

        want = tls.fingerprint(P(v["tls_cert"]).read_bytes())
        if hashlib.sha256(served).hexdigest() != want:
            return f"nginx serves another certificate than {v['tls_cert']}"
        return ""

    @staticmethod
    def diagnose(service: str, run) -> str:
        """The service's state and its last journal lines, indented under the failed line."""
        if run is None:
            return ""
        s = shlex.quote(service)
        text = run(f"systemctl status --no-pager --lines=0 {s} 2>&1 | head -n 5; "
                   f"echo '-- last journal lines:'; journalctl -u {s} -n 15 --no-pager -o cat 2>&1")
        lines = [ln.rstrip()[:300] for ln in text.splitlines() if ln.strip()]
        return "\n" + "\n".join(lines + [f"-- more: journalctl -u {service} -e   (on the host)"])

    def summary(self, target, facts) -> list[str]:
        v = self.vars(target)
        url = self.url(target) + "simple/"
        host = urlsplit(url).hostname                  # pip's --trusted-host: no brackets
        if not v["tls"]:
            return [f"index: {url}",
                    f"pip: pip install --index-url {url} --trusted-host {shlex.quote(host)} NAME",
                    "warning: tls: false: plain http, upload passwords cross the network in clear "
                    "text; remove tls: false for HTTPS"]
        from ... import tls

        lines = [f"index: {url}"]
        if v["tls_cert"]:
            lines.append(f"pip: pip install --index-url {url} NAME")
        else:
            # (--cert replaces pip's trust store: PyPI, where unknown names are redirected,
            # then fails; client-config writes a bundle of both)
            lines.append(f"pip: pip install --index-url {url} --cert {shlex.quote(str(tls.ca_dir() / 'ca.crt'))} "
                         f"NAME   (names only this index holds; for everything, use client-config)")
        lines.append(f"clients: invoke client-config -H {target.name} --write (pip.conf, .pypirc, "
                     f"the CA they trust)")
        if v["pypi_cache"]:
            lines.append(f"cache: names this index lacks come from {v['pypi_cache_upstream']}, kept here"
                         + (f"; files younger than {v['pypi_cache_min_age']} are not offered"
                            if seconds(v["pypi_cache_min_age"]) else ""))
            if v["pypi_cache_upstream"].startswith("http://"):
                lines.append("warning: pypi_cache_upstream is plain http: whoever sits on the path can change "
                             "the pages, and with them the hashes the files are checked against")
        if target.deployed and not target.recorded.get("tls", False):
            lines.append("note: this server moved to https on the same port: clients must now use "
                         f"{url} (plain http is redirected; run client-config again)")
        return lines


def _nginx_address(address: str) -> str:
    return f"[{address}]" if ":" in address else address


class _Rendered(File):
    """A File whose content is rendered from facts (the unit depends on systemd's version)."""

    def __init__(self, path, render_fn, **kwargs):
        super().__init__(path, b"", **kwargs)
        self.render_fn = render_fn

    def prepare(self, facts):
        self.content = self.render_fn(facts).encode()
