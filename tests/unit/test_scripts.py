"""The scripts the runner sends, run for real by this machine's sh (no host needed)."""

import grp
import os
import pwd
import subprocess

from provision.facts import MARK
from provision.runner import apply_script, tar_producer, upload_command
from provision.steps import Command, Plan, Upload, WriteFile

USER = pwd.getpwuid(os.getuid()).pw_name
GROUP = grp.getgrgid(os.getgid()).gr_name


def run_sh(script: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", script] if stdin else ["sh", "-s"],
                          input=stdin or script.encode(), capture_output=True, timeout=30)


def test_apply_writes_files_atomically_with_owner_and_mode(tmp_path):
    target = tmp_path / "conf"
    target.write_text("old\n")
    content = bytes(range(256)) * 100 + b"\n__PROVISION_EOF__ inside is fine\n"
    script = apply_script([(0, Plan([WriteFile(str(target), content, USER, GROUP, 0o640)])),
                           (1, Plan([Command(f"echo second > {tmp_path}/second")]))])
    res = run_sh(script)
    assert res.returncode == 0, res.stderr
    assert target.read_bytes() == content
    assert oct(target.stat().st_mode & 0o777) == "0o640"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["conf", "second"]  # no temp file left
    assert f"{MARK}done 0 0" in res.stdout.decode() and f"{MARK}done 1 0" in res.stdout.decode()


def test_a_failing_step_stops_the_script_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "conf"
    target.write_text("old\n")
    script = apply_script([
        (0, Plan([Command("echo 'E: Unable to locate package python3-venv' >&2; exit 100")])),
        (1, Plan([WriteFile(str(target), b"new\n", USER, GROUP, 0o644)])),
    ])
    res = run_sh(script)
    out = res.stdout.decode()
    assert res.returncode == 100
    assert "E: Unable to locate package python3-venv" in out  # step output captured for the report
    assert f"{MARK}done 0 100" in out and f"{MARK}done 1" not in out
    assert target.read_text() == "old\n"


def test_a_failed_write_leaves_nothing_half_written(tmp_path):
    target = tmp_path / "conf"
    target.write_text("old\n")
    script = apply_script([(0, Plan([WriteFile(str(target), b"new\n", "no-such-user-x", GROUP, 0o644)]))])
    res = run_sh(script)
    assert res.returncode != 0
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["conf"]


def test_upload_streams_a_tar_and_files_appear_whole(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    files = []
    for i in range(3):
        f = src / f"pkg{i}-1.0-py3-none-any.whl"
        f.write_bytes(os.urandom(50_000 + i))
        files.append(f)
    dest = tmp_path / "dest"
    chunks = []
    tar_producer(files)(chunks.append)
    res = run_sh(upload_command(Upload(files, str(dest), USER, GROUP, 0o644)), stdin=b"".join(chunks))
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in dest.iterdir()) == [f.name for f in files]  # no .incoming left
    for f in files:
        assert (dest / f.name).read_bytes() == f.read_bytes()
        assert oct((dest / f.name).stat().st_mode & 0o777) == "0o644"


def test_read_modify_write_refuses_a_file_changed_underneath(tmp_path):
    import hashlib

    target = tmp_path / "htpasswd"
    target.write_text("alice:$2b$12$x\n")
    read = hashlib.sha256(b"alice:$2b$12$x\n").hexdigest()
    write = WriteFile(str(target), b"alice:$2b$12$x\nbob:$2b$12$y\n", USER, GROUP, 0o640,
                      expect_sha256=read)
    target.write_text("alice:$2b$12$x\ncarol:$2b$12$z\n")  # another run got there first
    res = run_sh(apply_script([(0, Plan([write]))]))
    assert res.returncode == 75
    assert "changed while this run read it: run again" in res.stdout.decode()
    assert "carol" in target.read_text()  # nothing lost
    target.write_text("alice:$2b$12$x\n")
    assert run_sh(apply_script([(0, Plan([write]))])).returncode == 0
    assert "bob" in target.read_text()


def test_upload_places_names_that_look_like_options(tmp_path):
    """A file named `-rf-1.0.tar.gz` (or with a space) is placed like any other: every
    command in the loop ends its options with `--` and names files as ./NAME."""
    src = tmp_path / "src"
    src.mkdir()
    files = []
    for name in ("-rf-1.0.tar.gz", "my pkg-1.0.tar.gz", "--help-1.0.tar.gz", "ok-1.0.tar.gz"):
        (src / name).write_bytes(name.encode())
        files.append(src / name)
    dest = tmp_path / "dest"
    chunks = []
    tar_producer(files)(chunks.append)
    res = subprocess.run(["sh", "-c", upload_command(Upload(files, str(dest), USER, GROUP, 0o640))],
                         input=b"".join(chunks), capture_output=True, timeout=30)
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in dest.iterdir()) == sorted(f.name for f in files)
    assert all(oct(p.stat().st_mode & 0o777) == "0o640" for p in dest.iterdir())


def test_a_conflicting_change_is_refused_with_a_quoted_path(tmp_path):
    """The read-modify-write check quotes the path: a quote in it runs nothing."""
    target = tmp_path / "x'$(touch pwned)'"
    target.write_text("old\n")
    script = apply_script([(0, Plan([WriteFile(str(target), b"new\n", USER, GROUP, 0o640,
                                               expect_sha256="0" * 64)]))])
    res = subprocess.run(["sh", "-s"], input=script.encode(), capture_output=True, timeout=30,
                         cwd=tmp_path)
    assert "changed while this run read it" in res.stdout.decode()
    assert target.read_text() == "old\n" and not (tmp_path / "pwned").exists()


def test_a_failure_inside_an_and_list_fails_the_step():
    """set -e alone lets `false && true` pass: each command is its own group that exits."""
    import subprocess

    from provision.runner import apply_script
    from provision.steps import Command, Plan

    script = apply_script([(0, Plan([Command("false && true"), Command("echo after")], "x"))])
    res = subprocess.run(["sh", "-s"], input=script, capture_output=True, text=True, timeout=10)
    assert res.returncode != 0 and "after" not in res.stdout
