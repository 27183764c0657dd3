"""The pull-through cache (pypi_cache) on real hosts: a second test host plays the upstream
index (a server of ours, its static index over https), reached through a relay on this
machine that the tests can cut. Real pip and uv as clients; never the real internet."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from testing.relay import Relay
from tests.external import deployed_inventory, is_external, write_inventory
from tests.helpers import ca_file, clean_env, http_get, index, invoke, make_wheel, recap, sh

pytestmark = pytest.mark.integration

DAY = 86400
FILLER = 600 * 1024          # four of them are over pypi_cache_max_size (2m), three are not
PRIVATE = "/srv/pypi/packages"


def place(host, wheel: Path, age: float, folder: str = PRIVATE) -> None:
    """A package file in the host's packages directory (or a folder in it), uploaded `age`
    seconds ago (its mtime: the static index's PEP 700 upload-time)."""
    name = wheel.name
    sh(host, f"install -d -o pypi -g pypi {folder} && cat > {folder}/.{name} && "
             f"touch -d @{int(time.time() - age)} {folder}/.{name} && "
             f"chown pypi:pypi {folder}/.{name} && mv {folder}/.{name} {folder}/{name}",
       input=wheel.read_bytes())


def wait_listed(host, project, filename, limit=10.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        status, _, body = http_get(host.address, 8000, f"/simple/{project}/",
                                   headers={"Accept": "application/vnd.pypi.simple.v1+json"})
        if status == 200 and filename in body:
            return
        time.sleep(0.1)
    raise AssertionError(f"{filename} never listed on {host.name}")


@pytest.fixture(scope="module")
def cached(testhost_factory, tmp_path_factory):
    up, srv = testhost_factory(2)
    if is_external(srv):
        pytest.skip("the upstream is reached through a relay on the nspawn link: needs hosts booted here")
    tmp = tmp_path_factory.mktemp("cache")
    wheels = tmp / "wheels"
    wheels.mkdir()
    # the upstream: a server of ours whose certificate also names the relay's address
    deployed_inventory([up], tmp / "up.yml", known_hosts=str(tmp / "kh"), tls_names=[srv.control_address])
    old = 10 * DAY
    for name, version, age, extra in [
            ("pubdep", "1.0", old, ""), ("pubapp", "1.0", old, "Requires-Dist: pubdep\n"),
            ("shadowed", "9.0", old, ""), ("fresh", "1.0", old, ""), ("fresh", "2.0", 60, ""),
            ("blocked", "1.0", old, ""), ("hidden", "2.0", old, "")]:
        place(up, make_wheel(wheels, name, version, metadata=extra), age)
    for letter in "abcd":
        place(up, make_wheel(wheels, f"filler-{letter}", "1.0", payload=FILLER), old)
    wait_listed(up, "filler-d", "filler_d-1.0-py3-none-any.whl")
    wait_listed(up, "fresh", "fresh-2.0-py3-none-any.whl")

    relay = Relay(srv.control_address, (up.address, 8000))
    srv_vars = dict(pypi_cache=True, pypi_cache_upstream=f"https://{srv.control_address}:{relay.port}/simple/",
                    pypi_cache_upstream_ca=ca_file(), pypi_cache_min_age="1d", pypi_cache_deny=["blocked"],
                    pypi_cache_index_ttl="2s", pypi_cache_max_size="2m")
    inv = write_inventory([srv], tmp / "srv.yml", known_hosts=str(tmp / "kh"), **srv_vars)
    # a subfolder pypiserver watches from its start (one made later is picked up late, if at all)
    sh(srv, f"install -d {PRIVATE}/team")
    res = invoke("deploy", "--inventory", str(inv))
    sh(srv, f"chown pypi:pypi {PRIVATE}/team")
    assert res.returncode == 0, res.stdout + res.stderr
    # a private project that the upstream also has, with a higher version
    place(srv, make_wheel(wheels, "shadowed", "1.0"), 0)
    wait_listed(srv, "shadowed", "shadowed-1.0-py3-none-any.whl")
    state = {"relay": relay}
    yield up, srv, inv, state, tmp
    for relay in [state["relay"], *state.get("more", [])]:
        relay.close()
    for h in (up, srv):          # now, not at the session's end: the modules after need the CPU
        h.destroy()


def pip(*args, tmp: Path, host) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", *args, "--no-cache-dir", "--index-url",
                           f"{index(host)}simple/", "--cert", ca_file()],
                          capture_output=True, text=True, env=clean_env(), timeout=180)


