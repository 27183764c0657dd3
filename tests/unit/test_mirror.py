"""The mirror's control side: targets, pip error parsing, the cache; and its step as data."""

import time
from pathlib import Path

import pytest

from provision import mirror, steps
from provision.roles.mirror import MirrorRole

from .conftest import distro_facts


@pytest.mark.parametrize("output,culprit", [
    ("ERROR: Could not find a version that satisfies the requirement nosuch==1.0 (from versions: none)\n"
     "ERROR: No matching distribution found for nosuch==1.0", "nosuch==1.0"),
    ("ERROR: Cannot install a==1 and b==2 because these package versions have conflicting dependencies.",
     "a==1 and b==2"),
    ("ERROR: HTTP error 503 while getting https://...", ""),
])
def test_which_requirement_pip_failed_on(output, culprit):
    assert mirror._culprit(output) == culprit


def test_targets_this_machine_the_host_and_the_asked(tmp_path):
    role = MirrorRole(tmp_path / "r.txt", ["3.6"], ["manylinux2014_x86_64"])
    targets = role.targets(distro_facts("centos-7"))
    assert targets[0].native
    assert targets[1].python == "3.6" and "manylinux2014_x86_64" in targets[1].platforms
    assert targets[1].platforms[0] == "manylinux_2_17_x86_64"  # the host's own glibc 2.17
    assert targets[2] == mirror.DownloadTarget("3.6", ("manylinux2014_x86_64",))
    assert mirror._pip_args(targets[2]) == ["--only-binary=:all:", "--implementation", "cp",
                                            "--python-version", "3.6", "--platform", "manylinux2014_x86_64"]


def _ls(files):
    return "\n".join(f"{f.name} {f.stat().st_size}" for f in files)


def test_mirrored_files_send_missing_keep_differing_prune_own(tmp_path):
    a, b, c = (tmp_path / n for n in ("a-1-py3-none-any.whl", "b-1-py3-none-any.whl", "c-1.tar.gz"))
    for f, size in ((a, 10), (b, 20), (c, 30)):
        f.write_bytes(b"x" * size)
    step = steps.MirroredFiles("/srv/pypi/packages", lambda facts: [a, b, c], "pypi")
    facts = distro_facts("debian-12")
    plan = step.plan(facts, {"ls": f"{a.name} 10\n{b.name} 99\nuploaded-1.whl 5", "manifest": ""})
    mkdir, up, manifest = plan.actions
    assert up.files == [c] and (up.owner, up.mode) == ("pypi", 0o644)  # b differs: kept
    assert manifest.path == steps.MirroredFiles.MANIFEST and manifest.content == b"c-1.tar.gz\n"
    assert "kept 1 that differ (use --overwrite)" in plan.note
    over = steps.MirroredFiles("/srv/pypi/packages", lambda f: [a, b, c], "pypi", overwrite=True)
    assert over.plan(facts, {"ls": f"{a.name} 10\n{b.name} 99", "manifest": ""}).actions[1].files == [c, b]
    done = step.plan(facts, {"ls": _ls([a, b, c]), "manifest": "a-1-py3-none-any.whl\n"})
    assert not done.changed and done.note == "3 files, 3 present"
    prune = steps.MirroredFiles("/srv/pypi/packages", lambda f: [a], "pypi", prune=True)
    plan = prune.plan(facts, {"ls": _ls([a, b]) + "\nuploaded-1.whl 5",
                              "manifest": f"{a.name}\n{b.name}\ngone-1.whl\n"})
    cmds = [x.sh for x in plan.actions if isinstance(x, steps.Command)]
    assert "cd /srv/pypi/packages && rm -f -- b-1-py3-none-any.whl" in cmds  # never uploaded-1.whl
    assert plan.actions[-1].content == b"a-1-py3-none-any.whl\ngone-1.whl\n"


@pytest.mark.network
def test_second_resolution_runs_no_pip(tmp_path, monkeypatch):
    from tests.helpers import pypi_reachable

    if not pypi_reachable():
        pytest.skip("PyPI is not reachable from here")
    req = tmp_path / "requirements.txt"
    req.write_text("six==1.16.0\n")
    first = mirror.resolve(req, mirror.DownloadTarget(), tmp_path / "cache")
    assert [f.name for f in first.files] == ["six-1.16.0-py2.py3-none-any.whl"] and first.downloaded == 1
    monkeypatch.setattr(mirror.subprocess, "run", lambda *a, **k: pytest.fail("pip ran again"))
    start = time.monotonic()
    again = mirror.resolve(req, mirror.DownloadTarget(), tmp_path / "cache")
    assert again.files == first.files and again.downloaded == 0
    assert time.monotonic() - start < 0.2
    assert Path(again.files[0]).is_file()


def test_native_downloads_cover_a_host_like_this_machine():
    import platform
    import sys

    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    glibc = platform.libc_ver()[1]
    assert mirror.native_covers(here, glibc, platform.machine())
    assert mirror.native_covers(here, "2.99", platform.machine())  # newer glibc loads ours
    assert not mirror.native_covers(here, "2.17", platform.machine())  # CentOS 7: maybe not
    assert not mirror.native_covers("3.6", glibc, platform.machine())
    assert not mirror.native_covers(here, glibc, "aarch64" if platform.machine() != "aarch64" else "x86_64")


def test_included_files_are_part_of_the_resolution_key(tmp_path):
    (tmp_path / "base.txt").write_text("six\n")
    (tmp_path / "c.txt").write_text("six<2\n")
    req = tmp_path / "requirements.txt"
    req.write_text("-r base.txt\n--constraint c.txt\nrequests\n")
    texts = mirror._included(req, set())
    assert texts == ["-r base.txt\n--constraint c.txt\nrequests\n", "six\n", "six<2\n"]
    key = mirror._key(texts, mirror.DownloadTarget())
    (tmp_path / "c.txt").write_text("six<1.16\n")
    assert mirror._key(mirror._included(req, set()), mirror.DownloadTarget()) != key
