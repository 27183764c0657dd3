"""backup and restore on real hosts: a host backed up, destroyed and restored onto a fresh
one (every sha256 identical, the old account uploads, pip installs); a backup while uploads
go on; a corrupt backup refused before anything is touched."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.external import write_inventory
from tests.helpers import ca_file, clean_env, index, invoke, make_wheel, recap, sh

pytestmark = pytest.mark.integration
PASSWORD = "Backup-pw-42"


def upload(host, wheel, password=PASSWORD):
    env = {**clean_env(), "TWINE_USERNAME": "keeper", "TWINE_PASSWORD": password}
    return subprocess.run([sys.executable, "-m", "twine", "upload", "--non-interactive", "--disable-progress-bar",
                           "--repository-url", index(host), "--cert", ca_file(), str(wheel)],
                          capture_output=True, text=True, env=env, timeout=120)


def host_sums(host) -> dict[str, str]:
    out = sh(host, "cd /srv/pypi/packages && sha256sum -- *").stdout
    return {line.split("  ", 1)[1]: line.split()[0] for line in out.splitlines()}


def local_sums(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (folder / "packages").iterdir()
            if not p.name.startswith(".")}


@pytest.fixture(scope="module")
def two(testhost_factory, tmp_path_factory):
    hosts = testhost_factory(2)
    tmp = tmp_path_factory.mktemp("backup")
    inv = str(write_inventory(hosts, tmp / "inventory.yml", known_hosts=str(tmp / "known_hosts")))
    yield hosts, inv, tmp
    for h in hosts:
        h.destroy()


def test_backup_destroy_restore_on_a_fresh_host(two):
    (old, new), inv, tmp = two
    args = ["--inventory", inv, "-H", old.name]
    assert invoke("deploy", *args).returncode == 0
    assert invoke("add-user", "keeper", "--password-stdin", *args, input=PASSWORD + "\n").returncode == 0
    assert invoke("yank", "--help").returncode == 0
    for i in range(6):
        assert upload(old, make_wheel(tmp, f"saved-pkg{i % 3}", f"1.{i}", payload=5000)).returncode == 0
    assert invoke("yank", "saved-pkg0", "1.0", "--reason", "bad build", *args).returncode == 0
    import time
    time.sleep(2.1)                  # a file modified in the last 2 s may still be being written
    folder = tmp / "bk"
    first = invoke("backup", "--to", str(folder), *args)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "send 6 files" in first.stdout
    assert local_sums(folder) == host_sums(old)
    assert subprocess.run(["sha256sum", "-c", "--quiet", "MANIFEST.sha256"], cwd=folder).returncode == 0
    assert oct((folder / "htpasswd").stat().st_mode & 0o777) == "0o600"
    assert oct(folder.stat().st_mode & 0o777) == "0o700"
    again = invoke("backup", "--to", str(folder), *args)
    assert "nothing new (6 files)" in again.stdout and recap(again.stdout, old.name)[1] == 0, again.stdout
    before = host_sums(old)
    old.destroy()                                               # the server is gone

    restored = invoke("restore", "--from", str(folder), "--inventory", inv, "-H", new.name)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert "send 6 files" in restored.stdout and "add keeper" in restored.stdout
    assert host_sums(new) == before
    # the old account, its old password
    assert upload(new, make_wheel(tmp, "after-restore", "1.0")).returncode == 0
    assert upload(new, make_wheel(tmp, "after-wrong", "1.0"), password="nope").returncode != 0
    # pip installs from it; the yank came along
    pip = subprocess.run([sys.executable, "-m", "pip", "download", "--no-cache-dir", "--no-deps", "-d",
                          str(tmp / "dl"), "--index-url", f"{index(new)}simple/", "--cert", ca_file(), "saved-pkg0"],
                         capture_output=True, text=True, env=clean_env(), timeout=120)
    assert pip.returncode == 0 and "saved_pkg0-1.3" in pip.stdout + pip.stderr, pip.stdout + pip.stderr
    assert "bad build" in sh(new, "cat /var/lib/provision/yanked-pypiserver.json").stdout
    # a second restore changes nothing; a file changed on the host is never replaced silently
    twice = invoke("restore", "--from", str(folder), "--inventory", inv, "-H", new.name)
    assert twice.returncode == 0 and "all 6 there, same sha256" in twice.stdout
    victim = sorted(before)[0]
    sh(new, f"echo tampered >> /srv/pypi/packages/{victim}")
    refused = invoke("restore", "--from", str(folder), "--inventory", inv, "-H", new.name)
    assert refused.returncode == 2 and f"differ from the backup's: {victim}" in refused.stdout
    forced = invoke("restore", "--from", str(folder), "--overwrite", "--inventory", inv, "-H", new.name)
    assert forced.returncode == 0 and host_sums(new)[victim] == before[victim]


def test_a_corrupt_backup_is_refused_before_the_host_is_touched(two):
    (_, new), inv, tmp = two
    folder = tmp / "bk"
    victim = sorted((folder / "packages").iterdir())[1]
    good = victim.read_bytes()
    victim.write_bytes(good[:-1] + b"x")
    try:
        before = sh(new, "ls -l --full-time /srv/pypi/packages").stdout
        res = invoke("restore", "--from", str(folder), "--inventory", inv, "-H", new.name)
        assert res.returncode == 2
        assert f"packages/{victim.name} does not match its sha256 (corrupt)" in res.stderr
        assert "nothing was touched" in res.stderr and res.stdout == ""
        assert sh(new, "ls -l --full-time /srv/pypi/packages").stdout == before
    finally:
        victim.write_bytes(good)


def test_a_backup_while_uploads_go_on(two):
    (_, host), inv, tmp = two
    args = ["--inventory", inv, "-H", host.name]
    wheels = [make_wheel(tmp, "busy-pkg", f"2.{i}", payload=200_000) for i in range(30)]
    done = threading.Event()

    def uploads():
        for w in wheels:
            upload(host, w)
        done.set()
    loop = threading.Thread(target=uploads)
    loop.start()
    folder = tmp / "busy"
    runs = 0
    while not done.is_set() or runs < 1:
        res = invoke("backup", "--to", str(folder), *args)
        runs += 1
        assert res.returncode == 0, res.stdout + res.stderr
        # whatever was taken verifies, whenever it was taken
        assert subprocess.run(["sha256sum", "-c", "--quiet", "MANIFEST.sha256"], cwd=folder).returncode == 0
    loop.join()
    import time
    time.sleep(2.5)                  # past the settle time of the last upload
    last = invoke("backup", "--to", str(folder), *args)
    assert last.returncode == 0
    assert runs >= 2, "the uploads ended before a second backup ran"
    assert local_sums(folder) == host_sums(host)
    manifest = (folder / "MANIFEST.sha256").read_text()
    assert all(f"packages/{w.name}" in manifest for w in wheels)
