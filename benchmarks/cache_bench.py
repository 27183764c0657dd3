#!/usr/bin/env python3
"""Pull-through cache benchmark (issue 13): real pip and uv installing a 20-package set from
an upstream index directly, then through our server's cache cold (empty: everything is
fetched from the upstream on the way) and warm (the upstream stopped), in one run.

Run from the repository root, as root (the test hosts are systemd-nspawn containers):

    sudo .venv/bin/python benchmarks/cache_bench.py [--rounds 3]

1. Downloads the set (flask, requests, rich, attrs, packaging, python-dateutil and their
   dependencies: index_bench.py's) from this machine's package index.
2. Boots two Debian 12 test hosts. The upstream: a server of ours holding the set (https,
   its static index). Ours: pypi_cache: true, its upstream the other host, reached through
   a relay on this machine (test hosts only reach their own link; testing/relay.py).
3. Per round, for pip and for uv (no client cache): the install straight from the upstream;
   through our server with its cache emptied (cold); and again with the upstream's nginx
   stopped and the relay cut (warm). Rounds interleave; medians are printed with the ratios
   to the direct install.
4. Destroys both hosts.

Traffic only goes to the booted hosts' addresses on their own veth links.
"""
from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import clean_up, preflight, run_guarded, sigterm_interrupts  # noqa: E402
from index_bench import SET, deploy, install  # noqa: E402
from serve_bench import PACKAGES_DIR  # noqa: E402

HOST_PREFIX = "cab"
CACHE_DIR = "/srv/pypi/cache"


