#!/usr/bin/env python3
"""`invoke mirror` vs `pip download` + one `twine upload` per file vs pip2pi + rsync/scp.

Run from the repository root, as root (test hosts are systemd-nspawn containers):

    sudo .venv/bin/python benchmarks/mirror_bench.py [--runs 5] [--keep-output DIR]

What it does, in one run (details in benchmarks/README.md, section mirror_bench.py):

1. Writes a requirements file of ~30 pinned, popular packages (some binary wheels).
2. Boots two fresh test hosts (A for ours, B for the baselines) and deploys both with
   `invoke deploy --inventory INV` (offline, from the inventory); raises the guests' sshd
   LogLevel to VERBOSE so exec channels can be counted on the host side.
3. Ours, with a fresh PROVISION_MIRROR_CACHE and a fresh pip cache: first run (resolve +
   download + send); then the files and the manifest are removed from host A and a run with
   the warm local cache gives the transfer alone; then N runs with nothing new (median,
   exec channels counted in the guest's sshd journal).
4. Baseline on host B: `pip download -r REQ -d DIR` (fresh pip cache), then one
   `twine upload` per file to http://B:8000/ (an account made with `invoke add-user`).
   pip2pi (the seed's way) is tried in a throwaway venv; the copy step rsync (or scp when
   the host has no rsync) of the downloaded files is timed either way.
5. Baseline second run: pip download again + `twine upload --skip-existing` per file.
6. Prints the table and the issue's targets (PASS/FAIL); destroys its hosts in a finally.
"""
from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from testing import testhost  # noqa: E402
from common import clean_up, preflight, run_guarded, sigterm_interrupts  # noqa: E402
from deploy_bench import count_channels, host_prepare, journal_cursor, last_line  # noqa: E402

HOST_PREFIX = "mrb"
PORT = 8000
VENV_BIN = REPO / ".venv/bin"
PACKAGES_DIR = "/srv/pypi/packages"
MANIFEST = "/var/lib/provision/mirror-manifest"
UPLOAD_USER = "benchup"

# ~30 popular packages, pinned, all with cp311 / py3 wheels on PyPI (numpy, pandas, pyyaml,
# markupsafe, charset-normalizer, cffi, wrapt, pydantic-core are binary). ~40 MB in all.
REQUIREMENTS = """\
requests==2.32.3
urllib3==2.2.3
idna==3.10
certifi==2024.8.30
charset-normalizer==3.4.0
six==1.16.0
attrs==24.2.0
packaging==24.1
PyYAML==6.0.2
Jinja2==3.1.4
MarkupSafe==3.0.2
click==8.1.7
itsdangerous==2.2.0
Werkzeug==3.0.4
Flask==3.0.3
blinker==1.8.2
python-dateutil==2.9.0.post0
pytz==2024.2
tzdata==2024.2
numpy==1.26.4
pandas==2.2.3
typing_extensions==4.12.2
pydantic==2.9.2
pydantic_core==2.23.4
annotated-types==0.7.0
pluggy==1.5.0
iniconfig==2.0.0
pytest==8.3.3
wrapt==1.16.0
cffi==1.17.1
pycparser==2.22
"""


