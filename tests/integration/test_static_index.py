"""The static index (the default with TLS) on a real host: built on every change by the
host's own Python, served by nginx; real pip and uv over https; yank, unyank, reindex."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.external import deployed_inventory, write_inventory
from tests.helpers import ca_file, clean_env, http_get, index, invoke, make_wheel, sh

pytestmark = pytest.mark.integration

PASSWORD = "Static-Index-77"
PIP_ACCEPT = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01"


@pytest.fixture(scope="module")
def served(host, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("static")
    inv = deployed_inventory([host], tmp / "inventory.yml", known_hosts=str(tmp / "known_hosts"))
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
    """Issue 11's freshness: p99 over 50 uploads, from twine's return to the static page."""
    host, _, _ = served
    waits = []
    for i in range(50):
        wheel = make_wheel(tmp_path, "fresh-pkg", f"1.{i}")
        up = upload(host, wheel)
        assert up.returncode == 0, up.stdout + up.stderr
        waits.append(seconds_until_listed(host, "fresh-pkg", wheel.name))
    assert all(w is not None for w in waits), waits
    waits.sort()
    p50, p99 = waits[len(waits) // 2], waits[int(len(waits) * 0.99) - 1]
    print(f"\nfreshness over {len(waits)} uploads: p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
          f"max {waits[-1] * 1000:.0f} ms")
    assert p99 < 1.0, waits
    # served by nginx from the static files, in both forms
    status, headers, body = get(host, "/simple/fresh-pkg/", PIP_ACCEPT)
    assert headers["Content-Type"] == "application/vnd.pypi.simple.v1+json"
    page = json.loads(body)
    assert page["meta"]["api-version"] == "1.1" and len(page["files"]) == 50
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
    # resolving reads the metadata files, never a wheel (nginx's log says what was sent)
    start = int(sh(host, "stat -c %s /var/log/nginx/pypiserver.access.log").stdout)
    dry = subprocess.run([uv_bin, "pip", "install", "--dry-run", "--no-cache", "--no-config", "--python",
                          str(venv / "bin/python"),
                          "--reinstall", "--index-url", f"{index(host)}simple/", "picky-pkg"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    time.sleep(0.3)
    sent = sh(host, f"tail -c +{start + 1} /var/log/nginx/pypiserver.access.log").stdout
    requests = [line.split('"')[1].split()[1] for line in sent.splitlines() if '"GET ' in line]
    assert "/packages/picky_pkg-1.0-py3-none-any.whl.metadata" in requests, requests
    assert not [r for r in requests if r.endswith(".whl")], requests


def test_yank_skips_an_unpinned_install_and_keeps_a_pinned_one(served, tmp_path):
    host, inv, _ = served
    for version in ("1.0", "2.0"):
        wheel = make_wheel(tmp_path, "yank-pkg", version)
        assert upload(host, wheel).returncode == 0
        assert seconds_until_listed(host, "yank-pkg", wheel.name) is not None
    args = ["--inventory", inv, "-H", host.name]
    check = invoke("yank", "Yank_Pkg", "2.0", "--reason", 'broken <b>"build"</b>', "--check", *args)
    assert check.returncode == 0 and "changed" in check.stdout, check.stdout
    assert sh(host, "cat /var/lib/provision/yanked-pypiserver.json").stdout == ""   # --check: untouched
    done = invoke("yank", "Yank_Pkg", "2.0", "--reason", 'broken <b>"build"</b>', *args)
    assert done.returncode == 0 and " changed=1 " in done.stdout, done.stdout
    # the pages say it when the task returns
    page = json.loads(get(host, "/simple/yank-pkg/", PIP_ACCEPT)[2])
    assert {f["filename"]: f["yanked"] for f in page["files"]} == {
        "yank_pkg-1.0-py3-none-any.whl": False, "yank_pkg-2.0-py3-none-any.whl": 'broken <b>"build"</b>'}
    html = get(host, "/simple/yank-pkg/")[2].decode()
    assert 'data-yanked="broken &lt;b&gt;&quot;build&quot;&lt;/b&gt;"' in html
    again = invoke("yank", "yank-pkg", "2.0", "--reason", 'broken <b>"build"</b>', *args)
    assert " changed=0 " in again.stdout, again.stdout

    def pip_download(spec):
        dest = Path(tempfile.mkdtemp(dir=tmp_path))
        res = subprocess.run([sys.executable, "-m", "pip", "download", "--no-cache-dir", "--no-deps", "-d",
                              str(dest), "--index-url", f"{index(host)}simple/", "--cert", ca_file(), spec],
                             capture_output=True, text=True, env=clean_env(), timeout=120)
        assert res.returncode == 0, res.stdout + res.stderr
        return [f.name for f in dest.iterdir()], res.stdout + res.stderr
    assert pip_download("yank-pkg")[0] == ["yank_pkg-1.0-py3-none-any.whl"]
    got, log = pip_download("yank-pkg==2.0")
    assert got == ["yank_pkg-2.0-py3-none-any.whl"] and "yanked" in log.lower()
    missing = invoke("yank", "yank-pkg", "9.9", *args)
    assert missing.returncode == 2 and "no such release on the host (versions: 1.0, 2.0)" in missing.stdout
    undo = invoke("unyank", "yank-pkg", "2.0", *args)
    assert undo.returncode == 0 and " changed=1 " in undo.stdout, undo.stdout
    assert pip_download("yank-pkg")[0] == ["yank_pkg-2.0-py3-none-any.whl"]


def expected_form(accept: str) -> str:
    """PEP 691 negotiation as the server documents it, from a real parse of the header."""
    qs: dict[str, float] = {}
    for part in accept.split(","):
        media, *params = [x.strip() for x in part.split(";")]
        kind = {"application/vnd.pypi.simple.v1+json": "json", "application/vnd.pypi.simple.latest+json": "json",
                "application/vnd.pypi.simple.v1+html": "html", "application/vnd.pypi.simple.latest+html": "html",
                "text/html": "html"}.get(media.lower())
        q = next((float(p.split("=", 1)[1]) for p in params if p.lower().startswith("q=")), 1.0)
        if kind and kind not in qs:
            qs[kind] = q
    json_q, html_q = qs.get("json"), qs.get("html")
    return "json" if json_q and (html_q is None or json_q >= html_q) else "html"


@pytest.mark.parametrize("accept", [
    "", "*/*", "text/html", "application/vnd.pypi.simple.v1+json", PIP_ACCEPT,
    "application/vnd.pypi.simple.v1+json;q=0, text/html", "application/vnd.pypi.simple.v1+json; q=0.0",
    "application/vnd.pypi.simple.v1+json; q=0.5, text/html; q=0.6",
    "application/vnd.pypi.simple.v1+json; q=0.6, text/html; q=0.5",
    "text/html;q=0.9, application/vnd.pypi.simple.latest+json;q=0.95",
    "application/vnd.pypi.simple.v1+json;q=0.25, application/vnd.pypi.simple.v1+html;q=0.3",
    "application/vnd.pypi.simple.v1+json;q=1, text/html;q=1", "APPLICATION/VND.PYPI.SIMPLE.V1+JSON",
    "application/vnd.pypi.simple.v1+json;q=0.001, text/html;q=0", "text/html, */*;q=0.8",
    "application/vnd.pypi.simple.latest+html;q=0.2, application/vnd.pypi.simple.v1+json;q=0.01",
])
def test_accept_negotiation_honours_q_values(served, accept):
    host, _, _ = served
    for path in ("/simple/", "/simple/fresh-pkg/"):
        status, headers, body = get(host, path, accept or None)
        form = "json" if headers["Content-Type"] == "application/vnd.pypi.simple.v1+json" else "html"
        assert status == 200 and form == expected_form(accept), (path, headers["Content-Type"])
        assert "Accept" in headers.get("Vary", "")
        if form == "json":
            assert json.loads(body)["meta"]["api-version"] == "1.1"


def test_the_index_survives_a_redeploy_and_a_full_rebuild(served):
    host, inv, _ = served
    again = invoke("deploy", "--inventory", inv, "-H", host.name)
    assert again.returncode == 0 and " changed=0 " in again.stdout, again.stdout
    before = get(host, "/simple/", PIP_ACCEPT)[2]
    # a stale page (a project whose files went away by hand) is removed by a rebuild
    sh(host, "runuser -u pypi -- sh -c 'mkdir -p /srv/pypi/index/simple/ghost && "
             "echo {} > /srv/pypi/index/simple/ghost/index.v1_json'")
    rebuilt = invoke("reindex", "--inventory", inv, "-H", host.name)
    assert rebuilt.returncode == 0 and " changed=1 " in rebuilt.stdout, rebuilt.stdout
    assert get(host, "/simple/", PIP_ACCEPT)[2] == before
    assert sh(host, "test -e /srv/pypi/index/simple/ghost && echo stale || echo gone").stdout.strip() == "gone"


def test_names_the_index_lacks_follow_the_fallback(served):
    host, inv, _ = served
    status, headers, _ = get(host, "/simple/not-here-at-all/")
    assert status in (302, 303) and headers["Location"].startswith("https://pypi.org/simple/not-here-at-all")
    write_inventory([host], Path(inv), known_hosts=str(Path(inv).parent / "known_hosts"), pypiserver_fallback="off")
    off = invoke("deploy", "--inventory", inv, "-H", host.name)
    assert off.returncode == 0 and " changed=" in off.stdout, off.stdout + off.stderr
    assert get(host, "/simple/not-here-at-all/")[0] == 404
    assert get(host, "/simple/fresh-pkg/", PIP_ACCEPT)[0] == 200
