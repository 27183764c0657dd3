#!/usr/bin/env python3
"""Backup and restore benchmark (issue 12): `invoke backup` and `invoke restore` of a 1 GB,
3,000-file packages directory against `rsync -a` over ssh and `tar | ssh` between the same
hosts, in the same run; and a second backup with nothing new.

Run from the repository root, as root (test hosts are systemd-nspawn containers):

    sudo .venv/bin/python benchmarks/backup_bench.py [--files 3000] [--mb 1000] [--rounds 2]

1. Boots two fresh Debian 12 test hosts and deploys to both; fills the first's packages
   directory with --files files of random bytes, --mb MB in all (made on the host), settled.
   rsync comes from this machine's apt (installed here; its .deb and libpopt0's copied into the hosts).
2. Backup, host -> this machine, --rounds rounds interleaved, each into an empty folder:
   ours (`invoke backup`), `rsync -a` over ssh, `ssh host tar -c | tar -x`; then ours again
   into its full folder (nothing new), 5 times.
3. Restore, this machine -> the second host (deployed, its packages emptied before each
   run): ours (`invoke restore`: the backup verified, the files sent and checked on the
   host), `rsync -a` over ssh, `tar -c | ssh host tar -x`.
4. Prints the times and ratios; destroys the hosts.

OpenSSH (rsync, tar) uses its default cipher; ours goes through paramiko. Traffic only goes
to the booted hosts' addresses on their own veth links.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import clean_up, preflight, run_guarded, sigterm_interrupts  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
HOST_PREFIX = "bkb"
PACKAGES = "/srv/pypi/packages"


def log(msg: str) -> None:
    print(f"[backup-bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def timed(cmd, **kw) -> float:
    t0 = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    took = time.monotonic() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{cmd if isinstance(cmd, str) else ' '.join(map(str, cmd))[:200]} failed:\n"
                           f"{(p.stdout + p.stderr)[-1200:]}")
    return took


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=3000)
    ap.add_argument("--mb", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args(argv)
    from testing import testhost
    if not preflight("backup_bench"):
        return 2
    sigterm_interrupts()
    t_start = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="backup-bench."))
    os.environ["PROVISION_CA_DIR"] = str(work / "ca")
    before = {h.name for h in testhost.list_hosts()}
    hosts: list = []
    res: dict[str, list[float]] = {}
    with run_guarded(log, lambda: clean_up(hosts, before, HOST_PREFIX, work, log, t_start),
                     errors=(testhost.TestHostError, RuntimeError, subprocess.TimeoutExpired)):
        if not shutil.which("rsync"):
            timed(["apt-get", "install", "-y", "-q", "rsync"], timeout=300)
        timed(["apt-get", "download", "-q", "rsync", "libpopt0"], cwd=work, timeout=300)   # (popt: not in the image)
        debs = sorted(work.glob("*.deb"))
        hosts = testhost.boot_hosts(2, prefix=HOST_PREFIX)
        src, dst = hosts
        inv = testhost.write_inventory(hosts, work / "inventory.yml", known_hosts=str(work / "known_hosts"))
        for h in hosts:
            timed([str(REPO / ".venv/bin/invoke"), "deploy", "--inventory", str(inv), "-H", h.name], cwd=REPO, timeout=900)
            for deb in debs:
                h.exec(f"cat > /tmp/{deb.name}", input=deb.read_bytes(), timeout=120)
            h.exec("dpkg -i /tmp/*.deb >/dev/null", timeout=120)
        size = args.mb * 1_000_000 // args.files
        log(f"deployed both; filling {args.files} files of {size / 1000:.0f} KB on {src.name}")
        src.exec(f"cd {PACKAGES} && head -c {args.mb * 1_000_000} /dev/urandom | split -a 4 -d -b {size} - part && "
                 f"i=0; for f in part*; do mv \"$f\" \"proj$((i % 300))-1.$i.tar.gz\"; i=$((i+1)); done; "
                 f"chown -R pypi: {PACKAGES}; touch -d '-1 min' {PACKAGES}/*", timeout=900)
        count = int(src.exec(f"ls {PACKAGES} | wc -l").stdout)
        total = int(src.exec(f"du -sb {PACKAGES} | cut -f1").stdout)
        log(f"filled: {count} files, {total / 1e6:.0f} MB")
        ssh = ["ssh", "-i", str(testhost.ssh_key_path()), "-o", f"UserKnownHostsFile={work / 'known_hosts'}",  # what our deploys recorded
               "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"]
        invoke = [str(REPO / ".venv/bin/invoke")]

        for rnd in range(args.rounds):
            for label, run in (
                ("ours: invoke backup", lambda d: timed(invoke + ["backup", "--to", str(d), "--inventory", str(inv),
                                                                  "-H", src.name], cwd=REPO, timeout=1800)),
                ("rsync -a over ssh", lambda d: timed(["rsync", "-a", "-e", " ".join(ssh), "--rsync-path=sudo rsync",
                                                       f"deploy@{src.address}:{PACKAGES}/", f"{d}/"], timeout=1800)),
                ("ssh host tar -c | tar -x", lambda d: timed(
                    f"mkdir -p {d} && {' '.join(ssh)} deploy@{src.address} sudo tar -C {PACKAGES} -cf - . "
                    f"| tar -x -C {d}", shell=True, timeout=1800)),
            ):
                d = work / f"bk-{rnd}-{len(res.get('backup ' + label, []))}-{label.split()[0].strip(':')}"
                took = run(d)
                res.setdefault("backup " + label, []).append(took)
                log(f"  round {rnd + 1}: backup  {label:28} {took:6.2f}s")
        full = next(p for p in work.iterdir() if p.name.startswith("bk-0-0-ours"))
        for _ in range(5):
            res.setdefault("backup again, nothing new (ours)", []).append(
                timed(invoke + ["backup", "--to", str(full), "--inventory", str(inv), "-H", src.name], cwd=REPO, timeout=300))
        log(f"  backup again, nothing new: {min(res['backup again, nothing new (ours)']):.2f}s best of 5")

        for rnd in range(args.rounds):
            for label, run in (
                ("ours: invoke restore", lambda: timed(invoke + ["restore", "--from", str(full), "--inventory", str(inv),
                                                                 "-H", dst.name], cwd=REPO, timeout=1800)),
                ("rsync -a over ssh", lambda: timed(["rsync", "-a", "-e", " ".join(ssh), "--rsync-path=sudo rsync",
                                                     f"{full}/packages/", f"deploy@{dst.address}:{PACKAGES}/"], timeout=1800)),
                ("tar -c | ssh host tar -x", lambda: timed(
                    f"tar -C {full}/packages -cf - . | {' '.join(ssh)} deploy@{dst.address} sudo tar -x -C {PACKAGES}",
                    shell=True, timeout=1800)),
            ):
                dst.exec(f"find {PACKAGES} -mindepth 1 -delete", timeout=300)
                took = run()
                res.setdefault("restore " + label, []).append(took)
                log(f"  round {rnd + 1}: restore {label:28} {took:6.2f}s")

    if not res:
        return 2
    best = {k: min(v) for k, v in res.items()}
    print(f"\nResults ({count} files, {total / 1e6:.0f} MB; best of {args.rounds} rounds; 2 cores shared by both "
          f"hosts and this machine)")
    print(f"| {'what':45} | {'seconds':>7} | {'vs ours':>7} |")
    print(f"|{'-' * 47}|{'-' * 9}|{'-' * 9}|")
    for kind in ("backup", "restore"):
        ours = best[f"{kind} ours: invoke {kind}"]
        for k, v in best.items():
            if k.startswith(kind + " ") and "again" not in k:
                print(f"| {k:45} | {v:7.2f} | {v / ours:6.2f}x |")
    again = best["backup again, nothing new (ours)"]
    print(f"| {'backup again, nothing new (ours)':45} | {again:7.2f} |         |")
    print(f"\nTargets (issue): [{'PASS' if again < 1.0 else 'FAIL'}] a second backup with nothing new under 1 s: "
          f"{again:.2f}s")
    print("(ours includes verification: every file's sha256 on the host, checked on arrival; restore verifies "
          "the whole backup first and every sent file on the host after)")
    return 0 if again < 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
