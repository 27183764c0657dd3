#!/usr/bin/env python3
"""Serving-speed benchmark: our deployed pypiserver vs the how-to's default command, same host.

Run from the repository root, as root (the test host is a systemd-nspawn container):

    sudo .venv/bin/python benchmarks/serve_bench.py [--files 3000] [--clients 16] [--seconds 10]

What it does, in one run (details in benchmarks/README.md):

1. Boots one fresh Debian 12 test host (``srvN``, 10.213.N.2) and deploys our service on it
   with ``.venv/bin/invoke deploy --inventory INV --host NAME`` (offline, port 8000).
2. Fills /srv/pypi/packages (pypi:pypi) with --files distribution files over --files/10
   projects, built here and pushed in one tar stream through ``exec()``: small random-bytes
   wheels/sdists, except one project (``proj150`` by default) whose 10 files are real
   ~100 KB wheels. Waits until our service lists every file.
3. Starts the how-to's default configuration on the same host, from the same venv, on port
   8001 (``systemd-run --unit howto-default ... --server wsgiref --backend simple-dir``:
   explicit flags, because our venv has waitress and watchdog installed, which ``auto``
   would pick up) and opens 8001 in firewalld (runtime only; removed at the end).
4. Load: for each URL (/simple/, /simple/<big project>/, a ~100 KB wheel download) and each
   server, interleaved (ours, default, ours, default ... with --rounds), --clients
   concurrent clients for --seconds, capped at --max-requests. The load generator is this
   file re-run in a separate process (threads, http.client keep-alive; latency includes
   connecting, i.e. what a client sees). If `wrk` is installed, the same matrix is run with
   wrk as a cross-check (its latency excludes connect time; see the README).
5. ``pip download`` of the big project: median of 5 runs per server, interleaved.
6. Freshness on our service: warm the cache, copy files into the directory (a new project,
   a new version of the warmed project) and upload one with twine; time until listed.
7. Prints the tables and the issue's targets with PASS/FAIL; destroys the host in a
   ``finally`` (also on Ctrl-C / SIGTERM). Exit status 0 when every target passes.

Traffic only ever goes to the booted test host's address on its own veth.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import http.client
import io
import itertools
import json
import math
import os
import random
import re
import resource
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from common import clean_up, preflight, run_guarded, sigterm_interrupts  # noqa: E402

HOST_PREFIX = "srv"
OUR_PORT = 8000
DEFAULT_PORT = 8001
DEFAULT_UNIT = "howto-default"
OUR_UNIT = "pypiserver"
PACKAGES_DIR = "/srv/pypi/packages"
HTPASSWD = "/etc/pypiserver/htpasswd"
VENV = "/opt/pypiserver/venv"
FILES_PER_PROJECT = 10
BIG_SIZE = 100 * 1024
USER_AGENT = "serve-bench/1"
DEFAULT_CMD = (f"{VENV}/bin/pypi-server run -p {DEFAULT_PORT} -P {HTPASSWD} -a update "
               f"--server wsgiref --backend simple-dir {PACKAGES_DIR}")
TARGET_RATIO = 30.0
TARGET_P99_MS = 150.0
TARGET_FRESH_S = 2.0


def log(msg: str) -> None:
    print(f"[serve-bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def pct(samples: list[float], p: float, failed: int = 0) -> float | None:
    """Nearest-rank percentile (None when empty); `failed` requests count as infinitely slow."""
    if not samples and not failed:
        return None
    s = sorted(samples) + [math.inf] * failed
    k = max(0, min(len(s) - 1, math.ceil(p / 100.0 * len(s)) - 1))
    return s[k]


# =========================================================================== load generator
# Runs in its own process (``serve_bench.py --_loadgen JSON``) so that its GIL and CPU use
# are separate from the orchestrating process; prints one JSON object on stdout.

def loadgen(spec: dict) -> dict:
    host, port, path = spec["host"], spec["port"], spec["path"]
    clients, seconds, cap, timeout = spec["clients"], spec["seconds"], spec["max_requests"], spec["timeout"]
    issued = itertools.count()            # next() is atomic under the GIL: a global request cap
    window: dict[str, float] = {}
    results = [None] * clients

    def open_window() -> None:            # run once, when every thread is ready
        window["start"] = time.perf_counter()
        window["deadline"] = window["start"] + seconds
    barrier = threading.Barrier(clients + 1, action=open_window)

    def worker(i: int) -> None:
        lat: list[float] = []              # seconds, 200 responses only
        in_window = 0
        last = 0.0                         # completion time of the last in-window response
        err = {"refused": 0, "timeout": 0, "reset": 0, "other": 0}
        non200: dict[str, int] = {}
        nbytes = 0
        conns = 0
        conn = None
        barrier.wait()
        deadline = window["deadline"]
        while time.perf_counter() < deadline and next(issued) < cap:
            t0 = time.perf_counter()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(host, port, timeout=timeout)
                    conns += 1
                conn.request("GET", path, headers={"User-Agent": USER_AGENT})
                resp = conn.getresponse()
                body = resp.read()
                t1 = time.perf_counter()
                if resp.status == 200:
                    lat.append(t1 - t0)
                    nbytes += len(body)
                    if t1 <= deadline:
                        in_window += 1
                        last = t1
                else:
                    non200[str(resp.status)] = non200.get(str(resp.status), 0) + 1
                if resp.will_close:
                    conn.close()
                    conn = None
                continue
            except ConnectionRefusedError:
                err["refused"] += 1
            except (socket.timeout, TimeoutError):
                err["timeout"] += 1
            except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected):
                err["reset"] += 1
            except (OSError, http.client.HTTPException):
                err["other"] += 1
            if conn is not None:
                conn.close()
                conn = None
            time.sleep(0.01)               # no busy loop against a refusing port
        if conn is not None:
            conn.close()
        results[i] = {"lat": lat, "in_window": in_window, "err": err, "non200": non200,
                      "bytes": nbytes, "conns": conns, "last": last}

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    start = window["start"]
    # hard bound: the window, plus one request's worth of connect + read timeouts
    hard = start + seconds + 3 * timeout + 5
    for t in threads:
        t.join(max(0.0, hard - time.perf_counter()))
    elapsed = time.perf_counter() - start
    done = [r for r in results if r is not None]
    lat = sorted(x for r in done for x in r["lat"])
    err = {k: sum(r["err"][k] for r in done) for k in ("refused", "timeout", "reset", "other")}
    non200: dict[str, int] = {}
    for r in done:
        for k, v in r["non200"].items():
            non200[k] = non200.get(k, 0) + v
    capped = next(issued) > cap
    last = max((r["last"] for r in done), default=start)
    return {
        # when the request cap ended the run early, the rate is over the time actually used
        "ok": len(lat), "in_window": sum(r["in_window"] for r in done),
        "seconds": (last - start) if capped and last > start else seconds, "capped": capped,
        "elapsed": elapsed, "lat": lat, "err": err, "non200": non200,
        "bytes": sum(r["bytes"] for r in done), "conns": sum(r["conns"] for r in done),
        "stuck_threads": clients - len(done),
        "starved": sum(1 for r in done if not r["lat"]),   # clients that never got a 200
    }


def run_loadgen(host: str, port: int, path: str, args) -> dict:
    spec = {"host": host, "port": port, "path": path, "clients": args.clients,
            "seconds": args.seconds, "max_requests": args.max_requests, "timeout": args.timeout}
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--_loadgen", json.dumps(spec)],
                       capture_output=True, text=True, stdin=subprocess.DEVNULL,
                       timeout=args.seconds + 3 * args.timeout + 60)
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        raise RuntimeError(f"load generator failed: {(p.stderr or p.stdout).strip().splitlines()[-1:]}")
    r = json.loads(p.stdout)
    r["client_cpu"] = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    return r


# =========================================================================== wrk (cross-check)

WRK_LUA = r"""
-- serve_bench: count non-200 responses exactly, stop each thread after a request cap,
-- print the figures on BENCH lines (latency in microseconds).
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) n = 0; bad = 0; cap = tonumber(args[1]) or 100000 end
function response(status, headers, body)
  n = n + 1
  if status ~= 200 then bad = bad + 1 end
  if n >= cap then wrk.thread:stop() end
