"""`invoke mirror` against a real deployed host that has no internet, then a real pip
client that installs from that server alone (its fallback to PyPI is disabled)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.external import write_inventory
from tests.helpers import ca_file, clean_env, http_get, index, invoke, make_wheel, pypi_reachable, recap, sh

PORT = 8000
PACKAGES = "/srv/pypi/packages"
REQS = "requests==2.32.3\nsix==1.16.0\n"


pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not pypi_reachable(), reason="PyPI is not reachable from here")]


@pytest.fixture(scope="module")
def served(testhost_factory, tmp_path_factory):
    (host,) = testhost_factory(1)
    tmp = tmp_path_factory.mktemp("mirror")
    inv = str(write_inventory([host], tmp / "inventory.yml", known_hosts=str(tmp / "known_hosts"),
                              pypiserver_extra_args="--disable-fallback"))
    res = invoke("deploy", "--inventory", inv, "--host", host.name)
    assert res.returncode == 0, res.stdout + res.stderr
    req = tmp / "requirements.txt"
    req.write_text(REQS)
    return host, inv, req, tmp


def listing(host) -> set[str]:
    return set(sh(host, f"ls {PACKAGES}").stdout.split())


def mirror(inv, req, *args):
    return invoke("mirror", "-r", str(req), "--inventory", inv, *args)


def test_mirror_then_a_second_run_sends_and_downloads_nothing(served):
    host, inv, req, _ = served
    first = mirror(inv, req, "--host", host.name)
    assert first.returncode == 0, first.stdout + first.stderr
    assert recap(first.stdout, host.name)[1:] == (1, 0)
    files = listing(host)
    for name in ("requests-2.32.3-py3-none-any.whl", "six-1.16.0-py2.py3-none-any.whl"):
        assert name in files
    assert any(f.startswith("charset_normalizer-") and "cp311" in f for f in files)
    assert all(sh(host, f"stat -c %U {PACKAGES}/{f}").stdout.strip() == "pypi" for f in files)
    second = mirror(inv, req, "--host", host.name)
    assert recap(second.stdout, host.name)[1:] == (0, 0)
    assert "downloaded here: 0 files" in second.stdout and f"{len(files)} present" in second.stdout


def test_pip_installs_everything_from_the_server_alone(served, tmp_path):
    host, inv, req, _ = served
    assert mirror(inv, req, "--host", host.name).returncode == 0
    env = clean_env()
    res = subprocess.run([sys.executable, "-m", "pip", "install", "--no-cache-dir", "-v", "--target",
                          str(tmp_path / "t"), "-r", str(req), "--index-url",
                          f"{index(host)}simple/", "--cert", ca_file()],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert (tmp_path / "t" / "requests" / "__init__.py").is_file()
    for dist in ("requests", "urllib3", "idna", "certifi", "charset_normalizer", "six"):
        assert f"{index(host)}packages/{dist}" in res.stdout.replace("-", "_") or \
            f"{index(host)}packages/{dist.replace('_', '-')}" in res.stdout, dist
    status, _, _ = http_get(host.address, PORT, "/simple/flask/")
    assert status == 404  # no fallback: nothing came from anywhere but this server


def test_check_lists_what_would_be_sent_and_sends_nothing(served):
    host, inv, req, tmp = served
    more = tmp / "more.txt"
    more.write_text(REQS + "attrs==23.2.0\n")
    before = listing(host)
    res = mirror(inv, more, "--host", host.name, "--check", "--diff")
    assert res.returncode == 0 and "check mode: not done" in res.stdout
    assert f"+ {PACKAGES}/attrs-23.2.0-py3-none-any.whl" in res.stdout
    assert listing(host) == before


def test_unknown_requirement_fails_before_anything_is_sent(served):
    host, inv, _, tmp = served
    bad = tmp / "bad.txt"
    bad.write_text("six==1.16.0\nno-such-package-provision-test==1.0\n")
    before = listing(host)
    res = mirror(inv, bad, "--host", host.name)
    assert res.returncode == 2 and "Traceback" not in res.stdout + res.stderr
    assert "cannot resolve no-such-package-provision-test==1.0" in res.stdout
    assert listing(host) == before


def test_existing_files_kept_unless_overwrite(served):
    host, inv, req, _ = served
    assert mirror(inv, req, "--host", host.name).returncode == 0
    sh(host, f"printf 'not a wheel' > {PACKAGES}/six-1.16.0-py2.py3-none-any.whl")
    kept = mirror(inv, req, "--host", host.name)
    assert "kept 1 that differ (use --overwrite)" in kept.stdout
    assert sh(host, f"cat {PACKAGES}/six-1.16.0-py2.py3-none-any.whl").stdout == "not a wheel"
    fixed = mirror(inv, req, "--host", host.name, "--overwrite")
    assert recap(fixed.stdout, host.name)[1:] == (1, 0)
    assert int(sh(host, f"stat -c %s {PACKAGES}/six-1.16.0-py2.py3-none-any.whl").stdout) > 1000


def test_prune_removes_only_what_mirror_placed(served, tmp_path):
    host, inv, req, tmp = served
    assert mirror(inv, req, "--host", host.name).returncode == 0
    uploaded = make_wheel(tmp_path, "team-private", "1.0")
    sh(host, f"cat > {PACKAGES}/{uploaded.name} && chown pypi:pypi {PACKAGES}/{uploaded.name}",
       input=uploaded.read_bytes())
    only_six = tmp / "six.txt"
    only_six.write_text("six==1.16.0\n")
    keep = mirror(inv, only_six, "--host", host.name)  # without --prune nothing goes
    assert "requests-2.32.3-py3-none-any.whl" in listing(host) and keep.returncode == 0
    res = mirror(inv, only_six, "--host", host.name, "--prune")
    assert res.returncode == 0, res.stdout + res.stderr
    files = listing(host)
    assert "six-1.16.0-py2.py3-none-any.whl" in files and uploaded.name in files
    assert "requests-2.32.3-py3-none-any.whl" not in files
    assert not any(f.startswith("charset_normalizer") for f in files)


def test_other_python_and_platform_targets(served):
    host, inv, _, tmp = served
    req = tmp / "cn.txt"
    req.write_text("charset-normalizer==3.3.2\n")
    res = mirror(inv, req, "--host", host.name, "--python", "3.12", "--platform", "manylinux2014_x86_64")
    assert res.returncode == 0, res.stdout + res.stderr
    files = listing(host)
    assert any(f.startswith("charset_normalizer-3.3.2-cp312") for f in files)
    assert any(f.startswith("charset_normalizer-3.3.2-cp311") for f in files)


def test_a_project_with_uploads_is_never_shadowed_replaced_or_pruned(served, tmp_path):
    """The review's case: secpkg 1.0 is on the server but mirror did not place it (an upload,
    or a copy by hand); mirroring secpkg 1.1 with --overwrite --prune must leave it alone."""
    host, inv, _, _ = served
    private = make_wheel(tmp_path, "secpkg", "1.0")
    sh(host, f"cat > {PACKAGES}/{private.name} && chown pypi:pypi {PACKAGES}/{private.name}",
       input=private.read_bytes())
    public_dir = tmp_path / "public"
    public_dir.mkdir()
    public = make_wheel(public_dir, "secpkg", "1.1")
    req = tmp_path / "req.txt"
    req.write_text(f"{public}\n")
    res = mirror(inv, req, "--host", host.name, "--overwrite", "--prune")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "skipped private project secpkg" in res.stdout
    files = listing(host)
    assert private.name in files and public.name not in files
    assert private.name not in sh(host, "cat /var/lib/provision/mirror-manifest").stdout.split("\n")
    assert sh(host, f"sha256sum < {PACKAGES}/{private.name}").stdout.split()[0] == \
        __import__("hashlib").sha256(private.read_bytes()).hexdigest()
