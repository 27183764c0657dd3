"""The mirror's control side: targets, pip error parsing, the cache; and its step as data."""

import time
from pathlib import Path

import pytest

from provision import mirror, pipdownload, steps
from provision.roles.mirror import steps as mirror_steps
from provision.roles.mirror import MirrorRole

from .conftest import distro_facts, probed


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


def _ls(*entries):
    """What the step's find prints: `SIZE NAME` entries, NUL-separated."""
    out = []
    for e in entries:
        out.append(f"{e[1]} {e[0]}" if isinstance(e, tuple) else f"{e.stat().st_size} {e.name}")
    return "\0".join(out) + "\0"


def mirrored(*args, **kwargs):
    """A MirroredFiles step with its files prepared (what the runner does before planning)."""
    step = mirror_steps.MirroredFiles(*args, **kwargs)
    step.prepare(distro_facts("debian-12"))
    return step


def _files(tmp_path, *specs):
    out = []
    for name, size in specs:
        f = tmp_path / name
        f.write_bytes(b"x" * size)
        out.append(f)
    return out


def test_mirrored_files_send_missing_keep_differing_prune_own(tmp_path):
    a, b, c = _files(tmp_path, ("a-1-py3-none-any.whl", 10), ("b-1-py3-none-any.whl", 20), ("c-1.tar.gz", 30))
    step = mirrored("/srv/pypi/packages", lambda facts: [a, b, c], "pypi")
    facts = distro_facts("debian-12")
    placed = f"{a.name}\n{b.name}\n"
    plan = step.plan(facts, probed(step, {"ls": _ls(a, (b.name, 99)), "manifest": placed}))
    up, mkdir, manifest = plan.actions
    assert up.files == [c] and (up.owner, up.mode) == ("pypi", 0o644)  # b differs: kept
    assert manifest.path == mirror_steps.MirroredFiles.MANIFEST and manifest.content == (placed + c.name + "\n").encode()
    assert "kept 1 that differ (use --overwrite)" in plan.note
    assert plan.note.startswith("3 files, 1 present, send 1 file, 0.0 MB: c-1.tar.gz")  # names what it sends
    over = mirrored("/srv/pypi/packages", lambda f: [a, b, c], "pypi", overwrite=True)
    assert over.plan(facts, probed(over, {"ls": _ls(a, (b.name, 99)), "manifest": placed})).actions[0].files == [c, b]
    done = step.plan(facts, probed(step, {"ls": _ls(a, b, c), "manifest": placed + c.name + "\n"}))
    assert not done.changed and done.note == "3 files, 3 present"
    prune = mirrored("/srv/pypi/packages", lambda f: [a], "pypi", prune=True)
    plan = prune.plan(facts, probed(prune, {"ls": _ls(a, b, ("uploaded-1.whl", 5)),
                              "manifest": f"{a.name}\n{b.name}\ngone-1.whl\n"}))
    cmds = [x.sh for x in plan.actions if isinstance(x, steps.Command)]
    assert "cd /srv/pypi/packages && rm -f -- b-1-py3-none-any.whl" in cmds  # never uploaded-1.whl
    # the manifest lists what mirror placed and still exists: gone-1.whl was removed by hand
    assert plan.actions[-1].content == b"a-1-py3-none-any.whl\n"
    assert "forget 1 removed by hand" in plan.note


def test_a_project_with_uploads_is_private(tmp_path):
    """The review's case: secpkg 1.0 uploaded; mirroring secpkg>=1.0 must not add the public
    1.1 beside it, --overwrite must not replace the upload, --prune must not delete it."""
    public, dep = _files(tmp_path, ("secpkg-1.1.tar.gz", 40), ("six-1.16.0-py2.py3-none-any.whl", 11))
    uploaded = ("secpkg-1.0.tar.gz", 35)
    facts = distro_facts("debian-12")
    for kwargs in ({}, {"overwrite": True}, {"overwrite": True, "prune": True}):
        step = mirrored("/srv/pypi/packages", lambda f: [public, dep], "pypi", **kwargs)
        plan = step.plan(facts, probed(step, {"ls": _ls(uploaded), "manifest": ""}))
        sent = [f.name for a in plan.actions if isinstance(a, steps.Upload) for f in a.files]
        assert sent == [dep.name], kwargs
        assert not [a for a in plan.actions if isinstance(a, steps.Command) and "rm -f" in a.sh]
        manifest = [a for a in plan.actions if isinstance(a, steps.WriteFile)][0].content
        assert manifest == dep.name.encode() + b"\n"  # never the upload
        assert "skipped private project secpkg (uploads here: mirror adds nothing to it)" in plan.note
    # an uploaded file with a name mirror also wants: kept as it is, even with --overwrite
    same = _files(tmp_path, ("secpkg-1.0.tar.gz", 99))[0]
    step = mirrored("/srv/pypi/packages", lambda f: [same], "pypi", overwrite=True, prune=True)
    assert not step.plan(facts, probed(step, {"ls": _ls(uploaded), "manifest": ""})).changed


def test_manifest_and_listing_are_name_safe(tmp_path):
    """Names with spaces or a leading '-' survive the listing, the manifest and the prune."""
    odd = ("-rf-1.0.tar.gz", 3)
    spaced = ("my pkg-1.0.tar.gz", 4)
    keep = _files(tmp_path, ("keep-1.0.tar.gz", 5))[0]
    step = mirrored("/srv/pypi/packages", lambda f: [keep], "pypi", prune=True)
    plan = step.plan(distro_facts("debian-12"), probed(step, {"ls": _ls(keep, odd, spaced), "manifest": f"{keep.name}\n{odd[0]}\n{spaced[0]}\n"}))
    rm = [a.sh for a in plan.actions if isinstance(a, steps.Command) and "rm -f" in a.sh]
    assert rm == ["cd /srv/pypi/packages && rm -f -- -rf-1.0.tar.gz 'my pkg-1.0.tar.gz'"]


@pytest.mark.network
def test_second_resolution_runs_no_pip(tmp_path, monkeypatch):
    from tests.helpers import pypi_reachable

    if not pypi_reachable():
        pytest.skip("PyPI is not reachable from here")
    req = tmp_path / "requirements.txt"
    req.write_text("six==1.16.0\n")
    first = mirror.resolve(req, mirror.DownloadTarget(), tmp_path / "cache")
    assert [f.name for f in first.files] == ["six-1.16.0-py2.py3-none-any.whl"] and first.downloaded == 1
    monkeypatch.setattr(pipdownload.subprocess, "run", lambda *a, **k: pytest.fail("pip ran again"))
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