def uv_install(tmp: Path, host, *names) -> subprocess.CompletedProcess:
    uv_bin = str(Path(sys.executable).parent / "uv")
    venv = tmp / f"uv-venv-{time.monotonic_ns()}"
    assert subprocess.run([uv_bin, "venv", "-q", "--no-config", str(venv)], env=clean_env(),
                          capture_output=True, timeout=120).returncode == 0
    env = clean_env() | {"SSL_CERT_FILE": ca_file(), "UV_CACHE_DIR": str(venv) + "-cache"}
    return subprocess.run([uv_bin, "pip", "install", "--no-config", "--python", str(venv / "bin/python"),
                           "--index-url", f"{index(host)}simple/", *names],
                          capture_output=True, text=True, env=env, timeout=180)


def cache_log(host) -> list[list[str]]:
    text = sh(host, "cat /var/log/nginx/pypiserver.cache.log 2>/dev/null || :").stdout
    return [line.split() for line in text.splitlines() if line.strip()]


def test_redeploy_changes_nothing(cached):
    _, srv, inv, _, _ = cached
    res = invoke("deploy", "--inventory", str(inv))
    assert res.returncode == 0, res.stdout + res.stderr
    assert recap(res.stdout + res.stderr, srv.name)[1] == 0, res.stdout


def test_first_install_fetches_then_installs_with_the_upstream_gone(cached):
    up, srv, _, state, tmp = cached
    relay = state["relay"]
    before = relay.received
    first = pip("install", "--target", str(tmp / "t1"), "pubapp", tmp=tmp, host=srv)
    assert first.returncode == 0, first.stdout + first.stderr
    assert (tmp / "t1/pubapp").is_dir() and (tmp / "t1/pubdep").is_dir()
    assert relay.received > before                           # fetched from the upstream
    misses = [r for r in cache_log(srv) if r[1] == "MISS" and r[4].startswith("/pypi-cache/")]
    assert {r[4].split("/")[2] for r in misses} >= {"pubapp", "pubdep"}, misses

    # the upstream goes away: its nginx stops and the only path to it is cut
    sh(up, "systemctl stop nginx")
    relay.close()
    time.sleep(2.5)                                           # the pages' TTL (2s) is over
    seen = len(cache_log(srv))
    second = pip("install", "--target", str(tmp / "t2"), "pubapp", tmp=tmp, host=srv)
    assert second.returncode == 0, second.stdout + second.stderr
    assert (tmp / "t2/pubdep").is_dir()
    uv = uv_install(tmp, srv, "pubapp")
    assert uv.returncode == 0, uv.stdout + uv.stderr
    assert "pubapp==1.0" in uv.stderr and "pubdep==1.0" in uv.stderr, uv.stderr
    after = cache_log(srv)[seen:]
    statuses = {r[1] for r in after}
    assert statuses <= {"HIT", "STALE", "UPDATING"} and "STALE" in statuses, after
    assert all(r[2] == "200" for r in after), after

    # back for the other tests, at the same address
    sh(up, "systemctl start nginx")
    state["relay"] = Relay(srv.control_address, (up.address, 8000), port=relay.port)


