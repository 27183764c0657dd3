#!/usr/bin/env python3
"""The pull-through cache's origin (pypi_cache): what nginx asks when its cache misses.

    pullthrough.py --port PORT --upstream URL --private URL [--min-age SECONDS] [--cafile FILE]

nginx is the cache (proxy_cache: pages kept for a short TTL and served stale while the
upstream is down, files kept until least-recently-used eviction, concurrent misses
collapsed into one). nginx also decides what may reach this program at all: names the
static index lists are answered from disk and never come here, and pypi_cache_deny /
pypi_cache_allow are applied before it. This program only does what nginx cannot:

    before anything else, it asks pypiserver itself (--private, on the loopback) whether it
    holds NAME: pypiserver lists files the static index may not (subdirectories, other
    suffixes), and a static index that cannot be read must not make a name public. A name
    pypiserver holds gets 409 for its page (nginx then answers with pypiserver's own page)
    and 404 for a file; when pypiserver cannot say, 502: never the upstream.

    GET /private/NAME
        the same question for nginx, which asks it (auth_request) before it serves any
        cached page or file: 403 pypiserver holds NAME, 204 it does not, 502 it cannot say

    GET /simple/NAME/?page=index.v1_json|index.html
        the upstream's page for NAME (PEP 691 JSON or PEP 503 HTML upstreams), filtered:
        files younger than --min-age (by their PEP 700 upload-time; a file without one is
        hidden too while a minimum age is set) and files without a sha256 are left out;
        every link points back at this server (/pypi-cache/NAME/FILE)
    GET /files/NAME/FILE
        one file (or its PEP 658 .metadata) the filtered page lists, streamed from the
        upstream; the chunked response is only ended once its sha256 matches the page, so
        a corrupt or substituted file never completes and nginx never caches it. PEP 658
        metadata is offered only with its sha256, and checked the same way. The upstream and
        the hosts its pages send files to are reached over https when the upstream is
        https, never at a loopback, link-local or multicast address (unless the upstream
        itself is one)
    GET /health

Runs on the host's Python (3.6 and up), standard library only, as an unprivileged
service listening on the loopback only. Stateless: a restart loses nothing.
"""

import argparse
import calendar
import hashlib
import http.client
import ipaddress
import json
import re
import ssl
import sys
import threading
import time
import urllib.parse
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, HTTPServer
from socketserver import ThreadingMixIn

try:                                    # in the package (tests)
    from . import indexer
except ImportError:                     # on the host: shipped beside indexer.py
    import indexer

NAME = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*\Z")
FILENAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+!-]{0,254}\Z")
SHA256 = re.compile(r"[0-9a-f]{64}\Z")
ACCEPT = ("application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, "
          "text/html;q=0.1")
PAGE_LIMIT = 64 << 20            # the largest upstream page read (boto3's JSON is ~5 MB)
MEMO_SECONDS = 600               # how long a fetched page answers file requests
MEMO_MAX = 2000                  # pages remembered at most (the oldest go first)
PUBLIC_SECONDS = 2.0             # how long pypiserver's "not mine" answers a name's next misses
CHUNK = 1 << 16
FILES_PREFIX = "../../pypi-cache/"
_TIME = re.compile(r"(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:\.\d+)?(Z|[+-]00:?00)?\Z")


class UpstreamError(Exception):
    """The upstream did not answer usably (502: nginx then serves its stale copy)."""


class NotThere(Exception):
    """The upstream has no such project or file (404)."""


class Private(Exception):
    """pypiserver holds the name: a page request gets 409, which nginx answers with
    pypiserver's own page instead; a file request gets 404."""


def parse_time(text):
    """A PEP 700 upload-time (ISO 8601, UTC) as seconds since the epoch, or None."""
    m = _TIME.match(text or "") if isinstance(text, str) else None
    if not m:
        return None
    return calendar.timegm(tuple(int(x) for x in m.groups()[:6]) + (0, 0, 0))


def _sha256_of(value):
    """The sha256 of a hashes dict or of a "sha256=HEX" string, or None."""
    if isinstance(value, dict):
        digest = value.get("sha256")
    elif isinstance(value, str) and value.startswith("sha256="):
        digest = value[len("sha256="):]
    else:
        return None
    return digest.lower() if isinstance(digest, str) and SHA256.match(digest.lower()) else None


