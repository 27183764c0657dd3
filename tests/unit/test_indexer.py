"""The static index (provision/hostside/indexer.py, run on the host's Python 3.6+), built
here from real wheels and sdists: PEP 503/691 pages, PEP 658 metadata, PEP 592 yank,
incremental and crash-safe."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from provision.hostside import indexer
from tests.helpers import assert_python36_stdlib, make_wheel

SOURCE = Path(indexer.__file__)


def test_the_indexer_is_python_3_6_and_standard_library_only():
    assert_python36_stdlib(SOURCE)


def sdist(folder: Path, name: str, version: str, metadata_version: str = "2.2") -> Path:
    base = f"{name}-{version}"
    data = (f"Metadata-Version: {metadata_version}\nName: {name}\nVersion: {version}\n"
            f"Requires-Python: >=3.6\n").encode()
    out = folder / f"{base}.tar.gz"
    with tarfile.open(out, "w:gz") as tf:
        info = tarfile.TarInfo(f"{base}/PKG-INFO")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    return out


@pytest.fixture
def repo(tmp_path):
    packages, out = tmp_path / "packages", tmp_path / "out"
    packages.mkdir()
    make_wheel(packages, "Foo_Bar", "1.0")
    make_wheel(packages, "foo-bar", "2.0", metadata="Requires-Python: >=3.99\n")
    sdist(packages, "foo-bar", "0.9")
    sdist(packages, "old-style", "1.0", metadata_version="2.1")
    return packages, out


def test_pages_in_both_forms_with_hashes_requires_python_and_metadata(repo):
    packages, out = repo
    counts = indexer.build(str(packages), str(out))
    assert counts == {"read": 4, "rendered": 2, "removed": 0, "files": 4, "projects": 2}
    root = json.loads((out / "simple" / "index.v1_json").read_text())
    assert root == {"meta": {"api-version": "1.1"}, "projects": [{"name": "foo-bar"}, {"name": "old-style"}]}
    page = json.loads((out / "simple" / "foo-bar" / "index.v1_json").read_text())
    assert page["meta"] == {"api-version": "1.1"} and page["name"] == "foo-bar"
    assert page["versions"] == ["0.9", "1.0", "2.0"]
    by_name = {f["filename"]: f for f in page["files"]}
    wheel = by_name["foo_bar-2.0-py3-none-any.whl"]
    data = (packages / wheel["filename"]).read_bytes()
    assert wheel["hashes"] == {"sha256": hashlib.sha256(data).hexdigest()} and wheel["size"] == len(data)
    assert wheel["requires-python"] == ">=3.99" and wheel["yanked"] is False
    assert wheel["url"] == "../../packages/foo_bar-2.0-py3-none-any.whl"
    assert wheel["upload-time"].endswith("Z") and len(wheel["upload-time"]) == 27
    meta = out / "metadata" / (wheel["filename"] + ".metadata")
    assert wheel["core-metadata"] == {"sha256": hashlib.sha256(meta.read_bytes()).hexdigest()}
    assert b"Requires-Python: >=3.99" in meta.read_bytes()
    assert by_name["foo-bar-0.9.tar.gz"]["core-metadata"]          # sdist, Metadata-Version 2.2
    old = json.loads((out / "simple" / "old-style" / "index.v1_json").read_text())
    assert old["files"][0]["core-metadata"] is False                # 2.1: PEP 658 says no
    html = (out / "simple" / "foo-bar" / "index.html").read_text()
    assert 'data-requires-python="&gt;=3.99"' in html
    assert f'data-core-metadata="sha256={wheel["core-metadata"]["sha256"]}"' in html
    assert '<meta name="pypi:repository-version" content="1.1">' in html


def test_pypi_simple_reads_both_forms_alike(repo):
    pypi_simple = pytest.importorskip("pypi_simple")
    packages, out = repo
    indexer.build(str(packages), str(out))
    base = "https://h:8000/simple/foo-bar/"
    from_html = pypi_simple.ProjectPage.from_html(
        "foo-bar", (out / "simple" / "foo-bar" / "index.html").read_text(), base_url=base)
    from_json = pypi_simple.ProjectPage.from_json_data(
        json.loads((out / "simple" / "foo-bar" / "index.v1_json").read_text()), base_url=base)
    key = lambda p: [(d.filename, d.url, d.digests, d.requires_python, d.is_yanked,  # noqa: E731
                      d.has_metadata) for d in sorted(p.packages, key=lambda d: d.filename)]
    assert key(from_html) == key(from_json)
    assert {d.url for d in from_json.packages} == {
        f"https://h:8000/packages/{n}" for n in os.listdir(packages) if not n.startswith("old")}


def test_incremental_one_new_file_renders_one_project(tmp_path):
    packages, out = tmp_path / "p", tmp_path / "o"
    packages.mkdir()
    for i in range(3000):             # 300 projects of 10 files (contents: not distributions)
        (packages / f"proj{i // 10:03d}-1.{i % 10}.tar.gz").write_bytes(b"x%d" % i)
    first = indexer.build(str(packages), str(out))
    assert first["read"] == 3000 and first["rendered"] == 300
    assert indexer.build(str(packages), str(out)) == {"read": 0, "rendered": 0, "removed": 0,
                                                     "files": 3000, "projects": 300}
    make_wheel(packages, "proj150", "9.0")
    counts = indexer.build(str(packages), str(out))
    assert (counts["read"], counts["rendered"]) == (1, 1)     # counted, not timed


def test_yank_and_removal(repo):
    packages, out = repo
    yanked = out.parent / "yanked.json"
    yanked.write_text(json.dumps({"foo-bar": {"2.0": "broken on 3.12", "1.0": ""}}))
    indexer.build(str(packages), str(out), str(yanked))
    files = {f["filename"]: f for f in json.loads((out / "simple" / "foo-bar" / "index.v1_json").read_text())["files"]}
    assert files["foo_bar-2.0-py3-none-any.whl"]["yanked"] == "broken on 3.12"
    assert files["Foo_Bar-1.0-py3-none-any.whl"]["yanked"] is True
    html = (out / "simple" / "foo-bar" / "index.html").read_text()
    assert 'data-yanked="broken on 3.12"' in html and 'data-yanked=""' in html
    (packages / "old-style-1.0.tar.gz").unlink()
    counts = indexer.build(str(packages), str(out), str(yanked))
    assert counts["removed"] == 1 and not (out / "simple" / "old-style").exists()
    assert json.loads((out / "simple" / "index.v1_json").read_text())["projects"] == [{"name": "foo-bar"}]


def test_a_crash_mid_run_leaves_the_previous_index(repo, monkeypatch):
    packages, out = repo
    indexer.build(str(packages), str(out))
    before = {p: p.read_bytes() for p in (out / "simple").rglob("*") if p.is_file()}
    make_wheel(packages, "foo-bar", "3.0")
    real, calls = indexer.write_atomic, []

    def dies(path, data, mode=0o644):
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        real(path, data, mode)

    monkeypatch.setattr(indexer, "write_atomic", dies)
    with pytest.raises(OSError):
        indexer.build(str(packages), str(out))
    for path, data in before.items():   # every page whole: the old one, or already the new one
        json.loads(path.read_bytes()) if path.suffix == ".v1_json" else path.read_text()
    assert not list(out.rglob(".tmp-*"))
    monkeypatch.setattr(indexer, "write_atomic", real)
    indexer.build(str(packages), str(out))        # the next run finishes the job
    assert "foo_bar-3.0-py3-none-any.whl" in (out / "simple" / "foo-bar" / "index.html").read_text()
