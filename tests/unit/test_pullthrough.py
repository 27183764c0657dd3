"""The pull-through cache's origin (provision/hostside/pullthrough.py): its parsing and
filtering, and real HTTP round trips against a real upstream served here."""

from __future__ import annotations

import hashlib
import http.client
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from provision.hostside import indexer, pullthrough as pt
from tests.helpers import assert_python36_stdlib

NOW = 1_780_000_000
DAY = 86400


def stamp(t):
    return time.strftime("%Y-%m-%dT%H:%M:%S.123456Z", time.gmtime(t))


def test_the_origin_is_python_3_6_and_standard_library_only():
    """It runs on the host's Python, CentOS 7's 3.6 included, beside the index builder."""
    assert_python36_stdlib(pt.__file__, also={"indexer"})


def test_upload_times_parse_as_pep_700_writes_them():
    assert pt.parse_time("2026-06-01T00:00:00Z") == 1_780_272_000
    assert pt.parse_time("2026-06-01T00:00:00.123456Z") == 1_780_272_000
    assert pt.parse_time("2026-06-01T00:00:00+00:00") == 1_780_272_000
    for bad in (None, "", "yesterday", 12, "2026-06-01"):
        assert pt.parse_time(bad) is None


def pypi_json(files):
    return {"meta": {"api-version": "1.1"}, "name": "demo", "versions": ["1.0", "2.0"], "files": files}


def test_json_pages_keep_what_clients_need():
    page = pypi_json([
        {"filename": "demo-1.0-py3-none-any.whl", "url": "https://files.example/ab/demo-1.0-py3-none-any.whl",
         "hashes": {"sha256": "A" * 64}, "requires-python": ">=3.8", "core-metadata": {"sha256": "b" * 64},
         "yanked": "broken", "upload-time": stamp(NOW - 10 * DAY), "size": 1234},
        {"filename": "demo-2.0.tar.gz", "url": "../../packages/demo-2.0.tar.gz", "hashes": {"md5": "x"},
         "dist-info-metadata": True, "upload-time": "garbage"},
        "not a file", {"filename": 3, "url": "x"},
    ])
    files = pt.files_from_json(page, "https://up.example/simple/demo/")
    assert [f["filename"] for f in files] == ["demo-1.0-py3-none-any.whl", "demo-2.0.tar.gz"]
    whl, sdist = files
    assert whl["sha256"] == "a" * 64 and whl["metadata"] == "b" * 64 and whl["yanked"] == "broken"
    assert whl["upload_time"] == NOW - 10 * DAY and whl["size"] == 1234 and whl["requires_python"] == ">=3.8"
    assert sdist["url"] == "https://up.example/packages/demo-2.0.tar.gz"
    assert sdist["sha256"] is None and sdist["metadata"] is False and sdist["upload_time"] is None


def test_html_pages_as_pypiserver_and_our_index_write_them():
    html = ('<html><body><a href="../../packages/demo-1.0.tar.gz#sha256=' + "c" * 64 + '" '
            'data-requires-python="&gt;=3.7" data-yanked="">demo-1.0.tar.gz</a>'
            '<a href="/packages/demo-2.0-py3-none-any.whl#md5=00" data-core-metadata="sha256=' + "d" * 64 +
            '">demo-2.0-py3-none-any.whl</a><a>no href</a></body></html>')
    files = pt.files_from_html(html, "http://up.example:8080/simple/demo/")
    assert [(f["filename"], f["url"]) for f in files] == [
        ("demo-1.0.tar.gz", "http://up.example:8080/packages/demo-1.0.tar.gz"),
        ("demo-2.0-py3-none-any.whl", "http://up.example:8080/packages/demo-2.0-py3-none-any.whl")]
    assert files[0]["sha256"] == "c" * 64 and files[0]["requires_python"] == ">=3.7" and files[0]["yanked"] is True
    assert files[1]["sha256"] is None and files[1]["metadata"] == "d" * 64
    assert all(f["upload_time"] is None for f in files)


def entry(name, age, sha="e" * 64):
    return {"filename": name, "url": "u", "sha256": sha, "requires_python": None, "yanked": False,
            "metadata": False, "upload_time": None if age is None else NOW - age, "size": 10}