def _metadata(value):
    """PEP 658/714: its sha256, else False: metadata whose hash the page does not give is not
    offered (it could not be checked), so clients read the wheel itself."""
    if value in (None, False, "false"):
        return False
    return _sha256_of(value) or False


def files_from_json(data, page_url):
    """The upstream's files, as dicts of ours, from a PEP 691 JSON page."""
    out = []
    for f in data.get("files", []) if isinstance(data, dict) else []:
        if not isinstance(f, dict) or not isinstance(f.get("filename"), str) or not isinstance(f.get("url"), str):
            continue
        yanked = f.get("yanked", False)
        size = f.get("size")
        out.append({
            "filename": f["filename"], "url": urllib.parse.urldefrag(urllib.parse.urljoin(page_url, f["url"]))[0],
            "sha256": _sha256_of(f.get("hashes")),
            "requires_python": f["requires-python"] if isinstance(f.get("requires-python"), str) else None,
            "yanked": yanked if isinstance(yanked, (bool, str)) else bool(yanked),
            "metadata": _metadata(f.get("core-metadata", f.get("dist-info-metadata"))),
            "upload_time": parse_time(f.get("upload-time")),
            "size": size if isinstance(size, int) and not isinstance(size, bool) else None,
        })
    return out


class _Links(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.links, self._open = [], None

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self._open = (dict(attrs), [])

    def handle_data(self, data):
        if self._open is not None:
            self._open[1].append(data)

    def handle_endtag(self, tag):
        if tag == "a" and self._open is not None:
            self.links.append((self._open[0], "".join(self._open[1]).strip()))
            self._open = None


def files_from_html(text, page_url):
    """The upstream's files, as dicts of ours, from a PEP 503 HTML page."""
    parser = _Links()
    parser.feed(text)
    out = []
    for attrs, label in parser.links:
        href = attrs.get("href")
        if not href:
            continue
        url, _, fragment = urllib.parse.urljoin(page_url, href).partition("#")
        filename = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1]) or label
        yanked = attrs.get("data-yanked")
        out.append({
            "filename": filename, "url": url, "sha256": _sha256_of(fragment),
            "requires_python": attrs.get("data-requires-python") or None,
            "yanked": False if yanked is None else (yanked or True),
            "metadata": _metadata(attrs.get("data-core-metadata", attrs.get("data-dist-info-metadata"))),
            "upload_time": None, "size": None,
        })
    return out


def admit(files, min_age, now):
    """(files offered, {reason: count} of those left out): a file needs a safe name and a
    sha256, and with a minimum age an upload-time at least that old."""
    kept, hidden = [], {}
    for f in files:
        if not FILENAME.match(f["filename"]) or f["filename"].endswith(".metadata"):
            why = "unsafe file name"
        elif f["sha256"] is None:
            why = "no sha256"
        elif min_age and f["upload_time"] is None:
            why = "no upload-time (minimum age set)"
        elif min_age and now - f["upload_time"] < min_age:
            why = "younger than the minimum age"
        else:
            kept.append(f)
            continue
        hidden[why] = hidden.get(why, 0) + 1
    return kept, hidden


