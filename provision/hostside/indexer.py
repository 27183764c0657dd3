#!/usr/bin/env python3
"""A static simple index of a packages directory: PEP 503 HTML and PEP 691 JSON (api 1.1)
per project and for the root, sha256 hashes, Requires-Python (escaped), PEP 658/714 core
metadata files extracted from wheels (and from sdists of Metadata-Version 2.2+), PEP 700
size and upload-time, PEP 592 yank.

    indexer.py PACKAGES OUT [--yanked FILE] [--full]

Runs on the host's Python (3.6 and up), standard library only. Incremental: a file whose
size and mtime are unchanged is not read again (its hash and metadata come from OUT/state.json);
only projects whose files changed are rendered again; every page, metadata file and the
state appear by rename, so a crash leaves the previous index served. Prints one JSON line of
counts (files read, projects rendered, removed).

Layout of OUT: simple/index.html, simple/index.v1_json, simple/<project>/index.html and
index.v1_json (the web server picks by the Accept header), metadata/<file>.metadata (served
as /packages/<file>.metadata), state.json. Links point at ../../packages/<file>.
"""

import argparse
import datetime
import email.parser
import hashlib
import html
import json
import os
import re
import sys
import tarfile
import tempfile
import zipfile

API_VERSION = "1.1"
DIST = re.compile(r"^(?P<name>.+?)-(?P<version>\d[^-]*?)(?:-[^-]+)*"
                  r"\.(?P<ext>whl|tar\.gz|tar\.bz2|tgz|zip|egg)$")
WHEEL = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)(-\d[^-]*)?-[^-]+-[^-]+-[^-]+\.whl$")
STATE_VERSION = 1


