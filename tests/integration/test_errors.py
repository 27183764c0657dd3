"""Every failure a user can hit ends in one clear line, a non-zero exit, no traceback,
and nothing changed on the host. Real hosts, real sshd and sudo: a local nspawn host, or
one fresh external host (PROVISION_TEST_HOSTS; the tests that need the nspawn image's
`pwdeploy` user, its veth link or its missing network are skipped there)."""

from __future__ import annotations

import time

import pytest

from testing import testhost as th
from tests.external import is_external, write_inventory
from tests.helpers import invoke, recap, sh

pytestmark = pytest.mark.integration


def skip_if_external(host, why: str) -> None:
    if is_external(host):
        pytest.skip(f"not on an external host: {why}")


@pytest.fixture
def inv(host, tmp_path):
    """An inventory whose all.vars carry the key, so literal USER@ADDR hosts can use it."""
    return str(write_inventory([host], tmp_path / "inv.yml", known_hosts=str(tmp_path / "kh"),
                               ssh_key=host.ssh_key))


def failed_cleanly(res, host_label: str, needle: str) -> str:
    out = res.stdout + res.stderr
    assert res.returncode != 0, out
    assert "Traceback" not in out, out
    assert needle in out, out
    assert recap(res.stdout, host_label)[2] == 1
    return out


def untouched(host) -> None:
    assert sh(host, "getent passwd pypi", check=False).returncode != 0
    assert sh(host, "test -e /opt/pypiserver", check=False).returncode != 0


def test_unreachable_port_is_one_line_fast(inv):
    start = time.monotonic()
    res = invoke("deploy", "--inventory", inv, "--host", "deploy@127.0.0.1:1")
    failed_cleanly(res, "127.0.0.1", "cannot reach deploy@127.0.0.1:1")
    assert time.monotonic() - start < 30


def test_no_host_at_the_address_fails_within_30s(host, inv):
    skip_if_external(host, "it addresses .3 on the nspawn host's own veth link, where nobody "
                           "answers; nothing guarantees that next to an external host")
    ghost = host.address.rsplit(".", 1)[0] + ".3"  # on our own veth link, nobody answers
    start = time.monotonic()
    res = invoke("deploy", "--inventory", inv, "--host", f"deploy@{ghost}")
    failed_cleanly(res, ghost, "cannot reach")
    assert time.monotonic() - start < 30


def test_authentication_failure(host, inv):
    res = invoke("deploy", "--inventory", inv, "--host", f"nobody@{host.address}")
    failed_cleanly(res, host.address, "authentication failed for nobody@")
    untouched(host)


def test_sudo_needing_a_password(host, inv):
    skip_if_external(host, f"it needs the nspawn image's {th.PW_USER} user (sudo with a password)")
    res = invoke("deploy", "--inventory", inv, "--host", f"pwdeploy@{host.address}")
    failed_cleanly(res, host.address, "needs a password for pwdeploy: rerun with --ask-sudo-pass")
    untouched(host)


def test_prompted_sudo_password_works_and_never_shows(host, inv):
    skip_if_external(host, f"it needs the nspawn image's {th.PW_USER} user (sudo with a password)")
    password = th.pwdeploy_password_path().read_text().strip()
    res = invoke("deploy", "--inventory", inv, "--host", f"pwdeploy@{host.address}", "--check",
                 "--ask-sudo-pass", input=password + "\n")
    assert res.returncode == 0, res.stdout + res.stderr
    assert recap(res.stdout, host.address)[2] == 0
    assert password not in res.stdout + res.stderr
    assert password not in sh(host, "journalctl --no-pager -o cat; ps -eo args").stdout
    wrong = invoke("deploy", "--inventory", inv, "--host", f"pwdeploy@{host.address}", "--check",
                   "--ask-sudo-pass", input="not-the-password\n")
    failed_cleanly(wrong, host.address, "rejected the password")


def test_port_used_by_another_program(host, inv):
    if sh(host, "command -v python3", check=False).returncode == 0:
        prog, server = "python3", '"$(command -v python3)" -m http.server 8000'
    elif is_external(host) and sh(host, "command -v python", check=False).returncode == 0:
        prog, server = "python", '"$(command -v python)" -m SimpleHTTPServer 8000'  # CentOS 7: py2 only
    else:
        pytest.skip("no python on the host to hold the port with")
    sh(host, f"systemd-run --unit squatter {server}")
    try:
        deadline = time.monotonic() + 10
        while ":8000 " not in sh(host, "ss -ltn").stdout:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        res = invoke("deploy", "--inventory", inv, "--host", host.name)
        failed_cleanly(res, host.name, f"port 8000 is already used by {prog} (pid")
        untouched(host)
    finally:
        sh(host, "systemctl stop squatter", check=False)


def test_unsupported_os(host, inv):
    # -P: /etc/os-release is a relative symlink (../usr/lib/os-release) on Debian and EL; it
    # resolves the same from /root, and moves back as the symlink it was.
    sh(host, "cp -P --remove-destination /etc/os-release /root/os-release.bak && "
             "printf 'ID=arch\\nPRETTY_NAME=\"Arch Linux\"\\n' > /etc/os-release.new && "
             "mv /etc/os-release.new /etc/os-release")
    try:
        res = invoke("deploy", "--inventory", inv, "--host", host.name)
        failed_cleanly(res, host.name, "unsupported OS Arch Linux (ID=arch)")
        untouched(host)
    finally:
        sh(host, "mv /root/os-release.bak /etc/os-release && "
                 "{ ! command -v restorecon >/dev/null || restorecon /etc/os-release; }")


def test_changed_host_key_is_refused(host, inv):
    first = invoke("deploy", "--inventory", inv, "--host", host.name, "--check")
    assert first.returncode == 0, first.stdout + first.stderr
    sh(host, "rm -f /etc/ssh/ssh_host_* && ssh-keygen -A >/dev/null && "
             "{ ! command -v restorecon >/dev/null || restorecon -R /etc/ssh; } && "
             "{ systemctl restart ssh 2>/dev/null || systemctl restart sshd; }")  # EL: sshd
    if is_external(host):
        host.forget_host_key()  # our own ssh to it must accept the new key
    res = invoke("deploy", "--inventory", inv, "--host", host.name, "--check")
    failed_cleanly(res, host.name, "has CHANGED")


def test_bad_inventory_and_flags(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("all: [oops\n")
    res = invoke("deploy", "--inventory", str(bad))
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert "cannot read inventory" in res.stderr
    res = invoke("deploy", "--host", "a@b@c")
    assert res.returncode != 0 and "bad host 'a@b@c'" in res.stderr


def test_no_python3_obtainable(host, inv):
    """Last in this module: it removes python3 from the host (apt cannot fetch it: no network)."""
    skip_if_external(host, "it purges Debian's python3 and relies on the host having no network")
    sh(host, "dpkg --purge --force-depends python3-venv python3.11-venv python3 python3.11 "
             "python3-minimal python3.11-minimal >/dev/null 2>&1")
    assert sh(host, "ls /usr/bin/python3*", check=False).returncode != 0
    res = invoke("deploy", "--inventory", inv, "--host", host.name)
    failed_cleanly(res, host.name, "no Python 3 obtainable through the package manager")
    untouched(host)
    check = invoke("deploy", "--inventory", inv, "--host", host.name, "--check")
    assert check.returncode == 0, check.stdout + check.stderr  # predicts python 3.11 from data
    assert "create with python 3.11" in check.stdout