def test_admission_hides_young_unhashed_and_unsafe_files():
    files = [entry("old-1.0.tar.gz", 5 * DAY), entry("young-1.0.tar.gz", 3600),
             entry("ageless-1.0.tar.gz", None), entry("nohash-1.0.tar.gz", 9 * DAY, sha=None),
             entry("../evil-1.0.tar.gz", 9 * DAY), entry("x-1.0.tar.gz.metadata", 9 * DAY)]
    kept, hidden = pt.admit(files, 3 * DAY, NOW)
    assert [f["filename"] for f in kept] == ["old-1.0.tar.gz"]
    assert hidden == {"younger than the minimum age": 1, "no upload-time (minimum age set)": 1,
                      "no sha256": 1, "unsafe file name": 2}
    kept, hidden = pt.admit(files, 0, NOW)          # no minimum age: age does not matter
    assert [f["filename"] for f in kept] == ["old-1.0.tar.gz", "young-1.0.tar.gz", "ageless-1.0.tar.gz"]


def test_rendered_pages_link_the_cache_and_read_back():
    files = [entry("demo-1.0-py3-none-any.whl", 5 * DAY) | {"metadata": "f" * 64, "requires_python": "<4,>=3"}]
    html_page, json_page = pt.render("demo", files)
    page = json.loads(json_page)
    assert page["meta"]["api-version"] == "1.1" and page["versions"] == ["1.0"]
    f = page["files"][0]
    assert f["url"] == "../../pypi-cache/demo/demo-1.0-py3-none-any.whl"
    assert f["core-metadata"] == {"sha256": "f" * 64} and f["upload-time"].endswith("Z")
    # what we render, we read back the same (a cache of a cache works)
    again = pt.files_from_html(html_page.decode(), "https://ours/simple/demo/")[0]
    assert again["requires_python"] == "<4,>=3" and again["metadata"] == "f" * 64
    assert again["url"] == "https://ours/pypi-cache/demo/demo-1.0-py3-none-any.whl"
    # without sizes (an HTML upstream): API 1.0, no versions
    page = json.loads(pt.render("demo", [entry("demo-1.0.tar.gz", 1) | {"size": None}])[1])
    assert page["meta"]["api-version"] == "1.0" and "versions" not in page


# -- real round trips ---------------------------------------------------------------------
GOOD = b"good wheel bytes" * 1000
BAD = b"not what the page says"


class FakeUpstream(BaseHTTPRequestHandler):
    """An upstream index: one JSON project (an old file, a young one, a tampered one) and one
    HTML-only project; files served from /f/. Keeps connections alive, and counts them."""

    protocol_version = "HTTP/1.1"
    connections = 0
    private_asks: list = []

    def setup(self):
        type(self).connections += 1
        super().setup()

    def do_GET(self):
        if self.path.startswith("/private/simple/"):       # pypiserver: it holds "mine" only
            self.private_asks.append(self.path)
            held = self.path == "/private/simple/mine/"
            self.send_response(200 if held else 303)
            if not held:
                self.send_header("Location", "https://pypi.org" + self.path[len("/private"):])
            self.send_header("Content-Length", "0")
            return self.end_headers()
        if self.path == "/simple/mine/":
            return self.send(json.dumps(pypi_json([])).encode(), "application/vnd.pypi.simple.v1+json")
        if self.path == "/simple/moved/":
            self.send_response(301)
            self.send_header("Location", "/simple/demo/")
            self.send_header("Content-Length", "0")
            return self.end_headers()
        files = {"/f/demo-1.0-py3-none-any.whl": GOOD, "/f/demo-1.0-py3-none-any.whl.metadata": b"Metadata-Version: 2.1\n",
                 "/f/demo-1.1.tar.gz": BAD, "/f/demo-3.0.tar.gz": GOOD, "/f/plain-1.0.tar.gz": GOOD}
        if self.path == "/simple/demo/":
            meta = hashlib.sha256(files["/f/demo-1.0-py3-none-any.whl.metadata"]).hexdigest()
            page = pypi_json([
                {"filename": "demo-1.0-py3-none-any.whl", "url": "../../f/demo-1.0-py3-none-any.whl",
                 "hashes": {"sha256": hashlib.sha256(GOOD).hexdigest()}, "core-metadata": {"sha256": meta},
                 "upload-time": stamp(time.time() - 10 * DAY), "size": len(GOOD)},
                {"filename": "demo-1.1.tar.gz", "url": "/f/demo-1.1.tar.gz",
                 "hashes": {"sha256": hashlib.sha256(GOOD).hexdigest()},      # the bytes differ
                 "upload-time": stamp(time.time() - 9 * DAY), "size": len(GOOD)},
                {"filename": "demo-3.0.tar.gz", "url": "/f/demo-3.0.tar.gz",
                 "hashes": {"sha256": hashlib.sha256(GOOD).hexdigest()},
                 "upload-time": stamp(time.time() - 60), "size": len(GOOD)},
            ])
            return self.send(json.dumps(page).encode(), "application/vnd.pypi.simple.v1+json")
        if self.path == "/simple/plain/":
            body = ('<a href="/f/plain-1.0.tar.gz#sha256=%s">plain-1.0.tar.gz</a>' % hashlib.sha256(GOOD).hexdigest())
            return self.send(body.encode(), "text/html")
        if self.path in files:
            return self.send(files[self.path], "application/octet-stream")
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def send(self, body, ctype):
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def serve(server):
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server


