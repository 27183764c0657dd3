"""`invoke upgrade` on a real host: from an older pypiserver to the tested pins, a new venv
switched in and health-checked; a broken release switched back automatically."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import zipfile
from pathlib import Path

import pytest

from provision import wheels
from tests.external import write_inventory
from tests.helpers import http_get, invoke, recap, sh

pytestmark = pytest.mark.integration


def served_version(host, inv) -> str:
    (d,) = json.loads(invoke("status", "--json", "--inventory", inv, "-H", host.name).stdout)
    assert d["healthy"], d
    return d["versions"]["pypiserver"]


def broken_pypiserver(folder: Path) -> None:
    """A pypiserver 99.0.0 wheel that installs fine and cannot start."""
    files = {
        "pypiserver/__init__.py": "raise SystemExit('pypiserver 99 is broken on purpose')\n",
        "pypiserver/__main__.py": "def main():\n    pass\n",
        "pypiserver-99.0.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: pypiserver\nVersion: 99.0.0\n",
        "pypiserver-99.0.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\n"
                                              "Tag: py3-none-any\n",
        "pypiserver-99.0.0.dist-info/entry_points.txt": "[console_scripts]\npypi-server = pypiserver.__main__:main\n",
    }
    record = [f"{p},sha256={base64.urlsafe_b64encode(hashlib.sha256(t.encode()).digest()).rstrip(b'=').decode()},"
              f"{len(t.encode())}" for p, t in files.items()]
    files["pypiserver-99.0.0.dist-info/RECORD"] = "\n".join(record + ["pypiserver-99.0.0.dist-info/RECORD,,"]) + "\n"
    with zipfile.ZipFile(folder / "pypiserver-99.0.0-py3-none-any.whl", "w") as z:
        for p, t in files.items():
            z.writestr(p, t)


def test_upgrade_to_the_pins_then_a_broken_release_is_switched_back(host, tmp_path, monkeypatch):
    inv = str(write_inventory([host], tmp_path / "inventory.yml", known_hosts=str(tmp_path / "known_hosts"),
                              pypiserver_version="2.3.2"))
    args = ["--inventory", inv, "-H", host.name]
    first = invoke("deploy", *args)
    assert first.returncode == 0, first.stdout + first.stderr
    assert served_version(host, inv) == "2.3.2"
    newest = next(p.split("==")[1] for p in wheels.pins_for("3.11") if p.startswith("pypiserver=="))
    write_inventory([host], Path(inv), known_hosts=str(tmp_path / "known_hosts"))   # no version: the pins'

    check = invoke("upgrade", "--check", *args)
    assert check.returncode == 0 and f"pypiserver 2.3.2 -> {newest}" in check.stdout
    assert served_version(host, inv) == "2.3.2"
    up = invoke("upgrade", *args)
    assert up.returncode == 0, up.stdout + up.stderr
    assert f"pypiserver 2.3.2 -> {newest}; the old venv kept as /opt/pypiserver/venv.prev" in up.stdout
    assert f"Ensure pypiserver {newest} answers (the health check)." in up.stdout
    assert served_version(host, inv) == newest
    assert sh(host, "test -d /opt/pypiserver/venv.prev && echo kept").stdout.strip() == "kept"
    again = invoke("upgrade", *args)
    assert recap(again.stdout, host.name)[1:] == (0, 0), again.stdout
    assert recap(invoke("deploy", *args).stdout, host.name)[1:] == (0, 0)   # deploy agrees with it

    # a release that installs but cannot start: built, switched in, failed, switched back
    cache = tmp_path / "wheels"
    shutil.copytree(wheels.WHEEL_CACHE, cache)
    for folder in cache.iterdir():
        broken_pypiserver(folder)
    monkeypatch.setenv("PROVISION_WHEEL_CACHE", str(cache))
    broken = invoke("upgrade", "--to", "99.0.0", *args)
    assert broken.returncode == 2, broken.stdout + broken.stderr
    assert ("failed   Ensure pypiserver 99.0.0 answers (the health check).  [pypiserver 99.0.0 failed its "
            "health check (") in broken.stdout
    assert f"switched back to {newest}, serving again" in broken.stdout
    assert served_version(host, inv) == newest
    assert json.loads(sh(host, "cat /var/lib/provision/pypiserver.json").stdout)["settings"]["pypiserver_version"] == ""
    assert http_get(host.address, 8000, "/simple/")[0] == 200
    # a release that cannot even be built leaves the service as it was
    unbuildable = invoke("upgrade", "--to", "0.0.1", *args)
    assert unbuildable.returncode == 2 and served_version(host, inv) == newest
