"""backup and restore: the folder's manifest and verification, and the steps' plans from
real files (the real runs are tests/integration/test_backup.py)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from provision import backup, htpasswd
from provision.errors import BackupError, StepError
from provision.roles.backup.steps import BackupFiles
from provision.roles.restore.steps import FileHashes, RestoreAccounts, RestorePackages, RestoreYanked
from provision.steps.base import Command, Upload, WriteFile
from tests.unit.conftest import ask, distro_facts

FACTS = distro_facts("debian-12")


def folder_with(tmp_path: Path, files: dict[str, bytes]) -> Path:
    folder = tmp_path / "bk"
    backup.ensure_dir(folder, "pypi1")
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    backup.write_manifest(folder, {n: hashlib.sha256(d).hexdigest() for n, d in files.items()})
    return folder


def test_verify_names_what_is_missing_or_corrupt(tmp_path):
    folder = folder_with(tmp_path, {"packages/a-1.0.tar.gz": b"a", "packages/b-1.0.tar.gz": b"b", "htpasswd": b"u:h\n"})
    assert oct(folder.stat().st_mode & 0o777) == "0o700"
    entries, wrong = backup.verify(folder)
    assert len(entries) == 3 and wrong == []
    (folder / "packages/a-1.0.tar.gz").write_bytes(b"A")
    (folder / "htpasswd").unlink()
    assert backup.verify(folder)[1] == ["htpasswd is missing", "packages/a-1.0.tar.gz does not match its sha256 (corrupt)"]
    for bad in ("x  /etc/shadow\n", f"{'0' * 64}  ../../etc/shadow\n", f"{'0' * 64} one-space\n",
                f"{'0' * 64}  packages//home/op/.ssh/id_rsa\n", f"{'0' * 64}  packages/a/../../x\n",
                f"{'0' * 64}  packages/..\n", f"{'0' * 64}  packages/.hidden\n", f"{'0' * 64}  other.txt\n"):
        (folder / backup.MANIFEST).write_text(bad)
        with pytest.raises(BackupError, match="is not a manifest line"):
            backup.read_manifest(folder)
    with pytest.raises(BackupError, match="not a backup folder"):
        backup.read_manifest(tmp_path)
    # a link in the folder is not sent: it is named, whatever it points at
    good = folder_with(tmp_path / "links", {"packages/a-1.0.tar.gz": b"a"})
    (good / "packages/a-1.0.tar.gz").unlink()
    (tmp_path / "secret").write_bytes(b"a")
    (good / "packages/a-1.0.tar.gz").symlink_to(tmp_path / "secret")
    assert backup.verify(good)[1] == ["packages/a-1.0.tar.gz is not a regular file"]
    # one folder, one host
    with pytest.raises(BackupError, match="holds the backup of pypi1: give pypi2 its own folder"):
        backup.save_state(good, "pypi1", {}) or backup.ensure_dir(good, "pypi2")


def test_file_hashes_reads_only_the_named_files_there(tmp_path):
    (tmp_path / "a-1.0.tar.gz").write_bytes(b"a")
    (tmp_path / "it's $(odd)-1.0.tar.gz").write_bytes(b"o")
    got = ask(FileHashes(str(tmp_path), ("a-1.0.tar.gz", "gone-1.0.tar.gz", "it's $(odd)-1.0.tar.gz")))
    assert got == {"a-1.0.tar.gz": hashlib.sha256(b"a").hexdigest(),
                   "it's $(odd)-1.0.tar.gz": hashlib.sha256(b"o").hexdigest()}
    assert ask(FileHashes(str(tmp_path / "none"), ("a-1.0.tar.gz",))) == {}


def test_restore_sends_what_is_missing_and_refuses_to_replace(tmp_path):
    folder = folder_with(tmp_path, {"packages/a-1.0.tar.gz": b"a", "packages/b-1.0.tar.gz": b"b"})
    manifest = backup.read_manifest(folder)
    step = RestorePackages(folder, manifest, "/srv/pypi/packages", "pypi")
    plan = step.plan(FACTS, {"have": {"a-1.0.tar.gz": hashlib.sha256(b"a").hexdigest()}})
    upload, verify = plan.actions
    assert isinstance(upload, Upload) and [f.name for f in upload.files] == ["b-1.0.tar.gz"]
    assert (upload.owner, upload.mode) == ("pypi", 0o644)
    assert isinstance(verify, Command) and "sha256sum -c --quiet" in verify.sh
    assert f"{hashlib.sha256(b'b').hexdigest()}  b-1.0.tar.gz" in verify.sh
    assert not step.plan(FACTS, {"have": {n.split("/")[1]: s for n, s in manifest.items()}}).changed
    with pytest.raises(StepError, match="1 file on the host differ from the backup's: a-1.0.tar.gz; nothing"):
        step.plan(FACTS, {"have": {"a-1.0.tar.gz": "0" * 64}})
    forced = RestorePackages(folder, manifest, "/srv/pypi/packages", "pypi", overwrite=True)
    assert [f.name for f in forced.plan(FACTS, {"have": {"a-1.0.tar.gz": "0" * 64}}).actions[0].files] == \
        ["b-1.0.tar.gz", "a-1.0.tar.gz"]


def test_restore_accounts_and_yanks_merge(tmp_path):
    old = htpasswd.hash_password("pw", rounds=4)
    folder = folder_with(tmp_path, {"htpasswd": f"alice:{old}\nbob:{old}\n".encode(),
                                    "yanked.json": json.dumps({"a": {"1.0": "bad"}}).encode()})
    path = tmp_path / "host-htpasswd"
    path.write_text("bob:$2y$05$other\n")
    path.chmod(0o640)
    step = RestoreAccounts(folder, str(path), "pypi")
    plan = step.plan(FACTS, {"file": ask(step.probes()["file"])})
    (write,) = plan.actions
    assert plan.note == "add alice" and write.secret and write.mode == 0o640
    assert htpasswd.parse(write.content.decode()) == {"bob": "$2y$05$other", "alice": old}
    forced = RestoreAccounts(folder, str(path), "pypi", overwrite=True)
    assert htpasswd.parse(forced.plan(FACTS, {"file": ask(forced.probes()["file"])}).actions[0].content.decode())["bob"] == old
    fresh = RestoreAccounts(folder, str(tmp_path / "none"), "pypi").plan(FACTS, {"file": None})
    assert (fresh.actions[0].owner, fresh.actions[0].group, fresh.actions[0].mode) == ("root", "pypi", 0o640)
    yanked = tmp_path / "yanked.json"
    yanked.write_text(json.dumps({"b": {"2.0": ""}}))
    ystep = RestoreYanked(folder, str(yanked))
    (w,) = ystep.plan(FACTS, {"file": ask(ystep.probes()["file"])}).actions
    assert isinstance(w, WriteFile) and json.loads(w.content) == {"a": {"1.0": "bad"}, "b": {"2.0": ""}}


def test_backup_sends_only_new_settled_files(tmp_path):
    folder = tmp_path / "bk"
    step = BackupFiles(folder, "/srv/pypi/packages", "/etc/pypiserver/htpasswd", "/r.json", "/y.json")
    now = 1_800_000_000.0
    probed = {"now": now, "files": [("a-1.0.tar.gz", 1, now - 60), ("b-1.0.tar.gz", 2, now - 0.5)],
              "htpasswd": None, "record": None, "yanked": None}
    plan = step.plan(FACTS, probed)
    assert plan.note.startswith("send 1 file (0.0 MB); 0 unchanged") and "1 file still being written" in plan.note
    # as if the first was taken: nothing new
    backup.ensure_dir(folder, "")
    (folder / "packages/a-1.0.tar.gz").write_bytes(b"a")
    backup.save_state(folder, "", {"a-1.0.tar.gz": [1, now - 60, hashlib.sha256(b"a").hexdigest()]})
    backup.write_manifest(folder, {"packages/a-1.0.tar.gz": hashlib.sha256(b"a").hexdigest(), "yanked.json":
                                   hashlib.sha256(b"").hexdigest()})
    (folder / "yanked.json").write_bytes(b"")
    again = step.plan(FACTS, probed)
    assert not again.changed and again.note == "nothing new (1 file); 1 file still being written"
    # a local copy cut short is sent again
    (folder / "packages/a-1.0.tar.gz").write_bytes(b"")
    assert step.plan(FACTS, probed).note.startswith("send 1 file")