@pytest.fixture
def origin():
    FakeUpstream.connections = 0
    FakeUpstream.private_asks = []
    upstream = serve(ThreadingHTTPServer(("127.0.0.1", 0), FakeUpstream))
    base = f"http://127.0.0.1:{upstream.server_address[1]}"
    handler = type("H", (pt.Handler,), {"upstream": pt.Upstream(
        f"{base}/simple", f"{base}/private/simple/", min_age=3 * DAY, timeout=5)})
    server = serve(pt.Server(("127.0.0.1", 0), handler))
    yield server.server_address[1], upstream
    server.shutdown()
    upstream.shutdown()


def get(port, path):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path)
    resp = conn.getresponse()
    try:
        return resp.status, resp.getheader("Content-Type"), resp.read()
    finally:
        conn.close()


def test_pages_are_filtered_and_files_verified_end_to_end(origin):
    port, upstream = origin
    status, ctype, body = get(port, "/simple/demo/?page=index.v1_json")
    assert status == 200 and ctype == "application/vnd.pypi.simple.v1+json"
    names = [f["filename"] for f in json.loads(body)["files"]]
    assert names == ["demo-1.0-py3-none-any.whl", "demo-1.1.tar.gz"]      # 3.0 is a minute old
    status, ctype, body = get(port, "/simple/demo/?page=index.html")
    assert status == 200 and ctype.startswith("text/html") and b"demo-3.0" not in body
    assert b'href="../../pypi-cache/demo/demo-1.0-py3-none-any.whl#sha256=' in body

    status, _, body = get(port, "/files/demo/demo-1.0-py3-none-any.whl")
    assert status == 200 and body == GOOD
    status, _, body = get(port, "/files/demo/demo-1.0-py3-none-any.whl.metadata")
    assert status == 200 and body.startswith(b"Metadata-Version")
    # a file whose bytes are not the page's: the response never completes
    with pytest.raises(http.client.IncompleteRead):
        get(port, "/files/demo/demo-1.1.tar.gz")
    # hidden by age, never on the page, not there at all: 404
    for path in ("/files/demo/demo-3.0.tar.gz", "/files/demo/demo-9.tar.gz", "/simple/nothing/",
                 "/files/demo/demo-1.1.tar.gz.metadata", "/simple/Not_Normal/", "/elsewhere"):
        assert get(port, path)[0] == 404, path


def test_one_kept_alive_connection_serves_pages_and_files_and_redirects_are_followed(origin):
    port, _ = origin
    for path in ("/simple/demo/?page=index.v1_json", "/files/demo/demo-1.0-py3-none-any.whl",
                 "/files/demo/demo-1.0-py3-none-any.whl.metadata", "/simple/plain/?page=index.html"):
        assert get(port, path)[0] == 200, path
    # two connections, each kept alive: the upstream's and pypiserver's (one server plays
    # both here; they are never shared: pypiserver's were not checked as the upstream's are)
    assert FakeUpstream.connections == 2
    status, _, body = get(port, "/simple/moved/?page=index.v1_json")
    assert status == 200 and json.loads(body)["files"][0]["filename"] == "demo-1.0-py3-none-any.whl"


