#!/usr/bin/env python3
"""Static index benchmark (issue 11): the project page served by nginx from the static index
against nginx serving a static file of the same size, and real pip and uv installing a
20-package set against the static index and against pypiserver's own pages, on one host, in
one run.

Run from the repository root, as root (the test host is a systemd-nspawn container):

    sudo .venv/bin/python benchmarks/index_bench.py [--files 3000] [--clients 16] [--seconds 10]

1. Boots one fresh Debian 12 test host and deploys the defaults (https, static index).
2. Fills the packages directory with --files distribution files (serve_bench.py's index:
   10 files per project) plus a real 20-package set (flask, requests, rich, attrs,
   packaging, python-dateutil and their dependencies, downloaded here for this Python), and
   waits for the static index to list them. Times the builder: a full rebuild, a run with
   nothing new, a run after one new file (projects rendered, counted).
3. wrk (apt-get install wrk), --clients connections: the biggest project's page in both forms
   (pip's Accept header: JSON; none: HTML) and the very same bytes as a plain static file from
   a bare nginx server with the same certificate (:9443), --rounds rounds interleaved.
4. pip install and uv pip install of the set into an empty target (no cache), against the
   static index, then against pypiserver's pages (a redeploy with static_index: false: the same
   nginx front, only the pages differ), --installs rounds: wall time, requests and bytes sent
   (from nginx's access log: pages, metadata, files).
5. Prints the figures and the issue's targets with PASS/FAIL; destroys the host.

Traffic only goes to the booted test host's address on its own veth; the 20-package set is
downloaded from this machine's package index (pip's configuration).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import clean_up, preflight, run_guarded, sigterm_interrupts  # noqa: E402
from https_bench import https_get, wrk  # noqa: E402
from serve_bench import PACKAGES_DIR, REPO, VENV, WRK_LUA, build_index, time_until  # noqa: E402

HOST_PREFIX = "ixb"
REF_PORT = 9443
REF_CONF = "/etc/nginx/conf.d/zz-bench-reference.conf"
REF_ROOT = "/srv/bench-ref"
ACCESS_LOG = "/var/log/nginx/pypiserver.access.log"
INDEX_DIR = "/srv/pypi/index"
SET = ["flask", "requests", "rich", "attrs", "packaging", "python-dateutil"]
PIP_ACCEPT = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01"
TARGET_RPS, TARGET_RATIO = 10_000, 1.5


def log(msg: str) -> None:
    print(f"[index-bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def deploy(inv: Path, host: str, check_noop: bool = False) -> float:
    t0 = time.monotonic()
    p = subprocess.run([str(REPO / ".venv/bin/invoke"), "deploy", "--inventory", str(inv), "-H", host],
                       cwd=REPO, capture_output=True, text=True, timeout=900)
    if p.returncode != 0:
        raise RuntimeError("deploy failed:\n" + "\n".join((p.stdout + p.stderr).splitlines()[-12:]))
    return time.monotonic() - t0


def traffic(h, offset: int) -> dict:
    """Requests and bytes nginx sent since `offset` of its access log, by kind."""
    text = _text(h.exec(f"tail -c +{offset + 1} {ACCESS_LOG}").stdout)
    out = {"pages": [0, 0], "metadata": [0, 0], "files": [0, 0], "other": [0, 0]}
    for m in re.finditer(r'"(?:GET|HEAD) (\S+) [^"]*" (\d{3}) (\d+)', text):
        path, sent = m[1], int(m[3])
        kind = "pages" if path.startswith("/simple") else "metadata" if path.endswith(".metadata") else \
            "files" if path.startswith("/packages/") else "other"
        out[kind][0] += 1
        out[kind][1] += sent
    return out


def _text(out) -> str:
    return out.decode(errors="replace") if isinstance(out, bytes) else out


def log_size(h) -> int:
    return int(h.exec(f"stat -c %s {ACCESS_LOG}").stdout)


def install(tool: str, url: str, cafile: str, work: Path) -> tuple[float, str]:
    target = Path(tempfile.mkdtemp(dir=work, prefix=f"{tool}-"))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PIP_", "UV_")) and k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE")}
    if tool == "pip":
        cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-cache-dir", "--disable-pip-version-check",
               "--isolated", "--target", str(target), "--index-url", url, "--cert", cafile, *SET]
    else:
        cmd = [str(Path(sys.executable).parent / "uv"), "pip", "install", "-q", "--no-cache", "--no-config",
               "--python", sys.executable, "--target", str(target), "--index-url", url, *SET]
        env["SSL_CERT_FILE"] = cafile
    t0 = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    took = time.monotonic() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{tool} install failed:\n{(p.stdout + p.stderr)[-1500:]}")
    got = len(list(target.glob("*.dist-info")))
    shutil.rmtree(target, ignore_errors=True)
    return took, f"{got} distributions"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=3000)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--installs", type=int, default=2, help="install rounds per index kind")
    ap.add_argument("--big-project", default="proj150")
    args = ap.parse_args(argv)
    from testing import testhost
    if not preflight("index_bench"):
        return 2
    if not shutil.which("wrk"):
        print("index_bench: wrk is needed (apt-get install -y wrk)", file=sys.stderr)
        return 2
    if not (Path(sys.executable).parent / "uv").exists():
        print("index_bench: uv is needed beside this Python (pip install -e '.[test]')", file=sys.stderr)
        return 2
    sigterm_interrupts()
    t_start = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="index-bench."))
    os.environ["PROVISION_CA_DIR"] = str(work / "ca")
    before = {h.name for h in testhost.list_hosts()}
    hosts: list = []
    res: dict = {"wrk": {}, "installs": {}}
    with run_guarded(log, lambda: clean_up(hosts, before, HOST_PREFIX, work, log, t_start),
                     errors=(testhost.TestHostError, RuntimeError, subprocess.TimeoutExpired)):
        wheels = work / "set"
        p = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
                            "-d", str(wheels), *SET], capture_output=True, text=True, timeout=600)
        if p.returncode != 0:
            raise RuntimeError("cannot download the 20-package set here:\n" + p.stderr[-800:])
        log(f"the set: {len(list(wheels.iterdir()))} files, "
            f"{sum(f.stat().st_size for f in wheels.iterdir()) / 1e6:.1f} MB")
        hosts = testhost.boot_hosts(1, prefix=HOST_PREFIX)
        h = hosts[0]
        addr, cafile = h.address, str(work / "ca" / "ca.crt")
        inv = testhost.write_inventory([h], work / "inventory.yml", known_hosts=str(work / "known_hosts"))
        log(f"deployed (https, static index) in {deploy(inv, h.name):.1f}s")
        tar, info = build_index(args.files, args.big_project, random.Random(20240601))
        h.exec(f"tar -x -C {PACKAGES_DIR}", input=tar, timeout=300)
        import io
        import tarfile
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as t:
            for f in sorted(wheels.iterdir()):
                t.add(f, arcname=f.name)
        h.exec(f"tar -x -C {PACKAGES_DIR} && chown -R pypi:pypi {PACKAGES_DIR}", input=buf.getvalue(), timeout=300)
        want = len(info["names"]) + len({f.name.split("-")[0] for f in wheels.iterdir()})

        def projects() -> int:
            return len(json.loads(https_get(addr, 8000, "/simple/", cafile, headers={"Accept": PIP_ACCEPT})[1])["projects"])
        waited = time_until(lambda: projects() >= want, 120, 0.2)
        if waited is None:
            raise RuntimeError("the static index did not list every project within 120 s")
        log(f"filled: {info['files'] + len(list(wheels.iterdir()))} files, {want} projects; listed "
            f"{waited:.1f}s after the copy")
        # the builder at this size, as the service runs it
        builder = (f"runuser -u pypi -- {VENV}/bin/python /opt/pypiserver/indexer.py {PACKAGES_DIR} {INDEX_DIR} "
                   f"--yanked /var/lib/provision/yanked-pypiserver.json")
        h.exec("systemctl stop pypiserver-index.path")
        for label, prep in (("full rebuild", f"rm -f {INDEX_DIR}/state.json"), ("nothing new", "true"),
                            ("one new file", f"cp -p {PACKAGES_DIR}/proj007-1.0.0.tar.gz {PACKAGES_DIR}/proj007-9.9.tar.gz")):
            h.exec(prep)
            t0 = time.monotonic()
            out = _text(h.exec(builder, timeout=600).stdout).strip().splitlines()[-1]
            res.setdefault("builder", []).append((label, time.monotonic() - t0, json.loads(out)))
            log(f"builder, {label}: {time.monotonic() - t0:.2f}s {out}")
        h.exec("systemctl start pypiserver-index.path")

        # pages: the static page, and the same bytes as a plain file from a bare nginx
        page_json = https_get(addr, 8000, f"/simple/{args.big_project}/", cafile, headers={"Accept": PIP_ACCEPT})[1]
        page_html = https_get(addr, 8000, f"/simple/{args.big_project}/", cafile)[1]
        h.exec(f"mkdir -p {REF_ROOT} && cp {INDEX_DIR}/simple/{args.big_project}/index.v1_json {REF_ROOT}/page.json "
               f"&& cp {INDEX_DIR}/simple/{args.big_project}/index.html {REF_ROOT}/page.html")
        h.exec(f"cat > {REF_CONF}", input=(
            f"server {{ listen {REF_PORT} ssl; ssl_certificate /etc/pypiserver/tls/server.crt; "
            f"ssl_certificate_key /etc/pypiserver/tls/server.key; ssl_protocols TLSv1.2 TLSv1.3; "
            f"root {REF_ROOT}; access_log off; }}\n").encode())
        h.exec(f"nginx -t -q && systemctl reload nginx && firewall-cmd -q --add-port={REF_PORT}/tcp")
        time.sleep(1)
        lua = work / "bench.lua"
        lua.write_text(WRK_LUA)
        rows = [
            ("page, JSON", "ours (static index)", f"https://{addr}:8000/simple/{args.big_project}/", PIP_ACCEPT),
            ("page, JSON", "bare nginx, same file", f"https://{addr}:{REF_PORT}/page.json", None),
            ("page, HTML", "ours (static index)", f"https://{addr}:8000/simple/{args.big_project}/", None),
            ("page, HTML", "bare nginx, same file", f"https://{addr}:{REF_PORT}/page.html", None),
        ]
        for rnd in range(args.rounds):
            for what, who, url, accept in rows:
                r = wrk(lua, url, args, accept)
                res["wrk"].setdefault((what, who), []).append(r)
                log(f"  round {rnd + 1}: {what:11} {who:22} {r['rps']:9.0f} req/s  p99 {r['p99_us'] / 1000:6.2f} ms"
                    f"  non-200 {r['non200']}")
        res["sizes"] = (len(page_json), len(page_html))
        h.exec(f"rm -f {REF_CONF} && systemctl reload nginx", check=False)

        # installs: static index, then pypiserver's pages (same front), interleaved by rounds
        url = f"https://{addr}:8000/simple/"
        # (explicit: the record of the static_index: false deploy would otherwise be kept)
        static_inv = testhost.write_inventory([h], work / "static.yml", known_hosts=str(work / "known_hosts"),
                                              static_index=True)
        plain_inv = testhost.write_inventory([h], work / "plain.yml", known_hosts=str(work / "known_hosts"),
                                             static_index=False)
        for rnd in range(args.installs):
            for kind, kind_inv in (("static index", static_inv), ("pypiserver pages", plain_inv)):
                deploy(kind_inv, h.name)
                for tool in ("pip", "uv"):
                    offset = log_size(h)
                    took, got = install(tool, url, cafile, work)
                    time.sleep(0.5)                       # nginx writes its log line after the response
                    sent = traffic(h, offset)
                    res["installs"].setdefault((tool, kind), []).append((took, sent))
                    total = sum(v[1] for v in sent.values())
                    log(f"  round {rnd + 1}: {tool:3} against {kind:16} {took:6.2f}s  {got}, "
                        f"{sum(v[0] for v in sent.values())} requests, {total / 1e6:.2f} MB "
                        f"(pages {sent['pages'][0]}/{sent['pages'][1] / 1e3:.0f} KB, metadata "
                        f"{sent['metadata'][0]}/{sent['metadata'][1] / 1e3:.0f} KB, files {sent['files'][0]}/"
                        f"{sent['files'][1] / 1e6:.2f} MB)")

    if not res["wrk"]:
        return 2

    def best(key):
        return max(res["wrk"][key], key=lambda r: r["rps"])

    print(f"\nResults ({args.files} files; page of {args.big_project}: JSON {res['sizes'][0]} bytes, HTML "
          f"{res['sizes'][1]} bytes; wrk {args.clients} connections, best of {args.rounds} rounds; 2 cores "
          f"shared by nginx and wrk)")
    print(f"| {'what':11} | {'server':22} | {'req/s':>9} | {'p99 ms':>7} | {'non-200':>7} |")
    print(f"|{'-' * 13}|{'-' * 24}|{'-' * 11}|{'-' * 9}|{'-' * 9}|")
    for what, who in res["wrk"]:
        r = best((what, who))
        print(f"| {what:11} | {who:22} | {r['rps']:9.0f} | {r['p99_us'] / 1000:7.2f} | {r['non200']:7d} |")
    print("\nThe builder (as the service runs it)")
    for label, took, counts in res.get("builder", []):
        print(f"  {label:13} {took:6.2f}s  read {counts['read']} files, rendered {counts['rendered']} projects")
    print("\nInstalls of the 20-package set (median of the rounds; no cache; bytes sent by nginx)")
    print(f"| {'client':6} | {'index':16} | {'seconds':>7} | {'requests':>8} | {'pages KB':>8} | {'metadata KB':>11} | "
          f"{'files MB':>8} |")
    print(f"|{'-' * 8}|{'-' * 18}|{'-' * 9}|{'-' * 10}|{'-' * 10}|{'-' * 13}|{'-' * 10}|")
    med = {}
    for (tool, kind), runs in res["installs"].items():
        runs = sorted(runs, key=lambda r: r[0])
        took, sent = runs[len(runs) // 2]
        med[(tool, kind)] = took
        print(f"| {tool:6} | {kind:16} | {took:7.2f} | {sum(v[0] for v in sent.values()):8d} | "
              f"{sent['pages'][1] / 1e3:8.0f} | {sent['metadata'][1] / 1e3:11.1f} | {sent['files'][1] / 1e6:8.2f} |")
    checks = []
    for form in ("JSON", "HTML"):
        ours, ref = best((f"page, {form}", "ours (static index)"))["rps"], best((f"page, {form}", "bare nginx, same file"))["rps"]
        checks += [(f"project page ({form}) >= {TARGET_RPS} req/s", ours >= TARGET_RPS, f"{ours:.0f}"),
                   (f"within {TARGET_RATIO:g}x of nginx serving the same file", ref / ours <= TARGET_RATIO, f"{ref / ours:.2f}x")]
    if med:
        print("Install time, static index / pypiserver pages: " + ", ".join(
            f"{t} {med[(t, 'static index')] / med[(t, 'pypiserver pages')]:.2f}x" for t in ("pip", "uv")
            if (t, "static index") in med and (t, "pypiserver pages") in med))
    print("Targets (issue):")
    for label, passed, shown in checks:
        print(f"  [{'PASS' if passed else 'FAIL'}] {label}: {shown}")
    return 0 if all(p for _, p, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
