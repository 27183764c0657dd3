"""Data tests for the per-Python pin sets and the control-side wheelhouse.

The pins were verified by hand on real interpreters (install from the downloaded
wheels only, pip check, pypi-server with waitress + cached-dir + bcrypt htpasswd);
these tests keep the files from drifting away from what was verified.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest

from tests import helpers

from provision import pipdownload, wheels
from provision.wheels import (
    PINS_DIR,
    UnsupportedPython,
    WheelhouseError,
    ensure_wheelhouse,
    pins_for,
    platform_tags,
    supported_pythons,
)

EXPECTED_PYTHONS = ["3.6", "3.8", "3.9", "3.10", "3.11", "3.12", "3.13"]
PIN_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*==[0-9][0-9a-z.]*$")


def as_dict(pins: list[str]) -> dict[str, str]:
    return dict(pin.split("==", 1) for pin in pins)


def test_supported_pythons_match_the_pins_files():
    assert supported_pythons() == EXPECTED_PYTHONS
    assert sorted(p.name for p in PINS_DIR.glob("py*.txt")) == sorted(
        f"py{v}.txt" for v in EXPECTED_PYTHONS
    )


@pytest.mark.parametrize("version", EXPECTED_PYTHONS)
def test_pins_file_parses_and_is_canonical(version):
    text = (PINS_DIR / f"py{version}.txt").read_text(encoding="utf-8")
    assert text.startswith(
        f"# managed by provision: pins for the pypiserver venv on Python {version} -- why these versions"
    )
    pins = pins_for(version)
    assert pins, "empty pin set"
    for pin in pins:
        assert PIN_RE.match(pin), f"not a lowercase canonical name==version pin: {pin}"
    names = [p.split("==")[0] for p in pins]
    assert names == sorted(names), "pins must be sorted"
    assert len(set(names)) == len(names), "duplicate pin"
    # every non-comment line of the file is a pin: nothing unpinned slips through
    body = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert body == pins


def vkey(version: str) -> tuple:
    return tuple(int(x) for x in re.findall(r"\d+", version))


# Rules the pin sets must keep, each for a reason found the hard way (the files' headers say
# which versions were verified; these tests do not restate them).
@pytest.mark.parametrize("version", EXPECTED_PYTHONS)
def test_pin_set_keeps_the_rules(version):
    pins = as_dict(pins_for(version))
    for name in ("pip", "pypiserver", "passlib", "bcrypt", "waitress", "watchdog"):
        assert name in pins, f"{name} missing for {version}"
    if pins["passlib"] == "1.7.4":
        assert vkey(pins["bcrypt"]) < (4, 1)       # passlib 1.7.4 breaks with bcrypt >= 4.1
    assert vkey(pins["watchdog"]) < (6,)            # watchdog 6 empties the cache on each read (#502)
    if vkey(pins["pypiserver"]) < (2, 1):
        assert "setuptools" in pins                 # pypiserver 2.0 imports pkg_resources
    if vkey(version) >= (3, 13):
        assert "legacy-cgi" in pins                 # bottle needs cgi, gone in 3.13
    if version == "3.6":
        # pypiserver 2.1-2.3 claim >=3.6 but need packaging>=23.2 (>=3.7 only); 2.4 needs >=3.8
        assert vkey(pins["pypiserver"]) < (2, 1) and "packaging" not in pins
    if version == "3.8":
        # pypiserver 2.4.0's markers skip the backport on 3.8, which then needs pkg_resources
        assert "importlib-resources" in pins and "zipp" in pins


@pytest.mark.parametrize("bad", ["3.7", "2.7", "3.14", "", "banana"])
def test_unknown_python_raises(bad):
    with pytest.raises(UnsupportedPython) as info:
        pins_for(bad)
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    assert "\n" not in message
    assert "3.6" in message and "3.13" in message


def test_full_version_is_accepted():
    assert pins_for("3.11.7") == pins_for("3.11")


def test_platform_tags_for_centos7():
    tags = platform_tags("2.17", "x86_64")
    assert "manylinux2014_x86_64" in tags
    assert "manylinux_2_17_x86_64" in tags
    assert "manylinux2010_x86_64" in tags and "manylinux1_x86_64" in tags
    assert not any(t.startswith("manylinux_2_28") for t in tags)
    assert not any(
        int(m.group(1)) > 17 for t in tags if (m := re.match(r"manylinux_2_(\d+)_", t))
    )


def test_platform_tags_for_newer_glibc_and_arm():
    tags = platform_tags("2.36", "x86_64")
    assert tags[0] == "manylinux_2_36_x86_64"
    assert "manylinux_2_28_x86_64" in tags and "manylinux2014_x86_64" in tags
    arm = platform_tags("2.35", "aarch64")
    assert "manylinux2014_aarch64" in arm
    assert "manylinux1_aarch64" not in arm and "manylinux_2_16_aarch64" not in arm
    assert platform_tags("2.17", "amd64") == platform_tags("2.17", "x86_64")
    with pytest.raises(ValueError):
        platform_tags("garbage", "x86_64")


def test_wheel_cache_comes_from_the_environment(tmp_path):
    code = "from provision import wheels; print(wheels.WHEEL_CACHE)"
    env = {"PROVISION_WHEEL_CACHE": str(tmp_path / "wc"), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(tmp_path / "wc")
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(tmp_path / ".cache" / "provision" / "wheels")


@pytest.fixture(scope="module")
def pypi_reachable():
    if not helpers.pypi_reachable():
        pytest.skip("PyPI unreachable: a probe `pip download --no-deps defusedxml==0.7.1` failed")


@pytest.mark.network
def test_ensure_wheelhouse_downloads_once(pypi_reachable, tmp_path, monkeypatch):
    monkeypatch.setattr(wheels, "WHEEL_CACHE", tmp_path / "cache")
    first = ensure_wheelhouse("3.11", "2.36", "x86_64")
    pins = pins_for("3.11")
    assert len(first) == len(pins)
    for pin, wheel in zip(pins, first):
        name, version = pin.split("==")
        assert wheel.is_file() and wheel.suffix == ".whl"
        assert wheel.parent == tmp_path / "cache" / "cp311-x86_64-glibc2.36"
        assert wheel.name.lower().startswith(f"{name.replace('-', '_')}-{version}-")
    # no temp folders left behind
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["cp311-x86_64-glibc2.36"]

    def no_pip(*args, **kwargs):
        raise AssertionError("pip ran although every wheel was cached")

    monkeypatch.setattr(pipdownload.subprocess, "run", no_pip)
    start = time.perf_counter()
    second = ensure_wheelhouse("3.11", "2.36", "x86_64")
    assert time.perf_counter() - start < 0.2
    assert second == first


@pytest.mark.network
def test_ensure_wheelhouse_error_names_the_pin(pypi_reachable, tmp_path, monkeypatch):
    monkeypatch.setattr(wheels, "WHEEL_CACHE", tmp_path / "cache")
    # bcrypt 4.0.1 publishes no s390x wheel: the failure must say so in one line
    with pytest.raises(WheelhouseError) as info:
        ensure_wheelhouse("3.11", "2.36", "s390x")
    message = str(info.value)
    assert "\n" not in message
    assert "bcrypt==4.0.1" in message
    assert "No matching distribution" in message or "ERROR" in message
