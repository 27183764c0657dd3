"""The static index (preview, static_index: true) on a real host: built on every change by
the host's own Python, served by nginx; real pip and uv over https."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.external import write_inventory
from tests.helpers import ca_file, clean_env, http_get, index, invoke, make_wheel, sh

pytestmark = pytest.mark.integration

PASSWORD = "Static-Index-77"
PIP_ACCEPT = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01"


@pytest.fixture(scope="module")
def served(host, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("static")
    inv = write_inventory([host], tmp / "inventory.yml", known_hosts=str(tmp / "known_hosts"),
                          static_index=True)
    res = invoke("deploy", "--inventory", str(inv), "-H", host.name)
    assert res.returncode == 0, res.stdout + res.stderr
    assert invoke("add-user", "publisher", "--password-stdin", "--inventory", str(inv), "-H", host.name,
                  input=PASSWORD + "\n").returncode == 0
    return host, str(inv), tmp


def get(host, path, accept=None):
    return http_get(host.address, 8000, path, headers={"Accept": accept} if accept else None, raw=True)


def upload(host, wheel):
    env = {**clean_env(), "TWINE_USERNAME": "publisher", "TWINE_PASSWORD": PASSWORD}
    return subprocess.run([sys.executable, "-m", "twine", "upload", "--non-interactive",
                           "--disable-progress-bar", "--repository-url", index(host), "--cert", ca_file(),
                           str(wheel)], capture_output=True, text=True, env=env, timeout=120)


def seconds_until_listed(host, project, filename, limit=5.0) -> float | None:
    start = time.monotonic()
    while time.monotonic() - start < limit:
        status, headers, body = get(host, f"/simple/{project}/", PIP_ACCEPT)
        # (no static page yet: pypiserver answers, with HTML)
        static = headers.get("Content-Type") == "application/vnd.pypi.simple.v1+json"
        if status == 200 and static and any(f["filename"] == filename for f in json.loads(body)["files"]):
            return time.monotonic() - start
        time.sleep(0.02)
    return None


def test_uploads_appear_in_the_static_pages_within_a_second(served, tmp_path):
    host, _, _ = served
    waits = []
    for i in range(10):
        wheel = make_wheel(tmp_path, "fresh-pkg", f"1.{i}")
        up = upload(host, wheel)
        assert up.returncode == 0, up.stdout + up.stderr
        waits.append(seconds_until_listed(host, "fresh-pkg", wheel.name))
    assert all(w is not None and w < 1.0 for w in waits), waits
    # served by nginx from the static files, in both forms
    status, headers, body = get(host, "/simple/fresh-pkg/", PIP_ACCEPT)
    assert headers["Content-Type"] == "application/vnd.pypi.simple.v1+json"
    page = json.loads(body)
    assert page["meta"]["api-version"] == "1.1" and len(page["files"]) == 10
    status, headers, body = get(host, "/simple/fresh-pkg/")
    assert headers["Content-Type"].startswith("text/html") and b"data-core-metadata" in body
    status, headers, _ = get(host, "/simple/fresh-pkg/", "application/vnd.pypi.simple.v1+json;q=0, text/html")
    assert headers["Content-Type"].startswith("text/html")
    assert "Accept" in headers.get("Vary", "")
    # a name that is not normalised goes to pypiserver, which redirects (over https)
    status, headers, _ = get(host, "/simple/Fresh_Pkg/")
    assert status in (301, 302, 303) and headers["Location"].startswith(f"{index(host)}simple/fresh-pkg")
    # a removed file is gone within a second too
    sh(host, "rm /srv/pypi/packages/fresh_pkg-1.0-py3-none-any.whl")
    start = time.monotonic()
    while b"fresh_pkg-1.0-" in get(host, "/simple/fresh-pkg/")[2]:
        assert time.monotonic() - start < 1.0
        time.sleep(0.02)


def test_pip_skips_a_release_for_a_newer_python_and_uv_reads_the_metadata(served, tmp_path):
    host, _, _ = served
    for version, extra in (("1.0", ""), ("2.0", "Requires-Python: >=3.99\n")):
        wheel = make_wheel(tmp_path, "picky-pkg", version, metadata=extra)
        assert upload(host, wheel).returncode == 0
        assert seconds_until_listed(host, "picky-pkg", wheel.name) is not None
    dest = tmp_path / "dl"
    pip = subprocess.run([sys.executable, "-m", "pip", "download", "--no-cache-dir", "--no-deps", "-d", str(dest),
                          "--index-url", f"{index(host)}simple/", "--cert", ca_file(), "picky-pkg"],
                         capture_output=True, text=True, env=clean_env(), timeout=120)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    assert [p.name for p in dest.iterdir()] == ["picky_pkg-1.0-py3-none-any.whl"]
    status, _, meta = get(host, "/packages/picky_pkg-1.0-py3-none-any.whl.metadata")
    assert status == 200 and b"Name: picky-pkg" in meta
    uv_bin = str(Path(sys.executable).parent / "uv")
    venv = tmp_path / "venv"
    assert subprocess.run([uv_bin, "venv", "-q", "--no-config", str(venv)], env=clean_env(),
                          capture_output=True, timeout=120).returncode == 0
    env = clean_env() | {"SSL_CERT_FILE": ca_file(), "UV_CACHE_DIR": str(tmp_path / "uvc")}
    uv = subprocess.run([uv_bin, "pip", "install", "-v", "--no-config", "--python", str(venv / "bin/python"),
                         "--index-url", f"{index(host)}simple/", "picky-pkg"],
                        capture_output=True, text=True, env=env, timeout=120)
    assert uv.returncode == 0, uv.stdout + uv.stderr
    log = uv.stdout + uv.stderr
    assert "picky_pkg-1.0-py3-none-any.whl.metadata" in log, log[-3000:]
    assert "picky-pkg==1.0" in log


def test_the_index_survives_a_redeploy_and_a_full_rebuild(served):
    host, inv, _ = served
    again = invoke("deploy", "--inventory", inv, "-H", host.name)
    assert again.returncode == 0 and " changed=0 " in again.stdout, again.stdout
    before = get(host, "/simple/", PIP_ACCEPT)[2]
    sh(host, "sudo -u pypi /opt/pypiserver/venv/bin/python /opt/pypiserver/indexer.py "
             "/srv/pypi/packages /srv/pypi/index --full >/dev/null")
    assert get(host, "/simple/", PIP_ACCEPT)[2] == before