def log(msg: str) -> None:
    print(f"[cache-bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def place_set(host, wheels: Path) -> None:
    """The set into the upstream's packages directory, uploaded a year ago."""
    buf = io.BytesIO()
    year_ago = time.time() - 365 * 86400
    with tarfile.open(fileobj=buf, mode="w") as t:
        for f in sorted(wheels.iterdir()):
            info = t.gettarinfo(str(f), arcname=f.name)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = year_ago
            with f.open("rb") as fh:
                t.addfile(info, fh)
    host.exec(f"tar -x -C {PACKAGES_DIR} --no-same-owner && chown -R pypi:pypi {PACKAGES_DIR}",
              input=buf.getvalue(), timeout=300)


def wait_projects(host, n: int) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        got = int(host.exec("ls /srv/pypi/index/simple | grep -vc '^index' || :").stdout or 0)
        if got >= n:
            return
        time.sleep(0.2)
    raise RuntimeError(f"the upstream's static index did not list {n} projects within 120 s")


def empty_cache(srv) -> None:
    srv.exec(f"systemctl stop nginx && rm -rf {CACHE_DIR}/pages/* {CACHE_DIR}/files/* && "
             f"systemctl restart pypiserver-cache && systemctl start nginx", timeout=60)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    from testing import testhost
    from testing.relay import Relay
    if not preflight("cache_bench"):
        return 2
    if not (Path(sys.executable).parent / "uv").exists():
        print("cache_bench: uv is needed beside this Python (pip install -e '.[test]')", file=sys.stderr)
        return 2
    sigterm_interrupts()
    t_start = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="cache-bench."))
    os.environ["PROVISION_CA_DIR"] = str(work / "ca")
    before = {h.name for h in testhost.list_hosts()}
    hosts: list = []
    relays: list = []
    times: dict = {}

    def cleanup():
        for r in relays:
            r.close()
        clean_up(hosts, before, HOST_PREFIX, work, log, t_start)

    with run_guarded(log, cleanup, errors=(testhost.TestHostError, RuntimeError, subprocess.TimeoutExpired)):
        wheels = work / "set"
        p = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
                            "-d", str(wheels), *SET], capture_output=True, text=True, timeout=600)
        if p.returncode != 0:
            raise RuntimeError("cannot download the 20-package set here:\n" + p.stderr[-800:])
        files = list(wheels.iterdir())
        log(f"the set: {len(files)} files, {sum(f.stat().st_size for f in files) / 1e6:.1f} MB")
        hosts = testhost.boot_hosts(2, prefix=HOST_PREFIX)
        up, srv = hosts
        cafile = str(work / "ca" / "ca.crt")
        up_inv = testhost.write_inventory([up], work / "up.yml", known_hosts=str(work / "kh"),
                                          tls_names=[srv.control_address])
        log(f"upstream deployed in {deploy(up_inv, up.name):.1f}s")
        place_set(up, wheels)
        wait_projects(up, len(files))
        relays.append(Relay(srv.control_address, (up.address, 8000)))
        port = relays[-1].port
        inv = testhost.write_inventory(
            [srv], work / "srv.yml", known_hosts=str(work / "kh"), pypi_cache=True,
            pypi_cache_upstream=f"https://{srv.control_address}:{port}/simple/", pypi_cache_upstream_ca=cafile)
        log(f"our server (pypi_cache: true) deployed in {deploy(inv, srv.name):.1f}s")
        # the cache reaches the upstream through a relay: "relayed" takes the same hop
        hop = Relay(srv.control_address, (up.address, 8000))
        relays.insert(0, hop)
        direct, ours = f"https://{up.address}:8000/simple/", f"https://{srv.address}:8000/simple/"
        relayed = f"https://{srv.control_address}:{hop.port}/simple/"
        for r in range(args.rounds):
            for tool in ("pip", "uv"):
                took, got = install(tool, direct, cafile, work)
                times.setdefault((tool, "direct"), []).append(took)
                took, _ = install(tool, relayed, cafile, work)
                times.setdefault((tool, "relayed"), []).append(took)
                empty_cache(srv)
                took, got_cold = install(tool, ours, cafile, work)
                times.setdefault((tool, "cold"), []).append(took)
                up.exec("systemctl stop nginx")
                relays[-1].close()
                took, got_warm = install(tool, ours, cafile, work)
                times.setdefault((tool, "warm"), []).append(took)
                up.exec("systemctl start nginx")
                relays.append(Relay(srv.control_address, (up.address, 8000), port=port))
                log(f"round {r + 1} {tool}: direct {times[(tool, 'direct')][-1]:.2f}s, "
                    f"relayed {times[(tool, 'relayed')][-1]:.2f}s, "
                    f"cold {times[(tool, 'cold')][-1]:.2f}s, warm (upstream stopped) "
                    f"{times[(tool, 'warm')][-1]:.2f}s ({got}; {got_cold}; {got_warm})")
        status = subprocess.run([sys.executable, "-m", "invoke", "status", "--inventory", str(inv)],
                                capture_output=True, text=True, timeout=120)
        cache_line = status.stdout.strip().splitlines()[-1] if status.stdout.strip() else status.stderr[-300:]

    print(f"\nInstalls of the 20-package set ({len(files)} files), median of {args.rounds} rounds, "
          f"no client cache; cold: the server's cache emptied first; warm: the upstream stopped")
    print("(relayed: the upstream through the same relay the cache's own fetches take here)")
    print(f"| {'client':6} | {'direct':>8} | {'relayed':>8} | {'cold':>8} | {'warm':>8} | {'cold/direct':>11} "
          f"| {'cold/relayed':>12} | {'warm/direct':>11} |")
    print(f"|{'-' * 8}|{'-' * 9}:|{'-' * 9}:|{'-' * 9}:|{'-' * 9}:|{'-' * 12}:|{'-' * 13}:|{'-' * 12}:|")
    for tool in ("pip", "uv"):
        d, rl, c, w = (statistics.median(times[(tool, k)]) for k in ("direct", "relayed", "cold", "warm"))
        print(f"| {tool:6} | {d:7.2f}s | {rl:7.2f}s | {c:7.2f}s | {w:7.2f}s | {c / d:10.2f}x | {c / rl:11.2f}x "
              f"| {w / d:10.2f}x |")
    print(f"\nstatus after the run: {cache_line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