def log(msg: str) -> None:
    print(f"[mirror-bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def pip_env(**extra: str) -> dict:
    """The environment for pip/twine/our tool: PyPI only, the same for every side.

    Without this machine's PIP_FIND_LINKS, and PIP_CONFIG_FILE=/dev/null: root's pip.conf
    here adds find-links and file:// extra indexes that would serve numpy/pandas from disk.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("PIP_FIND_LINKS", "PIP_NO_INDEX")}
    env["PIP_CONFIG_FILE"] = os.devnull
    env.update(extra)
    return env


def timed(argv: list, env: dict | None = None, cwd: Path = REPO, timeout: float = 900,
          input: str | None = None) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.monotonic()
    p = subprocess.run([str(a) for a in argv], env=env, cwd=cwd, capture_output=True, text=True,
                       timeout=timeout, input=input,
                       stdin=None if input is not None else subprocess.DEVNULL)
    return time.monotonic() - t0, p


def tail(p: subprocess.CompletedProcess, n: int = 12) -> str:
    out = ((p.stdout or "") + "\n" + (p.stderr or "")).strip().splitlines()
    return "\n    ".join(out[-n:])


def files_of(d: Path) -> list[Path]:
    return sorted(f for f in d.iterdir() if f.is_file() and not f.name.startswith("."))


def mb(files: list[Path]) -> float:
    return sum(f.stat().st_size for f in files) / 1e6


def recap(out: str, name: str) -> str:
    m = re.search(rf"^{re.escape(name)} ok=\d+ changed=(\d+) failed=(\d+).*$", out, re.M)
    return m.group(0).strip() if m else "no recap line"


def host_files(h: testhost.TestHost) -> dict[str, int]:
    out = h.exec(f"find {PACKAGES_DIR} -maxdepth 1 -type f ! -name '.*' -printf '%f %s\\n'").stdout.decode()
    return {n: int(s) for n, s in (l.rsplit(" ", 1) for l in out.splitlines() if " " in l)}


def simple_count(addr: str) -> int:
    """Projects listed on http://ADDR:8000/simple/ (control side)."""
    with urllib.request.urlopen(f"http://{addr}:{PORT}/simple/", timeout=10) as r:
        return r.read().decode().count("<a ")


class Interrupted(Exception):
    pass


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="our second (nothing new) runs (default 5)")
    ap.add_argument("--keep-output", metavar="DIR", help="save every command's output in DIR")
    args = ap.parse_args(argv)
    if not preflight("mirror_bench"):
        return 2
    sigterm_interrupts()

    t_start = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="mirror-bench."))
    outdir = Path(args.keep_output) if args.keep_output else None
    if outdir:
        outdir.mkdir(parents=True, exist_ok=True)

    def save(label: str, p: subprocess.CompletedProcess) -> None:
        if outdir:
            (outdir / f"{label}.log").write_text((p.stdout or "") + "\n--- stderr\n" + (p.stderr or ""))

    req = work / "requirements.txt"
    req.write_text(REQUIREMENTS)
    n_req = len([l for l in REQUIREMENTS.splitlines() if l.strip()])
    before = {h.name for h in testhost.list_hosts()}
    hosts: list[testhost.TestHost] = []
    res: dict = {"ours": {}, "twine": {}, "copy": {}}
    notes: list[str] = []
    ok = False
    with run_guarded(log, lambda: clean_up(hosts, before, HOST_PREFIX, work, log, t_start)):
        # ------------------------------------------------------------ hosts
        log("booting 2 fresh hosts (A: ours, B: baselines) ...")
        t0 = time.monotonic()
        hosts = testhost.boot_hosts(2, prefix=HOST_PREFIX)
        A, B = hosts
        log(f"booted A={A.name} {A.address}, B={B.name} {B.address} in {time.monotonic() - t0:.1f}s")
        kh = work / "known_hosts"
        kh.write_text("\n".join(A.known_hosts_lines() + B.known_hosts_lines()) + "\n")
        for h in hosts:
            host_prepare(h)
        inv = testhost.write_inventory(hosts, work / "inventory.yml", known_hosts=kh)
        log("deploying both: invoke deploy --inventory INV ...")
        dt, p = timed([VENV_BIN / "invoke", "deploy", "--inventory", inv], env=pip_env(PYTHONUNBUFFERED="1"))
        save("deploy", p)
        if p.returncode != 0:
            log(f"deploy failed (rc {p.returncode}):\n    {tail(p)}")
            return 2
        log(f"  deployed in {dt:.1f}s: {recap(p.stdout + p.stderr, A.name)} | {recap(p.stdout + p.stderr, B.name)}")

        # ------------------------------------------------------------ ours
        mcache = work / "ours-mirror-cache"
        ours_env = pip_env(PYTHONUNBUFFERED="1", PROVISION_MIRROR_CACHE=str(mcache),
                           PIP_CACHE_DIR=str(work / "ours-pip-cache"))
        mirror = [VENV_BIN / "invoke", "mirror", "-r", req, "--inventory", inv, "--host", A.name]

        def ours_run(label: str) -> tuple[float, subprocess.CompletedProcess, dict]:
            cur = journal_cursor(A)
            dt, p = timed(mirror, env=ours_env)
            ch = count_channels(A, cur)
            save(f"ours-{label}", p)
            out = p.stdout + p.stderr
            step = next((l.strip() for l in out.splitlines() if "mirrored distributions" in l), "")
            log(f"  ours {label}: {dt:.2f}s rc={p.returncode} exec={ch['exec']} sftp={ch['sftp']} "
                f"conns={ch['conns']} [{recap(out, A.name)}] {step}")
            if p.returncode != 0:
                log(f"  ours {label} FAILED:\n    {tail(p)}")
            return dt, p, ch

        log(f"ours: first run (fresh mirror cache {mcache}, fresh pip cache) ...")
        dt, p, ch = ours_run("first")
        res["ours"]["first"], res["ours"]["first_rc"] = dt, p.returncode
        res["ours"]["first_ch"] = ch
        for l in (p.stdout + p.stderr).splitlines():
            if "downloaded here" in l or "files," in l:
                log(f"    | {l.strip()}")
        local = files_of(mcache / "files") if (mcache / "files").is_dir() else []
        on_a = host_files(A)
        res["ours"]["files"], res["ours"]["mb"] = len(local), mb(local)
        missing = [f.name for f in local if on_a.get(f.name) != f.stat().st_size]
        log(f"  local cache: {len(local)} files, {mb(local):.1f} MB; host A has {len(on_a)} files; "
            f"missing/wrong size on A: {len(missing)}")
        if missing:
            notes.append(f"ours: after the first run {len(missing)} cached file(s) are not on host A "
                         f"(e.g. {missing[:3]})")
        try:
            log(f"  http://{A.address}:{PORT}/simple/ lists {simple_count(A.address)} projects")
        except OSError as exc:
            notes.append(f"ours: /simple/ on host A did not answer: {exc}")

        log("ours: transfer only (remove the mirrored files and the manifest on A, warm local cache) ...")
        A.exec(f"cd {PACKAGES_DIR} && xargs -r rm -f -- < {MANIFEST} && rm -f {MANIFEST}")
        left = host_files(A)
        if left:
            notes.append(f"ours: {len(left)} file(s) left on A after removing the manifest's files")
        dt, p, ch = ours_run("transfer")
        res["ours"]["transfer"], res["ours"]["transfer_rc"], res["ours"]["transfer_ch"] = dt, p.returncode, ch
        on_a = host_files(A)
        log(f"  host A has {len(on_a)} files again")
        owners = A.exec(f"cd {PACKAGES_DIR} && stat -c '%U:%G %a' -- * | sort | uniq -c").stdout.decode().split("\n")
        log(f"  owner/mode on A: {'; '.join(l.strip() for l in owners if l.strip())}")
        nres = len(list((mcache / "resolutions").glob("*.json")))
        res["ours"]["resolutions"] = nres
        log(f"  resolutions in our cache (one pip download each): {nres}")

        log(f"ours: {args.runs} second runs (nothing new) ...")
        res["ours"]["second"], res["ours"]["second_ch"], res["ours"]["second_clean"] = [], [], []
        for i in range(args.runs):
            dt, p, ch = ours_run(f"second{i + 1}")
            res["ours"]["second"].append(dt)
            res["ours"]["second_ch"].append(ch["exec"])
            m = re.search(rf"^{re.escape(A.name)} ok=\d+ changed=(\d+) failed=(\d+)", p.stdout + p.stderr, re.M)
            res["ours"]["second_clean"].append(bool(m and m.group(1) == "0" and m.group(2) == "0"
                                                    and p.returncode == 0))

        # ------------------------------------------------------------ baseline: pip download
        dl = work / "baseline-dl"
        base_env = pip_env(PIP_CACHE_DIR=str(work / "baseline-pip-cache"), PIP_DISABLE_PIP_VERSION_CHECK="1")
        log("baseline: pip download -r REQ -d DIR (fresh pip cache) ...")
        dt, p = timed([VENV_BIN / "pip", "download", "-q", "-r", req, "-d", dl], env=base_env)
        save("baseline-pip-download", p)
        if p.returncode != 0:
            log(f"pip download failed:\n    {tail(p)}")
            return 2
        res["twine"]["download"] = dt
        bfiles = files_of(dl)
        res["twine"]["files"], res["twine"]["mb"] = len(bfiles), mb(bfiles)
        log(f"  {dt:.2f}s: {len(bfiles)} files, {mb(bfiles):.1f} MB")
        only_ours = sorted({f.name for f in local} - {f.name for f in bfiles})
        only_base = sorted({f.name for f in bfiles} - {f.name for f in local})
        if only_ours or only_base:
            notes.append(f"file sets differ: only ours {only_ours}; only pip download {only_base}")

        # ------------------------------------------------------------ baseline: twine per file
        password = secrets.token_urlsafe(18)
        dt, p = timed([VENV_BIN / "invoke", "add-user", UPLOAD_USER, "--password-stdin", "--inventory", inv,
                       "--host", B.name], env=pip_env(), input=password + "\n")
        save("add-user", p)
        if p.returncode != 0:
            log(f"add-user failed:\n    {tail(p)}")
            return 2
        tw_env = pip_env(TWINE_USERNAME=UPLOAD_USER, TWINE_PASSWORD=password, TWINE_NON_INTERACTIVE="1")
        url = f"http://{B.address}:{PORT}/"

        twine_ver = subprocess.run([VENV_BIN / "twine", "--version"], capture_output=True, text=True,
                                   env=tw_env).stdout.split("(")[0].replace(" version", "").strip()
        res["twine"]["version"] = twine_ver

        def twine_all(label: str) -> tuple[float, dict[str, list[str]]]:
            """One twine process per file; outcomes: ok, 409 (exists), invalid (twine refuses), other."""
            outcome: dict[str, list[str]] = {"ok": [], "409": [], "invalid": [], "other": []}
            t0 = time.monotonic()
            for f in bfiles:
                _, p = timed([VENV_BIN / "twine", "upload", "--repository-url", url, "--disable-progress-bar",
                              "--non-interactive", f], env=tw_env, timeout=600)
                out = re.sub(r"\x1b\[[0-9;]*m", "", (p.stdout or "") + (p.stderr or ""))
                out = re.sub(r"\s+", " ", out)
                if p.returncode == 0:
                    outcome["ok"].append(f.name)
                    continue
                save(f"twine-{label}-{f.name}", p)
                # pypiserver 2.4 answers 400 (not 409) to twine for an existing file (twine#1265)
                if "409" in out or "400 Bad Request" in out:
                    outcome["409"].append(f.name)
                elif "InvalidDistribution" in out:
                    m = re.search(r"InvalidDistribution: (.*?not [\d.]+)", out)
                    outcome["invalid"].append(f"{f.name} ({m.group(1).strip() if m else 'invalid'})")
                else:
                    outcome["other"].append(f"{f.name} ({out.strip()[-160:]})")
            return time.monotonic() - t0, outcome

        log(f"baseline: one twine upload per file ({len(bfiles)} files) to {url} ...")
        dt, oc = twine_all("first")
        res["twine"]["upload"], res["twine"]["upload_fails"] = dt, len(oc["other"]) + len(oc["409"])
        res["twine"]["invalid"] = oc["invalid"]
        on_b = host_files(B)
        log(f"  {dt:.2f}s ({twine_ver}): {len(oc['ok'])} uploaded, {len(oc['invalid'])} refused by twine, "
            f"{len(oc['409']) + len(oc['other'])} failed; host B has {len(on_b)} files")
        for x in oc["invalid"] + oc["other"] + oc["409"]:
            log(f"    not uploaded: {x}")

        # ------------------------------------------------------------ baseline: pip2pi + copy
        log("baseline: pip2pi in a throwaway venv ...")
        pv = work / "pip2pi-venv"
        _, p = timed([sys.executable, "-m", "venv", pv])
        dt_inst, p = timed([pv / "bin/pip", "install", "-q", "pip2pi"], env=base_env)
        save("pip2pi-install", p)
        pip2pi_ok = False
        if p.returncode != 0:
            res["copy"]["pip2pi"] = f"pip install pip2pi failed: {last_line(p)}"
        else:
            ver = subprocess.run([pv / "bin/pip", "show", "pip2pi"], capture_output=True, text=True).stdout
            pipver = subprocess.run([pv / "bin/pip", "--version"], capture_output=True, text=True).stdout.split()[:2]
            ver = next((l.split()[1] for l in ver.splitlines() if l.startswith("Version")), "?")
            pkgdir = work / "pip2pi-packages"
            dt, p = timed([pv / "bin/pip2pi", pkgdir, "-r", req],
                          env=pip_env(PATH=f"{pv / 'bin'}:{os.environ.get('PATH', '')}",
                                      PIP_CACHE_DIR=str(work / "pip2pi-pip-cache")))
            save("pip2pi-run", p)
            out = (p.stdout or "") + (p.stderr or "")
            errline = next((l.strip() for l in reversed(out.splitlines())
                            if re.search(r"Error|error:|Traceback|No such|not found", l)), last_line(p))
            if p.returncode == 0 and pkgdir.is_dir() and (pkgdir / "simple").is_dir():
                pip2pi_ok = True
                res["copy"]["pip2pi"] = f"pip2pi {ver} (with {' '.join(pipver)}) worked: {dt:.2f}s"
                res["copy"]["pip2pi_s"] = dt
            else:
                res["copy"]["pip2pi"] = (f"pip2pi {ver} (with {' '.join(pipver)}) fails: rc {p.returncode}, "
                                         f"{errline}")
        log(f"  {res['copy']['pip2pi']}")

        has_rsync = B.exec("command -v rsync", check=False).returncode == 0
        ssh_opts = ["-i", str(B.ssh_key), "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                    "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={kh}", "-o", "LogLevel=ERROR"]
        B.exec("install -d -o deploy /tmp/x")
        if has_rsync and not shutil.which("rsync"):
            sh_p = subprocess.run(["apt-get", "install", "-y", "-q", "rsync"], capture_output=True, text=True)
            if sh_p.returncode != 0:
                has_rsync = False
        # copy the distribution files only (pip2pi's simple/ holds symlinks to them)
        src_dir = (work / "pip2pi-packages") if pip2pi_ok else dl
        if has_rsync:
            tool = "rsync"
            copy_cmd = ["rsync", "-a", "--exclude", "simple", "-e", "ssh " + " ".join(ssh_opts), f"{src_dir}/",
                        f"deploy@{B.address}:/tmp/x/"]
        else:
            tool = "scp"
            copy_cmd = ["scp", "-q", "-r", *ssh_opts, *files_of(src_dir),
                        f"deploy@{B.address}:/tmp/x/"]
        res["copy"]["tool"] = tool
        res["copy"]["label"] = ("pip2pi + " if pip2pi_ok else "pip download + ") + tool
        log(f"baseline: copy step: {tool} ({'host has rsync' if has_rsync else 'no rsync on the host'}) "
            f"of {src_dir.name}/ to deploy@B:/tmp/x/ ...")
        cur = journal_cursor(B)
        dt, p = timed(copy_cmd)
        ch = count_channels(B, cur)
        save("copy-first", p)
        res["copy"]["copy"], res["copy"]["copy_rc"], res["copy"]["copy_ch"] = dt, p.returncode, ch
        n_x = int(B.exec("ls /tmp/x | wc -l").stdout.decode().strip() or 0)
        log(f"  {dt:.2f}s rc={p.returncode} exec={ch['exec']} sftp={ch['sftp']}; /tmp/x has {n_x} entries")

        # ------------------------------------------------------------ baseline: second run
        log("baseline second run: pip download again (same DIR, re-resolves against PyPI) ...")
        dt, p = timed([VENV_BIN / "pip", "download", "-q", "-r", req, "-d", dl], env=base_env)
        save("baseline-pip-download-2", p)
        res["twine"]["download2"] = dt
        log(f"  {dt:.2f}s rc={p.returncode}, {len(files_of(dl))} files in DIR")
        # twine >= 6 refuses --skip-existing for a repository that isn't PyPI/TestPyPI
        # ("UnsupportedConfiguration ... --skip-existing"): a re-run uploads every file again
        # and pypiserver answers 400 (to twine) for each one that exists, after the body is sent.
        log("baseline second run: twine upload per file again (pypiserver answers 400 to twine for existing files) ...")
        dt, oc = twine_all("second")
        res["twine"]["upload2"] = dt
        log(f"  {dt:.2f}s: {len(oc['409'])} x 'exists' (HTTP 400 after sending the body), {len(oc['ok'])} uploaded, "
            f"{len(oc['invalid'])} refused by twine, {len(oc['other'])} other")
        cur = journal_cursor(B)
        dt, p = timed(copy_cmd)
        ch = count_channels(B, cur)
        res["copy"]["copy2"], res["copy"]["copy2_ch"] = dt, ch
        log(f"  {tool} again (nothing new): {dt:.2f}s exec={ch['exec']} sftp={ch['sftp']}")

        ok = report(res, notes, args.runs, n_req)
    return 0 if ok else 1


def fmt(x, spec=".2f") -> str:
    return "n/a" if x is None else format(x, spec)


def report(res: dict, notes: list[str], runs: int, n_req: int) -> bool:
    o, t, c = res["ours"], res["twine"], res["copy"]
    sec = o.get("second", [])
    med = statistics.median(sec) if sec else None
    chs = o.get("second_ch", [])
    print()
    print(f"Results: {n_req} pinned requirements; ours {o.get('files')} files ({fmt(o.get('mb'), '.1f')} MB), "
          f"pip download {t.get('files')} files ({fmt(t.get('mb'), '.1f')} MB)")
    rows = [("tool", "first run wall s", "transfer only s", "second run wall s", "exec channels (2nd run)")]
    ch_span = "n/a" if not chs else (str(min(chs)) if min(chs) == max(chs) else f"{min(chs)}-{max(chs)}")
    rows.append(("ours (invoke mirror)", fmt(o.get("first")), fmt(o.get("transfer")),
                 f"{fmt(med)} (median of {len(sec)}, {fmt(min(sec) if sec else None)}-{fmt(max(sec) if sec else None)})",
                 ch_span))
    t_first = (t["download"] + t["upload"]) if "upload" in t else None
    t_second = (t["download2"] + t["upload2"]) if "upload2" in t else None
    rows.append(("pip download + twine upload per file", fmt(t_first), fmt(t.get("upload")),
                 f"{fmt(t_second)} (1 run: pip {fmt(t.get('download2'))} + twine, all 'exists', "
                 f"{fmt(t.get('upload2'))})", "0 (HTTP)"))
    if "copy" in c:
        first_dl = c.get("pip2pi_s", t.get("download"))
        cch = c.get("copy2_ch") or {}
        rows.append((c["label"] + " (pip2pi index not built)" if "pip2pi_s" not in c else c["label"],
                     fmt(first_dl + c["copy"]), fmt(c["copy"]),
                     f"{fmt(t.get('download2', 0) + c.get('copy2', 0))} (1 run: pip {fmt(t.get('download2'))} "
                     f"+ {c['tool']} {fmt(c.get('copy2'))})",
                     f"{cch.get('exec', 'n/a')} exec + {cch.get('sftp', 'n/a')} sftp"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, r in enumerate(rows):
        print("| " + " | ".join(x.ljust(w) for x, w in zip(r, widths)) + " |")
        if i == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    fc, tc = o.get("first_ch", {}), o.get("transfer_ch", {})
    print(f"  ours exec channels: first run {fc.get('exec')}, transfer-only run {tc.get('exec')} "
          f"(ssh conns {fc.get('conns')}/{tc.get('conns')})")
    print(f"  baseline download part: pip download {fmt(t.get('download'))} s "
          f"(compare with ours first run minus transfer: {fmt(o['first'] - o['transfer'] if 'transfer' in o else None)} s)")
    print(f"  pip2pi: {c.get('pip2pi')}")
    print(f"  ours: {o.get('resolutions')} pip resolutions in the first run (targets: this machine + the host's own)")
    if t.get("invalid"):
        print(f"  {t.get('version')} refused {len(t['invalid'])} file(s) before sending (not uploaded, not in its "
              f"time): {'; '.join(t['invalid'])}")
    for n in notes:
        print(f"  note: {n}")
    print()
    print("Targets (issue 5):")
    checks = []
    checks.append(("ours second run (nothing new) < 2 s (median)", None if med is None else med < 2.0,
                   f"{fmt(med)} s"))
    ratio = t["upload"] / o["transfer"] if "upload" in t and o.get("transfer") else None
    checks.append(("ours first-run transfer >= 5x faster than one twine upload per file",
                   None if ratio is None else ratio >= 5,
                   f"{fmt(t.get('upload'))} s / {fmt(o.get('transfer'))} s = {fmt(ratio)}x"))
    bad = []
    if o.get("first_rc"):
        bad.append(f"ours first run exited {o['first_rc']}")
    if o.get("transfer_rc"):
        bad.append(f"ours transfer run exited {o['transfer_rc']}")
    if not all(o.get("second_clean", [False])):
        bad.append("a second run reported changes or failed")
    if t.get("upload_fails"):
        bad.append(f"{t['upload_fails']} twine uploads failed (other than twine refusing a file's metadata)")
    checks.append(("all runs succeeded, every second run reported changed=0", not bad, "; ".join(bad) or "yes"))
    all_pass = True
    for name, okv, val in checks:
        st = "n/a " if okv is None else ("PASS" if okv else "FAIL")
        all_pass &= okv is not False
        print(f"  [{st}] {name}: {val}")
    return all_pass


if __name__ == "__main__":
    sys.exit(main())