def render(name, files):
    """(html, json) of the page clients get: the files' links point at this server."""
    objects = []
    for f in files:
        obj = {"filename": f["filename"], "url": FILES_PREFIX + name + "/" + f["filename"],
               "hashes": {"sha256": f["sha256"]}, "yanked": f["yanked"]}
        if f["requires_python"]:
            obj["requires-python"] = f["requires_python"]
        if f["metadata"]:
            obj["core-metadata"] = obj["dist-info-metadata"] = {"sha256": f["metadata"]}
        if f["size"] is not None:
            obj["size"] = f["size"]
        if f["upload_time"] is not None:
            obj["upload-time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(f["upload_time"]))
        objects.append(obj)
    versions = sorted({p[1] for p in (indexer.parse_filename(f["filename"]) for f in files) if p})
    return indexer.render_project(name, objects, versions)


class Upstream:
    """The upstream index, and the pages fetched from it lately (for file requests)."""

    def __init__(self, base, private, min_age=0, cafile=None, timeout=20.0):
        self.base = base if base.endswith("/") else base + "/"
        self.private_base = private if private.endswith("/") else private + "/"
        self.min_age, self.timeout = min_age, timeout
        self.context = ssl.create_default_context(cafile=cafile) if cafile else ssl.create_default_context()
        self.https = self.base.startswith("https:")
        host = urllib.parse.urlsplit(self.base).hostname or ""
        try:
            literal = ipaddress.ip_address(host)
            if isinstance(literal, ipaddress.IPv6Address) and literal.ipv4_mapped:
                literal = literal.ipv4_mapped
            self.local_upstream = literal.is_loopback or literal.is_link_local
        except ValueError:
            self.local_upstream = host == "localhost"
        self._memo, self._lock, self._idle, self._public = {}, threading.Lock(), {}, {}

    def open(self, url, accept="*/*"):
        """A response to GET url (redirects followed), on a kept-alive connection when one to
        that host is idle: with PyPI far away, a new TLS connection per page and per file
        would cost several round trips each. Close the response to give the connection back."""
        for _ in range(5):
            self.check_url(url)
            resp = self._request(url, {"Accept": accept, "User-Agent": "provision-pullthrough"})
            if resp.status in (301, 302, 303, 307, 308) and resp.getheader("Location"):
                location = urllib.parse.urljoin(url, resp.getheader("Location"))
                resp.close()
                url = location
                continue
            if resp.status in (404, 410):
                resp.close()
                raise NotThere("%s: HTTP %d" % (url, resp.status))
            if resp.status != 200:
                resp.close()
                raise UpstreamError("%s: HTTP %d" % (url, resp.status))
            resp.url = url
            return resp
        raise UpstreamError("%s: too many redirects" % url)

    def check_url(self, url):
        """Only http(s), and never plain http once the upstream is https (a redirect or a
        page must not downgrade what the upstream's certificate protects)."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UpstreamError("%s: not an http(s) URL" % url)
        if parts.scheme == "http" and self.https:
            raise UpstreamError("%s: plain http from an https upstream: refused" % url)

    def private(self, name):
        """True when pypiserver holds NAME (its page answers 200; a redirect to its fallback
        or a 404 means it does not). Anything else: UpstreamError, so the name is refused.
        A "not mine" answers the same name's misses for PUBLIC_SECONDS (a client asks for a
        page, its metadata and its file in a burst); "mine" and failures are asked each time."""
        with self._lock:
            seen = self._public.get(name)
        if seen is not None and time.monotonic() - seen < PUBLIC_SECONDS:
            return False
        with self._request(self.private_base + name + "/", {"User-Agent": "provision-pullthrough"},
                           internal=True) as resp:
            status = resp.status
            resp.read()
        if status == 200:
            return True
        if status in (301, 302, 303, 307, 308, 404):
            with self._lock:
                if len(self._public) >= MEMO_MAX:
                    self._public.clear()
                self._public[name] = time.monotonic()
            return False
        raise UpstreamError("pypiserver answered HTTP %d for %s: cannot tell whether it is private" % (status, name))

    def _request(self, url, headers, internal=False):
        parts = urllib.parse.urlsplit(url)
        # the port always given: http.client would read a bare IPv6 address's last group as one;
        # pypiserver's connections apart: they were never checked as the upstream's are
        key = (parts.scheme, parts.hostname, parts.port or (443 if parts.scheme == "https" else 80), internal)
        target = (parts.path or "/") + ("?" + parts.query if parts.query else "")
        for attempt in (0, 1):
            conn = self._take(key) if attempt == 0 else None
            reused = conn is not None
            try:
                if conn is None:
                    scheme, host, port, _ = key
                    conn = (http.client.HTTPSConnection(host, port, timeout=self.timeout, context=self.context)
                            if scheme == "https" else http.client.HTTPConnection(host, port, timeout=self.timeout))
                    conn.connect()
                    if not internal:
                        self._check_peer(conn, url)
                conn.request("GET", target, headers=headers)
                return _Pooled(conn.getresponse(), conn, key, self)
            except UpstreamError:
                conn.close()
                raise
            except Exception as exc:      # OSError, HTTPException, a URL http.client refuses...
                conn.close()
                closed = isinstance(exc, (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError))
                if reused and closed:     # the server closed an idle connection: a fresh one
                    continue
                raise UpstreamError("%s: %s" % (url, _why(exc)))
        raise UpstreamError("%s: no answer" % url)

    def _check_peer(self, conn, url):
        """The address actually connected to (after DNS): no loopback, link-local (cloud
        metadata), multicast or unspecified address, unless the upstream itself is one."""
        address = ipaddress.ip_address(conn.sock.getpeername()[0].split("%")[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        if (address.is_loopback or address.is_link_local or address.is_multicast
                or address.is_unspecified) and not self.local_upstream:
            conn.close()
            raise UpstreamError("%s: resolves to %s, an address the cache does not fetch from" % (url, address))

    def _take(self, key):
        with self._lock:
            idle = self._idle.get(key)
            return idle.pop() if idle else None

    def _give(self, key, conn):
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if len(idle) < 8:
                idle.append(conn)
                return
        conn.close()

    def files(self, name, fresh=True):
        """(offered files, hidden counts) for NAME; fresh=False may answer from the memo."""
        if not fresh:
            with self._lock:
                memo = self._memo.get(name)
            if memo and time.monotonic() - memo[0] < MEMO_SECONDS:
                return memo[1], memo[2]
        url = self.base + name + "/"
        with self.open(url, ACCEPT) as resp:
            ctype = resp.getheader("Content-Type", "")
            final = resp.url
            body = read_limited(resp, url)
        try:
            if "json" in ctype:
                data = json.loads(body.decode("utf-8"))
                if not isinstance(data, dict) or not isinstance(data.get("files"), list):
                    raise ValueError("no PEP 691 files list")
                found = files_from_json(data, final)
            else:
                text = body.decode("utf-8", "replace")
                found = files_from_html(text, final)
                if not found and "<a" not in text.lower():
                    # a captive portal, an error page: not a project page (nginx keeps the last one)
                    raise ValueError("no link in it")
        except (ValueError, RecursionError) as exc:
            raise UpstreamError("%s: not a simple index page (%s)" % (url, _why(exc)))
        kept, hidden = admit(found, self.min_age, time.time())
        now = time.monotonic()
        with self._lock:
            if len(self._memo) >= MEMO_MAX:
                for old in sorted(self._memo, key=lambda k: self._memo[k][0])[:MEMO_MAX // 4]:
                    del self._memo[old]
            self._memo[name] = (now, kept, hidden)
        return kept, hidden

    def lookup(self, name, filename):
        """(url, sha256 or None) of a file the filtered page offers (FILE or FILE.metadata)."""
        base = filename[:-len(".metadata")] if filename.endswith(".metadata") else filename
        for fresh in (False, True):
            for f in self.files(name, fresh)[0]:
                if f["filename"] == base:
                    if base == filename:
                        return f["url"], f["sha256"]
                    if f["metadata"]:
                        return f["url"] + ".metadata", f["metadata"]
                    raise NotThere(filename)
        raise NotThere(filename)


def read_limited(resp, url):
    """The whole body, read in chunks (read(n) allocates n bytes up front before 3.10)."""
    parts, size = [], 0
    for chunk in iter(lambda: resp.read(CHUNK), b""):
        parts.append(chunk)
        size += len(chunk)
        if size > PAGE_LIMIT:
            raise UpstreamError("%s: the page is over %d MB" % (url, PAGE_LIMIT >> 20))
    return b"".join(parts)


def _why(exc):
    return str(exc) or type(exc).__name__


class _Pooled:
    """A response whose connection goes back to the pool once it was read to the end."""

    def __init__(self, resp, conn, key, upstream):
        self._resp, self._conn, self._key, self._upstream = resp, conn, key, upstream
        self.status, self.url = resp.status, None

    def getheader(self, name, default=None):
        return self._resp.getheader(name, default)

    def read(self, n=None):
        return self._resp.read(n)

    def close(self):
        done = self._resp.isclosed()          # read to the end: the connection is reusable
        self._resp.close()
        if done and not self._resp.will_close:
            self._upstream._give(self._key, self._conn)
        else:
            self._conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "provision-pullthrough"
    disable_nagle_algorithm = True      # headers, then chunks: no 40 ms wait between them
    upstream = None            # set by main()

    def do_GET(self):
        path, _, query = self.path.partition("?")
        parts = path.split("/")
        self.started = False
        try:
            if path == "/health":
                return self.reply(200, b"ok\n", "text/plain")
            if len(parts) == 4 and parts[1] == "simple" and parts[3] == "" and NAME.match(parts[2]):
                return self.page(parts[2], urllib.parse.parse_qs(query).get("page", [""])[0])
            if len(parts) == 3 and parts[1] == "private" and NAME.match(parts[2]):
                # nginx's check before it serves anything cached: 403 mine, 204 not
                return self.reply(403 if self.upstream.private(parts[2]) else 204, b"", "text/plain")
            if len(parts) == 4 and parts[1] == "files" and NAME.match(parts[2]) and \
                    FILENAME.match(urllib.parse.unquote(parts[3])):
                return self.file(parts[2], urllib.parse.unquote(parts[3]))
            return self.reply(404, b"not found\n", "text/plain")
        except Private as exc:
            self.log_message("%s", exc)
            if parts[1] == "simple":
                return self.reply(409, b"a name this server holds\n", "text/plain")
            return self.reply(404, b"not found\n", "text/plain")
        except NotThere as exc:
            self.log_message("not upstream: %s", exc)
            return self.reply(404, b"not found\n", "text/plain")
        except Exception as exc:          # UpstreamError, and anything unforeseen: one line
            self.log_message("upstream failed: %s", _why(exc)) if isinstance(exc, UpstreamError) else \
                self.log_message("failed: %s: %s", type(exc).__name__, _why(exc))
            if self.started:              # a file already on its way: never ended
                self.close_connection = True
                return
            return self.reply(502, b"the upstream index did not answer\n", "text/plain")

    def refuse_private(self, name):
        if self.upstream.private(name):
            raise Private("%s is a name this server holds: never taken from the upstream" % name)

    def page(self, name, form):
        self.refuse_private(name)
        files, hidden = self.upstream.files(name)
        if hidden:
            self.log_message("%s: left out %s", name, ", ".join("%d (%s)" % (n, why) for why, n in sorted(hidden.items())))
        html_page, json_page = render(name, files)
        if form == "index.html":
            return self.reply(200, html_page, "text/html; charset=utf-8")
        return self.reply(200, json_page, "application/vnd.pypi.simple.v1+json")

    def file(self, name, filename):
        self.refuse_private(name)
        url, digest = self.upstream.lookup(name, filename)
        with self.upstream.open(url) as resp:
            length = resp.getheader("Content-Length")
            self.send_response(200)
            self.send_header("Content-Type", "text/plain" if filename.endswith(".metadata")
                             else "application/octet-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.started = True
            h, size = hashlib.sha256(), 0
            for chunk in iter(lambda: resp.read(CHUNK), b""):
                h.update(chunk)
                size += len(chunk)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        if h.hexdigest() != digest or (length is not None and length.isdigit() and int(length) != size):
            # never ended: nginx sees a broken response, keeps nothing, and the client fails
            self.log_message("%s: %d bytes, sha256 %s; the page says %s%s: not served", filename, size,
                             h.hexdigest(), digest, "" if length is None else ", the upstream %s bytes" % length)
            self.close_connection = True
            return
        self.wfile.write(b"0\r\n\r\n")
        self.log_message("fetched %s/%s (%d bytes)", name, filename, size)

    def reply(self, status, body, ctype):
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            if status != 204:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:               # nginx gave up waiting: nothing to answer
            self.close_connection = True

    def log_message(self, fmt, *args):
        sys.stderr.write("pullthrough: " + (fmt % args) + "\n")
        sys.stderr.flush()            # block-buffered before 3.9: the journal would lag

    def log_request(self, code="-", size="-"):
        pass                   # nginx logs every request (with its cache status)


class Server(ThreadingMixIn, HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="the upstream simple index URL")
    parser.add_argument("--private", required=True, help="pypiserver's simple index URL (loopback)")
    parser.add_argument("--min-age", type=int, default=0, help="seconds a file must have been public")
    parser.add_argument("--cafile", default=None, help="CA certificates the upstream's is checked with")
    parser.add_argument("--timeout", type=float, default=20.0)
    args = parser.parse_args(argv)
    Handler.upstream = Upstream(args.upstream, args.private, args.min_age, args.cafile, args.timeout)
    server = Server((args.listen, args.port), Handler)
    sys.stderr.write("pullthrough: serving %s:%d for %s (minimum age %d s)\n"
                     % (args.listen, args.port, args.upstream, args.min_age))
    sys.stderr.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
