#!/usr/bin/env python3
"""Side-by-side deploy benchmark: our tool vs Ansible vs pyinfra vs the one-ssh floor.

Run from the repository root, as root (test hosts are systemd-nspawn containers):

    sudo .venv/bin/python benchmarks/deploy_bench.py [--runs 5] [--only ours]

What it does, in one run (details in benchmarks/README.md):

1. Sets up the peers once, cached under /var/cache/provision-bench (env
   PROVISION_BENCH_CACHE): a venv with the pinned ansible-core/pyinfra/passlib/bcrypt,
   the anchors' offline wheelhouse (pip download), a writable copy of
   benchmarks/anchors (env PROVISION_BENCH_ANCHORS) with the ansible.posix collection
   fetched into it.
   A peer whose set-up fails is skipped with the reason printed.
2. Boots one fresh Debian 12 test host per tool, in parallel (the floor reuses the
   pyinfra host, because check.sh checks the anchor layout), raises the guest sshd
   LogLevel to VERBOSE, then, one tool after the other, times the fresh deploy and
   checks http://HOST:8000/ answers 200.
3. Times N no-op re-deploys per tool, interleaved (A B C D A B C D ...), checking each
   one reports no change, and counts on the host side (sshd journal) the exec and
   sftp channels each run opened.
4. Prints the table, the ratios and the targets with PASS/FAIL; destroys the hosts
   in a finally (also on Ctrl-C / SIGTERM).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from testing import testhost  # noqa: E402
from common import clean_up, preflight, run_guarded, sigterm_interrupts  # noqa: E402

ANCHORS_SRC = Path(os.environ.get("PROVISION_BENCH_ANCHORS", REPO / "benchmarks" / "anchors"))
CACHE = Path(os.environ.get("PROVISION_BENCH_CACHE", "/var/cache/provision-bench"))
PEER_PINS = ["ansible-core==2.19.14", "pyinfra==3.10.0", "passlib==1.7.4", "bcrypt==4.0.1"]
ANCHOR_WHEEL_PINS = ["pypiserver[passlib]==2.4.2", "bcrypt==4.0.1"]
OUR_WHEEL_CACHE = Path.home() / ".cache/provision/wheels"
HOST_PREFIX = "bch"
PORT = 8000
TOOLS = ["ours", "pyinfra", "ansible", "floor"]
LABELS = {"ours": "ours (invoke deploy)", "pyinfra": "pyinfra 3.10",
          "ansible": "Ansible (pipelining+ControlPersist)", "floor": "floor (1 ssh, check.sh)"}

# sshd (OpenSSH 9.2p1, Debian 12) at LogLevel VERBOSE writes one line per session
# channel it starts, from session.c do_exec():
#   "Starting session: command for deploy from 10.213.3.1 port 50412 id 0"
#   "Starting session: subsystem 'sftp' for deploy from ... id 1"
# (at DEBUG1 the same requests also appear as "server_input_channel_req: channel N
# request exec reply 1"; VERBOSE is enough and keeps sshd's own cost down.)
# Authentications ("Accepted publickey for deploy ...") count SSH connections.
SSHD_DROPIN = "/etc/ssh/sshd_config.d/00-bench-loglevel.conf"  # first value wins in sshd_config
RE_EXEC = re.compile(r"Starting session: (command|forced-command)")
RE_SFTP = re.compile(r"Starting session: (subsystem 'sftp'|forced-command \(config\) 'internal-sftp')")
RE_SUBSYS = re.compile(r"Starting session: subsystem")
RE_CONN = re.compile(r"Accepted publickey for ")


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def sh(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.run(cmd, **kw)


def last_line(proc: subprocess.CompletedProcess) -> str:
    lines = ((proc.stderr or "") + "\n" + (proc.stdout or "")).strip().splitlines()
    return lines[-1] if lines else f"exit status {proc.returncode}"


# --------------------------------------------------------------------------- set-up (cached)

@dataclass
class Peers:
    venv: Path | None = None
    wheels: Path | None = None
    anchors: Path | None = None          # writable copy with ansible/collections
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def bin(self) -> Path:
        assert self.venv is not None
        return self.venv / "bin"


def _tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and "collections" not in p.relative_to(root).parts:
            h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:12]


def setup_peers(wanted: set[str]) -> Peers:
    peers = Peers()
    if not wanted & {"ansible", "pyinfra", "floor"}:
        return peers
    CACHE.mkdir(parents=True, exist_ok=True)

    def skip_all(reason: str) -> Peers:
        for t in ("ansible", "pyinfra", "floor"):
            peers.skipped.setdefault(t, reason)
        return peers

    # 1. venv with the pinned peer tools
    venv = CACHE / "peers-venv"
    marker = venv / ".bench-pins"
    pins = " ".join(PEER_PINS)
    if not (marker.is_file() and marker.read_text() == pins):
        log(f"set-up: peer venv {venv} ({pins}) ...")
        shutil.rmtree(venv, ignore_errors=True)
        py = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
        p = sh([py, "-m", "venv", str(venv)])
        if p.returncode == 0:
            p = sh([str(venv / "bin/pip"), "install", "-q", *PEER_PINS])
        if p.returncode != 0:
            return skip_all(f"peer venv set-up failed: {last_line(p)}")
        marker.write_text(pins)
    peers.venv = venv

    # 2. the anchors' offline wheelhouse (guest is Debian 12 = Python 3.11, like this machine)
    wheels = CACHE / "anchor-wheels"
    wmarker = CACHE / "anchor-wheels.pins"
    wpins = " ".join(ANCHOR_WHEEL_PINS)
    if not (wmarker.is_file() and wmarker.read_text() == wpins and any(wheels.glob("*.whl"))):
        log(f"set-up: anchor wheelhouse {wheels} ...")
        tmp = Path(tempfile.mkdtemp(prefix="anchor-wheels.", dir=CACHE))
        p = sh([str(peers.bin / "pip"), "download", "-q", "-d", str(tmp), *ANCHOR_WHEEL_PINS])
        if p.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            return skip_all(f"pip download of the anchor wheelhouse failed: {last_line(p)}")
        shutil.rmtree(wheels, ignore_errors=True)
        os.rename(tmp, wheels)
        os.chmod(wheels, 0o755)
        wmarker.write_text(wpins)
    if not any(wheels.glob("packaging-*.whl")):
        peers.skipped.setdefault("ansible", "anchor wheelhouse has no packaging-*.whl (deploy.yml needs it)")
    peers.wheels = wheels

    # 3. writable copy of the anchors (read-only source) + ansible.posix collection
    if not ANCHORS_SRC.is_dir():
        return skip_all(f"no anchors at {ANCHORS_SRC}")
    dst = CACHE / f"anchors-{_tree_digest(ANCHORS_SRC)}"
    if not (dst / ".bench-copied").is_file():
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(ANCHORS_SRC, dst)
        for p in [dst, *dst.rglob("*")]:
            os.chmod(p, (p.stat().st_mode | 0o200))
        (dst / ".bench-copied").write_text(str(ANCHORS_SRC) + "\n")
    peers.anchors = dst
    if "ansible" in wanted and "ansible" not in peers.skipped:
        coll = dst / "ansible/collections/ansible_collections/ansible/posix"
        if not coll.is_dir():
            log("set-up: ansible.posix collection (get-collection.sh) ...")
            env = dict(os.environ, PATH=f"{peers.bin}:{os.environ.get('PATH', '')}")
            p = sh(["bash", str(dst / "ansible/get-collection.sh")], env=env)
            if p.returncode != 0 or not coll.is_dir():
                shutil.rmtree(dst / "ansible/collections", ignore_errors=True)
                peers.skipped["ansible"] = f"ansible.posix collection set-up failed: {last_line(p)}"
    return peers


# --------------------------------------------------------------------------- host-side counting

def host_prepare(h: testhost.TestHost) -> None:
    """Raise the guest sshd LogLevel so every session channel is logged."""
    h.exec(f"printf 'LogLevel VERBOSE\\n' > {SSHD_DROPIN} && sshd -t && systemctl reload ssh")
    out = h.exec("sshd -T 2>/dev/null | grep -i '^loglevel'").stdout.decode().strip()
    if out.lower() != "loglevel verbose":
        raise testhost.TestHostError(f"{h.name}: sshd LogLevel is {out!r}, not VERBOSE")


def journal_cursor(h: testhost.TestHost) -> str:
    out = h.exec("journalctl -q -n 0 --show-cursor").stdout.decode()
    m = re.search(r"-- cursor: (\S+)", out)
    if not m:
        # empty journal so far: fall back to a time stamp (µs since epoch)
        return "@" + h.exec("date +%s.%N").stdout.decode().strip()
    return m.group(1)


def count_channels(h: testhost.TestHost, cursor: str) -> dict[str, int]:
    time.sleep(0.3)  # journald is asynchronous
    if cursor.startswith("@"):
        sel = f"--since=@{cursor[1:]}"
    else:
        sel = f"--after-cursor={shlex.quote(cursor)}"
    out = h.exec(f"journalctl -q -o cat _COMM=sshd {sel} || journalctl -q -o cat -t sshd {sel}",
                 check=False).stdout.decode(errors="replace").splitlines()
    return {
        "exec": sum(1 for l in out if RE_EXEC.search(l)),
        "sftp": sum(1 for l in out if RE_SFTP.search(l)),
        "other_subsys": sum(1 for l in out if RE_SUBSYS.search(l) and not RE_SFTP.search(l)),
        "conns": sum(1 for l in out if RE_CONN.search(l)),
    }


def http_status(addr: str, tries: int = 10) -> int | str:
    last: int | str = "no answer"
    for _ in range(tries):
        try:
            with urllib.request.urlopen(f"http://{addr}:{PORT}/", timeout=3) as r:
                last = r.status
        except urllib.error.HTTPError as e:
            last = e.code
        except OSError as e:
            last = f"{type(e).__name__}: {e}"
        if last == 200:
            return 200
        time.sleep(0.5)
    return last


# --------------------------------------------------------------------------- tools

@dataclass
class Run:
    seconds: float
    rc: int
    unchanged: bool | None         # None for the fresh run (changes expected)
    detail: str                    # the recap line(s) we judged by
    channels: dict[str, int] | None = None
    output: str = ""


class Tool:
    name = ""

    def __init__(self, host: testhost.TestHost, work: Path, peers: Peers):
        self.host, self.work, self.peers = host, work, peers

    def argv(self) -> tuple[list[str], dict, Path]:  # argv, env, cwd
        raise NotImplementedError

    def judge(self, out: str, rc: int) -> tuple[bool, str]:
        """(reported no change and no failure, the recap text)"""
        raise NotImplementedError

    def run(self, timeout: float) -> Run:
        argv, env, cwd = self.argv()
        t0 = time.monotonic()
        p = subprocess.run(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, timeout=timeout)
        dt = time.monotonic() - t0
        out = p.stdout + ("\n" + p.stderr if p.stderr else "")
        unchanged, detail = self.judge(out, p.returncode)
        return Run(dt, p.returncode, unchanged, detail, output=out)


class Ours(Tool):
    name = "ours"

    def setup(self) -> None:
        # tls: false: the same deployment as the Ansible and pyinfra anchors (pypiserver on
        # :8000, plain http); the HTTPS front's no-op is timed by https_bench.py
        self.inv = testhost.write_inventory([self.host], self.work / "ours-inventory.yml", tls=False)

    def argv(self):
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        return ([str(REPO / ".venv/bin/invoke"), "deploy", "--inventory", str(self.inv),
                 "--host", self.host.name], env, REPO)

    def judge(self, out, rc):
        m = re.search(rf"^{re.escape(self.host.name)} ok=(\d+) changed=(\d+) failed=(\d+)(?: skipped=\d+)?\s*$", out, re.M)
        if not m:
            return False, f"no recap line (rc {rc})"
        return (rc == 0 and m.group(2) == "0" and m.group(3) == "0"), m.group(0).strip()


class Ansible(Tool):
    name = "ansible"

    def setup(self) -> None:
        self.cp_dir = Path(tempfile.mkdtemp(prefix="cp.", dir=self.work))  # ControlPersist sockets
        kh = self.work / "known_hosts"
        self.inv = self.work / "ansible-inventory.ini"
        self.inv.write_text(
            "[pypi]\n"
            f"h ansible_host={self.host.address}\n"
            "[pypi:vars]\n"
            "ansible_user=deploy\n"
            f"ansible_ssh_private_key_file={self.host.ssh_key}\n"
            "ansible_python_interpreter=/usr/bin/python3\n"
            f"ansible_ssh_extra_args='-o UserKnownHostsFile={kh} -o IdentitiesOnly=yes'\n")

    def argv(self):
        d = self.peers.anchors / "ansible"
        env = dict(os.environ, ANSIBLE_CONFIG=str(d / "ansible-fast.cfg"),
                   ANSIBLE_SSH_CONTROL_PATH_DIR=str(self.cp_dir), ANSIBLE_NOCOLOR="1",
                   ANSIBLE_LOCAL_TEMP=str(self.work / "ansible-tmp"),
                   ANCHOR_WHEELS=str(self.peers.wheels),
                   PATH=f"{self.peers.bin}:{os.environ.get('PATH', '')}")
        return ([str(self.peers.bin / "ansible-playbook"), "-i", str(self.inv), "deploy.yml"], env, d)

    def judge(self, out, rc):
        m = re.search(r"^h\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+).*$", out, re.M)
        if not m:
            return False, f"no PLAY RECAP line (rc {rc})"
        ok = rc == 0 and m.group(2) == "0" and m.group(3) == "0" and m.group(4) == "0"
        return ok, re.sub(r"\s+", " ", m.group(0).strip())

    def close(self) -> None:
        """End the ControlPersist masters this run started (by their control sockets)."""
        for sock in getattr(self, "cp_dir", Path("/nonexistent")).glob("*"):
            sh(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "bench-master"], timeout=10)


class Pyinfra(Tool):
    name = "pyinfra"

    def setup(self) -> None:
        self.kh = self.work / "known_hosts"

    def argv(self):
        d = self.peers.anchors / "pyinfra"
        env = dict(os.environ, ANCHOR_WHEELS=str(self.peers.wheels), PYINFRA_PROGRESS="off",
                   PATH=f"{self.peers.bin}:{os.environ.get('PATH', '')}", NO_COLOR="1")
        return ([str(self.peers.bin / "pyinfra"), "-y", "--user", "deploy", "--key", str(self.host.ssh_key),
                 "--data", f"ssh_known_hosts_file={self.kh}",
                 "--data", "ssh_strict_host_key_checking=yes",
                 self.host.address, "deploy.py"], env, d)

    def judge(self, out, rc):
        # pyinfra 3.x ends with a results table, one row per operation plus a total:
        #   Operation   Hosts   Success   Error   No Change
        #   Grand total 12      -         -       12
        # "Success" counts operations that ran commands (= changes), "-" means 0.
        m = re.search(r"^--> Results:?\s*$(.*)", out, re.M | re.S)
        if not m:
            return False, f"no '--> Results' table (rc {rc})"
        lines = [l.strip() for l in m.group(1).splitlines() if l.strip()]
        head = next((l for l in lines if l.startswith("Operation")), None)
        total = next((l for l in lines if l.startswith("Grand total")), None)
        if not head or not total:
            return False, f"no header/Grand total row (rc {rc})"
        cols = dict(zip(re.split(r"\s{2,}", head), re.split(r"\s{2,}", total)))

        def num(k):
            v = cols.get(k, "?")
            return 0 if v == "-" else int(v) if v.isdigit() else -1
        changed, errors = num("Success"), num("Error")
        detail = "Grand total: " + ", ".join(f"{k}={v}" for k, v in cols.items() if k != "Operation")
        return (rc == 0 and changed == 0 and errors == 0), detail


class Floor(Tool):
    name = "floor"

    def setup(self) -> None:
        # expected.py reads "<its dir>/../ansible/templates/...": placed at the anchors' top
        # level (as shipped) that resolves outside the tree, so run a copy from a subdir.
        exp = self.peers.anchors / "floor/expected.py"
        exp.parent.mkdir(exist_ok=True)
        shutil.copy(self.peers.anchors / "expected.py", exp)
        env = dict(os.environ, ANCHOR_WHEELS=str(self.peers.wheels))
        p = sh([str(self.peers.bin / "python"), str(exp)], env=env)
        if p.returncode != 0:
            raise RuntimeError(f"expected.py failed: {last_line(p)}")
        self.args = p.stdout.split()
        if len(self.args) != 3:
            raise RuntimeError(f"expected.py printed {p.stdout!r}")
        self.script = (self.peers.anchors / "check.sh").read_text()

    def argv(self):
        raise NotImplementedError

    def run(self, timeout):
        remote = "sudo sh -s -- " + " ".join(shlex.quote(a) for a in [self.host.address, *self.args])
        argv = [*testhost.ssh_base_args(self.host, self.work / "known_hosts"), remote]
        argv[argv.index("StrictHostKeyChecking=accept-new")] = "StrictHostKeyChecking=yes"
        t0 = time.monotonic()
        p = subprocess.run(argv, input=self.script, capture_output=True, text=True, timeout=timeout)
        dt = time.monotonic() - t0
        out = p.stdout + p.stderr
        okline = next((l for l in out.splitlines() if l.startswith("ok ")), f"no 'ok N/6' (rc {p.returncode})")
        return Run(dt, p.returncode, p.returncode == 0 and okline == "ok 6/6",
                   okline + ("" if p.returncode == 0 else " " + " | ".join(
                       l for l in out.splitlines() if l.startswith("DRIFT"))), output=out)


# --------------------------------------------------------------------------- report

def fmt(x: float | None, spec: str = ".2f") -> str:
    return "n/a" if x is None else format(x, spec)


def span(vals: list[int]) -> str:
    if not vals:
        return "n/a"
    lo, hi = min(vals), max(vals)
    return str(lo) if lo == hi else f"{lo}-{hi}"


def print_report(res: dict, skipped: dict[str, str], runs: int) -> bool:
    print()
    print(f"Results (no-op: median of {runs}, interleaved; fresh: one run on a fresh host)")
    rows = [("tool", "fresh deploy s", "no-op median s (min-max)", "exec channels (no-op)", "sftp",
             "ssh conns (no-op)", "fresh exec/sftp")]
    for t in TOOLS:
        if t in skipped:
            rows.append((LABELS[t], "skipped", "", "", "", "", ""))
            continue
        if t not in res:
            continue
        r = res[t]
        noop = [x.seconds for x in r["noop"]]
        med = statistics.median(noop) if noop else None
        ch = [x.channels["exec"] for x in r["noop"] if x.channels]
        sf = [x.channels["sftp"] for x in r["noop"] if x.channels]
        cn = [x.channels["conns"] for x in r["noop"] if x.channels]
        fr = r.get("fresh")
        frch = f"{fr.channels['exec']}/{fr.channels['sftp']}" if fr and fr.channels else ""
        rows.append((LABELS[t], fmt(fr.seconds if fr else None),
                     f"{fmt(med)} ({fmt(min(noop))}-{fmt(max(noop))})" if noop else "n/a",
                     span(ch), span(sf), span(cn), frch))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, r in enumerate(rows):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")
        if i == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")

    def med(t):
        r = res.get(t)
        return statistics.median([x.seconds for x in r["noop"]]) if r and r["noop"] else None

    def fresh(t):
        r = res.get(t)
        return r["fresh"].seconds if r and r.get("fresh") else None

    def ratio(a, b):
        return None if a is None or b is None or b == 0 else a / b

    for t in TOOLS:
        if t in skipped:
            print(f"  {t} skipped: {skipped[t]}")
    print()
    print("Ratios:")
    ratios = {
        "pyinfra no-op / ours": ratio(med("pyinfra"), med("ours")),
        "Ansible no-op / ours": ratio(med("ansible"), med("ours")),
        "fresh pyinfra / ours": ratio(fresh("pyinfra"), fresh("ours")),
        "fresh Ansible / ours": ratio(fresh("ansible"), fresh("ours")),
        "ours no-op / floor": ratio(med("ours"), med("floor")),
        "pyinfra no-op / floor": ratio(med("pyinfra"), med("floor")),
    }
    for k, v in ratios.items():
        print(f"  {k:24} {fmt(v)}")

    print()
    print("Targets (issue):")
    checks = []
    ours = res.get("ours")
    ours_ch = [x.channels["exec"] for x in ours["noop"] if x.channels] if ours else []
    checks.append(("ours no-op median <= 1.0 s", None if med("ours") is None else med("ours") <= 1.0,
                   f"{fmt(med('ours'))} s"))
    checks.append(("ours no-op <= 3 exec channels (every run)", None if not ours_ch else max(ours_ch) <= 3,
                   f"{span(ours_ch)}"))
    v = ratios["pyinfra no-op / ours"]
    checks.append((">= 3x faster than pyinfra (no-op)", None if v is None else v >= 3, f"{fmt(v)}x" if v is not None else "n/a"))
    v = ratios["Ansible no-op / ours"]
    checks.append((">= 9x faster than Ansible (no-op)", None if v is None else v >= 9, f"{fmt(v)}x" if v is not None else "n/a"))
    for peer in ("pyinfra", "ansible"):
        a, b = fresh("ours"), fresh(peer)
        checks.append((f"fresh deploy faster than {peer}", None if a is None or b is None else a < b,
                       f"{fmt(a)} s vs {fmt(b)} s"))
    # integrity: every fresh deploy served 200, every no-op reported no change
    bad = []
    for t, r in res.items():
        if r.get("http") not in (None, 200):
            bad.append(f"{t}: HTTP {r['http']} after fresh deploy")
        if r.get("fresh") and r["fresh"].rc != 0:
            bad.append(f"{t}: fresh deploy exited {r['fresh'].rc}")
        for i, x in enumerate(r["noop"], 1):
            if not x.unchanged:
                bad.append(f"{t}: no-op run {i} not clean: {x.detail}")
    checks.append(("all deploys served HTTP 200, all no-op runs reported no change", not bad,
                   "; ".join(bad[:6]) + (" ..." if len(bad) > 6 else "") if bad else "yes"))
    all_pass = True
    for name, ok, val in checks:
        st = "n/a " if ok is None else ("PASS" if ok else "FAIL")
        all_pass &= ok is not False  # n/a (peer skipped or --only) does not fail the run
        print(f"  [{st}] {name}: {val}")
    return all_pass


# --------------------------------------------------------------------------- main

class Interrupted(Exception):
    pass


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="no-op runs per tool (default 5)")
    ap.add_argument("--only", action="append", choices=TOOLS,
                    help="tool(s) to run (repeatable; default: all). 'floor' needs pyinfra.")
    ap.add_argument("--json", metavar="PATH", help="also write raw results as JSON")
    ap.add_argument("--keep-output", metavar="DIR", help="save every tool run's output in DIR")
    args = ap.parse_args(argv)
    if args.runs < 1:
        ap.error("--runs must be >= 1")
    if not preflight("deploy_bench"):
        return 2
    wanted = set(args.only or TOOLS)
    if "floor" in wanted:
        wanted.add("pyinfra")  # the floor checks the pyinfra-deployed host (anchor layout)

    sigterm_interrupts()
    t_start = time.monotonic()
    peers = setup_peers(wanted)
    skipped = {t: r for t, r in peers.skipped.items() if t in wanted}
    if "pyinfra" in skipped and "floor" in wanted:
        skipped.setdefault("floor", "needs the pyinfra-deployed host")
    for t, r in skipped.items():
        log(f"SKIP {t}: {r}")
    active = [t for t in TOOLS if t in wanted and t not in skipped]
    host_tools = [t for t in active if t != "floor"]
    if not host_tools:
        print("deploy_bench: nothing to run", file=sys.stderr)
        return 2
    if "ours" in active:
        n = len(list(OUR_WHEEL_CACHE.rglob("*.whl"))) if OUR_WHEEL_CACHE.is_dir() else 0
        log(f"our wheel cache {OUR_WHEEL_CACHE}: {n} wheel(s)"
            + ("" if n else " - cold: our fresh deploy includes downloading them"))

    work = Path(tempfile.mkdtemp(prefix="deploy-bench."))
    outdir = Path(args.keep_output) if args.keep_output else None
    if outdir:
        outdir.mkdir(parents=True, exist_ok=True)
    before = {h.name for h in testhost.list_hosts()}
    hosts: list[testhost.TestHost] = []
    tools: dict[str, Tool] = {}
    res: dict[str, dict] = {}
    all_pass = False
    with run_guarded(log, lambda: clean_up(hosts, before, HOST_PREFIX, work, log, t_start,
                     first=tools["ansible"].close if "ansible" in tools else None)):
        log(f"booting {len(host_tools)} fresh host(s) for {', '.join(host_tools)} ...")
        t0 = time.monotonic()
        hosts = testhost.boot_hosts(len(host_tools), prefix=HOST_PREFIX)
        log(f"booted {', '.join(f'{h.name}={h.address}' for h in hosts)} in {time.monotonic() - t0:.1f}s")
        kh_lines = []
        for h in hosts:
            host_prepare(h)
            kh_lines += h.known_hosts_lines()
        (work / "known_hosts").write_text("\n".join(kh_lines) + "\n")
        classes = {"ours": Ours, "pyinfra": Pyinfra, "ansible": Ansible}
        by_tool = dict(zip(host_tools, hosts))
        for t in host_tools:
            tools[t] = classes[t](by_tool[t], work, peers)
            tools[t].setup()

        def save(t: str, label: str, r: Run) -> None:
            if outdir:
                (outdir / f"{t}-{label}.log").write_text(r.output)

        # fresh deploys: one tool at a time (2 noisy cores: no parallel load)
        for t in host_tools:
            tool = tools[t]
            log(f"fresh deploy: {t} on {tool.host.name} ({tool.host.address}) ...")
            cur = journal_cursor(tool.host)
            r = tool.run(timeout=900)
            r.channels = count_channels(tool.host, cur)
            save(t, "fresh", r)
            code = http_status(tool.host.address)
            res[t] = {"fresh": r, "http": code, "noop": []}
            log(f"  {t}: {r.seconds:.2f}s rc={r.rc} [{r.detail}] HTTP {code} "
                f"exec={r.channels['exec']} sftp={r.channels['sftp']}")
            if r.rc != 0 or code != 200:
                tail = "\n    ".join(r.output.strip().splitlines()[-15:])
                log(f"  {t}: fresh deploy BROKEN; output tail:\n    {tail}")
        if "floor" in active and "pyinfra" in tools:
            fl = Floor(tools["pyinfra"].host, work, peers)
            try:
                fl.setup()
                tools["floor"] = fl
                res["floor"] = {"noop": []}
            except Exception as exc:  # noqa: BLE001
                skipped["floor"] = str(exc)
                log(f"SKIP floor: {exc}")

        # no-op re-deploys, interleaved
        order = [t for t in TOOLS if t in tools]
        for i in range(1, args.runs + 1):
            for t in order:
                tool = tools[t]
                cur = journal_cursor(tool.host)
                r = tool.run(timeout=600)
                r.channels = count_channels(tool.host, cur)
                save(t, f"noop{i}", r)
                res[t]["noop"].append(r)
                log(f"no-op {i}/{args.runs} {t:8} {r.seconds:6.2f}s exec={r.channels['exec']:<3} "
                    f"sftp={r.channels['sftp']:<2} conns={r.channels['conns']:<2} "
                    f"{'clean' if r.unchanged else 'NOT CLEAN'} [{r.detail}]")
                if not r.unchanged and not outdir:
                    tail = "\n    ".join(r.output.strip().splitlines()[-12:])
                    log(f"  output tail:\n    {tail}")
        all_pass = print_report(res, skipped, args.runs)
        if args.json:
            Path(args.json).write_text(json.dumps({
                t: {"fresh": vars(r["fresh"]) | {"output": None} if r.get("fresh") else None,
                    "http": r.get("http"),
                    "noop": [vars(x) | {"output": None} for x in r["noop"]]}
                for t, r in res.items()} | {"skipped": skipped}, indent=1, default=str))
    return 0 if all_pass else 1


if __name__ == "__main__":
    sys.exit(main())
