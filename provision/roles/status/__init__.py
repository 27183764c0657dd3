"""`invoke status`: each host's state in one round trip, read-only.

Everything is a fact of the one gather script: the service and nginx, versions, the
certificate, the packages, accounts, disk, the static index's lag, the firewall, and the
pull-through cache (projects, files and bytes kept; its hit rate from nginx's cache log). A
host is unhealthy when the service (or nginx in front, or the cache's origin) is not running,
the packages' disk is over 90 % full or the certificate has fewer than 14 days left.
"""

from __future__ import annotations

import datetime as dt
import threading

from .. import Role, index_url
from ...facts import DirFiles, FileText, FirewalldRuntimePort, ServiceState, Ufw, VenvState
from ...report import plural
from ...roles.accounts.steps import AccountNames
from ...validate import static_index_on
from ..pypiserver.cache import unit_name as cache_unit
from .steps import CACHE_HITS, CacheLog, CacheUsage, Disk, MTime, NginxVersion, Status, Uptime, projects

DISK_FULL = 90.0          # per cent used
CERT_DAYS = 14


class StatusRole(Role):
    needs_deploy = True
    changes_hosts = False

    def __init__(self):
        self.found: dict[str, dict] = {}
        self._lock = threading.Lock()

    def phases(self, target):
        v = self.vars(target)
        service, tls_on = v["pypiserver_service"], bool(v["tls"])
        static = static_index_on(v)
        ports = [v["pypiserver_port"]] + ([v["https_redirect_port"]] if tls_on and v["https_redirect_port"] else [])
        probes = {
            "service": ServiceState(service), "uptime": Uptime(service),
            "venv": VenvState(v["pypiserver_venv"]),
            "files": DirFiles(v["pypiserver_packages_dir"]),
            "accounts": AccountNames(v["pypiserver_htpasswd"]),
            "disk": Disk(v["pypiserver_packages_dir"]),
            "ufw": Ufw(),
            **{f"port{p}": FirewalldRuntimePort(p) for p in ports},
        }
        if tls_on:
            probes |= {"nginx": ServiceState("nginx"), "nginx_version": NginxVersion(),
                       "cert": FileText(f"{v['pypiserver_config_dir']}/tls/server.crt")}
        if static:
            probes["index"] = MTime(f"{v['pypiserver_index_dir']}/state.json")
        if v["pypi_cache"]:
            probes |= {"cache": CacheUsage(f"{v['pypi_cache_dir']}/files"),
                       "cache_log": CacheLog(f"/var/log/nginx/{service}.cache.log"),
                       "cache_service": ServiceState(f"{cache_unit(service)}.service")}
        url = index_url(v, target.resolved_host or target.ssh_host) + "simple/"

        def summarize(facts, probed) -> dict:
            return self.summarize(target.name, v, url, ports, facts, probed)

        def found(data):
            with self._lock:
                self.found[target.name] = data
        return [[Status(f"Read the state of {service}.", probes, summarize, found)]]

    @staticmethod
    def summarize(host, v, url, ports, facts, probed) -> dict:
        from ... import tls

        service, tls_on = v["pypiserver_service"], bool(v["tls"])
        state = probed["service"]
        problems = []
        if state.active != "active":
            problems.append(f"{service} is {state.active or 'unknown'}")
        nginx = probed.get("nginx")
        if tls_on and nginx is not None and nginx.active != "active":
            problems.append(f"nginx is {nginx.active or 'unknown'}")
        files = probed["files"]
        newest = max((m for _, _, m in files), default=None)
        disk = probed["disk"]
        disk_out = None
        if disk:
            size, free = disk
            used = 100.0 * (size - free) / size if size else 0.0
            disk_out = {"path": v["pypiserver_packages_dir"], "bytes": size, "free_bytes": free,
                        "used_percent": round(used, 1)}
            if used > DISK_FULL:
                problems.append(f"disk {used:.0f} % full")
        cert_days = None
        if tls_on:
            pem = (probed.get("cert") or "").encode()
            try:
                cert_days = tls.days_left(pem) if pem.strip() else None
            except ValueError:
                cert_days = None
            if cert_days is None:
                problems.append("no readable certificate")
            elif cert_days < CERT_DAYS:
                problems.append(f"certificate expires in {cert_days} days")
        index = None
        if "index" in probed:
            built = probed["index"]
            lag = None if built is None else max(0, int((newest or 0) - built))
            index = {"static": True, "lag_seconds": lag}
            if built is None:
                problems.append("the static index was never built")
        else:
            index = {"static": False, "lag_seconds": None}
        ufw = probed["ufw"]
        if facts.firewalld:
            fw, states = "firewalld", {str(p): "open" if probed[f"port{p}"] else "closed" for p in ports}
        elif ufw.active:
            fw, states = "ufw", {str(p): "open" if f"{p}/tcp" in ufw.allowed or str(p) in ufw.allowed else "closed"
                                 for p in ports}
        else:
            fw, states = None, {str(p): "no firewall" for p in ports}
        cache = None
        if "cache" in probed:
            usage = probed["cache"] or {"files": 0, "bytes": 0, "projects": 0}
            counts = probed["cache_log"]
            # ("-": refused before the cache, a denied name's 404)
            total = sum(n for k, n in counts.items() if k != "-")
            hits = sum(counts.get(k, 0) for k in CACHE_HITS)
            origin = probed["cache_service"].active or "unknown"
            if origin != "active":
                problems.append(f"{cache_unit(service)} (the cache's origin) is {origin}")
            cache = {"upstream": v["pypi_cache_upstream"], "service": origin, **usage,
                     "max_size": v["pypi_cache_max_size"], "requests": total, "hits": hits,
                     "hit_rate": round(hits / total, 3) if total else None}
        venv = probed["venv"]
        accounts = probed["accounts"]
        data = {
            "host": host,
            "healthy": not problems,
            "problems": problems,
            "service": {"name": service, "state": state.active or "unknown",
                        "uptime_seconds": None if probed["uptime"] is None else int(probed["uptime"])},
            "versions": {"pypiserver": venv.dists.get("pypiserver"), "python": venv.version,
                         "nginx": probed.get("nginx_version")},
            "url": url,
            "tls": {"certificate_days_left": cert_days} if tls_on else None,
            "packages": {"files": len(files), "bytes": sum(s for _, s, _ in files),
                         "projects": projects(files),
                         "last_upload": None if newest is None else
                         dt.datetime.fromtimestamp(newest, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")},
            "accounts": None if accounts is None else len(accounts),
            "disk": disk_out,
            "index": index,
            "firewall": {"tool": fw, "ports": states},
            "cache": cache,
        }
        data["summary"] = ("healthy" if not problems else "UNHEALTHY: " + "; ".join(problems)) + \
            f"; {plural(len(files), 'file')}, {plural(data['packages']['projects'], 'project')}"
        return data


def human_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return "-"


def human_seconds(s: int | None) -> str:
    if s is None:
        return "-"
    days, rest = divmod(int(s), 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days}d {hours}h"
    return f"{hours}h {minutes}m" if hours else f"{minutes}m {rest % 60}s" if minutes else f"{rest}s"


COLUMNS = ("HOST", "HEALTH", "SERVICE", "UP", "PYPISERVER", "FILES", "SIZE", "PROJECTS", "ACCOUNTS",
           "DISK FREE", "CERT", "INDEX LAG", "LAST UPLOAD", "FIREWALL", "CACHE")


def table(rows: list[dict]) -> str:
    """One line per host; the problems of unhealthy ones below."""
    out = []
    for d in rows:
        fw = d["firewall"]
        ports = ", ".join(f"{p} {s}" for p, s in fw["ports"].items())
        versions = "/".join(x for x in (d["versions"]["pypiserver"], "py" + (d["versions"]["python"] or "?"),
                                        d["versions"]["nginx"] and "nginx " + d["versions"]["nginx"]) if x)
        disk = d["disk"]
        out.append((d["host"], "ok" if d["healthy"] else "UNHEALTHY", d["service"]["state"],
                    human_seconds(d["service"]["uptime_seconds"]), versions,
                    f"{d['packages']['files']:,}", human_bytes(d["packages"]["bytes"]),
                    f"{d['packages']['projects']:,}", "-" if d["accounts"] is None else str(d["accounts"]),
                    "-" if disk is None else f"{human_bytes(disk['free_bytes'])} ({disk['used_percent']:.0f}% used)",
                    "-" if not d["tls"] or d["tls"]["certificate_days_left"] is None
                    else f"{d['tls']['certificate_days_left']} days",
                    "-" if not d["index"]["static"] else human_seconds(d["index"]["lag_seconds"]),
                    (d["packages"]["last_upload"] or "-").replace("T", " ").replace("Z", " UTC"),
                    f"{ports} ({fw['tool']})" if fw["tool"] else ports, cache_cell(d["cache"])))
    widths = [max(len(str(r[i])) for r in out + [COLUMNS]) for i in range(len(COLUMNS))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(COLUMNS, widths)).rstrip()]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in out]
    for d in rows:
        for p in d["problems"]:
            lines.append(f"{d['host']}: {p}")
    return "\n".join(lines)


def cache_cell(c: dict | None) -> str:
    """The pull-through cache in a few words: projects, files, size, hits (or off)."""
    if c is None:
        return "off"
    rate = "no requests yet" if c["hit_rate"] is None else f"{c['hit_rate'] * 100:.0f}% hits of {c['requests']:,}"
    return (f"{plural(c['projects'], 'project')}, {plural(c['files'], 'file')}, "
            f"{human_bytes(c['bytes'])} of {c['max_size']}, {rate}")


def json_rows(rows: list[dict]) -> list[dict]:
    """The stable JSON form: the same keys for every host, no presentation-only field."""
    return [{k: val for k, val in d.items() if k != "summary"} for d in rows]


__all__ = ["StatusRole", "json_rows", "table"]