def test_a_name_pypiserver_holds_is_never_taken_from_the_upstream(origin):
    port, _ = origin
    assert get(port, "/simple/mine/?page=index.v1_json")[0] == 409      # nginx: pypiserver's page
    assert get(port, "/files/mine/mine-1.0.tar.gz")[0] == 404
    assert get(port, "/simple/mine/?page=index.html")[0] == 409
    assert get(port, "/private/mine")[0] == 403 and get(port, "/private/demo")[0] == 204    # nginx's check
    # "mine" is asked every time; "not mine" answers a burst (page, metadata, file) once
    for path in ("/simple/demo/?page=index.v1_json", "/files/demo/demo-1.0-py3-none-any.whl.metadata",
                 "/files/demo/demo-1.0-py3-none-any.whl"):
        assert get(port, path)[0] == 200
    assert FakeUpstream.private_asks == ["/private/simple/mine/"] * 4 + ["/private/simple/demo/"]


def test_when_pypiserver_cannot_say_nothing_comes_from_the_upstream():
    upstream = serve(ThreadingHTTPServer(("127.0.0.1", 0), FakeUpstream))
    base = f"http://127.0.0.1:{upstream.server_address[1]}"
    handler = type("H", (pt.Handler,), {"upstream": pt.Upstream(f"{base}/simple", "http://127.0.0.1:9/simple/",
                                                                 timeout=5)})
    server = serve(pt.Server(("127.0.0.1", 0), handler))
    try:
        assert get(server.server_address[1], "/simple/demo/?page=index.v1_json")[0] == 502
        assert get(server.server_address[1], "/files/demo/demo-1.0-py3-none-any.whl")[0] == 502
        assert get(server.server_address[1], "/private/demo")[0] == 502
    finally:
        server.shutdown()
        upstream.shutdown()


def test_the_origin_fetches_from_no_local_address_and_never_downgrades():
    upstream = serve(ThreadingHTTPServer(("127.0.0.1", 0), FakeUpstream))
    remote = pt.Upstream("https://pypi.example/simple/", "http://127.0.0.1:9/simple/")
    assert remote.https and not remote.local_upstream
    with pytest.raises(pt.UpstreamError, match="plain http from an https upstream"):
        remote.open("http://files.example/x.whl")
    # a page (or DNS) that sends it to this machine: refused by the address it connected to
    with pytest.raises(pt.UpstreamError, match="an address the cache does not fetch from"):
        remote._request(f"http://127.0.0.1:{upstream.server_address[1]}/f/plain-1.0.tar.gz", {})
    with pytest.raises(pt.UpstreamError, match="not an http"):
        remote.open("file:///etc/passwd")
    assert pt.Upstream("http://127.0.0.1:8/simple/", "http://127.0.0.1:9/").local_upstream
    upstream.shutdown()


def test_metadata_without_its_hash_is_not_offered():
    page = pypi_json([{"filename": "demo-1.0-py3-none-any.whl", "url": "/f/demo-1.0-py3-none-any.whl#frag",
                       "hashes": {"sha256": "a" * 64}, "core-metadata": True}])
    (f,) = pt.files_from_json(page, "https://up/simple/demo/")
    assert f["metadata"] is False and f["url"] == "https://up/f/demo-1.0-py3-none-any.whl"
    assert "core-metadata" not in json.loads(pt.render("demo", [f])[1])["files"][0]


def test_html_upstreams_have_no_age_so_a_minimum_age_hides_their_files(origin):
    port, _ = origin
    status, _, body = get(port, "/simple/plain/?page=index.v1_json")
    page = json.loads(body)
    assert status == 200 and page["files"] == []


def test_an_upstream_that_does_not_answer_is_a_502(origin):
    port, upstream = origin
    upstream.shutdown()
    upstream.server_close()
    assert get(port, "/simple/demo/?page=index.v1_json")[0] == 502


def test_the_shared_renderer_still_writes_the_static_index_pages():
    entries = {"demo-1.0.tar.gz": {"project": "demo", "version": "1.0", "size": 3, "mtime_ns": 0,
                                   "sha256": "a" * 64, "requires_python": None, "metadata_sha256": None}}
    html_page, json_page = indexer.project_pages("demo", entries, {"1.0": "bad"})
    page = json.loads(json_page)
    assert page["meta"]["api-version"] == "1.1" and page["files"][0]["yanked"] == "bad"
    assert b'data-yanked="bad"' in html_page and b"data-core-metadata" not in html_page