end
function done(summary, latency, requests)
  local b = 0
  for _, t in ipairs(threads) do b = b + t:get("bad") end
  local e = summary.errors
  io.write(string.format("BENCH requests=%d duration_us=%d bytes=%d non200=%d connect=%d read=%d write=%d timeout=%d p50_us=%d p99_us=%d max_us=%d\n",
    summary.requests, summary.duration, summary.bytes, b, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""


def run_wrk(wrk: str, lua: Path, host: str, port: int, path: str, args) -> dict | None:
    threads = 2
    cap = max(1, args.max_requests // threads)
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run([wrk, f"-t{threads}", f"-c{args.clients}", f"-d{args.seconds}s",
                        "--timeout", f"{int(args.timeout)}s", "-s", str(lua),
                        f"http://{host}:{port}{path}", "--", str(cap)],
                       capture_output=True, text=True, stdin=subprocess.DEVNULL,
                       timeout=args.seconds + 3 * args.timeout + 60)
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    m = re.search(r"^BENCH (.*)$", p.stdout, re.M)
    if p.returncode != 0 or not m:
        log(f"  wrk failed (rc {p.returncode}): {(p.stderr or p.stdout).strip()[-200:]}")
        return None
    d = {k: int(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
    d["client_cpu"] = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    if d["requests"] >= cap * threads:
        log("  note: wrk hit the request cap; its req/s is understated (duration is the full window)")
    return d


# =========================================================================== distributions

def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def make_wheel(name: str, version: str, payload: bytes = b"") -> tuple[str, bytes]:
    """A valid pure-Python wheel (pip and twine accept it); payload stored uncompressed."""
    mod = name.replace("-", "_")
    dist = f"{mod}-{version}"
    files = {
        f"{mod}/__init__.py": f"VERSION = {version!r}\n".encode(),
        f"{dist}.dist-info/METADATA": (f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                                       f"Summary: serve_bench test package\n").encode(),
        f"{dist}.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: serve_bench\nRoot-Is-Purelib: true\n"
                                   b"Tag: py3-none-any\n",
    }
    if payload:
        files[f"{mod}/data.bin"] = payload
    record = [_record_line(p, d) for p, d in files.items()] + [f"{dist}.dist-info/RECORD,,"]
    files[f"{dist}.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for p, d in files.items():
            zf.writestr(zipfile.ZipInfo(p, date_time=(2024, 1, 1, 0, 0, 0)), d,
                        compress_type=zipfile.ZIP_STORED if p.endswith(".bin") else zipfile.ZIP_DEFLATED)
    return f"{dist}-py3-none-any.whl", buf.getvalue()


def build_index(n_files: int, big: str, rng: random.Random) -> tuple[bytes, dict]:
    """One tar stream of n_files distributions over n_files/10 projects."""
    n_proj = max(1, n_files // FILES_PER_PROJECT)
    tar_buf = io.BytesIO()
    info = {"projects": n_proj, "files": 0, "bytes": 0, "big_files": [], "names": set()}
    with tarfile.open(fileobj=tar_buf, mode="w") as tar:
        def add(fname: str, data: bytes) -> None:
            ti = tarfile.TarInfo(fname)
            ti.size, ti.mode, ti.mtime = len(data), 0o644, int(time.time())
            tar.addfile(ti, io.BytesIO(data))
            info["files"] += 1
            info["bytes"] += len(data)

        for i in range(n_proj):
            proj = f"proj{i:03d}"
            info["names"].add(proj)
            per = FILES_PER_PROJECT if i < n_proj - 1 else n_files - FILES_PER_PROJECT * (n_proj - 1)
            for n in range(per):
                if proj == big:
                    fname, data = make_wheel(proj, f"1.0.{n}", rng.randbytes(BIG_SIZE))
                    info["big_files"].append(fname)
                elif n % 2 == 0:
                    fname, data = f"{proj}-1.0.{n // 2}-py3-none-any.whl", rng.randbytes(rng.randint(200, 2000))
                else:
                    fname, data = f"{proj}-1.0.{n // 2}.tar.gz", rng.randbytes(rng.randint(200, 2000))
                add(fname, data)
    return tar_buf.getvalue(), info


# =========================================================================== HTTP helpers

def http_get(host: str, port: int, path: str, timeout: float = 10) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"User-Agent": USER_AGENT})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def wait_http(host: str, port: int, seconds: float) -> int | str:
    deadline = time.monotonic() + seconds
    last: int | str = "no answer"
    while time.monotonic() < deadline:
        try:
            last = http_get(host, port, "/", timeout=3)[0]
            if last == 200:
                return 200
        except OSError as exc:
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(0.3)
    return last


RE_PROJ_LINK = re.compile(r'href="([^"/]+)/"')
RE_FILE_LINK = re.compile(r'href="[^"]*packages/([^"#/]+)')


def listed_projects(body: bytes) -> set[str]:
    return set(RE_PROJ_LINK.findall(body.decode(errors="replace")))


def listed_files(body: bytes) -> set[str]:
    return set(RE_FILE_LINK.findall(body.decode(errors="replace")))


def time_until(pred, seconds: float, interval: float = 0.05) -> float | None:
    """Seconds until pred() is true (polled every interval), None if it never was."""
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while True:
        try:
            if pred():
                return time.perf_counter() - t0
        except (OSError, http.client.HTTPException):
            pass
        if time.perf_counter() >= deadline:
            return None
        time.sleep(interval)


def clean_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.lower().endswith("_proxy") and not k.startswith(("PIP_", "TWINE_"))}
    env.update(extra)
    return env


# =========================================================================== host side

def cpu_seconds(h, unit: str) -> float | None:
    """CPU time (user + system, all threads) of the unit's main process so far, in seconds."""
    out = h.exec(f'pid=$(systemctl show -p MainPID --value {unit}); [ "${{pid:-0}}" -gt 0 ] && cat /proc/$pid/stat',
                 check=False).stdout.decode()
    if ")" not in out:
        return None
    fields = out.rsplit(")", 1)[1].split()       # fields[0] is stat(5) field 3 (state)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")   # utime, stime


def deploy(h, work: Path) -> None:
    from testing import testhost
    # tls: false: this benchmark measures pypiserver's own serving (the HTTPS front, nginx,
    # is measured by https_bench.py)
    inv = testhost.write_inventory([h], work / "inventory.yml", known_hosts=str(work / "known_hosts"),
                                   tls=False)
    argv = [str(REPO / ".venv/bin/invoke"), "deploy", "--inventory", str(inv), "--host", h.name]
    log(f"deploy: {' '.join(argv[1:])} ...")
    t0 = time.monotonic()
    p = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                       env=dict(os.environ, PYTHONUNBUFFERED="1"), timeout=900)
    out = p.stdout + p.stderr
    m = re.search(rf"^{re.escape(h.name)} ok=\d+ changed=\d+ failed=(\d+)(?: skipped=\d+)?\s*$", out, re.M)
    if p.returncode != 0 or not m or m.group(1) != "0":
        tail = "\n    ".join(out.strip().splitlines()[-15:])
        raise RuntimeError(f"deploy failed (rc {p.returncode}); output tail:\n    {tail}")
    log(f"  deployed in {time.monotonic() - t0:.1f}s [{m.group(0).strip()}]")


# =========================================================================== the benchmark

class Bench:
    def __init__(self, args, h, work: Path):
        self.args, self.h, self.work = args, h, work
        self.addr = h.address
        self.big = args.big_project
        self.res: dict = {"load": {}, "wrk": {}, "single": {}, "pip": {}, "fresh": {}, "notes": []}
        self.firewall_opened = False
        self.default_started = False

    # -- 2. fill -----------------------------------------------------------------
    def fill(self) -> None:
        rng = random.Random(20240601)
        t0 = time.monotonic()
        tar, info = build_index(self.args.files, self.big, rng)
        if not info["big_files"]:
            raise RuntimeError(f"--big-project {self.big} is not among proj000..proj{info['projects'] - 1:03d}")
        self.info = info
        self.big_file = info["big_files"][-1]
        self.big_version = self.big_file.split("-")[1]
        self.big_size = BIG_SIZE
        log(f"fill: {info['files']} files over {info['projects']} projects "
            f"({info['bytes'] / 1e6:.1f} MB; {self.big}: {len(info['big_files'])} real wheels of ~100 KB), "
            f"one tar stream of {len(tar) / 1e6:.1f} MB ...")
        self.h.exec(f"tar -x -C {PACKAGES_DIR} && chown -R pypi:pypi {PACKAGES_DIR}", input=tar, timeout=300)
        n = int(self.h.exec(f"find {PACKAGES_DIR} -maxdepth 1 -type f | wc -l").stdout)
        self.big_size = int(self.h.exec(f"stat -c %s {PACKAGES_DIR}/{self.big_file}").stdout)
        log(f"  on disk: {n} files (pushed in {time.monotonic() - t0:.1f}s); waiting for :{OUR_PORT} to list them ...")

        def all_projects() -> bool:
            return listed_projects(http_get(self.addr, OUR_PORT, "/simple/")[2]) >= info["names"]
        dt = time_until(all_projects, 60, 0.2)
        if dt is None:
            raise RuntimeError(f"our service did not list all {info['projects']} projects within 60 s")
        total = 0
        for name in sorted(info["names"]):
            st, _, body = http_get(self.addr, OUR_PORT, f"/simple/{name}/")
            total += len(listed_files(body)) if st == 200 else 0
        log(f"  :{OUR_PORT} lists {info['projects']} projects after {dt:.2f}s and {total} files on their pages")
        if total != info["files"]:
            self.res["notes"].append(f"our project pages list {total} files, {info['files']} were pushed")
        self.res["listed"] = total

    # -- 3. the how-to's default on :8001 ------------------------------------------
    def start_default(self) -> None:
        log("default: the how-to's `pypi-server -p 8000 -P .htpasswd ./packages`, in a venv without "
            "waitress/watchdog, resolves to --server wsgiref and no cache. Our venv has waitress and "
            "watchdog installed (auto would pick them), so it is reproduced with explicit flags:")
        log(f"  systemd-run --unit {DEFAULT_UNIT} --uid=pypi --gid=pypi {DEFAULT_CMD}")
        self.h.exec(f"systemd-run --unit {DEFAULT_UNIT} --uid=pypi --gid=pypi --property=CPUAccounting=yes "
                    f"{DEFAULT_CMD}")
        self.default_started = True
        self.h.exec(f"firewall-cmd --add-port={DEFAULT_PORT}/tcp")
        self.firewall_opened = True
        st = wait_http(self.addr, DEFAULT_PORT, 30)
        if st != 200:
            j = self.h.exec(f"journalctl -q -u {DEFAULT_UNIT} -n 5 -o cat", check=False).stdout.decode()
            raise RuntimeError(f"default server on :{DEFAULT_PORT} does not answer ({st}): {j.strip()}")
        srv = {p: http_get(self.addr, p, "/")[1].get("server", "?") for p in (OUR_PORT, DEFAULT_PORT)}
        body = http_get(self.addr, DEFAULT_PORT, "/simple/", timeout=30)[2]
        big = http_get(self.addr, DEFAULT_PORT, f"/simple/{self.big}/", timeout=30)[2]
        log(f"  Server headers: ours :{OUR_PORT} '{srv[OUR_PORT]}', default :{DEFAULT_PORT} '{srv[DEFAULT_PORT]}'; "
            f"default lists {len(listed_projects(body))} projects, {len(listed_files(big))} files of {self.big}")
        self.res["server_headers"] = srv
        unit = self.h.exec(f"systemctl show -p ExecStart --value {OUR_UNIT}", check=False).stdout.decode()
        m = re.search(r"argv\[\]=([^;]*)", unit)
        if m:
            log(f"  ours: {m.group(1).strip()}")
        vers = self.h.exec(f"ls -d {VENV}/lib/python3*/site-packages/*.dist-info", check=False).stdout.decode()
        keep = ("pypiserver-", "waitress-", "watchdog-", "bottle-")
        self.versions = sorted(Path(v).name[:-len(".dist-info")] for v in vers.split()
                               if Path(v).name.lower().startswith(keep))
        log(f"  venv {VENV}: {', '.join(self.versions) or '?'}")

    # -- 4. load -----------------------------------------------------------------
    def urls(self) -> list[tuple[str, str]]:
        return [("/simple/", "/simple/"),
                ("/simple/<project>/", f"/simple/{self.big}/"),
                ("download ~100 KB", f"/packages/{self.big_file}")]

    def single_client(self) -> None:
        """Sequential requests, one client: the service time without any queueing."""
        n = self.args.single
        for label, path in self.urls():
            for name, port in (("ours", OUR_PORT), ("default", DEFAULT_PORT)):
                lat = []
                for _ in range(n):
                    t0 = time.perf_counter()
                    st, _, _ = http_get(self.addr, port, path, timeout=30)
                    if st == 200:
                        lat.append(time.perf_counter() - t0)
                self.res["single"][(label, name)] = statistics.median(lat) if lat else None

    def load(self) -> None:
        a = self.args
        log(f"load: {a.clients} clients x {a.seconds}s per run (cap {a.max_requests} requests, "
            f"timeout {a.timeout}s), {a.rounds} round(s), servers interleaved per URL. The load "
            f"generator runs on the same 2 cores as the server.")
        wrk = None if a.no_wrk else shutil.which("wrk")
        lua = self.work / "bench.lua"
        lua.write_text(WRK_LUA)
        if not wrk and not a.no_wrk:
            self.res["notes"].append("wrk not installed (apt-get install -y wrk): no cross-check table")
        for label, path in self.urls():
            for rnd in range(a.rounds):
                for name, port, unit in (("ours", OUR_PORT, OUR_UNIT), ("default", DEFAULT_PORT, DEFAULT_UNIT)):
                    for _ in range(3):          # warm-up: page cache, imports, our listing cache
                        http_get(self.addr, port, path, timeout=30)
                    c0 = cpu_seconds(self.h, unit)
                    r = run_loadgen(self.addr, port, path, a)
                    c1 = cpu_seconds(self.h, unit)
                    r["server_cpu"] = None if c0 is None or c1 is None else c1 - c0
                    self.res["load"].setdefault((label, name), []).append(r)
                    errs = sum(r["err"].values()) + sum(r["non200"].values())
                    log(f"  {label:20} {name:8} {r['in_window'] / r['seconds']:8.1f} req/s  "
                        f"p50 {fmt_ms(pct(r['lat'], 50, errs))}  p99 {fmt_ms(pct(r['lat'], 99, errs))}  errors {errs} "
                        f"{fmt_err(r)}  conns {r['conns']}  starved clients {r.get('starved', 0)}  cpu server {fmt_s(r['server_cpu'])} "
                        f"client {r['client_cpu']:.1f}s")
                    time.sleep(a.settle)
        if not wrk:
            return
        log("wrk cross-check (same matrix; wrk's latency starts after the connection is made):")
        for label, path in self.urls():
            for rnd in range(a.rounds):
                for name, port, unit in (("ours", OUR_PORT, OUR_UNIT), ("default", DEFAULT_PORT, DEFAULT_UNIT)):
                    c0 = cpu_seconds(self.h, unit)
                    d = run_wrk(wrk, lua, self.addr, port, path, a)
                    c1 = cpu_seconds(self.h, unit)
                    if d is None:
                        continue
                    d["server_cpu"] = None if c0 is None or c1 is None else c1 - c0
                    self.res["wrk"].setdefault((label, name), []).append(d)
                    log(f"  {label:20} {name:8} {d['requests'] / (d['duration_us'] / 1e6):8.1f} req/s  "
                        f"p50 {fmt_ms(d['p50_us'] / 1e6)}  p99 {fmt_ms(d['p99_us'] / 1e6)}  "
                        f"non200 {d['non200']} connect {d['connect']} read {d['read']} write {d['write']} "
                        f"timeout {d['timeout']}  cpu server {fmt_s(d['server_cpu'])} client {d['client_cpu']:.1f}s")
                    time.sleep(a.settle)

    # -- 5. pip download ------------------------------------------------------------
    def pip_download(self) -> None:
        py = REPO / ".venv/bin/python"
        py = py if py.exists() else Path(sys.executable)
        spec = f"{self.big}=={self.big_version}"
        log(f"pip download --no-deps --no-cache-dir {spec}: {self.args.pip_runs} runs per server, interleaved ...")
        env = clean_env(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
        for i in range(self.args.pip_runs):
            for name, port in (("ours", OUR_PORT), ("default", DEFAULT_PORT)):
                d = Path(tempfile.mkdtemp(prefix="pipdl.", dir=self.work))
                t0 = time.perf_counter()
                p = subprocess.run([str(py), "-m", "pip", "download", "-q", "--no-deps", "--no-cache-dir",
                                    "-d", str(d), "--index-url", f"http://{self.addr}:{port}/simple/",
                                    "--trusted-host", self.addr, spec],
                                   capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=120)
                dt = time.perf_counter() - t0
                ok = p.returncode == 0 and (d / self.big_file).is_file()
                self.res["pip"].setdefault(name, []).append(dt if ok else None)
                if not ok:
                    tail = (p.stderr or p.stdout).strip().splitlines()[-1:]
                    log(f"  pip download from {name} failed (rc {p.returncode}): {tail}")
                shutil.rmtree(d, ignore_errors=True)
        for name, xs in self.res["pip"].items():
            good = [x for x in xs if x is not None]
            log(f"  {name:8} " + " ".join(f"{x:.2f}" if x is not None else "FAIL" for x in xs)
                + (f"  median {statistics.median(good):.2f}s" if good else ""))

    # -- 6. freshness ---------------------------------------------------------------
    def freshness(self) -> None:
        a, fr = self.args, self.res["fresh"]
        log(f"freshness on :{OUR_PORT}: warm the cache, then copy / upload, poll every 50 ms up to {a.fresh_wait}s ...")

        def warm() -> None:
            http_get(self.addr, OUR_PORT, "/simple/")
            http_get(self.addr, OUR_PORT, f"/simple/{self.big}/")

        def on_simple(project: str):
            return lambda: project in listed_projects(http_get(self.addr, OUR_PORT, "/simple/", timeout=5)[2])

        def on_page(project: str, fname: str):
            return lambda: fname in listed_files(http_get(self.addr, OUR_PORT, f"/simple/{project}/", timeout=5)[2])

        # (a) a new project's file copied in; (b) a new version of the warmed big project
        copies = [("copy: new project, on /simple/", "benchcopy", "1.0.0", "/simple/"),
                  (f"copy: new version of {self.big}, on its page", self.big, "9.9.9", "page")]
        for label, proj, ver, where in copies:
            fname, data = make_wheel(proj, ver)
            self.h.exec(f"cat > /root/{fname}", input=data)              # staged outside the index
            warm()
            t0 = time.perf_counter()
            self.h.exec(f"cp /root/{fname} {PACKAGES_DIR}/ && chown pypi:pypi {PACKAGES_DIR}/{fname}")
            t_exec = time.perf_counter() - t0
            pred = on_simple(proj) if where == "/simple/" else on_page(proj, fname)
            fr[label] = {"seconds": time_until(pred, a.fresh_wait), "exec": t_exec}
            log(f"  {label}: {fmt_fresh(fr[label]['seconds'])} after the copy returned (cp via exec took {t_exec * 1000:.0f} ms)")

        # (c) twine upload with an htpasswd account written by the project's own code
        from provision import htpasswd
        user, password = "benchuser", secrets.token_urlsafe(18)
        current = self.h.exec(f"cat {HTPASSWD}").stdout.decode()
        text = htpasswd.render({**htpasswd.parse(current), user: htpasswd.hash_password(password)})
        self.h.exec(f"cat > {HTPASSWD}.new && chown root:pypi {HTPASSWD}.new && chmod 0640 {HTPASSWD}.new "
                    f"&& mv {HTPASSWD}.new {HTPASSWD}", input=text.encode())
        fname, data = make_wheel("benchupload", "1.0.0")
        whl = self.work / fname
        whl.write_bytes(data)
        warm()
        env = clean_env(TWINE_USERNAME=user, TWINE_PASSWORD=password)
        t0 = time.perf_counter()
        p = subprocess.run([str(REPO / ".venv/bin/python"), "-m", "twine", "upload", "--non-interactive",
                            "--disable-progress-bar", "--repository-url", f"http://{self.addr}:{OUR_PORT}/",
                            str(whl)], capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL,
                           timeout=120)
        t_up = time.perf_counter() - t0
        label = "upload (twine): new project, on /simple/"
        if p.returncode != 0:
            tail = (p.stderr or p.stdout).replace(password, "***").strip().splitlines()[-1:]
            log(f"  twine upload failed (rc {p.returncode}): {tail}")
            fr[label] = {"seconds": None, "exec": t_up, "failed": True}
        else:
            fr[label] = {"seconds": time_until(on_simple("benchupload"), a.fresh_wait), "exec": t_up}
            page = time_until(on_page("benchupload", fname), a.fresh_wait)
            fr["upload (twine): on its project page"] = {"seconds": page, "exec": t_up}
        log(f"  {label}: {fmt_fresh(fr[label]['seconds'])} after twine returned (twine took {t_up:.2f}s)")

    # -- 7. report --------------------------------------------------------------------
    def report(self) -> bool:
        a, res = self.args, self.res
        print()
        print(f"== serving speed: {self.info['files']} files / {self.info['projects']} projects, "
              f"{a.clients} clients, {a.seconds}s per run x {a.rounds} round(s), host {self.h.name} ({self.addr})")
        print(f"   server venv (both): {', '.join(getattr(self, 'versions', []))}")
        print(f"   ours    :{OUR_PORT}  our deployed unit (pypi-server run --server auto -> waitress, --backend cached-dir)")
        print(f"   default :{DEFAULT_PORT}  the how-to's default, reproduced as: {DEFAULT_CMD}")
        print("   (explicit --server wsgiref --backend simple-dir because our venv has waitress and watchdog,")
        print("    which `auto` would pick; a how-to venv without them resolves to exactly this)")
        print(f"   Load generator: a separate Python process, {a.clients} threads with http.client keep-alive;")
        print("   latency = connect (when the server closes connections) + request + full body. A request with")
        print(f"   no answer within {a.timeout:.0f} s is a timeout error; errors count as infinitely slow in p50/p99")
        print("   ('failed' = that percentile falls among the failed requests).")
        print("   It shares the machine's 2 cores with the server (and the server's container).")
        print()
        hdr = f"{'URL':22}| {'ours req/s':>10} {'p50':>8} {'p99':>8} {'err':>5} | {'default req/s':>13} {'p50':>8} {'p99':>8} {'err':>5} | {'ratio':>7}"
        print(hdr)
        print("-" * len(hdr))
        summary = {}
        for label, _ in self.urls():
            row = {}
            for name in ("ours", "default"):
                runs = res["load"].get((label, name), [])
                lat = [x for r in runs for x in r["lat"]]
                rate = (sum(r["in_window"] for r in runs) / sum(r["seconds"] for r in runs)) if runs else None
                errs = sum(sum(r["err"].values()) + sum(r["non200"].values()) for r in runs)
                row[name] = {"rate": rate, "p50": pct(lat, 50, errs), "p99": pct(lat, 99, errs), "err": errs,
                             "p99_ok": pct(lat, 99), "runs": runs}
            ratio = (row["ours"]["rate"] / row["default"]["rate"]
                     if row["ours"]["rate"] and row["default"]["rate"] else None)
            summary[label] = row | {"ratio": ratio}
            o, d = row["ours"], row["default"]
            print(f"{label:22}| {fmt_rate(o['rate']):>10} {fmt_ms(o['p50']):>8} {fmt_ms(o['p99']):>8} {o['err']:>5} "
                  f"| {fmt_rate(d['rate']):>13} {fmt_ms(d['p50']):>8} {fmt_ms(d['p99']):>8} {d['err']:>5} "
                  f"| {fmt_ratio(ratio):>7}")
        print()
        print("errors by kind; CPU used during each run in cores (server = the unit's main process, all threads;")
        print("client = the load generator process; the machine has 2); the median time of one request when")
        print("a single client asks sequentially (service time, no queueing); new TCP connections opened:")
        for label, _ in self.urls():
            for name in ("ours", "default"):
                runs = res["load"].get((label, name), [])
                if not runs:
                    continue
                r0 = runs[0]
                err = {k: sum(r["err"][k] for r in runs) for k in r0["err"]}
                non200: dict[str, int] = {}
                for r in runs:
                    for k, v in r["non200"].items():
                        non200[k] = non200.get(k, 0) + v
                secs = sum(r["elapsed"] for r in runs)
                scpu = [r["server_cpu"] for r in runs if r["server_cpu"] is not None]
                ccpu = sum(r["client_cpu"] for r in runs)
                single = res["single"].get((label, name))
                answered = pct([x for r in runs for x in r["lat"]], 99)
                srv = f"server {sum(scpu) / secs:.2f} cores" if scpu else "server n/a"
                print(f"  {label:20} {name:8} refused {err['refused']} timeout {err['timeout']} "
                      f"reset {err['reset']} other {err['other']} non-200 {non200 or 0} | {srv}", end="")
                print(f", client {ccpu / secs:.2f} cores | p99 of answered {fmt_ms(answered)}"
                      f" | 1 client alone: {fmt_ms(single)}"
                      f" | new connections {sum(r['conns'] for r in runs)}"
                      f" | clients with no answer at all {max(r.get('starved', 0) for r in runs)}/{a.clients}")
        if res["wrk"]:
            print()
            print("cross-check with wrk (C, 2 threads, same clients and seconds; a much cheaper client). Its latency")
            print("starts once the client side sees the connection established, so time lost to SYNs dropped while")
            print("the default's listen backlog (5) is full is not counted; req/s is comparable. err = non-200 +")
            print("socket errors; p50/p99 = the worst run's:")
            print(hdr)
            print("-" * len(hdr))
            for label, _ in self.urls():
                cells = []
                rates = {}
                for name in ("ours", "default"):
                    ds = res["wrk"].get((label, name), [])
                    if not ds:
                        cells.append(f"{'n/a':>10} {'':>8} {'':>8} {'':>5}")
                        continue
                    req = sum(d["requests"] - d["non200"] for d in ds)
                    dur = sum(d["duration_us"] for d in ds) / 1e6
                    rates[name] = req / dur
                    err = sum(d["non200"] + d["connect"] + d["read"] + d["write"] + d["timeout"] for d in ds)
                    p50 = max(d["p50_us"] for d in ds) / 1e6
                    p99 = max(d["p99_us"] for d in ds) / 1e6
                    w = 10 if name == "ours" else 13
                    cells.append(f"{fmt_rate(rates[name]):>{w}} {fmt_ms(p50):>8} {fmt_ms(p99):>8} {err:>5}")
                ratio = rates["ours"] / rates["default"] if rates.get("ours") and rates.get("default") else None
                print(f"{label:22}| {cells[0]} | {cells[1]} | {fmt_ratio(ratio):>7}")
                summary[label]["wrk_ratio"] = ratio
        print()
        pip = {}
        for name in ("ours", "default"):
            good = [x for x in res["pip"].get(name, []) if x is not None]
            pip[name] = statistics.median(good) if good else None
        print(f"pip download --no-deps --no-cache-dir {self.big}=={self.big_version} "
              f"({self.big_size / 1024:.0f} KB; whole pip process), median of {a.pip_runs}: "
              f"ours {fmt_s(pip['ours'])}, default {fmt_s(pip['default'])}")
        print()
        print(f"freshness on ours (cache warmed with GET /simple/ and /simple/{self.big}/ first; "
              f"polled every 50 ms up to {a.fresh_wait}s):")
        for label, f in res["fresh"].items():
            print(f"  {label:48} {fmt_fresh(f['seconds'])}")
        for n in res["notes"]:
            print(f"  note: {n}")
        print()
        print("targets (issue 3, 'Serving speed, proven'):")
        page = summary["/simple/<project>/"]
        fr = res["fresh"]
        copied = [f["seconds"] for k, f in fr.items() if k.startswith("copy")]
        uploaded = [f["seconds"] for k, f in fr.items() if k.startswith("upload")]
        checks = [
            (f"project page >= {TARGET_RATIO:.0f}x the default (req/s)",
             None if page["ratio"] is None else page["ratio"] >= TARGET_RATIO,
             f"{fmt_ratio(page['ratio'])} ({fmt_rate(page['ours']['rate'])} vs {fmt_rate(page['default']['rate'])} req/s)"
             + (f"; wrk: {fmt_ratio(page.get('wrk_ratio'))}" if page.get("wrk_ratio") else "")),
            (f"our p99 <= {TARGET_P99_MS:.0f} ms on the project page",
             None if page["ours"]["p99"] is None else page["ours"]["p99"] * 1000 <= TARGET_P99_MS,
             fmt_ms(page["ours"]["p99"])),
            (f"copied files appear (within {TARGET_FRESH_S:.0f} s)",
             bool(copied) and all(s is not None and s <= TARGET_FRESH_S for s in copied),
             ", ".join(fmt_fresh(s) for s in copied) or "not run"),
            (f"uploaded file appears (within {TARGET_FRESH_S:.0f} s)",
             bool(uploaded) and all(s is not None and s <= TARGET_FRESH_S for s in uploaded),
             ", ".join(fmt_fresh(s) for s in uploaded) or "not run"),
        ]
        all_pass = True
        for name, ok, val in checks:
            st = "n/a " if ok is None else ("PASS" if ok else "FAIL")
            all_pass &= bool(ok)
            print(f"  [{st}] {name}: {val}")
        ours_errs = sum(summary[l]["ours"]["err"] for l in summary)
        print(f"  (info) errors on ours under load: {ours_errs}; files listed by ours after the fill: "
              f"{res.get('listed')}/{self.info['files']}")
        return all_pass

    # -- cleanup ------------------------------------------------------------------------
    def cleanup(self) -> None:
        if self.firewall_opened:
            self.h.exec(f"firewall-cmd --remove-port={DEFAULT_PORT}/tcp", check=False, timeout=30)
        if self.default_started:
            self.h.exec(f"systemctl stop {DEFAULT_UNIT}", check=False, timeout=30)


def fmt_ms(x: float | None) -> str:
    if x is None:
        return "n/a"
    if math.isinf(x):
        return "failed"
    return f"{x * 1000:.0f} ms" if x < 10 else f"{x:.1f} s"


def fmt_s(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}s"


def fmt_rate(x: float | None) -> str:
    return "n/a" if x is None else (f"{x:,.0f}" if x >= 100 else f"{x:.1f}")


def fmt_ratio(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1f}x"


def fmt_fresh(x: float | None) -> str:
    return "NOT LISTED" if x is None else f"{x * 1000:.0f} ms"


def fmt_err(r: dict) -> str:
    parts = [f"{k} {v}" for k, v in r["err"].items() if v] + [f"HTTP {k}: {v}" for k, v in r["non200"].items()]
    return f"({', '.join(parts)})" if parts else ""


# =========================================================================== main

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=3000, help="distribution files in the index (default 3000)")
    ap.add_argument("--clients", type=int, default=16, help="concurrent clients (default 16)")
    ap.add_argument("--seconds", type=float, default=10, help="seconds per load run (default 10)")
    ap.add_argument("--rounds", type=int, default=1, help="load runs per URL and server, interleaved (default 1)")
    ap.add_argument("--max-requests", type=int, default=200_000, help="request cap per load run (default 200000)")
    ap.add_argument("--timeout", type=float, default=10, help="per-request socket timeout, s (default 10)")
    ap.add_argument("--settle", type=float, default=2, help="pause between load runs, s (default 2)")
    ap.add_argument("--single", type=int, default=10, help="sequential 1-client requests per URL/server (default 10)")
    ap.add_argument("--pip-runs", type=int, default=5, help="pip download runs per server (default 5)")
    ap.add_argument("--fresh-wait", type=float, default=5, help="freshness poll limit, s (default 5)")
    ap.add_argument("--big-project", default="proj150", help="project whose files are ~100 KB real wheels")
    ap.add_argument("--no-wrk", action="store_true", help="skip the wrk cross-check")
    ap.add_argument("--_loadgen", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._loadgen:
        print(json.dumps(loadgen(json.loads(args._loadgen))))
        return 0
    if args.files < FILES_PER_PROJECT or args.clients < 1 or args.seconds <= 0 or args.rounds < 1 \
            or args.max_requests < 1 or args.pip_runs < 1:
        ap.error("--files >= 10, and --clients, --seconds, --rounds, --max-requests, --pip-runs >= 1")

    from testing import testhost
    if not preflight("serve_bench"):
        return 2
    sigterm_interrupts()

    t_start = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="serve-bench."))
    before = {h.name for h in testhost.list_hosts()}
    hosts: list = []
    bench = None
    all_pass = False

    def host_side():
        if bench is not None:
            try:
                bench.cleanup()
            except Exception as exc:  # noqa: BLE001
                log(f"clean-up on the host failed: {exc}")

    with run_guarded(log, lambda: clean_up(hosts, before, HOST_PREFIX, work, log, t_start, first=host_side),
                     errors=(testhost.TestHostError, RuntimeError, subprocess.TimeoutExpired)):
        log("booting one fresh test host ...")
        t0 = time.monotonic()
        hosts = testhost.boot_hosts(1, prefix=HOST_PREFIX)
        h = hosts[0]
        log(f"booted {h.name}={h.address} in {time.monotonic() - t0:.1f}s")
        deploy(h, work)
        st = wait_http(h.address, OUR_PORT, 30)
        if st != 200:
            raise RuntimeError(f"our service on :{OUR_PORT} does not answer 200 after the deploy ({st})")
        bench = Bench(args, h, work)
        bench.fill()
        bench.start_default()
        bench.single_client()
        bench.load()
        bench.pip_download()
        bench.freshness()
        all_pass = bench.report()
    return 0 if all_pass else 1


if __name__ == "__main__":
    sys.exit(main())
