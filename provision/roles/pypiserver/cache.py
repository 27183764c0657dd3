"""The pull-through cache (pypi_cache): nginx's proxy_cache in front of a small origin.

nginx decides and keeps: a name the static index holds is private and answered from disk
(never looked up upstream, whatever the client asks); a name pypi_cache_deny matches, or
pypi_cache_allow does not, gets 404; everything else goes through two nginx caches (pages
for pypi_cache_index_ttl, served stale while the upstream is down; files until
least-recently-used eviction beyond pypi_cache_max_size). Its misses go to
``<service>-cache.service``, which runs ``hostside/pullthrough.py``: the upstream's page
filtered (minimum age, sha256 required), files streamed and verified. See docs/cache.md.
"""

from __future__ import annotations

import re
from pathlib import Path

from ...errors import InventoryError
from ...facts import FileText
from ...render import render
from ...steps import Directory, File, Service, ServiceOff
from ...steps.base import Command, Plan, Step, WriteFile, q
from ...validate import seconds, systemd_quote

RESTART_CACHE = "restart the cache"


def unit_name(service: str) -> str:
    return f"{service}-cache"


def pattern_regex(pattern: str) -> str:
    """A normalised name pattern (validate.name_patterns) as a regex over normalised names."""
    return "".join("[a-z0-9-]*" if c == "*" else "[a-z0-9-]" if c == "?" else re.escape(c) for c in pattern)


def policy(v: dict) -> dict:
    """The nginx map that refuses names: {"default": "0"|"1", "rules": [(regex, value)]};
    first match wins, so denials come first; with an allow list, anything else is refused."""
    rules = [(f"~^(?:{pattern_regex(p)})$", "1") for p in v["pypi_cache_deny"]]
    rules += [(f"~^(?:{pattern_regex(p)})$", "0") for p in v["pypi_cache_allow"]]
    return {"default": "1" if v["pypi_cache_allow"] else "0", "rules": rules}


def nginx_context(v: dict) -> dict | None:
    """What nginx.conf.j2 needs of the cache (None: off)."""
    if not v["pypi_cache"]:
        return None
    return {"dir": v["pypi_cache_dir"], "port": v["pypi_cache_port"], "ttl": v["pypi_cache_index_ttl"],
            "max_size": v["pypi_cache_max_size"], "policy": policy(v)}


def ca_path(v: dict) -> str:
    return f"{v['pypiserver_config_dir']}/pypi-cache-upstream-ca.pem"


class NginxDirectory(Directory):
    """A directory nginx's workers own (www-data on Debian, nginx on the Red Hat family)."""

    def __init__(self, path: str, mode: int = 0o700):
        super().__init__(path, "nginx", "nginx", mode)
        self.name = f"Ensure the directory {path} exists (nginx's user, {mode:04o})."

    def prepare(self, facts):
        from . import family_vars      # (the role's module imports this one)
        self.owner = self.group = family_vars(facts.family)["nginx_user"] if facts.family else "nginx"


class CacheUpstream(Step):
    """The cache holds one upstream's pages and files: `<dir>/upstream` names it, and when
    pypi_cache_upstream changes, what was cached is emptied (another index may hold other
    bytes under the same file name; nginx would serve the old ones against the new page's
    hash, and every client would fail). nginx is stopped meanwhile (its shared memory
    indexes the files; a reload keeps it): every site it serves pauses for that moment."""

    def __init__(self, cache_dir: str, upstream: str, origin: str):
        self.cache_dir, self.upstream, self.origin = cache_dir, upstream, origin
        self.marker = f"{cache_dir}/upstream"
        self.name = f"Ensure the cache in {cache_dir} holds {upstream}'s files only."

    def probes(self):
        return {"marker": FileText(self.marker)}

    def plan(self, facts, probed):
        have = (probed["marker"] or "").strip()
        record = WriteFile(self.marker, (self.upstream + "\n").encode(), old=(probed["marker"] or "").encode())
        if have == self.upstream:
            return Plan(note=f"from {self.upstream}")
        if not have:
            return Plan([record], f"record the upstream {self.upstream}")
        d = q(self.cache_dir)
        # the origin stops too (the run's handler starts it with the new upstream): the old
        # one would fill the cache again; nginx is started again whatever rm did
        empty = f"rm -rf {d}/pages/* {d}/files/* {d}/private/*"
        # (a subshell: its exit ends it, not the run's script)
        return Plan([Command(f"( systemctl stop {q(self.origin)} 2>/dev/null; "
                             f"if systemctl is-active -q nginx; then systemctl stop nginx; {empty}; rc=$?; "
                             f"systemctl start nginx && exit $rc; else {empty}; fi )"), record],
                    f"the upstream was {have}: its cached pages and files removed")


def steps(v: dict) -> list:
    """The cache's steps (after pypiserver's venv, before nginx's site): its directories,
    the origin program beside the index builder, its unit; or, turned off, its unit stopped."""
    service, venv, user = v["pypiserver_service"], v["pypiserver_venv"], v["pypiserver_user"]
    unit = unit_name(service)
    if not v["pypi_cache"]:
        return [ServiceOff(f"{unit}.service")]
    program = str(Path(venv).parent / "pullthrough.py")
    cafile = ca_path(v) if v["pypi_cache_upstream_ca"] else None
    # pypiserver itself says which names are private (the origin asks it first)
    argv = [f"{venv}/bin/python", program, "--port", str(v["pypi_cache_port"]),
            "--upstream", v["pypi_cache_upstream"],
            "--private", f"http://127.0.0.1:{v['pypiserver_backend_port']}/simple/",
            "--min-age", str(seconds(v["pypi_cache_min_age"]))]
    if cafile:
        argv += ["--cafile", cafile]

    def unit_text(facts):
        return render("pypiserver/cache.service.j2", service=service, user=user, systemd=facts.systemd,
                      exec_start=" ".join(systemd_quote(a) for a in argv))

    from ...hostside import pullthrough
    from . import _Rendered
    out = [
        NginxDirectory(v["pypi_cache_dir"]),
        NginxDirectory(f"{v['pypi_cache_dir']}/pages"),
        NginxDirectory(f"{v['pypi_cache_dir']}/files"),
        NginxDirectory(f"{v['pypi_cache_dir']}/private"),
        CacheUpstream(v["pypi_cache_dir"], v["pypi_cache_upstream"], f"{unit}.service"),
        File(program, Path(pullthrough.__file__).read_bytes(), "root", "root", 0o755,
             notify=(RESTART_CACHE,), name=f"Ensure the cache's origin {program} is up to date."),
    ]
    if cafile:
        try:
            pem = Path(v["pypi_cache_upstream_ca"]).read_bytes()
        except OSError as exc:
            raise InventoryError(f"pypi_cache_upstream_ca {v['pypi_cache_upstream_ca']}: cannot read it "
                                 f"({exc.strerror})") from None
        if b"-----BEGIN CERTIFICATE-----" not in pem:
            raise InventoryError(f"pypi_cache_upstream_ca {v['pypi_cache_upstream_ca']}: no PEM "
                                 f"certificate in it")
        out.append(File(cafile, pem, "root", "root", 0o644,
                        notify=(RESTART_CACHE,),
                        name=f"Ensure the upstream's CA certificates are in {cafile}."))
    out += [
        _Rendered(f"/etc/systemd/system/{unit}.service", unit_text, on_change=("systemctl daemon-reload",),
                  notify=(RESTART_CACHE,), name=f"Ensure the unit {unit}.service is up to date."),
        Service(f"{unit}.service"),
    ]
    return out