def test_a_private_name_never_comes_from_the_upstream(cached):
    _, srv, _, state, tmp = cached
    before = state["relay"].received
    status, headers, body = http_get(srv.address, 8000, "/simple/shadowed/",
                                     headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    assert status == 200 and "X-Cache" not in headers
    assert [f["filename"] for f in json.loads(body)["files"]] == ["shadowed-1.0-py3-none-any.whl"]
    got = pip("download", "--no-deps", "-d", str(tmp / "dl"), "shadowed", tmp=tmp, host=srv)
    assert got.returncode == 0, got.stdout + got.stderr
    assert [p.name for p in (tmp / "dl").iterdir()] == ["shadowed-1.0-py3-none-any.whl"]
    uv = uv_install(tmp, srv, "shadowed")
    assert uv.returncode == 0 and "shadowed==1.0" in uv.stderr, uv.stderr
    # the upstream's file, asked for by its cache address: refused
    assert http_get(srv.address, 8000, "/pypi-cache/shadowed/shadowed-9.0-py3-none-any.whl")[0] == 404
    assert state["relay"].received == before                   # the upstream was never asked


def test_a_name_only_pypiserver_lists_is_private_too(cached):
    """pypiserver lists files in subfolders, which the static index does not: nginx asks
    pypiserver (through the origin) before it serves anything cached, and answers with
    pypiserver's own page. Here the name was public, its page and file cached, first."""
    _, srv, _, state, tmp = cached
    json_accept = {"Accept": "application/vnd.pypi.simple.v1+json, text/html;q=0.1"}
    status, headers, body = http_get(srv.address, 8000, "/simple/hidden/", headers=json_accept)
    assert status == 200 and "hidden-2.0-py3-none-any.whl" in body and headers.get("X-Cache") == "MISS"
    assert http_get(srv.address, 8000, "/pypi-cache/hidden/hidden-2.0-py3-none-any.whl")[0] == 200
    # (written in place: pypiserver's listing follows the folder through inotify)
    sh(srv, f"cat > {PRIVATE}/team/hidden-1.0-py3-none-any.whl && chown pypi:pypi {PRIVATE}/team/hidden-1.0-py3-none-any.whl",
       input=make_wheel(tmp, "hidden", "1.0").read_bytes())
    waited = sh(srv, "for _ in $(seq 50); do [ \"$(curl -s -o /dev/null -w '%{http_code}' "
                     "http://127.0.0.1:18000/simple/hidden/)\" = 200 ] && exit 0; sleep 0.1; done; exit 1", check=False)
    assert waited.returncode == 0, "pypiserver never listed team/hidden-1.0-py3-none-any.whl"
    before = state["relay"].received
    time.sleep(4.5)               # pypiserver's "not mine", kept 2 s by the origin and 2 s by nginx
    status, _, body = http_get(srv.address, 8000, "/simple/hidden/", headers=json_accept)
    assert status == 200 and "hidden-1.0-py3-none-any.whl" in body and "2.0" not in body, body
    got = pip("download", "--no-deps", "-d", str(tmp / "hidden"), "hidden", tmp=tmp, host=srv)
    assert got.returncode == 0, got.stdout + got.stderr
    assert [p.name for p in (tmp / "hidden").iterdir()] == ["hidden-1.0-py3-none-any.whl"]
    # the upstream's file, cached while the name was public: refused now
    assert http_get(srv.address, 8000, "/pypi-cache/hidden/hidden-2.0-py3-none-any.whl")[0] == 404
    assert state["relay"].received == before                   # the upstream was never asked


def test_a_release_younger_than_the_minimum_age_is_not_offered(cached):
    _, srv, _, _, tmp = cached
    status, headers, body = http_get(srv.address, 8000, "/simple/fresh/",
                                     headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    assert status == 200 and headers.get("X-Cache") in ("MISS", "EXPIRED", "HIT")
    assert [f["filename"] for f in json.loads(body)["files"]] == ["fresh-1.0-py3-none-any.whl"]
    got = pip("download", "--no-deps", "-d", str(tmp / "fresh"), "fresh", tmp=tmp, host=srv)
    assert got.returncode == 0, got.stdout + got.stderr
    assert [p.name for p in (tmp / "fresh").iterdir()] == ["fresh-1.0-py3-none-any.whl"]
    assert http_get(srv.address, 8000, "/pypi-cache/fresh/fresh-2.0-py3-none-any.whl")[0] == 404


def test_a_denied_name_gets_404_without_asking_the_upstream(cached):
    _, srv, _, state, tmp = cached
    before = state["relay"].received
    assert http_get(srv.address, 8000, "/simple/blocked/")[0] == 404
    assert http_get(srv.address, 8000, "/pypi-cache/blocked/blocked-1.0-py3-none-any.whl")[0] == 404
    got = pip("download", "--no-deps", "-d", str(tmp / "blocked"), "blocked", tmp=tmp, host=srv)
    assert got.returncode != 0
    assert state["relay"].received == before


def cache_file(srv, key: str) -> str:
    """Where nginx keeps a key (levels=1:2: the md5's last character, then the two before)."""
    h = hashlib.md5(key.encode()).hexdigest()
    return f"/srv/pypi/cache/files/{h[-1]}/{h[-3:-1]}/{h}"


def test_eviction_removes_least_recently_used_cached_files_only(cached):
    _, srv, _, _, _ = cached
    private = sh(srv, f"cd {PRIVATE} && find . -type f | sort | xargs sha256sum").stdout
    paths = {x: f"/pypi-cache/filler-{x}/filler_{x}-1.0-py3-none-any.whl" for x in "abcd"}
    for x in "abc":
        status, headers, _ = http_get(srv.address, 8000, paths[x], timeout=30)
        assert status == 200 and headers["X-Cache"] == "MISS"
    status, headers, _ = http_get(srv.address, 8000, paths["a"])      # a is used again
    assert status == 200 and headers["X-Cache"] == "HIT"
    status, headers, _ = http_get(srv.address, 8000, paths["d"], timeout=30)
    assert status == 200 and headers["X-Cache"] == "MISS"
    # nginx's cache manager evicts the least recently used until the files fit in 2m
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        if sh(srv, f"test -e {cache_file(srv, paths['b'])}", check=False).returncode != 0:
            break
        time.sleep(0.5)
    present = {x: sh(srv, f"test -e {cache_file(srv, p)}", check=False).returncode == 0 for x, p in paths.items()}
    assert present == {"a": True, "b": False, "c": True, "d": True}, present
    total = int(sh(srv, "du -sb /srv/pypi/cache/files | cut -f1").stdout)
    assert total <= 2 * 1024 * 1024 + 64 * 1024, total
    # the server's own packages are untouched, and still served
    assert sh(srv, f"cd {PRIVATE} && find . -type f | sort | xargs sha256sum").stdout == private
    assert http_get(srv.address, 8000, "/packages/shadowed-1.0-py3-none-any.whl")[0] == 200


def test_status_reports_the_cache(cached):
    _, srv, inv, _, _ = cached
    res = invoke("status", "--json", "--inventory", str(inv))
    assert res.returncode == 0, res.stdout + res.stderr
    (row,) = json.loads(res.stdout)
    c = row["cache"]
    assert c["service"] == "active" and c["max_size"] == "2m"
    # after the eviction: the three fillers it kept (the small files were used least recently)
    assert c["projects"] == 3 and c["files"] == 3 and c["bytes"] > 3 * FILLER
    assert 0 < c["hits"] < c["requests"] and 0 < c["hit_rate"] < 1
    table = invoke("status", "--inventory", str(inv))
    assert "% hits of" in table.stdout, table.stdout


def test_a_new_upstream_empties_the_cache(cached):
    up, srv, _, state, tmp = cached
    assert int(sh(srv, "find /srv/pypi/cache/files -type f | wc -l").stdout) > 0
    other = Relay(srv.control_address, (up.address, 8000))
    state.setdefault("more", []).append(other)
    url = f"https://{srv.control_address}:{other.port}/simple/"
    inv = write_inventory([srv], tmp / "moved.yml", known_hosts=str(tmp / "kh"), pypi_cache_upstream=url)
    res = invoke("deploy", "--inventory", str(inv))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "its cached pages and files removed" in res.stdout + res.stderr
    assert sh(srv, "find /srv/pypi/cache/files /srv/pypi/cache/pages -type f | wc -l").stdout.strip() == "0"
    assert sh(srv, "cat /srv/pypi/cache/upstream").stdout.strip() == url
    got = pip("install", "--target", str(tmp / "t3"), "pubapp", tmp=tmp, host=srv)
    assert got.returncode == 0, got.stdout + got.stderr
    assert other.received > 0
    again = invoke("deploy", "--inventory", str(inv))
    assert recap(again.stdout + again.stderr, srv.name)[1] == 0, again.stdout


def test_turned_off_then_uninstalled(cached):
    _, srv, _, _, tmp = cached
    inv = deployed_inventory([srv], tmp / "off.yml", known_hosts=str(tmp / "kh"), pypi_cache=False)
    assert sh(srv, "systemctl is-active pypiserver-cache.service", check=False).stdout.strip() == "inactive"
    # names the server lacks go back to pypiserver's redirect; private ones are still served
    status, headers, _ = http_get(srv.address, 8000, "/simple/pubapp/")
    assert status in (302, 303) and headers["Location"] == "https://pypi.org/simple/pubapp/", (status, headers)
    assert http_get(srv.address, 8000, "/simple/shadowed/")[0] == 200
    res = invoke("uninstall", "--inventory", str(inv), "-H", srv.name)
    assert res.returncode == 0, res.stdout + res.stderr
    gone = sh(srv, "ls /etc/systemd/system/pypiserver-cache.service /srv/pypi/cache /opt/pypiserver/pullthrough.py",
              check=False)
    assert gone.returncode != 0 and "No such file" in gone.stderr and gone.stdout == "", gone
    assert sh(srv, f"cd {PRIVATE} && find . -type f | sort").stdout.split() == [
        "./shadowed-1.0-py3-none-any.whl", "./team/hidden-1.0-py3-none-any.whl"]
