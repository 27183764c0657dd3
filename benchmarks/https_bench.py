#!/usr/bin/env python3
"""HTTPS front benchmark: our nginx + TLS front, the same file served by a bare nginx with
TLS, and today's layout before it (pypiserver itself over http), on one host, in one run.

Run from the repository root, as root (the test host is a systemd-nspawn container):

    sudo .venv/bin/python benchmarks/https_bench.py [--files 3000] [--clients 16] [--seconds 10]

1. Boots one fresh Debian 12 test host and deploys to it with the defaults (tls: true:
   nginx from the host's packages, a certificate from a private CA made for this run).
2. Fills /srv/pypi/packages with --files distribution files (serve_bench.py's index: 10 real
   ~100 KB wheels in proj150) and waits until the index lists them.
3. Beside it on the same host: a bare nginx server with the same certificate serving the
   packages directory on :9443 (the reference), and pypiserver as the previous release ran it
   (waitress, cached-dir, plain http) from the same venv on :8001.
4. wrk (needed: apt-get install wrk), --clients connections, --seconds per run, --rounds
   rounds interleaved: the ~100 KB download and the project page through each server.
5. Prints req/s and p99 per row and the issue's targets with PASS/FAIL; destroys the host.

Traffic only goes to the booted test host's address on its own veth.
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import clean_up, preflight, run_guarded, sigterm_interrupts  # noqa: E402
from serve_bench import (PACKAGES_DIR, REPO, VENV, WRK_LUA, build_index, listed_projects,  # noqa: E402
                         log, time_until)

HOST_PREFIX = "htb"
REF_PORT, TODAY_PORT = 9443, 8001
REF_CONF = "/etc/nginx/conf.d/zz-bench-reference.conf"
TODAY_UNIT = "bench-today"
TARGET_RPS, TARGET_RATIO, TODAY_PAGES = 5000, 2.0, 366


def https_get(addr: str, port: int, path: str, cafile: str, timeout: float = 10,
              headers: dict | None = None) -> tuple[int, bytes]:
    import http.client
    conn = http.client.HTTPSConnection(addr, port, timeout=timeout,
                                       context=ssl.create_default_context(cafile=cafile))
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def wrk(lua: Path, url: str, args, accept: str | None = None) -> dict:
    import re
    cmd = ["wrk", "-t2", f"-c{args.clients}", f"-d{args.seconds:g}s", "--timeout", "10s", "-s", str(lua)]
    if accept:
        cmd += ["-H", f"Accept: {accept}"]
    p = subprocess.run(cmd + [url, "--", str(10_000_000)], capture_output=True, text=True,
                       timeout=args.seconds + 120)
    m = re.search(r"^BENCH (.*)$", p.stdout, re.M)
    if p.returncode != 0 or not m:
        raise RuntimeError(f"wrk failed on {url}: {(p.stderr or p.stdout).strip()[-200:]}")
    d = {k: int(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
    d["rps"] = d["requests"] / (d["duration_us"] / 1e6)
    return d


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=3000)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--big-project", default="proj150")
    args = ap.parse_args(argv)
    from testing import testhost
    if not preflight("https_bench"):
        return 2
    if not shutil.which("wrk"):
        print("https_bench: wrk is needed (apt-get install -y wrk)", file=sys.stderr)
        return 2
    sigterm_interrupts()
    t_start = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="https-bench."))
    os.environ["PROVISION_CA_DIR"] = str(work / "ca")      # a CA of this run's own
    before = {h.name for h in testhost.list_hosts()}
    hosts: list = []
    results: dict = {}
    with run_guarded(log, lambda: clean_up(hosts, before, HOST_PREFIX, work, log, t_start),
                     errors=(testhost.TestHostError, RuntimeError, subprocess.TimeoutExpired)):
        hosts = testhost.boot_hosts(1, prefix=HOST_PREFIX)
        h = hosts[0]
        addr, cafile = h.address, str(work / "ca" / "ca.crt")
        inv = testhost.write_inventory([h], work / "inventory.yml", known_hosts=str(work / "known_hosts"))
        t0 = time.monotonic()
        p = subprocess.run([str(REPO / ".venv/bin/invoke"), "deploy", "--inventory", str(inv), "-H", h.name],
                           cwd=REPO, capture_output=True, text=True, timeout=900)
        if p.returncode != 0:
            raise RuntimeError("deploy failed:\n" + "\n".join((p.stdout + p.stderr).splitlines()[-12:]))
        log(f"deployed (https, nginx installed from the host's local repository) in {time.monotonic() - t0:.1f}s")
        results["fresh_deploy_s"] = time.monotonic() - t0
        noop = []
        for _ in range(5):
            t1 = time.monotonic()
            q = subprocess.run([str(REPO / ".venv/bin/invoke"), "deploy", "--inventory", str(inv), "-H", h.name],
                               cwd=REPO, capture_output=True, text=True, timeout=300)
            noop.append(time.monotonic() - t1)
            if q.returncode != 0 or f"{h.name} ok=" not in q.stdout or " changed=0 " not in q.stdout:
                raise RuntimeError("a no-op redeploy changed something:\n" + q.stdout[-800:])
        results["noop_s"] = sorted(noop)[2]
        log(f"no-op redeploy with the HTTPS front: median {results['noop_s']:.2f}s of 5 "
            f"({min(noop):.2f}-{max(noop):.2f})")
        tar, info = build_index(args.files, args.big_project, random.Random(20240601))
        h.exec(f"tar -x -C {PACKAGES_DIR} && chown -R pypi:pypi {PACKAGES_DIR}", input=tar, timeout=300)
        big_file = info["big_files"][-1]
        ok = time_until(lambda: listed_projects(https_get(addr, 8000, "/simple/", cafile)[1]) >= info["names"], 60, 0.2)
        if ok is None:
            raise RuntimeError("the index did not list every project within 60 s")
        log(f"filled: {info['files']} files over {info['projects']} projects; {big_file} "
            f"is {int(h.exec(f'stat -c %s {PACKAGES_DIR}/{big_file}').stdout)} bytes")
        h.exec(f"cat > {REF_CONF}", input=(
            f"server {{ listen {REF_PORT} ssl; ssl_certificate /etc/pypiserver/tls/server.crt; "
            f"ssl_certificate_key /etc/pypiserver/tls/server.key; ssl_protocols TLSv1.2 TLSv1.3; "
            f"root {PACKAGES_DIR}; access_log /var/log/nginx/bench-ref.log; "
            f"location / {{ sendfile on; tcp_nopush on; }} }}\n").encode())
        h.exec("nginx -t -q && systemctl reload nginx")
        h.exec(f"systemd-run --unit {TODAY_UNIT} --uid=pypi --gid=pypi {VENV}/bin/pypi-server run "
               f"--host 0.0.0.0 --port {TODAY_PORT} -P . -a . --server auto --backend cached-dir {PACKAGES_DIR}")
        h.exec(f"firewall-cmd --add-port={REF_PORT}/tcp --add-port={TODAY_PORT}/tcp")
        time.sleep(2)
        lua = work / "bench.lua"
        lua.write_text(WRK_LUA)
        rows = [
            ("download ~100 KB", "ours (nginx, https)", f"https://{addr}:8000/packages/{big_file}"),
            ("download ~100 KB", "bare nginx, https", f"https://{addr}:{REF_PORT}/{big_file}"),
            ("download ~100 KB", "before: pypiserver, http", f"http://{addr}:{TODAY_PORT}/packages/{big_file}"),
            ("project page", "ours (nginx, https)", f"https://{addr}:8000/simple/{args.big_project}/"),
            ("project page", "before: pypiserver, http", f"http://{addr}:{TODAY_PORT}/simple/{args.big_project}/"),
        ]
        for rnd in range(args.rounds):
            for what, who, url in rows:
                r = wrk(lua, url, args)
                results.setdefault((what, who), []).append(r)
                log(f"  round {rnd + 1}: {what:18} {who:26} {r['rps']:9.0f} req/s  p99 {r['p99_us'] / 1000:7.2f} ms"
                    f"  non-200 {r['non200']}  errors {r['connect'] + r['read'] + r['write'] + r['timeout']}")
        h.exec(f"systemctl stop {TODAY_UNIT}; rm -f {REF_CONF}; systemctl reload nginx", check=False)

    if not any(isinstance(k, tuple) for k in results):
        return 2

    def best(key):
        runs = results[key]
        return max(runs, key=lambda r: r["rps"])

    print("\nResults (wrk, best of the rounds; p99 of that run; 2 cores shared by server and wrk)")
    print(f"| {'what':18} | {'server':26} | {'req/s':>9} | {'p99 ms':>7} | {'non-200':>7} |")
    print(f"|{'-' * 20}|{'-' * 28}|{'-' * 11}|{'-' * 9}|{'-' * 9}|")
    for (what, who) in [k for k in results if isinstance(k, tuple)]:
        r = best((what, who))
        print(f"| {what:18} | {who:26} | {r['rps']:9.0f} | {r['p99_us'] / 1000:7.2f} | {r['non200']:7d} |")
    ours = best(("download ~100 KB", "ours (nginx, https)"))["rps"]
    ref = best(("download ~100 KB", "bare nginx, https"))["rps"]
    before_dl = best(("download ~100 KB", "before: pypiserver, http"))["rps"]
    page = best(("project page", "ours (nginx, https)"))["rps"]
    before_page = best(("project page", "before: pypiserver, http"))["rps"]
    checks = [
        (f"downloads over https >= {TARGET_RPS} req/s", ours >= TARGET_RPS, f"{ours:.0f}"),
        (f"within {TARGET_RATIO:g}x of a bare nginx with TLS", ref / ours <= TARGET_RATIO, f"{ref / ours:.2f}x"),
        ("project pages no slower than before (pypiserver over http, this run)",
         page >= 0.9 * before_page, f"{page:.0f} vs {before_page:.0f} req/s"),
    ]
    print(f"\nDeploy with the HTTPS front: fresh {results['fresh_deploy_s']:.2f}s, no-op median "
          f"{results['noop_s']:.2f}s")
    print(f"Ratios: downloads ours/before {ours / before_dl:.1f}x; pages ours/before {page / before_page:.2f}x")
    print("Targets (issue):")
    for label, passed, shown in checks:
        print(f"  [{'PASS' if passed else 'FAIL'}] {label}: {shown}")
    return 0 if all(p for _, p, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