def normalize(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_filename(filename):
    """(project, version) of a distribution file, or None."""
    m = WHEEL.match(filename) if filename.endswith(".whl") else DIST.match(filename)
    if not m:
        return None
    return normalize(m.group("name")), m.group("version")


def read_metadata(path, filename):
    """The core metadata bytes of a distribution, or None (PEP 658: wheels, and sdists whose
    PKG-INFO says Metadata-Version 2.2 or later)."""
    try:
        if filename.endswith(".whl"):
            with zipfile.ZipFile(path) as zf:
                names = [n for n in zf.namelist()
                         if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
                return zf.read(names[0]) if len(names) == 1 else None
        if filename.endswith((".tar.gz", ".tgz", ".tar.bz2")):
            with tarfile.open(path) as tf:
                for member in tf:
                    if member.isfile() and member.name.count("/") == 1 and \
                            member.name.endswith("/PKG-INFO"):
                        data = tf.extractfile(member).read()
                        return data if _metadata_version(data) >= (2, 2) else None
        if filename.endswith(".zip"):
            with zipfile.ZipFile(path) as zf:
                names = [n for n in zf.namelist() if n.count("/") == 1 and n.endswith("/PKG-INFO")]
                if len(names) == 1:
                    data = zf.read(names[0])
                    return data if _metadata_version(data) >= (2, 2) else None
    except (OSError, zipfile.BadZipFile, tarfile.TarError, KeyError, EOFError):
        return None
    return None


def _headers(data):
    return email.parser.BytesHeaderParser().parsebytes(data)


def _metadata_version(data):
    found = re.findall(r"\d+", _headers(data).get("Metadata-Version", "") or "")
    return tuple(int(x) for x in found[:2]) or (0,)


def requires_python(metadata):
    if not metadata:
        return None
    value = _headers(metadata).get("Requires-Python")
    return value.strip() if value and value.strip() else None


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_atomic(path, data, mode=0o644):
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _remove(path):
    """Remove a stale page or metadata file; one we may not remove (someone else's) is
    reported, not fatal: the rest of the index still comes up to date."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        print("indexer: cannot remove %s: %s" % (path, exc.strerror), file=sys.stderr)


def upload_time(mtime):
    """PEP 700: ISO 8601 in UTC, 'Z' suffix."""
    stamp = datetime.datetime.fromtimestamp(mtime, datetime.timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def load_json(path, default):
    try:
        with open(path, "rb") as fh:
            return json.loads(fh.read().decode("utf-8"))
    except (OSError, ValueError):
        return default


def scan(packages, out, state, counts):
    """{filename: entry} for every distribution file, reading only new or changed ones (their
    metadata files are written to OUT/metadata as they are read)."""
    old = state.get("files", {})
    files = {}
    for filename in sorted(os.listdir(packages)):
        path = os.path.join(packages, filename)
        parsed = parse_filename(filename)
        if parsed is None or filename.startswith(".") or not os.path.isfile(path):
            continue
        st = os.stat(path)
        prev = old.get(filename)
        if prev and prev.get("size") == st.st_size and prev.get("mtime_ns") == st.st_mtime_ns:
            files[filename] = prev
            continue
        counts["read"] += 1
        metadata = read_metadata(path, filename)
        files[filename] = {
            "project": parsed[0], "version": parsed[1], "size": st.st_size,
            "mtime_ns": st.st_mtime_ns, "sha256": sha256_file(path),
            "requires_python": requires_python(metadata),
            "metadata_sha256": hashlib.sha256(metadata).hexdigest() if metadata else None,
        }
        if metadata:
            write_atomic(os.path.join(out, "metadata", filename + ".metadata"), metadata)
    return files


def file_json(filename, entry, yanked):
    out = {"filename": filename, "url": "../../packages/" + filename,
           "hashes": {"sha256": entry["sha256"]}, "size": entry["size"],
           "upload-time": upload_time(entry["mtime_ns"] / 1e9)}
    if entry["requires_python"]:
        out["requires-python"] = entry["requires_python"]
    meta = {"sha256": entry["metadata_sha256"]} if entry["metadata_sha256"] else False
    out["core-metadata"] = meta
    out["dist-info-metadata"] = meta          # the PEP 658 name, for older clients
    reason = yanked.get(entry["version"])
    out["yanked"] = (reason or True) if reason is not None else False
    return out


def project_pages(project, entries, yanked):
    """(html, json) of one project's page."""
    files = [file_json(name, entry, yanked) for name, entry in sorted(entries.items())]
    return render_project(project, files, sorted({entry["version"] for entry in entries.values()}))


def render_project(project, files, versions=None):
    """(html, json) of a project page from PEP 691 file objects (url, hashes, and optional
    requires-python, core-metadata, yanked, size, upload-time). API 1.1 (PEP 700) when the
    versions are given and every file has its size, else 1.0. The pull-through cache's pages
    come from here too."""
    api = API_VERSION if versions is not None and all("size" in f for f in files) else "1.0"
    page = {"meta": {"api-version": api}, "name": project, "files": files}
    if api == API_VERSION:
        page["versions"] = versions
    links = []
    for f in files:
        attrs = ['href="%s"' % html.escape("%s#sha256=%s" % (f["url"], f["hashes"]["sha256"]))]
        if f.get("requires-python"):
            attrs.append('data-requires-python="%s"' % html.escape(f["requires-python"]))
        meta = f.get("core-metadata")
        if meta:
            value = "sha256=" + meta["sha256"] if isinstance(meta, dict) else "true"
            attrs.append('data-dist-info-metadata="%s"' % html.escape(value))
            attrs.append('data-core-metadata="%s"' % html.escape(value))
        if f.get("yanked", False) is not False:
            attrs.append('data-yanked="%s"' % html.escape(f["yanked"] if f["yanked"] is not True else ""))
        links.append("    <a %s>%s</a><br/>" % (" ".join(attrs), html.escape(f["filename"])))
    body = ("<!DOCTYPE html>\n<html>\n  <head>\n"
            '    <meta name="pypi:repository-version" content="%s">\n'
            "    <title>Links for %s</title>\n  </head>\n  <body>\n    <h1>Links for %s</h1>\n%s\n"
            "  </body>\n</html>\n") % (api, html.escape(project), html.escape(project),
                                        "\n".join(links))
    return body.encode("utf-8"), json.dumps(page, sort_keys=True).encode("utf-8")


def root_pages(projects):
    links = "\n".join('    <a href="%s/">%s</a><br/>' % (html.escape(p), html.escape(p))
                      for p in projects)
    body = ("<!DOCTYPE html>\n<html>\n  <head>\n"
            '    <meta name="pypi:repository-version" content="%s">\n'
            "    <title>Simple index</title>\n  </head>\n  <body>\n%s\n  </body>\n</html>\n"
            ) % (API_VERSION, links)
    page = {"meta": {"api-version": API_VERSION}, "projects": [{"name": p} for p in projects]}
    return body.encode("utf-8"), json.dumps(page, sort_keys=True).encode("utf-8")


def fingerprint(entries, yanked):
    text = json.dumps([[n, e["sha256"], e["mtime_ns"]] for n, e in sorted(entries.items())]
                      + [sorted(yanked.items())])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def build(packages, out, yanked_file=None, full=False):
    """Bring OUT up to date with PACKAGES; returns the counts."""
    counts = {"read": 0, "rendered": 0, "removed": 0, "files": 0, "projects": 0}
    state_path = os.path.join(out, "state.json")
    state = {} if full else load_json(state_path, {})
    if state.get("version") != STATE_VERSION:
        state = {}
    yanked_all = load_json(yanked_file, {}) if yanked_file else {}
    files = scan(packages, out, state, counts)
    by_project = {}
    for name, entry in files.items():
        by_project.setdefault(entry["project"], {})[name] = entry
    simple = os.path.join(out, "simple")
    old_prints = state.get("projects", {})
    prints = {}
    for project, entries in sorted(by_project.items()):
        yanked = {v: r for v, r in (yanked_all.get(project) or {}).items()}
        prints[project] = fingerprint(entries, yanked)
        page_dir = os.path.join(simple, project)
        if prints[project] == old_prints.get(project) and \
                os.path.exists(os.path.join(page_dir, "index.v1_json")):
            continue
        page_html, page_json = project_pages(project, entries, yanked)
        # index.html first: the pull-through cache's nginx takes it as "this name is private"
        write_atomic(os.path.join(page_dir, "index.html"), page_html)
        write_atomic(os.path.join(page_dir, "index.v1_json"), page_json)
        counts["rendered"] += 1
    # what the directories hold, not what the state says: a rebuild without a state
    # (reindex) removes stale pages and metadata too
    listed = set(os.listdir(simple)) if os.path.isdir(simple) else set()
    for project in sorted(p for p in listed - set(prints) if os.path.isdir(os.path.join(simple, p))):
        for page in ("index.html", "index.v1_json"):
            _remove(os.path.join(simple, project, page))
        try:
            os.rmdir(os.path.join(simple, project))
        except OSError:
            pass
        counts["removed"] += 1
    meta_dir = os.path.join(out, "metadata")
    for name in os.listdir(meta_dir) if os.path.isdir(meta_dir) else ():
        if name.endswith(".metadata") and name[:-len(".metadata")] not in files:
            _remove(os.path.join(meta_dir, name))
    if sorted(prints) != sorted(old_prints) or not os.path.exists(os.path.join(simple, "index.v1_json")):
        root_html, root_json = root_pages(sorted(prints))
        write_atomic(os.path.join(simple, "index.v1_json"), root_json)
        write_atomic(os.path.join(simple, "index.html"), root_html)
    write_atomic(state_path, json.dumps({"version": STATE_VERSION, "files": files,
                                         "projects": prints}, sort_keys=True).encode("utf-8"))
    counts["files"], counts["projects"] = len(files), len(prints)
    return counts


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("packages")
    ap.add_argument("out")
    ap.add_argument("--yanked", help="JSON {project: {version: reason}} (PEP 592)")
    ap.add_argument("--full", action="store_true", help="render everything again")
    args = ap.parse_args(argv)
    # a change while we build (a start request for a running oneshot is merged into it):
    # build again until the directory holds still (a few rounds at most)
    for _ in range(10):
        before = os.stat(args.packages).st_mtime_ns
        counts = build(args.packages, args.out, args.yanked, args.full)
        print(json.dumps(counts, sort_keys=True))
        if os.stat(args.packages).st_mtime_ns == before:
            break
        args.full = False
    return 0


if __name__ == "__main__":
    sys.exit(main())
